"""Shared-Bottom: one MLP shared by all tasks, then one tower per task.

Caruana, "Multitask Learning", Machine Learning 28, 1997 (hard parameter sharing).
"""
from __future__ import annotations

from .base import Body, MultiTaskModel
from .blocks import last_linear, mlp, mlp_out_dim


class SharedBottom(MultiTaskModel):
    arch = "shared-bottom"
    paper = "Caruana, Multitask Learning, Machine Learning 1997"

    def __init__(self, cfg, desc, tables, tasks):
        super().__init__(cfg, desc, tables, tasks)
        self.input = self.make_input(desc, tables)
        self.bottom = mlp(self.input.out_dim, cfg.shared, cfg.dropout)
        d = mlp_out_dim(self.input.out_dim, cfg.shared)
        self.towers = self.make_towers([d] * len(tasks))

    def body(self, x):
        h = self.bottom(x)
        return Body(tower_inputs=[h] * len(self.tasks), shared=h)

    def shared_parameters(self):
        return list(last_linear(self.bottom).parameters())
