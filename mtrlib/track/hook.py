"""The hook through which an outside tracker (MLflow: mtrlib.track.mlflow) sees every recorded run.

`recorded_training` asks `current()` for a tracker; with none (the default) nothing else
happens, so training is unchanged when tracking is off. A tracker is set for a block of code
with `using(tracker)` (a context variable: the CLI, a sweep, a test), or for the whole process
with `set_default(tracker)` (the app's sidebar toggle: its jobs train on threads of their own,
where a context variable set on the page's thread is not seen).

A tracker has `start(cfg, prep, name) -> TrackedRun | None`; a TrackedRun is a trainer
callback (`__call__(event)`) with `finish(result, folder)` and `fail(message)`. Neither may
raise into training: a tracking problem is a warning, never a lost run.
"""
from __future__ import annotations

import contextlib
import contextvars

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("mtr_tracker", default=None)
_DEFAULT = None


def current():
    """The tracker for runs trained here and now, or None."""
    t = _CURRENT.get()
    return t if t is not None else _DEFAULT


@contextlib.contextmanager
def using(tracker):
    """Runs recorded inside this block go to `tracker` (None: to no tracker, even a default)."""
    token = _CURRENT.set(tracker)
    try:
        yield tracker
    finally:
        _CURRENT.reset(token)


def set_default(tracker) -> None:
    """The process-wide tracker (None: off) for code that sets none with `using`."""
    global _DEFAULT
    _DEFAULT = tracker


def get_default():
    return _DEFAULT


__all__ = ["current", "using", "set_default", "get_default"]
