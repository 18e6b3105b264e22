"""PLE / CGC: task-specific plus shared experts, gated per task, over 1..L extraction levels.

Tang, Liu, Zhao, Gong, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations", RecSys 2020. One level is CGC.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Body, MultiTaskModel
from .blocks import last_linear, mlp, mlp_out_dim


class _Level(nn.Module):
    """One extraction layer: experts per task + shared experts; gates per task (+ a shared gate)."""

    def __init__(self, d_in, n_tasks, cfg, last):
        super().__init__()
        s, h = cfg.specific_experts, cfg.shared_experts
        self.s, self.h, self.n_tasks, self.last = s, h, n_tasks, last
        self.specific = nn.ModuleList(
            nn.ModuleList(mlp(d_in, cfg.experts, cfg.dropout) for _ in range(s)) for _ in range(n_tasks))
        self.shared = nn.ModuleList(mlp(d_in, cfg.experts, cfg.dropout) for _ in range(h))
        self.task_gates = nn.ModuleList(nn.Linear(d_in, s + h) for _ in range(n_tasks))
        self.shared_gate = None if last else nn.Linear(d_in, n_tasks * s + h)
        self.out_dim = mlp_out_dim(d_in, cfg.experts)

    def forward(self, task_x: list[torch.Tensor], shared_x: torch.Tensor):
        shared_e = [ex(shared_x) for ex in self.shared]
        outs, gates, all_specific = [], [], []
        for t in range(self.n_tasks):
            spec = [ex(task_x[t]) for ex in self.specific[t]]
            all_specific += spec
            e = torch.stack(spec + shared_e, 1)  # [B, s+h, d]
            g = torch.softmax(self.task_gates[t](task_x[t]), -1)
            outs.append(torch.bmm(g.unsqueeze(1), e).squeeze(1))
            gates.append(g)
        if self.shared_gate is None:
            new_shared = torch.stack(shared_e, 1).mean(1) if shared_e else outs[0]
        else:
            e = torch.stack(all_specific + shared_e, 1)
            g = torch.softmax(self.shared_gate(shared_x), -1)
            new_shared = torch.bmm(g.unsqueeze(1), e).squeeze(1)
        return outs, new_shared, gates


class PLE(MultiTaskModel):
    arch = "ple"
    paper = "Tang et al., RecSys 2020"

    def __init__(self, cfg, desc, tables, tasks):
        super().__init__(cfg, desc, tables, tasks)
        self.input = self.make_input(desc, tables)
        d = self.input.out_dim
        levels = []
        for k in range(cfg.levels):
            lvl = _Level(d, len(tasks), cfg, last=k == cfg.levels - 1)
            levels.append(lvl)
            d = lvl.out_dim
        self.levels = nn.ModuleList(levels)
        self.towers = self.make_towers([d] * len(tasks))
        self.expert_names = [f"{t.name} {k + 1}" for t in tasks for k in range(cfg.specific_experts)]
        self.expert_names += [f"shared {k + 1}" for k in range(cfg.shared_experts)]

    def body(self, x):
        task_x, shared_x = [x] * len(self.tasks), x
        for lvl in self.levels:
            task_x, shared_x, gates = lvl(task_x, shared_x)
        # gate over (own specific experts + shared experts), laid out on the global expert list
        full = {}
        s, h, T = self.cfg.specific_experts, self.cfg.shared_experts, len(self.tasks)
        for t, (name, g) in enumerate(zip(self.task_names, gates)):
            z = g.new_zeros(g.shape[0], T * s + h)
            z[:, t * s:(t + 1) * s] = g[:, :s]
            z[:, T * s:] = g[:, s:]
            full[name] = z
        return Body(tower_inputs=task_x, shared=shared_x, gates=full)

    def shared_parameters(self):
        last = self.levels[-1]
        mods = list(last.shared) or [ex for group in last.specific for ex in group]
        return [p for m in mods for p in last_linear(m).parameters()]
