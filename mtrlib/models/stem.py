"""STEM: shared plus task-specific embeddings, mixed by all-forward task-specific-backward gates.

Su, Guo, Tang, Zhang, Zhang, Li, Zhu, Tang, Zhang, "STEM: Unleashing the Power of Embeddings
for Multi-Task Recommendation", AAAI 2024 (arXiv 2308.13537). Models that share one embedding
table (Shared-Bottom, MMoE, PLE) put the tasks' conflict where no expert can separate it;
STEM gives every task its own embedding table next to a shared one:

- T + 1 input rows: x_0 from the shared embeddings, x_k from task k's own embeddings;
- task k's specific experts read x_k, the shared experts read x_0;
- task k's gate reads x_k + x_0 and mixes *every* expert (its own, the other tasks' and the
  shared ones), but the other tasks' specific experts enter it with their gradient stopped:
  "all forward, task-specific backward" (AFTB), so task k's loss trains its own embeddings
  and experts and the shared ones, never another task's.

One extraction layer (the paper's STEM-Net; the authors' code allows more). The expert knobs
(`specific_experts`, `shared_experts`, `experts`) are PLE's, so one flag sets both.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DataError
from ..registry import knob
from .base import Architecture, Body, MultiTaskModel, input_of, require_experts
from .blocks import InputLayer, expert, gate, mix, mlp_out_dim
from .diagram import (experts_and_gates, sizes, specific_and_shared, specific_and_shared_names,
                      specific_and_shared_width)
from .mmoe import EXPERT_ACTIVATION, EXPERT_LAYERS, EXPERT_NORM, FEATURE_GATE, SELF_GATE, expert_options
from .ple import SHARED_EXPERTS, SPECIFIC_EXPERTS


class STEMNet(MultiTaskModel):
    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        T, s, h = len(tasks), o.specific_experts, o.shared_experts
        # row 0: the shared embeddings; row 1 + k: task k's own
        self.inputs_ = nn.ModuleList(self.make_input(desc, tables) for _ in range(T + 1))
        d_in = self.inputs_[0].out_dim
        kw = expert_options(o)
        self.specific = nn.ModuleList(
            nn.ModuleList(expert(d_in, o.experts, cfg.dropout, **kw) for _ in range(s)) for _ in range(T))
        self.shared = nn.ModuleList(expert(d_in, o.experts, cfg.dropout, **kw) for _ in range(h))
        self.gates = nn.ModuleList(nn.Linear(d_in, T * s + h) for _ in range(T))
        self.towers = self.make_towers([mlp_out_dim(d_in, o.experts)] * T)

    def input_layers(self) -> list[InputLayer]:
        return list(self.inputs_)  # the shared one first: the page's item / user embeddings

    def shared_input_layer(self):
        return self.inputs_[0]  # the shared embeddings (row 0); the others are one task's own

    def input_row(self, user, item, history=None, context=None):
        # each row with its history block and its own context tables
        return torch.stack([input_of(inp, user, item, history, context) for inp in self.inputs_], 0)  # [T+1, B, d_in]

    def split_input(self):
        return None  # T + 1 input rows, stacked: scoring uses the plain forward pass

    def body(self, x):
        shared_x = x[0]
        spec = [[ex(x[1 + k]) for ex in group] for k, group in enumerate(self.specific)]  # T x s x [B, d]
        shared_e = [ex(shared_x) for ex in self.shared]  # h x [B, d]
        outs, gates = [], {}
        for k, name in enumerate(self.task_names):
            # AFTB: every expert forward; another task's experts without their gradient
            pool = [e if j == k else e.detach() for j, group in enumerate(spec) for e in group] + shared_e
            g = gate(self.gates[k](x[1 + k] + shared_x))  # [E, B]
            outs.append(mix(g, torch.stack(pool, 0)))
            gates[name] = g.t()
        shared = (lambda: torch.stack(shared_e, 0).mean(0)) if shared_e else None
        return Body(tower_inputs=outs, shared=shared, gates=gates)

    def inspect(self, user, item, history=None, context=None):
        out = super().inspect(user, item, history, context)
        out["input"] = out["input"][0]  # the shared embeddings' row
        return out

    def expert_modules(self) -> dict[str, nn.Module]:
        """Each task's specific experts, then the shared ones, by `expert_names` (expert-health telemetry)."""
        return dict(zip(self.expert_names, [ex for group in self.specific for ex in group] + list(self.shared)))


class STEM(Architecture):
    arch = "stem"
    label = "STEM"
    paper = "Su et al., AAAI 2024"
    order = 45
    Model = STEMNet

    @dataclass
    class Options:  # PLE's expert knobs (the same config fields, flags and URL keys)
        specific_experts: int = knob(1, "Experts per task", **SPECIFIC_EXPERTS)
        shared_experts: int = knob(2, "Shared experts", **SHARED_EXPERTS)
        experts: list[int] = knob([64, 32], "Expert", **EXPERT_LAYERS)
        expert_norm: str = knob("none", "Expert normalisation", **EXPERT_NORM)
        expert_activation: str = knob("relu", "Expert activation", **EXPERT_ACTIVATION)
        feature_gate: bool = knob(False, "Feature gate per expert", **FEATURE_GATE)
        self_gate: bool = knob(False, "Self gate per expert", **SELF_GATE)

    @classmethod
    def check(cls, opts, m):
        require_experts(opts.experts)
        if opts.specific_experts < 1 or opts.shared_experts < 0:
            raise DataError("STEM needs at least one task-specific expert per task (its own embeddings feed it).",
                            fix="e.g. 1 specific, 2 shared")
        return []

    @classmethod
    def summary(cls, opts, m):
        return f"STEM {opts.specific_experts}+{opts.shared_experts}x{sizes(opts.experts)}"

    @classmethod
    def diagram_width(cls, opts, m, tasks):
        return specific_and_shared_width(opts, tasks)

    @classmethod
    def draw(cls, c, opts, m):
        experts = specific_and_shared(c, opts)
        experts_and_gates(c, experts, f"experts {sizes(opts.experts)}")
        c.note(c.width / 2, 0.62, "shared + one embedding table per task", 10)
        c.note(c.width / 2, 2.72, "each gate mixes every expert; other tasks' experts: forward only (stop-gradient)", 10)

    @classmethod
    def expert_names(cls, opts, tasks):
        return specific_and_shared_names(opts, tasks)  # every gate mixes all of them
