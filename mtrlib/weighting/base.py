"""The one interface every task-weighting method implements.

Any model trains with any method: the trainer hands over the per-task losses and gets back the
scalar to minimise (`combine`), then lets the method turn it into gradients (`backward`: plain
backpropagation unless a method acts on the per-task gradients themselves). The method reports
the effective weight of each task for the history. User weights (the what-if knob) multiply
every method's own weights; a task with user weight 0 is left out of the method's own balancing.

A gradient method (`needs_task_gradients = True`, mtrlib.weighting._torchjd.GradientMethod)
reads the step's per-task gradients from `ctx.grads` (mtrlib.train.gradients.TaskGradients) and
writes the combined direction as the parameters' gradient. `combine` must depend on the model
only through the losses: the gradient telemetry derives the last task's gradient from the
step's own by linearity when `backward` is the default.

A subclass in its own module of this package that sets `name` is registered by discovery
(`mtrlib.weighting.WEIGHTINGS`). It describes itself: `label`, `paper`, `order` and a nested
`Options` dataclass of its own knobs (declared with `mtrlib.registry.knob`), which the config,
the CLI, URLs and the Train page derive their controls from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

import torch
from torch import nn


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass
class StepContext:
    # the last layer all tasks share (GradNorm's W; mtrlib.train.gradients.SharedParameters.last_layer),
    # found for a method with `needs_shared_layer`; empty otherwise
    shared_layer: list[nn.Parameter]
    step: int
    epoch: int
    # per-task gradients of this step on the shared parameters or representation, computed on
    # first use (mtrlib.train.gradients.TaskGradients); None outside the trainer
    grads: Any = None
    model: nn.Module | None = None  # the model being trained, and this step's batch (mtrlib.train.steps.Batch)
    batch: Any = None

    # the mean of a tensor over the training processes (mtrlib.train.distributed; the tensor itself in one
    # process): a method that compares per-task gradients or losses averages them first, so that
    # every process sees the whole batch's and takes the same step
    mean: Callable[[torch.Tensor], torch.Tensor] = _same

    def losses_again(self) -> torch.Tensor:
        """This batch's per-task losses, recomputed without gradients (after the update: FAMO)."""
        with torch.no_grad():
            b = self.batch  # history and context passed only when there is one
            extra = {k: getattr(b, k, None) for k in ("history", "context") if getattr(b, k, None) is not None}
            out = self.model(b.user, b.item, **extra)
            return self.mean(self.model.task_losses(out, b.labels, b.mask))  # every process's mean


class Weighting(nn.Module):
    name = "base"  # registry key: --weighting, the URL's weighting=, config.json's weighting
    label = ""  # how the Train page lists it
    paper = ""
    order = 100
    Options = None  # dataclass of this method's own knobs
    # True for a method that combines the tasks' gradients (it reads ctx.grads): each step then
    # costs one backward pass per task, and data-parallel training must give it every task's
    # gradient (or refuse it). False for a method that only weights the losses.
    needs_task_gradients = False
    # True for a method that reads ctx.shared_layer (GradNorm): the trainer then probes the model
    # for its shared parameters before training (mtrlib.train.gradients.SharedParameters)
    needs_shared_layer = False
    # under several training processes (mtrlib.train.distributed): True = it works (a `backward` of its
    # own runs inside DDP's no_sync() and its gradients are averaged after; statistics it compares
    # across tasks go through `ctx.mean`); False = refused before training, naming the method
    distributed = True

    def __init__(self, task_names: list[str], user_weights: dict[str, float], options=None, lr: float = 0.01):
        super().__init__()
        self.task_names = list(task_names)
        self.options = options if options is not None else (self.Options() if self.Options else None)
        self.user_list = [float(user_weights.get(t, 1.0)) for t in task_names]
        self.register_buffer("user", torch.tensor(self.user_list))
        self.all_ones = all(w == 1.0 for w in self.user_list)

    @classmethod
    def check(cls, cfg, task_names: list[str] | None = None) -> list[str]:
        """Rules for the chosen method beyond its knobs' own: raise DataError, or return warnings."""
        return []

    def combine(self, losses: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        """Scalar loss for backward from per-task losses [T]."""
        return (self.effective() * losses).sum()

    def backward(self, total: torch.Tensor, losses: torch.Tensor, ctx: StepContext) -> None:
        """Fill the parameters' .grad for this step (plain backpropagation of `total`)."""
        total.backward()

    def after_step(self, ctx: StepContext) -> None:
        """Called after the optimiser step (FAMO updates its weights from the new losses)."""

    def effective(self) -> torch.Tensor:
        """Effective weight per task [T] (user weight x method weight), used in the loss."""
        return self.user

    def end_epoch(self, mean_losses: torch.Tensor) -> None:
        """Called with each epoch's mean training loss per task (DWA uses it)."""

    def extra_parameters(self) -> list[nn.Parameter]:
        """Learnable parameters the main optimiser should update (uncertainty's log-variances)."""
        return []
