"""MMoE: N shared experts, one softmax gate per task mixing them into that task's tower input.

Ma, Zhao, Yi, Chen, Hong, Chi, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts", KDD 2018: f^k(x) = sum_i g^k(x)_i f_i(x), with
g^k(x) = softmax(W_gk x) and y_k = h^k(f^k(x)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..registry import knob
from .base import TASK_EMB, Architecture, Body, MultiTaskModel, require_experts
from .blocks import ACTIVATIONS, NORMS, InputLinear, expert, gate, mix, mlp_out_dim
from .diagram import experts_and_gates, sizes

EXPERT_LAYERS = dict(noun="expert layer", widget="sizes", flag="--experts", url="experts",
                     help="one expert's MLP")  # also used by PLE

# HoME's fixes for an expert (Wang et al., arXiv 2408.05430, sections 4.1 and 4.3), knobs of MMoE, PLE
# and STEM (one config field, flag and URL key each); default off, so the experts stay as they were
EXPERT_NORM = dict(noun="expert normalisation", choices=NORMS, widget="select", flag="--expert-norm", url="enorm",
                   help="normalise each expert layer before its activation (HoME: batch norm, so that the experts' "
                        "outputs share one scale and no gate collapses onto one)")
EXPERT_ACTIVATION = dict(noun="expert activation", choices=ACTIVATIONS, widget="select", flag="--expert-activation",
                         url="eact", help="the experts' activation; HoME uses Swish so that fewer units stay at zero")
FEATURE_GATE = dict(noun="feature gate", widget="toggle", flag="--feature-gate", flag_sets=True, url="fgate",
                    help="each expert reads its own view of the input, 2 sigmoid(W x) * x (HoME's feature gate); "
                         "scoring then reads the rows densely")
SELF_GATE = dict(noun="self gate", widget="toggle", flag="--self-gate", flag_sets=True, url="sgate",
                 help="a gated residual on each expert's output, e + sigmoid(W e) * e (after HoME's self gate)")


def expert_options(o) -> dict:
    """The HoME knobs of an architecture's options, as `blocks.expert`'s keywords."""
    return dict(norm=o.expert_norm, activation=o.expert_activation, feature_gate=o.feature_gate, self_gate=o.self_gate)


class MMoENet(MultiTaskModel):
    factorised_body = True  # x is read by InputLinear layers only (scoring: blocks.PairRows)

    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        self.input = self.make_input(desc, tables)
        d_in = self.input.out_dim
        self.experts = nn.ModuleList(expert(d_in, o.experts, cfg.dropout, **expert_options(o)) for _ in range(o.n_experts))
        self.factorised_body = not o.feature_gate  # the feature gate reads the row densely
        self.gates = nn.ModuleList(InputLinear(d_in, o.n_experts) for _ in tasks)
        d = mlp_out_dim(d_in, o.experts)
        self.make_task_inputs(desc, tables)
        self.towers = self.make_towers([d] * len(tasks))

    def body(self, x):
        e = torch.stack([ex(x) for ex in self.experts], 0)  # [E, B, d]
        gates = [gate(g(x)) for g in self.gates]  # T x [E, B]
        return Body(tower_inputs=[mix(g, e) for g in gates], shared=lambda: e.transpose(0, 1).flatten(1),
                    gates={n: g.t() for n, g in zip(self.task_names, gates)})

    def expert_modules(self) -> dict[str, nn.Module]:
        """Each expert's MLP (its output is the expert's), by `expert_names` (expert-health telemetry)."""
        return dict(zip(self.expert_names, self.experts))


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
        expert_norm: str = knob("none", "Expert normalisation", **EXPERT_NORM)
        expert_activation: str = knob("relu", "Expert activation", **EXPERT_ACTIVATION)
        feature_gate: bool = knob(False, "Feature gate per expert", **FEATURE_GATE)
        self_gate: bool = knob(False, "Self gate per expert", **SELF_GATE)

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
