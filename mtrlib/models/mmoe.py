"""MMoE: N shared experts, one softmax gate per task mixing them into that task's tower input.

Ma, Zhao, Yi, Chen, Hong, Chi, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD 2018: f^k(x) = sum_i g^k(x)_i f_i(x), with
g^k(x) = softmax(W_gk x) and y_k = h^k(f^k(x)).

The E experts f_i are one `ExpertStack` (each layer one [E, d_in, d_out] tensor, one GEMM for
all experts) and the T gates W_gk one `StackedLinear` [T, d_in, E]: with x shared by all of
them, a single Linear(d_in, T * E) (issue 31: 2 + 1 kernels instead of 2E + T per step).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import knob
from .base import TASK_EMB, Architecture, Body, MultiTaskModel, require_experts
from .blocks import ExpertStack, StackedLinear, gates_of, load_legacy_experts
from .diagram import experts_and_gates, sizes

EXPERT_LAYERS = dict(noun="expert layer", widget="sizes", flag="--experts", url="experts",
                     help="one expert's MLP")  # also used by PLE


class MMoENet(MultiTaskModel):
    factorised_body = True  # x is read by InputLinear layers only (scoring: blocks.PairRows)

    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        self.input = self.make_input(desc, tables)
        d_in = self.input.out_dim
        self.experts = ExpertStack(o.n_experts, d_in, o.experts, cfg.dropout)
        self.gates = StackedLinear(len(tasks), d_in, o.n_experts)
        self.make_task_inputs(desc, tables)
        self.towers = self.make_towers([self.experts.out_dim] * len(tasks))

    def body(self, x):
        e = self.experts(x)  # [E, B, d]
        g = gates_of(self.gates(x))  # [T, B, E] -> [T, E, B]
        mixed = (g.unsqueeze(-1) * e.unsqueeze(0)).sum(1)  # [T, E, B, 1] * [1, E, B, d] -> [T, B, d]
        return Body(tower_inputs=list(mixed), shared=lambda: e.transpose(0, 1).flatten(1),
                    gates={n: g[t].t() for t, n in enumerate(self.task_names)})  # [B, E] each

    def _load_from_state_dict(self, state_dict, prefix, *args, **kw):
        """Run folders saved before issue 31: per-expert MLPs `experts.k` and per-task gates `gates.t`."""
        load_legacy_experts(self, state_dict, prefix, {
            "experts": [f"experts.{k}" for k in range(self.experts.n)],
            "gates": [f"gates.{t}" for t in range(len(self.tasks))]})
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)


class MMoE(Architecture):
    arch = "mmoe"
    label = "MMoE"
    paper = "Ma et al., KDD 2018"
    order = 30
    Model = MMoENet

    @dataclass
    class Options:
        n_experts: int = knob(4, "Experts", noun="number of experts", widget="slider", lo=1, hi=16,
                              flag="--n-experts", url="nexp", valid=lambda v: 1 <= v <= 64,
                              message="MMoE takes 1 to 64 experts (got {v}).", fix="e.g. 4",
                              help="experts every task's gate can mix")
        experts: list[int] = knob([64, 32], "Expert", **EXPERT_LAYERS)
        task_emb: int = knob(0, "Task-specific embeddings", **TASK_EMB)

    @classmethod
    def check(cls, opts, m):
        require_experts(opts.experts)
        return [f"{opts.n_experts} experts is many for this data; training will be slower."] if opts.n_experts > 16 else []

    @classmethod
    def summary(cls, opts, m):
        return f"MMoE {opts.n_experts}x{sizes(opts.experts)}"

    @classmethod
    def diagram_width(cls, opts, m, tasks):
        return max(len(tasks), opts.n_experts, 3)

    @classmethod
    def draw(cls, c, opts, m):
        experts_and_gates(c, [(f"E{k + 1}", "shared") for k in range(opts.n_experts)], f"experts {sizes(opts.experts)}")

    @classmethod
    def expert_names(cls, opts, tasks):
        return [f"expert {k + 1}" for k in range(opts.n_experts)]
