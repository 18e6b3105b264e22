"""PCGrad: gradient surgery. Where two tasks' gradients conflict (negative inner product), each
is projected onto the normal plane of the other before they are summed.

Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task Learning",
NeurIPS 2020 (Algorithm 1). torchjd.aggregation.PCGrad.
"""
from ._torchjd import GradientMethod


class PCGrad(GradientMethod):
    name = "pcgrad"
    label = "PCGrad (Yu 2020)"
    paper = "Yu et al., NeurIPS 2020"
    order = 62
    aggregator_class = "PCGrad"
