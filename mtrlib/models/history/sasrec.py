"""A small SASRec-style self-attention encoder over the user's past items.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018: item vectors plus
learned position embeddings, B blocks of causal self-attention and a point-wise feed-forward
layer (layer norm, residuals); the hidden state at the latest step is the user's current
interest. Here the sequence runs most recent first, so "causal" means a step attends to
itself and to older steps, and the latest step (position 0) reads the whole history. The
last block computes position 0 only (nothing else is read), which keeps it fast on CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import DataError
from ...registry import knob
from ._base import Encoder, HistoryEncoder


class _Block(nn.Module):
    """Self-attention (query layer-normed, as in SASRec's code) and a point-wise feed-forward layer."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.norm_q = nn.LayerNorm(d)
        self.att = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Dropout(dropout), nn.Linear(d, d), nn.Dropout(dropout))

    def forward(self, x, pad, causal, last: bool, need_weights: bool = False):
        q = self.norm_q(x[:, :1] if last else x)
        a, w = self.att(q, x, x, key_padding_mask=pad, attn_mask=None if last else causal,
                        need_weights=need_weights)
        y = q + a
        f = self.norm_ff(y)
        return f + self.ff(f), w


class SASRecEncoder(HistoryEncoder):
    def __init__(self, d, length, options=None, m=None):
        super().__init__(d, length, options, m)
        o = self.options
        dm = int(m.emb_dim)
        self.proj = nn.Linear(d, dm)
        self.pos = nn.Embedding(length, dm)
        nn.init.normal_(self.pos.weight, std=0.05)
        self.drop = nn.Dropout(m.dropout)
        self.blocks = nn.ModuleList(_Block(dm, o.heads, m.dropout) for _ in range(o.blocks))
        self.norm = nn.LayerNorm(dm)
        self.out_dim = dm
        # causal, most recent first: position i may attend to j >= i (itself and older steps)
        i = torch.arange(length)
        self.register_buffer("causal", i[None, :] < i[:, None], persistent=False)

    def _run(self, past, mask, need_weights: bool):
        L = past.shape[1]
        empty = ~mask[:, 0]  # no past item: let position 0 (a pad) be attended, zero the output
        pad = ~mask
        pad[:, 0] = pad[:, 0] & ~empty
        x = self.drop(self.proj(past) + self.pos.weight[:L])
        w = None
        for k, blk in enumerate(self.blocks):
            last = k == len(self.blocks) - 1
            x, w = blk(x, pad, self.causal[:L, :L], last, need_weights=need_weights and last)
        h = self.norm(x[:, 0]) * (~empty).unsqueeze(-1)  # [B, dm]
        return h, w, empty

    def forward(self, past, mask, target=None):
        return self._run(past, mask, False)[0]

    def weights(self, past, mask, target=None):
        _, w, empty = self._run(past, mask, True)
        return w[:, 0].masked_fill(~mask, 0.0) * (~empty).unsqueeze(-1)  # the latest step's attention


class SASRec(Encoder):
    name = "sasrec"
    label = "Self-attention (SASRec)"
    short = "SASRec"  # the diagram's box
    paper = "Kang & McAuley, ICDM 2018"
    order = 30
    Model = SASRecEncoder

    @dataclass
    class Options:
        blocks: int = knob(1, "Self-attention blocks", noun="number of self-attention blocks", lo=1, hi=4,
                           flag="--history-blocks", url="hblocks", valid=lambda v: 1 <= v <= 4,
                           message="SASRec takes 1 to 4 self-attention blocks (got {v}).", fix="e.g. 1",
                           help="SASRec: stacked self-attention blocks over the history")
        heads: int = knob(1, "Attention heads", noun="number of attention heads", lo=1, hi=8,
                          flag="--history-heads", url="hheads", valid=lambda v: 1 <= v <= 8,
                          message="SASRec takes 1 to 8 attention heads (got {v}).", fix="e.g. 1",
                          help="SASRec: attention heads (must divide the embedding dimension)")

    @classmethod
    def check(cls, opts, m):
        if m.emb_dim % opts.heads:
            raise DataError(f"SASRec's {opts.heads} attention heads must divide the embedding dimension "
                            f"({m.emb_dim}).", fix="e.g. 1 or 2 heads")
        return []
