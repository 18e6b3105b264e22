"""MGDA: the minimum-norm point of the convex hull of the task gradients.

Désidéri, "Multiple-gradient descent algorithm (MGDA) for multiobjective optimization",
C. R. Math. 2012; for deep multi-task learning Sener & Koltun, "Multi-Task Learning as
Multi-Objective Optimization", NeurIPS 2018 (Algorithm 2, Frank-Wolfe on the Gramian). The
update d = sum_i w_i g_i with w on the simplex minimising ||d||: a common descent direction
for every task, or 0 at a Pareto-stationary point. torchjd.aggregation.MGDA (its defaults:
epsilon 1e-3, at most 100 iterations).
"""
from ._torchjd import GradientMethod


class MGDA(GradientMethod):
    name = "mgda"
    label = "MGDA (Sener 2018)"
    paper = "Désidéri 2012; Sener & Koltun, NeurIPS 2018"
    order = 61
    aggregator_class = "MGDA"
