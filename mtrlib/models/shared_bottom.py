"""Shared-Bottom: one MLP shared by all tasks, then one tower per task.

Caruana, "Multitask Learning", Machine Learning 28, 1997 (hard parameter sharing):
h = f(x), y_k = tower_k(h) for every task k.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..registry import knob
from .base import SHARED_MLP, TASK_EMB, Architecture, Body, MultiTaskModel
from .blocks import mlp, mlp_out_dim
from .diagram import sizes


class SharedBottomNet(MultiTaskModel):
    factorised_body = True  # x is read by InputLinear layers only (scoring: blocks.PairRows)

    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        self.input = self.make_input(desc, tables)
        self.bottom = mlp(self.input.out_dim, o.shared, cfg.dropout)
        d = mlp_out_dim(self.input.out_dim, o.shared)
        self.make_task_inputs(desc, tables)
        self.towers = self.make_towers([d] * len(tasks))

    def body(self, x):
        h = self.bottom(x)  # [B, shared[-1]]
        return Body(tower_inputs=[h] * len(self.tasks), shared=h)


class SharedBottom(Architecture):
    arch = "shared-bottom"
    label = "Shared-Bottom"
    paper = "Caruana, Multitask Learning, Machine Learning 1997"
    order = 20
    Model = SharedBottomNet

    @dataclass
    class Options:
        shared: list[int] = knob([64, 32], "Shared layers", help="the MLP every task shares", **SHARED_MLP)
        task_emb: int = knob(0, "Task-specific embeddings", **TASK_EMB)

    @classmethod
    def draw(cls, c, opts, m):
        bottom, top = c.box(c.width / 2, 1.4, c.width * 0.7, 0.6, f"shared MLP {sizes(opts.shared)}")
        c.arrow(c.from_input(c.width / 2), bottom)
        for x in c.task_x:
            c.arrow(top, c.to_tower(x))
