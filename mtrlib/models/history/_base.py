"""The interface every history encoder implements: the network (`HistoryEncoder`) and, beside
it in the same file, its description (`Encoder`: registry key, label, paper, Options, rules)."""
from __future__ import annotations

import torch
from torch import nn


class HistoryEncoder(nn.Module):
    """From a user's past items to one vector that joins the input row.

    `past` [B, L, d]: each past item's vector (the item's own columns of the input row: id
    embedding, combined with its language-model text when text features are on, and its side
    features), most recent first; `mask` [B, L] True where a position holds a real item;
    `target` [B, d]: the candidate item's vector, given only to a `target_aware` encoder.
    A row with no past item gets the zero vector.

    `options`: the encoder's own knobs (an instance of its Encoder's `Options`); `m`: the
    ModelConfig, for the settings every model shares (emb_dim, dropout)."""
    target_aware = False  # True: the output depends on the candidate item (not factorisable per user)
    # True: the output is sum_j weights(mask)_j past_j, weights from the mask alone; the block then
    # computes it straight from the embedding tables (mtrlib.models.history._pool), never building `past`
    linear = False

    spec: type[Encoder]  # set by the Encoder whose `Model` this is

    def __init__(self, d: int, length: int, options=None, m=None):
        super().__init__()
        self.options = options if options is not None else self.spec.default_options()
        self.out_dim = d

    def forward(self, past: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def weights(self, past: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """[B, L]: how much each past item counts in the output (0 at padded positions): what the
        Recommend page shows as "these past items drove this score"."""
        raise NotImplementedError


def masked_mean_weights(mask: torch.Tensor) -> torch.Tensor:
    """[B, L]: 1/n on the n real positions of each row, 0 elsewhere (0 everywhere when n = 0)."""
    m = mask.to(torch.float32)
    return m / m.sum(1, keepdim=True).clamp(min=1)


def pool(weights: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
    """sum_j w_j past_j: weights [B, L], past [B, L, d] -> [B, d]."""
    return torch.bmm(weights.unsqueeze(1), past).squeeze(1)


class Encoder:
    """A history encoder's description. A subclass in its own module of this package that sets
    `name` is registered by discovery (`HISTORY_ENCODERS`); `Model` is its network."""
    name = ""  # registry key: --history-encoder, config.json's model.history_encoder
    label = ""
    short = ""  # a few letters, for the network diagram
    paper = ""
    order = 100
    Options = None  # dataclass of this encoder's own knobs (config fields history_<knob>)
    Model: type[HistoryEncoder] = HistoryEncoder

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "Model" in cls.__dict__:
            cls.Model.spec = cls  # the network finds its description (default options)

    @classmethod
    def default_options(cls):
        return cls.Options() if cls.Options is not None else None

    @classmethod
    def check(cls, opts, m) -> list[str]:
        """Rules across its knobs (`opts`) and the model's settings (`m`, the ModelConfig) when it
        is the chosen encoder: raise DataError or return warnings."""
        return []
