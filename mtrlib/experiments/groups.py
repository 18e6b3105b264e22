"""Experiments: the runs of one setup with different seeds, summarised as mean ± 95% CI.

Every run's meta.json holds its group (`mtrlib.runs.naming.group_key`: a hash of the setup
without the seed), so repeats made at different times, from the CLI, the Train page or a
sweep, are one experiment; a run written before groups existed is a group of one. Only
finished runs count (a stopped run learned less, a failed one nothing), and one run per seed
(the newest): two runs with the same seed are the same measurement twice, and counting both
would narrow the interval for nothing.

Two experiments run with the same seeds share each seed's split and sampled negatives, so
their per-seed difference cancels what the seeds share (`mtrlib.eval.stats.paired_difference`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..eval.stats import Estimate, mean_ci, paired_difference, verdict

KEY_METRICS = ("auc", "logloss", "rmse", "mae", "rmse_orig")
HIGHER_IS_BETTER = {"auc": True, "gauc": True, "logloss": False, "rmse": False, "mae": False, "rmse_orig": False,
                    "mae_orig": False}
MIN_PAIRED = 2


def key_metrics(metrics: dict) -> dict[str, dict[str, float]]:
    """{task: {metric: value}} with the headline metrics only (auc, logloss, rmse, mae)."""
    out = {}
    for t, ms in (metrics or {}).items():
        if isinstance(ms, dict):
            keep = {k: float(ms[k]) for k in KEY_METRICS if isinstance(ms.get(k), (int, float))}
            if keep:
                out[t] = keep
    return out


def summarise(per_seed: dict[int, dict]) -> dict[str, dict[str, Estimate]]:
    """{seed: {task: {metric: value}}} -> {task: {metric: Estimate over the seeds}}."""
    tasks: dict[str, dict[str, list[float]]] = {}
    for seed in sorted(per_seed):
        for t, ms in per_seed[seed].items():
            for k, v in ms.items():
                tasks.setdefault(t, {}).setdefault(k, []).append(v)
    return {t: {k: mean_ci(vs) for k, vs in ms.items()} for t, ms in tasks.items()}


def summary_json(summary: dict[str, dict[str, Estimate]]) -> dict:
    """The JSON shape of a summary: {TASK: {METRIC: {"mean", "ci95", "n"}}}."""
    return {t: {k: e.to_dict() for k, e in ms.items()} for t, ms in summary.items()}


def metric_value(summary: dict, path: str) -> Estimate:
    """`summary["click"]["auc"]` for the path 'click/auc' (an empty estimate when absent)."""
    task, _, metric = path.partition("/")
    e = (summary.get(task) or {}).get(metric)
    return e if e is not None else Estimate(math.nan, math.nan, 0)


def higher_is_better(path_or_metric: str) -> bool:
    return HIGHER_IS_BETTER.get(path_or_metric.rsplit("/", 1)[-1], True)


_SUFFIX = re.compile(r"( · (seed \d+|\d{2}:\d{2}:\d{2}))+$")


@dataclass
class Experiment:
    """One group of runs: the newest finished run of each seed, and what they measured."""
    group: str
    runs: list = field(default_factory=list)  # RunInfo, one per seed, newest first
    left_out: int = 0  # runs of the group not counted: unfinished, or an older run of a seed

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs if r.seed is not None)

    @property
    def per_seed(self) -> dict[int, dict]:
        return {r.seed: key_metrics(r.metrics) for r in self.runs if r.seed is not None}

    @property
    def summary(self) -> dict[str, dict[str, Estimate]]:
        return summarise(self.per_seed)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def label(self) -> str:
        """The newest run's name without its time or seed suffix."""
        return _SUFFIX.sub("", self.runs[0].name) if self.runs else self.group

    @property
    def newest(self) -> float:
        return max((r.created for r in self.runs), default=0.0)


def experiments(runs) -> list[Experiment]:
    """Group RunInfo rows by their group id; newest experiment first. Groups with no finished
    run are left out (nothing to summarise); each counts its newest finished run per seed."""
    by: dict[str, list] = {}
    for r in runs:
        by.setdefault(r.group or r.id, []).append(r)
    out = []
    for g, rs in by.items():
        done = sorted((r for r in rs if r.status == "finished" and r.metrics), key=lambda r: r.created, reverse=True)
        keep, seen = [], set()
        for r in done:
            if r.seed in seen:
                continue
            seen.add(r.seed)
            keep.append(r)
        if keep:
            out.append(Experiment(g, keep, left_out=len(rs) - len(keep)))
    out.sort(key=lambda e: e.newest, reverse=True)
    return out


@dataclass
class Difference:
    """B against A on one task's metric: both estimates, the paired difference and its verdict."""
    task: str
    metric: str
    a: Estimate
    b: Estimate
    diff: Estimate | None  # b - a per common seed (None: the seeds do not match)
    verdict: str

    def to_dict(self) -> dict:
        return {"task": self.task, "metric": self.metric, "a": self.a.to_dict(), "b": self.b.to_dict(),
                "diff": self.diff.to_dict() if self.diff is not None else None, "verdict": self.verdict}


def compare(a_per_seed: dict[int, dict], b_per_seed: dict[int, dict]) -> tuple[list[Difference], list[int]]:
    """Per task and metric both experiments measured: B - A paired over their common seeds, with
    a plain-words verdict for B ('better', 'worse', 'within noise'); when fewer than two seeds are
    common, no difference is claimed. Returns (differences, common seeds)."""
    common = sorted(set(a_per_seed) & set(b_per_seed))
    sa, sb = summarise(a_per_seed), summarise(b_per_seed)
    out = []
    for t in sa:
        for k in sa[t]:
            if k not in sb.get(t, {}):
                continue
            pairs = [(a_per_seed[s].get(t, {}).get(k), b_per_seed[s].get(t, {}).get(k)) for s in common]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            if len(pairs) >= MIN_PAIRED:
                d = paired_difference([x for x, _ in pairs], [y for _, y in pairs])
                word = verdict(d, HIGHER_IS_BETTER.get(k, True))
            else:
                d, word = None, (f"seeds do not match: run both with the same {MIN_PAIRED}+ seeds to compare"
                                 if len(common) < MIN_PAIRED else "too few seeds to tell")
            out.append(Difference(t, k, sa[t][k], sb[t][k], d, word))
    return out, common


def sentence(d: Difference, a_name: str = "A", b_name: str = "B") -> str:
    """'B's click AUC is higher by 0.012 ± 0.004 (paired over 3 seeds): better.'"""
    if d.diff is None:
        return f"{d.task} {d.metric}: {d.verdict}."
    up = "higher" if d.diff.mean >= 0 else "lower"
    return (f"{b_name}'s {d.task} {d.metric} is {up} by {abs(d.diff.mean):.4f} ± {d.diff.ci95:.4f} "
            f"(paired over {d.diff.n} seeds): {d.verdict}.")


__all__ = ["Experiment", "experiments", "summarise", "summary_json", "compare", "Difference", "sentence",
           "key_metrics", "metric_value", "higher_is_better", "HIGHER_IS_BETTER"]
