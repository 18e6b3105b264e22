"""The CLI: `train` (JSON last line, config file + overrides, Ctrl-C, unwritable store, bad
input), and the run verbs `runs`, `recommend`, `eval`, `project`, `export`."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from mtrlib.runs import list_runs, load_run
from mtrlib.safe import escape_formula, safe_csv

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--users", "150", "--items", "50", "--impressions", "15", "--batch-size", "256"]


def cli(*args, store: Path, timeout: int = 180, check: int | None = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["MTR_RUN_STORE"] = str(store)
    out = subprocess.run([sys.executable, "-m", "mtrlib", *map(str, args)], capture_output=True, text=True,
                         env=env, timeout=timeout, cwd=ROOT)
    if check is not None:
        assert out.returncode == check, (out.returncode, out.stdout[-2000:], out.stderr[-3000:])
    return out


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def main(capsys, monkeypatch, tmp_path):
    """`python -m mtrlib ARGS` in this process (no interpreter start-up): -> Result."""
    from mtrlib.__main__ import main as entry

    def call(*args, store: Path | None = None, check: int | None = 0) -> Result:
        monkeypatch.setenv("MTR_RUN_STORE", str(store or tmp_path / "default-store"))
        capsys.readouterr()
        rc = entry([str(a) for a in args])
        o = capsys.readouterr()
        res = Result(rc, o.out, o.err)
        if check is not None:
            assert rc == check, (rc, o.out[-2000:], o.err[-3000:])
        return res

    return call


def last_json(out) -> dict:
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    out = cli("train", *TINY, "--epochs", "2", "--model", "mmoe", "--experts", "32", "--n-experts", "3",
              "--weights", "click=1,like=2", "--name", "cli run", store=store)
    return store, last_json(out), out


def test_train_prints_one_json_object_last(trained):
    store, res, out = trained
    assert res["status"] == "finished" and res["saved"] is True
    assert set(res["metrics"]) == {"click", "like", "dwell"}
    assert {"auc", "logloss"} <= set(res["metrics"]["click"]) and "rmse" in res["metrics"]["dwell"]
    assert res["samples_per_s"] > 0
    run_dir = Path(res["run_dir"])
    assert run_dir.parent == store and (run_dir / "weights.safetensors").exists()
    assert "epoch 2: val click auc" in out.stderr  # progress with per-task numbers on stderr
    run = load_run(run_dir)
    m = run.config.model
    assert (m.arch, m.experts, m.n_experts) == ("mmoe", [32], 3) and run.config.weights == {"click": 1.0, "like": 2.0}
    assert run.name == "cli run" and run.metrics["click"]["auc"] == pytest.approx(res["metrics"]["click"]["auc"])


def test_run_verbs(trained, tmp_path, main):
    store, res, _ = trained
    rid = res["run_id"]
    listing = main("runs", "--store", store, store=tmp_path)  # --store beats the environment
    assert rid in listing.stdout and "finished" in listing.stdout and "click:auc=" in listing.stdout
    as_json = json.loads(main("runs", "--json", store=store).stdout)
    assert [r["id"] for r in as_json] == [rid]

    rec = main("recommend", rid, "--user", "u00004", "--k", "4", "--fusion", "click=1,like=3", store=store)
    assert "fusion click=1, like=3, dwell=0" in rec.stdout and len(rec.stdout.strip().splitlines()) == 6
    rj = last_json(main("recommend", "cli run", "--user", "stranger", "--json", store=store))
    assert len(rj["items"]) == 10 and {i["source"] for i in rj["items"]} == {"popularity"}
    assert "not known" in rj["notes"][0]

    ev = last_json(cli("eval", res["run_dir"], "--k", "5,10", store=tmp_path))
    assert ev["task"] == "click" and set(ev) >= {"model", "popularity"}
    assert set(ev["model"]) == {"recall@5", "ndcg@5", "hitrate@5", "recall@10", "ndcg@10", "hitrate@10"}
    assert last_json(main("eval", rid, "--task", "like", "--k", "10", store=store))["task"] == "like"

    csv_path = tmp_path / "items.csv"
    pj = last_json(main("project", rid, "--what", "items", "--method", "pca", "--out", csv_path, store=store))
    df = pd.read_csv(csv_path)
    assert pj["rows"] == len(df) == 50 and {"x", "y", "item_id", "title", "genre"} <= set(df.columns)
    main("project", rid, "--what", "task:like", "--method", "tsne", "--dims", "3", "--pairs", "80",
        "--out", tmp_path / "like.csv", store=store)
    assert pd.read_csv(tmp_path / "like.csv")[["x", "y", "z"]].shape == (80, 3)

    ex = last_json(main("export", rid, "--projector", tmp_path / "proj", store=store))
    vec = (tmp_path / "proj" / "vectors.tsv").read_text().splitlines()
    with open(tmp_path / "proj" / "metadata.tsv", newline="") as f:
        md = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert ex["rows"] == len(vec) == len(md) - 1 == 50 and md[0][0] == "item_id"


def test_config_file_then_flags_override(tmp_path, main):
    cfg_file = tmp_path / "cfg.json"
    saved = main("train", *TINY, "--model", "ple", "--shared", "16", "--towers", "8", "--epochs", "3",
                "--save-config", cfg_file, store=tmp_path / "s")
    assert last_json(saved) == {"config": str(cfg_file)} and not (tmp_path / "s").exists()
    assert json.loads(cfg_file.read_text())["model"]["arch"] == "ple"
    out_dir = tmp_path / "my-run"
    res = last_json(main("train", "--config", cfg_file, "--epochs", "1", "--lr", "0.01", "--out", out_dir,
                        "--quiet", store=tmp_path / "s"))
    assert res["run_dir"] == str(out_dir.resolve()) and res["status"] == "finished"
    cfg = load_run(out_dir).config
    assert (cfg.model.arch, cfg.model.towers, cfg.epochs, cfg.lr) == ("ple", [8], 1, 0.01)
    assert cfg.data.world.n_users == 150
    # --out into a folder that already holds something is refused before training
    again = main("train", "--config", cfg_file, "--out", out_dir, store=tmp_path / "s", check=2)
    assert "not empty" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "--users", "people.csv"], "needs --data"),
    (["train", "--task", "no equals sign"], "NAME=DEFINITION"),
    (["train", *TINY, "--shared", "0", "--model", "shared-bottom"], "width of at least 1"),
    (["train", "--shared", "a,b"], "whole numbers"),
    (["train", "--weights", "click"], "TASK=WEIGHT"),
    (["train", "--data", "/definitely/not/here.csv"], ""),
    (["train", "--config", "/definitely/not/here.json"], "Cannot read the config"),
    (["recommend", "no-such-run", "--user", "1"], "No run"),
    (["eval", "no-such-run"], "No run"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, main, args, message):
    out = main(*args, store=tmp_path, check=2)
    assert out.stderr.startswith("error:") and message in out.stderr and "Traceback" not in out.stderr


def test_bad_input_on_an_existing_run(trained, main):
    store, res, _ = trained
    for args, message in ((["eval", res["run_id"], "--task", "dwell"], "binary task"),
                          (["eval", res["run_id"], "--task", "nope"], "no task"),
                          (["recommend", res["run_id"], "--user", "u1", "--fusion", "nope=1"], "unknown task"),
                          (["project", res["run_id"], "--what", "gate:nope", "--out", store / "x.csv"], "no representation")):
        out = main(*args, store=store, check=2)
        assert message in out.stderr and "Traceback" not in out.stderr


def test_ctrl_c_stops_cleanly_and_keeps_the_run(tmp_path):
    store = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(ROOT), MTR_RUN_STORE=str(store))
    proc = subprocess.Popen([sys.executable, "-m", "mtrlib", "train", "--users", "1500", "--items", "300",
                             "--model", "shared-bottom", "--shared", "32", "--epochs", "500", "--log-every", "2"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            hist = list(store.glob("*/history.jsonl")) if store.exists() else []
            if hist and hist[0].read_text().count('"kind": "step"') >= 3:
                break
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    res = json.loads(out.strip().splitlines()[-1])
    assert res["status"] == "stopped" and res["saved"] and "Stopped by the user" in res["reason"]
    info = list_runs(store)[0]
    assert info.status == "stopped" and info.has_weights
    assert len(load_run(info.path).history.steps) >= 3


def test_unwritable_store_says_not_saved(tmp_path, main):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = main("train", *TINY, "--epochs", "1", "--quiet", "--store", blocker / "runs", store=tmp_path, check=1)
    res = last_json(out)
    assert res["saved"] is False and res["run_dir"] is None and res["status"] == "finished"
    assert res["metrics"]["click"]["auc"] > 0 and "not writable" in out.stderr


def test_csv_formula_cells_are_escaped(tmp_path):
    for bad in ("=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert escape_formula(bad) == "'" + bad
    assert escape_formula("fine") == "fine" and escape_formula(-1.5) == -1.5
    df = pd.DataFrame({"title": ["=HYPERLINK(\"x\")", "ok"], "x": [-1.0, 2.0]})
    safe_csv(df, tmp_path / "o.csv")
    back = pd.read_csv(tmp_path / "o.csv")
    assert back["title"][0].startswith("'=") and back["x"].tolist() == [-1.0, 2.0]
