"""PLE / CGC: task-specific plus shared experts, gated per task, over 1..L extraction levels.

Tang, Liu, Zhao, Gong, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations", RecSys 2020. One level is CGC (section 4.2):
task k's gate mixes its own specific experts and the shared experts. With L > 1 levels
(section 4.3) each level also has a shared gate over *all* experts, whose output feeds the
next level's shared experts, while task k's experts and gate read task k's output of the
level below; the last level has no shared gate.

Batched (issue 31): a level's T*s specific experts (task-major) are one `ExpertStack` (one
[T*s, d_in, d_out] tensor per layer), its h shared experts another, its T task gates one
`StackedLinear`; at the first level every expert and gate reads x, so each is one GEMM. Specific
and shared stay apart so that a tensor is either shared by the tasks or one task's rows
(mtrlib.train.gradients finds the shared parameters by which task gradients reach them).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DataError
from ..registry import knob
from .base import TASK_EMB, Architecture, Body, MultiTaskModel, require_experts
from .blocks import ExpertStack, InputLinear, StackedLinear, gate, gates_of, load_legacy_experts, mix
from .diagram import (experts_and_gates, sizes, specific_and_shared, specific_and_shared_names,
                      specific_and_shared_width)
from .mmoe import EXPERT_LAYERS

_AT_MOST_64 = dict(valid=lambda v: v <= 64, fix="e.g. 1 specific, 2 shared",
                   message="PLE and STEM take at most 64 task-specific and 64 shared experts (got {specific_experts} and "
                           "{shared_experts}).")


# also STEM's (mtrlib.models.stem): one flag sets both
SPECIFIC_EXPERTS = dict(noun="task-specific experts", lo=0, hi=8, flag="--specific-experts", url="spec", **_AT_MOST_64)
SHARED_EXPERTS = dict(noun="shared experts", lo=0, hi=8, flag="--shared-experts", url="shexp", **_AT_MOST_64)


class _Level(nn.Module):
    """One extraction layer: experts per task + shared experts; gates per task (+ a shared gate).

    Expert order (gates, `expert_names`): task t's specific experts at t*s .. t*s + s - 1 (rows of
    `specific`), then the h shared ones (rows of `shared`)."""

    def __init__(self, d_in, n_tasks, opts, dropout, last):
        super().__init__()
        s, h, T = opts.specific_experts, opts.shared_experts, n_tasks
        self.s, self.h, self.n_tasks, self.last = s, h, T, last
        self.specific = ExpertStack(T * s, d_in, opts.experts, dropout) if s else None
        self.shared = ExpertStack(h, d_in, opts.experts, dropout) if h else None
        self.task_gates = StackedLinear(T, d_in, s + h)
        self.shared_gate = None if last else InputLinear(d_in, T * s + h)
        self.out_dim = (self.specific or self.shared).out_dim
        # task t's gate mixes experts pool[t]: its own specific experts, then the shared ones
        pool = [[t * s + k for k in range(s)] + [T * s + j for j in range(h)] for t in range(T)]
        self.register_buffer("pool", torch.tensor(pool, dtype=torch.long).reshape(T, s + h), persistent=False)

    def legacy_layout(self, at: str) -> dict[str, list[str]]:
        """This level's stacked tensors <- the per-expert / per-gate modules saved before issue 31."""
        T, s, h = self.n_tasks, self.s, self.h
        out = {f"{at}.task_gates": [f"{at}.task_gates.{t}" for t in range(T)]}
        if s:
            out[f"{at}.specific"] = [f"{at}.specific.{t}.{k}" for t in range(T) for k in range(s)]
        if h:
            out[f"{at}.shared"] = [f"{at}.shared.{j}" for j in range(h)]
        return out

    def forward(self, task_x, shared_x):
        """task_x: [B, d] (every task reads the same row: the first level) or [T, B, d]; shared_x [B, d]."""
        T, s, h = self.n_tasks, self.s, self.h
        first = not (isinstance(task_x, torch.Tensor) and task_x.dim() == 3)
        parts = []
        if s:  # the first level: one row for every expert; then task t's experts read task t's row
            parts.append(self.specific(task_x if first else task_x.repeat_interleave(s, 0)))  # [T*s, B, d]
        if h:
            parts.append(self.shared(shared_x))  # [h, B, d]
        e = torch.cat(parts, 0) if len(parts) > 1 else parts[0]  # [T*s+h, B, d]
        g = gates_of(self.task_gates(task_x))  # [T, s+h, B]
        outs = (g.unsqueeze(-1) * e[self.pool]).sum(1)  # [T, s+h, B, 1] * [T, s+h, B, d] -> [T, B, d]
        if self.shared_gate is not None:
            new_shared = mix(gate(self.shared_gate(shared_x)), e)  # [T*s+h, B] x [T*s+h, B, d] -> [B, d]
        elif h:  # last level: what the tasks share is the shared experts' output (for the dashboard)
            new_shared = lambda: e[T * s:].mean(0)  # noqa: E731 (built only if asked for)
        else:
            new_shared = None
        return outs, new_shared, [g[t].t() for t in range(T)]  # gates: T x [B, s+h]


class PLENet(MultiTaskModel):
    factorised_body = True  # x is read by StackedLinear / InputLinear layers only (scoring: blocks.PairRows)

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
        self.make_task_inputs(desc, tables)
        self.towers = self.make_towers([d] * len(tasks))

    def body(self, x):
        task_x, shared_x = x, x  # [B, d] or PairRows: the first level's experts all read x
        for lvl in self.levels:
            task_x, shared_x, gates = lvl(task_x, shared_x)
        return Body(tower_inputs=list(task_x), shared=shared_x, gates=dict(zip(self.task_names, gates)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kw):
        """Run folders saved before issue 31: per-expert MLPs and per-task gates in each level."""
        for k, lvl in enumerate(self.levels):
            load_legacy_experts(self, state_dict, prefix, lvl.legacy_layout(f"levels.{k}"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)


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
        levels: int = knob(1, "Levels", noun="extraction levels", lo=1, hi=4, flag="--levels", url="levels",
                           help="1 level = CGC; more levels = PLE", valid=lambda v: 1 <= v <= 4,
                           message="PLE takes 1 to 4 extraction levels (got {v}).", fix="1 (CGC) or 2")
        experts: list[int] = knob([64, 32], "Expert", **EXPERT_LAYERS)
        task_emb: int = knob(0, "Task-specific embeddings", **TASK_EMB)

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
