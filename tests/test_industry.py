"""The industry-layout log (mtrlib.data.industry): Ali-CCP's shape, integer codes, user and item
fields constant per id, context fields per impression, the known effects measurable on 200k
rows, determinism, the split column, and the `industry` verb."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mtrlib.__main__ as cli
from mtrlib.data.industry import (CONTEXT_EFFECTS, EFFECTS, FIELDS, columns_by_role, decode, field_codes,
                                  make_industry, mapping_of, write_log)


@pytest.fixture(scope="module")
def log():
    return make_industry(200_000, seed=0)


def _logodds(df: pd.DataFrame, field: str, label: str = "click") -> np.ndarray:
    rate = df[label].groupby(decode(field, df[field])).mean().to_numpy()
    return np.log(rate / (1 - rate))


def test_shape_dtypes_and_codes(log):
    assert list(log.columns) == ["user_id", "item_id", "click", "purchase", *FIELDS]
    assert len(FIELDS) == 30 and len(log) == 200_000
    assert log["user_id"].dtype == np.int64 and log["item_id"].dtype == np.int64
    assert log["click"].dtype == np.int8 and log["purchase"].dtype == np.int8
    roles = columns_by_role(log)
    assert {r: len(c) for r, c in roles.items()} == {"user": 9, "item": 6, "context": 11, "cross": 4}
    all_codes = np.concatenate([field_codes(f) for f in FIELDS])
    assert len(np.unique(all_codes)) == len(all_codes)  # one dictionary: no code in two fields
    for f, (_, _, n) in FIELDS.items():
        col = log[f]
        assert col.dtype == np.int32 and col.isin(field_codes(f)).all(), f
        assert 2 <= col.nunique() <= n <= 500, f
    assert sum(n >= 100 for _, _, n in FIELDS.values()) >= 15  # most fields have a few hundred codes
    assert set(log["purchase"].unique()) <= {0, 1} and not (log["purchase"] > log["click"]).any()  # no sale unclicked
    assert 0.07 < log["click"].mean() < 0.13 and 0.10 < log.loc[log["click"] == 1, "purchase"].mean() < 0.20


def test_user_and_item_fields_are_constant_per_id_and_context_varies(log):
    roles = columns_by_role(log)
    assert (log.groupby("user_id")[roles["user"]].nunique() == 1).all().all()
    assert (log.groupby("item_id")[roles["item"]].nunique() == 1).all().all()
    busy = log["user_id"].map(log["user_id"].value_counts()) >= 20
    per_user = log[busy].groupby("user_id")[roles["context"]].nunique()
    assert (per_user.median() > 1).all()  # a user's impressions differ in every context field
    assert len(roles["context"]) >= 8


def test_known_click_effects_are_measurable(log):
    for f in ("301", "302", "303", "304", "308"):
        true = EFFECTS["click"][f]
        seen = _logodds(log, f)
        slope, _ = np.polyfit(true - true.mean(), seen - seen.mean(), 1)
        assert 0.5 < slope < 1.1, (f, slope)  # the raw rates show ~0.85 of each effect (0.62-0.91, seeds 0-3)
        assert np.corrcoef(true, seen)[0, 1] > 0.9, f
    pos = _logodds(log, "302")
    assert (np.diff(pos) < 0).all()  # click falls slot by slot
    for f in ("306", "307", "311"):  # noise fields: flat
        assert np.ptp(_logodds(log, f)) < 0.15, f
    assert set(CONTEXT_EFFECTS) == {"301", "302", "303", "304", "305", "308"}


def test_query_match_and_purchase_effects(log):
    match = decode("305", log["305"]) == decode("206", log["206"])
    assert 0.28 < match.mean() < 0.33
    clicked = log[log["click"] == 1]
    m = match[log["click"] == 1]
    assert log["click"][match].mean() > 1.5 * log["click"][~match].mean()
    assert clicked["purchase"][m].mean() > clicked["purchase"][~m].mean() + 0.03
    device = _logodds(clicked, "301", "purchase")  # mobile, desktop, tablet, other
    assert device[1] > device[0] + 0.2 and device[1] > device[3]
    channel = _logodds(clicked, "308", "purchase")
    assert channel.argmax() == 2 and channel.argmin() == 3
    price = _logodds(clicked, "217", "purchase")
    assert np.polyfit(np.arange(20), price, 1)[0] < 0


def test_deterministic_by_seed():
    a, b = make_industry(5_000, seed=3, split=True), make_industry(5_000, seed=3, split=True)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    c = make_industry(5_000, seed=4)
    assert not a["click"].equals(c["click"]) and not a["301"].equals(c["301"])
    assert set(a["206"]) | set(c["206"]) <= set(field_codes("206"))  # one dictionary for every seed


def test_split_column():
    df = make_industry(10_000, seed=0, split=True)
    assert df.columns[-1] == "split"
    share = df["split"].value_counts(normalize=True)
    np.testing.assert_allclose([share["train"], share["valid"], share["test"]], [0.8, 0.1, 0.1])
    order = df["split"].map({"train": 0, "valid": 1, "test": 2})
    assert order.is_monotonic_increasing  # by log order, as a split by day
    assert "split" not in make_industry(1_000, seed=0).columns


def test_mapping_and_files(tmp_path):
    df = make_industry(2_000, seed=1, split=True)
    m = mapping_of(df)
    assert m["user"] == "user_id" and m["position"] == "302" and m["split"] == "split"
    assert m["labels"] == ["click", "purchase"] and len(m["context_features"]) == 15
    assert set(m["user_features"]) | set(m["item_features"]) | set(m["context_features"]) == set(FIELDS)
    for suffix in ("csv", "parquet"):
        path = write_log(df, tmp_path / f"log.{suffix}")
        back = pd.read_csv(path) if suffix == "csv" else pd.read_parquet(path)
        back.columns = [str(c) for c in back.columns]
        assert list(back.columns) == list(df.columns) and len(back) == len(df)
        assert (back["302"].to_numpy() == df["302"].to_numpy()).all()


def test_industry_verb(tmp_path, capsys):
    assert cli.main(["industry", "--out", str(tmp_path), "--rows", "3000", "--seed", "2", "--split-col",
                     "--format", "parquet"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["rows"] == 3000 and res["fields"] == 30 and res["split"] is True
    back = pd.read_parquet(tmp_path / "interactions.parquet")
    pd.testing.assert_frame_equal(back, make_industry(3000, seed=2, split=True), check_dtype=False)
    assert json.loads((tmp_path / "mapping.json").read_text())["split"] == "split"
    assert cli.main(["industry", "--out", str(tmp_path), "--rows", "5"]) == 2
    assert "at least 100 rows" in capsys.readouterr().err
