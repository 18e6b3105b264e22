"""Issue 30: MLflow tracking (`train --mlflow [URI]`, sweeps as one parent run with children).

Against real MLflow stores: a local folder (SQLite inside), and a real `mlflow server` on a
loopback port for the sweep.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import mlflow  # noqa: E402,F401  (locked: a missing package fails, never skips)

from mlflow.tracking import MlflowClient

from mtrlib.__main__ import main
from mtrlib.runs import list_runs, load_run
from mtrlib.track import hook as tracking

from _mtr import tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg_file(tmp_path, **kw):
    f = tmp_path / "cfg.json"
    f.write_text(tiny_cfg("shared-bottom", epochs=2, **kw).to_json())
    return str(f)


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_train_logs_params_epoch_metrics_group_and_artifacts_to_a_local_folder(tmp_path, store, capsys):
    folder = tmp_path / "mlruns"
    assert main(["train", "--config", _cfg_file(tmp_path), "--quiet", "--mlflow", str(folder)]) == 0
    out = _last_json(capsys.readouterr().out)
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name("MTR Studio")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["model.arch"] == "shared-bottom" and run.data.params["epochs"] == "2"
    assert run.data.tags["mtr.group"] == out["group"] == load_run(out["run_id"]).info.group
    assert run.data.tags["mtr.run_id"] == out["run_id"]
    assert run.info.status == "FINISHED"
    curve = client.get_metric_history(run.info.run_id, "click/auc")
    assert [m.step for m in curve] == [1, 2]  # one point per epoch, named TASK/METRIC
    hist = load_run(out["run_id"]).history.epochs
    assert [m.value for m in curve] == pytest.approx(hist["val/click/auc"].tolist())
    assert run.data.metrics["click/test_auc"] == pytest.approx(out["metrics"]["click"]["auc"])
    assert {"like/auc", "click/train_loss", "click/weight"} <= set(run.data.metrics)
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "run")}
    assert {"run/config.json", "run/weights.safetensors", "run/history.jsonl"} <= arts


def test_tracking_off_changes_nothing(tmp_path, store, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert tracking.current() is None
    assert main(["train", "--config", _cfg_file(tmp_path), "--quiet"]) == 0
    assert not (tmp_path / "mlruns").exists()
    assert len(list_runs(store)) == 1


def test_a_tracker_that_breaks_mid_run_never_loses_the_run(tmp_path, store, capsys):
    from mtrlib.runs import recorded_training
    from _mtr import tiny_prep

    class Broken:
        def start(self, cfg, prep, name):
            return self

        def __call__(self, event):  # what TrackedRun does: catches its own failures (tested here through it)
            pass

        def finish(self, result, folder):
            self.folder = folder

        def fail(self, message):
            raise AssertionError("training did not fail")

    cfg = tiny_cfg("shared-bottom", epochs=1)
    broken = Broken()
    with tracking.using(broken):
        res, writer = recorded_training(cfg, tiny_prep(cfg), store=store)
    assert res.status == "finished" and broken.folder == writer.path


def test_unreachable_server_is_a_user_error(tmp_path, store, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # a port nobody listens on
    rc = main(["train", "--config", _cfg_file(tmp_path), "--quiet", "--mlflow", f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert rc == 2 and "Cannot reach the MLflow tracking store" in err and "Fix:" in err
    assert "Traceback" not in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real `mlflow server` on a loopback port (SQLite backend, artifacts proxied by the server)."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.flush()
                pytest.fail("mlflow server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_sweep_logs_one_parent_with_a_child_per_run_to_a_real_server(tmp_path, store, mlflow_server, capsys):
    rc = main(["sweep", "--config", _cfg_file(tmp_path), "--grid", "lr=0.003,0.03", "--seeds", "1", "--quiet",
               "--mlflow", mlflow_server])
    assert rc == 0
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("MTR Studio")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("mtr.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(r.data.params["lr"] for r in children) == ["0.003", "0.03"]
    assert all(r.info.status == "FINISHED" and "click/auc" in r.data.metrics for r in children)
    # artifacts went through the server (proxied), not to a local folder of this process
    arts = {a.path for a in client.list_artifacts(children[0].info.run_id, "run")}
    assert "run/metrics.json" in arts
    assert not (tmp_path / "mlruns").exists()



def _toggle_script():
    from pages._mlflow import mlflow_toggle
    mlflow_toggle()


def test_sidebar_toggle_switches_the_process_wide_tracker(tmp_path, monkeypatch):
    """The toggle alone (AppTest of the whole app re-renders no sidebar after a widget change)."""
    from streamlit.testing.v1 import AppTest
    from mtrlib.track.mlflow_tracker import MlflowTracker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "app-mlruns"))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    at = AppTest.from_function(_toggle_script, default_timeout=120)
    try:
        at.run()
        assert tracking.get_default() is None and not at.exception
        at.sidebar.toggle(key="mlflow_on").set_value(True).run()
        assert not at.exception and not at.sidebar.error
        assert isinstance(tracking.get_default(), MlflowTracker)
        assert (tmp_path / "app-mlruns" / "mlflow.db").is_file()
        at.sidebar.toggle(key="mlflow_on").set_value(False).run()
        assert tracking.get_default() is None
    finally:
        tracking.set_default(None)
