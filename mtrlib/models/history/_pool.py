"""Weighted sums of past items' vectors without building the [B, L, d] block of them.

A past item's vector (its columns of the input row) is linear in the embedding tables: its
id embedding (+ a linear projection of its text), the embedding of each categorical value,
the mean of its multi-valued codes' embeddings, its numeric values. So for any weights w,
sum_j w_j v(item_j) is a sum of `embedding_bag`s straight over those tables: mean pooling
costs a few bag lookups per past item instead of a gather, a [B, L, d] tensor and its
scatter-add backward (measured: the gather path made training 3x slower on ml-latest-small).

`pooled_item_row_vectors` mirrors `InputLayer.item_row_vectors` column for column (the
'gated' text combination is not linear: it falls back to the gather);
tests/test_history.py checks that the two agree.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

try:  # a sort-free scatter-add for the backward pass on CPU (numba comes with umap-learn)
    import numba
except ImportError:  # pragma: no cover - then torch's index_add_ does it
    numba = None

DENSE_MULTI_CELLS = 1 << 22  # a multi-valued column's items x vocabulary matrix is kept dense up to this size


# -- scatter-add: the backward of every lookup here -------------------------------------------------
# PyTorch's CPU index_add_ / embedding backward add one short row at a time or sort the indices
# first; the lookups here add B x L rows of 16-32 floats into a small table, where a plain loop
# is about 6x faster (measured on ml-latest-small, batch 1024, L = 50). Compiled once per process
# (cached on disk where the package folder is writable); anything but CPU float32 uses torch.

if numba is not None:
    @numba.njit(nogil=True, cache=True)
    def _nb_scatter_bag(out, idx, w, g):  # out[idx[b, j]] += w[b, j] * g[b]
        for b in range(idx.shape[0]):
            for j in range(idx.shape[1]):
                wj = w[b, j]
                if wj != 0.0:
                    r = idx[b, j]
                    for k in range(out.shape[1]):
                        out[r, k] += wj * g[b, k]

    @numba.njit(nogil=True, cache=True)
    def _nb_scatter_rows(out, idx, src):  # out[idx[k]] += src[k]
        for i in range(idx.shape[0]):
            r = idx[i]
            for k in range(out.shape[1]):
                out[r, k] += src[i, k]


def _numba_ok(*ts: torch.Tensor) -> bool:
    return numba is not None and all(t.device.type == "cpu" for t in ts) and ts[0].dtype == torch.float32


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _quiet(fn, *args) -> None:
    with warnings.catch_warnings():  # "cannot cache ..." where the package folder is read-only
        warnings.simplefilter("ignore")
        fn(*args)


def scatter_bag(n: int, idx: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """[n, d]: out[idx[b, j]] += w[b, j] * g[b] (the gradient of `bag` for its table)."""
    out = g.new_zeros(n, g.shape[1])
    if _numba_ok(g, idx, w) and w.dtype == torch.float32:
        _quiet(_nb_scatter_bag, out.numpy(), _np(idx), _np(w), _np(g))
    else:
        out.index_add_(0, idx.flatten(), (g.unsqueeze(1) * w.unsqueeze(-1)).flatten(0, 1))
    return out


def scatter_rows(n: int, idx: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """[n, d]: out[idx[k]] += src[k] (idx flattened, src [*idx.shape, d])."""
    d = src.shape[-1]
    out = src.new_zeros(n, d)
    if _numba_ok(src, idx):
        _quiet(_nb_scatter_rows, out.numpy(), _np(idx.reshape(-1)), _np(src.reshape(-1, d)))
    else:
        out.index_add_(0, idx.reshape(-1), src.reshape(-1, d))
    return out


class _Bag(torch.autograd.Function):
    """sum_j w[b, j] table[idx[b, j]]: forward by `embedding_bag`, backward by `scatter_bag`."""

    @staticmethod
    def forward(ctx, table, idx, w):
        ctx.save_for_backward(idx, w, table if ctx.needs_input_grad[2] else None)
        ctx.n = table.shape[0]
        return F.embedding_bag(idx, table, per_sample_weights=w, mode="sum")

    @staticmethod
    def backward(ctx, g):
        idx, w, table = ctx.saved_tensors
        g_table = g_w = None
        if ctx.needs_input_grad[0]:
            g_table = scatter_bag(ctx.n, idx, w.detach(), g)
        if ctx.needs_input_grad[2]:
            g_w = torch.bmm(F.embedding(idx, table), g.unsqueeze(-1)).squeeze(-1)  # [B, L]
        return g_table, None, g_w


class _Gather(torch.autograd.Function):
    """table[idx], backward by `scatter_rows`."""

    @staticmethod
    def forward(ctx, table, idx):
        ctx.save_for_backward(idx)
        ctx.n = table.shape[0]
        return F.embedding(idx, table)

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        return scatter_rows(ctx.n, idx, g), None


def gather(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """[*idx.shape, d] = table[idx]."""
    if not table.requires_grad or not torch.is_grad_enabled():
        return F.embedding(idx, table)
    return _Gather.apply(table, idx)


def bag(table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """[B, d] = sum_j w[:, j] * table[idx[:, j]] (idx, w: [B, L])."""
    if not (table.requires_grad or w.requires_grad) or not torch.is_grad_enabled():
        return F.embedding_bag(idx, table, per_sample_weights=w, mode="sum")
    return _Bag.apply(table, idx, w)


def multi_matrix(codes: torch.Tensor, vocab: int) -> torch.Tensor | None:
    """[n_items, vocab]: each item's multi-valued codes as weights 1/n (the features' mean), or
    None when that matrix would be too large (then the codes are bagged one by one)."""
    n = codes.shape[0]
    if n * vocab > DENSE_MULTI_CELLS:
        return None
    real = (codes > 0).to(torch.float32)
    m = torch.zeros(n, vocab)
    m.scatter_add_(1, codes, real)
    m[:, 0] = 0.0  # the pad code
    return m / real.sum(1, keepdim=True).clamp(min=1)


def _multi(side, name: str, dense: torch.Tensor | None, items: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    table = side.multi[name].weight
    if dense is not None:  # sum_j w_j M[item_j] @ E = (bag of M rows) @ E
        return F.embedding_bag(items, dense, per_sample_weights=w, mode="sum") @ table
    codes = getattr(side, f"multi_{name}")[items]  # [B, L, W]
    real = (codes > 0).to(w.dtype)
    cw = w.unsqueeze(-1) * real / real.sum(-1, keepdim=True).clamp(min=1)
    return bag(table, codes.flatten(1), cw.flatten(1))


def pooled_item_row_vectors(inp, items: torch.Tensor, w: torch.Tensor, dense: dict) -> torch.Tensor:
    """[B, item_dim + item.feature_dim] = sum_j w[:, j] * inp.item_row_vectors(items[:, j]).

    `inp` an InputLayer, `items` / `w` [B, L]; `dense` maps multi-valued columns to their
    `multi_matrix` (None: bag the codes)."""
    side = inp.item
    ws = w.sum(1, keepdim=True)
    v = bag(side.id.weight, side.slots[items], w)
    if inp.use_text:
        t = F.embedding_bag(items, inp.text, per_sample_weights=w, mode="sum")  # sum_j w_j text_j (no grad)
        t = F.linear(t, inp.text_proj.weight) + ws * inp.text_proj.bias
        v = v + t if inp.combine == "sum" else torch.cat([v, t], -1)
    out = [v]
    out += [bag(side.cat[c].weight, getattr(side, f"cat_{c}")[items], w) for c in side.cat_names]
    out += [_multi(side, c, dense.get(c), items, w) for c in side.multi_names]
    if side.n_numeric:
        out.append(F.embedding_bag(items, side.numeric, per_sample_weights=w, mode="sum"))
    return torch.cat(out, -1)


def all_item_row_vectors(inp, rows: torch.Tensor, dense: dict) -> torch.Tensor:
    """inp.item_row_vectors(rows), the multi-valued features through their dense matrices (cheap
    to differentiate) and the id lookups through `bag`: a table of past-item vectors to gather from."""
    if not linear_items(inp):
        return inp.item_row_vectors(rows)
    return pooled_item_row_vectors(inp, rows[:, None], torch.ones(len(rows), 1, device=rows.device), dense)


def linear_items(inp) -> bool:
    """Whether an InputLayer's item columns are linear in its tables (all but 'gated' text)."""
    return not (inp.use_text and inp.combine == "gated")
