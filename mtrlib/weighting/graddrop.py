"""GradDrop: gradient sign dropout. Per coordinate, keep only the tasks' gradients of one sign,
chosen at random with the probability that the summed gradient is positive.

Chen, Ngiam, Huang, Luong, Kretzschmar, Chai, Anguelov, "Just Pick a Sign: Optimizing Deep
Multitask Models with Gradient Sign Dropout", NeurIPS 2020 (Algorithm 1, lines 10-15).
torchjd.aggregation.GradDrop. The paper drops signs on the shared activations: that is
grad_space="rep" here; the default drops them per shared parameter.
"""
from ._torchjd import GradientMethod


class GradDrop(GradientMethod):
    name = "graddrop"
    label = "GradDrop (Chen 2020)"
    paper = "Chen et al., NeurIPS 2020"
    order = 67
    aggregator_class = "GradDrop"
