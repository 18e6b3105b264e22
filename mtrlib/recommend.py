"""Top-K recommendations from a saved run, with a user-controlled fusion of task scores,
and full-ranking evaluation (Recall / NDCG / HitRate @K) next to a popularity baseline.

Fusion. A run predicts one score per task for every (user, item) pair. The ranking score is

    fused = sum over binary tasks t of  w_t * log p_t  +  sum over regression tasks r of  w_r * z_r

where z_r is the regression output standardised with the training targets' mean and std.
The default weights are 1 for every binary task and 0 for regression tasks, i.e. the product
of the binary tasks' probabilities (pCTR * pCVR, as in ESMM): equal weights on log-probs.
Raising a task's weight makes the ranking care more about that task, with no retraining.

Scores come from `mtrlib.scoring` (vectorised over users x items, the first layer factorised),
shared with the cold-start ranking; this module adds the run's side: fusion weights, seen-item
masking, id lookups and the popularity fallback (`run_scores` is the run-level score matrix).

Cold start, said so in the output: an unknown user (not in the run's catalogue) gets the
most popular items (`source` = "popularity", note in `df.attrs["notes"]`); an item without
an id embedding (never seen in training) is scored from its side features and flagged
`cold`. "Seen" items, excluded by default, are those the user interacted with in the
training and validation splits (everything but the held-out test interactions).
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from .data.tasks import parse_task_values
from .device import device_of
from .runs import Run, RunError, load_run
from .scoring import DEFAULT_CHUNK_PAIRS, KS, iter_scores

LOG_FLOOR = 1e-7


# -- fusion ------------------------------------------------------------------------------------------

def parse_fusion(text: str | dict | None) -> dict[str, float] | None:
    """'watched=1,liked=2' -> {'watched': 1.0, 'liked': 2.0} (a dict passes through)."""
    if text is None or isinstance(text, dict):
        return text
    return parse_task_values(text, "fusion weight", error=RunError)


def fusion_weights(run: Run, fusion: dict | str | None = None) -> dict[str, float]:
    """Full weight per task: given ones, others default (1 binary / 0 regression when none given,
    0 when some are given)."""
    fusion = parse_fusion(fusion)
    names = run.task_names
    if not fusion:
        return {t.name: (1.0 if t.is_binary else 0.0) for t in run.tasks}
    unknown = sorted(set(fusion) - set(names))
    if unknown:
        raise RunError(f"Fusion names unknown task(s): {', '.join(unknown)}.", fix=f"tasks are: {', '.join(names)}")
    w = {n: float(fusion.get(n, 0.0)) for n in names}
    if fusion_is_zero(w):
        raise RunError("Every fusion weight is 0, so nothing would rank the items.",
                       fix="give at least one task a non-zero weight")
    return w


def fusion_is_zero(weights: dict[str, float]) -> bool:
    """True when every weight is 0 (or there is none): the fused score is then the same for every
    item, so nothing ranks them. `fusion_weights` refuses such weights; a page warns instead."""
    return all(v == 0 for v in weights.values())


def fusion_for(run, fusion: dict[str, float], store=None) -> dict[str, float] | None:
    """The weights of `fusion` (set for another run, e.g. the page's sliders) that apply to
    `run`: those of the tasks it has. None, i.e. the run's default fusion, when it shares no
    task with them or every shared weight is 0, so that comparing two runs never fails only
    because the second lacks the first one's weighted tasks."""
    names = set(load_run(run, store).task_names)
    w = {t: v for t, v in fusion.items() if t in names}
    return None if fusion_is_zero(w) else w


def _transform(model, preds: torch.Tensor) -> torch.Tensor:
    """Per-task score on the fusion scale: log p for binary, standardised value for regression."""
    logp = torch.log(preds.clamp(min=LOG_FLOOR))
    z = (preds - model.target_mean) / model.target_std
    return torch.where(model.is_binary, logp, z)


# -- run-level scores ------------------------------------------------------------------------------

def _weights_tensor(run: Run, weights: dict[str, float], dev) -> torch.Tensor:
    return torch.tensor([weights[n] for n in run.task_names], dtype=torch.float32, device=dev)


def _task_index(run: Run, task: str | None) -> int:
    return run.task_names.index(run.task(task).name)


def _seen_csr(run: Run, parts=("train", "val"), keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indptr [n_users+1], item rows) of seen items per user row. `keys`: run.seen_keys(parts)
    when the caller already has it."""
    if keys is None:
        keys = run.seen_keys(parts)
    n_i = run.n_items
    users = keys // n_i
    indptr = np.searchsorted(users, np.arange(run.n_users + 1))
    return indptr, (keys % n_i).astype(np.int64)


def _mask_seen(S: torch.Tensor, rows: np.ndarray, indptr: np.ndarray, seen_items: np.ndarray) -> None:
    """Set seen (user, item) cells of the chunk matrix S [len(rows), n_items] to -inf, in place."""
    starts, ends = indptr[rows], indptr[rows + 1]
    counts = ends - starts
    if counts.sum() == 0:
        return
    local = np.repeat(np.arange(len(rows)), counts)
    idx = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(starts, counts)
    S[torch.as_tensor(local, device=S.device), torch.as_tensor(seen_items[idx], device=S.device)] = float("-inf")


def _user_rows(run: Run, users) -> np.ndarray:
    if users is None:
        return np.arange(run.n_users)
    return run.space.user_rows(list(users)).astype(np.int64)


def run_scores(run, users=None, items=None, fusion=None, task: str | None = None, exclude_seen: bool = False,
               chunk_pairs: int = DEFAULT_CHUNK_PAIRS, store=None) -> np.ndarray:
    """Ranking scores [n_users, n_items] (float32) of a run for user ids `users` (None: every
    user) against item ids `items` (None: every item, in run.items order). With `task`, that
    task's score (log p for binary, standardised value for regression); otherwise the fused
    score. Seen items -> -inf if `exclude_seen`. Unknown user ids are refused (use `recommend`
    for the popularity fallback). The model's own outputs: `mtrlib.scoring.score_matrix`."""
    run = load_run(run, store)
    model = run.model
    rows = _user_rows(run, users)
    if (rows < 0).any():
        bad = [u for u, r in zip(users, rows) if r < 0][:5]
        raise RunError(f"Unknown user id(s): {', '.join(map(str, bad))}.", fix="pick users from the run's data")
    item_rows = None
    if items is not None:
        item_rows = run.space.item_rows(list(items)).astype(np.int64)
        if (item_rows < 0).any():
            raise RunError("Some item ids are not in the run's catalogue.", fix="pick items from run.items")
    dev = device_of(model)
    w = _weights_tensor(run, fusion_weights(run, fusion), dev)
    j = _task_index(run, task) if task is not None else None
    n_i = run.n_items if item_rows is None else len(item_rows)
    out = np.empty((len(rows), n_i), np.float32)
    if exclude_seen:
        indptr, seen_items = _seen_csr(run)
        if item_rows is not None:  # map catalogue item rows to positions in `items`
            pos = np.full(run.n_items, -1)
            pos[item_rows] = np.arange(len(item_rows))
    for lo, hi, preds in iter_scores(model, rows, item_rows, chunk_pairs):
        S = _transform(model, preds)[..., j] if j is not None else (_transform(model, preds) * w).sum(-1)
        if exclude_seen:
            if item_rows is None:
                _mask_seen(S, rows[lo:hi], indptr, seen_items)
            else:
                for r_local, r in enumerate(rows[lo:hi]):
                    p = pos[seen_items[indptr[r]:indptr[r + 1]]]
                    S[r_local, torch.as_tensor(p[p >= 0], device=S.device)] = float("-inf")
        out[lo:hi] = S.float().cpu().numpy()
    return out


# -- recommendations ---------------------------------------------------------------------------------

def _popularity(run: Run, task: str | None = None) -> np.ndarray:
    """Per-item training positives of `task` (default: the first binary task; logged count if none)."""
    bins = run.binary_tasks
    name = task or (bins[0] if bins else None)
    if name is None:
        return run.arrays["train.item_count"].astype(np.float64)
    return run.arrays["train.item_pos"][:, _task_index(run, name)].astype(np.float64)


def _display_items(run: Run) -> pd.DataFrame:
    cols = [c for c in run.items.columns if c != "cold"]
    return run.items[cols]


def recommend_many(run, user_ids, k: int = 10, fusion=None, exclude_seen: bool = True,
                   chunk_pairs: int = DEFAULT_CHUNK_PAIRS, store=None) -> pd.DataFrame:
    """Top-k per user, long format: user_id, rank, item_id, item attributes, score (fused), one
    column per task (probability / value), cold (item has no id embedding), source
    ("model" | "popularity" for users the run does not know). Notes in `df.attrs['notes']`."""
    run = load_run(run, store)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise RunError(f"k must be a whole number of at least 1 (got {k}).", fix="e.g. --k 10")
    user_ids = [str(u).strip() for u in user_ids]
    weights = fusion_weights(run, fusion)
    model = run.model
    rows = _user_rows(run, user_ids)
    known = rows >= 0
    k_eff = int(min(k, run.n_items))
    disp = _display_items(run)
    cold_items = run.items["cold"].to_numpy()
    names = run.task_names
    frames: list[pd.DataFrame] = []
    notes: list[str] = []
    dev = device_of(model)
    w = _weights_tensor(run, weights, dev)
    indptr, seen_items = _seen_csr(run)
    uniq_rows = np.unique(rows[known])
    results: dict[int, pd.DataFrame] = {}
    for lo, hi, preds in iter_scores(model, uniq_rows, None, chunk_pairs):
        S = (_transform(model, preds) * w).sum(-1)
        kk = k_eff
        if exclude_seen:
            _mask_seen(S, uniq_rows[lo:hi], indptr, seen_items)
            n_cand = run.n_items - (indptr[uniq_rows[lo:hi] + 1] - indptr[uniq_rows[lo:hi]])
            kk = int(min(k_eff, max(1, n_cand.max())))
        top_s, top_i = torch.topk(S, kk, dim=1)
        got = torch.gather(preds, 1, top_i.unsqueeze(-1).expand(-1, -1, preds.shape[-1]))
        top_s, top_i, got = top_s.cpu().numpy(), top_i.cpu().numpy(), got.float().cpu().numpy()
        for r_local, r in enumerate(uniq_rows[lo:hi]):
            ok = np.isfinite(top_s[r_local])
            it = top_i[r_local][ok]
            df = disp.iloc[it].reset_index()
            df.insert(0, "rank", np.arange(1, len(it) + 1))
            df["score"] = top_s[r_local][ok]
            for j, n in enumerate(names):
                df[n] = got[r_local][ok, j]
            df["cold"] = cold_items[it]
            df["source"] = "model"
            results[int(r)] = df
    pop = _popularity(run)
    order = np.lexsort((np.arange(run.n_items), -pop))[:k_eff]
    user_cold = run.users["cold"].to_numpy()
    for uid, r in zip(user_ids, rows):
        if r >= 0:
            df = results[int(r)].copy()
            if user_cold[r]:
                notes.append(f"User {uid} had no interactions in training: scored from their side features only.")
        else:
            df = disp.iloc[order].reset_index()
            df.insert(0, "rank", np.arange(1, len(order) + 1))
            df["score"] = pop[order]
            for n in names:
                df[n] = np.nan
            df["cold"] = cold_items[order]
            df["source"] = "popularity"
            notes.append(f"User {uid} is not known to this run: showing the most popular items instead.")
        df.insert(0, "user_id", uid)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["user_id", "rank", "item_id", "score", *names, "cold", "source"])
    out.attrs["notes"] = notes
    out.attrs["fusion"] = weights
    out.attrs["excluded_seen"] = bool(exclude_seen)
    return out


def recommend(run, user_id, k: int = 10, fusion=None, exclude_seen: bool = True, store=None) -> pd.DataFrame:
    """Top-k for one user: rank, item_id, attributes, score (fused), per-task scores, cold, source.
    `df.attrs`: notes (fallbacks said in words), fusion (weights used), fallback (bool), user_id."""
    df = recommend_many(run, [user_id], k, fusion, exclude_seen, store=store).drop(columns=["user_id"])
    df.attrs["user_id"] = str(user_id).strip()
    df.attrs["fallback"] = bool(len(df) and (df["source"] == "popularity").all())
    return df


def user_history(run, user_id, store=None) -> pd.DataFrame:
    """The user's seen items (training + validation) with attributes, for display."""
    run = load_run(run, store)
    ids = run.seen_items(user_id)
    return _display_items(run).loc[ids].reset_index()


def held_out(run, user_id, store=None) -> pd.DataFrame:
    """The user's logged test interactions with their labels per task (not seen in training): item_id,
    title / genres / genre when the run has them, one column per task (NaN where the task has no
    label). Kept here, next to `user_history`, so a page only displays it. Empty for unknown users."""
    run = load_run(run, store)
    te = run.test
    row = int(run.space.user_rows([user_id])[0])
    if row < 0:
        return pd.DataFrame()
    sel = (te["user"] == row) & te["logged"].astype(bool)
    items = run.items.iloc[te["item"][sel]]
    out = items[[c for c in ("title", "genres", "genre") if c in items.columns]].reset_index()
    for j, t in enumerate(run.task_names):
        lab = te["labels"][sel, j].astype(float)
        lab[~te["mask"][sel, j].astype(bool)] = float("nan")
        out[t] = lab
    return out


# -- full-ranking evaluation -----------------------------------------------------------------------------

def _in_sorted(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(keys.shape, bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos >= len(sorted_keys)] = 0
    return sorted_keys[pos] == keys


def hit_metrics(hit: np.ndarray, n_rel: np.ndarray, ks=KS, hitrate: bool = False) -> dict[str, np.ndarray]:
    """Per-row Recall@K, NDCG@K (and HitRate@K when `hitrate`) from `hit` [U, Kmax] (whether the
    item at each rank, best first, is relevant) and `n_rel` [U] (number of relevant items).
    Recall = hits / |relevant|; NDCG = DCG / ideal DCG over min(|relevant|, K) (binary gains);
    HitRate = 1 when at least one relevant item is in the top K. Shared by `topk_metrics` and
    the cold-start ranking, so both compute the same numbers."""
    kmax = hit.shape[1]
    disc = 1.0 / np.log2(np.arange(2, max(kmax, max(ks)) + 2))
    ideal = np.cumsum(disc)
    out = {}
    for K in ks:
        h = hit[:, :min(K, kmax)]
        nh = h.sum(1)
        dcg = (h * disc[:h.shape[1]]).sum(1)
        idcg = ideal[np.minimum(n_rel, K) - 1]
        out[f"recall@{K}"] = nh / n_rel
        out[f"ndcg@{K}"] = dcg / idcg
        if hitrate:
            out[f"hitrate@{K}"] = (nh > 0).astype(float)
    return out


def topk_metrics(top: np.ndarray, user_rows: np.ndarray, pos_keys: np.ndarray, n_pos: np.ndarray, n_items: int,
                 ks=KS) -> dict[str, np.ndarray]:
    """Per-user Recall@K, NDCG@K, HitRate@K from the top items [U, Kmax] (item rows, best first).
    Recall = hits / |relevant|; NDCG = DCG / ideal DCG over min(|relevant|, K) (binary gains);
    HitRate = 1 when at least one relevant item is in the top K."""
    hit = _in_sorted(user_rows[:, None].astype(np.int64) * n_items + top.astype(np.int64), pos_keys)
    return hit_metrics(hit, n_pos, ks, hitrate=True)


def rank_eval(run, task: str | None = None, ks=KS, fusion=None, chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
              store=None) -> dict:
    """Full-ranking evaluation over the held-out (test) positives of a binary task (default: the
    first binary task). Candidates per user: every item not seen in training / validation.
    The model ranks by the task's own score (or by the fused score when `fusion` is given); the
    popularity baseline ranks by the item's count of training positives for the task, over the
    same candidates. Averages over users with at least one test positive.

    Returns {"task", "model": {"recall@10": ..}, "popularity": {..}, "users", "items",
    "positives", "seconds", "ranked_by"}."""
    run = load_run(run, store)
    t = run.task(task) if task is not None else (run.task(run.binary_tasks[0]) if run.binary_tasks else None)
    if t is None or not t.is_binary:
        raise RunError(f"Ranking evaluation needs a binary task; '{t.name if t else '-'}' is a regression task.",
                       fix=f"choose one of: {', '.join(run.binary_tasks) or '(none)'}")
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise RunError("K must be whole numbers of at least 1.", fix="e.g. --k 5,10,20")
    t0 = time.perf_counter()
    j = _task_index(run, t.name)
    te = run.test
    n_i = run.n_items
    pos = te["mask"][:, j] & (te["labels"][:, j] == 1)
    keys = np.unique(te["user"][pos].astype(np.int64) * n_i + te["item"][pos].astype(np.int64))
    seen = run.seen_keys()
    keys = keys[~_in_sorted(keys, seen)]  # a positive already seen cannot be recommended
    users = np.unique(keys // n_i)
    n_pos = np.bincount(keys // n_i, minlength=run.n_users)[users]
    kmax = min(max(ks), n_i)
    indptr, seen_items = _seen_csr(run, keys=seen)
    model = run.model
    dev = device_of(model)
    w = _weights_tensor(run, fusion_weights(run, fusion), dev) if fusion is not None else None
    sums = {"model": {}, "popularity": {}}
    pop = _popularity(run, t.name)
    pop_rank = np.empty(n_i)
    pop_rank[np.lexsort((np.arange(n_i), -pop))] = np.arange(n_i)
    pop_score = torch.as_tensor(-pop_rank, dtype=torch.float32, device=dev)  # no ties: index breaks them
    for lo, hi, preds in iter_scores(model, users, None, chunk_pairs):
        rows = users[lo:hi]
        tr = _transform(model, preds)
        S = tr[..., j] if w is None else (tr * w).sum(-1)
        _mask_seen(S, rows, indptr, seen_items)
        P = pop_score.expand(len(rows), -1).clone()
        _mask_seen(P, rows, indptr, seen_items)
        for name, M in (("model", S), ("popularity", P)):
            top = torch.topk(M, kmax, dim=1).indices.cpu().numpy()
            per = topk_metrics(top, rows, keys, n_pos[lo:hi], n_i, ks)
            for m, v in per.items():
                sums[name][m] = sums[name].get(m, 0.0) + float(v.sum())
    n_u = max(1, len(users))
    order = [f"{m}@{K}" for K in ks for m in ("recall", "ndcg", "hitrate")]
    res = {name: {m: sums[name].get(m, float("nan")) / n_u if len(users) else float("nan") for m in order}
           for name in ("model", "popularity")}
    return {"task": t.name, **res, "users": int(len(users)), "items": int(n_i), "positives": int(len(keys)),
            "ranked_by": "fused score" if w is not None else f"{t.name} score",
            "seconds": time.perf_counter() - t0}


__all__ = ["recommend", "recommend_many", "run_scores", "rank_eval", "topk_metrics", "parse_fusion",
           "fusion_weights", "fusion_is_zero", "fusion_for", "user_history", "held_out"]
