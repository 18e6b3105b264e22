"""mtrlib.eval.pointwise against scikit-learn, per task by name, conditional tasks where observed."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, mean_squared_error, roc_auc_score

from mtrlib.data.tasks import parse_tasks
from mtrlib.eval.pointwise import (auc, binary_metrics, headline, logloss, popularity_baseline, regression_metrics,
    task_metrics)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(500) < 0.3
    score = np.round(rng.random(500) + 0.3 * y, 1)  # rounding makes many ties
    assert auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_auc_edge_cases():
    assert np.isnan(auc(np.ones(5), np.arange(5)))
    assert np.isnan(auc(np.zeros(5), np.arange(5)))
    assert auc([0, 1], [0.1, 0.9]) == 1.0
    assert auc([0, 1], [0.9, 0.1]) == 0.0
    assert auc([0, 1, 0, 1], [0.5] * 4) == 0.5


def test_logloss_accuracy_regression_match_sklearn():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.4).astype(float)
    p = np.clip(rng.random(300), 0.01, 0.99)
    assert logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-9)
    m = binary_metrics(y, p)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p >= 0.5))
    assert m["n"] == 300
    assert np.isfinite(logloss([1, 0], [1.0, 0.0]))  # clipped, not inf
    t, pred = rng.normal(size=200), rng.normal(size=200)
    r = regression_metrics(t, pred)
    assert r["rmse"] == pytest.approx(np.sqrt(mean_squared_error(t, pred)))
    assert r["mae"] == pytest.approx(mean_absolute_error(t, pred))


def test_task_metrics_per_task_over_observed_rows_only():
    tasks = parse_tasks(["click=click", "like=like|click", "dwell=dwell:reg|click"])
    rng = np.random.default_rng(2)
    n = 400
    click = (rng.random(n) < 0.5).astype(np.float32)
    like = (rng.random(n) < 0.6).astype(np.float32)
    dwell = rng.normal(3, 1, n).astype(np.float32)
    labels = np.stack([click, like * click, dwell * click], 1)
    mask = np.stack([np.ones(n, bool), click == 1, click == 1], 1)
    preds = np.stack([rng.random(n), rng.random(n), rng.normal(3, 1, n)], 1)
    # garbage where unobserved must not matter
    preds2 = preds.copy()
    preds2[~mask[:, 1], 1] = 1e6
    out = task_metrics(tasks, labels, mask, preds)
    assert set(out) == {"click", "like", "dwell"}
    obs = click == 1
    assert out["like"]["n"] == obs.sum()
    assert out["like"]["auc"] == pytest.approx(roc_auc_score(like[obs], preds[obs, 1]))
    assert out["click"]["auc"] == pytest.approx(roc_auc_score(click, preds[:, 0]))
    assert out["dwell"]["rmse"] == pytest.approx(np.sqrt(mean_squared_error(dwell[obs], preds[obs, 2])))
    assert task_metrics(tasks, labels, mask, preds2)["like"]["auc"] == out["like"]["auc"]
    assert headline(tasks[0], out["click"]) == ("auc", out["click"]["auc"])
    assert headline(tasks[2], out["dwell"]) == ("rmse", out["dwell"]["rmse"])


def test_popularity_baseline_counts_positives_per_item():
    tasks = parse_tasks(["click=click", "dwell=dwell:reg"])
    tr_items = np.array([0, 0, 0, 1, 1, 2])
    tr_labels = np.array([[1, 5], [1, 7], [0, 6], [1, 1], [0, 3], [0, 2]], np.float32)
    tr_mask = np.ones_like(tr_labels, bool)
    te_items = np.array([0, 1, 2, 3])
    te_labels = np.array([[1, 6], [1, 2], [0, 2], [0, 4]], np.float32)
    te_mask = np.ones_like(te_labels, bool)
    out = popularity_baseline(tasks, tr_items, tr_labels, tr_mask, te_items, te_labels, te_mask, n_items=4)
    # click scores: item0 2, item1 1, item2 0, item3 0 -> positives (0, 1) above negatives (2, 3)
    assert out["click"]["auc"] == 1.0
    # dwell: per-item mean, unseen item -> global mean (24/6 = 4)
    pred = np.array([6.0, 2.0, 2.0, 4.0])
    assert out["dwell"]["rmse"] == pytest.approx(np.sqrt(np.mean((pred - te_labels[:, 1]) ** 2)))
