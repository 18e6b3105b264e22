"""Homoscedastic uncertainty weighting.

Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene
Geometry and Semantics", CVPR 2018. With s_i = log sigma_i^2 learned jointly:
L = sum_i exp(-s_i) * L_i + s_i / 2 ... we use the common form exp(-s_i) L_i + s_i, so the
effective weight of task i is exp(-s_i).
"""
import torch
from torch import nn

from .base import Weighting


class Uncertainty(Weighting):
    name = "uncertainty"
    paper = "Kendall, Gal & Cipolla, CVPR 2018"

    def __init__(self, task_names, user_weights, **options):
        super().__init__(task_names, user_weights)
        self.log_var = nn.Parameter(torch.zeros(len(task_names)))

    def effective(self):
        return self.user * torch.exp(-self.log_var.detach())

    def combine(self, losses, ctx):
        return (self.user * (torch.exp(-self.log_var) * losses + self.log_var)).sum()

    def extra_parameters(self):
        return [self.log_var]
