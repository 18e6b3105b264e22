"""Dynamic Weight Average.

Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019:
w_i(t) = T * softmax_i(r_i(t-1) / temperature), r_i(t-1) = L_i(t-1) / L_i(t-2), from the
mean training loss of the last two epochs (weights are 1 for the first two epochs).
"""
from dataclasses import dataclass

import torch

from ..registry import knob
from .base import Weighting


class DWA(Weighting):
    name = "dwa"
    label = "DWA (Liu 2019)"
    paper = "Liu, Johns & Davison, CVPR 2019"
    order = 40

    @dataclass
    class Options:
        temperature: float = knob(2.0, "DWA temperature", noun="DWA temperature", widget="slider", lo=0.5, hi=10.0,
                                  step=0.5, url="temp", flag="--dwa-temperature",
                                  valid=lambda v: 0 < v <= 100, fix="e.g. 2",
                                  message="DWA's temperature must be above 0 (got {v}).",
                                  help="higher = weights closer to equal")

    def __init__(self, task_names, user_weights, options=None, lr: float = 0.01):
        super().__init__(task_names, user_weights, options, lr)
        self.temperature = float(self.options.temperature)
        self.register_buffer("w", torch.ones(len(task_names)))
        self.history: list[torch.Tensor] = []

    def effective(self):
        return self.user * self.w

    def end_epoch(self, mean_losses):
        self.history = (self.history + [mean_losses.detach().float().cpu()])[-2:]
        if len(self.history) == 2:
            r = self.history[1] / self.history[0].clamp(min=1e-12)
            w = len(r) * torch.softmax(r / self.temperature, 0)
            self.w.copy_(w.to(self.w.device))
