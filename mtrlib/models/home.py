"""HoME: shared, task-group and task experts, each task's gate masked to its own hierarchy.

Wang, Cao, Fu, Gai, Zhou, "HoME: Hierarchy of Multi-Gate Experts for Multi-Task Learning at
Kuaishou", arXiv 2408.05430 (2024). Three fixes of an MMoE / PLE system:

- expert normalisation & Swish (section 4.1): every expert layer is Linear -> Norm -> Swish, so the
  experts' outputs share one scale and few units sit at zero (no gate collapses onto one expert):
  knobs `home_norm` (default "batch") and `home_activation` (default "swish");
- the hierarchy mask (section 4.2): tasks form groups (the paper's behaviour categories); shared
  experts serve every task, a group's experts the tasks of that group, a task's experts that task;
- feature gate and self gate (section 4.3): `feature_gate`, `self_gate` (blocks.GatedExpert).

With tasks t in group g(t), s experts per task, c per group and h shared, for the input row x [B, d_in]:

    E_t = [e_t1(x), ..., e_ts(x)]        task t's experts                    s x [B, d]
    G_g = [c_g1(x), ..., c_gc(x)]        group g's experts                   c x [B, d]
    S   = [s_1(x), ..., s_h(x)]          shared experts                      h x [B, d]
    a_t = softmax(W_t x)                 task t's gate over its s + c + h experts   [B, s + c + h]
    f_t = a_t . [E_t; G_g(t); S]         task t's tower input                [B, d]

so no task's gate ever reads another group's or another task's experts. The paper stacks this under
a meta layer (each group's own mix of its and the shared experts, fed to the task layer); here the
mask is one extraction layer, PLE-style, and the groups are the user's (`task_groups`, e.g.
"click,like;dwell"; a task not named is a group of its own; empty: one group per task).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import DataError
from ..registry import knob
from .base import Architecture, Body, MultiTaskModel, require_experts
from .blocks import ACTIVATIONS, NORMS, InputLinear, expert, gate, mix, mlp_out_dim
from .diagram import experts_and_gates, sizes
from .mmoe import EXPERT_LAYERS, FEATURE_GATE, SELF_GATE
from .ple import SHARED_EXPERTS, SPECIFIC_EXPERTS


def task_groups(spec: str, tasks: list[str]) -> list[list[str]]:
    """The groups of `spec` ("a,b;c": groups by ';', tasks by ','), then each task not named as a
    group of its own, in the tasks' order. A name that is no task, or a task named twice, is refused."""
    groups, seen = [], set()
    for part in (spec or "").split(";"):
        names = [n.strip() for n in part.split(",") if n.strip()]
        for n in names:
            if n not in tasks:
                raise DataError(f"HoME's task groups name '{n}', which is not a ranking task.",
                                fix=f"use the tasks' names: {', '.join(tasks)}")
            if n in seen:
                raise DataError(f"HoME's task groups name '{n}' twice; a task belongs to one group.",
                                fix="e.g. click,like;dwell")
            seen.add(n)
        if names:
            groups.append(names)
    return groups + [[t] for t in tasks if t not in seen]


class HoMENet(MultiTaskModel):
    factorised_body = True  # x is read by InputLinear layers only (scoring: blocks.PairRows)

    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        self.groups = task_groups(o.task_groups, self.task_names)
        self.group_of = [next(g for g, names in enumerate(self.groups) if t in names) for t in self.task_names]
        self.input = self.make_input(desc, tables)
        d_in = self.input.out_dim
        kw = dict(norm=o.home_norm, activation=o.home_activation, feature_gate=o.feature_gate, self_gate=o.self_gate)

        def experts(k):
            return nn.ModuleList(expert(d_in, o.experts, cfg.dropout, **kw) for _ in range(k))

        self.task_experts = nn.ModuleList(experts(o.specific_experts) for _ in tasks)
        self.group_experts = nn.ModuleList(experts(o.group_experts) for _ in self.groups)
        self.shared = experts(o.shared_experts)
        n = o.specific_experts + o.group_experts + o.shared_experts
        self.gates = nn.ModuleList(InputLinear(d_in, n) for _ in tasks)
        self.factorised_body = not o.feature_gate  # the feature gate reads the row densely
        self.towers = self.make_towers([mlp_out_dim(d_in, o.experts)] * len(tasks))

    def body(self, x):
        shared = [ex(x) for ex in self.shared]  # h x [B, d]
        groups = [[ex(x) for ex in grp] for grp in self.group_experts]  # G x c x [B, d]
        outs, gates = [], {}
        for k, name in enumerate(self.task_names):
            pool = [ex(x) for ex in self.task_experts[k]] + groups[self.group_of[k]] + shared  # (s + c + h) x [B, d]
            g = gate(self.gates[k](x))  # [s + c + h, B]
            outs.append(mix(g, torch.stack(pool, 0)))  # [B, d]
            gates[name] = g.t()
        every = shared or [e for grp in groups for e in grp]
        return Body(tower_inputs=outs, shared=lambda: torch.stack(every, 0).mean(0), gates=gates)

    def expert_modules(self) -> dict[str, nn.Module]:
        """Every expert, keyed like `expert_names`."""
        mods = [ex for grp in self.task_experts for ex in grp] + [ex for grp in self.group_experts for ex in grp]
        return dict(zip(self.expert_names, mods + list(self.shared)))


class HoME(Architecture):
    arch = "home"
    label = "HoME"
    paper = "Wang et al., Kuaishou, arXiv 2408.05430 (2024)"
    order = 48
    Model = HoMENet

    @dataclass
    class Options:
        task_groups: str = knob("", "Task groups", noun="task groups", flag="--task-groups", url="tgroups", widget="text",
                                help="tasks that share a group's experts: groups by ';', tasks by ',' (e.g. "
                                     "'click,like;dwell'); a task not named is a group of its own")
        specific_experts: int = knob(1, "Experts per task", **SPECIFIC_EXPERTS)
        group_experts: int = knob(1, "Experts per task group", noun="experts per task group", lo=0, hi=8,
                                  flag="--group-experts", url="gexp", valid=lambda v: 0 <= v <= 64,
                                  message="HoME takes 0 to 64 experts per task group (got {v}).", fix="e.g. 1")
        shared_experts: int = knob(2, "Shared experts", **SHARED_EXPERTS)
        experts: list[int] = knob([64, 32], "Expert", **EXPERT_LAYERS)
        home_norm: str = knob("batch", "Expert normalisation (HoME)", noun="HoME's expert normalisation", choices=NORMS,
                              widget="select", flag="--home-norm", url="hnorm",
                              help="normalisation after each expert layer (the paper: batch norm)")
        home_activation: str = knob("swish", "Expert activation (HoME)", noun="HoME's expert activation",
                                    choices=ACTIVATIONS, widget="select", flag="--home-activation", url="hact",
                                    help="the experts' activation (the paper: Swish)")
        feature_gate: bool = knob(False, "Feature gate per expert", **FEATURE_GATE)
        self_gate: bool = knob(False, "Self gate per expert", **SELF_GATE)

    @classmethod
    def check(cls, opts, m):
        require_experts(opts.experts)
        if min(opts.specific_experts, opts.group_experts, opts.shared_experts) < 0 or \
                opts.specific_experts + opts.group_experts + opts.shared_experts < 1:
            raise DataError("HoME needs at least one expert per task (its own, its group's or shared).",
                            fix="e.g. 1 per task, 1 per group, 2 shared")
        return []

    @classmethod
    def summary(cls, opts, m):
        return f"HoME {opts.specific_experts}+{opts.group_experts}+{opts.shared_experts}x{sizes(opts.experts)}"

    @classmethod
    def diagram_width(cls, opts, m, tasks):
        return max(len(tasks), 3, len(cls._experts(opts, tasks)))

    @classmethod
    def _experts(cls, opts, tasks) -> list[tuple[str, str, list[str]]]:
        """(diagram label, colour, the tasks it serves) per expert, in `expert_names`' order (groups that
        name tasks this setup lacks are drawn as one group per task: the Train page's tasks may change)."""
        try:
            groups = task_groups(opts.task_groups, list(tasks))
        except DataError:
            groups = [[t] for t in tasks]
        out = [(f"{t[:6]}{k + 1}", "specific", [t]) for t in tasks for k in range(opts.specific_experts)]
        out += [(f"G{g + 1}.{k + 1}", "extra", grp) for g, grp in enumerate(groups) for k in range(opts.group_experts)]
        return out + [(f"S{k + 1}", "shared", list(tasks)) for k in range(opts.shared_experts)]

    @classmethod
    def draw(cls, c, opts, m):
        experts = cls._experts(opts, c.tasks)
        serves = {lab: tasks for lab, _, tasks in experts}
        norm = "" if opts.home_norm == "none" else f" · {opts.home_norm} norm"
        experts_and_gates(c, [(lab, col) for lab, col, _ in experts],
                          f"experts {sizes(opts.experts)}{norm} · {opts.home_activation}",
                          feeds=lambda t, lab: t in serves[lab])
        c.note(c.width / 2, 2.72, "task experts + its group's (G) + shared (S): the hierarchy mask", 10)

    @classmethod
    def expert_names(cls, opts, tasks):
        groups = task_groups(opts.task_groups, list(tasks))
        return ([f"{t} {k + 1}" for t in tasks for k in range(opts.specific_experts)]
                + [f"group {'+'.join(grp)} {k + 1}" for grp in groups for k in range(opts.group_experts)]
                + [f"shared {k + 1}" for k in range(opts.shared_experts)])

    @classmethod
    def gate_layout(cls, opts, tasks, task, gate):
        """Task t's gate covers (its s experts, its group's c, the h shared): place it on `expert_names`."""
        groups = task_groups(opts.task_groups, list(tasks))
        s, c, T = opts.specific_experts, opts.group_experts, len(tasks)
        t, g = tasks.index(task), next(k for k, grp in enumerate(groups) if task in grp)
        z = gate.new_zeros(gate.shape[0], T * s + len(groups) * c + opts.shared_experts)
        z[:, t * s:(t + 1) * s] = gate[:, :s]
        z[:, T * s + g * c:T * s + (g + 1) * c] = gate[:, s:s + c]
        z[:, T * s + len(groups) * c:] = gate[:, s + c:]
        return z
