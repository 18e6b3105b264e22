"""Random loss weighting (RLW): fresh random task weights every step, w = softmax(z),
z ~ N(0, I); a litmus test every balancing method should beat.

Lin, Ye, Xu, Shi, Zhang, Kwok, "Reasonable Effectiveness of Random Weighting: A Litmus Test
for Multi-Task Learning", TMLR 2022 (Algorithm 2). It weights the losses, so it needs no
per-task gradient: torchjd.scalarization.Random. The weights sum to 1 (times the user weights).
"""
import torch

from .base import Weighting


class RLW(Weighting):
    name = "rlw"
    label = "Random weights (Lin 2022)"
    paper = "Lin et al., TMLR 2022"
    order = 45

    def __init__(self, task_names, user_weights, options=None, lr: float = 0.01):
        super().__init__(task_names, user_weights, options, lr)
        # deferred: torchjd and the solvers behind it load only when this method is chosen
        from torchjd.scalarization import Random
        self.scalarizer = Random()
        self.register_buffer("w", self.user.clone())

    def combine(self, losses, ctx):
        probe = losses.detach().requires_grad_()
        with torch.enable_grad():  # the weights torchjd drew, read as d(its sum)/d(losses)
            w = torch.autograd.grad(self.scalarizer(self.user * probe), probe)[0]
        self.w.copy_(w)
        return (w * losses).sum()

    def effective(self):
        return self.w
