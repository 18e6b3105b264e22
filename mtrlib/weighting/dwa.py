"""Dynamic Weight Average.

Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019:
w_i(t) = T * softmax_i(r_i(t-1) / temperature), r_i(t-1) = L_i(t-1) / L_i(t-2), from the
mean training loss of the last two epochs (weights are 1 for the first two epochs).
"""
import torch

from .base import Weighting


class DWA(Weighting):
    name = "dwa"
    paper = "Liu, Johns & Davison, CVPR 2019"

    def __init__(self, task_names, user_weights, temperature: float = 2.0, **options):
        super().__init__(task_names, user_weights)
        self.temperature = float(temperature)
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
