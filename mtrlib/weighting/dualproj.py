"""DualProj: average the task gradients, then project the average onto the dual cone of the
task gradients (the closest direction that conflicts with no task).

Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017
(equation 11), as an aggregator in Quinton & Rey, arXiv 2406.16232. torchjd.aggregation.DualProj.
"""
from ._torchjd import GradientMethod


class DualProj(GradientMethod):
    name = "dualproj"
    label = "DualProj (Lopez-Paz 2017)"
    paper = "Lopez-Paz & Ranzato, NeurIPS 2017"
    order = 66
    aggregator_class = "DualProj"
