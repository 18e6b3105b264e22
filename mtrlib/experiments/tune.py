"""Optuna tuning: TPE for one objective, NSGA-II for several (`python -m mtrlib tune`).

    python -m mtrlib tune --objective click/auc --objective like/auc --trials 12 \\
        --space weights.click=0.125:8:log --space lr=0.001:0.05:log

A trial samples one value per `--space` key (any sweepable setting, `mtrlib.experiments.settings`),
trains the setup once per seed (the seed machinery of sweeps: the same seeds for every trial,
each a run in the store, grouped), and its value per objective is the mean over seeds of the
*validation* metric: the test split stays untouched by the search (each trial's test means are
kept as user attributes, for fronts drawn beside a grid's). Single-objective studies prune with
Optuna's median pruner on the validation curve of the first seed (Optuna cannot prune
multi-objective studies).

Storage: a journal file in the run store by default (`<store>/optuna/<study>.journal`: file
locks, so several worker processes on one machine share it); `--storage` takes any Optuna RDB
URL (sqlite:///file.db, postgresql://...), and workers started with the same command on
several machines then share one study. `--trials N` is the study's total, counted over every
worker: each stops when the study holds N finished or pruned trials.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from ..config import TrainConfig
from ..errors import ConfigError, UserError
from ..jobs import LIMITER, Background
from ..runs import recorded_training, store_dir
from ..runs.naming import group_key
from ..train.prepare import prepare
from .groups import higher_is_better
from .runner import Stopped, job_slot
from .settings import apply, resolve

PRUNE_WARMUP_EPOCHS = 1


class TuneError(ConfigError):
    """A bad --objective, --space or --storage, or a study that does not match the command."""


@dataclass(frozen=True)
class Dimension:
    """One searched setting: KEY=LOW:HIGH[:log] (an int setting samples ints)."""
    key: str
    low: float
    high: float
    log: bool = False

    def to_text(self) -> str:
        return f"{self.key}={self.low:g}:{self.high:g}{':log' if self.log else ''}"


def parse_space(spec: str) -> Dimension:
    """'lr=0.001:0.1:log' -> Dimension('lr', 0.001, 0.1, True)."""
    key, eq, rng = spec.partition("=")
    parts = rng.split(":")
    if not eq or len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        raise TuneError(f"--space {spec!r} is not KEY=LOW:HIGH or KEY=LOW:HIGH:log.",
                        fix="e.g. --space lr=0.001:0.1:log or --space weights.click=0.5:4")
    key = key.strip()
    if resolve(key).type not in (int, float):  # an unknown key: the settings module's own message
        raise TuneError(f"--space {key!r} is not a number setting, so it has no range.",
                        fix="search numbers (lr, weights.TASK, emb_dim, dropout, ...); sweep the rest with --grid")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise TuneError(f"--space {spec!r}: LOW and HIGH must be numbers.", fix="e.g. lr=0.001:0.1:log") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise TuneError(f"--space {spec!r}: LOW must be below HIGH.", fix="e.g. lr=0.001:0.1")
    log = len(parts) == 3
    if log and low <= 0:
        raise TuneError(f"--space {spec!r}: a log range must be above 0.", fix="drop ':log' or raise LOW")
    return Dimension(key, low, high, log)


def parse_objective(spec: str, task_names: list[str] | None = None) -> tuple[str, str]:
    """'click/auc' -> ('click/auc', 'maximize'), the direction from the metric."""
    task, slash, metric = spec.partition("/")
    if not slash or not task or not metric:
        raise TuneError(f"--objective {spec!r} is not TASK/METRIC.", fix="e.g. --objective click/auc")
    if task_names is not None and task not in task_names:
        raise TuneError(f"--objective {spec!r} names no task of this setup.", fix="tasks: " + ", ".join(task_names))
    return spec, "maximize" if higher_is_better(metric) else "minimize"


def _is_int(key: str) -> bool:
    return resolve(key).type is int


def study_name(cfg: TrainConfig, objectives: list[str], space: list[Dimension]) -> str:
    """The same command gives the same study (so workers started with it share one)."""
    text = json.dumps({"group": group_key(cfg), "objectives": objectives, "space": [d.to_text() for d in space]},
                      sort_keys=True)
    return "tune-" + hashlib.sha1(text.encode()).hexdigest()[:10]


def default_storage(store, name: str) -> str:
    """A journal file in the run store (Optuna's file storage; locks make it multi-process safe)."""
    folder = store_dir(store) / "optuna"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{name}.journal")


def open_storage(storage: str):
    """An Optuna storage from a URL (RDB) or a journal file path."""

    if "://" in storage:
        try:
            return optuna.storages.RDBStorage(storage, heartbeat_interval=None,
                                              engine_kwargs={"connect_args": {"timeout": 60}}
                                              if storage.startswith("sqlite") else {})
        except Exception as e:
            raise TuneError(f"Cannot open the study storage {storage} ({type(e).__name__}: {str(e)[:200]}).",
                            fix="check the URL, e.g. sqlite:///tune.db or postgresql://user@host/db") from None
    return JournalStorage(JournalFileBackend(storage))


def sampler_for(n_objectives: int, seed: int | None, population: int | None = None):
    """TPE for one objective, NSGA-II for several (a population small enough to evolve within
    a modest budget)."""

    if n_objectives == 1:
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=population or 4)


def load_or_create(name: str, storage, directions: list[str], sampler, pruner):
    """The study `name`, created by whichever worker comes first (another may race to it)."""

    for attempt in range(5):
        try:
            study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler,
                                        pruner=pruner, load_if_exists=True)
            break
        except optuna.exceptions.DuplicatedStudyError:
            time.sleep(0.2 * (attempt + 1))
    else:  # pragma: no cover - five lost races in a row
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if [d.name.lower() for d in study.directions] != directions:
        raise TuneError(f"The study '{name}' in this storage has other objectives.",
                        fix="give another --study name, or the same --objective flags as its first worker")
    return study


@dataclass
class TuneResult:
    study: object
    name: str
    storage: str
    objectives: list[str]
    trials_here: int  # trials this worker ran

    def to_json(self) -> dict:

        done = [t for t in self.study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = self.study.best_trials
        return {"study": self.name, "storage": self.storage, "objectives": self.objectives,
                "directions": [d.name.lower() for d in self.study.directions],
                "trials": len(self.study.trials), "complete": len(done), "trials_here": self.trials_here,
                "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in self.study.trials),
                "best": [{"number": t.number, "values": t.values, "params": t.params,
                          "test": t.user_attrs.get("test"), "runs": t.user_attrs.get("runs")} for t in best]}


class _Pruned(Exception):
    """Ctrl-C (or the caller's stop): the trial is abandoned and the worker ends."""


class _Failed(Exception):
    """A run of the trial diverged: the trial fails (not counted) and the study goes on."""


def tune(cfg: TrainConfig, objectives: list[str], space: list[Dimension], trials: int, *, seeds: list[int],
         storage: str | None = None, name: str | None = None, store=None, sampler_seed: int | None = None,
         population: int | None = None, prune: bool = True, dataset=None, stop: threading.Event | None = None,
         on_trial: Callable[[dict], None] | None = None, limiter=None) -> TuneResult:
    """Run trials of the study until it holds `trials` finished ones (see the module docstring).
    `limiter`: the server's training slots (the app), each run taking one while it trains."""


    if not objectives:
        raise TuneError("Tuning needs at least one --objective TASK/METRIC.", fix="e.g. --objective click/auc")
    if not space:
        raise TuneError("Tuning needs at least one --space KEY=LOW:HIGH[:log].", fix="e.g. --space lr=0.001:0.1:log")
    if trials < 1:
        raise TuneError(f"--trials must be at least 1 (got {trials}).", fix="e.g. --trials 20")
    pairs = [parse_objective(o) for o in objectives]
    directions = [d for _, d in pairs]
    name = name or study_name(cfg, objectives, space)
    storage = storage or default_storage(store, name)
    multi = len(objectives) > 1
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=PRUNE_WARMUP_EPOCHS) \
        if prune and not multi else optuna.pruners.NopPruner()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = load_or_create(name, open_storage(storage), directions, sampler_for(len(objectives), sampler_seed,
                                                                                population), pruner)
    if "objectives" not in study.user_attrs:
        study.set_user_attr("objectives", list(objectives))  # what the Pareto page matches its axes against
    stop = stop or threading.Event()
    preps: dict[str, object] = {}

    def prepared(c: TrainConfig):
        key = json.dumps({"data": c.to_dict()["data"], "seed": c.seed}, sort_keys=True)
        if key not in preps:
            preps.clear()  # one seed's data at a time
            preps[key] = prepare(c, dataset)
        return preps[key]

    def objective(trial):
        settings = {}
        for d in space:
            if _is_int(d.key):
                settings[d.key] = trial.suggest_int(d.key, int(math.ceil(d.low)), int(math.floor(d.high)), log=d.log)
            else:
                settings[d.key] = trial.suggest_float(d.key, d.low, d.high, log=d.log)
        base = apply(cfg, {k: v for k, v in settings.items()})
        vals: list[list[float]] = [[] for _ in objectives]
        tests: list[list[float]] = [[] for _ in objectives]
        runs = []
        for k, seed in enumerate(seeds):
            c = TrainConfig.from_dict(base.to_dict())
            c.seed = seed
            c.name = f"{name} · trial {trial.number} · seed {seed}"
            watch = _Watch(trial, objectives[0], stop) if (prune and not multi and k == 0) else None
            try:
                with job_slot(limiter, stop) if limiter is not None else contextlib.nullcontext():
                    res, writer = recorded_training(c, prepared(c), store=store, name=c.name, callback=watch,
                                                    stop=watch.stop if watch else stop)
            except Stopped:
                raise _Pruned() from None
            runs.append(writer.id if writer.saved else None)
            if watch is not None and watch.pruned:
                trial.set_user_attr("runs", runs)
                raise optuna.TrialPruned(f"pruned at epoch {watch.epoch}")
            if stop.is_set():
                raise _Pruned()
            if res.status != "finished" or not res.val_metrics:  # diverged: these settings fail, the study goes on
                trial.set_user_attr("runs", runs)
                trial.set_user_attr("reason", res.reason)
                raise _Failed(res.reason)
            for j, o in enumerate(objectives):
                task, _, metric = o.partition("/")
                v = (res.val_metrics.get(task) or {}).get(metric)
                if v is None:
                    raise TuneError(f"The objective {o} was not measured.",
                                    fix="measured: " + ", ".join(f"{t}/{m}" for t, ms in res.val_metrics.items()
                                                                 for m in ms if m != "n"))
                vals[j].append(float(v))
                tests[j].append(float((res.metrics.get(task) or {}).get(metric, math.nan)))
        mean = [sum(v) / len(v) for v in vals]
        trial.set_user_attr("test", [sum(v) / len(v) for v in tests])
        trial.set_user_attr("runs", runs)
        trial.set_user_attr("settings", settings)
        if on_trial is not None:
            on_trial({"number": trial.number, "values": mean, "settings": settings})
        return mean if multi else mean[0]

    here = failed = 0
    counted = (TrialState.COMPLETE, TrialState.PRUNED)
    while not stop.is_set():
        if len(study.get_trials(deepcopy=False, states=counted)) >= trials or failed > trials:
            break  # the study is full (or this worker's settings keep diverging: it gives up)
        trial = study.ask()
        here += 1
        try:
            value = objective(trial)
            study.tell(trial, value)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except _Failed:
            study.tell(trial, state=TrialState.FAIL)
            failed += 1
        except _Pruned:
            study.tell(trial, state=TrialState.FAIL)
            break
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
    return TuneResult(study, name, storage, objectives, here)


class _Watch:
    """A trainer callback: each epoch's validation value goes to the trial; when Optuna's pruner
    says so, training stops after its batch (`stop`)."""

    def __init__(self, trial, objective: str, outer: threading.Event):
        self.trial, self.outer = trial, outer
        self.task, _, self.metric = objective.partition("/")
        self.stop = _Either(outer)
        self.pruned, self.epoch = False, 0

    def __call__(self, e: dict) -> None:
        if e.get("type") != "epoch":
            return
        v = e.get(f"val/{self.task}/{self.metric}")
        if v is None or v != v:
            return
        self.epoch = int(e["epoch"])
        self.trial.report(float(v), self.epoch)
        if self.trial.should_prune():
            self.pruned = True
            self.stop.own.set()


class _Either:
    """An Event-like stop flag set by either its own event or the outer one (Ctrl-C)."""

    def __init__(self, outer: threading.Event):
        self.outer, self.own = outer, threading.Event()

    def is_set(self) -> bool:
        return self.own.is_set() or self.outer.is_set()

    def set(self) -> None:
        self.own.set()


class TuneJob(Background):
    """A study's trials on a background thread (the Sweep page's Tune mode), each run through the
    server's training slots; `trials` grows as trials finish, for the page to poll."""

    def __init__(self, cfg: TrainConfig, objectives: list[str], space: list[Dimension], trials: int,
                 seeds: list[int], dataset=None, store=None):
        self.args = (cfg, objectives, space, trials)
        self.seeds, self.dataset, self.store = seeds, dataset, store
        self.trials: list[dict] = []
        self.result: TuneResult | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> TuneJob:
        self._launch("mtr-tune")
        return self

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:

        try:
            self.result = tune(*self.args, seeds=self.seeds, store=self.store, dataset=self.dataset, stop=self._stop,
                               on_trial=self.trials.append, limiter=LIMITER)
        except UserError as e:
            self.error = str(e)
        except Exception as e:  # shown on the page, never lost on a thread
            self.error = f"{type(e).__name__}: {e}"


def front_points(study, objectives: list[str], test: bool = True) -> list[tuple[float, ...]]:
    """Each complete trial's mean per objective (its test means, or the validation values it was tuned on)."""

    out = []
    for t in study.trials:
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue
        v = t.user_attrs.get("test") if test else t.values
        if v is not None and all(x == x for x in v):
            out.append(tuple(float(x) for x in v))
    return out


def load_study_points(storage: str, name: str, objectives: list[str]) -> list[tuple[float, ...]]:
    """The points of a stored study (the Pareto page draws them beside a grid's front)."""

    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    return front_points(study, objectives)


def study_front_points(journal: Path, objectives: list[str]) -> list[tuple[float, ...]] | None:
    """The trials' test means of the study kept in `journal` (a file of `stored_studies`) when it
    was tuned on exactly `objectives` (e.g. the Pareto page's two axes); None otherwise."""

    storage = open_storage(str(journal))
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        if study.user_attrs.get("objectives") == list(objectives):
            return front_points(study, objectives)
    return None


def stored_studies(store=None) -> list[Path]:
    """Journal files of the studies in the run store (newest first)."""
    folder = store_dir(store) / "optuna"
    return sorted(folder.glob("*.journal"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []


__all__ = ["tune", "TuneJob", "TuneResult", "TuneError", "Dimension", "parse_space", "parse_objective", "study_name",
           "default_storage", "open_storage", "front_points", "load_study_points", "stored_studies",
           "study_front_points"]
