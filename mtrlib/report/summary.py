"""The report's opening paragraph: plain words generated from the numbers.

The words only restate what the experiments package decided: a comparison's verdicts are
`mtrlib.experiments.groups.compare`'s (paired differences over common seeds), a sweep's "beyond
noise" is two 95% intervals that do not overlap (as `lessons._beats`), and a lesson's verdict is
its own `lesson_json`. Nothing here computes a statistic of its own.
"""
from __future__ import annotations

import math

from ..eval.stats import Estimate
from ..experiments.groups import higher_is_better, metric_value
from .sections import ci_text

METRIC_NAMES = {"auc": "AUC", "gauc": "GAUC", "rmse": "RMSE", "mae": "MAE", "logloss": "log loss",
                "rmse_orig": "RMSE (original units)", "mae_orig": "MAE (original units)"}
HEADLINES = ("auc", "rmse", "recall@10", "logloss", "mae")


def metric_name(k: str) -> str:
    return METRIC_NAMES.get(k, k)


def headline_of(ms: dict) -> str | None:
    """A task's headline metric among those measured (AUC, else RMSE, ...)."""
    return next((k for k in HEADLINES if k in ms), None)


def _sentence(parts: list[str]) -> str:
    text = "; ".join(p for p in parts if p)
    return (text[:1].upper() + text[1:] + ".") if text else ""


def run_summary(info, experiment=None) -> str:
    """One run: each task's headline test metric against the popularity baseline, and the
    experiment's mean ± CI when its setup was repeated with other seeds."""
    d = info.dataset or {}
    parts = []
    for t, ms in (info.metrics or {}).items():
        k = headline_of(ms)
        if k is None:
            continue
        base = (info.baseline or {}).get(t, {}).get(k)
        text = f"{t} {metric_name(k)} {ms[k]:.4f}"
        if isinstance(base, (int, float)) and math.isfinite(base):
            text += f" against {base:.4f} for popularity ({ms[k] - base:+.4f})"
        parts.append(text)
    head = (f"Run '{info.name}' ({info.model}, {info.epochs_done} epochs, {info.status}) on "
            f"{d.get('name', 'its data')}. ")
    if not parts:
        return head + "It has no test metrics: it did not finish."
    text = head + "On the test split: " + "; ".join(parts) + "."
    if experiment is not None and experiment.n >= 2:
        means = [f"{t} {metric_name(k)} {ci_text(ms[k])}" for t, ms in experiment.summary.items()
                 if (k := headline_of(ms))]
        text += (f" Its setup was run with {experiment.n} seeds: " + "; ".join(means) +
                 " (mean ± 95% CI over the seeds).")
    else:
        text += (" This is one run with one seed: the seed alone moves AUC by about ±0.02, so a difference that "
                 "small from another run is not evidence.")
    return text


def group_summary(exp) -> str:
    means = [f"{t} {metric_name(k)} {ci_text(ms[k])}" for t, ms in exp.summary.items() if (k := headline_of(ms))]
    seeds = ", ".join(map(str, exp.seeds))
    text = f"{exp.label}: over {exp.n} seed{'s' if exp.n != 1 else ''} ({seeds}), " + "; ".join(means)
    text += " (mean ± 95% CI over the seeds)." if exp.n > 1 else ". One seed gives no interval."
    return text


def compare_summary(diffs, common: list[int], a_name: str, b_name: str) -> str:
    """'B beats A on like by +0.0120 AUC, beyond seed noise over 5 seeds; on click the two are
    within noise', from `compare`'s paired differences and verdicts (headline metric per task)."""
    if len(common) < 2:
        return (f"{a_name} and {b_name} share {len(common)} seed(s), so no paired difference is claimed: run both "
                "with the same two or more seeds (e.g. 0, 1, 2) to compare them.")
    parts = []
    tasks = list(dict.fromkeys(d.task for d in diffs))
    for t in tasks:
        mine = {d.metric: d for d in diffs if d.task == t}
        k = headline_of(mine)
        if k is None:
            continue
        d = mine[k]
        if d.diff is None:
            parts.append(f"on {t}: {d.verdict}")
        elif d.verdict in ("better", "worse"):
            win, lose = (b_name, a_name) if d.verdict == "better" else (a_name, b_name)
            parts.append(f"{win} beats {lose} on {t} by {abs(d.diff.mean):.4f} {metric_name(k)} "
                         f"(± {d.diff.ci95:.4f}), beyond seed noise over {d.diff.n} seeds")
        else:
            parts.append(f"on {t} the two are within noise (B − A: {d.diff.mean:+.4f} "
                         f"± {d.diff.ci95:.4f} {metric_name(k)} over {d.diff.n} seeds)")
    tag = lambda n, x: n if n.endswith(f"({x})") else f"{n} ({x})"  # noqa: E731
    return (f"{tag(b_name, 'B')} against {tag(a_name, 'A')}, paired over their {len(common)} common seeds "
            f"({', '.join(map(str, common))}). " + _sentence(parts))


def _beats(a: Estimate, b: Estimate) -> bool:
    """a's 95% interval lies wholly above b's (both over 2+ seeds): the lessons' own test."""
    return a.n >= 2 and b.n >= 2 and math.isfinite(a.ci95) and math.isfinite(b.ci95) and a.low > b.high


def best_of(res, path: str, idx: list[int]) -> str:
    """'on click AUC the best is arch=mmoe (0.7123 ± 0.0040), beyond seed noise over the next'."""
    est = [(i, metric_value(res.summary(i), path)) for i in idx]
    est = [(i, e) for i, e in est if e.n and math.isfinite(e.mean)]
    if not est:
        return ""
    up = higher_is_better(path)
    est.sort(key=lambda p: p[1].mean, reverse=up)
    (i, e), rest = est[0], est[1:]
    t, _, k = path.partition("/")
    text = f"on {t} {metric_name(k)} the best is {res.configs[i].label} ({ci_text(e)})"
    if rest:
        j, e2 = rest[0]
        clear = _beats(e, e2) if up else _beats(Estimate(-e2.mean, e2.ci95, e2.n), Estimate(-e.mean, e.ci95, e.n))
        text += (", beyond seed noise over the next" if clear else
                 f", within noise of {res.configs[j].label} ({ci_text(e2)})")
    return text


def sweep_summary(res, x: str | None, y: str | None, front: bool = True, best: bool = True) -> str:
    """Runs finished, the best setting on each metric (beyond noise or not), the front. `best` and
    `front` off where the settings differ in their data (a gain lesson's worlds), so no cross-world claim."""
    done = sum(c.status == "finished" for c in res.cells)
    text = (f"{len(res.configs)} settings × {len(res.sweep.seeds)} seeds: {done} of {len(res.cells)} runs finished. ")
    grid = res.grid()
    parts = [best_of(res, p, grid) for p in (x, y) if p] if best else []
    text += _sentence(parts)
    if x and y and front:
        on = [res.configs[i].label for i in res.front(x, y)]
        text += f" The Pareto front of {y} against {x} (no other setting beats these on both): {', '.join(on)}."
        rhv = res.relative_hypervolume(x, y)
        if rhv is not None and math.isfinite(rhv):
            why = ("the shared model offers more than training the tasks apart" if rhv > 1
                   else "training the tasks apart reaches further")
            text += f" Its hypervolume is {rhv:.2f}× that of the best single-task pair ({why})."
    return text


__all__ = ["run_summary", "group_summary", "compare_summary", "sweep_summary", "metric_name", "headline_of"]
