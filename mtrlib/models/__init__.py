"""Multi-task architectures: one small file each, found by discovery.

Every module here that defines a `MultiTaskModel` subclass with its own `arch` is registered
in `ARCHITECTURES` (ordered by the class's `order`); `build_model` picks one by name. To add an
architecture, add a file: see docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import torch

from ..registry import discover
from .base import Body, MultiTaskModel
from .retrieval import with_retrieval

ARCHITECTURES: dict[str, type[MultiTaskModel]] = discover(__name__, MultiTaskModel, "arch")
MODELS = ARCHITECTURES  # the name used before the registry


def build_model(cfg, desc: dict, tables: dict[str, torch.Tensor], tasks) -> MultiTaskModel:
    """desc/tables come from FeatureSpace.describe() / FeatureSpace.tensors(). With a retrieval
    task, the architecture gets its two towers (mtrlib.models.retrieval)."""
    cls = ARCHITECTURES[cfg.arch]
    if any(t.is_retrieval for t in tasks):
        cls = with_retrieval(cls)
    return cls(cfg, desc, tables, tasks)


__all__ = ["ARCHITECTURES", "MODELS", "build_model", "MultiTaskModel", "Body"]
