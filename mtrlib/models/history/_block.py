"""The history block: the input layer plus an encoder of the user's past items.

x = [the input layer's row (user, item, their side features), encoder(the user's past items)]:
the encoder's output joins the shared input, so every architecture reads it. The past items'
vectors reuse the item embedding table, the item side features and (with text features on)
the language-model text vectors: the same item columns the input row has for the candidate.

A call with a `History` uses it (training and evaluation pass each example's own); a call
without one uses each user's *latest* training history, kept as a buffer (not saved with the
weights: it comes from the run's feature space), which is what recommending reads. Training
without an explicit history is refused: the latest history would leak later interactions
into earlier examples.
"""
from __future__ import annotations

import torch

from ...data.history import History
from ...registry import options_of
from ..blocks import InputLayer
from . import HISTORY_ENCODERS, PREFIX
from ._pool import all_item_row_vectors, gather, linear_items, multi_matrix, pooled_item_row_vectors


class HistoryInput(InputLayer):
    def __init__(self, desc: dict, tables: dict[str, torch.Tensor], cfg):
        super().__init__(desc, tables, cfg.emb_dim, cfg.text_features, cfg.text_dim, cfg.text_combine)
        if "history" not in desc or "history.items" not in tables:
            raise ValueError("this model reads a history (model.history > 0), but the prepared data has none")
        length = int(desc["history"]["length"])
        self.register_buffer("latest_items", tables["history.items"].clone(), persistent=False)
        self.register_buffer("latest_lengths", tables["history.lengths"].clone(), persistent=False)
        self.past_dim = self.item_dim + self.item.feature_dim
        spec = HISTORY_ENCODERS[cfg.history_encoder]
        self.encoder = spec.Model(self.past_dim, length, options_of(spec, cfg, PREFIX), cfg)
        self.history_dim = self.encoder.out_dim
        self.row_dim = self.out_dim  # the plain input row's width
        self.out_dim = self.row_dim + self.history_dim
        # a target-aware encoder (DIN) depends on the pair: x(u, i) is not user_part + item_part
        self.factorised = not self.encoder.target_aware
        self.pooled = self.encoder.linear and linear_items(self)  # sums straight from the tables
        self.dense_multi = []
        for c in self.item.multi_names:
            m = multi_matrix(getattr(self.item, f"multi_{c}"), desc["items"]["multi"][c])
            if m is not None:
                self.register_buffer(f"dense_{c}", m, persistent=False)
                self.dense_multi.append(c)

    # -- the past ---------------------------------------------------------------------------------
    def latest(self, user: torch.Tensor) -> History:
        """The users' latest training histories (what recommending reads)."""
        return History(self.latest_items[user].long(), self.latest_lengths[user].long())

    def _history(self, user: torch.Tensor, history: History | None) -> History:
        if history is not None:
            return history
        if self.training and torch.is_grad_enabled():
            raise RuntimeError("a model with a history trains on each example's own history: pass history=")
        return self.latest(user)

    def past_vectors(self, history: History) -> tuple[torch.Tensor, torch.Tensor]:
        """(past [B, L, d], mask [B, L]): every past item's vector, each distinct item computed
        once (every item of the catalogue when it is smaller than the batch's history)."""
        items = history.items
        if self.item.slots.shape[0] <= items.numel():
            rows, idx = torch.arange(self.item.slots.shape[0], device=items.device), items
        else:
            rows, idx = torch.unique(items, return_inverse=True)
        return gather(all_item_row_vectors(self, rows, self._dense()), idx), history.mask()

    def _dense(self) -> dict[str, torch.Tensor]:
        return {c: getattr(self, f"dense_{c}") for c in self.dense_multi}

    def encode(self, user, item, history: History | None = None) -> torch.Tensor:
        """[B, history_dim]: the encoder's output for each pair (the user's own history)."""
        if history is None and self.encoder.target_aware and not torch.is_grad_enabled():
            out = self._grid_encode(user, item)  # scoring users x items: the pairs form a grid
            if out is not None:
                return out
        h = self._history(user, history)
        if self.pooled:
            w = self.encoder.weights(None, h.mask(), None)
            return pooled_item_row_vectors(self, h.items, w, self._dense())
        past, mask = self.past_vectors(h)
        target = self.item_row_vectors(item) if self.encoder.target_aware else None
        return self.encoder(past, mask, target)

    def _grid_encode(self, user, item) -> torch.Tensor | None:
        """The encoder's output for pairs that (nearly) cover distinct users x distinct items, as
        scoring asks, computed once per user and item (`grid` of the encoder); None otherwise."""
        users, ui = torch.unique(user, return_inverse=True)
        items, ii = torch.unique(item, return_inverse=True)
        if len(users) * len(items) > 2 * len(user) or not hasattr(self.encoder, "grid"):
            return None
        past, mask = self.past_vectors(self.latest(users))
        out = self.encoder.grid(past, mask, self.item_row_vectors(items))  # [U, I, d]
        return out[ui, ii]

    def weights(self, user, item, history: History | None = None) -> tuple[History, torch.Tensor]:
        """(the history read, [B, L] each past item's weight in the pair's history vector)."""
        h = self._history(user, history)
        past, mask = self.past_vectors(h)
        target = self.item_row_vectors(item) if self.encoder.target_aware else None
        return h, self.encoder.weights(past, mask, target)

    # -- the row ----------------------------------------------------------------------------------
    def forward(self, user, item, history: History | None = None, context=None) -> torch.Tensor:
        # (past items are read with their own features only, not the context they were met in:
        # the logged rows' context is not kept per past item)
        return torch.cat([super().forward(user, item, context=context), self.encode(user, item, history)], -1)

    def user_part(self, rows, context=None):
        """The users' columns (and their latest history's vector: it depends on the user only)."""
        if not self.factorised:
            raise NotImplementedError("a target-aware history is not split into user and item parts")
        return torch.cat([super().user_part(rows, context), self.encode(rows, None)], -1)

    def item_part(self, rows):
        return torch.cat([super().item_part(rows), torch.zeros(len(rows), self.history_dim, device=rows.device)], -1)
