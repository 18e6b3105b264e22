"""The one thin adapter between torchjd's aggregators and the `Weighting` interface.

Gradient methods do not weight the losses: they combine the tasks' *gradients*. The trainer
gives the step's per-task gradients (`ctx.grads`, mtrlib.train.gradients.TaskGradients) as a matrix
J [T, n], one row per task, on the parameters more than one task uses (or on the shared
representation, with grad_space="rep"). torchjd's aggregator turns J into one direction d,
which becomes the shared parameters' gradient; every other parameter gets sum_i u_i g_i (a
task's own tower only ever sees its own task's gradient).

User weights u (the what-if knob) multiply the method's own weights: d = sum_i u_i w_i(J) g_i,
over the tasks with u_i > 0 and a gradient in this batch. For an aggregator that does not work
by weights (GradDrop) the rows are scaled by u_i first, and the weights it implies are reported
(least squares: the w whose J^T w is closest to d). `effective()` is the last step's u_i w_i.

torchjd (pinned at 0.18.0 in requirements.txt) is imported when a method is built, not when the
registry is: it loads cvxpy and scipy (about 2 s), which a run with another method never needs.
"""
from __future__ import annotations

import torch

from .base import StepContext, Weighting


class GradientMethod(Weighting):
    """Base of the gradient methods: a subclass only says which torchjd aggregator it is."""
    needs_task_gradients = True
    order = 60
    aggregator_class = ""  # the class in torchjd.aggregation, e.g. "UPGrad"

    def aggregator_settings(self, n_tasks: int) -> dict:
        """Keyword arguments of the aggregator (its own knobs, from `self.options`)."""
        return {}

    def make_aggregator(self, n_tasks: int):
        """The torchjd aggregator for `n_tasks` rows."""
        # deferred: torchjd (cvxpy, qpsolvers for some aggregators) loads only when a method is built
        from torchjd import aggregation
        return getattr(aggregation, self.aggregator_class)(**self.aggregator_settings(n_tasks))

    def __init__(self, task_names, user_weights, options=None, lr: float = 0.01):
        super().__init__(task_names, user_weights, options, lr)
        self.register_buffer("w", self.user.clone())  # the last step's effective weights
        n = sum(u > 0 for u in self.user_list)
        self._aggregators = {n: self.make_aggregator(n)} if n >= 2 else {}  # by number of rows (plain dict: not saved)

    @classmethod
    def check(cls, cfg, task_names=None):
        if task_names is not None and sum(cfg.weights.get(t, 1.0) > 0 for t in task_names) < 2:
            return [f"{cls.label} combines the gradients of two or more tasks; with one task weighted it trains "
                    "like fixed weights."]
        return []

    def aggregator(self, n_tasks: int):
        if n_tasks not in self._aggregators:
            self._aggregators[n_tasks] = self.make_aggregator(n_tasks)
        return self._aggregators[n_tasks]

    def combine(self, losses, ctx):
        """The value the divergence guard watches (the direction comes from `backward`)."""
        return (self.user * losses).sum()

    def effective(self):
        return self.w

    def backward(self, total: torch.Tensor, losses: torch.Tensor, ctx: StepContext) -> None:
        grads = ctx.grads
        if grads is None:  # outside the trainer, nothing tells which parameters are shared
            total.backward()
            return
        J = grads.jacobian()
        norms = J.norm(dim=1) if J.numel() else torch.zeros(len(losses), device=J.device)
        active = [k for k in range(len(losses)) if self.user_list[k] > 0 and float(norms[k]) > 0]
        if len(active) < 2:  # nothing to balance: the plain gradient
            grads.apply(None, self.user)
            return
        d, w = self.aggregate(J[active], self.user[active])
        with torch.no_grad():
            self.w[active] = w.to(self.w.dtype)
            self.w[self.user == 0] = 0.0
        grads.apply(d, self.user)

    def aggregate(self, J: torch.Tensor, user: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(direction d [n], effective weights [m]) for the active rows J [m, n]."""
        # deferred: torchjd (cvxpy, qpsolvers for some aggregators) loads only when a method is built
        from torchjd.aggregation import WeightedAggregator
        agg = self.aggregator(len(J))
        if isinstance(agg, WeightedAggregator):
            w = user * agg.weighting(J).to(J.dtype)
            return w @ J, w
        d = agg(user[:, None] * J)
        return d, implied_weights(J, d)


def implied_weights(J: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The weights w with J^T w closest to d (least squares, a little ridge for safety)."""
    Jd = J.double()
    G = Jd @ Jd.T
    ridge = 1e-10 * float(G.diagonal().mean().clamp(min=1e-30))
    w = torch.linalg.solve(G + ridge * torch.eye(len(G), dtype=G.dtype, device=G.device), Jd @ d.double())
    return w.to(J.dtype)


__all__ = ["GradientMethod", "implied_weights"]
