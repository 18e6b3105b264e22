"""Fixed task weights: the user's what-if knob (default 1 for every task)."""
from .base import Weighting


class Fixed(Weighting):
    name = "fixed"
    paper = "linear scalarisation with user-chosen weights"
