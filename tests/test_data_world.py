"""The built-in synthetic world: ground truth, the correlation knob, the like funnel, moods in
the text, the exposure sampler, the size limit, determinism."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mtrlib.data.world as W
from mtrlib.data import DataError, build_examples, make_world, parse_tasks
from mtrlib.data.world import APP_MAX_IMPRESSIONS, MOODS, true_logits, world_logits

SMALL = dict(n_users=300, n_items=80)


def _corr(ds) -> float:
    a, b = world_logits(ds)
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("seed", [0, 1])
def test_correlation_knob_is_the_correlation_of_the_task_scores(seed):
    rhos = [-0.9, -0.5, 0.0, 0.5, 0.9, 1.0]
    corr = [_corr(make_world(**SMALL, correlation=r, seed=seed)) for r in rhos]
    assert all(a < b for a, b in zip(corr, corr[1:])), corr  # rises with rho
    np.testing.assert_allclose(corr, rhos, atol=0.05)  # and is rho (each part standardised)


def test_agreeing_tasks_agree_in_the_labels_too():
    def like_rate_among_likely_clicks(rho):
        ds = make_world(n_users=600, n_items=80, correlation=rho, seed=0)
        s_click, _ = world_logits(ds)
        top = s_click > np.quantile(s_click, 0.8)  # the items a user clicks most readily
        return float(ds.interactions.loc[top, "like"].mean())
    assert like_rate_among_likely_clicks(0.9) > like_rate_among_likely_clicks(-0.9) + 0.3


def test_deterministic_by_seed():
    a = make_world(**SMALL, seed=7)
    b = make_world(**SMALL, seed=7)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.items, b.items)
    pd.testing.assert_frame_equal(a.users, b.users)
    np.testing.assert_array_equal(a.ground_truth["item_latent"], b.ground_truth["item_latent"])
    c = make_world(**SMALL, seed=8)
    assert not a.interactions["item_id"].equals(c.interactions["item_id"])


@pytest.mark.parametrize("like_observed", ["all", "clicks"])
def test_world_shape_and_ground_truth(like_observed):
    ds = make_world(**SMALL, n_genres=5, correlation=0.3, seed=0, like_observed=like_observed)
    inter = ds.interactions
    assert ds.layout == "world" and ds.n_users == 300 and ds.n_items == 80
    assert len(inter) == 300 * 40 and inter["user_id"].nunique() == 300
    assert (inter.groupby("user_id").size() == 40).all()
    assert inter["timestamp"].dtype == np.int64
    assert not inter.duplicated(["user_id", "item_id"]).any()  # one impression per pair
    clicked = inter["click"] == 1
    assert inter.loc[~clicked, "dwell"].isna().all() and inter.loc[clicked, "dwell"].notna().all()
    if like_observed == "all":  # the correlation lesson: both binary tasks on every impression
        assert inter["like"].notna().all()
        assert parse_tasks(ds.suggested_tasks)[1].given is None
    else:  # the funnel: a like only after a click
        assert inter.loc[~clicked, "like"].isna().all() and inter.loc[clicked, "like"].notna().all()
        assert parse_tasks(ds.suggested_tasks)[1].given == "click"
    assert 0.05 < clicked.mean() < 0.8 and 0.05 < inter["like"].mean() < 0.95
    gt = ds.ground_truth
    assert gt["item_genre"].index.equals(ds.items.index) and gt["user_genre"].index.equals(ds.users.index)
    assert gt["item_genre"].nunique() == 5 and (ds.items["genre"] == gt["item_genre"]).all()
    assert gt["item_latent"].shape == (80, 16) and gt["user_latent"].shape == (300, 16)
    assert ds.items["title"].is_unique
    assert set(ds.item_features) == {"genre", "price_band", "title", "description"}
    counts = inter["item_id"].value_counts()
    k = len(counts) // 10
    assert counts.iloc[:k].sum() > 2 * counts.iloc[-k:].sum()  # popularity is skewed (Zipf-like)


def test_true_logits_are_the_labels_probabilities():
    """The truth scores any pair; on the impressions it is what the labels were drawn from."""
    ds = make_world(n_users=2000, n_items=100, seed=2)
    gt, inter = ds.ground_truth, ds.interactions
    u = gt["user_genre"].index.get_indexer(inter["user_id"])
    i = gt["item_genre"].index.get_indexer(inter["item_id"])
    click, like = true_logits(gt, u, i)
    for logit, col in ((click, "click"), (like, "like")):
        p = 1 / (1 + np.exp(-logit))
        bins = np.digitize(p, [0.2, 0.4, 0.6, 0.8])
        for b in range(5):  # calibrated in every band
            sel = bins == b
            assert abs(inter.loc[sel, col].mean() - p[sel].mean()) < 0.03, (col, b)
    M = true_logits(gt, np.arange(5)[:, None], np.arange(100)[None, :])[0]
    assert M.shape == (5, 100)


def test_users_prefer_their_favourite_genre():
    ds = make_world(n_users=400, n_items=200, seed=0)
    gt = ds.ground_truth
    click = true_logits(gt, np.arange(400)[:, None], np.arange(200)[None, :])[0]
    top = np.argsort(-click, 1)[:, :10]
    fav = gt["user_genre"].to_numpy()[:, None] == gt["item_genre"].to_numpy()[top]
    assert fav.mean() > 0.9


def test_moods_shape_the_latent_and_are_named_in_the_text():
    ds = make_world(**SMALL, moods=4, seed=1)
    gt, items = ds.ground_truth, ds.items
    mood = gt["item_mood"]
    assert set(mood) == {m for m, _ in MOODS[:4]}
    for iid, m in mood.items():  # every description names its item's mood
        words = dict(MOODS)[m]
        assert any(w in items.loc[iid, "description"] for w in words)
    # within a genre, items of one mood are closer to each other than to other moods' items
    q = gt["item_latent"]
    g = gt["item_genre"].to_numpy()
    same = [np.linalg.norm(q[a] - q[b]) for a in range(80) for b in range(a) if g[a] == g[b] and mood.iloc[a] == mood.iloc[b]]
    diff = [np.linalg.norm(q[a] - q[b]) for a in range(80) for b in range(a) if g[a] == g[b] and mood.iloc[a] != mood.iloc[b]]
    assert np.mean(same) < 0.8 * np.mean(diff)
    plain = make_world(**SMALL, moods=0, seed=1)
    assert plain.ground_truth["item_mood"].isna().all()
    assert not any(w in d for d in plain.items["description"] for _, ws in MOODS for w in ws)


@pytest.mark.parametrize("n_items,m", [(60, 40), (2000, 30)])
def test_exposure_gives_distinct_items_from_the_genre_popularity_mixture(n_items, m, monkeypatch):
    """Both samplers (dense Gumbel top-m for a large share of the catalogue, draws with
    replacement keeping the first m distinct otherwise) give m distinct items per user, more
    of them in the user's genre than popularity alone would show, the most popular to most."""
    rng = np.random.default_rng(0)
    ug, ig = rng.integers(0, 4, 3000), rng.integers(0, 4, n_items)
    pop = 1 / np.arange(1, n_items + 1)
    pop /= pop.sum()

    def share(exposure):
        monkeypatch.setattr(W, "GENRE_EXPOSURE", exposure)
        u, i = W._exposure(np.random.default_rng(1), ug, ig, pop, m)
        assert len(u) == 3000 * m and (np.bincount(u) == m).all()
        pairs = u * n_items + i
        assert len(np.unique(pairs)) == len(pairs)
        return (ug[u] == ig[i]).mean(), i

    mixed, i = share(0.4)
    assert mixed > share(0.0)[0] + (0.05 if 4 * m >= n_items else 0.2)
    top = np.argsort(-pop)[:5]
    assert np.isin(i, top).sum() > 3000 * 2.5


def test_app_limit_and_no_limit_for_the_cli():
    kw = dict(n_users=600_000, n_items=50, impressions_per_user=40)
    with pytest.raises(DataError, match="over the limit"):
        make_world(**kw)
    assert APP_MAX_IMPRESSIONS == 20_000_000
    ds = make_world(n_users=30_000, n_items=3_000, impressions_per_user=30, max_impressions=None, seed=5)
    assert len(ds.interactions) == 900_000
    assert ds.interactions["user_id"].iloc[-1] == "u29999"  # zero-padded ids: string order is row order
    assert ds.interactions["user_id"].is_monotonic_increasing


def test_world_examples_follow_the_tasks():
    ds = make_world(**SMALL, seed=0, like_observed="clicks")
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
    (dict(moods=9), "between 0 and 8 moods"),
    (dict(like_observed="sometimes"), "like_observed"),
    (dict(colour="blue"), "Unknown world setting"),
])
def test_world_refuses_bad_knobs(kw, fragment):
    with pytest.raises(DataError, match=fragment):
        make_world(**{**SMALL, **kw})


def test_world_logits_need_a_world():
    ds = make_world(**SMALL)
    ds.ground_truth = None
    with pytest.raises(DataError, match="not a synthetic world"):
        world_logits(ds)
