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
from collections.abc import Callable
from dataclasses import dataclass

from .config import TrainConfig
from .data import Dataset
from .errors import DataError, UserError
from .viz.series import Downsampled
from .runs import list_runs, recorded_training, run_key
from .runs.meta import RunInfo
from .runs.naming import model_summary
from .train import loop as trainer

ACTIVE_STATES = ("queued", "preparing", "running")


DEFAULT_JOB_S = 60.0  # a guess at one training's length until this server has finished one


def _mem_available_mb() -> float | None:
    """MemAvailable from /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _wait_text(seconds: float | None) -> str:
    if seconds is None:
        return "a minute or two"
    s = max(1, int(round(seconds)))
    return f"about {s} s" if s < 90 else f"about {round(s / 60)} min"


class JobLimiter:
    """At most `max_running` jobs train at once; up to `max_queued` more wait, served first come,
    first served. A waiting job's place and estimated wait come from the running jobs' progress
    and the mean length of the trainings this server has finished.

    A slot is handed to the head of the queue by whoever frees it (`release`, under the lock), so
    the order never depends on which waiting thread wakes first."""

    def __init__(self, max_running: int, max_queued: int, min_free_mb: float = 0.0, memory=_mem_available_mb):
        self.max_running, self.max_queued = max_running, max_queued
        self.min_free_mb, self._memory = min_free_mb, memory
        self._cv = threading.Condition()
        self._running: dict[str, float] = {}  # id -> when it got its slot
        self._queue: list[str] = []
        self._progress: dict[str, Callable[[], float]] = {}  # id -> fraction done (0..1), where known
        self._info: dict[str, dict] = {}  # id -> what the teacher's view shows (who, what)
        self._durations: list[float] = []  # the last finished trainings' lengths

    def enqueue(self, job_id: str, progress: Callable[[], float] | None = None, info: dict | None = None) -> None:
        """Take a slot, or a place at the end of the queue; BusyError (cause and wait) past the queue
        limit or without memory headroom."""
        with self._cv:
            if self._memory is not None and self.min_free_mb > 0:
                free = self._memory()
                if free is not None and free < self.min_free_mb:
                    raise BusyError(
                        f"The server is short of memory: {free:,.0f} MB free, and a training needs at least "
                        f"{self.min_free_mb:,.0f} MB. Try again in {_wait_text(self._next_free_s())}, when a "
                        "running training ends.")
            if len(self._running) >= self.max_running and len(self._queue) >= self.max_queued:
                raise BusyError(
                    f"The server is busy: {len(self._running)} trainings are running and {len(self._queue)} "
                    f"are waiting (the most this server queues). Try again in "
                    f"{_wait_text(self._next_free_s())}, or stop one of your own runs.")
            if progress is not None:
                self._progress[job_id] = progress
            self._info[job_id] = dict(info or {})
            if len(self._running) < self.max_running and not self._queue:
                self._running[job_id] = time.time()
            else:
                self._queue.append(job_id)

    def wait_turn(self, job_id: str, cancelled: threading.Event) -> bool:
        """Block until this job holds a slot; False (and its place given up) if cancelled first."""
        with self._cv:
            while True:
                if cancelled.is_set():
                    self._drop(job_id)
                    return False
                if job_id in self._running:
                    return True
                self._cv.wait(timeout=0.5)

    def _drop(self, job_id: str) -> None:
        """Forget a job and hand any freed slot on (called with the lock held)."""
        started = self._running.pop(job_id, None)
        done = self._progress[job_id]() >= 0.99 if job_id in self._progress else True
        if started is not None and done:
            self._durations = (self._durations + [time.time() - started])[-20:]
        if job_id in self._queue:
            self._queue.remove(job_id)
        self._progress.pop(job_id, None)
        self._info.pop(job_id, None)
        while self._queue and len(self._running) < self.max_running:
            self._running[self._queue.pop(0)] = time.time()
        self._cv.notify_all()

    def release(self, job_id: str) -> None:
        with self._cv:
            self._drop(job_id)

    def position(self, job_id: str) -> int | None:
        with self._cv:
            return self._queue.index(job_id) + 1 if job_id in self._queue else None

    def counts(self) -> tuple[int, int]:
        with self._cv:
            return len(self._running), len(self._queue)

    # -- the estimated wait ------------------------------------------------------------------------
    def mean_job_s(self) -> float:
        return sum(self._durations) / len(self._durations) if self._durations else DEFAULT_JOB_S

    def _remaining_s(self, job_id: str, now: float) -> float:
        """A running job's time left: its elapsed time scaled by what is left of its progress."""
        mean = self.mean_job_s()
        f = self._progress[job_id]() if job_id in self._progress else 0.0
        elapsed = now - self._running[job_id]
        if f <= 0.02:
            return max(1.0, mean - elapsed)
        return max(1.0, elapsed * (1 - min(f, 1.0)) / f)

    def _slot_times(self) -> list[float]:
        now = time.time()
        times = sorted(self._remaining_s(j, now) for j in self._running)
        return sorted(times + [0.0] * max(0, self.max_running - len(times)))

    def _next_free_s(self) -> float | None:
        return self._slot_times()[0] if self.max_running > 0 else None

    def eta(self, job_id: str) -> float | None:
        """Seconds until a queued job should get its slot: each job ahead takes the earliest free
        slot and holds it for the mean training length. None when it is not waiting."""
        with self._cv:
            if job_id not in self._queue or self.max_running <= 0:
                return None
            slots, mean = self._slot_times(), self.mean_job_s()
            for _ in range(self._queue.index(job_id)):
                t = slots.pop(0)
                slots = sorted(slots + [t + mean])
            return slots[0]

    def board(self) -> list[dict]:
        """The server's queue for the teacher: running first, then waiting in order."""
        with self._cv:
            rows = [{"state": "training", "place": None, **self._info.get(j, {})} for j in self._running]
            rows += [{"state": "waiting", "place": k + 1, **self._info.get(j, {})} for k, j in enumerate(self._queue)]
            return rows


class BusyError(UserError):
    """Too many jobs running and waiting, or too little memory: the message says why and how long."""


def _failure(e: Exception) -> str:
    """What a job (and its run) says when it fails: bad data as it is, anything else as a bug."""
    return str(e) if isinstance(e, UserError) else f"Training failed unexpectedly: {type(e).__name__}: {e}"


# A class of 60 fits in the queue; below MTR_MIN_FREE_MB of free memory a new training is refused.
LIMITER = JobLimiter(int(os.environ.get("MTR_MAX_JOBS", "2")), int(os.environ.get("MTR_MAX_QUEUE", "60")),
                     min_free_mb=float(os.environ.get("MTR_MIN_FREE_MB", "300")))


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
                 limiter: JobLimiter | None = None, save: bool = True, owner: str | None = None,
                 who: str = ""):
        self.id = uuid.uuid4().hex[:12]
        self.owner = owner  # the session that started it (runs.owner): written to meta.json
        self.who = who  # how the teacher's queue view names that session
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
        self.limiter.enqueue(self.id, progress=self.fraction,
                             info={"who": self.who, "what": self.name or model_summary(self.cfg), "seed": self.cfg.seed})
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

    def fraction(self) -> float:
        """How much of the training is done (0..1), for the queue's wait estimate."""
        if self.state in ("finished", "diverged"):
            return 1.0
        return min(1.0, self.progress.epoch / max(1, self.progress.epochs))

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
                                                reason=_failure, owner=self.owner)
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
                    "eta_s": self.limiter.eta(self.id),
                    "save_error": self.save_error, "run_path": self.run_path}


# -- one training per setup on this server ------------------------------------------------------------

@dataclass
class Ticket:
    """What a press of Train got, decided at once: `started` (training now), `queued` (waiting at
    `job.queue_position`), `attached` (someone else's identical job, watched live), `done` (an
    identical finished run, opened at once) or `refused` (`message` says why and how long)."""
    kind: str
    message: str = ""
    job: Job | None = None
    run: RunInfo | None = None
    at: float = 0.0  # when it was answered
    key: str = ""  # the run_key: where a press watching a lesson's cell finds its run when done
    setup: str = ""  # the pressing page's config (JSON): the page drops an answer about another setup


class SharedRuns:
    """Identical setups (same `runs.run_key`: setup group, seed, data fingerprint) are trained once
    per server: a second press attaches to the live job, or opens the finished run.

    `claim`/`finish` let a sweep cell (a lesson, a front) take part: while it trains a key, a press
    or another sweep waits for that run instead of training it again."""

    def __init__(self):
        self._lock = threading.Lock()
        self._live: dict[str, Job] = {}
        self._claims: dict[str, threading.Event] = {}

    def submit(self, cfg: TrainConfig, dataset: Dataset, *, store=None, owner: str | None = None, who: str = "",
               limiter: JobLimiter | None = None, fresh: bool = False) -> Ticket:
        """Answer a press now (never blocks on training). `fresh=True` trains a new run even when
        an identical one finished (the "Train again" button); a live identical job is still shared."""
        key = run_key(cfg, dataset)
        with self._lock:
            live = self._live.get(key)
            if live is not None and live.active:
                return Ticket("attached", f"The same setup is training for {live.who or 'another session'} "
                                          "on this server: its live curves are shown here.", job=live, at=time.time())
            if key in self._claims:
                return Ticket("attached", "A lesson or sweep on this server is training this exact setup now: "
                                          "its run opens here when it is done.", key=key, at=time.time())
            if not fresh:
                done = finished_run(key, store)
                if done is not None:
                    when = time.strftime("%H:%M", time.localtime(done.created))
                    who_ = "you" if owner is not None and done.owner == owner else "someone else"
                    return Ticket("done", f"This setup was trained by {who_} on this server at {when}: shown "
                                          "here. Press Train again for a fresh run.", run=done, at=time.time())
            job = Job(cfg, dataset, store=store, owner=owner, who=who, limiter=limiter)
            try:
                job.start()
            except BusyError as e:
                return Ticket("refused", str(e), at=time.time())
            self._live[key] = job
            self._live = {k: j for k, j in self._live.items() if j.active}
            place = job.queue_position
            return Ticket("queued" if place else "started",
                          f"Queued at place {place}." if place else "Training started.", job=job, at=time.time())

    def live(self) -> list[Job]:
        with self._lock:
            return [j for j in self._live.values() if j.active]

    def claim(self, key: str) -> threading.Event | None:
        """For a sweep cell about to train `key`: None if it is now the caller's to train (call
        `finish(key)` after), else an Event set when whoever trains it now is done."""
        with self._lock:
            live = self._live.get(key)
            if live is not None and live.active:
                ev = threading.Event()

                def watch():
                    live.join()
                    ev.set()
                threading.Thread(target=watch, name=f"mtr-watch-{live.id}", daemon=True).start()
                return ev
            if key in self._claims:
                return self._claims[key]
            self._claims[key] = threading.Event()
            return None

    def finish(self, key: str) -> None:
        with self._lock:
            ev = self._claims.pop(key, None)
        if ev is not None:
            ev.set()

    def claimed(self, key: str) -> bool:
        with self._lock:
            return key in self._claims


def finished_run(key: str, store=None) -> RunInfo | None:
    """The newest finished run in the store with this `run_key` (with test metrics), or None."""
    group, seed, fp = key.rsplit("/", 2)
    for r in list_runs(store):
        if r.group == group and str(r.seed) == seed and r.fingerprint == fp and r.status == "finished" and r.metrics:
            return r
    return None


SHARED = SharedRuns()
