"""ESMM: pCTCVR = pCTR * pCVR, trained over the whole impression space.

Ma, Zhao, Huang, Wang, Hu, Zhu, Gai, "Entire Space Multi-Task Model: An Effective Approach
for Estimating Post-Click Conversion Rate", SIGIR 2018.

Tasks share only the embeddings; each has its own MLP. A binary task that is observed only
where a parent task is 1 (`liked=rating>=4|watched`) is a CVR: the model predicts
p(parent) * p(task | parent) for every impression and learns it from parent * label, so the
CVR tower never trains on the biased clicked-only sample. A whole-space binary task (no `|`)
that follows another binary task is treated the same way with the first binary task as its
parent (liked implies watched). The trainer knows none of this: the model overrides
`task_losses` and `predict`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Body, MultiTaskModel
from .blocks import last_linear, mlp, mlp_out_dim


class ESMM(MultiTaskModel):
    arch = "esmm"
    paper = "Ma et al., SIGIR 2018"

    def __init__(self, cfg, desc, tables, tasks):
        super().__init__(cfg, desc, tables, tasks)
        self.input = self.make_input(desc, tables)
        d_in = self.input.out_dim
        self.nets = nn.ModuleList(mlp(d_in, cfg.shared, cfg.dropout) for _ in tasks)
        self.towers = self.make_towers([mlp_out_dim(d_in, cfg.shared)] * len(tasks))
        names = self.task_names
        binary = [t.name for t in tasks if t.is_binary]
        parent = []
        for t in tasks:
            if not t.is_binary:
                parent.append(-1)
            elif t.given:
                parent.append(names.index(t.given))
            elif binary and t.name != binary[0]:
                parent.append(names.index(binary[0]))
            else:
                parent.append(-1)
        self.parent = parent
        # conditional tasks: label observed only where the parent is 1 -> train on parent * label
        self.conditional = [bool(t.given) and p >= 0 for t, p in zip(tasks, parent)]

    def body(self, x):
        return Body(tower_inputs=[net(x) for net in self.nets], shared=x)

    def _entire_space(self, raw):
        """log p over the impression space: chain each task's probability with its parent's."""
        logp = F.logsigmoid(raw)
        out: dict[int, torch.Tensor] = {}

        def chain(k: int) -> torch.Tensor:
            if k not in out:
                p = self.parent[k]
                out[k] = logp[:, k] + chain(p) if p >= 0 else logp[:, k]
            return out[k]

        return [chain(k) for k in range(len(self.parent))]

    def task_losses(self, raw, labels, mask):
        base = super().task_losses(raw, labels, mask)
        if not any(p >= 0 for p in self.parent):
            return base
        chain = self._entire_space(raw)
        losses = []
        for k, p in enumerate(self.parent):
            if p < 0:
                losses.append(base[k])
                continue
            if self.conditional[k]:
                # CTCVR label over every impression where the parent is observed
                y = labels[:, p] * torch.where(mask[:, k], labels[:, k], torch.zeros_like(labels[:, k]))
                m = mask[:, p]
            else:
                y, m = labels[:, k], mask[:, k]
            logp = chain[k]
            log1mp = torch.log1p(-logp.exp().clamp(max=1 - 1e-6))
            ll = -(y * logp + (1 - y) * log1mp) * m
            losses.append(ll.sum() / m.sum().clamp(min=1))
        return torch.stack(losses)

    def predict(self, raw):
        """A conditional task reports pCVR (evaluated where observed); a whole-space one pCTCVR."""
        out = super().predict(raw)
        if not any(p >= 0 for p in self.parent):
            return out
        chain = self._entire_space(raw)
        cols = [out[:, k] if (p < 0 or self.conditional[k]) else chain[k].exp() for k, p in enumerate(self.parent)]
        return torch.stack(cols, -1)

    def shared_parameters(self):
        return [p for net in self.nets for p in last_linear(net).parameters()]
