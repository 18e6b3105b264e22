"""PLE / CGC: task-specific plus shared experts, gated per task, over 1..L extraction levels.

Tang, Liu, Zhao, Gong, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations", RecSys 2020. One level is CGC (section 4.2):
task k's gate mixes its own specific experts and the shared experts. With L > 1 levels
(section 4.3) each level also has a shared gate over *all* experts, whose output feeds the
next level's shared experts, while task k's experts and gate read task k's output of the
level below; the last level has no shared gate.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DataError
from ..registry import knob
from .base import TASK_EMB, Architecture, Body, MultiTaskModel, require_experts
from .blocks import InputLinear, expert, gate, mix, mlp_out_dim
from .diagram import (experts_and_gates, sizes, specific_and_shared, specific_and_shared_names,
                      specific_and_shared_width)
from .mmoe import EXPERT_ACTIVATION, EXPERT_LAYERS, EXPERT_NORM, FEATURE_GATE, SELF_GATE, expert_options

_AT_MOST_64 = dict(valid=lambda v: v <= 64, fix="e.g. 1 specific, 2 shared",
                   message="PLE and STEM take at most 64 task-specific and 64 shared experts (got {specific_experts} and "
                           "{shared_experts}).")


# also STEM's (mtrlib.models.stem): one flag sets both
SPECIFIC_EXPERTS = dict(noun="task-specific experts", lo=0, hi=8, flag="--specific-experts", url="spec", **_AT_MOST_64)
SHARED_EXPERTS = dict(noun="shared experts", lo=0, hi=8, flag="--shared-experts", url="shexp", **_AT_MOST_64)
# also AdaTT's (mtrlib.models.adatt): one flag sets both
LEVELS = dict(noun="extraction levels", lo=1, hi=4, flag="--levels", url="levels",
              help="1 level = CGC; more levels = PLE (AdaTT: fusion levels)", valid=lambda v: 1 <= v <= 4,
              message="PLE and AdaTT take 1 to 4 extraction levels (got {v}).", fix="1 (CGC) or 2")


class _Level(nn.Module):
    """One extraction layer: experts per task + shared experts; gates per task (+ a shared gate)."""

    def __init__(self, d_in, n_tasks, opts, dropout, last):
        super().__init__()
        s, h = opts.specific_experts, opts.shared_experts
        self.s, self.h, self.n_tasks, self.last = s, h, n_tasks, last
        kw = expert_options(opts)
        self.specific = nn.ModuleList(
            nn.ModuleList(expert(d_in, opts.experts, dropout, **kw) for _ in range(s)) for _ in range(n_tasks))
        self.shared = nn.ModuleList(expert(d_in, opts.experts, dropout, **kw) for _ in range(h))
        self.task_gates = nn.ModuleList(InputLinear(d_in, s + h) for _ in range(n_tasks))
        self.shared_gate = None if last else InputLinear(d_in, n_tasks * s + h)
        self.out_dim = mlp_out_dim(d_in, opts.experts)

    def forward(self, task_x: list[torch.Tensor], shared_x: torch.Tensor):
        shared_e = [ex(shared_x) for ex in self.shared]  # h x [B, d]
        outs, gates, all_specific = [], [], []
        for t in range(self.n_tasks):
            spec = [ex(task_x[t]) for ex in self.specific[t]]  # s x [B, d]
            all_specific += spec
            g = gate(self.task_gates[t](task_x[t]))  # [s+h, B]
            outs.append(mix(g, torch.stack(spec + shared_e, 0)))  # [B, d]
            gates.append(g.t())
        if self.shared_gate is not None:
            g = gate(self.shared_gate(shared_x))  # [T*s+h, B]
            new_shared = mix(g, torch.stack(all_specific + shared_e, 0))
        elif shared_e:  # last level: what the tasks share is the shared experts' output (for the dashboard)
            new_shared = lambda: torch.stack(shared_e, 0).mean(0)  # noqa: E731 (built only if asked for)
        else:
            new_shared = None
        return outs, new_shared, gates


class PLENet(MultiTaskModel):
    factorised_body = True  # x is read by InputLinear layers only (scoring: blocks.PairRows)

    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        self.input = self.make_input(desc, tables)
        d = self.input.out_dim
        levels = []
        for k in range(o.levels):
            lvl = _Level(d, len(tasks), o, cfg.dropout, last=k == o.levels - 1)
            levels.append(lvl)
            d = lvl.out_dim
        self.levels = nn.ModuleList(levels)
        self.factorised_body = not o.feature_gate  # the feature gate reads the row densely
        self.make_task_inputs(desc, tables)
        self.towers = self.make_towers([d] * len(tasks))

    def body(self, x):
        task_x, shared_x = [x] * len(self.tasks), x
        for lvl in self.levels:
            task_x, shared_x, gates = lvl(task_x, shared_x)
        return Body(tower_inputs=task_x, shared=shared_x, gates=dict(zip(self.task_names, gates)))

    def expert_modules(self) -> dict[str, nn.Module]:
        """The LAST level's experts (the ones its reported gates mix), by `expert_names`: each task's
        specific experts, then the shared ones (expert-health telemetry)."""
        last = self.levels[-1]
        return dict(zip(self.expert_names, [ex for group in last.specific for ex in group] + list(last.shared)))


class PLE(Architecture):
    arch = "ple"
    label = "PLE / CGC"
    paper = "Tang et al., RecSys 2020"
    order = 40
    Model = PLENet

    @dataclass
    class Options:
        specific_experts: int = knob(1, "Experts per task", **SPECIFIC_EXPERTS)
        shared_experts: int = knob(2, "Shared experts", **SHARED_EXPERTS)
        levels: int = knob(1, "Levels", **LEVELS)
        experts: list[int] = knob([64, 32], "Expert", **EXPERT_LAYERS)
        task_emb: int = knob(0, "Task-specific embeddings", **TASK_EMB)
        expert_norm: str = knob("none", "Expert normalisation", **EXPERT_NORM)
        expert_activation: str = knob("relu", "Expert activation", **EXPERT_ACTIVATION)
        feature_gate: bool = knob(False, "Feature gate per expert", **FEATURE_GATE)
        self_gate: bool = knob(False, "Self gate per expert", **SELF_GATE)

    @classmethod
    def check(cls, opts, m):
        require_experts(opts.experts)
        s, h = opts.specific_experts, opts.shared_experts
        if s < 0 or h < 0 or s + h < 1:
            raise DataError("PLE needs at least one expert per task (specific + shared).", fix="e.g. 1 specific, 2 shared")
        return []

    @classmethod
    def summary(cls, opts, m):
        return (f"PLE {opts.specific_experts}+{opts.shared_experts}x{sizes(opts.experts)}"
                + (f" L{opts.levels}" if opts.levels > 1 else ""))

    @classmethod
    def diagram_width(cls, opts, m, tasks):
        return specific_and_shared_width(opts, tasks)

    @classmethod
    def draw(cls, c, opts, m):
        experts = specific_and_shared(c, opts)
        caption = f"experts {sizes(opts.experts)}" + (f" · {opts.levels} levels" if opts.levels > 1 else "")
        experts_and_gates(c, experts, caption, feeds=lambda t, lab: lab.startswith("S") or lab.startswith(t[:6]))

    @classmethod
    def expert_names(cls, opts, tasks):
        """Gates are reported for the last level, laid out on this global expert list."""
        return specific_and_shared_names(opts, tasks)

    @classmethod
    def gate_layout(cls, opts, tasks, task, gate):
        """Task t's gate covers (its own s experts + the shared ones): place it on `expert_names`."""
        t, s, T = tasks.index(task), opts.specific_experts, len(tasks)
        z = gate.new_zeros(gate.shape[0], T * s + opts.shared_experts)
        z[:, t * s:(t + 1) * s] = gate[:, :s]
        z[:, T * s:] = gate[:, s:]
        return z
