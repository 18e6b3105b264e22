"""GradNorm: learn task weights so each task's gradient norm on the last shared layer tracks
its relative training rate.

Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks", ICML 2018 (Algorithm 1). With W the last shared layer
(found for any architecture by mtrlib.train.gradients.SharedParameters.last_layer):

    G_i = || grad_W  w_i L_i ||,   G_bar = mean_i G_i,
    r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))          (inverse training rate)
    L_grad = sum_i | G_i - G_bar * r_i^alpha |            (the target is held constant)

L_grad updates only the weights w (their own Adam); the network is trained on sum_i w_i L_i;
after each step the weights are renormalised to sum to the number of tasks. Since
G_i = w_i * ||grad_W L_i||, dL_grad/dw_i = sign(G_i - target_i) * ||grad_W L_i|| exactly, so no
second-order backward pass is needed. alpha sets how strongly training rates are equalised
(0: equal gradient norms only). L_i(0) is a task's loss in the first batch where it is
observed (a conditional task can be absent from a small batch).
"""
from dataclasses import dataclass

import torch
from torch import nn

from ..registry import knob
from .base import Weighting


class GradNorm(Weighting):
    name = "gradnorm"
    label = "GradNorm (Chen 2018)"
    paper = "Chen et al., ICML 2018"
    order = 30
    needs_shared_layer = True  # W is found by the trainer's probe (SharedParameters.last_layer)

    @dataclass
    class Options:
        alpha: float = knob(1.5, "GradNorm α", noun="GradNorm alpha", widget="slider", lo=0.0, hi=3.0, step=0.25,
                            flag="--alpha", url="alpha", valid=lambda v: 0 <= v <= 10, fix="e.g. 1.5",
                            message="GradNorm's alpha must be between 0 and 10 (got {v}).",
                            help="how strongly training rates are equalised (0: equal gradient norms)")

    def __init__(self, task_names, user_weights, options=None, lr: float = 0.025):
        """`lr`: the learning rate of the weights' own Adam (the trainer passes its own)."""
        super().__init__(task_names, user_weights, options, lr)
        self.alpha = float(self.options.alpha)
        self.w = nn.Parameter(torch.ones(len(task_names)))
        self.opt = torch.optim.Adam([self.w], lr=lr)
        self.register_buffer("initial", torch.zeros(len(task_names)))

    def effective(self):
        return self.user * self.w.detach()

    def combine(self, losses, ctx):
        L = ctx.mean(losses.detach())  # over every training process (itself in one process)
        with torch.no_grad():
            self.initial.copy_(torch.where((self.initial == 0) & (L > 0), L, self.initial))
        params = [p for p in ctx.shared_layer if p.requires_grad]
        norms = []
        for i in range(len(self.task_names)):
            if self.user_list[i] == 0 or not losses[i].requires_grad or not params:
                norms.append(L.new_zeros(()))
                continue
            g = [x for x in torch.autograd.grad(losses[i], params, retain_graph=True, allow_unused=True)
                 if x is not None]
            # the whole batch's gradient: averaged over the training processes (itself in one process)
            norms.append(ctx.mean(torch.cat([x.reshape(-1) for x in g])).norm() if g else L.new_zeros(()))
        n = torch.stack(norms)  # ||grad_W L_i||
        with torch.no_grad():
            G = self.user * self.w * n
            active = (self.user > 0) & (self.initial > 0) & (n > 0)
            if int(active.sum()) >= 2:
                ratio = torch.where(active, L / self.initial.clamp(min=1e-12), torch.zeros_like(L))
                rel = ratio / ratio[active].mean().clamp(min=1e-12)
                target = G[active].mean() * rel ** self.alpha
                self.w.grad = torch.where(active, torch.sign(G - target) * self.user * n, torch.zeros_like(n))
                self.opt.step()
                self.w.clamp_(min=1e-3)
                self.w.mul_(len(self.w) / self.w.sum())
        return (self.user * self.w.detach() * losses).sum()
