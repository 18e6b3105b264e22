"""FAMO: fast adaptive multitask optimisation. Decrease every task's loss at about the same
rate, from the loss values alone (no per-task gradient).

Liu, Feng, Stone, Liu, "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023
(Algorithm 1). The model minimises c * sum_i z_i log L_i with z = softmax(xi) and
c = (sum_i z_i / L_i)^-1 held constant, i.e. the loss weights a_i = c z_i / L_i (they sum to
1; `effective()` reports them). After the optimiser step the batch's losses are recomputed
(one extra forward pass), and the logits xi take one Adam step along
d(sum_i z_i delta_i)/d xi, delta_i = log L_i(before) - log L_i(after): a task whose loss fell
less gains weight. torchjd.scalarization.FAMO (the paper's Adam learning rate 0.025 and decay
1e-3). User weights act as exponents, FAMO's natural scale: it balances L_i^{u_i}, whose log is
u_i log L_i (u_i = 0 leaves the task out). A task absent from the batch (loss 0) is held at 1,
so it neither moves nor pulls on the others.
"""
from dataclasses import dataclass

import torch

from ..registry import knob
from .base import Weighting


class FAMO(Weighting):
    name = "famo"
    label = "FAMO (Liu 2023)"
    paper = "Liu et al., NeurIPS 2023"
    order = 50

    @dataclass
    class Options:
        logit_lr: float = knob(0.025, "FAMO weight learning rate", noun="FAMO learning rate", lo=0.0, hi=1.0,
                         flag="--famo-lr", url="famolr", valid=lambda v: 0 <= v <= 1, fix="e.g. 0.025",
                         message="FAMO's learning rate must be between 0 and 1 (got {v}).",
                         help="Adam step of FAMO's task logits")
        decay: float = knob(1e-3, "FAMO weight decay", noun="FAMO weight decay", lo=0.0, hi=1.0,
                            flag="--famo-decay", url="famowd", valid=lambda v: 0 <= v <= 1, fix="e.g. 0.001",
                            message="FAMO's weight decay must be between 0 and 1 (got {v}).",
                            help="pulls FAMO's task logits towards equal weights")

    def __init__(self, task_names, user_weights, options=None, lr: float = 0.01):
        super().__init__(task_names, user_weights, options, lr)
        # deferred: torchjd and the solvers behind it load only when this method is chosen
        from torchjd.scalarization import FAMO as Scalarizer
        self.famo = Scalarizer(len(task_names), lr=float(self.options.logit_lr), weight_decay=float(self.options.decay))
        self.register_buffer("a", torch.full((len(task_names),), 1.0 / len(task_names)))

    def _balanced(self, losses: torch.Tensor) -> torch.Tensor:
        """L_i^{u_i}, with a task absent from the batch (loss 0) held at 1."""
        held = torch.where(losses > 0, losses, torch.ones_like(losses))
        return held if self.all_ones else held ** self.user

    def combine(self, losses, ctx):
        probe = losses.detach().requires_grad_()
        with torch.enable_grad():  # FAMO's loss weights, d(its objective)/d(losses)
            a = torch.autograd.grad(self.famo(self._balanced(probe)), probe)[0]
        self.a.copy_(a)
        return (a * losses).sum()

    def after_step(self, ctx):
        self.famo.update(self._balanced(ctx.losses_again()))

    def effective(self):
        return self.a

    def weights(self) -> torch.Tensor:
        """z = softmax(xi): FAMO's task weights before the 1/L_i scaling."""
        return torch.softmax(self.famo._w.detach(), 0)
