"""Issue 27, a whole classroom on one server: identical setups trained once and shared, a FIFO
queue with place and wait, no press left unanswered, and run ownership with a teacher token.

Every state is proven from recorded evidence (job objects, tickets, meta.json, the page's text),
never from timing.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import mtrlib.jobs as jobs
from mtrlib.data import make_world
from mtrlib.experiments import Sweep, run_sweep
from mtrlib.jobs import BusyError, JobLimiter, SharedRuns, finished_run
from mtrlib.runs import RunError, Visitor, delete_run, list_runs, read_meta, recorded_training, rename_run, run_key
from mtrlib.runs.owner import may_change

from _mtr import PAGES, shown, tiny_cfg, tiny_prep

ROOT = Path(__file__).resolve().parents[1]
ALICE, BOB = Visitor("a" * 16), Visitor("b" * 16)
TEACHER = Visitor("t" * 16, teacher=True)


def wait_jobs(js, timeout=180):
    for j in js:
        assert j.join(timeout), (j.state, j.message)


# ---------------------------------------------------------------- ownership


@pytest.fixture
def owned_run(store):
    """One finished run started by ALICE's session."""
    cfg = tiny_cfg(world=PAGES, seed=5, epochs=1)
    res, w = recorded_training(cfg, tiny_prep(cfg), store=store, owner=ALICE.owner)
    assert w.saved and res.status == "finished"
    return w.path


def test_a_student_cannot_change_another_students_run_and_the_teacher_can(owned_run, monkeypatch):
    monkeypatch.setenv("MTR_TEACHER_TOKEN", "sesame")
    assert json.loads((owned_run / "meta.json").read_text())["owner"] == ALICE.owner
    with pytest.raises(RunError, match="belongs to another session"):
        rename_run(owned_run, "mine now", visitor=BOB)
    with pytest.raises(RunError, match="only whoever started it, or the teacher"):
        delete_run(owned_run, visitor=BOB)
    assert read_meta(owned_run).name != "mine now" and owned_run.is_dir()
    assert not may_change(ALICE.owner, BOB), "Bob may not stop Alice's job either"
    assert rename_run(owned_run, "Alice's", visitor=ALICE).name == "Alice's"
    assert rename_run(owned_run, "kept for the class", visitor=TEACHER).name == "kept for the class"
    delete_run(owned_run, visitor=TEACHER)
    assert not owned_run.exists()


def test_a_run_without_owner_is_the_teachers_on_a_shared_server(store, monkeypatch):
    monkeypatch.setenv("MTR_TEACHER_TOKEN", "sesame")
    cfg = tiny_cfg(world=PAGES, seed=6, epochs=1)
    _, w = recorded_training(cfg, tiny_prep(cfg), store=store)  # the CLI (lesson --warm) writes no owner
    with pytest.raises(RunError, match="belongs to another session"):
        delete_run(w.path, visitor=ALICE)
    delete_run(w.path)  # the server's own shell (no visitor) is the teacher's already
    assert not w.path.exists()


def test_with_no_token_everyone_may_change_everything_as_before(owned_run, monkeypatch):
    monkeypatch.delenv("MTR_TEACHER_TOKEN", raising=False)
    assert rename_run(owned_run, "Bob renamed it", visitor=BOB).name == "Bob renamed it"
    delete_run(owned_run, visitor=BOB)
    assert not owned_run.exists()


def test_the_runs_page_refuses_a_students_delete_with_the_reason(owned_run, monkeypatch):
    monkeypatch.setenv("MTR_TEACHER_TOKEN", "sesame")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["visitor"] = BOB
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
    infos = shown(" ".join(i.value for i in at.info))
    assert "belongs to another session" in infos, infos
    at.checkbox(key=f"r_confirm_{owned_run.name}").check().run()
    at.button(key="r_delete").click().run()
    errors = shown(" ".join(e.value for e in at.error))
    assert "cannot delete" in errors and "the teacher" in errors, errors
    assert owned_run.is_dir()


# ---------------------------------------------------------------- identical setups are trained once


def test_a_second_identical_press_attaches_and_does_not_train_again(store, gate):
    limiter, shared = JobLimiter(2, 60), SharedRuns()
    cfg = tiny_cfg(world=PAGES, seed=1, epochs=1)
    ds = make_world(**cfg.data.world.to_dict())
    first = shared.submit(cfg, ds, store=store, owner=ALICE.owner, who="alice", limiter=limiter)
    second = shared.submit(tiny_cfg(world=PAGES, seed=1, epochs=1), ds, store=store, owner=BOB.owner, limiter=limiter)
    other_seed = shared.submit(tiny_cfg(world=PAGES, seed=2, epochs=1), ds, store=store, owner=BOB.owner,
                               limiter=limiter)
    assert first.kind == "started" and second.kind == "attached", (first, second)
    assert second.job is first.job, "the second press watches the first press's job"
    assert "training for alice" in second.message
    assert other_seed.kind == "started" and other_seed.job is not first.job, "another seed is another run"
    assert limiter.counts() == (2, 0)
    gate.set()
    wait_jobs([first.job, other_seed.job])
    runs = list_runs(store)
    assert len(runs) == 2 and sorted(r.seed for r in runs) == [1, 2], [(r.id, r.seed) for r in runs]
    key = run_key(cfg, ds)
    done = finished_run(key, store)
    assert done is not None and done.owner == ALICE.owner and done.fingerprint == key.rsplit("/", 1)[1]
    third = shared.submit(tiny_cfg(world=PAGES, seed=1, epochs=1), ds, store=store, owner=BOB.owner, limiter=limiter)
    assert third.kind == "done" and third.run.id == done.id and third.job is None
    assert "trained by someone else on this server at" in third.message and "Train again" in third.message
    fresh = shared.submit(tiny_cfg(world=PAGES, seed=1, epochs=1), ds, store=store, owner=BOB.owner,
                          limiter=limiter, fresh=True)
    assert fresh.kind == "started"
    wait_jobs([fresh.job])
    assert len(list_runs(store)) == 3 and read_meta(Path(fresh.job.run_path)).owner == BOB.owner


def test_other_data_with_the_same_shape_is_not_shared(store):
    cfg = tiny_cfg(world=PAGES, seed=1, epochs=1)
    a = make_world(**cfg.data.world.to_dict())
    b = make_world(**cfg.data.world.to_dict())
    b.interactions = b.interactions.iloc[::-1].reset_index(drop=True)  # same counts, other rows order
    assert run_key(cfg, a) != run_key(cfg, b) and run_key(cfg, a) == run_key(cfg, make_world(**cfg.data.world.to_dict()))


def test_a_lesson_cell_waits_for_the_identical_run_another_session_trains(store, monkeypatch):
    monkeypatch.setattr(jobs, "SHARED", SharedRuns())
    cfg = tiny_cfg(world=PAGES, seed=3, epochs=1)
    ds = make_world(**cfg.data.world.to_dict())
    key = run_key(cfg, ds)
    assert jobs.SHARED.claim(key) is None  # another session is training this exact run
    states, out = [], {}
    sweep = Sweep(cfg, seeds=[3])
    t = threading.Thread(target=lambda: out.setdefault("res", run_sweep(
        sweep, dataset=ds, store=store, limiter=JobLimiter(2, 60), on_progress=lambda p, c: states.append(p.state))))
    t.start()
    assert not t.join(timeout=0) and t.is_alive()
    _, w = recorded_training(cfg, tiny_prep(cfg), store=store)  # the other session's run
    jobs.SHARED.finish(key)
    t.join(120)
    cell = out["res"].cells[0]
    assert cell.reused and cell.run_id == w.id and cell.status == "finished", cell
    assert "sharing" in states and len(list_runs(store)) == 1, "trained once, by the first session"


# ---------------------------------------------------------------- the queue


def test_the_queue_serves_first_come_first_served_with_place_and_wait():
    limiter = JobLimiter(max_running=1, max_queued=3)
    done = {"a": 0.5}
    limiter.enqueue("a", progress=lambda: done["a"], info={"who": "student 1"})
    for j in "bcd":
        limiter.enqueue(j, info={"who": f"student {j}"})
    assert [limiter.position(j) for j in "abcd"] == [None, 1, 2, 3]
    etas = [limiter.eta(j) for j in "bcd"]
    assert all(e is not None for e in etas) and etas == sorted(etas) and etas[0] < etas[1] < etas[2], etas
    board = limiter.board()
    assert [(r["state"], r["place"], r["who"]) for r in board] == [
        ("training", None, "student 1"), ("waiting", 1, "student b"), ("waiting", 2, "student c"),
        ("waiting", 3, "student d")]
    with pytest.raises(BusyError) as e:
        limiter.enqueue("e")
    msg = str(e.value)
    assert "The server is busy: 1 trainings are running and 3 are waiting" in msg and "Try again in about" in msg, msg
    served = []
    for _ in "abcd":
        running = [j for j in "abcd" if j not in served and limiter.position(j) is None]
        assert len(running) == 1, running
        served.append(running[0])
        limiter.release(running[0])
    assert served == list("abcd") and limiter.counts() == (0, 0)


def test_a_job_cancelled_in_the_queue_gives_its_place_up():
    limiter = JobLimiter(max_running=1, max_queued=3)
    limiter.enqueue("a")
    limiter.enqueue("b")
    limiter.enqueue("c")
    stop = threading.Event()
    stop.set()
    assert limiter.wait_turn("b", stop) is False
    assert limiter.position("c") == 1
    limiter.release("a")
    assert limiter.position("c") is None and limiter.counts() == (1, 0)


def test_without_memory_headroom_a_press_is_refused_with_cause_and_wait():
    limiter = JobLimiter(2, 60, min_free_mb=500, memory=lambda: 120.0)
    with pytest.raises(BusyError) as e:
        limiter.enqueue("x")
    msg = str(e.value)
    assert "short of memory: 120 MB free" in msg and "500 MB" in msg and "Try again in about" in msg, msg


def test_the_default_queue_holds_a_class_of_sixty():
    assert jobs.LIMITER.max_queued >= 60 or "MTR_MAX_QUEUE" in __import__("os").environ


# ---------------------------------------------------------------- no press goes unanswered


def page_says(at) -> str:
    return shown(" ".join(x.value for x in [*at.info, *at.warning, *at.success, *at.error]))


def test_a_refused_press_is_still_answered_after_the_next_rerun(store, monkeypatch):
    """The lost press, reproduced: the press was answered only in the output of the one script
    run that handled it (a refusal's st.warning; a job that the session learnt of in a second
    step). The next rerun of the page (the sidebar's timer, a widget, a reconnect) drew the page
    again with no job, no place and no message: what the student saw for 6 minutes. The answer
    now lives in the session (a ticket, set by the button's callback), so every rerun shows it."""
    monkeypatch.setattr(jobs, "SHARED", SharedRuns())
    monkeypatch.setattr(jobs, "LIMITER", JobLimiter(max_running=0, max_queued=0))  # every slot taken
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["cfg"] = tiny_cfg(world=PAGES, seed=1, epochs=1)
    at.run()
    at.switch_page("pages/train.py").run()
    at.button(key="t_train").click().run()
    assert not at.exception, at.exception
    first = page_says(at)
    assert "The server is busy" in first and "Try again in" in first, first
    at.run()  # any later rerun of the page
    again = page_says(at)
    assert "The server is busy" in again and "Try again in" in again, f"the answer was lost: {again}"
    assert at.session_state["ticket"].kind == "refused" and at.session_state["job"] is None


def test_every_press_gets_one_of_the_four_answers(store, monkeypatch, gate):
    """Four sessions press Train on a server with one slot and a queue of one: the answers are
    running, queued at place 1, attached (the same setup as the first), refused with the reason;
    and each page says so."""
    monkeypatch.setenv("MTR_TEACHER_TOKEN", "sesame")  # a shared server: owners count
    limiter = JobLimiter(max_running=1, max_queued=1)
    monkeypatch.setattr(jobs, "LIMITER", limiter)
    monkeypatch.setattr(jobs, "SHARED", SharedRuns())
    seeds = [1, 2, 1, 4]
    sessions = []
    for seed in seeds:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["cfg"] = tiny_cfg(world=PAGES, seed=seed, epochs=1)
        at.run()
        at.switch_page("pages/train.py").run()
        sessions.append(at)
    for at in sessions:
        at.button(key="t_train").click().run()
        assert not at.exception, at.exception
    kinds = [at.session_state["ticket"].kind for at in sessions]
    assert kinds == ["started", "queued", "attached", "refused"], kinds
    said = [page_says(at) for at in sessions]
    assert "Queued: place 1 of the server's queue · estimated wait about" in said[1], said[1]
    assert "The same setup is training for" in shown(" ".join(c.value for c in sessions[2].caption)), said[2]
    assert "The server is busy" in said[3], said[3]
    assert sessions[2].button(key="t_stop").label == "Leave", "a watcher cannot stop the owner's job"
    gate.set()
    wait_jobs([sessions[0].session_state["job"], sessions[1].session_state["job"]])
    assert sorted(r.seed for r in list_runs(store)) == [1, 2], "the attached press trained nothing"
