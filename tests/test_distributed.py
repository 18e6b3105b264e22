"""Training on several processes (mtrlib.train.distributed): torchrun with 2 CPU processes (gloo) on a
small world gives one run folder, one JSON line and the single-process test AUCs (same global
batch, same seed) for fixed, uncertainty and GradNorm weighting; a stop request, a divergence
and a mismatch end every process together; bad set-ups end with a message, never a hang."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mtrlib.train import distributed
from mtrlib.config import TrainConfig
from mtrlib.train.loop import run

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
WORLD = {"n_users": 600, "n_items": 100, "impressions_per_user": 20, "seed": 0}
SETTINGS = {"epochs": 2, "batch_size": 256}
CLI_WORLD = ["--users", "600", "--items", "100", "--impressions", "20", "--world-seed", "0",
             "--epochs", "2", "--batch-size", "256", "--device", "cpu", "--quiet"]
AUC_TOL = 0.01


def env_for(store: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), MTR_RUN_STORE=str(store), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def single(method: str) -> dict:
    """Test AUCs of the same training in this one process ("history": fixed weights with a DIN
    history block of 5)."""
    cfg = TrainConfig(device="cpu", weighting="fixed" if method == "history" else method, **SETTINGS)
    if method == "history":
        cfg.model.history, cfg.model.history_encoder = 5, "din"
    for k, v in WORLD.items():
        setattr(cfg.data.world, k, v)
    res, _ = run(cfg)
    assert res.status == "finished"
    return {t: m["auc"] for t, m in res.metrics.items() if "auc" in m}


def failed(stdout: str, stderr: str) -> str:
    """A failed launch's message: the end of both streams (whether rank 0 printed its report
    before the failure says whether the processes died in training or on their way out)."""
    return f"stdout (end): {stdout[-600:]!r}\nstderr (end):\n{stderr[-3000:]}"


def close(got: dict, want: dict) -> None:
    assert got.keys() == want.keys() and got
    for t in want:
        assert abs(got[t] - want[t]) <= AUC_TOL, (t, got[t], want[t])


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Both torchrun launches at once (the CLI, and the library phases), 2 processes each."""
    store = tmp_path_factory.mktemp("ddp-runs")
    env = env_for(store)
    cli = subprocess.Popen([TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "mtrlib", "train", *CLI_WORLD],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lib = subprocess.Popen([TORCHRUN, "--standalone", "--nproc-per-node", "2", str(ROOT / "tests" / "_ddp_worker.py"),
                            json.dumps(WORLD), json.dumps(SETTINGS)],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for name, p in (("cli", cli), ("lib", lib)):
        stdout, stderr = p.communicate(timeout=600)
        out[name] = (p.returncode, stdout, stderr)
    return out, store


def test_torchrun_cli_one_run_folder_one_json_line_same_aucs(launched):
    (rc, stdout, stderr), store = launched[0]["cli"], launched[1]
    assert rc == 0, failed(stdout, stderr)
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout  # rank 1 prints nothing; rank 0 only its JSON line
    out = json.loads(lines[0])
    assert out["status"] == "finished" and out["saved"]
    folders = [p for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert [p.name for p in folders] == [Path(out["run_dir"]).name]
    assert (folders[0] / "weights.safetensors").exists() and (folders[0] / "metrics.json").exists()
    assert "Traceback" not in stderr
    close({t: m["auc"] for t, m in out["metrics"].items() if "auc" in m}, single("fixed"))


@pytest.mark.parametrize("method,same_as", [("uncertainty", "uncertainty"), ("gradnorm", "gradnorm"),
                                            ("own-gradients", "fixed"), ("upgrad", "upgrad"),
                                            ("history", "history")])
def test_torchrun_weighting_methods_match_one_process(launched, method, same_as):
    """own-gradients: fixed weights backpropagated task by task in its own `backward` (what the
    per-task gradient methods do), run in DDP's no_sync() with the gradients averaged after."""
    rc, stdout, stderr = launched[0]["lib"]
    assert rc == 0, failed(stdout, stderr)
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["world"] == 2
    got = report[method]
    assert got["status"] == "finished" and got["every_rank_same"]
    close(got["auc"], single(same_as))


def test_stop_divergence_and_mismatch_end_every_process_together(launched):
    rc, stdout, stderr = launched[0]["lib"]
    assert rc == 0, failed(stdout, stderr)
    report = json.loads(stdout.strip().splitlines()[-1])
    # only rank 1 was asked to stop; both stop, at the same step
    assert report["stop"][0] == report["stop"][1] and report["stop"][0][0] == "stopped", report["stop"]
    assert report["diverge"][0] == report["diverge"][1] and report["diverge"][0][0] == "diverged", report["diverge"]
    a, b = report["mismatch"]
    assert a == b and "process 1 has training rows = 101" in a and "process 0 has 100" in a, report["mismatch"]


# -- bad set-ups: a message, never a hang ------------------------------------------------------------

def _set(monkeypatch, **env):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_USE_AGENT_STORE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, str(v))


def test_half_set_environment_names_what_is_missing(monkeypatch):
    _set(monkeypatch, WORLD_SIZE=2, RANK=0)
    with pytest.raises(distributed.DistributedError) as e:
        distributed.read_env()
    assert "MASTER_ADDR, MASTER_PORT" in str(e.value) and "torchrun" in str(e.value)
    _set(monkeypatch, WORLD_SIZE=2, RANK=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=29500)
    with pytest.raises(distributed.DistributedError, match="RANK 2 does not fit WORLD_SIZE 2"):
        distributed.read_env()


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_rendezvous_nobody_joins_ends_with_a_message(monkeypatch):
    monkeypatch.setattr(distributed, "JOIN_TIMEOUT_S", 1.5)
    port = _free_port()
    with pytest.raises(distributed.DistributedError) as e:
        distributed._join("127.0.0.1", port, 0, 2)
    assert "Only some of the 2 processes joined the rendezvous" in str(e.value) and "MTR_DIST_JOIN_TIMEOUT" in e.value.fix
    with pytest.raises(distributed.DistributedError, match="could not reach the rendezvous"):
        distributed._join("127.0.0.1", _free_port(), 1, 2)


def test_processes_started_for_different_world_sizes_are_told_so(monkeypatch):
    monkeypatch.setattr(distributed, "JOIN_TIMEOUT_S", 20)
    port, errors = _free_port(), {}

    def join(rank, world):
        try:
            distributed._join("127.0.0.1", port, rank, world)
            errors[rank] = None
        except distributed.DistributedError as e:
            errors[rank] = str(e)
    threads = [threading.Thread(target=join, args=(0, 2)), threading.Thread(target=join, args=(1, 3))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all("disagree on how many there are" in (errors.get(r) or "") for r in (0, 1)), errors
    assert "WORLD_SIZE=3" in errors[0] and "WORLD_SIZE=2" in errors[1]


def test_cli_with_a_half_set_environment_exits_2_with_the_message(tmp_path):
    env = env_for(tmp_path)
    env.update(WORLD_SIZE="2", RANK="0")
    p = subprocess.run([sys.executable, "-m", "mtrlib", "train", *CLI_WORLD], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("error: WORLD_SIZE says this is one of several processes") and "torchrun" in p.stderr
    assert "Traceback" not in p.stderr


def test_a_method_that_cannot_run_distributed_is_refused_naming_it(monkeypatch, capsys):
    from mtrlib.__main__ import main
    from mtrlib.weighting.dwa import DWA
    monkeypatch.setattr(DWA, "distributed", False)
    with pytest.raises(distributed.DistributedError) as e:
        distributed.check_weighting("dwa")
    assert "'dwa' (DWA (Liu 2019)) cannot train on several processes" in str(e.value)
    distributed.check_weighting("gradnorm")  # today's methods all run
    for rank, printed in (("1", False), ("0", True)):  # refused before joining: rank 0 says it, once
        _set(monkeypatch, WORLD_SIZE=2, RANK=rank)
        assert main(["train", "--weighting", "dwa", *CLI_WORLD]) == 2
        err = capsys.readouterr().err
        assert ("error: The weighting method 'dwa'" in err) is printed, err


def test_shards_cover_every_row_once():
    for n in (0, 1, 7, 1024, 1025):
        for world in (1, 2, 3):
            parts = [distributed.shard(n, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_a_gradient_method_on_the_representation_is_refused_on_several_processes(monkeypatch, capsys):
    from mtrlib.__main__ import main
    cfg = TrainConfig(weighting="upgrad", grad_space="rep")
    with pytest.raises(distributed.DistributedError) as e:
        distributed.check_grad_space(cfg)
    assert "'upgrad'" in str(e.value) and "--grad-space rep" in str(e.value) and "leave out --grad-space rep" in e.value.fix
    distributed.check_grad_space(TrainConfig(weighting="upgrad"))  # the default space trains
    distributed.check_grad_space(TrainConfig(weighting="fixed", grad_space="rep"))  # rep means nothing to fixed
    _set(monkeypatch, WORLD_SIZE=2, RANK=0)
    assert main(["train", "--weighting", "upgrad", "--grad-space", "rep", *CLI_WORLD]) == 2
    assert "error: The weighting method 'upgrad'" in capsys.readouterr().err


def test_torchrun_with_context_features_and_a_position_tower(tmp_path):
    """Context features (the world's slot and device) and the bias tower under DDP: every parameter
    is read by every batch (an unread one stalls DDP), and the AUCs are the single process's."""
    extra = ["--world-context", "--position", "tower"]
    p = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "mtrlib", "train", *CLI_WORLD, *extra],
                       cwd=ROOT, env=env_for(tmp_path), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, failed(p.stdout, p.stderr)
    out = json.loads([ln for ln in p.stdout.splitlines() if ln.strip()][-1])
    assert out["status"] == "finished"
    cfg = TrainConfig(device="cpu", **SETTINGS)
    for k, v in {**WORLD, "context": True}.items():
        setattr(cfg.data.world, k, v)
    cfg.model.position = "tower"
    res, _ = run(cfg)
    close({t: m["auc"] for t, m in out["metrics"].items() if "auc" in m},
          {t: m["auc"] for t, m in res.metrics.items() if "auc" in m})
