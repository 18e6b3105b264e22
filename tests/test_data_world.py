"""The built-in synthetic world: ground truth, the correlation knob, determinism."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtrlib.data import DataError, build_examples, make_world, parse_tasks
from mtrlib.data.world import world_logits

SMALL = dict(n_users=300, n_items=80)


def _corr(ds) -> float:
    a, b = world_logits(ds)
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("seed", [0, 1])
def test_correlation_knob_moves_the_task_agreement(seed):
    rhos = [-0.9, -0.5, 0.0, 0.5, 0.9, 1.0]
    corr = [_corr(make_world(**SMALL, correlation=r, seed=seed)) for r in rhos]
    assert all(a < b for a, b in zip(corr, corr[1:])), corr  # rises with rho
    assert corr[0] < -0.8 and corr[1] < -0.3 and corr[3] > 0.3 and corr[4] > 0.8
    assert corr[-1] == pytest.approx(1.0)


def test_agreeing_tasks_agree_in_the_labels_too():
    def like_rate_given_click(rho):
        ds = make_world(n_users=600, n_items=80, correlation=rho, seed=0)
        s_click, _ = world_logits(ds)
        inter = ds.interactions
        top = s_click > np.quantile(s_click, 0.8)  # the items a user clicks most readily
        return float(inter.loc[top & (inter["click"] == 1).to_numpy(), "like"].mean())
    assert like_rate_given_click(0.9) > like_rate_given_click(-0.9) + 0.2


def test_deterministic_by_seed():
    a = make_world(**SMALL, seed=7)
    b = make_world(**SMALL, seed=7)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.users, b.users)
    np.testing.assert_array_equal(a.ground_truth["item_latent"], b.ground_truth["item_latent"])
    c = make_world(**SMALL, seed=8)
    assert not a.interactions["item_id"].equals(c.interactions["item_id"])


def test_world_shape_and_ground_truth():
    ds = make_world(**SMALL, n_genres=5, correlation=0.3, seed=0)
    inter = ds.interactions
    assert ds.layout == "world" and ds.n_users == 300 and ds.n_items == 80
    assert len(inter) == 300 * 40 and inter["user_id"].nunique() == 300
    assert inter["timestamp"].dtype == np.int64
    assert not inter.duplicated(["user_id", "item_id"]).any()  # one impression per pair
    clicked = inter["click"] == 1
    assert inter.loc[~clicked, ["like", "dwell"]].isna().all().all()
    assert inter.loc[clicked, ["like", "dwell"]].notna().all().all()
    assert 0.05 < clicked.mean() < 0.8 and 0.05 < inter.loc[clicked, "like"].mean() < 0.95
    gt = ds.ground_truth
    assert gt["item_genre"].index.equals(ds.items.index) and gt["user_genre"].index.equals(ds.users.index)
    assert gt["item_genre"].nunique() == 5 and (ds.items["genre"] == gt["item_genre"]).all()
    assert gt["item_latent"].shape == (80, 16) and gt["user_latent"].shape == (300, 16)
    assert ds.items["title"].is_unique
    assert set(ds.item_features) == {"genre", "price_band", "title", "description"}
    assert parse_tasks(ds.suggested_tasks)[1].given == "click"
    counts = inter["item_id"].value_counts()
    k = len(counts) // 10
    assert counts.iloc[:k].sum() > 2 * counts.iloc[-k:].sum()  # popularity is skewed (Zipf-like)


def test_world_examples_follow_the_tasks():
    ds = make_world(**SMALL, seed=0)
    ex = build_examples(ds, ds.suggested_tasks)
    y = ex.labels
    assert len(ex) == len(ds.interactions)  # no implicit task: no sampled negatives
    click, like, dwell = y[:, 0], y[:, 1], y[:, 2]
    assert np.isnan(like[click == 0]).all() and np.isnan(dwell[click == 0]).all()
    assert (~np.isnan(like[click == 1])).all()


@pytest.mark.parametrize("kw,fragment", [
    (dict(correlation=1.5), "between -1 and 1"),
    (dict(n_genres=1), "between 2 and"),
    (dict(n_genres=99), "between 2 and"),
    (dict(n_users=5), "at least 10 users"),
    (dict(n_items=20), "Impressions per user"),
])
def test_world_refuses_bad_knobs(kw, fragment):
    with pytest.raises(DataError, match=fragment):
        make_world(**{**SMALL, **kw})


def test_world_logits_need_a_world():
    ds = make_world(**SMALL)
    ds.ground_truth = None
    with pytest.raises(DataError, match="not a synthetic world"):
        world_logits(ds)
