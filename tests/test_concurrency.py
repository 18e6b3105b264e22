"""Issue 9, concurrency and load: many jobs and many sessions at once, in one process.

(a) Jobs through a fresh `JobLimiter(2, 4)`: all finish, never more than 2 train at once (sampled),
    each saved run holds its own config and its own history; the 7th job is refused readably.
(b) Four AppTest sessions press Train together: the extra ones show "Waiting for a free training
    slot", all finish, each session's job is its own (arch, seed, run folder).
(c) Peak RSS (VmHWM) of this process during (a) and (b): printed, and bounded.
(d) A reader lists the store in a tight loop while two jobs write: it never raises and never
    sees a half-written run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import mtrlib.jobs as jobs
from mtrlib.jobs import BusyError, Job, JobLimiter
from mtrlib.runs import list_runs, read_history

from _mtr import PAGES, shown, tiny_cfg

ROOT = Path(__file__).resolve().parents[1]
RSS_BOUND_MB = 4096
PEAKS: dict[str, float] = {}


def vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_hwm() -> bool:
    """Start a fresh peak (Linux: writing 5 to clear_refs resets VmHWM to the current RSS)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.fixture
def peak(request, capsys):
    """Measure this test's peak RSS; print it (it goes in the README's limits table)."""
    fresh = reset_hwm()
    yield
    mb = vm_hwm_mb()
    if mb is None:
        return
    PEAKS[request.node.name] = mb
    with capsys.disabled():
        print(f"\n[peak RSS] {request.node.name}: {mb:,.0f} MB "
              f"({'since the test started' if fresh else 'process lifetime'})")
    assert mb < RSS_BOUND_MB, f"peak RSS {mb:.0f} MB"


def wait_all(js, timeout=180, on_tick=None):
    t0 = time.time()
    while any(j.active for j in js):
        if on_tick is not None:
            on_tick()
        assert time.time() - t0 < timeout, [j.state for j in js]
        time.sleep(0.02)


def check_run_is_its_own(job: Job) -> None:
    """The folder the job wrote holds the job's own config, tasks and every one of its steps."""
    assert job.run_path is not None and job.save_error is None, job.save_error
    path = Path(job.run_path)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model"]["arch"] == job.cfg.model.arch
    assert cfg["seed"] == job.cfg.seed and cfg["epochs"] == job.cfg.epochs
    meta = json.loads((path / "meta.json").read_text())
    assert meta["status"] == "finished" and meta["arch"] == job.cfg.model.arch
    assert meta["task_names"] == list(job.prepared.task_names)
    h = read_history(path / "history.jsonl")
    assert len(h.steps) == len(job.steps) > 0
    assert len(h.epochs) == len(job.epochs) == job.cfg.epochs
    loss = f"loss/{job.prepared.task_names[0]}"
    assert h.steps[loss].tolist() == pytest.approx([s[loss] for s in job.steps], rel=1e-9, abs=1e-12)
    assert h.steps["step"].tolist() == [s["step"] for s in job.steps]


# ---------------------------------------------------------------- (a) the limiter


def test_jobs_share_two_slots_and_keep_their_own_history(tmp_path, peak):
    limiter = JobLimiter(max_running=2, max_queued=4)
    specs = [("shared-bottom", 1, 1), ("mmoe", 2, 2), ("ple", 3, 1), ("single", 4, 2)]
    js = [Job(tiny_cfg(a, world=PAGES, seed=s, epochs=e), store=tmp_path, limiter=limiter) for a, s, e in specs]
    for j in js:
        j.start()
    seen = {"max_training": 0, "max_slots": 0, "queued_seen": 0}

    def sample():
        training = sum(j.state in ("preparing", "running") for j in js)
        running, queued = limiter.counts()
        seen["max_training"] = max(seen["max_training"], training)
        seen["max_slots"] = max(seen["max_slots"], running)
        seen["queued_seen"] = max(seen["queued_seen"], queued)
        assert training <= 2 and running <= 2, (training, running, [j.state for j in js])

    wait_all(js, on_tick=sample)
    assert [j.state for j in js] == ["finished"] * 4, [(j.state, j.message) for j in js]
    assert seen["max_slots"] == 2 and seen["queued_seen"] >= 1, seen
    assert limiter.counts() == (0, 0), "every slot was given back"
    paths = {j.run_path for j in js}
    assert len(paths) == 4
    for j in js:
        check_run_is_its_own(j)
    listed = {r.path: r for r in list_runs(tmp_path)}
    assert set(listed) == paths
    for j in js:
        assert listed[j.run_path].arch == j.cfg.model.arch and listed[j.run_path].status == "finished"


def test_the_seventh_job_is_refused_with_a_message(tmp_path):
    """2 train + 4 wait = full: the 7th gets BusyError; stopping frees everything quickly."""
    limiter = JobLimiter(max_running=2, max_queued=4)
    js = [Job(tiny_cfg(world=PAGES, seed=k, epochs=500), store=tmp_path, limiter=limiter, save=False) for k in range(6)]
    try:
        for j in js:
            j.start()
        extra = Job(tiny_cfg(world=PAGES, seed=99, epochs=2), store=tmp_path, limiter=limiter, save=False)
        with pytest.raises(BusyError) as e:
            extra.start()
        msg = str(e.value)
        assert "busy" in msg and "2 trainings are running" in msg and "4 are waiting" in msg, msg
        assert "Try again in about" in msg, msg
        assert extra.state == "new" and extra._thread is None, "a refused job never starts a thread"
        assert sum(j.state == "queued" for j in js) >= 4
        assert [j.queue_position for j in js if j.queue_position] == [1, 2, 3, 4]
    finally:
        for j in js:
            j.stop()
        wait_all(js, timeout=60)
    assert {j.state for j in js} <= {"stopped"}, [j.state for j in js]
    assert sum(j.message == "Cancelled while waiting in the queue." for j in js) >= 4
    assert limiter.counts() == (0, 0)
    # and the limiter takes new work again
    again = Job(tiny_cfg(world=PAGES, seed=7, epochs=1), store=tmp_path, limiter=limiter, save=False).start()
    wait_all([again])
    assert again.state == "finished"


# ---------------------------------------------------------------- (b) four browser sessions


def test_four_sessions_train_at_once(store, monkeypatch, gate, peak):
    limiter = JobLimiter(max_running=2, max_queued=4)  # the module's default limits, isolated from other tests
    monkeypatch.setattr(jobs, "LIMITER", limiter)
    archs = ["shared-bottom", "mmoe", "ple", "single"]
    sessions = []
    for k, arch in enumerate(archs):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["cfg"] = tiny_cfg(arch, world=PAGES, seed=10 + k, epochs=1 + k % 2)
        at.run()
        at.switch_page("pages/train.py").run()
        assert not at.exception, at.exception
        sessions.append(at)
    for at in sessions:
        at.button(key="t_train").click().run()
        assert not at.exception, at.exception
    js = [at.session_state["job"] for at in sessions]
    assert len({id(j) for j in js}) == 4
    assert [j.state for j in js[2:]] == ["queued", "queued"]
    assert limiter.counts() == (2, 2)
    for pos, at in enumerate(sessions[2:], start=1):
        at.run()
        infos = shown(" ".join(i.value for i in at.info))
        assert f"Queued: place {pos} of the server's queue · estimated wait about" in infos, infos
        assert at.button(key="t_train").disabled and not at.button(key="t_stop").disabled
    gate.set()
    wait_all(js, on_tick=lambda: (limiter.counts()[0] <= 2) or pytest.fail("more than 2 jobs ran"))
    assert [j.state for j in js] == ["finished"] * 4, [(j.state, j.message) for j in js]
    for at, arch, j in zip(sessions, archs, js):
        at.run()
        assert not at.exception, at.exception
        assert at.session_state["job"] is j and j.cfg.model.arch == arch
        assert any("auc" in df.value.columns for df in at.dataframe)
        assert not at.button(key="t_train").disabled
        check_run_is_its_own(j)
    assert len({j.run_path for j in js}) == 4
    assert sorted(r.arch for r in list_runs(store)) == sorted(archs)


def test_a_full_server_is_a_readable_warning_on_the_train_page(store, monkeypatch):
    monkeypatch.setattr(jobs, "LIMITER", JobLimiter(max_running=0, max_queued=0))  # every slot taken
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["cfg"] = tiny_cfg(world=PAGES, seed=1, epochs=2)
    at.run()
    at.switch_page("pages/train.py").run()
    at.button(key="t_train").click().run()
    assert not at.exception, at.exception
    warnings = shown(" ".join(w.value for w in at.warning))
    assert "The server is busy" in warnings and "Try again in" in warnings, warnings
    assert at.session_state["job"] is None and not at.button(key="t_train").disabled
    assert list_runs(store) == []


def test_the_module_limiter_reads_its_limits_from_the_environment():
    env = {**os.environ, "MTR_MAX_JOBS": "3", "MTR_MAX_QUEUE": "7", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", "from mtrlib.jobs import LIMITER as L; print(L.max_running, L.max_queued)"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.split() == ["3", "7"], out


# ---------------------------------------------------------------- (d) a reader during writes


def test_listing_while_two_jobs_write_never_sees_a_broken_run(tmp_path):
    limiter = JobLimiter(max_running=2, max_queued=0)
    js = [Job(tiny_cfg(a, world=PAGES, seed=s, epochs=3), store=tmp_path, limiter=limiter)
          for a, s in (("mmoe", 1), ("ple", 2))]
    for j in js:
        j.start()
    listings, statuses = 0, set()
    while any(j.active for j in js):
        problems: list = []
        runs = list_runs(tmp_path, problems=problems)
        assert problems == [], [p.message for p in problems]
        for r in runs:
            statuses.add(r.status)
            assert r.status in ("running", "finished"), (r.status, r.reason)
            assert r.arch in ("mmoe", "ple") and r.tasks
        listings += 1
    assert [j.state for j in js] == ["finished", "finished"], [j.message for j in js]
    final = list_runs(tmp_path)
    assert len(final) == 2 and {r.status for r in final} == {"finished"}
    assert listings >= 20, listings
    assert "running" in statuses, "the reader saw the runs while they were being written"
