"""Cold-start evaluation: how well does a model score items it never saw in training?

The split holds out a random 10% of the items with *all* their interactions
(`split(method="cold-items")`); their rows are the test set, and the feature space gives each
of them the out-of-vocabulary id slot 0, a zero vector that training never updates. So:

- An **id-only** model (no side features, no text) sees every cold item as the same all-zero
  item vector. For a given user it scores all cold items alike; across users it can only use
  what it learned about the *user* (how much this user clicks or likes in general). Its
  cold-item AUC therefore sits near chance, and its ranking of a user's cold candidates is a
  coin toss (ties are broken at random here, so it scores like the random baseline).
- **Side features** (e.g. the world's `genre` and `price_band`, MovieLens genres) give cold
  items something: an item's genre embedding was trained on the warm items of that genre.
- **Text features**: the pretrained language-model vector of the item's text (title,
  description, genres, tags; `mtrlib.data.text`) goes through a learned projection and is combined
  with the id embedding (`ModelConfig.text_combine`). The projection is trained on warm items,
  and applies unchanged to a cold item's text: the item is placed by what its text says, next
  to warm items with similar text. This is what lets the model rank items nobody interacted with.

`cold_start_report` trains the same configuration twice (or more: `variants`) on the *same*
split with the same seed, with and without text features, and reports per task AUC on the
cold items' test rows, the per-user GAUC (which removes the user-side signal, so id-only is
exactly 0.5), plus Recall@K / NDCG@K of ranking each test user's cold candidates (every
held-out item; relevant = the user's positives for the task among them). The ranking is
computed here, from the trained model directly (`mtrlib.serve.scoring.score_matrix`, users x cold
items), so it does not depend on the run store. Measured numbers: docs/RESULTS-coldstart.md
(bench/coldstart.py).
"""
from __future__ import annotations

import copy
import math
import threading
import time
from dataclasses import fields, replace
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..config import ModelConfig, TrainConfig
from ..data import Dataset
from ..errors import ConfigError, TrainingError
from .pointwise import task_metrics
from .ranking import KS, per_user_metrics
from ..serve.scoring import score_matrix
from ..train.loop import Prepared, load_dataset, prepare, train
from ..train.predict import predict

DEFAULT_VARIANTS = {"with_text": {"text_features": True}, "id_only": {"text_features": False}}
# variant keys that change the data side (need their own `prepare`), the rest go to ModelConfig
_DATA_KEYS = ("use_features",)
_MODEL_KEYS = {f.name for f in fields(ModelConfig)}
_RESERVED = {"variants", "random", "seconds", "stopped", "config", "ks", "n_cold_items", "n_test_rows",
             "n_train_rows", "n_ranked_users"}
SCORE_CHUNK = 1 << 18  # (user, item) pairs scored at once (and ranked) from the cold catalogue

ProgressFn = Callable[[str, int, int], None]


# --------------------------------------------------------------------------- ranking

def cold_ranking(model, prep: Prepared, cold_rows: np.ndarray, ks=KS, seed: int = 0,
                 chunk: int = SCORE_CHUNK) -> tuple[dict[str, dict], dict[str, int]]:
    """Per binary task: Recall@K / NDCG@K of ranking every cold item for each test user.

    Test users of a task = users with at least one positive for it among the cold items' test
    rows; their candidates = all cold items (none was seen in training, so nothing is masked);
    relevant = those positives. The model ranks by the task's own prediction (`model.predict`:
    for a conditional task such as like|click that is p(like | click), as in its AUC).
    `model=None` scores every candidate alike: the chance level.
    Users are scored in chunks of about `chunk` (user, item) pairs, so memory stays bounded.
    Returns ({task: {"recall@10": ..}}, {task: number of users ranked}).
    """
    te = prep.test
    labels, mask = te.labels.cpu().numpy(), te.mask.cpu().numpy()
    users_t, items_t = te.user.cpu().numpy(), te.item.cpu().numpy()
    col = np.full(prep.space.items.n, -1, np.int64)
    col[cold_rows] = np.arange(len(cold_rows))
    is_cold = col[items_t] >= 0
    binary = [j for j, t in enumerate(prep.tasks) if t.is_binary]
    pos = {j: mask[:, j] & (labels[:, j] == 1) & is_cold for j in binary}
    users = np.unique(np.concatenate([users_t[p] for p in pos.values()])) if binary else np.zeros(0, np.int64)
    urow = np.searchsorted(users, users_t)
    rel = {}
    for j in binary:
        rel[j] = np.zeros((len(users), len(cold_rows)), bool)
        rel[j][urow[pos[j]], col[items_t[pos[j]]]] = True
    rng = np.random.default_rng(seed)
    sums = {j: {} for j in binary}
    per = max(1, chunk // max(1, len(cold_rows)))
    for lo in range(0, len(users), per):
        hi = min(lo + per, len(users))
        if model is None:
            S = np.zeros((hi - lo, len(cold_rows), len(prep.tasks)), np.float32)
        else:
            # the plain forward pass, one pass per chunk, threads left as they are: how the
            # published numbers (docs/RESULTS-coldstart.md) were computed. The factorised path
            # differs by ~1e-6, enough to reorder near-tied cold items and move Recall@K.
            S = score_matrix(model, users[lo:hi], cold_rows, chunk, block_pairs=chunk, factorised=False, threads=0)
        for j in binary:
            for m, v in per_user_metrics(S[:, :, j], rel[j][lo:hi], ks, rng).items():
                sums[j][m] = sums[j].get(m, 0.0) + float(v.sum())
    out, n_users = {}, {}
    for j in binary:
        name = prep.tasks[j].name
        n = int(rel[j].any(1).sum())
        n_users[name] = n
        out[name] = {f"{m}@{k}": (sums[j].get(f"{m}@{k}", 0.0) / n if n else float("nan"))
                     for k in ks for m in ("recall", "ndcg")}
    return out, n_users


def grouped_auc(users: np.ndarray, y: np.ndarray, score: np.ndarray) -> float:
    """GAUC: the AUC within each user's rows, averaged with weights = the user's row count.

    Only users with both classes count. Unlike the pooled AUC it ignores how users differ
    from each other (one user clicks more than another), so it measures only how well the
    model orders *items* for a user: an id-only model on cold items, which scores every cold
    item alike for a given user, gets exactly 0.5.
    """
    df = pd.DataFrame({"u": np.asarray(users), "y": np.asarray(y, bool), "s": np.asarray(score, np.float64)})
    if not len(df):
        return float("nan")
    df["r"] = df.groupby("u")["s"].rank(method="average")
    g = df.groupby("u").agg(n=("y", "size"), p=("y", "sum"))
    rpos = df[df["y"]].groupby("u")["r"].sum().reindex(g.index, fill_value=0.0)
    neg = g["n"] - g["p"]
    ok = (g["p"] > 0) & (neg > 0)
    if not ok.any():
        return float("nan")
    a = (rpos[ok] - g["p"][ok] * (g["p"][ok] + 1) / 2) / (g["p"][ok] * neg[ok])
    return float(np.average(a, weights=g["n"][ok]))


# --------------------------------------------------------------------------- the report

def cold_rows_of(prep: Prepared) -> np.ndarray:
    """Item rows (sorted) of the items a cold-items split held out."""
    if prep.split.cold_items is None:
        raise ConfigError("This split holds out no items.", fix="use split 'cold-items'")
    return np.sort(prep.space.item_rows(prep.split.cold_items))


def evaluate_cold(model, prep: Prepared, cold_rows: np.ndarray | None = None, ks=KS, seed: int = 0,
                  warm: dict | None = None) -> tuple[dict[str, dict], dict[str, int]]:
    """One trained model on the cold items' test rows, per task.

    Binary tasks: "auc" (pooled over the rows), "gauc" (per user, see `grouped_auc`),
    "logloss", "n" and "recall@K" / "ndcg@K" (`cold_ranking`); regression tasks: "rmse", "mae".
    `warm` (the run's validation metrics, i.e. warm items) adds "warm_auc" / "warm_rmse".
    Returns (per task metrics, {task: users ranked}).
    """
    cold_rows = cold_rows_of(prep) if cold_rows is None else cold_rows
    preds = predict(model, prep.test)
    y, msk, tu = prep.test.labels.numpy(), prep.test.mask.numpy(), prep.test.user.numpy()
    test_m = task_metrics(prep.tasks, y, msk, preds)
    ranks, n_users = cold_ranking(model, prep, cold_rows, ks, seed=seed)
    per = {}
    for j, t in enumerate(prep.tasks):
        m = {k: v for k, v in test_m[t.name].items() if k != "accuracy"}
        if t.is_binary and m.get("n"):
            m["gauc"] = grouped_auc(tu[msk[:, j]], y[msk[:, j], j], preds[msk[:, j], j])
        m.update(ranks.get(t.name, {}))
        if warm is not None:
            key = "auc" if t.is_binary else "rmse"
            m["warm_" + key] = warm.get(t.name, {}).get(key, float("nan"))
        per[t.name] = m
    return per, n_users


def variant_config(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """The training config of one cold-start variant: `cfg` on the cold-items split with the
    variant's model (or use_features) overrides; unknown settings are refused by name."""
    bad = sorted(set(overrides) - _MODEL_KEYS - set(_DATA_KEYS))
    if bad:
        raise ConfigError(f"Unknown cold-start variant setting(s): {', '.join(bad)}.",
                          fix=f"use ModelConfig fields ({', '.join(sorted(_MODEL_KEYS))}) or use_features")
    c = copy.deepcopy(cfg)
    c.data.split = "cold-items"
    c.model = replace(c.model, **{k: v for k, v in overrides.items() if k in _MODEL_KEYS})
    for k in _DATA_KEYS:
        if k in overrides:
            setattr(c.data, k, overrides[k])
    return c


def cold_start_report(cfg: TrainConfig, dataset: Dataset | None = None, ks=KS,
                      progress: ProgressFn | None = None, variants: dict[str, dict] | None = None,
                      stop: threading.Event | None = None) -> dict:
    """Train `cfg` with and without text features on one cold-items split; score the cold items.

    Every variant uses the same dataset, the same seed and therefore the same split (the split
    is forced to "cold-items": 10% of items held out with all their interactions, validation
    drawn from the rest). `variants` maps a name to overrides of `ModelConfig` fields (and/or
    `use_features`); the default is {"with_text": text on, "id_only": text off}.

    Why the id-only model is near chance on these items: a cold item's id slot is the
    never-trained zero vector, identical for all cold items, so without side features or text
    the model can only tell users apart, not items. The text vector is the item's own signal.

    Returns {variant: {task: {"auc", "logloss", "recall@K", "ndcg@K", "warm_auc", ...}},
    "variants": [...], "random": {task: {"recall@K", "ndcg@K"}} (chance level of the ranking),
    "n_cold_items", "n_test_rows", "n_ranked_users": {task: n}, "seconds": {variant: s},
    "config": the base config as a dict}. Regression tasks get rmse/mae instead of AUC and
    no ranking. `progress(stage, done, total)` reports "encode" (text vectors), "train:<variant>"
    (epochs) and "rank:<variant>". `stop.set()` (from another thread) ends the current training
    early and skips the variants not started; the report then has "stopped": True.
    """
    variants = dict(variants or DEFAULT_VARIANTS)
    clash = sorted(set(variants) & _RESERVED)
    if clash:
        raise ConfigError(f"Variant name(s) {', '.join(clash)} are taken by the report itself.",
                          fix="rename the variant, e.g. 'text_on'")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise ConfigError("K must be whole numbers of at least 1.", fix="e.g. 5, 10, 20")
    cfgs = {name: variant_config(cfg, ov) for name, ov in variants.items()}
    ds = dataset if dataset is not None else load_dataset(cfgs[next(iter(cfgs))])
    say = progress or (lambda stage, done, total: None)

    # one Prepared per data-side setting; text vectors are filled once and simply ignored by
    # a model built with text_features=False (its input layer never reads them)
    preps: dict[tuple, Prepared] = {}
    need_text = any(c.model.text_features for c in cfgs.values())

    def prep_for(c: TrainConfig) -> Prepared:
        key = (c.data.use_features,)
        if key not in preps:
            pc = copy.deepcopy(c)
            pc.model.text_features = need_text
            preps[key] = prepare(pc, ds, text_progress=(lambda d, n: say("encode", d, n)) if need_text else None)
        return preps[key]

    report: dict = {"variants": [], "seconds": {}, "stopped": False}
    first: Prepared | None = None
    cold_rows = None
    for name, c in cfgs.items():
        if stop is not None and stop.is_set():
            report["stopped"] = True
            break
        p = prep_for(c)
        if first is None:
            first = p
            cold_rows = cold_rows_of(p)
            report["n_cold_items"] = int(len(cold_rows))
            report["n_test_rows"] = int(len(p.test))
            report["n_train_rows"] = int(len(p.train))
        elif not np.array_equal(p.split.test, first.split.test):
            raise RuntimeError("cold-start variants got different splits")  # a bug: the seed fixes the split
        t0 = time.perf_counter()
        total = c.epochs

        def on_event(e, _name=name, _total=total):
            if e.get("type") == "epoch":
                say(f"train:{_name}", int(e["epoch"]), _total)

        res = train(c, p, callback=on_event, stop=stop)
        report["stopped"] = report["stopped"] or res.status == "stopped"
        if res.status == "diverged":
            raise TrainingError(f"Cold-start variant '{name}' diverged: {res.reason}")
        say(f"rank:{name}", 0, 1)
        per, n_users = evaluate_cold(res.model, p, cold_rows, ks, seed=c.seed, warm=res.val_metrics)
        say(f"rank:{name}", 1, 1)
        report[name] = per
        report["variants"].append(name)
        report["n_ranked_users"] = n_users
        report["seconds"][name] = round(time.perf_counter() - t0, 2)
    if first is not None:
        report["random"] = cold_ranking(None, first, cold_rows, ks, seed=cfg.seed)[0]
    report["config"] = cfg.to_dict()
    report["ks"] = list(ks)
    return report


def format_report(report: dict, k: int = 10) -> str:
    """A plain-text table: one row per variant and task; AUC, GAUC, Recall@k, NDCG@k on the cold items
    (and the validation AUC, i.e. on warm items, for reference). Regression tasks show RMSE."""
    head = (f"{'variant':<16} {'task':<8} {'AUC':>6} {'GAUC':>6} {f'R@{k}':>6} {f'N@{k}':>6} {'warmAUC':>7}")
    lines = [f"cold items: {report.get('n_cold_items')}, their test rows: {report.get('n_test_rows')}", head,
             "-" * len(head)]

    def f(v, w=6):
        return f"{v:>{w}.3f}" if isinstance(v, (int, float)) and not math.isnan(v) else f"{'-':>{w}}"

    for name in report.get("variants", []) + ["random"]:
        for task, m in report.get(name, {}).items():
            if name != "random" and "auc" not in m:
                lines.append(f"{name:<16} {task:<8} RMSE {f(m.get('rmse'))} (warm {f(m.get('warm_rmse')).strip()})")
                continue
            lines.append(f"{name:<16} {task:<8} {f(m.get('auc'))} {f(m.get('gauc'))} {f(m.get(f'recall@{k}'))} "
                         f"{f(m.get(f'ndcg@{k}'))} {f(m.get('warm_auc'), 7)}")
    return "\n".join(lines)


__all__ = ["cold_start_report", "format_report", "score_matrix", "cold_ranking",
           "grouped_auc", "evaluate_cold", "cold_rows_of", "DEFAULT_VARIANTS", "KS"]
