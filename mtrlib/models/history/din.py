"""DIN target attention: each past item is weighted by its relevance to the candidate item.

Zhou, Zhu, Song, Fan, Zhu, Ma, Yan, Jin, Li, Gai, "Deep Interest Network for Click-Through
Rate Prediction", KDD 2018: v_U(A) = sum_j a(e_j, v_A) e_j, where the activation unit a is a
small MLP over [e_j, v_A, e_j - v_A, e_j * v_A] with one output, and the weights are *not*
normalised by a softmax, so the sum keeps how strongly the history speaks for the candidate
(section 4.3). The paper's units are PReLU; here a leaky ReLU of fixed slope (a learned
slope's gradient, a reduction over every (example, past item, unit), cost more than the rest
of the activation unit on CPU).

The first layer of the activation unit is written as W_h e + W_q v + W_p (e * v): the
difference e - v is linear in e and v, so this is the same family of functions as the
layer over the concatenation, without building the [B, L, 4d] concatenation.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import DataError
from ...registry import knob
from ._base import Encoder, HistoryEncoder, pool

SLOPE = 0.1  # the leaky ReLU's slope below 0 (PReLU's starting value is 0.25)


class DINEncoder(HistoryEncoder):
    target_aware = True

    def __init__(self, d, length, options=None, m=None):
        super().__init__(d, length, options, m)
        sizes = list(self.options.attention)
        h = sizes[0]
        self.wh = nn.Linear(d, h)
        self.wq = nn.Linear(d, h, bias=False)
        self.wp = nn.Linear(d, h, bias=False)
        layers: list[nn.Module] = [nn.LeakyReLU(SLOPE)]
        for out in sizes[1:]:
            layers += [nn.Linear(h, out), nn.LeakyReLU(SLOPE)]
            h = out
        layers.append(nn.Linear(h, 1))
        self.unit = nn.Sequential(*layers)

    def weights(self, past, mask, target):
        a = self.wh(past) + self.wq(target).unsqueeze(1) + self.wp(past * target.unsqueeze(1))  # [B, L, h]
        w = self.unit(a).squeeze(-1)  # [B, L]
        return w.masked_fill(~mask, 0.0)

    def forward(self, past, mask, target):
        return pool(self.weights(past, mask, target), past)  # [B, d]

    def grid_weights(self, past, mask, targets):
        """[U, I, L]: the weights of every user (past [U, L, d], mask [U, L]) x every target
        (targets [I, d]), by matrix products (scoring a catalogue: no [U*I, L, d] block)."""
        U, L, d = past.shape
        h = self.wh.out_features
        a = ((past.unsqueeze(2) * self.wp.weight).reshape(U, L * h, d) @ targets.t()).view(U, L, h, -1)
        a += self.wh(past).unsqueeze(-1)  # [U, L, h, I]: the unit's first layer, the targets last
        a += self.wq(targets).t()
        for layer in self.unit:  # the rest of the unit over the h axis (no [U, I, L, h] copy)
            if isinstance(layer, nn.Linear):
                a = torch.matmul(layer.weight, a) + layer.bias[:, None]
            else:
                a = F.leaky_relu(a, SLOPE, inplace=True)
        return a.squeeze(2).transpose(1, 2).masked_fill(~mask.unsqueeze(1), 0.0)  # [U, I, L]

    def grid(self, past, mask, targets):
        """[U, I, d]: `forward` for every user x every target."""
        return self.grid_weights(past, mask, targets) @ past  # [U, I, L] @ [U, L, d]


class DIN(Encoder):
    name = "din"
    label = "DIN target attention"
    short = "DIN"  # the diagram's box
    paper = "Zhou et al., KDD 2018"
    order = 20
    Model = DINEncoder

    @dataclass
    class Options:
        attention: list[int] = knob([36], "Attention unit", noun="attention unit layer", widget="sizes",
                                    flag="--history-attention", url="hatt",
                                    help="DIN's activation unit: hidden layers of the MLP that scores each past item")

    @classmethod
    def check(cls, opts, m):
        if not opts.attention:
            raise DataError("DIN's attention unit needs at least one hidden layer.", fix="e.g. --history-attention 36")
        return []
