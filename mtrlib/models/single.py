"""Single-task baseline: one independent network per task (nothing shared, not even embeddings).

What multi-task learning must beat: if sharing does not help, this wins.
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Architecture, Body, MultiTaskModel, PerTaskMLP, input_of
from .blocks import InputLayer, mlp, mlp_out_dim
from .diagram import per_task_mlps, sizes


class SingleTaskNet(MultiTaskModel):
    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        self.inputs_ = nn.ModuleList(self.make_input(desc, tables) for _ in tasks)
        d_in = self.inputs_[0].out_dim
        self.bottoms = nn.ModuleList(mlp(d_in, o.shared, cfg.dropout) for _ in tasks)
        self.towers = self.make_towers([mlp_out_dim(d_in, o.shared)] * len(tasks))

    def input_layers(self) -> list[InputLayer]:
        return list(self.inputs_)

    def input_row(self, user, item, history=None, context=None):
        # each task sees its own embeddings (and history block, and context): stack along a new leading axis
        return torch.stack([input_of(inp, user, item, history, context) for inp in self.inputs_], 0)  # [T, B, d_in]

    def split_input(self):
        return None  # one input row per task, stacked: not one row to split

    def body(self, x):
        return Body(tower_inputs=[bot(x[k]) for k, bot in enumerate(self.bottoms)])  # T x [B, shared[-1]]

    def inspect(self, user, item, history=None, context=None):
        out = super().inspect(user, item, history, context)
        out["input"] = out["input"][0]
        return out


class SingleTask(Architecture):
    arch = "single"
    label = "Single-task"
    paper = "independent per-task networks (the no-sharing baseline)"
    order = 10
    Model = SingleTaskNet
    Options = PerTaskMLP

    @classmethod
    def draw(cls, c, opts, m):
        per_task_mlps(c, f"own {sizes(opts.shared)}")
