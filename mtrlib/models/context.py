"""The model's side of context features (mtrlib.data.context): their embedding, the bias tower on
the slot an item was shown in, and the two knobs that shape them."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import knob

POSITION_MODES = ("feature", "tower", "none")  # what reads the slot: ContextOptions.position


@dataclass
class ContextOptions:
    """ModelConfig fields (declared here, beside what reads them): the context fields' width and
    what the model does with the slot."""
    # each context field's embedding width: a device or an hour has tens of codes where an id has
    # thousands, and a narrower vector per field keeps a log of 20 fields at over half the speed
    # of none (bench/context_speed.py). Mixed-dimension embeddings: Ginart, Naumov, Mudigere,
    # Yang, Zou, ISIT 2021 (width should shrink with a feature's cardinality and popularity)
    context_dim: int = knob(8, "Context embedding dimension", noun="context embedding dimension", lo=1, hi=128,
                            flag="--context-dim", url="cdim", valid=lambda v: 1 <= v <= 512, example="8",
                            message="The context embedding dimension must be 1..512 (got {v}).", fix="e.g. 8",
                            help="width of each context field's embedding (default 8; at most the embedding "
                                 "dimension)")
    # what the model does with the context column that is the slot an item was shown in (data
    # with a position only; mtrlib.models.base.PositionBias): read it as a feature, learn it in a
    # bias tower dropped at serving (PAL, Guo et al. RecSys 2019), or leave it out
    position: str = knob("feature", "Position", noun="position handling", choices=POSITION_MODES, widget="radio",
                         flag="--position", url="pos",
                         help="data with a position column: feature (a context feature like any other), tower "
                              "(a bias tower used in training and dropped at serving: PAL, Guo et al. RecSys 2019; "
                              "YouTube's shallow tower, Zhao et al. RecSys 2019) or none (left out)")


class ContextEmbedding(nn.Module):
    """Embeds an impression's context (mtrlib.data.context): a vector per categorical or bucket
    code, the mean of a multi / text cell's code vectors, the standardised numbers as they are.
    The columns' codes share one table (each column at its offset), so a batch costs one lookup
    for all categorical columns and one for all multi-valued ones, not one per column.
    Without a context (a caller that has none, e.g. scoring with the defaults) it reads the
    default context saved with the run: each column's most frequent value, the position's slot."""

    def __init__(self, desc: dict, tables: dict[str, torch.Tensor], dim: int):
        super().__init__()
        self.cat_names, self.multi_names = list(desc["cat"]), list(desc["multi"])
        cat_sizes = [desc["cat"][c] for c in self.cat_names]
        multi_sizes = [desc["multi"][c] for c in self.multi_names]
        # (a table only for a kind the data has: a parameter no batch reads stalls DDP)
        self.cat = nn.Embedding(sum(cat_sizes), dim) if cat_sizes else None
        self.multi = nn.Embedding(1 + sum(multi_sizes), dim, padding_idx=0) if multi_sizes else None  # row 0: the pad
        self.register_buffer("cat_offset", torch.tensor(_offsets(cat_sizes, 0), dtype=torch.long))
        self.register_buffer("multi_offset", torch.tensor(_offsets(multi_sizes, 1), dtype=torch.long)[:, None])
        self.n_numeric = int(desc["numeric"])
        self.position = desc.get("position")
        # the position's column of `cat` (the slot): what a user tower leaves out
        self.position_index = self.cat_names.index(self.position) if self.position in self.cat_names else -1
        for part in ("cat", "multi", "num"):
            self.register_buffer(f"default_{part}", tables[f"context.default.{part}"].clone())
        self.dim = dim
        self.feature_dim = dim * (len(self.cat_names) + len(self.multi_names)) + self.n_numeric
        self.request_dim = self.feature_dim - (dim if self.position_index >= 0 else 0)
        # the slot read elsewhere (a bias tower) or not at all: the row holds the request's columns only
        self.drop_position = bool(desc.get("drop_position")) and self.position_index >= 0
        if self.drop_position:
            self.feature_dim = self.request_dim

    def _parts(self, context, n: int, request: bool = False) -> list[torch.Tensor]:
        if context is None:
            cat, multi, num = self.default_cat, self.default_multi, self.default_num
        else:
            cat, multi, num = context
        if len(cat) == 1 and n != 1:  # one request's context for every row
            cat, multi, num = cat.expand(n, -1), multi.expand(n, -1, -1), num.expand(n, -1)
        out = []
        if self.cat_names:
            vec = self.cat(cat + self.cat_offset)  # [B, Cc, dim]
            if request and self.position_index >= 0:
                keep = [j for j in range(len(self.cat_names)) if j != self.position_index]
                vec = vec[:, keep]
            out.append(vec.reshape(len(vec), -1))
        if self.multi_names:
            codes = torch.where(multi > 0, multi + self.multi_offset, torch.zeros_like(multi))  # [B, Cm, L]
            vec = self.multi(codes).sum(2) / (multi > 0).sum(-1, keepdim=True).clamp(min=1)  # [B, Cm, dim]
            out.append(vec.reshape(len(vec), -1))
        if self.n_numeric:
            out.append(num.float())
        return out

    def forward(self, context, n: int, device=None) -> torch.Tensor:
        """[n, feature_dim]: `context` (a Context of n rows, or of 1 row for all n; None: the default)."""
        parts = self._parts(context, n, request=self.drop_position)
        return torch.cat(parts, -1) if parts else torch.zeros(n, 0, device=device)

    def request(self, context, n: int, device=None) -> torch.Tensor:
        """[n, request_dim]: the columns a request has before any item is placed (not the slot)."""
        parts = self._parts(context, n, request=True)
        return torch.cat(parts, -1) if parts else torch.zeros(n, 0, device=device)


def _offsets(sizes: list[int], start: int) -> list[int]:
    """Where each column's codes start in a shared table."""
    out, at = [], start
    for s in sizes:
        out.append(at)
        at += s
    return out


class PositionBias(nn.Module):
    """A position tower on the slot an item was shown in, used in training and dropped at serving:
    the click a user gives depends on whether they examined the slot, which says nothing of the
    item, so the main towers should not learn it.

    PAL (Guo, Liu, Tang, Zhang, Yu, "PAL: A Position-bias Aware Learning Framework for CTR
    Prediction in Live Recommender Systems", RecSys 2019) factorises

        p(click | x, pos) = p(seen | pos) * p(click | x, seen),

    trains the product on the logged clicks and serves p(click | x, seen) alone; here p(seen | pos)
    = sigmoid(b_t[pos]), one learned value per slot and binary task, starting near 1 (b = 3).
    YouTube's multitask ranker (Zhao et al., "Recommending What Video to Watch Next", RecSys 2019)
    adds a shallow tower's logit instead; the product is PAL's, and the examination hypothesis's
    (Craswell et al., WSDM 2008). Only tasks observed on every impression are examined: one
    observed only where another is 1 (like | click) was asked after the user saw the item."""

    def __init__(self, ctx: dict, n_tasks: int):
        super().__init__()
        self.index = list(ctx["cat"]).index(ctx["position"])  # the slot's column among the context codes
        self.bias = nn.Embedding(int(ctx["cat"][ctx["position"]]), n_tasks)
        nn.init.constant_(self.bias.weight, 3.0)

    def forward(self, raw: torch.Tensor, context, examined: torch.Tensor) -> torch.Tensor:
        """The logits of p(seen | pos) * p(click | x, seen) where `examined` [T] (the others as they are):
        log p = log sigmoid(raw) + log sigmoid(b), logit = log p - log(1 - p)."""
        logp = (F.logsigmoid(raw) + F.logsigmoid(self.bias(context.cat[:, self.index]))).clamp(max=-1e-6)
        return torch.where(examined, logp - torch.log(-torch.expm1(logp)), raw)
