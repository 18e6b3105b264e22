"""Fixed task weights: the user's what-if knob (default 1 for every task)."""
from .base import Weighting


class Fixed(Weighting):
    name = "fixed"
    label = "Fixed (your weights)"
    paper = "linear scalarisation with user-chosen weights"
    order = 10

    def combine(self, losses, ctx):
        return losses.sum() if self.all_ones else (self.user * losses).sum()
