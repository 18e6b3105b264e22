"""The built-in world's optional impression context (mtrlib.data.world_context): off, the world
is the one it always was; on, each impression has a slot (examined less further down, better
slots for likelier clicks) and a device (shifting dwell), while the truth stays the unexamined
relevance."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mtrlib.__main__ as cli
from mtrlib.data import make_world
from mtrlib.data.world import true_logits
from mtrlib.data.world_context import DEVICE_LOG_DWELL, DEVICE_SHARE, DEVICES, SLOTS, examination

SMALL = dict(n_users=300, n_items=80, seed=3)
BIG = dict(n_users=2000, n_items=200, seed=0)  # 80k impressions: rates per slot to a few points


@pytest.fixture(scope="module")
def pair():
    """The same world without and with context."""
    return make_world(**BIG), make_world(**BIG, context=True)


def _true_p(ds) -> np.ndarray:
    gt, inter = ds.ground_truth, ds.interactions
    u = gt["user_genre"].index.get_indexer(inter["user_id"])
    i = gt["item_genre"].index.get_indexer(inter["item_id"])
    return 1 / (1 + np.exp(-true_logits(gt, u, i)[0]))


@pytest.mark.parametrize("like_observed", ["all", "clicks"])
def test_off_is_the_plain_world(like_observed):
    plain = make_world(**SMALL, like_observed=like_observed)
    off = make_world(**SMALL, like_observed=like_observed, context=False)
    pd.testing.assert_frame_equal(plain.interactions, off.interactions, check_exact=True)
    assert list(off.interactions.columns) == ["user_id", "item_id", "timestamp", "click", "like", "dwell"]
    assert off.context_features == {} and off.position_column is None and "context" not in off.ground_truth
    assert off.name == plain.name and "context" not in off.name and len(off.notes) == 1
    on = make_world(**SMALL, like_observed=like_observed, context=True)
    # context only adds columns and takes clicks away: ids, times and the rest of the draws are shared
    pd.testing.assert_frame_equal(on.interactions[["user_id", "item_id", "timestamp"]],
                                  off.interactions[["user_id", "item_id", "timestamp"]], check_exact=True)
    assert (on.interactions["click"] <= off.interactions["click"]).all()
    if like_observed == "all":
        pd.testing.assert_series_equal(on.interactions["like"], off.interactions["like"], check_exact=True)
    pd.testing.assert_frame_equal(on.items, off.items)
    pd.testing.assert_frame_equal(on.users, off.users)


def test_context_columns_and_dataset_fields():
    ds = make_world(**SMALL, impressions_per_user=25, context=True)
    inter = ds.interactions
    assert list(inter.columns)[-2:] == ["position", "device"]
    assert inter["position"].dtype == np.int64 and inter["position"].between(1, SLOTS).all()
    assert set(inter["device"]) == set(DEVICES)
    assert ds.context_features == {"position": "categorical", "device": "categorical"}
    assert ds.position_column == "position" and set(ds.reasons) == {"position", "device"}
    assert "position" not in ds.label_columns() and "device" not in ds.label_columns()
    assert ds.suggested_tasks == make_world(**SMALL).suggested_tasks
    assert ds.name.endswith(", context)") and len(ds.notes) == 2
    # a user's impressions, in time order, fill pages of 10 slots (the last one 5 here), each slot once
    pages = inter.groupby("user_id").cumcount() // SLOTS
    for (_, page), slots in inter.groupby([inter["user_id"], pages])["position"]:
        assert sorted(slots) == list(range(1, len(slots) + 1))
    share = inter["device"].value_counts(normalize=True)
    np.testing.assert_allclose([share[d] for d in DEVICES], DEVICE_SHARE, atol=0.02)
    assert ds.ground_truth["context"]["examination"][2] == 0.5


def test_deterministic_by_seed():
    a, b = make_world(**SMALL, context=True), make_world(**SMALL, context=True)
    pd.testing.assert_frame_equal(a.interactions, b.interactions, check_exact=True)
    c = make_world(**{**SMALL, "seed": 4}, context=True)
    assert not a.interactions["position"].equals(c.interactions["position"])


def test_click_rate_falls_with_position_as_the_examination_curve(pair):
    _, ds = pair
    inter = ds.interactions
    rate = inter.groupby("position")["click"].mean()
    assert (np.diff(rate.to_numpy()[:6]) < 0).all(), rate  # falls slot by slot at the top
    assert rate[1] > 10 * rate[10], rate
    # clicks per unit of true relevance, per slot, is the examination probability 1/slot
    p = pd.Series(_true_p(ds)).groupby(inter["position"].to_numpy()).mean()
    ratio = rate / p
    np.testing.assert_allclose(ratio.loc[1:5], examination(np.arange(1, 6)), rtol=0.2, atol=0.02)


def test_better_slots_hold_likelier_clicks(pair):
    """The logging policy's confounding: the true relevance falls with the slot too."""
    _, ds = pair
    p = pd.Series(_true_p(ds)).groupby(ds.interactions["position"].to_numpy()).mean()
    assert p[1] > p[5] > p[10] and p[1] - p[10] > 0.2, p


def test_device_shifts_dwell_by_its_known_effect(pair):
    off, on = pair
    both = (off.interactions["click"] == 1) & (on.interactions["click"] == 1)  # the same draws, shifted
    log_ratio = np.log(on.interactions.loc[both, "dwell"] / off.interactions.loc[both, "dwell"])
    big = off.interactions.loc[both, "dwell"] > 2  # away from the rounding to 0.01
    shift = log_ratio[big].groupby(on.interactions.loc[both & big, "device"]).mean()
    np.testing.assert_allclose([shift[d] for d in DEVICES], DEVICE_LOG_DWELL, atol=0.01)
    # and it shows in the raw dwell: mobile clicks dwell least, tablet ones longest
    raw = np.log(on.interactions["dwell"]).groupby(on.interactions["device"]).mean()
    assert raw["mobile"] < raw["desktop"] - 0.15, raw


def test_truth_is_the_unexamined_relevance(pair):
    off, on = pair
    for key in ("item_latent", "user_latent", "click_direction", "like_direction"):
        np.testing.assert_array_equal(off.ground_truth[key], on.ground_truth[key])
    users, items = np.arange(50)[:, None], np.arange(200)[None, :]
    for a, b in zip(true_logits(off.ground_truth, users, items), true_logits(on.ground_truth, users, items)):
        np.testing.assert_array_equal(a, b)
    # the truth is what the clicks are drawn from once the slot's examination is divided out
    p, inter = _true_p(on), on.interactions
    top = inter["position"].to_numpy() == 1
    assert abs(inter.loc[top, "click"].mean() - p[top].mean()) < 0.03


def test_context_must_be_on_or_off():
    from mtrlib.data import DataError
    with pytest.raises(DataError, match="on or off"):
        make_world(**SMALL, context="yes")


def test_context_knob_flag_and_url():
    from mtrlib.config import SETTINGS, TrainConfig
    from mtrlib.share import from_params, to_params
    k = SETTINGS["data.world.context"].knob
    assert k.flag == "--world-context" and k.flag_sets is True and k.url == "ctx"
    cfg = TrainConfig()
    assert cfg.data.world.context is False and "ctx" not in to_params(cfg)  # off stays out of the link
    cfg.data.world.context = True
    back, problems = from_params(to_params(cfg))
    assert not problems and back.data.world.context is True


def test_context_on_is_another_run_group():
    """Off, a setup keeps the group it had before the knob (tests/test_config_migration.py's fixture)."""
    from mtrlib.config import TrainConfig
    from mtrlib.runs import group_key
    on = TrainConfig()
    on.data.world.context = True
    assert group_key(on) != group_key(TrainConfig())


def test_truth_eval_on_a_context_world(tmp_path, capsys):
    """A run trained on a context world is scored against the unexamined truth: the truth's own
    top 10 is the one of the same world without context (same users, same unseen candidates)."""
    from mtrlib.runs import recorded_training
    from mtrlib.train.loop import prepare

    from _mtr import tiny_cfg
    shares = {}
    for context in (False, True):
        cfg = tiny_cfg("mmoe", world={"n_users": 200, "n_items": 60, "impressions_per_user": 20, "seed": 0,
                                      "context": context}, epochs=2)
        _, writer = recorded_training(cfg, prepare(cfg), store=tmp_path)
        assert cli.main(["eval", str(writer.path), "--truth", "--users", "50", "--store", str(tmp_path)]) == 0
        res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert res["users"] == 50 and set(res["truth_overlap@10"]) == {"model", "popularity"}
        shares[context] = res["favourite_genre_share@10"]
    assert shares[True]["truth"] == shares[False]["truth"]
