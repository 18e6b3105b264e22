"""What each kind of lesson measures from its sweep, and its figure (mtrlib.experiments.lessons)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..eval.stats import mean_ci, paired_difference
from . import charts
from .sweep import SweepResult

if TYPE_CHECKING:  # lessons defines the Lesson these read; it imports this module
    from .lessons import Lesson

MEAN_OF_MTL = "mean of the multi-task models"


def mean_over(ms: dict, metrics: tuple[str, ...]) -> float:
    vals = [ms.get(t, {}).get(k) for t, k in (m.split("/") for m in metrics)]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if len(vals) == len(metrics) else math.nan


def gain_headline(lesson: Lesson, res: SweepResult) -> dict:
    """{"arch · ρ": {"gain": Estimate}}: mean AUC over the tasks minus the single-task model's, paired
    per seed at the same swept value. Needs an `arch` axis that includes "single"."""
    arch_axis = next(a for a in lesson.axes if a.keys == ("arch",))
    other = [a for a in lesson.axes if a is not arch_axis]
    out, per_rest = {}, {}
    for i in res.grid():
        s = res.configs[i].settings
        if s["arch"] == "single":
            continue
        ref = next(j for j in res.grid() if res.configs[j].settings == {**s, "arch": "single"})
        a, b = res.per_seed(ref), res.per_seed(i)
        seeds = sorted(set(a) & set(b))
        diff = paired_difference([mean_over(a[k], lesson.metrics) for k in seeds],
                                 [mean_over(b[k], lesson.metrics) for k in seeds])
        name = " · ".join([arch_axis.label_of(s)] + [x.label_of(s) for x in other])
        out[name] = {"gain": diff}
        rest = " · ".join(x.label_of(s) for x in other)
        for k in seeds:
            per_rest.setdefault(rest, {}).setdefault(k, []).append(
                mean_over(b[k], lesson.metrics) - mean_over(a[k], lesson.metrics))
    for rest, by_seed in per_rest.items():  # the gain averaged over the multi-task models, per seed
        out[f"{MEAN_OF_MTL} · {rest}"] = {"gain": mean_ci([sum(v) / len(v) for v in by_seed.values()])}
    return out


def front_headline(lesson: Lesson, res: SweepResult) -> dict:
    """{"ratio label": {x: Estimate, y: Estimate}} for every grid point and the single-task corner."""
    x, y = lesson.metrics
    out = {}
    for i in res.grid():
        ex, ey = res.point(i, x, y)
        out[lesson.setting_label(res.configs[i].settings)] = {x: ex, y: ey}
    for i in res.corner_indices():
        ex, ey = res.point(i, x, y)
        out["single-task"] = {x: ex, y: ey}
    return out


def bars_headline(lesson: Lesson, res: SweepResult) -> dict:
    """{"setting label": {metric: Estimate}} for every grid point, then, with a `reference`
    setting, {"X − reference (paired)": {metric: paired difference over the common seeds}}."""
    out, per = {}, {}
    for i in res.grid():
        name = lesson.setting_label(res.configs[i].settings)
        s = res.summary(i)
        out[name] = {m: (s.get(m.split("/")[0]) or {}).get(m.split("/")[1]) or mean_ci([]) for m in lesson.metrics}
        per[name] = res.per_seed(i)
    if lesson.reference and lesson.reference in per:
        ref = per[lesson.reference]
        for name, ps in per.items():
            if name == lesson.reference:
                continue
            seeds = sorted(set(ref) & set(ps))
            out[f"{name} − {lesson.reference} (paired)"] = {
                m: paired_difference([_value(ref[k], m) for k in seeds], [_value(ps[k], m) for k in seeds])
                for m in lesson.metrics}
    return out


def _value(ms: dict, path: str) -> float:
    t, k = path.split("/")
    v = (ms.get(t) or {}).get(k)
    return math.nan if v is None else v


HEADLINES = {"gain": gain_headline, "front": front_headline, "bars": bars_headline}


def headline(lesson: Lesson, res: SweepResult) -> dict:
    return HEADLINES[lesson.kind](lesson, res)


def figure(lesson: Lesson, res: SweepResult, h: dict | None = None):
    """The lesson's figure, every number with its 95% CI as an error bar."""

    h = headline(lesson, res) if h is None else h
    if lesson.kind == "gain":
        arch_axis = next(a for a in lesson.axes if a.keys == ("arch",))
        swept = next(a for a in lesson.axes if a is not arch_axis)
        series: dict[str, list] = {}
        for i in res.grid():
            st = res.configs[i].settings
            if st["arch"] == "single":
                continue
            name = " · ".join([arch_axis.label_of(st)] + [swept.label_of(st)])
            series.setdefault(arch_axis.label_of(st), []).append((float(st[swept.keys[0]]), h[name]["gain"]))
            mean = h.get(f"{MEAN_OF_MTL} · {swept.label_of(st)}")
            if mean is not None and (float(st[swept.keys[0]]), mean["gain"]) not in series.get(MEAN_OF_MTL, []):
                series.setdefault(MEAN_OF_MTL, []).append((float(st[swept.keys[0]]), mean["gain"]))
        return charts.gain(series, swept.labels_title or swept.keys[0],
                           "AUC gain over single-task (mean of the tasks)", lesson.title)
    if lesson.kind == "front":
        x, y = lesson.metrics
        grid = res.grid()
        pts = [(*res.point(i, x, y), lesson.setting_label(res.configs[i].settings)) for i in grid]
        on = [grid.index(i) for i in res.front(x, y)]
        group = {"name": lesson.front_name or "front", "points": pts, "front": on,
                 "rhv": res.relative_hypervolume(x, y)}
        return charts.front([group], x, y, lesson.title, corner=res.best_single(x, y))
    names = [n for n in h if not n.endswith("(paired)")]
    metrics = {m: [h[n][m] for n in names] for m in (lesson.plot or lesson.metrics)}
    floor = 0.5 if all(m.endswith("auc") for m in metrics) else None
    return charts.bars(names, metrics, lesson.title, "test " + " / ".join(sorted({m.split('/')[1] for m in metrics})),
                       floor=floor)
