"""PEPNet: the input row and every task's hidden layers scaled by gates read from the user's side.

Chang, Zhang, Fu, Zang, Guan, Lu, Niu, Song, Gai, "PEPNet: Parameter and Embedding Personalized
Network for Infusing with Personalized Prior Information", KDD 2023. A gate unit is
U(v) = gamma * sigmoid(W_2 relu(W_1 v + b_1) + b_2), values in [0, gamma] (gamma = 2: the
identity, 1, sits mid-range). Here the personalised prior p is the user's side of the input row:
the user's id vector and features, the request's context and the user's history where the data has
them (x with the item's columns zeroed), p [B, d_in].

    EPNet:  delta_ep = U_ep(p)                          [B, d_in]
            x'       = delta_ep * x                     the personalised input row   [B, d_in]
    PPNet:  for task t and layer l of its MLP (sizes `shared`):
            delta_pp^{t,l} = U_pp^{t,l}(p (+) sg(x'))   [B, d_l] (sg: stop-gradient, as the paper)
            h_t^l = delta_pp^{t,l} * relu(W_t^l h_t^{l-1} + b_t^l),  h_t^0 = x'
    tower t reads h_t^L.

The paper's PPNet gates the towers' layers themselves; here the gated per-task MLP is the body and
the usual towers sit on top. The gates multiply the row by a per-user vector, so scoring cannot
factorise the first layer per user and per item: it reads the rows densely (factorised_body False).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..registry import knob
from .base import SHARED_MLP, Architecture, Body, MultiTaskModel
from .blocks import mlp_out_dim
from .diagram import sizes

GATE_HIDDEN = 64  # the gate units' hidden width


class GateUnit(nn.Module):
    """U(v) = gamma * sigmoid(W_2 relu(W_1 v)): v [B, d_in] -> [B, d_out], values in [0, gamma]."""

    def __init__(self, d_in: int, d_out: int, gamma: float):
        super().__init__()
        self.gamma = gamma
        self.net = nn.Sequential(nn.Linear(d_in, GATE_HIDDEN), nn.ReLU(), nn.Linear(GATE_HIDDEN, d_out))

    def forward(self, v):
        return self.gamma * torch.sigmoid(self.net(v))


def user_columns(inp) -> torch.Tensor:
    """[out_dim] 1.0 on the input row's user-side columns (user id vector, user features, context,
    history: blocks.InputLayer's order, the history block's columns last), 0.0 on the item's."""
    parts = [(inp.user.id.embedding_dim, 1.0), (inp.item_dim, 0.0), (inp.user.feature_dim, 1.0),
             (inp.item.feature_dim, 0.0), (inp.context_dim, 1.0)]
    widths = sum(w for w, _ in parts)
    parts.append((inp.out_dim - widths, 1.0))  # a history block's columns (the user's past)
    return torch.cat([torch.full((w,), v) for w, v in parts])


class PEPNetNet(MultiTaskModel):
    factorised_body = False  # the gates scale the row per user: scoring builds the rows densely

    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        self.input = self.make_input(desc, tables)
        d_in = self.input.out_dim
        self.register_buffer("user_mask", user_columns(self.input), persistent=False)
        self.ep_gate = GateUnit(d_in, d_in, o.gamma)
        widths = [d_in, *o.shared]
        self.layers = nn.ModuleList(nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:])) for _ in tasks)
        self.pp_gates = nn.ModuleList(nn.ModuleList(GateUnit(2 * d_in, b, o.gamma) for b in o.shared) for _ in tasks)
        self.towers = self.make_towers([mlp_out_dim(d_in, o.shared)] * len(tasks))

    def gate_values(self, x):
        """(delta_ep [B, d_in], per task the PPNet gates [B, d_l] per layer) and x' (EPNet's output)."""
        p = x * self.user_mask  # [B, d_in] the user's side of the row
        ep = self.ep_gate(p)
        xp = ep * x  # [B, d_in]
        prior = torch.cat([p, xp.detach()], -1)  # [B, 2 d_in]
        pp = [[g(prior) for g in gates] for gates in self.pp_gates]  # T x L x [B, d_l]
        return ep, pp, xp

    def body(self, x):
        _, pp, xp = self.gate_values(x)
        outs = []
        for layers, gates in zip(self.layers, pp):
            h = xp
            for lin, g in zip(layers, gates):
                h = g * torch.relu(self._drop(lin(h)))  # [B, d_l]
            outs.append(h)
        return Body(tower_inputs=outs, shared=xp)

    def _drop(self, h):
        return nn.functional.dropout(h, self.cfg.dropout, self.training) if self.cfg.dropout else h

    def expert_modules(self) -> dict[str, nn.Module]:
        return {}  # no experts (expert_names is empty)


class PEPNet(Architecture):
    arch = "pepnet"
    label = "PEPNet"
    paper = "Chang et al., KDD 2023"
    order = 49
    Model = PEPNetNet

    @dataclass
    class Options:
        shared: list[int] = knob([64, 32], "Per-task layers", help="each task's own MLP, its layers gated (PPNet)",
                                 **SHARED_MLP)
        gamma: float = knob(2.0, "Gate scale", noun="gate scale gamma", lo=1.0, hi=4.0, step=0.5, flag="--pep-gamma",
                            url="pgam", valid=lambda v: 0 < v <= 10,
                            message="PEPNet's gate scale must be above 0 and at most 10 (got {v}).", fix="2 (the paper)",
                            help="the gates' values lie in [0, gamma]; 2 puts the identity mid-range")

    @classmethod
    def summary(cls, opts, m):
        return f"PEPNet {sizes(opts.shared)}"

    @classmethod
    def draw(cls, c, opts, m):
        w = c.width
        c.box(w * 0.12, 0.85, w * 0.2, 0.35, "user side p", "extra")
        bottom, top = c.box(w / 2, 0.95, w * 0.45, 0.35, "EPNet: x * 2 sigmoid(U(p))", "gate")
        c.arrow(c.from_input(w / 2), bottom)
        T = len(c.tasks)
        for x in c.task_x:
            b, t = c.box(x, 1.75, w / T * 0.8, 0.6, f"MLP {sizes(opts.shared)}", "specific")
            c.arrow(top, b)
            c.arrow(t, c.to_tower(x))
        c.note(w / 2, 2.72, "PPNet: each task's layers scaled by gamma sigmoid(U(p, sg(x')))", 10)
