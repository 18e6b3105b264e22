"""CAGrad: the direction that maximises the worst task's improvement within a ball around the
average gradient.

Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
NeurIPS 2021 (Algorithm 1): d maximises min_i <g_i, d> subject to ||d - g_0|| <= c ||g_0||,
g_0 the mean gradient. c = 0 is the mean gradient; a larger c moves towards MGDA. The paper
uses c = 0.4 on NYU-v2 and CityScapes. torchjd.aggregation.CAGrad (needs cvxpy, installed
with torchjd[cagrad]).
"""
from dataclasses import dataclass

from ..registry import knob
from ._torchjd import GradientMethod


class CAGrad(GradientMethod):
    name = "cagrad"
    label = "CAGrad (Liu 2021)"
    paper = "Liu et al., NeurIPS 2021"
    order = 63

    @dataclass
    class Options:
        c: float = knob(0.4, "CAGrad c", noun="CAGrad radius c", widget="slider", lo=0.0, hi=2.0, step=0.1,
                        flag="--cagrad-c", url="cagc", valid=lambda v: 0 <= v <= 10, fix="e.g. 0.4",
                        message="CAGrad's c must be between 0 and 10 (got {v}).",
                        help="radius of the ball around the mean gradient (0: the mean gradient)")

    aggregator_class = "CAGrad"

    def aggregator_settings(self, n_tasks):
        return {"c": float(self.options.c)}
