"""Recommendations and full-ranking evaluation: exclusions, fusion, cold start, metrics vs a
brute-force reference, the fast pair scorer vs the plain forward pass, and ml-latest-small."""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrlib.config import ARCHS, ModelConfig, TrainConfig
from mtrlib.models import build_model
from mtrlib.eval.ranking import topk_metrics
from mtrlib.serve.fusion import fusion_for, fusion_is_zero, fusion_weights, parse_fusion
from mtrlib.serve.recommend import rank_eval, recommend, recommend_many
from mtrlib.serve.recommend import run_scores as score_matrix
from mtrlib.serve.scoring import _pair_raw, iter_scores
from mtrlib.serve.scoring import score_matrix as model_scores
from mtrlib.runs import RunError, load_run, train_and_save
from mtrlib.train.loop import prepare

from _mtr import PAGES, tiny_cfg

ML = Path(__file__).resolve().parents[2] / "shared/data/ml-latest-small"


@pytest.fixture(scope="module")
def world_run(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    cfg = tiny_cfg(world=PAGES, epochs=3, batch_size=256)
    prep = prepare(cfg)
    res, w = train_and_save(cfg, prep, store=store)
    return load_run(w.path), prep


def _train_seen(prep) -> dict[str, set]:
    """user id -> item ids logged in the training split, straight from the prepared data."""
    f = prep.examples.frame.iloc[prep.split.train]
    f = f[~f["sampled"]]
    return f.groupby("user_id")["item_id"].apply(set).to_dict()


def test_never_recommends_training_items(world_run):
    run, prep = world_run
    seen = _train_seen(prep)
    users = list(seen)[:40]
    df = recommend_many(run, users, k=run.n_items)  # everything that may be recommended
    assert set(df["user_id"]) == set(users)
    for u, g in df.groupby("user_id"):
        assert not (set(g["item_id"]) & seen[u]), u
        assert not (set(g["item_id"]) & set(run.seen_items(u)))
        assert list(g["rank"]) == list(range(1, len(g) + 1))
        assert g["score"].is_monotonic_decreasing
    one = recommend(run, users[0], k=5)
    assert len(one) == 5 and one.attrs["fallback"] is False and (one["source"] == "model").all()
    assert {"rank", "item_id", "title", "genre", "score", "click", "like", "dwell", "cold"} <= set(one.columns)
    incl = recommend(run, users[0], k=run.n_items, exclude_seen=False)
    assert len(incl) == run.n_items


def test_default_fusion_is_the_product_of_binary_probabilities(world_run):
    run, _ = world_run
    assert fusion_weights(run) == {"click": 1.0, "like": 1.0, "dwell": 0.0}
    df = recommend(run, run.users.index[3], k=10)
    np.testing.assert_allclose(df["score"], np.log(df["click"]) + np.log(df["like"]), rtol=1e-5)


def test_fusion_weights_change_the_ranking(world_run):
    run, _ = world_run
    users = list(run.users.index[:30])
    a = recommend_many(run, users, k=10, fusion={"click": 1, "like": 0})
    b = recommend_many(run, users, k=10, fusion="click=0,like=1")
    c = recommend_many(run, users, k=10, fusion={"dwell": 1})
    assert not a[["user_id", "item_id"]].equals(b[["user_id", "item_id"]])
    assert not a[["user_id", "item_id"]].equals(c[["user_id", "item_id"]])
    np.testing.assert_allclose(a["score"], np.log(a["click"]), rtol=1e-5)
    np.testing.assert_allclose(b["score"], np.log(b["like"]), rtol=1e-5)
    # a click-only ranking is sorted by p(click)
    for _, g in a.groupby("user_id"):
        assert g["click"].is_monotonic_decreasing
    with pytest.raises(RunError, match="unknown task"):
        fusion_weights(run, {"nope": 1})
    with pytest.raises(RunError, match="Every fusion weight is 0"):
        fusion_weights(run, {"click": 0})
    with pytest.raises(RunError, match="Cannot read"):
        parse_fusion("click:2")


def test_fusion_rule_for_the_sliders_and_the_compare_run(world_run):
    run, _ = world_run  # tasks click, like, dwell
    assert fusion_is_zero({"click": 0.0, "like": 0, "dwell": 0.0}) and fusion_is_zero({})
    assert not fusion_is_zero({"click": 0.0, "like": 0.5})
    # a second run gets the weights of the tasks it has; none shared, or all 0: its defaults
    assert fusion_for(run, {"click": 2.0, "watched": 1.0}) == {"click": 2.0}
    assert fusion_for(run, {"watched": 1.0}) is None
    assert fusion_for(run, {"click": 0.0, "like": 0.0, "watched": 3.0}) is None
    assert fusion_weights(run, fusion_for(run, {"watched": 1.0})) == fusion_weights(run)
    assert fusion_weights(run, fusion_for(run, {"like": 2.0, "x": 1.0})) == {"click": 0.0, "like": 2.0, "dwell": 0.0}


def test_unknown_user_gets_popular_items_and_is_told(world_run):
    run, _ = world_run
    df = recommend(run, "no-such-user", k=7)
    assert df.attrs["fallback"] is True and (df["source"] == "popularity").all()
    assert any("not known" in n for n in df.attrs["notes"])
    pos = run.arrays["train.item_pos"][:, 0]  # positives of the first binary task
    expect = run.items.index[np.lexsort((np.arange(run.n_items), -pos))][:7]
    assert list(df["item_id"]) == list(expect)
    assert df["click"].isna().all()
    mixed = recommend_many(run, [run.users.index[0], "ghost"], k=3)
    assert list(mixed.groupby("user_id", sort=False)["source"].first()) == ["model", "popularity"]


def test_cold_items_are_scored_from_side_features_and_flagged(tmp_path):
    cfg = tiny_cfg(world=PAGES, data={"split": "cold-items"}, epochs=1, batch_size=256)
    prep = prepare(cfg)
    _, w = train_and_save(cfg, prep, store=tmp_path)
    run = load_run(w.path)
    cold = run.items["cold"]
    assert cold.any() and not cold.all()
    S = score_matrix(run, users=run.users.index[:5])
    assert np.isfinite(S).all()
    assert np.ptp(S[:, cold.to_numpy()]) > 0  # side features (genre, price) separate cold items
    df = recommend(run, run.users.index[0], k=run.n_items)
    assert (df["cold"] == cold.loc[df["item_id"]].to_numpy()).all() and df["cold"].any()


def _brute_force(scores: np.ndarray, seen: list[set], relevant: list[set], ks) -> dict:
    out = {f"{m}@{k}": [] for k in ks for m in ("recall", "ndcg", "hitrate")}
    for u in range(scores.shape[0]):
        rel = relevant[u] - seen[u]
        if not rel:
            continue
        cands = [i for i in range(scores.shape[1]) if i not in seen[u]]
        ranked = sorted(cands, key=lambda i: (-scores[u, i], i))
        for k in ks:
            top = ranked[:k]
            hits = [1.0 if i in rel else 0.0 for i in top]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
            out[f"recall@{k}"].append(sum(hits) / len(rel))
            out[f"ndcg@{k}"].append(dcg / idcg)
            out[f"hitrate@{k}"].append(float(sum(hits) > 0))
    return {m: float(np.mean(v)) for m, v in out.items()}


def test_topk_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    n_u, n_i, ks = 30, 25, (1, 3, 5, 10)
    scores = rng.normal(size=(n_u, n_i))
    seen = [set(rng.choice(n_i, size=rng.integers(0, 8), replace=False).tolist()) for _ in range(n_u)]
    relevant = [set(rng.choice(n_i, size=rng.integers(0, 6), replace=False).tolist()) for _ in range(n_u)]
    ref = _brute_force(scores, seen, relevant, ks)
    users = [u for u in range(n_u) if relevant[u] - seen[u]]
    S = scores.copy()
    for u in range(n_u):
        S[u, list(seen[u])] = -np.inf
    top = np.argsort(-S, axis=1, kind="stable")[users, :10]
    keys = np.array(sorted(u * n_i + i for u in users for i in relevant[u] - seen[u]))
    n_pos = np.array([len(relevant[u] - seen[u]) for u in users])
    got = topk_metrics(top, np.array(users), keys, n_pos, n_i, ks)
    for m, v in ref.items():
        assert got[m].mean() == pytest.approx(v, abs=1e-12), m


def test_rank_eval_matches_brute_force_on_a_run(world_run):
    run, _ = world_run
    res = rank_eval(run, ks=(5, 10))
    assert res["task"] == "click" and set(res["model"]) == {f"{m}@{k}" for k in (5, 10) for m in ("recall", "ndcg", "hitrate")}
    S = score_matrix(run, task="click")  # log p(click), all users x all items
    seen_keys = run.seen_keys()
    n_i = run.n_items
    seen = [set() for _ in range(run.n_users)]
    for k in seen_keys:
        seen[k // n_i].add(int(k % n_i))
    te = run.test
    relevant = [set() for _ in range(run.n_users)]
    pos = te["mask"][:, 0] & (te["labels"][:, 0] == 1)
    for u, i in zip(te["user"][pos], te["item"][pos]):
        relevant[int(u)].add(int(i))
    ref = _brute_force(S, seen, relevant, (5, 10))
    for m, v in ref.items():
        assert res["model"][m] == pytest.approx(v, abs=1e-6), m
    pop = run.arrays["train.item_pos"][:, 0]
    ref_pop = _brute_force(np.tile(pop, (run.n_users, 1)), seen, relevant, (5, 10))
    for m, v in ref_pop.items():
        assert res["popularity"][m] == pytest.approx(v, abs=1e-9), m
    with pytest.raises(RunError, match="binary task"):
        rank_eval(run, task="dwell")


@pytest.mark.parametrize("arch", ARCHS)
def test_fast_pair_scoring_equals_the_plain_forward_pass(world_run, arch):
    run, prep = world_run
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch), prep.space.describe(), prep.space.tensors(), prep.tasks).eval()
    users, items = torch.arange(7), torch.arange(run.n_items)
    with torch.inference_mode():
        fast = _pair_raw(model, users, items)
        plain = model(users.repeat_interleave(len(items)), items.repeat(len(users)))
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    # blocked iteration (odd block sizes, several chunks) gives the same probabilities
    chunks = list(iter_scores(model, np.arange(7), None, chunk_pairs=3 * run.n_items, block_pairs=37))
    assert [(lo, hi) for lo, hi, _ in chunks] == [(0, 3), (3, 6), (6, 7)]
    blocked = torch.cat([p for _, _, p in chunks])
    with torch.inference_mode():
        torch.testing.assert_close(blocked, model.predict(plain).view(7, run.n_items, -1), rtol=1e-4, atol=1e-5)
    expected_fast = arch not in ("single", "stem")  # one input row per task (+ STEM's shared one), stacked: the plain path
    assert model.scores_from_parts() is expected_fast


def test_run_scores_come_from_the_model_level_score_matrix(world_run):
    run, _ = world_run
    P = model_scores(run.model, np.arange(run.n_users))  # [users, items, tasks]: predictions
    assert P.shape == (run.n_users, run.n_items, 3) and P.dtype == np.float32
    # the run-level score of a binary task is log p of the same predictions (numpy's log vs torch's)
    np.testing.assert_allclose(score_matrix(run, task="click"), np.log(np.maximum(P[..., 0], 1e-7)), rtol=1e-6)
    items = list(run.items.index[[4, 1, 9]])
    sub = model_scores(run.model, np.arange(5), [4, 1, 9])
    np.testing.assert_allclose(sub, P[:5, [4, 1, 9]], rtol=1e-5, atol=1e-6)  # other block shapes: float rounding
    np.testing.assert_allclose(score_matrix(run, users=run.users.index[:5], items=items, task="like"),
                               np.log(np.maximum(sub[..., 1], 1e-7)), rtol=1e-6)


def test_plain_scoring_is_the_forward_pass_bit_for_bit(world_run):
    # what the cold-start ranking uses, so its published numbers do not move
    run, prep = world_run
    model = run.model
    users, items = np.arange(11), np.arange(5, 45)
    with torch.inference_mode():
        uu, ii = torch.as_tensor(users).repeat_interleave(len(items)), torch.as_tensor(items).repeat(len(users))
        ref = model.predict(model(uu, ii)).reshape(len(users), len(items), -1).numpy()
    got = model_scores(model, users, items, chunk_pairs=1 << 18, block_pairs=1 << 18, factorised=False, threads=0)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.slow
@pytest.mark.skipif(not (ML / "ratings.csv").exists(), reason="ml-latest-small not available")
def test_trained_model_beats_popularity_on_ml_latest_small(tmp_path):
    from mtrlib.data import load

    cfg = TrainConfig()
    cfg.data.tasks = ["watched=implicit", "liked=rating>=4"]
    cfg.data.split, cfg.data.test_frac = "temporal", 0.2
    cfg.model.arch, cfg.model.shared, cfg.model.towers = "shared-bottom", [64, 32], [16]
    cfg.epochs, cfg.batch_size, cfg.lr = 3, 2048, 0.003
    prep = prepare(cfg, load(ML))
    _, w = train_and_save(cfg, prep, store=tmp_path)
    run = load_run(w.path)
    t0 = time.perf_counter()
    res = rank_eval(run, task="watched")
    took = time.perf_counter() - t0
    print(f"\nml-latest-small full ranking: {res['users']} users x {res['items']} items in {took:.2f} s; "
          f"NDCG@10 model {res['model']['ndcg@10']:.4f} vs popularity {res['popularity']['ndcg@10']:.4f}")
    assert res["users"] == 610 and res["items"] == 9742
    assert res["model"]["ndcg@10"] > 1.05 * res["popularity"]["ndcg@10"]
    assert res["model"]["recall@20"] > res["popularity"]["recall@20"]
