"""Scores of every (user, item) pair of a user list x an item list: the one place that runs a
model over pairs, for recommendations and full-ranking evaluation (`mtrlib.serve.recommend`) and the
cold-start ranking (`mtrlib.eval.coldstart`), so both run the same code (one `score_matrix`).

Scoring is vectorised: a chunk of users is repeated against every item row in one forward
pass, and the first layer of every network is computed per user and per item, not per pair
(the model's `score_parts` hook, fed its `split_input()`'s user and item parts; see
mtrlib.models.blocks.PairRows): all 610 users x 9,742 items of ml-latest-small take about 5 s for
MMoE on one core (1.5 s for Shared-Bottom), 2.6x faster than a forward pass over every pair. A
model with no single input row to split (`scores_from_parts()` False: Single-task, STEM) is
scored by its plain forward pass.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..train.device import SCORING_THREADS, cpu_compute, device_of

KS = (5, 10, 20)  # the cut-offs of Recall / NDCG / HitRate @K, unless a caller asks for others
DEFAULT_CHUNK_PAIRS = 1 << 17  # (user, item) pairs per yielded chunk (ranking, masking, top-k)
CPU_BLOCK_PAIRS = 8192  # pairs per forward pass on CPU: small blocks stay in cache


def _pair_raw(model, users: torch.Tensor, items: torch.Tensor, context=None) -> torch.Tensor:
    """Raw outputs of the ranking towers for every pair of users x items, flattened user-major [U*I, R]."""
    if model.scores_from_parts():
        inp = model.split_input()
        return model.score_parts(user_part(inp, users, context), inp.item_part(items))
    n_i = int(items.shape[0])
    return model.ranking_forward(users.repeat_interleave(n_i), items.repeat(int(users.shape[0])), context=context)


def user_part(inp, users: torch.Tensor, context=None) -> torch.Tensor:
    """The users' part of the input row, with the request's context when one is chosen (None:
    the run's default context, read by the input layer itself)."""
    return inp.user_part(users) if context is None else inp.user_part(users, context)


def _forward(model, users, items, context=None):
    return model(users, items) if context is None else model(users, items, context=context)


@contextlib.contextmanager
def _scoring(model, threads: int | None):
    """Eval mode and the scoring thread count (MTR_SCORING_THREADS on CPU; `threads` overrides,
    0 leaves it) for a block of scoring work; yields the model's device."""
    dev = device_of(model)
    was = model.training
    model.eval()
    try:
        with cpu_compute((SCORING_THREADS if dev.type == "cpu" else 0) if threads is None else threads):
            yield dev
    finally:
        model.train(was)


def _blocks(n_i: int, block_pairs: int) -> tuple[int, int]:
    """(users per block, items per block) so that a block holds about `block_pairs` pairs."""
    n_ib = max(1, -(-n_i // max(1, block_pairs)))
    ib = -(-n_i // n_ib)
    return max(1, block_pairs // ib), ib


@torch.inference_mode()
def iter_scores(model, user_rows, item_rows=None, chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
                block_pairs: int | None = None, factorised: bool = True, threads: int | None = None,
                context=None):
    """Yield (lo, hi, preds [hi-lo, n_items, T]) over chunks of users x all items (`item_rows`
    None: every item row of the model): `model.predict` of each pair, in eval mode.

    A chunk holds about `chunk_pairs` pairs, so a caller can mask and rank it before the next;
    each forward pass scores one block of about `block_pairs` (user, item) pairs (default 8,192
    on CPU, where small blocks stay in cache; the whole chunk on a GPU), and the first layer
    of each network is factorised over users and items (the model's `score_parts`). On CPU it runs with
    `MTR_SCORING_THREADS` threads (mtrlib.train.device).

    `factorised=False` runs the model's plain forward pass over repeated rows, and `threads`
    overrides the thread count (0: leave it). The factorised first layer rounds differently
    (within ~1e-6), so a caller whose published numbers came from the plain pass (the cold-start
    ranking, where near-tied cold items reorder) asks for it to keep them bit-identical.

    `context`: the request's context (mtrlib.data.context.Context, one row) every pair is scored
    in, for a run with context features; None: the run's default context."""
    with _scoring(model, threads) as dev:
        context = None if context is None else context.to(dev)
        users = torch.as_tensor(np.asarray(user_rows), dtype=torch.long, device=dev)
        items = (torch.arange(model.n_items, device=dev) if item_rows is None
                 else torch.as_tensor(np.asarray(item_rows), dtype=torch.long, device=dev))
        n_u, n_i = int(users.shape[0]), int(items.shape[0])
        if n_u == 0 or n_i == 0:
            return
        if block_pairs is None:
            block_pairs = CPU_BLOCK_PAIRS if dev.type == "cpu" else int(chunk_pairs)
        ub, ib = _blocks(n_i, int(block_pairs))
        step = max(ub, (int(chunk_pairs) // n_i) // ub * ub)
        inp = model.split_input() if factorised and model.scores_from_parts() else None
        xi_all = inp.item_part(items) if inp is not None else None
        T = len(model.output_tasks)
        retrieval = [t.name for t in model.retrieval_tasks] if inp is not None else []
        iv = [model.retrieval_item_vectors(items, t) for t in retrieval]  # the towers' item side, once
        for lo in range(0, n_u, step):
            u = users[lo:lo + step]
            cu = int(u.shape[0])
            out = torch.empty(cu, n_i, T, device=dev)
            xu = user_part(inp, u, context) if inp is not None else None
            uv = [model.retrieval_user_vectors(u, t, context) for t in retrieval]
            for b in range(0, n_i, ib):
                cache: dict = {}
                for a in range(0, cu, ub):
                    if inp is not None:
                        raw = model.score_parts(xu[a:a + ub], xi_all[b:b + ib], cache)
                        if retrieval:  # each retrieval task's score: a block of one matrix product
                            cos = [(x[a:a + ub] @ y[b:b + ib].T).reshape(-1) for x, y in zip(uv, iv)]
                            raw = model.join_outputs(raw, torch.stack(cos, -1))
                    else:
                        uu, ii = u[a:a + ub], items[b:b + ib]
                        raw = _forward(model, uu.repeat_interleave(len(ii)), ii.repeat(len(uu)), context)
                    out[a:a + ub, b:b + ib] = model.predict(raw).view(min(ub, cu - a), -1, T)
            yield lo, lo + cu, out


def score_matrix(model, user_rows, item_rows=None, chunk_pairs: int = DEFAULT_CHUNK_PAIRS,
                 block_pairs: int | None = None, factorised: bool = True, threads: int | None = None,
                 context=None) -> np.ndarray:
    """float32 [len(user_rows), n_items, T]: `model.predict` of every (user row, item row) pair
    (`item_rows` None: every item row), i.e. probabilities for binary tasks and values for
    regression, from `iter_scores` (same options). For a run's fused or per-task ranking scores,
    with seen items masked, see `mtrlib.serve.recommend.run_scores`."""
    n_i = model.n_items if item_rows is None else len(item_rows)
    out = np.zeros((len(user_rows), n_i, len(model.output_tasks)), np.float32)
    for lo, hi, preds in iter_scores(model, user_rows, item_rows, chunk_pairs, block_pairs, factorised, threads,
                                     context):
        out[lo:hi] = preds.float().cpu().numpy()
    return out


@torch.inference_mode()
def retrieval_scores(model, user_rows, task: str | None = None, threads: int | None = None,
                     context=None) -> torch.Tensor:
    """The retrieval stage's scores [len(user_rows), n_items] of a model with a retrieval task
    (`task` None: its first): the cosine of each user's vector with every item's, one matrix
    product, exact for the whole catalogue (610 x 9,742 in a few milliseconds)."""
    with _scoring(model, threads) as dev:
        users = torch.as_tensor(np.asarray(user_rows), dtype=torch.long, device=dev)
        context = None if context is None else context.to(dev)
        return model.retrieval_user_vectors(users, task, context) @ model.retrieval_item_vectors(None, task).T


@torch.inference_mode()
def score_candidates(model, user_rows, candidates, block_pairs: int | None = None,
                     threads: int | None = None, context=None) -> torch.Tensor:
    """`model.predict` [U, N, T] of each user row against its own N candidate item rows
    (`candidates` [U, N]): the cascade's ranking stage. The first layer is factorised as in
    `iter_scores` (computed once per user and once per candidate item, then gathered per pair)."""
    with _scoring(model, threads) as dev:
        users = torch.as_tensor(np.asarray(user_rows), dtype=torch.long, device=dev)
        cand = torch.as_tensor(np.asarray(candidates), dtype=torch.long, device=dev)
        context = None if context is None else context.to(dev)
        n_u, n_c = cand.shape
        T = len(model.output_tasks)
        if n_u == 0 or n_c == 0:
            return torch.empty(n_u, n_c, T, device=dev)
        present = torch.zeros(model.n_items, dtype=torch.bool, device=dev)  # score each candidate's side once
        present[cand.reshape(-1)] = True
        uniq = present.nonzero().flatten()
        where = torch.empty(model.n_items, dtype=torch.long, device=dev)
        where[uniq] = torch.arange(len(uniq), device=dev)
        inv = where[cand]
        pu = torch.arange(n_u, device=dev).repeat_interleave(n_c)  # pair -> user position
        pi = inv.reshape(-1)  # pair -> position in uniq
        if block_pairs is None:
            block_pairs = CPU_BLOCK_PAIRS if dev.type == "cpu" else len(pu)
        fast = model.scores_from_parts()
        inp = model.split_input() if fast else None
        xu, xi = (user_part(inp, users, context), inp.item_part(uniq)) if fast else (None, None)
        retrieval = [t.name for t in model.retrieval_tasks] if fast else []
        uv = [model.retrieval_user_vectors(users, t, context) for t in retrieval]
        iv = [model.retrieval_item_vectors(uniq, t) for t in retrieval]
        cache: dict = {}
        out = torch.empty(len(pu), T, device=dev)
        for lo in range(0, len(pu), int(block_pairs)):
            a, b = pu[lo:lo + block_pairs], pi[lo:lo + block_pairs]
            if fast:
                raw = model.score_parts(xu, xi, cache, pairs=(a, b))
                if retrieval:
                    cos = [(x.index_select(0, a) * y.index_select(0, b)).sum(-1) for x, y in zip(uv, iv)]
                    raw = model.join_outputs(raw, torch.stack(cos, -1))
            else:
                raw = _forward(model, users[a], uniq[b], context)
            out[lo:lo + block_pairs] = model.predict(raw)
        return out.view(n_u, n_c, T)


__all__ = ["score_matrix", "iter_scores", "retrieval_scores", "score_candidates", "KS", "DEFAULT_CHUNK_PAIRS",
           "CPU_BLOCK_PAIRS"]
