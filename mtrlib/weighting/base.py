"""The one interface every task-weighting method implements.

Any model trains with any method: the trainer hands over the per-task losses and gets back the
scalar to minimise; the method reports the effective weight of each task for the history.
User weights (the what-if knob) multiply every method's own weights; a task with user weight 0
is left out of the method's own balancing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class StepContext:
    shared_params: list[nn.Parameter]  # the last shared layer (GradNorm)
    step: int
    epoch: int


class Weighting(nn.Module):
    name = "base"
    paper = ""

    def __init__(self, task_names: list[str], user_weights: dict[str, float], **options):
        super().__init__()
        self.task_names = list(task_names)
        self.user_list = [float(user_weights.get(t, 1.0)) for t in task_names]
        self.register_buffer("user", torch.tensor(self.user_list))
        self.all_ones = all(w == 1.0 for w in self.user_list)

    def combine(self, losses: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """Scalar loss for backward from per-task losses [T]."""
        return (self.effective() * losses).sum()

    def effective(self) -> torch.Tensor:
        """Effective weight per task [T] (user weight x method weight), used in the loss."""
        return self.user

    def end_epoch(self, mean_losses: torch.Tensor) -> None:
        """Called with each epoch's mean training loss per task (DWA uses it)."""

    def extra_parameters(self) -> list[nn.Parameter]:
        """Learnable parameters the main optimiser should update (uncertainty's log-variances)."""
        return []
