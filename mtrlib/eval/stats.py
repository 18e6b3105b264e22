"""Statistics for claims over seeds: mean and 95% t-interval, and paired differences.

One run against one run differs by about +-0.02 AUC from the seed alone, so every comparison
the tool shows is over repeats: the mean, the half-width of its 95% confidence interval (a
Student t-interval over the n seeds), and, for two setups run with the same seeds, the paired
difference (which cancels what the seeds share) with a plain-words verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def t_quantile(n: int, level: float = 0.95) -> float:
    """The two-sided Student t critical value for n observations (n - 1 degrees of freedom)."""
    # deferred: scipy.stats costs a noticeable import; only confidence intervals need it
    from scipy.stats import t
    return float(t.ppf(0.5 + level / 2, n - 1))


@dataclass(frozen=True)
class Estimate:
    mean: float
    ci95: float  # half-width of the 95% t-interval (nan for a single value)
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.ci95

    @property
    def high(self) -> float:
        return self.mean + self.ci95

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci95": self.ci95, "n": self.n}

    def pair(self) -> list[float]:
        """[mean, ci95]: the shape benchmark JSON lines use."""
        return [self.mean, self.ci95]

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.ci95:.4f}" if self.n > 1 else f"{self.mean:.4f}"


def mean_ci(values, level: float = 0.95) -> Estimate:
    """Mean and t-interval half-width of finite values (NaNs dropped); n = 0 gives NaNs."""
    x = np.asarray([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    if n == 1:
        return Estimate(float(x[0]), math.nan, 1)
    half = t_quantile(n, level) * float(x.std(ddof=1)) / math.sqrt(n)
    return Estimate(float(x.mean()), half, n)


def paired_difference(a, b, level: float = 0.95) -> Estimate:
    """b - a per seed (the same seeds in the same order), as a mean with its t-interval."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("a paired difference needs the same seeds on both sides")
    return mean_ci(b - a, level)


def verdict(diff: Estimate, higher_is_better: bool = True) -> str:
    """Plain words for a difference with its interval: 'better', 'worse' or 'within noise'."""
    if diff.n < 2 or not math.isfinite(diff.ci95):
        return "too few seeds to tell"
    if diff.low > 0:
        return "better" if higher_is_better else "worse"
    if diff.high < 0:
        return "worse" if higher_is_better else "better"
    return "within noise"


__all__ = ["Estimate", "mean_ci", "paired_difference", "verdict", "t_quantile"]
