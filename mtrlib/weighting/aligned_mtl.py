"""Aligned-MTL: align the principal components of the task gradients, so that the gradient
matrix is well conditioned, then combine.

Senushkin, Patakin, Kuznetsov, Konushin, "Independent Component Alignment for Multi-Task
Learning", CVPR 2023 (Algorithm 1). torchjd.aggregation.AlignedMTL (its default scale mode,
the smallest singular value).
"""
from ._torchjd import GradientMethod


class AlignedMTL(GradientMethod):
    name = "aligned-mtl"
    label = "Aligned-MTL (Senushkin 2023)"
    paper = "Senushkin et al., CVPR 2023"
    order = 65
    aggregator_class = "AlignedMTL"
