"""UPGrad: project each task's gradient onto the dual cone of all of them, then average.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232, 2024
(torchjd's recommended aggregator). Each row g_i of the Jacobian is projected onto the cone of
directions that conflict with no task (<d, g_j> >= 0 for every j) and the projections are
averaged, so the update never increases any task's loss to first order, and it is the mean
gradient whenever the tasks do not conflict. torchjd.aggregation.UPGrad.
"""
from ._torchjd import GradientMethod


class UPGrad(GradientMethod):
    name = "upgrad"
    label = "UPGrad (Quinton 2024)"
    paper = "Quinton & Rey, arXiv 2406.16232, 2024"
    order = 60
    aggregator_class = "UPGrad"
