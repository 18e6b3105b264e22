"""Fixed task weights: the user's what-if knob (default 1 for every task)."""
from .base import Weighting


class Fixed(Weighting):
    name = "fixed"
    paper = "linear scalarisation with user-chosen weights"

    def combine(self, losses, ctx):
        return losses.sum() if self.all_ones else (self.user * losses).sum()
