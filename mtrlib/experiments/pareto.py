"""Pareto fronts of two task metrics, and the hypervolume that scores a whole front.

A configuration *dominates* another when it is at least as good on both metrics and better on
one; the non-dominated ones form the front, the best trade-offs on offer. The hypervolume of a
front is the area it dominates above a reference point (Zitzler & Thiele, "Multiobjective
Evolutionary Algorithms: A Comparative Case Study and the Strength Pareto Approach", IEEE TEC
1999): one number for a whole front, larger is better, so two architectures' fronts compare
as wholes, not point by point.

For AUCs the reference point is chance (0.5): the area is how far the front reaches above a
coin toss. Against the *best single-task pair* (each task's own single-task model, the corner
that separate models reach), the relative hypervolume says how much more a multi-task front
offers than training the tasks apart: above 1, sharing pays; below 1, it costs.
"""
from __future__ import annotations

import math

import numpy as np

CHANCE = {"auc": 0.5, "gauc": 0.5}


def _oriented(points, maximise) -> np.ndarray:
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    sign = np.array([1.0 if m else -1.0 for m in maximise])
    return p * sign


def dominates(a, b, maximise=(True, True)) -> bool:
    """True when `a` is at least as good as `b` on both metrics and better on one."""
    pa, pb = _oriented([a], maximise)[0], _oriented([b], maximise)[0]
    return bool(np.all(pa >= pb) and np.any(pa > pb))


def front(points, maximise=(True, True)) -> list[int]:
    """Indices of the non-dominated points (points with a NaN are never on the front), in
    order of the first metric. Equal points are all kept."""
    p = _oriented(points, maximise)
    ok = [i for i in range(len(p)) if np.all(np.isfinite(p[i]))]
    keep = [i for i in ok if not any(np.all(p[j] >= p[i]) and np.any(p[j] > p[i]) for j in ok if j != i)]
    return sorted(keep, key=lambda i: (p[i][0], -p[i][1]))


def hypervolume(points, ref, maximise=(True, True)) -> float:
    """Area dominated by `points` and bounded by the reference point `ref` (points that do not
    beat `ref` on both metrics add nothing)."""
    p = _oriented(points, maximise)
    r = _oriented([ref], maximise)[0]
    p = p[np.all(np.isfinite(p), axis=1) & np.all(p > r, axis=1)]
    if not len(p):
        return 0.0
    p = p[np.lexsort((-p[:, 1], -p[:, 0]))]  # by the first metric, best first
    area, y_done = 0.0, r[1]
    for x, y in p:
        if y > y_done:
            area += (x - r[0]) * (y - y_done)
            y_done = y
    return float(area)


def reference(metrics: tuple[str, str], points, maximise=(True, True)) -> tuple[float, float]:
    """The reference point: chance for AUC-like metrics, else the worst value among `points`."""
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    out = []
    for d, (name, up) in enumerate(zip(metrics, maximise)):
        base = name.rsplit("/", 1)[-1]
        if base in CHANCE:
            out.append(CHANCE[base])
        else:
            col = p[:, d][np.isfinite(p[:, d])]
            out.append(float(col.min() if up else col.max()) if len(col) else math.nan)
    return out[0], out[1]


def relative_hypervolume(points, corner, ref, maximise=(True, True)) -> float:
    """Hypervolume of `points` over that of the single point `corner` (the best single-task
    pair): 1 = the front reaches exactly as far as separate single-task models."""
    base = hypervolume([corner], ref, maximise)
    return hypervolume(points, ref, maximise) / base if base > 0 else math.nan


__all__ = ["dominates", "front", "hypervolume", "reference", "relative_hypervolume", "CHANCE"]
