"""Task-weighting methods: one small file each, one interface (`Weighting`)."""
from .base import StepContext, Weighting
from .dwa import DWA
from .fixed import Fixed
from .gradnorm import GradNorm
from .uncertainty import Uncertainty

METHODS: dict[str, type[Weighting]] = {"fixed": Fixed, "uncertainty": Uncertainty, "gradnorm": GradNorm, "dwa": DWA}


def make_weighting(name: str, task_names: list[str], user_weights: dict[str, float], **options) -> Weighting:
    return METHODS[name](task_names, user_weights, **options)


__all__ = ["METHODS", "make_weighting", "Weighting", "StepContext"]
