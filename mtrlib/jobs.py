"""A training job on a background thread, UI-agnostic.

The dashboard keeps one `Job` per browser session in its session state and polls it; the
thread never touches the UI. A module-level `JobLimiter` caps how many jobs train at once
in this process (a shared teaching server must not melt): extra jobs wait in a short queue,
and past the queue they are refused with a message.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
import uuid
from dataclasses import dataclass

from .config import TrainConfig
from .data import Dataset
from .errors import DataError, UserError
from .viz.series import Downsampled
from .runs import recorded_training
from .train import loop as trainer

ACTIVE_STATES = ("queued", "preparing", "running")


class JobLimiter:
    """At most `max_running` jobs train at once; up to `max_queued` more wait their turn."""

    def __init__(self, max_running: int, max_queued: int):
        self.max_running, self.max_queued = max_running, max_queued
        self._cv = threading.Condition()
        self._running: set[str] = set()
        self._queue: list[str] = []

    def enqueue(self, job_id: str) -> None:
        with self._cv:
            if len(self._running) < self.max_running and not self._queue:
                self._running.add(job_id)
                return
            if len(self._queue) >= self.max_queued:
                raise BusyError(
                    f"The server is busy: {len(self._running)} trainings are running and {len(self._queue)} "
                    "are waiting. Try again in a minute, or stop one of your own runs."
                )
            self._queue.append(job_id)

    def wait_turn(self, job_id: str, cancelled: threading.Event) -> bool:
        """Block until this job may run; False if it was cancelled while waiting."""
        with self._cv:
            while job_id not in self._running:
                if cancelled.is_set():
                    if job_id in self._queue:
                        self._queue.remove(job_id)
                    self._cv.notify_all()
                    return False
                if self._queue and self._queue[0] == job_id and len(self._running) < self.max_running:
                    self._queue.pop(0)
                    self._running.add(job_id)
                    return True
                self._cv.wait(timeout=0.2)
            return True

    def release(self, job_id: str) -> None:
        with self._cv:
            self._running.discard(job_id)
            if job_id in self._queue:
                self._queue.remove(job_id)
            self._cv.notify_all()

    def position(self, job_id: str) -> int | None:
        with self._cv:
            return self._queue.index(job_id) + 1 if job_id in self._queue else None

    def counts(self) -> tuple[int, int]:
        with self._cv:
            return len(self._running), len(self._queue)


class BusyError(RuntimeError):
    """Too many jobs running and waiting."""


def _failure(e: Exception) -> str:
    """What a job (and its run) says when it fails: bad data as it is, anything else as a bug."""
    return str(e) if isinstance(e, UserError) else f"Training failed unexpectedly: {type(e).__name__}: {e}"


LIMITER = JobLimiter(int(os.environ.get("MTR_MAX_JOBS", "2")), int(os.environ.get("MTR_MAX_QUEUE", "4")))


@dataclass
class Progress:
    epoch: float = 0.0
    step: int = 0
    steps_per_epoch: int = 0
    epochs: int = 0
    samples_per_s: float = 0.0


class Background:
    """Work on a daemon thread that can be asked to stop (a training `Job`, a sweep's `SweepJob`):
    the subclass sets `self._stop` (an Event) and `self._thread`, and defines `_run` and `active`."""

    def _launch(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the work to stop; training ends within one batch and what was trained is kept."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.active


class Job(Background):
    """Prepare data and train one config on a thread; keeps every event for polling readers."""

    def __init__(self, cfg: TrainConfig, dataset: Dataset | None = None, *, store=None, name: str | None = None,
                 limiter: JobLimiter | None = None, save: bool = True):
        self.id = uuid.uuid4().hex[:12]
        self.cfg = cfg
        self.dataset = dataset
        self.store = store
        self.name = name or cfg.name
        self.save = save
        self.limiter = limiter or LIMITER
        self.state = "new"
        self.message = ""
        self.error: str | None = None
        # bounded live series for the charts (a few hundred rows whatever the run length);
        # the full history is in the run folder
        self.steps = Downsampled()
        self.epochs = Downsampled()
        self.progress = Progress(epochs=cfg.epochs)
        self.result = None
        self.prepared = None
        self.run_path = None
        self.save_error: str | None = None
        self.started_at = None
        self.first_point_at = None
        self.finished_at = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._writer = None  # the RunWriter once opened; None when not saving or the store is unusable

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> Job:
        """Queue the job (raises BusyError when the server is full) and start its thread."""
        self.limiter.enqueue(self.id)
        self.state = "queued"
        self.started_at = time.time()
        self._launch(f"mtr-job-{self.id}")
        return self

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def queue_position(self) -> int | None:
        return self.limiter.position(self.id)

    # -- the thread ------------------------------------------------------------------------------
    def _event(self, e: dict) -> None:
        with self._lock:
            t = e.get("type")
            if t == "start":
                self.state = "running"
                self.progress.steps_per_epoch = e["steps_per_epoch"]
                self.message = f"Training on {e['device']} · {e['n_train']:,} examples · {e['parameters']:,} parameters"
            elif t == "step":
                self.steps.append({k: v for k, v in e.items() if k != "type"})
                self.progress.step, self.progress.epoch = e["step"], e["epoch"]
                self.progress.samples_per_s = e["samples_per_s"]
                if self.first_point_at is None:
                    self.first_point_at = time.time()
            elif t == "epoch":
                self.epochs.append({k: v for k, v in e.items() if k != "type"})

    def _run(self) -> None:
        try:
            if not self.limiter.wait_turn(self.id, self._stop):
                self.state, self.message = "stopped", "Cancelled while waiting in the queue."
                return
            self.state = "preparing"
            self.message = "Preparing data (labels, negatives, split, encoding)…"

            def text_progress(done, total):
                self.message = f"Encoding item text with the language model: {done:,}/{total:,}"
                if self._stop.is_set():
                    raise DataError("Stopped while encoding item text.")

            prep = trainer.prepare(self.cfg, self.dataset, text_progress=text_progress)
            self.prepared = prep
            res = self._train(prep)
            self.result = res
            self.message = res.reason or {"finished": "Finished."}.get(res.status, res.status)
            self.state = res.status
        except Exception as e:  # bad data is said as it is; a bug readably, and the server stays up
            self.error = self.message = _failure(e)
            self.state = "failed"
            if not isinstance(e, UserError):
                self.traceback = traceback.format_exc()
        finally:
            self.finished_at = time.time()
            self.limiter.release(self.id)

    def _train(self, prep):
        """Train, recorded as a run unless `save` is off; a store that cannot even be opened
        trains in memory (`save_error` says so)."""

        if self.save:
            try:
                res, writer = recorded_training(self.cfg, prep, store=self.store, name=self.name,
                                                callback=self._event, stop=self._stop, opened=self._opened,
                                                reason=_failure)
            except Exception as e:
                if self._writer is not None:
                    raise  # training failed; the run is marked failed
                self.save_error = f"The run store is not writable, so this run will not be saved: {e}"
            else:
                self.save_error = self.save_error or writer.error
                return res
        return trainer.train(self.cfg, prep, callback=self._event, stop=self._stop)

    def _opened(self, writer) -> None:
        self._writer = writer
        self.run_path = writer.path
        if writer.error:
            self.save_error = writer.error
            self.run_path = None  # the folder was never created: do not point at it

    # -- for pollers ------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """A consistent copy of what a UI needs to draw (cheap; called about once a second)."""
        with self._lock:
            return {"state": self.state, "message": self.message, "error": self.error,
                    "steps": self.steps.rows(), "epochs": self.epochs.rows(),
                    "progress": Progress(**vars(self.progress)), "queue_position": self.queue_position,
                    "save_error": self.save_error, "run_path": self.run_path}
