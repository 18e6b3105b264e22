"""IMTL-G: impartial multi-task learning, gradient part: the update has equal projections onto
every task's unit gradient.

Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang, "Towards Impartial Multi-task Learning",
ICLR 2021. torchjd.aggregation.IMTLG, the generalisation of Quinton & Rey (arXiv 2406.16232)
that also accepts linearly dependent gradients.
"""
from ._torchjd import GradientMethod


class IMTLG(GradientMethod):
    name = "imtl-g"
    label = "IMTL-G (Liu 2021)"
    paper = "Liu et al., ICLR 2021"
    order = 64
    aggregator_class = "IMTLG"
