"""Sweeps: every combination of some settings, each with several seeds, as saved runs.

A `Sweep` is a base setup, axes of settings (`Axis`: one key or linked keys and their values),
the seeds, and optional *corners* (extra configurations, such as a single-task model, that a
Pareto front is measured against). `run_sweep` trains its cells one after another:

- **through the job limiter** (`mtrlib.jobs.LIMITER` unless told otherwise): each run takes a
  slot like any training job and gives it back before the next, so a sweep never holds more
  than one slot, queues behind other users' jobs, and waits (never fails) when the server is full;
- **resumably**: a cell whose run is already in the store, finished (same group id and seed),
  is reused, not retrained, so a rerun after a stop or a crash carries on where it ended;
- **seed-major** (every configuration with the first seed, then the second, ...), so a sweep
  stopped early has every configuration at the same number of seeds;
- **stoppable**: `stop.set()` ends the run in progress (it is kept, marked stopped, and not
  counted) and keeps every finished run.

`SweepResult` summarises each configuration (mean ± 95% CI per task and metric), finds the
Pareto front of two metrics and its hypervolume (`mtrlib.experiments.pareto`), and writes the JSON line.
`SweepJob` runs a sweep on a background thread for the app, with progress to poll. This module
defines a sweep and its result; `mtrlib.experiments.runner` runs it (`run_sweep`, `SweepJob`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import pareto
from ..config import TrainConfig, validate
from ..errors import ConfigError, UserError
from ..eval.stats import Estimate
from .groups import higher_is_better, metric_value, summarise, summary_json
from .settings import Axis, apply, label, product, resolve

MAX_CELLS = 2000
CORNER_OWN = ("model.", "weights.", "weighting")  # what a corner (a single-task model) sets itself


@dataclass
class Config:
    settings: dict  # {key: value} as the sweep's keys name them
    role: str = "grid"  # "grid" (a point of the sweep) or "corner" (a reference, e.g. single-task)

    @property
    def label(self) -> str:
        return label(self.settings)


@dataclass
class Sweep:
    base: TrainConfig
    axes: list[Axis] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    corners: list[dict] = field(default_factory=list)
    name: str | None = None  # prefix of the runs' names
    # a task of the built-in world whose ranking is also judged against the world's truth
    # (mtrlib.eval.truth.truth_metrics, added to each finished run's metrics of that task)
    truth: str | None = None

    def crossed_axes(self) -> list[Axis]:
        """The axes a corner is repeated along: those that change neither the model nor the task
        weights (a single-task corner at each ρ of a ρ sweep, but one for every weight ratio)."""
        return [a for a in self.axes if not any(resolve(k).path.startswith(CORNER_OWN) for k in a.keys)]

    def configs(self) -> list[Config]:
        grid = [Config(s) for s in product(self.axes)]
        crossed = product(self.crossed_axes())
        return grid + [Config({**combo, **c}, "corner") for c in self.corners for combo in crossed]

    def config_of(self, c: Config, seed: int) -> TrainConfig:
        cfg = apply(self.base, c.settings)
        cfg.seed = int(seed)
        return cfg

    @property
    def total(self) -> int:
        return len(self.configs()) * len(self.seeds)

    def check(self, task_names: list[str] | None = None) -> list[Config]:
        """Refuse a sweep that cannot run, before anything trains: too big, or a combination
        that is not a valid setup (the message names the combination)."""
        configs = self.configs()
        if not self.seeds:
            raise ConfigError("A sweep needs at least one seed.", fix="e.g. --seeds 3")
        if len(configs) * len(self.seeds) > MAX_CELLS:
            raise ConfigError(f"That sweep is {len(configs)} configurations x {len(self.seeds)} seeds = "
                              f"{len(configs) * len(self.seeds):,} runs, more than this tool runs at once ({MAX_CELLS}).",
                              fix="use fewer values or seeds")
        for c in configs:
            try:
                validate(self.config_of(c, self.seeds[0]), task_names)
            except UserError as e:
                raise ConfigError(f"The sweep's setup '{c.label}' is not valid: {e}") from None
        return configs


@dataclass
class Cell:
    config: int  # index into Sweep.configs()
    seed: int
    status: str = "pending"  # pending | finished | stopped | diverged | failed
    metrics: dict = field(default_factory=dict)  # {task: {metric: value}} (finished only)
    run_id: str | None = None
    seconds: float = 0.0
    reused: bool = False  # found finished in the store: not trained again
    message: str = ""


@dataclass
class Progress:
    total: int
    to_train: int  # cells that need training (total minus the ones found finished)
    done: int = 0  # cells dealt with (trained, reused, failed)
    finished: int = 0  # cells with a finished run (trained now or reused)
    trained: int = 0
    reused: int = 0
    current: str = ""
    state: str = "starting"  # starting | waiting | training | finished | stopped | failed
    mean_s: float | None = None  # mean seconds of the runs trained so far

    @property
    def eta_s(self) -> float | None:
        if self.mean_s is None:
            return None
        return self.mean_s * max(0, self.to_train - self.trained)

    def text(self) -> str:
        """'run 7 of 24, about 40 s left' (how the app and the CLI say where a sweep is)."""
        n = min(self.done + 1, self.total)
        eta = self.eta_s
        left = "estimating the time left" if eta is None else f"about {_duration(eta)} left"
        if self.state in ("finished", "stopped", "failed"):
            return f"{self.finished} of {self.total} runs finished ({self.reused} reused from the store)"
        return f"run {n} of {self.total}, {left}"


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.0f} min"


@dataclass
class SweepResult:
    sweep: Sweep
    configs: list[Config]
    cells: list[Cell]
    groups: list[str]  # group id of each configuration
    stopped: bool = False
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Every cell finished (nothing stopped, failed, diverged or still to train)."""
        return not self.stopped and all(c.status == "finished" for c in self.cells)

    # -- per configuration ---------------------------------------------------------------------------------
    def per_seed(self, i: int) -> dict[int, dict]:
        return {c.seed: c.metrics for c in self.cells if c.config == i and c.status == "finished"}

    def summary(self, i: int) -> dict[str, dict[str, Estimate]]:
        return summarise(self.per_seed(i))

    def grid(self) -> list[int]:
        return [i for i, c in enumerate(self.configs) if c.role == "grid"]

    def corner_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.configs) if c.role == "corner"]

    def metrics(self) -> list[str]:
        """'task/metric' paths measured, headline ones (auc, then rmse) first."""
        seen: list[str] = []
        for c in self.cells:
            for t, ms in c.metrics.items():
                for k in ms:
                    if f"{t}/{k}" not in seen:
                        seen.append(f"{t}/{k}")
        rank = {"auc": 0, "rmse": 1, "logloss": 2, "mae": 3}
        return sorted(seen, key=lambda p: rank.get(p.rsplit("/", 1)[1], 9))

    def default_axes(self) -> tuple[str | None, str | None]:
        """The first two tasks' headline metrics (AUC, else RMSE)."""
        heads, tasks = [], []
        for p in self.metrics():
            t, k = p.split("/")
            if t not in tasks and k in ("auc", "rmse"):
                tasks.append(t)
                heads.append(p)
        return (heads + [None, None])[0], (heads + [None, None])[1]

    def point(self, i: int, x: str, y: str) -> tuple[Estimate, Estimate]:
        s = self.summary(i)
        return metric_value(s, x), metric_value(s, y)

    # -- the front ------------------------------------------------------------------------------------------
    def maximise(self, x: str, y: str) -> tuple[bool, bool]:
        return higher_is_better(x), higher_is_better(y)

    def front(self, x: str, y: str, among: list[int] | None = None) -> list[int]:
        """Configuration indices on the Pareto front of the means (grid configurations only)."""
        idx = self.grid() if among is None else among
        pts = [[e.mean for e in self.point(i, x, y)] for i in idx]
        return [idx[k] for k in pareto.front(pts, self.maximise(x, y))]

    def reference(self, x: str, y: str) -> tuple[float, float]:
        idx = self.grid() + self.corner_indices()
        pts = [[e.mean for e in self.point(i, x, y)] for i in idx]
        return pareto.reference((x, y), pts, self.maximise(x, y))

    def hypervolume(self, x: str, y: str, among: list[int] | None = None) -> float:
        idx = self.front(x, y, among)
        pts = [[e.mean for e in self.point(i, x, y)] for i in idx]
        return pareto.hypervolume(pts, self.reference(x, y), self.maximise(x, y))

    def _corners_for(self, among: list[int] | None) -> list[int]:
        """The corners that go with configurations `among`: those with the same values of the
        crossed axes (the same ρ, say), or every corner when `among` mixes them."""
        cs = self.corner_indices()
        keys = [k for a in self.sweep.crossed_axes() for k in a.keys]
        if among is None or not keys:
            return cs
        want = {tuple(self.configs[i].settings.get(k) for k in keys) for i in among}
        if len(want) != 1:
            return cs
        (w,) = want
        return [i for i in cs if tuple(self.configs[i].settings.get(k) for k in keys) == w]

    def best_single(self, x: str, y: str, among: list[int] | None = None) -> tuple[float, float] | None:
        """The best single-task pair: the best corner value of each metric (None without
        corners), among the corners that go with configurations `among`."""
        cs = self._corners_for(among)
        if not cs:
            return None
        up = self.maximise(x, y)
        out = []
        for d in range(2):
            vals = [self.point(i, x, y)[d].mean for i in cs]
            vals = [v for v in vals if math.isfinite(v)]
            if not vals:
                return None
            out.append(max(vals) if up[d] else min(vals))
        return out[0], out[1]

    def relative_hypervolume(self, x: str, y: str, among: list[int] | None = None) -> float | None:
        corner = self.best_single(x, y, among)
        if corner is None:
            return None
        idx = self.front(x, y, among)
        pts = [[e.mean for e in self.point(i, x, y)] for i in idx]
        return pareto.relative_hypervolume(pts, corner, self.reference(x, y), self.maximise(x, y))

    def front_groups(self, x: str, y: str, by: list[str] | None = None) -> list[dict]:
        """The grid split into overlay groups by the keys `by` (e.g. ["arch"]): for each, its
        points (x, y, label of the other settings), its front and its relative hypervolume, the
        shape `experiments.charts.front` draws."""
        by = list(by or [])
        groups: dict[str, list[int]] = {}
        for i in self.grid():
            st = self.configs[i].settings
            groups.setdefault(label({k: st[k] for k in by if k in st}) if by else "front", []).append(i)
        out = []
        for name, idx in groups.items():
            on = self.front(x, y, idx)
            pts = [(*self.point(i, x, y), label({k: v for k, v in self.configs[i].settings.items() if k not in by}))
                   for i in idx]
            out.append({"name": name, "points": pts, "front": [idx.index(i) for i in on],
                        "rhv": self.relative_hypervolume(x, y, idx), "indices": idx})
        return out

    # -- output ---------------------------------------------------------------------------------------------
    def to_json(self, x: str | None = None, y: str | None = None) -> dict:
        """{"configs": [{"settings", "summary", "group"}], "pareto": [indices into configs], "x", "y",
        "hypervolume"}; with corners also "corners" and "relative_hypervolume"."""
        dx, dy = self.default_axes()
        x, y = x or dx, y or dy
        grid = self.grid()
        out = {"configs": [{"settings": self.configs[i].settings, "summary": summary_json(self.summary(i)),
                            "group": self.groups[i]} for i in grid]}
        if x and y:
            pos = {i: k for k, i in enumerate(grid)}
            out["pareto"] = [pos[i] for i in self.front(x, y)]
            out["x"], out["y"] = x, y
            out["hypervolume"] = self.hypervolume(x, y)
        else:
            out.update({"pareto": [], "x": x, "y": y, "hypervolume": None})
        corners = self.corner_indices()
        if corners:
            out["corners"] = [{"settings": self.configs[i].settings, "summary": summary_json(self.summary(i)),
                               "group": self.groups[i]} for i in corners]
            out["relative_hypervolume"] = self.relative_hypervolume(x, y) if x and y else None
        return out

__all__ = ["Sweep", "Config", "Cell", "Progress", "SweepResult", "MAX_CELLS"]
