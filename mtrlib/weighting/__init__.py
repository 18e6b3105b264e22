"""Task-weighting methods: one small file each, one interface (`Weighting`), found by discovery.

Every module here that defines a `Weighting` subclass with its own `name` is registered in
`WEIGHTINGS` (ordered by the class's `order`). To add a method, add a file: see
docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from ..registry import discover
from .base import StepContext, Weighting

WEIGHTINGS: dict[str, type[Weighting]] = discover(__name__, Weighting, "name")
METHODS = WEIGHTINGS  # the name used before the registry


def build_options(cls: type[Weighting], options: dict):
    """The method's typed Options from keyword settings; unknown keys are refused by name."""
    known = [f.name for f in dataclasses.fields(cls.Options)] if cls.Options else []
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"Weighting '{cls.name}' has no setting(s) {', '.join(unknown)}.",
                          fix=f"its settings are: {', '.join(known)}" if known else "it takes no settings")
    return cls.Options(**options) if cls.Options else None


def make_weighting(name: str, task_names: list[str], user_weights: dict[str, float], *, lr: float = 0.01,
                   **options) -> Weighting:
    """A weighting method by name, with its own settings as keywords (e.g. alpha=1.5 for GradNorm);
    `lr` is the training learning rate, for methods that learn their weights with their own step."""
    if name not in WEIGHTINGS:
        raise ConfigError(f"Unknown weighting '{name}'.", fix=f"choose one of: {', '.join(WEIGHTINGS)}")
    cls = WEIGHTINGS[name]
    return cls(task_names, user_weights, build_options(cls, options), lr=lr)


__all__ = ["WEIGHTINGS", "METHODS", "make_weighting", "build_options", "Weighting", "StepContext"]
