"""ESMM: pCTCVR = pCTR * pCVR, trained over the whole impression space.

Ma, Zhao, Huang, Wang, Hu, Zhu, Gai, "Entire Space Multi-Task Model: An Effective Approach
for Estimating Post-Click Conversion Rate", SIGIR 2018: L = sum_i l(y_i, pCTR_i) +
sum_i l(y_i & z_i, pCTR_i * pCVR_i) over *all* impressions i, so the CVR tower never trains on
the biased clicked-only sample; pCVR is read from its tower alone.

Tasks share only the embeddings; each has its own MLP and tower. The trainer knows none of
what follows: the model overrides `task_losses` and `predict`.

- A binary task observed only where a parent is 1 (`liked=rating>=4|watched`) is a CVR: its
  tower gives p(task | parent), the model chains it with the parent's probability (and the
  parent's parent, if any), and learns the chain over the parent's whole space from the
  product label (parent and task both 1). `predict` reports pCVR, evaluated where observed.
- A whole-space binary task (no `|`) is chained the same way to the root task (the implicit
  task if there is one, else the first binary task without `|`): p(liked) =
  p(watched) * p(liked | watched), learned from its own whole-space label, and `predict`
  reports that product. This assumes the task implies the root (liked => watched);
  `fit_targets` checks it on the training labels and leaves a task unchained where it fails.
- Regression tasks stand alone (MSE on their observed rows).
"""
from __future__ import annotations

import torch
from torch import nn

from .base import Architecture, Body, MultiTaskModel, PerTaskMLP
from .blocks import mlp, mlp_out_dim
from .diagram import per_task_mlps, sizes


def _declared_parents(tasks) -> list[int]:
    names = [t.name for t in tasks]
    roots = [t for t in tasks if t.is_binary and not t.given]
    root = next((t for t in roots if t.kind == "implicit"), roots[0] if roots else None)
    out = []
    for t in tasks:
        if not t.is_binary:
            out.append(-1)
        elif t.given:
            out.append(names.index(t.given))
        elif root is not None and t.name != root.name:
            out.append(names.index(root.name))
        else:
            out.append(-1)
    return out


class ESMMNet(MultiTaskModel):
    factorised_body = True  # x is read by InputLinear layers only (scoring: blocks.PairRows)

    def __init__(self, cfg, desc, tables, tasks, options=None):
        super().__init__(cfg, desc, tables, tasks, options)
        o = self.options
        self.input = self.make_input(desc, tables)
        d_in = self.input.out_dim
        self.nets = nn.ModuleList(mlp(d_in, o.shared, cfg.dropout) for _ in tasks)
        self.towers = self.make_towers([mlp_out_dim(d_in, o.shared)] * len(tasks))
        # saved with the weights: which task each one is chained to (-1: none)
        self.register_buffer("parent_index", torch.tensor(_declared_parents(self.tasks), dtype=torch.long))
        self._sync_parents()
        self.register_load_state_dict_post_hook(lambda module, keys: module._sync_parents())

    def _sync_parents(self) -> None:
        self.parent = [int(p) for p in self.parent_index.tolist()]
        self.conditional = [bool(t.given) and p >= 0 for t, p in zip(self.tasks, self.parent)]
        self.chained = any(p >= 0 for p in self.parent)

    @torch.no_grad()
    def fit_targets(self, labels, mask):
        super().fit_targets(labels, mask)
        declared = _declared_parents(self.tasks)
        for k, t in enumerate(self.tasks):
            p = declared[k]
            if p >= 0 and not t.given:
                both = mask[:, k] & mask[:, p]
                if bool(((labels[:, k] == 1) & (labels[:, p] == 0) & both).any()):
                    declared[k] = -1  # the task happens without its root: chaining would bias it
        self.parent_index.copy_(torch.tensor(declared, dtype=torch.long))
        self._sync_parents()

    def body(self, x):
        return Body(tower_inputs=[net(x) for net in self.nets], shared=x)

    def _entire_space(self, raw: torch.Tensor) -> list[torch.Tensor]:
        """log p over the impression space per task: its own log-probability plus its ancestors'."""
        logp = nn.functional.logsigmoid(raw)
        out: list[torch.Tensor | None] = [None] * len(self.parent)

        def chain(k: int) -> torch.Tensor:
            if out[k] is None:
                p = self.parent[k]
                out[k] = logp[:, k] + chain(p) if p >= 0 else logp[:, k]
            return out[k]

        return [chain(k) for k in range(len(self.parent))]

    def task_losses(self, raw, labels, mask):
        base = super().task_losses(raw, labels, mask)
        if not self.chained:
            return base
        m = mask.to(raw.dtype)
        chain = self._entire_space(raw)

        def space(j):
            return self._space(m, j)

        def label(j):  # 1 where task j and every task it is conditional on are 1 (0 where unobserved)
            return labels[:, j] * m[:, j] * (label(self.parent[j]) if self.conditional[j] else 1.0)

        losses = []
        for k, p in enumerate(self.parent):
            if p < 0:
                losses.append(base[k])
                continue
            y, w = label(k), space(k)
            logp = chain[k]
            log1mp = torch.log(-torch.expm1(logp.clamp(max=-1e-7)))  # log(1 - p), stable near p = 1
            ll = -(y * logp + (1 - y) * log1mp) * w
            losses.append(ll.sum() / w.sum().clamp(min=1))
        return torch.stack(losses)

    def _space(self, m: torch.Tensor, j: int) -> torch.Tensor:
        """Where the chain of task j is observed: the first unconditional ancestor's rows."""
        return self._space(m, self.parent[j]) if self.conditional[j] else m[:, j]

    def loss_counts(self, mask):
        if not self.chained:
            return super().loss_counts(mask)
        m = mask.to(torch.float32)  # a chained task's loss is a mean over its chain's space
        return torch.stack([m[:, k].sum() if p < 0 else self._space(m, k).sum()
                            for k, p in enumerate(self.parent)]).clamp(min=1)

    def predict(self, raw):
        """A conditional task reports pCVR (evaluated where observed); a chained whole-space one pCTCVR."""
        out = super().predict(raw)
        if not self.chained:
            return out
        chain = self._entire_space(raw)
        cols = [out[:, k] if (p < 0 or self.conditional[k]) else chain[k].exp() for k, p in enumerate(self.parent)]
        return torch.stack(cols, -1)


class ESMM(Architecture):
    arch = "esmm"
    label = "ESMM"
    paper = "Ma et al., SIGIR 2018"
    order = 50
    Model = ESMMNet
    Options = PerTaskMLP

    @classmethod
    def draw(cls, c, opts, m):
        per_task_mlps(c, f"MLP {sizes(opts.shared)}")
        c.note(c.width / 2, 4.85, "pCTCVR = pCTR × pCVR (trained on the whole space)", 12)
