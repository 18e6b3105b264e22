"""Seeds and confidence intervals (mtrlib.eval.stats) against scipy's own t-interval."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from mtrlib.eval.stats import mean_ci, paired_difference, t_quantile, verdict


@pytest.mark.parametrize("values", [[0.81, 0.79, 0.83], [1.0, 2.0, 4.0, 8.0, 16.0], list(np.linspace(0, 1, 11))])
def test_mean_ci_matches_scipy_t_interval(values):
    e = mean_ci(values)
    lo, hi = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
    assert e.n == len(values) and e.mean == pytest.approx(np.mean(values))
    assert e.low == pytest.approx(lo) and e.high == pytest.approx(hi)


def test_t_quantile_for_three_seeds():
    assert t_quantile(3) == pytest.approx(4.302652729911275)


def test_single_value_and_empty_and_nan():
    assert mean_ci([0.7]).mean == 0.7 and math.isnan(mean_ci([0.7]).ci95) and mean_ci([0.7]).n == 1
    assert mean_ci([]).n == 0 and math.isnan(mean_ci([]).mean)
    assert mean_ci([0.5, float("nan"), 0.7]).n == 2


def test_paired_difference_cancels_what_the_seeds_share():
    a = [0.70, 0.80, 0.75, 0.85, 0.78]
    b = [x + 0.01 for x in a]  # the same shift on every seed
    d = paired_difference(a, b)
    assert d.mean == pytest.approx(0.01) and d.ci95 == pytest.approx(0.0, abs=1e-12)
    assert verdict(d) == "better" and verdict(d, higher_is_better=False) == "worse"
    unpaired = mean_ci(b).low - mean_ci(a).high
    assert unpaired < 0  # unpaired intervals overlap: only the pairing shows the effect
    with pytest.raises(ValueError):
        paired_difference([1, 2], [1, 2, 3])


def test_verdict_within_noise_and_too_few():
    assert verdict(paired_difference([0.7, 0.8, 0.75], [0.71, 0.78, 0.76])) == "within noise"
    assert verdict(paired_difference([0.7], [0.8])) == "too few seeds to tell"
