"""The run store: round trip in a fresh process, killed runs, corrupt folders, an unwritable
store, concurrent writers with a reader, rename / delete, tampered weights."""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrlib import runs as runs_mod
from mtrlib.config import TrainConfig
from mtrlib.runs import store as runs_store  # the writer's files go through it
from mtrlib.runs import (UNSET, RunError, RunInfo, RunMeta, RunWriter, default_store, delete_run, effective_status,
    list_runs, load_run, recorded_training, rename_run, run_config_text, run_history, train_and_save)
from mtrlib.train.loop import prepare

from _mtr import STORE, tiny_cfg

ROOT = Path(__file__).resolve().parents[1]


def env_for(store: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["MTR_RUN_STORE"] = str(store)
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    cfg = tiny_cfg(world=STORE, epochs=2, batch_size=256)
    prep = prepare(cfg)
    result, writer = train_and_save(cfg, prep, store=store)
    assert writer.saved and writer.error is None
    return store, cfg, prep, result, writer


def test_default_store_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MTR_RUN_STORE", raising=False)
    assert default_store() == ROOT / "data" / "runs"
    monkeypatch.setenv("MTR_RUN_STORE", str(tmp_path / "x"))
    assert default_store() == tmp_path / "x"


def test_round_trip_in_a_fresh_process(trained):
    store, cfg, prep, result, writer = trained
    run = load_run(writer.id, store=store)
    assert run.status == "finished" and run.config.to_dict() == cfg.to_dict()
    assert run.task_names == ["click", "like", "dwell"]
    assert len(run.history.steps) == len(result.history.steps) and len(run.history.epochs) == cfg.epochs
    assert run.metrics["click"]["auc"] == pytest.approx(result.metrics["click"]["auc"])
    assert set(run.baseline) == set(result.baseline)
    assert list(run.items.index) == prep.space.items.ids
    assert {"title", "genre", "popularity", "true_genre", "cold"} <= set(run.items.columns)
    te = run.test
    rows = slice(0, 60)
    with torch.inference_mode():
        result.model.eval()
        mine = result.model.predict(result.model(torch.as_tensor(te["user"][rows]),
                                                 torch.as_tensor(te["item"][rows]))).numpy()
    code = textwrap.dedent(f"""
        import json, sys, torch
        from mtrlib.runs import load_run
        run = load_run({str(writer.path)!r})
        te = run.test
        with torch.inference_mode():
            p = run.model.predict(run.model(torch.as_tensor(te["user"][:60]), torch.as_tensor(te["item"][:60])))
        print(json.dumps(p.tolist()))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_for(store), timeout=120)
    assert out.returncode == 0, out.stderr
    theirs = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(theirs, mine, rtol=1e-5, atol=1e-6)


def test_listing_and_default_name(trained):
    store, cfg, prep, result, writer = trained
    problems: list = []
    infos = list_runs(store, problems=problems)
    assert problems == []
    info = next(r for r in infos if r.id == writer.id)
    assert re.fullmatch(r"MMoE 4x\[64,32\] · click,like,dwell · \d\d:\d\d:\d\d", info.name)
    assert info.status == "finished" and info.arch == "mmoe" and info.tasks == ["click", "like", "dwell"]
    assert set(info.metrics["click"]) == {"auc", "logloss"} and "rmse" in info.metrics["dwell"]
    assert info.epochs_done == cfg.epochs and info.has_weights
    row = info.to_row()
    assert row["click auc"] == pytest.approx(result.metrics["click"]["auc"]) and row["arch"] == "MMoE"


def test_rename_and_delete(tmp_path):
    cfg = tiny_cfg(world=STORE, epochs=1, batch_size=256)
    prep = prepare(cfg)
    res1, w1 = train_and_save(cfg, prep, store=tmp_path)
    res2, w2 = train_and_save(cfg, prep, store=tmp_path, name="second")
    assert w1.id != w2.id
    assert [r.id for r in list_runs(tmp_path)] == [w2.id, w1.id]  # newest first
    rename_run(w1.id, "  my   baseline ", store=tmp_path)
    assert load_run("my baseline", store=tmp_path).id == w1.id  # by name
    assert load_run(w2.id[:-3], store=tmp_path).id == w2.id  # by unique id prefix
    with pytest.raises(RunError, match="empty"):
        rename_run(w1.id, "   ", store=tmp_path)
    delete_run("my baseline", store=tmp_path)
    assert [r.id for r in list_runs(tmp_path)] == [w2.id]
    with pytest.raises(RunError, match="No run"):
        load_run(w1.id, store=tmp_path)
    foreign = tmp_path / "not-a-run"
    foreign.mkdir()
    with pytest.raises(RunError):
        delete_run(foreign)
    assert foreign.exists()


def test_sigkill_leaves_an_interrupted_run(trained, tmp_path):
    store = trained[0]
    before = {r.id: r.status for r in list_runs(store)}
    cmd = [sys.executable, "-m", "mtrlib", "train", "--users", "1500", "--items", "300", "--epochs", "500",
           "--model", "shared-bottom", "--shared", "32", "--log-every", "2", "--quiet", "--store", str(store)]
    proc = subprocess.Popen(cmd, env=env_for(store), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        run_dir = None
        while time.time() < deadline:
            new = [p for p in store.iterdir() if not p.name.startswith(".") and p.name not in before]
            if new and (new[0] / "checkpoint.safetensors").exists():
                run_dir = new[0]
                hist = (run_dir / "history.jsonl").read_text()
                if '"kind": "epoch"' in hist and hist.count('"kind": "step"') >= 3:
                    break
            time.sleep(0.2)
        assert run_dir is not None, proc.stderr.read().decode() if proc.poll() is not None else "no run appeared"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    problems: list = []
    infos = {r.id: r for r in list_runs(store, problems=problems)}
    assert problems == []
    info = infos[run_dir.name]
    assert info.status == "interrupted" and "ended without finishing" in info.reason
    run = load_run(run_dir)
    assert len(run.history.epochs) >= 1 and len(run.history.steps) >= 3
    assert run.from_checkpoint and run.model is not None  # weights of the last finished epoch
    assert {k: v.status for k, v in infos.items() if k in before} == before  # nothing else touched


def test_corrupt_and_foreign_folders_are_skipped_and_reported(trained, tmp_path):
    store, cfg, prep, result, writer = trained
    bad = tmp_path / "store"
    bad.mkdir()
    import shutil
    shutil.copytree(writer.path, bad / writer.id)
    (bad / "empty").mkdir()
    (bad / "garbage").mkdir()
    (bad / "garbage" / "meta.json").write_bytes(b"\x00\xff{not json")
    (bad / "foreign").mkdir()
    (bad / "foreign" / "meta.json").write_text(json.dumps({"format": "something-else"}))
    (bad / "README.txt").write_text("hello")
    (bad / ".creating-x").mkdir()  # hidden: in progress, silently ignored
    problems: list = []
    infos = list_runs(bad, problems=problems)
    assert [r.id for r in infos] == [writer.id]
    assert sorted(p.path.name for p in problems) == ["README.txt", "empty", "foreign", "garbage"]
    assert all(p.message for p in problems)
    # a torn last history line (a crash mid-write) is ignored
    with open(bad / writer.id / "history.jsonl", "ab") as f:
        f.write(b'{"kind": "step", "step": 99')
    assert len(load_run(bad / writer.id).history.steps) == len(result.history.steps)


def test_tampered_weights_are_refused_never_unpickled(trained, tmp_path):
    store, cfg, prep, result, writer = trained
    import shutil
    target = tmp_path / "run"
    shutil.copytree(writer.path, target)
    w = target / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:200])  # truncated
    with pytest.raises(RunError, match="damaged"):
        _ = load_run(target).model  # loading the weights is what is refused
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"x": Evil()}, w)  # a pickle under the weights' name
    with pytest.raises(RunError, match="damaged or not a safetensors"):
        _ = load_run(target).model  # loading the weights is what is refused
    assert not marker.exists()
    # right format, wrong tensors
    from safetensors.numpy import save_file
    save_file({"foo": np.zeros(3, np.float32)}, str(w))
    with pytest.raises(RunError, match="do not fit"):
        _ = load_run(target).model  # loading the weights is what is refused


def test_unwritable_store_keeps_training_in_memory(tmp_path):
    cfg = tiny_cfg(world=STORE, epochs=1, batch_size=256)
    prep = prepare(cfg)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result, writer = train_and_save(cfg, prep, store=blocker / "runs")
    assert result.status == "finished" and result.metrics["click"]["auc"] > 0
    assert not writer.saved and "not writable" in writer.error and "NOT saved" in writer.error
    assert writer.finish(result) is None


def test_permission_denied_and_disk_full_are_reported(tmp_path, monkeypatch):
    cfg = tiny_cfg(world=STORE, epochs=2, batch_size=256)
    prep = prepare(cfg)
    real = runs_mod.atomic_write

    def denied(path, data, fsync=False):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(runs_store, "atomic_write", denied)
    w = RunWriter(cfg, prep, store=tmp_path / "a")
    assert not w.saved and "permission denied" in w.error
    assert list_runs(tmp_path / "a") == []  # nothing half-made is visible

    calls = {"n": 0}

    def full_later(path, data, fsync=False):
        if Path(path).name == "checkpoint.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        calls["n"] += 1
        return real(path, data, fsync)

    monkeypatch.setattr(runs_store, "atomic_write", full_later)
    result, writer = train_and_save(cfg, prep, store=tmp_path / "b")
    assert result.status == "finished" and len(result.history.epochs) == 2  # training went on
    assert not writer.saved and "disk is full" in writer.error
    # what was written before the failure still lists (as an unfinished run of a live process)
    infos = list_runs(tmp_path / "b")
    assert len(infos) == 1 and infos[0].status == "running"


def test_effective_status_rules():
    now = time.time()
    me = {"status": "running", "pid": os.getpid(), "pid_start": runs_mod.proc_start(os.getpid()),
          "host": socket.gethostname(), "heartbeat": now}
    assert effective_status(me, now)[0] == "running"
    assert effective_status({**me, "pid_start": -5}, now)[0] == "interrupted"  # pid reused by another process
    assert effective_status({**me, "heartbeat": now - 2 * runs_mod.STALE_S}, now)[0] == "interrupted"
    other_host = {**me, "host": "elsewhere", "pid": 999999999}
    assert effective_status(other_host, now)[0] == "running"
    assert effective_status({**other_host, "heartbeat": now - 2 * runs_mod.STALE_S}, now)[0] == "interrupted"
    assert effective_status({"status": "finished"}, now) == ("finished", "")


def test_concurrent_writers_and_a_reader(tmp_path):
    store = tmp_path / "store"
    code = textwrap.dedent("""
        import sys
        from mtrlib.config import TrainConfig
        from mtrlib.data import WorldConfig
        from mtrlib.runs import train_and_save
        from mtrlib.train.prepare import prepare
        for k in range(2):
            cfg = TrainConfig()
            cfg.data.world = WorldConfig(n_users=150, n_items=50, impressions_per_user=15, seed=int(sys.argv[1]) + k)
            cfg.model.arch = "shared-bottom"; cfg.epochs = 2; cfg.batch_size = 256; cfg.log_every = 1
            res, w = train_and_save(cfg, prepare(cfg), store=sys.argv[2])
            assert w.saved, w.error
            print(w.id, flush=True)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(s), str(store)], env=env_for(store),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (1, 10)]
    seen_ids, reads = set(), 0
    while any(p.poll() is None for p in procs):
        problems: list = []
        for info in list_runs(store, problems=problems):
            run = load_run(info.path)
            assert run.history is not None  # readable while being written
            assert run.config.model.arch == "shared-bottom"
            seen_ids.add(info.id)
            reads += 1
        assert problems == [], problems
        time.sleep(0.05)
    outs = [p.communicate() for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    ids = [line for o in outs for line in o[0].split()]
    assert len(ids) == len(set(ids)) == 4
    infos = list_runs(store)
    assert sorted(r.id for r in infos) == sorted(ids)
    for r in infos:
        run = load_run(r.path)
        assert r.status == "finished" and len(run.history.epochs) == 2
        assert run.history.steps["step"].is_monotonic_increasing
        assert run.model is not None
    assert reads > 0


# -- the package's own pieces: meta.json defined once, the life-cycle helper, the files pages read


def test_run_meta_writes_meta_json_exactly_and_reads_it_back(trained):
    store, cfg, prep, result, writer = trained
    raw = (writer.path / "meta.json").read_bytes()
    meta = json.loads(raw)
    assert list(meta) == list(RunMeta.json_keys())  # a finished run has every key, in RunMeta's order
    back = RunMeta.from_dict(meta)
    assert runs_store._json_bytes(back.to_dict()) == raw  # the same bytes
    assert back.status == "finished" and back.has_weights and back.device == result.device
    assert load_run(writer.path).meta == back
    with pytest.raises(KeyError, match="no key 'statsu'"):
        back.update(statsu="finished")


def test_an_old_run_without_newer_keys_and_with_unknown_ones_still_lists(tmp_path):
    old = {"format": "mtr-run", "version": 1, "id": "20230101-000000-mmoe-abcdef", "name": "old",
           "status": "finished", "created": 1.0e9, "tasks": ["click=clicked", "dwell=dwell:reg"],
           "summary": {"test": {"click": {"auc": 0.7}}}, "checkpoint_epoch": 3, "note": "ablation"}
    meta = RunMeta.from_dict(old)
    assert (meta.arch, meta.model, meta.epochs_done, meta.finished, meta.extra) == ("?", None, 0, UNSET,
                                                                                   {"note": "ablation"})
    assert meta.group is None  # written before groups: a group of one (RunInfo.group is its id)
    out = meta.to_dict()
    assert out["note"] == "ablation" and "finished" not in out and "start" not in out
    folder = tmp_path / "store" / old["id"]
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(old))
    problems: list = []
    [info] = list_runs(tmp_path / "store", problems=problems)
    assert problems == []
    assert isinstance(info, RunInfo) and (info.name, info.model, info.tasks) == ("old", "?", ["click", "dwell"])
    assert info.status == "finished" and info.has_weights and info.metrics == {"click": {"auc": 0.7}}
    assert info.group == old["id"]


def test_recorded_training_marks_a_failed_run_and_reraises(tmp_path):
    cfg = tiny_cfg(world=STORE, epochs=1, batch_size=256)
    prep = prepare(cfg)
    opened, seen = [], []

    def boom(e):
        seen.append(e["type"])
        if e["type"] == "step":
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        recorded_training(cfg, prep, store=tmp_path, name="doomed", callback=boom, opened=opened.append,
                          reason=lambda e: f"custom: {e}")
    [info] = list_runs(tmp_path)
    assert (info.name, info.status, info.reason) == ("doomed", "failed", "custom: boom")
    assert [w.path for w in opened] == [info.path] and seen == ["start", "step"]
    assert len(run_history(info.path).steps) == 1  # the writer had the event before the callback raised
    with pytest.raises(ZeroDivisionError):
        train_and_save(cfg, prep, store=tmp_path / "b", callback=lambda e: 1 / 0)
    assert list_runs(tmp_path / "b")[0].reason == "Training failed: ZeroDivisionError: division by zero"


def test_a_job_whose_training_raises_marks_its_run_failed(tmp_path, monkeypatch):
    import mtrlib.train.device as trainer  # resolve_device reads available_devices there
    from mtrlib.jobs import Job, JobLimiter

    monkeypatch.setattr(trainer, "available_devices", lambda: ["cpu"])  # so "cuda" is refused in train()
    cfg = tiny_cfg(world=STORE, epochs=1, batch_size=256)
    cfg.device = "cuda"
    job = Job(cfg, store=tmp_path, limiter=JobLimiter(1, 0)).start()
    job.join(timeout=120)
    assert job.state == "failed" and "Device 'cuda' is not available" in job.error
    assert job.save_error is None and job.run_path is not None
    [info] = list_runs(tmp_path)
    assert info.path == job.run_path and info.status == "failed" and info.reason == job.error


def test_run_history_and_config_text_of_a_folder(trained, tmp_path):
    store, cfg, prep, result, writer = trained
    h = run_history(writer.path)
    assert len(h.steps) == len(result.history.steps) and len(h.epochs) == cfg.epochs
    assert TrainConfig.from_json(run_config_text(writer.path)).to_dict() == cfg.to_dict()
    assert run_config_text(tmp_path) == "{}" and run_history(tmp_path).steps.empty
