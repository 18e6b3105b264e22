"""Running a sweep: its cells one after another, each as a saved run, through the job limiter.

`run_sweep` trains the cells of a `Sweep` (mtrlib.experiments.sweep) seed-major, reusing the
finished runs already in the store (resumable) and stopping cleanly when asked; `SweepJob` runs
one on a background thread for the app. The rules are in the `sweep` module's docstring.
"""
from __future__ import annotations

import json
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import asdict
from collections.abc import Callable

from ..config import TrainConfig
from ..errors import ConfigError, UserError
from .. import jobs
from ..jobs import Background, BusyError, finished_run
from ..runs import data_signature, group_key, list_runs, recorded_training, run_key
from ..runs.naming import model_summary
from ..train.prepare import load_dataset, prepare
from ..eval.truth import truth_metrics
from .groups import key_metrics
from .sweep import Cell, Config, Progress, Sweep, SweepResult


class Stopped(Exception):
    """The sweep was asked to stop while waiting for a slot."""


@contextmanager
def job_slot(limiter, stop: threading.Event, waiting: Callable[[], None] | None = None):
    """One training slot of the server-wide limiter, held for the body; while the server is full
    it waits (checking `stop` every second) instead of failing."""
    jid = "sweep-" + uuid.uuid4().hex[:10]
    while True:
        try:
            limiter.enqueue(jid)
            break
        except BusyError:
            if waiting is not None:
                waiting()
            if stop.wait(1.0):
                raise Stopped from None
    try:
        if limiter.position(jid) is not None and waiting is not None:
            waiting()
        if not limiter.wait_turn(jid, stop):
            raise Stopped
        yield
    finally:
        limiter.release(jid)


def _data_key(cfg: TrainConfig) -> str:
    d = cfg.data
    return json.dumps({"source": d.source, "world": d.world.to_dict(), "files": d.files, "mapping": d.mapping},
                      sort_keys=True, default=str)


def _prep_key(cfg: TrainConfig) -> str:
    return json.dumps({"data": asdict(cfg.data), "seed": cfg.seed, "text": cfg.model.text_features}, sort_keys=True,
                      default=str)


class _Plan:
    """What each cell trains on, its group id, and the finished run it can reuse."""

    def __init__(self, sweep: Sweep, configs: list[Config], dataset, store, resume: bool, load=None):
        load = load or load_dataset

        self.datasets: dict[str, object] = {}
        base_key = _data_key(sweep.base)
        if dataset is not None:
            self.datasets[base_key] = dataset
        found = {}
        if resume:
            for r in list_runs(store):
                if r.status == "finished" and r.metrics and r.seed is not None:
                    found.setdefault((r.group, r.seed), r)  # newest first
        self.groups, self.cfgs, self.reuse = [], {}, {}
        for i, c in enumerate(configs):
            group = None
            for seed in sweep.seeds:
                cfg = sweep.config_of(c, seed)
                if cfg.data.source != "world" and cfg.data.world != sweep.base.data.world:
                    raise ConfigError(f"The sweep's setup '{c.label}' changes the built-in world, but the data is "
                                      "your own files, so it would change nothing.",
                                      fix="sweep model and training settings on your own data, or use the world")
                k = _data_key(cfg)
                if k not in self.datasets:
                    if cfg.data.source != "world" and dataset is not None:
                        raise ConfigError(f"The sweep's setup '{c.label}' changes the data, which is your upload.",
                                          fix="sweep model and training settings on uploaded data, or use the world")
                    self.datasets[k] = load(cfg)
                group = group_key(cfg, data_signature(self.datasets[k]))
                self.cfgs[i, seed] = cfg
                if (group, seed) in found:
                    self.reuse[i, seed] = found[group, seed]
            self.groups.append(group)

    def dataset(self, cfg):
        return self.datasets[_data_key(cfg)]


def _add_truth(cell: Cell, task: str, store) -> None:
    """A finished run's ranking of `task` against the world's truth, beside its test metrics."""
    if cell.status != "finished" or not cell.run_id:
        return
    try:
        cell.metrics = {**cell.metrics, task: {**cell.metrics.get(task, {}), **truth_metrics(cell.run_id, task,
                                                                                              store=store)}}
    except UserError as e:  # not a world run, or one this version cannot rebuild: said, not raised
        cell.message = (cell.message + " " if cell.message else "") + f"No truth: {e}"


def run_sweep(sweep: Sweep, *, dataset=None, store=None, limiter=None, stop: threading.Event | None = None,
              on_progress: Callable[[Progress, Cell | None], None] | None = None, resume: bool = True,
              callback: Callable[[dict], None] | None = None, train: bool = True,
              load: Callable[[TrainConfig], object] | None = None) -> SweepResult:
    """Train every cell of `sweep` (see the module docstring); returns what it measured.

    `dataset`: the data of the base setup when it is not to be read from the config (the
    app's upload or its cached world). `on_progress(progress, cell)` after each cell (and while
    waiting); `callback` gets each run's trainer events. A cell that fails is recorded as
    failed (with its message) and the sweep goes on. `train=False` only collects what the
    store already holds (the cells it lacks stay "pending"): what a page shows before a click.
    `load(cfg)` reads a setup's dataset (default `mtrlib.train.prepare.load_dataset`; the app passes
    its cached world)."""

    t0 = time.time()
    limiter = limiter or jobs.LIMITER  # read at each call: the app or a test may replace the server-wide one
    stop = stop or threading.Event()
    configs = sweep.check()
    plan = _Plan(sweep, configs, dataset, store, resume, load)
    cells = [Cell(i, s) for s in sweep.seeds for i in range(len(configs))]  # seed-major
    prog = Progress(total=len(cells), to_train=len(cells) - len(plan.reuse))
    report = on_progress or (lambda p, c: None)
    preps: OrderedDict[str, object] = OrderedDict()
    times: list[float] = []
    stopped = False
    for cell in cells:
        if stop.is_set():
            stopped = True
            break
        cfg = plan.cfgs[cell.config, cell.seed]
        old = plan.reuse.get((cell.config, cell.seed))
        if old is not None:
            cell.status, cell.metrics, cell.run_id, cell.reused = "finished", key_metrics(old.metrics), old.id, True
            prog.done += 1
            prog.reused += 1
            prog.finished += 1
            report(prog, cell)
            continue
        if not train:
            continue
        conf = configs[cell.config]
        prog.current = f"{conf.label} · seed {cell.seed}"
        name = " · ".join(p for p in (sweep.name or model_summary(cfg), conf.label if conf.settings else "",
                                      f"seed {cell.seed}") if p)
        started = time.time()

        def waiting():
            prog.state = "waiting"
            report(prog, None)

        def sharing():
            prog.state = "sharing"  # another session trains this very run: the sweep waits for it
            report(prog, None)

        key = run_key(cfg, plan.dataset(cfg))
        try:
            other = _wait_for_identical(key, store, stop, sharing)
        except Stopped:
            stopped = True
            break
        if other is not None:  # another session trained this very run meanwhile: use it
            cell.status, cell.metrics, cell.run_id, cell.reused = "finished", key_metrics(other.metrics), other.id, True
            prog.done += 1
            prog.reused += 1
            prog.finished += 1
            report(prog, cell)
            continue
        try:
            with job_slot(limiter, stop, waiting):
                prog.state = "training"
                report(prog, None)
                pk = _prep_key(cfg)
                if pk not in preps:
                    preps[pk] = prepare(cfg, plan.dataset(cfg))
                    while len(preps) > 2:
                        preps.popitem(last=False)
                res, writer = recorded_training(cfg, preps[pk], store=store, name=name, callback=callback, stop=stop)
            cell.status, cell.run_id = res.status, (writer.id if writer.saved else None)
            cell.message = res.reason or (writer.error or "")
            if res.status == "finished":
                cell.metrics = key_metrics(res.metrics)
        except Stopped:
            stopped = True
            break
        except UserError as e:
            cell.status, cell.message = "failed", str(e)
        except Exception as e:  # one broken cell does not lose the others
            cell.status, cell.message = "failed", f"{type(e).__name__}: {e}"
            cell.message += "\n" + traceback.format_exc(limit=3)
        finally:
            jobs.SHARED.finish(key)
        cell.seconds = time.time() - started
        prog.done += 1
        prog.finished += cell.status == "finished"
        if cell.status in ("finished", "diverged"):
            times.append(cell.seconds)
            prog.trained += 1
            prog.mean_s = sum(times) / len(times)
        elif cell.status == "failed":
            prog.trained += 1
        report(prog, cell)
        if cell.status == "stopped":
            stopped = True
            break
    if sweep.truth:
        for cell in cells:
            _add_truth(cell, sweep.truth, store)
    stopped = stopped or (not train and any(c.status == "pending" for c in cells))
    prog.state = "stopped" if stopped else "finished"
    report(prog, None)
    return SweepResult(sweep, configs, cells, plan.groups, stopped=stopped, seconds=time.time() - t0)


def _wait_for_identical(key: str, store, stop: threading.Event, waiting: Callable[[], None]):
    """Claim `key` for this sweep; while another session trains that exact run, wait for it and
    return its finished run (None: the caller trains it, and holds the claim); Stopped when asked
    to stop while waiting (no claim is then held)."""
    while True:
        ev = jobs.SHARED.claim(key)
        if ev is None:
            return None
        waiting()
        while not ev.wait(1.0):
            if stop.is_set():
                raise Stopped
        done = finished_run(key, store)
        if done is not None:
            return done


class SweepJob(Background):
    """A sweep on a background thread (the app's Sweep, Pareto and Lessons pages poll it)."""

    def __init__(self, sweep: Sweep, dataset=None, *, store=None, limiter=None, title: str = "sweep", load=None):
        self.sweep, self.dataset, self.store, self.limiter, self.load = sweep, dataset, store, limiter, load
        self.title = title
        self.id = uuid.uuid4().hex[:12]
        self.state = "new"
        self.error: str | None = None
        self.result: SweepResult | None = None
        self.progress = Progress(total=sweep.total, to_train=sweep.total)
        self.cells: list[Cell] = []
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> SweepJob:
        self.sweep.check()  # a bad sweep is refused here, in the caller's thread, with its message
        self.state, self.started_at = "running", time.time()
        self._launch(f"mtr-sweep-{self.id}")
        return self

    @property
    def active(self) -> bool:
        return self.state == "running"

    def _progress(self, p: Progress, cell: Cell | None) -> None:
        with self._lock:
            self.progress = Progress(**vars(p))
            if cell is not None:
                self.cells.append(cell)

    def _run(self) -> None:
        try:
            res = run_sweep(self.sweep, dataset=self.dataset, store=self.store, limiter=self.limiter, stop=self._stop,
                            on_progress=self._progress, load=self.load)
            self.result = res
            self.state = "stopped" if res.stopped else "finished"
        except Exception as e:
            self.error = str(e) if isinstance(e, UserError) else f"The sweep failed unexpectedly: {type(e).__name__}: {e}"
            self.state = "failed"
        finally:
            self.finished_at = time.time()

    def snapshot(self) -> dict:
        with self._lock:
            return {"state": self.state, "progress": Progress(**vars(self.progress)), "error": self.error,
                    "cells": list(self.cells), "text": self.progress.text()}


__all__ = ["SweepJob", "run_sweep", "job_slot", "Stopped"]
