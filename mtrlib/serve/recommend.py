"""Top-K recommendations from a saved run, ranked by the fused score of its tasks
(mtrlib.serve.fusion), and full-ranking evaluation (Recall / NDCG / HitRate @K, computed by
mtrlib.eval.ranking) next to a popularity baseline.

Scores come from `mtrlib.serve.scoring` (vectorised over users x items, the first layer factorised),
shared with the cold-start ranking; this module adds the run's side: seen-item masking, id
lookups and the popularity fallback (`run_scores` is the run-level score matrix).

Cold start, said so in the output: an unknown user (not in the run's catalogue) gets the
most popular items (`source` = "popularity", note in `df.attrs["notes"]`); an item without
an id embedding (never seen in training) is scored from its side features and flagged
`cold`. "Seen" items, excluded by default, are those the user interacted with in the
training and validation splits (everything but the held-out test interactions).
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import torch

from ..eval.ranking import KS, in_sorted, top_k, topk_accuracy as topk_accuracy_of, topk_metrics
from .cascade import candidates_for, check_stage, mask_seen, overlap_at, rank_users, seen_csr
from ..train.device import device_of
from ..models.base import LOG_FLOOR  # noqa: F401  (re-exported: its home was here)
from ..runs import Run, RunError, load_run
from .fusion import fusion_transform, fusion_weights, weights_tensor
from .scoring import DEFAULT_CHUNK_PAIRS, iter_scores
from .scoring import score_candidates
from .zero_shot import ZeroShot


# -- run-level scores ------------------------------------------------------------------------------

def task_index(run: Run, task: str | None) -> int:
    return run.task_names.index(run.task(task).name)


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
    for the popularity fallback). The model's own outputs: `mtrlib.serve.scoring.score_matrix`."""
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
    w = weights_tensor(run, fusion_weights(run, fusion), dev)
    j = task_index(run, task) if task is not None else None
    n_i = run.n_items if item_rows is None else len(item_rows)
    out = np.empty((len(rows), n_i), np.float32)
    if exclude_seen:
        indptr, seen_items = seen_csr(run)
        if item_rows is not None:  # map catalogue item rows to positions in `items`
            pos = np.full(run.n_items, -1)
            pos[item_rows] = np.arange(len(item_rows))
    for lo, hi, preds in iter_scores(model, rows, item_rows, chunk_pairs):
        S = fusion_transform(model, preds)[..., j] if j is not None else (fusion_transform(model, preds) * w).sum(-1)
        if exclude_seen:
            if item_rows is None:
                mask_seen(S, rows[lo:hi], indptr, seen_items)
            else:
                for r_local, r in enumerate(rows[lo:hi]):
                    p = pos[seen_items[indptr[r]:indptr[r + 1]]]
                    S[r_local, torch.as_tensor(p[p >= 0], device=S.device)] = float("-inf")
        out[lo:hi] = S.float().cpu().numpy()
    return out


# -- recommendations ---------------------------------------------------------------------------------

def popularity(run: Run, task: str | None = None) -> np.ndarray:
    """Per-item training positives of `task` (default: the first binary task; logged count if none)."""
    bins = run.binary_tasks
    name = task or (bins[0] if bins else None)
    if name is None:
        return run.arrays["train.item_count"].astype(np.float64)
    return run.arrays["train.item_pos"][:, task_index(run, name)].astype(np.float64)


def _display_items(run: Run) -> pd.DataFrame:
    cols = [c for c in run.items.columns if c != "cold"]
    return run.items[cols]


def recommend_many(run, user_ids, k: int = 10, fusion=None, exclude_seen: bool = True,
                   chunk_pairs: int = DEFAULT_CHUNK_PAIRS, store=None, stage: str | None = None,
                   candidates: int | None = None, context: dict | None = None) -> pd.DataFrame:
    """Top-k per user, long format: user_id, rank, item_id, item attributes, score (fused), one
    column per task (probability / value, a ':reg:log' task's in its column's units, not its log;
    a retrieval task's column is its cosine score), cold
    (item has no id embedding), source ("model" | "popularity" for users the run does not know),
    stage (what placed the item: "full", "cascade" or "retrieval"; mtrlib.serve.cascade) and, after a
    retrieval stage, "retrieval rank" (its place among the `candidates` retrieved). The stage
    defaults to the cascade when the run has a retrieval task. `context`: column -> value of the
    request context to score in, for a run with context features (the rest: the run's defaults;
    `df.attrs['context']` says what was used). Notes in `df.attrs['notes']`."""
    run = load_run(run, store)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise RunError(f"k must be a whole number of at least 1 (got {k}).", fix="e.g. --k 10")
    stage = check_stage(run, stage, candidates, int(min(k, run.n_items)))
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
    w = weights_tensor(run, weights, device_of(model))
    uniq_rows = np.unique(rows[known])
    results: dict[int, pd.DataFrame] = {}
    if len(uniq_rows):
        ranked = rank_users(run, uniq_rows, k_eff, w, stage, candidates, exclude_seen, want_preds=True,
                            chunk_pairs=chunk_pairs, context=context)
        for r_local, r in enumerate(uniq_rows):
            ok = ranked.items[r_local] >= 0
            it = ranked.items[r_local][ok]
            df = disp.iloc[it].reset_index()
            df.insert(0, "rank", np.arange(1, len(it) + 1))
            df["score"] = ranked.scores[r_local][ok]
            for j, n in enumerate(names):  # a ':reg:log' task's value back in its column's units
                df[n] = run.task(n).to_original(ranked.preds[r_local][ok, j])
            df["cold"] = cold_items[it]
            df["source"] = "model"
            df["stage"] = stage
            if ranked.retrieval_rank is not None:
                df["retrieval rank"] = ranked.retrieval_rank[r_local][ok]
            results[int(r)] = df
    pop = popularity(run)
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
            df["stage"] = "popularity"
            notes.append(f"User {uid} is not known to this run: showing the most popular items instead.")
        df.insert(0, "user_id", uid)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["user_id", "rank", "item_id", "score", *names, "cold", "source", "stage"])
    out.attrs["notes"] = notes
    out.attrs["fusion"] = weights
    out.attrs["excluded_seen"] = bool(exclude_seen)
    out.attrs["stage"] = stage
    space = getattr(run.space, "context", None)
    out.attrs["context"] = space.resolve(context) if space is not None else {}
    out.attrs["candidates"] = candidates_for(run, candidates) if stage == "cascade" else None
    return out


def recommend(run, user_id, k: int = 10, fusion=None, exclude_seen: bool = True, store=None,
              stage: str | None = None, candidates: int | None = None, context: dict | None = None) -> pd.DataFrame:
    """Top-k for one user: rank, item_id, attributes, score (fused), per-task scores, cold, source,
    stage. `df.attrs`: notes (fallbacks said in words), fusion (weights used), fallback (bool),
    user_id, stage, candidates."""
    df = recommend_many(run, [user_id], k, fusion, exclude_seen, store=store, stage=stage,
                        candidates=candidates, context=context).drop(columns=["user_id"])
    df.attrs["user_id"] = str(user_id).strip()
    df.attrs["fallback"] = bool(len(df) and (df["source"] == "popularity").all())
    return df


# -- "Why this item?" -----------------------------------------------------------------------------

def _history(run: Run, row: int, task: str | None) -> tuple[np.ndarray, str]:
    """(item rows, what they are) of a user's history for explanations: the seen positives of
    `task` (default: the retrieval task's OTHER, else the last binary task, e.g. liked), or every
    seen item when the user has none (or the run predates the saved positives)."""
    if task is None:
        other = [run.task(r).column for r in run.retrieval_tasks if run.task(r).column]
        task = other[0] if other else (run.binary_tasks[-1] if run.binary_tasks else None)
    n_i = run.n_items
    if task is not None and run.task(task).is_binary:
        keys = run.arrays.get(f"seen.positive.{task_index(run, task)}")
        if keys is not None:
            lo, hi = np.searchsorted(keys, [row * n_i, (row + 1) * n_i])
            if hi > lo:
                return keys[lo:hi] - row * n_i, task
    keys = run.seen_keys()
    lo, hi = np.searchsorted(keys, [row * n_i, (row + 1) * n_i])
    return keys[lo:hi] - row * n_i, "interactions"


def explain(run, user_id, item_ids, fusion=None, n: int = 3, history_task: str | None = None,
            store=None) -> pd.DataFrame:
    """Why each item is recommended to the user: one row per item with `because` (the `n`
    history items closest to it, as [{"item_id", "title", "similarity"}], best first) and
    `because_text`, in the retrieval space (the retrieval task's item vectors) or, for a run
    without one, the item space (item embeddings); and per task its contribution to the fused
    score, `contrib:<task>` = w_t * s_t (they sum to the fused score). `df.attrs`: "space",
    "history" (the task whose positives form the history, or "interactions"), "fusion"."""

    run = load_run(run, store)
    row = int(_user_rows(run, [str(user_id).strip()])[0])
    if row < 0:
        raise RunError(f"User {user_id} is not known to this run, so there is nothing to explain.",
                       fix="pick a user from the run's data")
    item_ids = [str(i) for i in item_ids]
    rows = run.space.item_rows(item_ids).astype(np.int64)
    if (rows < 0).any():
        raise RunError("Some item ids are not in the run's catalogue.", fix="pick items from run.items")
    model = run.model
    weights = fusion_weights(run, fusion)
    hist, what = _history(run, row, history_task)
    with torch.inference_mode():
        if run.retrieval_tasks:
            V, space = model.retrieval_item_vectors(None, run.retrieval_tasks[0]), "retrieval"
        else:
            V, space = model.item_embeddings(), "item embeddings"
        V = torch.nn.functional.normalize(V.float(), dim=-1).cpu()
    sim = (V[torch.as_tensor(rows)] @ V[torch.as_tensor(hist)].T).numpy() if len(hist) else np.zeros((len(rows), 0))
    titles = run.items["title"] if "title" in run.items.columns else pd.Series(run.items.index, index=run.items.index)
    hist_ids = run.items.index[hist]
    because, text = [], []
    for r in range(len(rows)):
        best = np.argsort(-sim[r], kind="stable")[:n]
        because.append([{"item_id": str(hist_ids[b]), "title": str(titles.iloc[hist[b]]), "similarity": float(sim[r, b])}
                        for b in best])
        text.append("; ".join(x["title"] for x in because[-1]))
    preds = score_candidates(model, [row], rows[None, :])[0]  # [n_items asked, T]
    contrib = (model.fusion_scale(preds) * weights_tensor(run, weights, preds.device)).cpu().numpy()
    out = pd.DataFrame({"item_id": item_ids, "because": because, "because_text": text})
    for j, name in enumerate(run.task_names):
        out[f"contrib:{name}"] = contrib[:, j]
    out.attrs.update(space=space, history=what, fusion=weights)
    return out


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

def _eval_task(run: Run, task: str | None):
    """The task whose held-out positives are relevant: a binary or a retrieval task (default:
    the first binary task, else the first retrieval task)."""
    default = (run.binary_tasks or run.retrieval_tasks or [None])[0]
    t = run.task(task) if task is not None else (run.task(default) if default else None)
    if t is None or not (t.is_binary or t.is_retrieval):
        raise RunError(f"Ranking evaluation needs a binary task (or a retrieval task); '{t.name if t else '-'}' is a "
                       "regression task.", fix=f"choose one of: {', '.join(run.binary_tasks + run.retrieval_tasks) or '(none)'}")
    return t


def _tops(score_fn, users: np.ndarray, k: int, n_items: int, seen=None, chunk_pairs: int = DEFAULT_CHUNK_PAIRS):
    """Top-k item rows [U, k] of a baseline's scores (`score_fn(rows)` -> [len(rows), n_items]),
    seen items masked when `seen` = (indptr, items) is given."""
    out = np.zeros((len(users), k), np.int64)
    step = max(1, chunk_pairs // max(1, n_items))
    for lo in range(0, len(users), step):
        rows = users[lo:lo + step]
        S = score_fn(rows)
        if seen is not None:
            mask_seen(S, rows, *seen)
        out[lo:lo + step] = top_k(S, k)[1].cpu().numpy()
    return out


def rank_eval(run, task: str | None = None, ks=KS, fusion=None, chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
              store=None, stage: str | None = None, candidates: int | None = None, compare_full: bool = False,
              topk_accuracy: int | None = None, lm_baseline: bool | None = None, context: dict | None = None) -> dict:
    """Ranking evaluation over the held-out (test) positives of a binary or retrieval task
    (default: the first binary task). Candidates per user: every item not seen in training /
    validation. The model ranks by the task's own score (or by the fused score when `fusion` is
    given), through `stage` (mtrlib.serve.cascade: "full", "cascade" = retrieve `candidates` (None: 200, at
    most the catalogue) then rank,
    "retrieval"; default: the cascade for a run with a retrieval task). The popularity baseline
    ranks by the item's count of training positives for the task, over the same candidates.
    Averages over users with at least one test positive.

    Returns {"task", "model": {"recall@10": ..}, "popularity": {..}, "users", "items",
    "positives", "seconds" (the stage's scoring time), "ranked_by", "stage", "cpu_seconds" (the same
    span in this process's CPU time)}, plus:
    "candidates" (cascade); with `compare_full` (cascade, retrieval) "recall_of_full@K" (the share
    of full ranking's top K the stage keeps) and "full_seconds"; with `topk_accuracy` K,
    "topk_accuracy@K" inside "model" and "popularity" (per test pair: is the item in the user's
    top K over all items, seen items included; TFRS's FactorizedTopK); with `lm_baseline` (None:
    when the run was trained with text features) "lm_zero_shot", shaped like "popularity"
    (mtrlib.serve.zero_shot)."""
    run = load_run(run, store)
    t = _eval_task(run, task)
    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1:
        raise RunError("K must be whole numbers of at least 1.", fix="e.g. --k 5,10,20")
    if topk_accuracy is not None and (isinstance(topk_accuracy, bool) or int(topk_accuracy) < 1):
        raise RunError(f"--topk-accuracy takes a whole number of at least 1 (got {topk_accuracy}).", fix="e.g. 100")
    n_i = run.n_items
    kmax = min(max(ks), n_i)
    stage = check_stage(run, stage, candidates, kmax)
    if topk_accuracy is not None:
        check_stage(run, stage, candidates, min(int(topk_accuracy), n_i))
    if lm_baseline is None:
        lm_baseline = bool(run.config.model.text_features)
    j = task_index(run, t.name)
    te = run.test
    pos = te["mask"][:, j] & (te["labels"][:, j] == 1)
    pair_u, pair_i = te["user"][pos].astype(np.int64), te["item"][pos].astype(np.int64)
    keys = np.unique(pair_u * n_i + pair_i)
    seen = run.seen_keys()
    keys = keys[~in_sorted(keys, seen)]  # a positive already seen cannot be recommended
    users = np.unique(keys // n_i)
    n_pos = np.bincount(keys // n_i, minlength=run.n_users)[users]
    seen_rows = seen_csr(run, keys=seen)
    model = run.model
    dev = device_of(model)
    if fusion is not None:
        w = weights_tensor(run, fusion_weights(run, fusion), dev)
    else:
        w = torch.zeros(len(run.task_names), device=dev)
        w[j] = 1.0
    ranked = rank_users(run, users, kmax, w, stage, candidates, True, seen=seen_rows, chunk_pairs=chunk_pairs,
                        context=context)
    pop = popularity(run, t.name)
    pop_rank = np.empty(n_i)
    pop_rank[np.lexsort((np.arange(n_i), -pop))] = np.arange(n_i)
    pop_score = torch.as_tensor(-pop_rank, dtype=torch.float32)  # no ties: index breaks them
    tops = {"model": ranked.items,
            "popularity": _tops(lambda r: pop_score.expand(len(r), -1).clone(), users, kmax, n_i, seen_rows, chunk_pairs)}
    zero_shot = None
    if lm_baseline:
        zero_shot = ZeroShot(run)
        tops["lm_zero_shot"] = _tops(zero_shot.scores, users, kmax, n_i, seen_rows, chunk_pairs)
    order = [f"{m}@{K}" for K in ks for m in ("recall", "ndcg", "hitrate")]
    res: dict = {}
    for name, top in tops.items():
        per = topk_metrics(top, users, keys, n_pos, n_i, ks) if len(users) else {}
        res[name] = {m: float(per[m].mean()) if len(users) else float("nan") for m in order}
    if topk_accuracy is not None:
        K = int(min(int(topk_accuracy), n_i))
        pair_users = np.unique(pair_u)
        every = rank_users(run, pair_users, K, w, stage, candidates, exclude_seen=False, chunk_pairs=chunk_pairs,
                           context=context)
        res["model"][f"topk_accuracy@{topk_accuracy}"] = topk_accuracy_of(every.items, pair_users, pair_u, pair_i)
        pop_top = np.broadcast_to(np.argsort(pop_rank)[:K], (len(pair_users), K))
        res["popularity"][f"topk_accuracy@{topk_accuracy}"] = topk_accuracy_of(pop_top, pair_users, pair_u, pair_i)
        if zero_shot is not None:
            lm_top = _tops(zero_shot.scores, pair_users, K, n_i, None, chunk_pairs)
            res["lm_zero_shot"][f"topk_accuracy@{topk_accuracy}"] = topk_accuracy_of(lm_top, pair_users, pair_u, pair_i)
    out = {"task": t.name, **res, "users": int(len(users)), "items": int(n_i), "positives": int(len(keys)),
           "ranked_by": "fused score" if fusion is not None else f"{t.name} score",
           "seconds": ranked.seconds, "stage": stage, "cpu_seconds": ranked.cpu_seconds}
    space = getattr(run.space, "context", None)
    if space is not None:  # what the ranking was scored in
        out["context"] = space.resolve(context)
    if stage == "cascade":
        out["candidates"] = candidates_for(run, candidates)
    if compare_full and stage != "full":
        full = rank_users(run, users, kmax, w, "full", candidates, True, seen=seen_rows, chunk_pairs=chunk_pairs,
                          context=context)
        out.update(overlap_at(ranked.items, full.items, ks))
        out["full_seconds"] = full.seconds
    return out


__all__ = ["recommend", "recommend_many", "run_scores", "rank_eval", "user_history", "held_out", "explain", "popularity",
           "task_index"]
