"""Multi-task architectures: one small file each, found by discovery.

Every module here that defines an `Architecture` subclass (the description) with its own `arch`
is registered in `ARCHITECTURES` (ordered by the class's `order`); its `Model` is the network
(a `MultiTaskModel`), which `build_model` builds with the architecture's typed options. To add
an architecture, add a file: see docs/ARCHITECTURE.md.
"""
from __future__ import annotations

import torch

from ..registry import discover, options_of
from .base import Architecture, Body, MultiTaskModel
from .retrieval import Retrieval, with_retrieval

ARCHITECTURES: dict[str, type[Architecture]] = discover(__name__, Architecture, "arch")
MODELS = ARCHITECTURES  # the name used before the registry


def build_model(cfg, desc: dict, tables: dict[str, torch.Tensor], tasks) -> MultiTaskModel:
    """desc/tables come from FeatureSpace.describe() / FeatureSpace.tensors(); `cfg` is the
    ModelConfig. The network gets its architecture's options (`options_of`); with a retrieval
    task, it also gets its two towers and their options (mtrlib.models.retrieval)."""
    spec = ARCHITECTURES[cfg.arch]
    ctx = desc.get("context")
    if ctx:  # the context fields' width; the slot left out where a bias tower or nothing reads it (models.base.PositionBias)
        drop = bool(ctx.get("position")) and getattr(cfg, "position", "feature") != "feature"
        desc = {**desc, "context": {**ctx, "dim": getattr(cfg, "context_dim", None), "drop_position": drop}}
    if any(t.is_retrieval for t in tasks):
        return with_retrieval(spec.Model)(cfg, desc, tables, tasks, options_of(spec, cfg),
                                          retrieval=options_of(Retrieval, cfg))
    return spec.Model(cfg, desc, tables, tasks, options_of(spec, cfg))


__all__ = ["ARCHITECTURES", "MODELS", "build_model", "Architecture", "MultiTaskModel", "Body"]
