"""Nash-MTL: the update is the Nash bargaining solution between the tasks: weights alpha with
(G^T G) alpha = 1 / alpha, found by a sequence of convex problems.

Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, "Multi-Task Learning as a
Bargaining Game", ICML 2022 (Algorithm 1). torchjd.aggregation.NashMTL (needs cvxpy and ecos,
installed with torchjd[nash-mtl]; its defaults: 20 solver iterations). The update's norm is
clipped to `max_norm`, as in the official code.
"""
import warnings
from dataclasses import dataclass

from ..registry import knob
from ._torchjd import GradientMethod


class NashMTL(GradientMethod):
    name = "nash-mtl"
    label = "Nash-MTL (Navon 2022)"
    paper = "Navon et al., ICML 2022"
    order = 68

    @dataclass
    class Options:
        update_every: int = knob(1, "Nash-MTL: solve every", noun="Nash-MTL update interval", lo=1, hi=100,
                                 flag="--nash-every", url="nashev", valid=lambda v: 1 <= v <= 10_000, fix="e.g. 1",
                                 message="Nash-MTL solves for its weights every 1 to 10000 steps (got {v}).",
                                 help="steps between two solves of the bargaining problem (the weights are reused)")
        max_norm: float = knob(1.0, "Nash-MTL: max update norm", noun="Nash-MTL maximum norm", lo=0.0, hi=100.0,
                               flag="--nash-max-norm", url="nashmn", valid=lambda v: 0 <= v <= 1e6, fix="e.g. 1",
                               message="Nash-MTL's maximum update norm must be 0 (off) or more (got {v}).",
                               help="clip the shared update to this norm (0: no clipping)")

    aggregator_class = "NashMTL"

    def aggregator_settings(self, n_tasks):
        # cvxpy says, at every solve, that this problem is not DPP (so not faster when re-solved): known, not actionable
        warnings.filterwarnings("ignore", message="You are solving a parameterized problem that is not DPP")
        return {"n_tasks": n_tasks, "max_norm": float(self.options.max_norm),
                "update_weights_every": int(self.options.update_every)}
