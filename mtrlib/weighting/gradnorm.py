"""GradNorm: learn task weights so each task's gradient norm on the last shared layer tracks
its relative training rate.

Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks", ICML 2018. Weights have their own optimiser and are
renormalised to sum to T after each step; alpha sets how strongly rates are equalised.
"""
import torch
from torch import nn

from .base import Weighting


class GradNorm(Weighting):
    name = "gradnorm"
    paper = "Chen et al., ICML 2018"

    def __init__(self, task_names, user_weights, alpha: float = 1.5, lr: float = 0.025, **options):
        super().__init__(task_names, user_weights)
        self.alpha = float(alpha)
        self.w = nn.Parameter(torch.ones(len(task_names)))
        self.opt = torch.optim.Adam([self.w], lr=lr)
        self.register_buffer("initial", torch.zeros(len(task_names)))
        self.started = False

    def effective(self):
        return self.user * self.w.detach()

    def combine(self, losses, ctx):
        if not self.started:
            self.initial.copy_(losses.detach().clamp(min=1e-8))
            self.started = True
        params = [p for p in ctx.shared_params if p.requires_grad]
        weighted = self.user * self.w * losses
        norms = []
        for i in range(len(losses)):
            if self.user[i] == 0 or not losses[i].requires_grad:
                norms.append(losses.new_zeros(()))
                continue
            g = torch.autograd.grad(weighted[i], params, retain_graph=True, create_graph=True, allow_unused=True)
            norms.append(torch.sqrt(sum((x * x).sum() for x in g if x is not None) + 1e-12))
        G = torch.stack(norms)
        active = self.user > 0
        ratio = (losses.detach() / self.initial)
        rel = ratio / ratio[active].mean().clamp(min=1e-12)
        target = (G[active].mean() * rel ** self.alpha).detach()
        gn_loss = ((G - target).abs() * active).sum()
        self.opt.zero_grad(set_to_none=True)
        self.w.grad = torch.autograd.grad(gn_loss, self.w, retain_graph=True)[0]
        self.opt.step()
        with torch.no_grad():
            self.w.clamp_(min=1e-3)
            self.w.mul_(len(self.w) / self.w.sum())
        return (self.user * self.w.detach() * losses).sum()
