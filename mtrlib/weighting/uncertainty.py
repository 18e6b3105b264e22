"""Homoscedastic uncertainty weighting.

Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018. Each task i has a learned observation noise sigma_i; the
paper's objective is  sum_i 1/(2 sigma_i^2) L_i + log sigma_i  (eq. 7, regression; a
classification task gets 1/sigma_i^2 instead of 1/(2 sigma_i^2), eq. 10). With the learned
s_i = log sigma_i^2 (stable: any real s_i is a valid variance) this is, times 2,

    L = sum_i  exp(-s_i) * L_i + s_i

which we use for every task, as most implementations do. The effective weight of task i is
exp(-s_i) (1 at the start, like fixed weights), and s_i settles where exp(s_i) = L_i: a task
with a small loss gets a large weight, a noisy task a small one, and the + s_i term keeps the
weights from collapsing to 0. The s_i are trained by the main optimiser (without weight decay).
User weights multiply each task's whole term.
"""
import torch
from torch import nn

from .base import Weighting


class Uncertainty(Weighting):
    name = "uncertainty"
    label = "Uncertainty (Kendall 2018)"
    paper = "Kendall, Gal & Cipolla, CVPR 2018"
    order = 20

    def __init__(self, task_names, user_weights, options=None, lr: float = 0.01):
        super().__init__(task_names, user_weights, options, lr)
        self.log_var = nn.Parameter(torch.zeros(len(task_names)))

    def effective(self):
        return self.user * torch.exp(-self.log_var.detach())

    def combine(self, losses, ctx):
        return (self.user * (torch.exp(-self.log_var) * losses + self.log_var)).sum()

    def extra_parameters(self):
        return [self.log_var]
