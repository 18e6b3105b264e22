"""MMoE: N shared experts, one softmax gate per task mixing them into that task's tower input.

Ma, Zhao, Yi, Chen, Hong, Chi, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD 2018: f^k(x) = sum_i g^k(x)_i f_i(x), with
g^k(x) = softmax(W_gk x) and y_k = h^k(f^k(x)).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Body, MultiTaskModel
from .blocks import gate, last_linear, mix, mlp, mlp_out_dim


class MMoE(MultiTaskModel):
    arch = "mmoe"
    paper = "Ma et al., KDD 2018"

    def __init__(self, cfg, desc, tables, tasks):
        super().__init__(cfg, desc, tables, tasks)
        self.input = self.make_input(desc, tables)
        d_in = self.input.out_dim
        self.experts = nn.ModuleList(mlp(d_in, cfg.experts, cfg.dropout) for _ in range(cfg.n_experts))
        self.gates = nn.ModuleList(nn.Linear(d_in, cfg.n_experts) for _ in tasks)
        d = mlp_out_dim(d_in, cfg.experts)
        self.towers = self.make_towers([d] * len(tasks))
        self.expert_names = [f"expert {k + 1}" for k in range(cfg.n_experts)]

    def body(self, x):
        e = torch.stack([ex(x) for ex in self.experts], 0)  # [E, B, d]
        gates = [gate(g(x)) for g in self.gates]  # T x [E, B]
        return Body(tower_inputs=[mix(g, e) for g in gates], shared=lambda: e.transpose(0, 1).flatten(1),
                    gates={n: g.t() for n, g in zip(self.task_names, gates)})

    def shared_parameters(self):
        return [p for ex in self.experts for p in last_linear(ex).parameters()]
