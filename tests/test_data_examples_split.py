"""Labelled examples (negative sampling, task labels) and train/validation/test splits."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtrlib.data import DataError, build_examples, load, split


def logs(n_users=30, n_items=50, per_user=12, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=per_user, replace=False)
        for k, i in enumerate(items):
            rows.append((f"u{u}", f"i{i}", 1_600_000_000 + int(rng.integers(0, 10**6)), int(rng.integers(1, 6))))
    return pd.DataFrame(rows, columns=["user", "item", "ts", "rating"])


@pytest.fixture(scope="module")
def ds():
    return load(logs(), pd.DataFrame({"item": [f"i{i}" for i in range(50)], "genre": ["a", "b"] * 25}))


def _pairs(frame: pd.DataFrame) -> set:
    return set(zip(frame["user_id"], frame["item_id"]))


# ---------------------------------------------------------------- negatives


def test_sampled_negatives_are_never_real_interactions(ds):
    ex = build_examples(ds, ["watched=implicit", "liked=rating>=4"], negatives=4, seed=3)
    f = ex.frame
    logged, sampled = f[~f["sampled"]], f[f["sampled"]]
    assert len(logged) == ds.n_interactions
    assert len(sampled) == 4 * ds.n_interactions  # counts right
    assert not (_pairs(sampled) & _pairs(ds.interactions))
    assert set(sampled["item_id"]) <= set(ds.items.index)
    # every negative belongs to a logged row of the same user, and carries its time
    origin = f["origin"].to_numpy()[f["sampled"].to_numpy()]
    assert (logged["user_id"].to_numpy()[origin] == sampled["user_id"].to_numpy()).all()
    assert (logged["timestamp"].to_numpy()[origin] == sampled["timestamp"].to_numpy()).all()
    y = ex.labels
    s = f["sampled"].to_numpy()
    assert (y[~s, 0] == 1).all() and (y[s, 0] == 0).all()  # implicit
    assert (y[s, 1] == 0).all()  # a non-interaction is not liked
    r = ds.interactions["rating"].to_numpy()
    assert (y[~s, 1] == (r >= 4)).all()


def test_negative_sampling_is_reproducible_by_seed(ds):
    a = build_examples(ds, ["w=implicit"], negatives=2, seed=5)
    b = build_examples(ds, ["w=implicit"], negatives=2, seed=5)
    c = build_examples(ds, ["w=implicit"], negatives=2, seed=6)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not a.frame["item_id"].equals(c.frame["item_id"])


def test_conditional_and_regression_labels_on_negatives(ds):
    ex = build_examples(ds, ["watched=implicit", "liked=rating>=4|watched", "stars=rating:reg|watched"],
                        negatives=1, seed=0)
    s = ex.frame["sampled"].to_numpy()
    assert np.isnan(ex.labels[s, 1]).all() and np.isnan(ex.labels[s, 2]).all()
    assert (~np.isnan(ex.labels[~s, 1])).all()
    assert ex.balance()["stars"]["observed"] == ds.n_interactions


def test_user_who_saw_everything_gets_fewer_negatives():
    df = pd.DataFrame({"user": ["a"] * 5 + ["b", "b"], "item": ["1", "2", "3", "4", "5", "1", "2"]})
    d = load(df)
    ex = build_examples(d, ["w=implicit"], negatives=3, seed=0)
    sampled = ex.frame[ex.frame["sampled"]]
    assert (sampled["user_id"] == "b").all() and len(sampled) == 6
    assert not (_pairs(sampled) & _pairs(d.interactions))
    assert any("fewer than 3 negatives" in n for n in ex.notes)


def test_implicit_needs_a_negative(ds):
    with pytest.raises(DataError, match="at least 1 sampled negative"):
        build_examples(ds, ["w=implicit"], negatives=0)


@pytest.mark.parametrize("values,task,fragment", [
    (["1", "0", "yes", "maybe"], "t=label", "row 4 has 'maybe'"),
    ([1, 0, 2, 1], "t=label", "only 0 and 1, but row 3 has 2"),
    ([1, 0, -1, 1], "t=label", "row 3 has -1"),
    ([1, 1, 1, 1], "t=label", "only positive labels"),
    ([0, 0, 0, 0], "t=label", "only negative labels"),
    (["4", "x", "3", "5"], "t=label>=4", "not a number ('x' at row 2)"),
    ([1.0, np.inf, 2.0, 3.0], "t=label:reg", "infinite value at row 2"),
    ([1, 0, 1, 0], "t=nope", "does not have"),
])
def test_label_problems(values, task, fragment):
    df = pd.DataFrame({"user": ["a", "b", "a", "b"] * 2, "item": ["1", "2", "3", "4"] * 2, "label": values * 2})
    d = load(df)
    with pytest.raises(DataError) as e:
        build_examples(d, [task])
    assert fragment in str(e.value)


def test_text_binary_labels():
    df = pd.DataFrame({"user": list("ababab"), "item": list("123456"),
                       "label": ["yes", "no", "TRUE", "false", "", "1"]})
    ex = build_examples(load(df), ["t=label"])
    np.testing.assert_array_equal(ex.labels[:, 0], [1, 0, 1, 0, np.nan, 1])


# ---------------------------------------------------------------- splits


@pytest.fixture(scope="module")
def ex(ds):
    return build_examples(ds, ["watched=implicit", "liked=rating>=4"], negatives=2, seed=0)


def _part_of(sp, n):
    part = np.full(n, -1)
    for k, idx in enumerate((sp.train, sp.val, sp.test)):
        assert (part[idx] == -1).all(), "parts overlap"
        part[idx] = k
    return part


@pytest.mark.parametrize("method", ["random", "temporal"])
def test_split_partitions_and_negatives_follow(ex, method):
    sp = split(ex, method, val_frac=0.1, test_frac=0.2, seed=0)
    part = _part_of(sp, len(ex))
    assert (part >= 0).all(), "every example is in one part"
    origin = ex.frame["origin"].to_numpy()
    assert (part == part[origin]).all(), "a sampled negative stays with its positive"
    logged = ~ex.frame["sampled"].to_numpy()
    frac = np.bincount(part[logged], minlength=3) / logged.sum()
    assert abs(frac[2] - 0.2) < 0.08 and abs(frac[1] - 0.1) < 0.08
    assert sp.report["rows"]["train"] == len(sp.train)


def test_random_split_is_seeded(ex):
    a, b, c = split(ex, seed=1), split(ex, seed=1), split(ex, seed=2)
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)


def test_temporal_split_respects_time_per_user(ex):
    sp = split(ex, "temporal", val_frac=0.1, test_frac=0.2, seed=0)
    f = ex.frame.assign(part=_part_of(sp, len(ex)))
    f = f[~f["sampled"]]
    g = f.groupby(["user_id", "part"])["timestamp"].agg(["min", "max"]).unstack("part")
    assert (g[("max", 0)] <= g[("min", 2)]).all() and (g[("max", 0)] <= g[("min", 1)]).all()
    assert (g[("max", 1)].dropna() <= g[("min", 2)].reindex(g[("max", 1)].dropna().index)).all()
    assert f.groupby("user_id")["part"].apply(lambda p: (p == 2).any()).all()  # everyone is tested


def test_cold_items_split_holds_items_out(ex):
    sp = split(ex, "cold-items", cold_frac=0.2, seed=0)
    cold = set(sp.cold_items)
    assert len(cold) == round(0.2 * ex.frame["item_id"].nunique())
    items = ex.frame["item_id"].to_numpy()
    assert not cold & set(items[sp.train]) and not cold & set(items[sp.val])
    assert set(items[sp.test]) == cold
    assert (np.isin(items, list(cold)) == np.isin(np.arange(len(ex)), sp.test)).all()
    assert sp.report["test_unseen_items"] == len(cold) and sp.report["val_unseen_items"] == 0


def test_split_errors(ds, ex):
    with pytest.raises(DataError, match="Unknown split"):
        split(ex, "by-moon")
    with pytest.raises(DataError, match="fractions"):
        split(ex, val_frac=0.5, test_frac=0.5)
    no_time = load(ds.interactions.drop(columns=["timestamp"]))
    with pytest.raises(DataError, match="needs a timestamp"):
        split(build_examples(no_time, ["w=implicit"]), "temporal")
    tiny = load(pd.DataFrame({"user": list("abcab"), "item": list("12345")}))
    with pytest.raises(DataError, match="Too few rows to split"):
        split(build_examples(tiny, ["w=implicit"], negatives=1), seed=0)
