"""The two-stage recommender: retrieve, then rank. One place ranks a run's users by a stage:

- "full": the ranking score of every (user, item) pair (`mtrlib.serve.scoring.iter_scores`);
- "retrieval": the retrieval task's two-tower score over the whole catalogue, one matrix
  product (`mtrlib.serve.scoring.retrieval_scores`, exact: no approximate index up to 100k items);
- "cascade": the retrieval stage's top N (default 200, at most the catalogue) per user, then the ranking score of
  those N only (`mtrlib.serve.scoring.score_candidates`): on ml-latest-small about 2% of the pairs.

`mtrlib.serve.recommend` (top-K lists, full-ranking evaluation) calls `rank_users`; a run with a
retrieval task uses the cascade unless told otherwise. Seen items are masked before either
stage picks (the cascade never spends a candidate on an item the user already met).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..train.device import SCORING_THREADS, cpu_compute, device_of
from ..errors import UserError
from ..runs import Run, RunError
from ..eval.ranking import top_k
from .scoring import DEFAULT_CHUNK_PAIRS, iter_scores, retrieval_scores, score_candidates

STAGES = ("retrieval", "cascade", "full")
DEFAULT_CANDIDATES = 200
MAX_EXACT_ITEMS = 100_000  # the retrieval stage's one matrix product stays exact up to this catalogue
CASCADE_CELLS = 1 << 23  # (user, item) retrieval scores held at once: 610 x 9,742 is one chunk


# -- seen items ------------------------------------------------------------------------------------

def seen_csr(run: Run, parts=("train", "val"), keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(indptr [n_users+1], item rows) of seen items per user row. `keys`: run.seen_keys(parts)
    when the caller already has it."""
    if keys is None:
        keys = run.seen_keys(parts)
    n_i = run.n_items
    users = keys // n_i
    indptr = np.searchsorted(users, np.arange(run.n_users + 1))
    return indptr, (keys % n_i).astype(np.int64)


def mask_seen(S: torch.Tensor, rows: np.ndarray, indptr: np.ndarray, seen_items: np.ndarray) -> None:
    """Set seen (user, item) cells of the chunk matrix S [len(rows), n_items] to -inf, in place."""
    starts, ends = indptr[rows], indptr[rows + 1]
    counts = ends - starts
    if counts.sum() == 0:
        return
    local = np.repeat(np.arange(len(rows)), counts)
    idx = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(starts, counts)
    S[torch.as_tensor(local, device=S.device), torch.as_tensor(seen_items[idx], device=S.device)] = float("-inf")


# -- which stage ------------------------------------------------------------------------------------

def default_stage(run: Run) -> str:
    """The cascade where the run has a retrieval task, else full ranking."""
    return "cascade" if run.retrieval_tasks else "full"


def candidates_for(run: Run, candidates: int | None) -> int:
    """N: as given, or DEFAULT_CANDIDATES (at most the catalogue) when None."""
    return min(DEFAULT_CANDIDATES, run.n_items) if candidates is None else candidates


def check_stage(run: Run, stage: str | None, candidates: int | None = None, k: int | None = None,
                retrieval_task: str | None = None) -> str:
    """The stage to use (None: `default_stage`); refuses what cannot run, with the fix.
    `candidates` None: the default N (`candidates_for`)."""
    candidates = candidates_for(run, candidates)
    stage = default_stage(run) if stage is None else str(stage).strip().lower()
    if stage not in STAGES:
        raise RunError(f"Unknown stage '{stage}'.", fix=f"use one of: {', '.join(STAGES)}")
    if stage == "full":
        return stage
    if not run.retrieval_tasks:
        raise RunError(f"Run '{run.name}' has no retrieval task, so it has no {stage} stage.",
                       fix="use --stage full, or train with a retrieval task, e.g. --task r=retrieval")
    if retrieval_task is not None and retrieval_task not in run.retrieval_tasks:
        raise RunError(f"'{retrieval_task}' is not a retrieval task of run '{run.name}'.",
                       fix=f"its retrieval tasks are: {', '.join(run.retrieval_tasks)}")
    if run.n_items > MAX_EXACT_ITEMS:
        raise RunError(f"The catalogue has {run.n_items:,} items; exact retrieval here goes up to {MAX_EXACT_ITEMS:,}.",
                       fix="use --stage full")
    if stage == "cascade":
        if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)) or candidates < 1:
            raise RunError(f"The number of candidates must be a whole number of at least 1 (got {candidates!r}).",
                           fix=f"e.g. --candidates {DEFAULT_CANDIDATES}")
        if candidates > run.n_items:
            raise RunError(f"{candidates:,} candidates is more than the catalogue's {run.n_items:,} items.",
                           fix=f"use at most {run.n_items:,} (or --stage full to rank every item)")
        if k is not None and k > candidates:
            raise RunError(f"The cascade ranks {candidates:,} candidates per user, fewer than the {k:,} asked for.",
                           fix=f"use --candidates {k} or more, or --stage full")
    return stage


# -- ranking by a stage --------------------------------------------------------------------------------

@dataclass
class Ranked:
    """Each user's top items by one stage (best first; -1 / -inf pad a user with fewer candidates)."""
    stage: str
    items: np.ndarray  # int64 [U, k] item rows
    scores: np.ndarray  # float32 [U, k]: the score that placed the item (fused / task; retrieval stage: its score)
    seconds: float  # scoring time: the stage's model work, masking and top-k (wall clock)
    retrieval_rank: np.ndarray | None = None  # int [U, k]: 1-based rank in the retrieval list (cascade / retrieval)
    retrieval_score: np.ndarray | None = None  # float32 [U, k]: the retrieval task's score (cosine)
    preds: np.ndarray | None = None  # float32 [U, k, T]: every task's prediction, when asked for
    cpu_seconds: float = float("nan")  # the same span in CPU time of this process (less hit by a busy machine)


def context_for(run: Run, values: dict | None):
    """The request context to score in (mtrlib.data.context.Context, one row): the run's default
    (each column's most frequent value, the position's slot) overridden by `values` (column ->
    value); None for a run without context features, which refuses `values`."""
    space = getattr(run.space, "context", None)
    if space is None:
        if values:
            raise RunError("This run has no context features, so there is no context to choose.",
                           fix="leave the context out, or train on data with context columns")
        return None
    try:
        return space.encode_values(values)
    except UserError as e:
        raise RunError(e.problem, fix=e.fix) from None


def rank_users(run: Run, rows: np.ndarray, k: int, weights: torch.Tensor, stage: str | None = None,
               candidates: int | None = None, exclude_seen: bool = True, retrieval_task: str | None = None,
               want_preds: bool = False, seen: tuple[np.ndarray, np.ndarray] | None = None,
               chunk_pairs: int = DEFAULT_CHUNK_PAIRS, context: dict | None = None) -> Ranked:
    """Top `k` items per user row of `rows` by `stage` (on CPU with `MTR_SCORING_THREADS` threads).
    The ranking score is sum_t w_t * s_t over the model's fusion scale s (`model.fusion_scale`:
    log p, standardised value, retrieval logit), so a one-hot `weights` [T] ranks by one task's
    own score. `seen`: `seen_csr(run)` if the caller has it. `retrieval_task`: which retrieval
    task retrieves (default: the first)."""
    dev = device_of(run.model)
    with cpu_compute(SCORING_THREADS if dev.type == "cpu" else 0):
        return _rank_users(run, rows, k, weights, stage, candidates, exclude_seen, retrieval_task, want_preds, seen,
                           chunk_pairs, context_for(run, context))


@torch.inference_mode()
def _rank_users(run: Run, rows: np.ndarray, k: int, weights: torch.Tensor, stage: str | None = None,
               candidates: int | None = None, exclude_seen: bool = True, retrieval_task: str | None = None,
               want_preds: bool = False, seen: tuple[np.ndarray, np.ndarray] | None = None,
               chunk_pairs: int = DEFAULT_CHUNK_PAIRS, ctx=None) -> Ranked:
    stage = check_stage(run, stage, candidates, k, retrieval_task)
    candidates = candidates_for(run, candidates)
    model = run.model
    rows = np.asarray(rows, dtype=np.int64)
    n_i, T = run.n_items, len(model.output_tasks)
    k = int(min(k, n_i))
    indptr, seen_items = (seen if seen is not None else seen_csr(run)) if exclude_seen else (None, None)
    w = weights.to(device_of(model))
    out_i = np.full((len(rows), k), -1, np.int64)
    out_s = np.full((len(rows), k), -np.inf, np.float32)
    r_rank = np.zeros((len(rows), k), np.int64) if stage != "full" else None
    r_score = np.full((len(rows), k), np.nan, np.float32) if stage != "full" else None
    preds_out = np.full((len(rows), k, T), np.nan, np.float32) if want_preds else None
    t0, c0 = time.perf_counter(), time.process_time()
    if stage == "full":
        for lo, hi, preds in iter_scores(model, rows, None, chunk_pairs, context=ctx):
            S = (model.fusion_scale(preds) * w).sum(-1)
            if exclude_seen:
                mask_seen(S, rows[lo:hi], indptr, seen_items)
            s, i = top_k(S, k)
            out_s[lo:hi], out_i[lo:hi] = s.float().cpu().numpy(), i.cpu().numpy()
            if want_preds:
                preds_out[lo:hi] = torch.gather(preds, 1, i[..., None].expand(-1, -1, T)).float().cpu().numpy()
    else:
        n_cand = k if stage == "retrieval" else int(candidates)
        step = max(1, CASCADE_CELLS // n_i)
        for lo in range(0, len(rows), step):
            r = rows[lo:lo + step]
            R = retrieval_scores(model, r, retrieval_task, context=ctx)  # [u, n_items]
            if exclude_seen:
                mask_seen(R, r, indptr, seen_items)
            rs, ri = top_k(R, n_cand)  # the retrieval stage's list, best first
            if stage == "retrieval":
                S, order = rs, torch.arange(n_cand, device=rs.device).expand(len(r), -1)
                P = score_candidates(model, r, ri, context=ctx) if want_preds else None
            else:
                P = score_candidates(model, r, ri, context=ctx)  # [u, N, T]: rank the candidates
                S = (model.fusion_scale(P) * w).sum(-1)
                S = S.masked_fill(~torch.isfinite(rs), float("-inf"))  # a seen item is no candidate
                S, order = top_k(S, k)
            items = torch.gather(ri, 1, order)
            out_s[lo:lo + step], out_i[lo:lo + step] = S.float().cpu().numpy(), items.cpu().numpy()
            r_rank[lo:lo + step] = order.cpu().numpy() + 1
            r_score[lo:lo + step] = torch.gather(rs, 1, order).float().cpu().numpy()
            if want_preds:
                preds_out[lo:lo + step] = torch.gather(P, 1, order[..., None].expand(-1, -1, T)).float().cpu().numpy()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    bad = ~np.isfinite(out_s)  # fewer candidates than k (a user who met almost every item)
    out_i[bad] = -1
    return Ranked(stage, out_i, out_s, seconds, r_rank, r_score, preds_out, cpu)


def overlap_at(a: np.ndarray, b: np.ndarray, ks) -> dict[str, float]:
    """Mean over users of |a's top K & b's top K| / K (item rows [U, k], best first; -1 = none):
    how much of ranking b's top K ranking a keeps ("recall_of_full@K" with b = full ranking)."""
    out = {}
    for K in ks:
        x, y = a[:, :K], b[:, :K]
        hit = (x[:, :, None] == y[:, None, :]) & (x[:, :, None] >= 0)
        n = np.maximum((y >= 0).sum(1), 1)
        out[f"recall_of_full@{K}"] = float((hit.any(2).sum(1) / n).mean()) if len(a) else float("nan")
    return out


__all__ = ["STAGES", "DEFAULT_CANDIDATES", "Ranked", "rank_users", "check_stage", "default_stage", "overlap_at",
           "candidates_for"]
