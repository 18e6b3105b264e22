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

One extraction layer (the paper's STEM-Net; the authors' code allows more). Batched (issue 31):
the T*s specific experts (task-major) are one `ExpertStack` reading a [T*s, B, d_in] stack of rows
(one `torch.baddbmm` per layer), the h shared ones another reading x_0 (one GEMM), the T gates
one `StackedLinear`. The expert knobs
(`specific_experts`, `shared_experts`, `experts`) are PLE's, so one flag sets both.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DataError
from ..registry import knob
from .base import Architecture, Body, MultiTaskModel, require_experts
from .blocks import ExpertStack, InputLayer, StackedLinear, gates_of, load_legacy_experts
from .diagram import (experts_and_gates, sizes, specific_and_shared, specific_and_shared_names,
                      specific_and_shared_width)
from .mmoe import EXPERT_LAYERS
from .ple import SHARED_EXPERTS, SPECIFIC_EXPERTS


class STEMNet(MultiTaskModel):
    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        T, s, h = len(tasks), o.specific_experts, o.shared_experts
        # row 0: the shared embeddings; row 1 + k: task k's own
        self.inputs_ = nn.ModuleList(self.make_input(desc, tables) for _ in range(T + 1))
        d_in = self.inputs_[0].out_dim
        self.specific = ExpertStack(T * s, d_in, o.experts, cfg.dropout)  # row t*s + k: task t's k-th
        self.shared = ExpertStack(h, d_in, o.experts, cfg.dropout) if h else None
        self.gates = StackedLinear(T, d_in, T * s + h)
        self.towers = self.make_towers([self.specific.out_dim] * T)
        # AFTB: task k's gate takes gradient through its own specific experts and the shared ones only
        own = torch.zeros(T, T * s + h, dtype=torch.bool)
        for k in range(T):
            own[k, k * s:(k + 1) * s] = True
        own[:, T * s:] = True
        self.register_buffer("own", own[:, :, None, None], persistent=False)  # [T, E, 1, 1]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kw):
        """Run folders saved before issue 31: per-expert MLPs `specific.t.k`, `shared.j`, gates `gates.t`."""
        T, s, h = len(self.tasks), self.options.specific_experts, self.options.shared_experts
        layout = {"specific": [f"specific.{t}.{k}" for t in range(T) for k in range(s)],
                  "gates": [f"gates.{t}" for t in range(T)]}
        if h:
            layout["shared"] = [f"shared.{j}" for j in range(h)]
        load_legacy_experts(self, state_dict, prefix, layout)
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    def input_layers(self) -> list[InputLayer]:
        return list(self.inputs_)  # the shared one first: the page's item / user embeddings

    def shared_input_layer(self):
        return self.inputs_[0]  # the shared embeddings (row 0); the others are one task's own

    def input_row(self, user, item, history=None):
        args = (user, item) if history is None else (user, item, history)  # (each row with its history block)
        return torch.stack([inp(*args) for inp in self.inputs_], 0)  # [T+1, B, d_in]

    def split_input(self):
        return None  # T + 1 input rows, stacked: scoring uses the plain forward pass

    def body(self, x):
        T, s, h = len(self.tasks), self.options.specific_experts, self.options.shared_experts
        shared_x = x[0]  # [B, d_in]
        e = self.specific(x[1:].repeat_interleave(s, 0))  # [T*s, B, d]: task t's experts read row 1 + t
        if h:
            e = torch.cat([e, self.shared(shared_x)], 0)  # [T*s+h, B, d]
        # AFTB: every expert forward; another task's experts without their gradient
        pool = torch.where(self.own, e.unsqueeze(0), e.detach().unsqueeze(0))  # [T, E, B, d]
        g = gates_of(self.gates(x[1:] + shared_x))  # [T, B, E] -> [T, E, B]
        outs = (g.unsqueeze(-1) * pool).sum(1)  # [T, B, d]
        shared = (lambda: e[T * s:].mean(0)) if h else None
        return Body(tower_inputs=list(outs), shared=shared,
                    gates={n: g[k].t() for k, n in enumerate(self.task_names)})  # [B, E] each

    def inspect(self, user, item, history=None):
        out = super().inspect(user, item, history)
        out["input"] = out["input"][0]  # the shared embeddings' row
        return out


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
