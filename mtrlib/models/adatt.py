"""AdaTT: task-specific and shared experts per fusion level, fused per task by a gate over every
expert plus a residual of the task's own experts.

Li, Lei, Wang, Sun, Liu, Wang, Bertrand, Tang, "AdaTT: Adaptive Task-to-Task Fusion Network for
Multitask Learning in Recommendations", KDD 2023. At fusion level l, with T tasks, s experts per
task and h shared experts (n = T s + h):

    E_k^l = [e_k1(x_k^l), ..., e_ks(x_k^l)]              task k's experts, reading task k's input
    E^l   = [E_1^l; ...; E_T^l; S^l(x_sh^l)]             every expert: [n, B, d]
    g_k^l = softmax(W_k^l x_k^l)                         task k's gate over all n experts: [B, n]
    x_k^{l+1} = sum_j g_kj^l E_j^l + sum_i v_ki^l E_ki^l  adaptive fusion + linear residual of its own
                                                          experts (v_k = 1 when s = 1)

and the shared unit likewise (its own gate over all experts and the residual of the shared experts),
except at the last level. The towers read x_k^{L+1}. Level 1 reads the input row x for every k.

What the dashboard shows: the task-to-task fusion weights of the last level, F[k, j] = the mean
over the batch of the gate weight task k puts on task j's experts (sum over j's s experts), and
F[k, shared]. Each row of [F | shared] sums to 1; without shared experts F's rows sum to 1.
`Body.gates[k]` is [B, n] over the experts; `gate_layout` sums it per task (the heat-map's
columns are the tasks and "shared": `expert_names`); `fusion_matrix(x)` gives F [T, T].
"""
from __future__ import annotations

from dataclasses import dataclass
from math import sqrt

import torch
from torch import nn

from ..errors import DataError
from ..registry import knob
from .base import Architecture, Body, MultiTaskModel, require_experts
from .blocks import InputLinear, gate, mix, mlp, mlp_out_dim
from .diagram import experts_and_gates, sizes, specific_and_shared, specific_and_shared_width
from .mmoe import EXPERT_LAYERS
from .ple import LEVELS, SHARED_EXPERTS, SPECIFIC_EXPERTS


class ExpertGroup(nn.Module):
    """k experts reading one input: x [B, d_in] -> [k, B, d] (a task's experts, or the shared ones)."""

    def __init__(self, d_in: int, k: int, layers: list[int], dropout: float):
        super().__init__()
        self.experts = nn.ModuleList(mlp(d_in, layers, dropout) for _ in range(k))

    def forward(self, x):
        return torch.stack([ex(x) for ex in self.experts], 0)


class _NativeResidual(nn.Module):
    """sum_i v_i E_i over a unit's own k experts: [k, B, d] -> [B, d]; v = 1 for one expert (the
    paper's identity residual), else learned, initialised uniform in +-1/sqrt(k)."""

    def __init__(self, k: int):
        super().__init__()
        self.v = nn.Parameter(torch.empty(k).uniform_(-1 / sqrt(k), 1 / sqrt(k))) if k > 1 else None

    def forward(self, own):
        return own[0] if self.v is None else (self.v[:, None, None] * own).sum(0)


class _FusionLevel(nn.Module):
    def __init__(self, d_in: int, n_tasks: int, opts, dropout: float, last: bool):
        super().__init__()
        s, h = opts.specific_experts, opts.shared_experts
        n = n_tasks * s + h
        self.task_experts = nn.ModuleList(ExpertGroup(d_in, s, opts.experts, dropout) for _ in range(n_tasks))
        self.shared_experts = ExpertGroup(d_in, h, opts.experts, dropout) if h else None
        self.task_gates = nn.ModuleList(InputLinear(d_in, n) for _ in range(n_tasks))
        self.task_residual = nn.ModuleList(_NativeResidual(s) for _ in range(n_tasks))
        self.shared_gate = InputLinear(d_in, n) if h and not last else None
        self.shared_residual = _NativeResidual(h) if h and not last else None
        self.out_dim = mlp_out_dim(d_in, opts.experts)

    def forward(self, task_x: list, shared_x):
        own = [grp(x) for grp, x in zip(self.task_experts, task_x)]  # T x [s, B, d]
        shared = self.shared_experts(shared_x) if self.shared_experts is not None else None  # [h, B, d]
        e = torch.cat(own + ([shared] if shared is not None else []), 0)  # [n, B, d]
        outs, gates = [], []
        for k, (g_k, res) in enumerate(zip(self.task_gates, self.task_residual)):
            g = gate(g_k(task_x[k]))  # [n, B]
            outs.append(mix(g, e) + res(own[k]))  # [B, d]
            gates.append(g.t())  # [B, n]
        if self.shared_gate is not None:
            new_shared = mix(gate(self.shared_gate(shared_x)), e) + self.shared_residual(shared)  # [B, d]
        else:  # last level (or no shared experts): what the tasks share, for the dashboard only
            new_shared = lambda: (shared if shared is not None else e).mean(0)  # noqa: E731
        return outs, new_shared, gates


class AdaTTNet(MultiTaskModel):
    factorised_body = True  # x is read by InputLinear layers only (scoring: blocks.PairRows)

    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        self.input = self.make_input(desc, tables)
        d = self.input.out_dim
        levels = []
        for k in range(o.levels):
            lvl = _FusionLevel(d, len(tasks), o, cfg.dropout, last=k == o.levels - 1)
            levels.append(lvl)
            d = lvl.out_dim
        self.levels = nn.ModuleList(levels)
        self.towers = self.make_towers([d] * len(tasks))

    def body(self, x):
        task_x, shared_x = [x] * len(self.tasks), x
        for lvl in self.levels:
            task_x, shared_x, gates = lvl(task_x, shared_x)
        return Body(tower_inputs=task_x, shared=shared_x, gates=dict(zip(self.task_names, gates)))

    @torch.no_grad()
    def fusion_matrix(self, x) -> torch.Tensor:
        """F [T, T]: F[k, j] = the mean gate weight task k's last-level gate puts on task j's experts
        (x: input rows, `input_row`'s). Rows sum to 1 less the weight on the shared experts."""
        gates = self.body(x).gates
        per_task = [AdaTT.gate_layout(self.options, self.task_names, t, gates[t]).mean(0) for t in self.task_names]
        return torch.stack(per_task, 0)[:, :len(self.task_names)]

    def expert_modules(self) -> dict[str, nn.Module]:
        """The last level's expert groups, keyed like `expert_names` (each returns [k, B, d])."""
        last = self.levels[-1]
        out = dict(zip(self.task_names, last.task_experts))
        if last.shared_experts is not None:
            out["shared"] = last.shared_experts
        return out


class AdaTT(Architecture):
    arch = "adatt"
    label = "AdaTT"
    paper = "Li et al., KDD 2023"
    order = 47
    Model = AdaTTNet

    @dataclass
    class Options:  # PLE's expert and level knobs (the same config fields, flags and URL keys)
        specific_experts: int = knob(1, "Experts per task", **SPECIFIC_EXPERTS)
        shared_experts: int = knob(2, "Shared experts", **SHARED_EXPERTS)
        levels: int = knob(1, "Levels", **LEVELS)
        experts: list[int] = knob([64, 32], "Expert", **EXPERT_LAYERS)

    @classmethod
    def check(cls, opts, m):
        require_experts(opts.experts)
        if opts.specific_experts < 1 or opts.shared_experts < 0:
            raise DataError("AdaTT needs at least one task-specific expert per task (its residual reads them).",
                            fix="e.g. 1 specific, 2 shared (0 shared: AdaTT-sp)")
        return []

    @classmethod
    def summary(cls, opts, m):
        return (f"AdaTT {opts.specific_experts}+{opts.shared_experts}x{sizes(opts.experts)}"
                + (f" L{opts.levels}" if opts.levels > 1 else ""))

    @classmethod
    def diagram_width(cls, opts, m, tasks):
        return specific_and_shared_width(opts, tasks)

    @classmethod
    def draw(cls, c, opts, m):
        caption = f"experts {sizes(opts.experts)}" + (f" · {opts.levels} fusion levels" if opts.levels > 1 else "")
        experts_and_gates(c, specific_and_shared(c, opts), caption)
        c.note(c.width / 2, 2.72, "each gate fuses every task's experts, + a residual of the task's own", 10)

    @classmethod
    def expert_names(cls, opts, tasks):
        """The heat-map's columns: each task's experts as one, then the shared ones (the T x T fusion)."""
        return list(tasks) + (["shared"] if opts.shared_experts else [])

    @classmethod
    def gate_layout(cls, opts, tasks, task, gate):
        """A gate [B, T s + h] summed per task (and over the shared experts): [B, T (+ 1)]."""
        s, T = opts.specific_experts, len(tasks)
        per_task = gate[:, :T * s].reshape(gate.shape[0], T, s).sum(-1)
        return torch.cat([per_task, gate[:, T * s:].sum(-1, keepdim=True)], -1) if opts.shared_experts else per_task
