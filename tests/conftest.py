"""Fixtures shared by the test modules (plain helpers to call are in tests/_mtr.py).

- `store`: a fresh, empty run store for the test, also set as MTR_RUN_STORE (what the pages
  and the CLI read). A module may override it with a store of its own (test_reliability_ui:
  one holding a saved run).
- `one_thread`: one intra-op torch thread for tests that run torch outside `train` (which
  picks its own thread count); use it with `pytestmark = pytest.mark.usefixtures("one_thread")`.
- `tiny_prepared`: the TINY world (_mtr.tiny_cfg()) prepared once per session, shared with
  _mtr.tiny_prep's cache. Read it, never change it in place.

In CI (`CI=true`) the real data must be beside the checkout (../shared/data/ml-latest-small):
without it the real-data tests would skip, and a skip must not pass for a run. On a laptop
without it they skip with the path they looked in.
"""
from __future__ import annotations

import threading

import pytest

import mtrlib.train.loop as trainer

import _movielens as ml
from _mtr import in_ci, tiny_cfg, tiny_prep


def pytest_sessionstart(session):
    if in_ci() and not ml.available():
        raise pytest.UsageError(f"CI=true but ml-latest-small is not at {ml.ML_DIR}: the real-data tests would "
                                "skip. Put the shared folder beside the checkout (../shared/data/ml-latest-small).")


@pytest.fixture
def store(tmp_path, monkeypatch):
    s = tmp_path / "runs"
    monkeypatch.setenv("MTR_RUN_STORE", str(s))
    return s


@pytest.fixture
def one_thread():
    """A busy machine then does not stall every small operation on a descheduled thread."""
    from mtrlib.train.device import cpu_compute
    with cpu_compute(1):
        yield


@pytest.fixture(scope="session")
def tiny_prepared():
    return tiny_prep(tiny_cfg())  # tasks click, like|click, dwell:reg|click


@pytest.fixture
def gate(monkeypatch):
    """Jobs hold their slot in `prepare` until the gate opens, so who runs and who queues is
    deterministic (tests/test_concurrency.py, tests/test_classroom.py)."""
    opened = threading.Event()
    real = trainer.prepare

    def held(*a, **k):
        opened.wait(60)
        return real(*a, **k)

    monkeypatch.setattr(trainer, "prepare", held)
    yield opened
    opened.set()
