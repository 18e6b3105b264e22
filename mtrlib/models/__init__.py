"""Multi-task architectures: one small file each; `build_model` picks one by name."""
from __future__ import annotations

import torch

from ..config import ModelConfig
from .base import Body, MultiTaskModel
from .esmm import ESMM
from .mmoe import MMoE
from .ple import PLE
from .shared_bottom import SharedBottom
from .single import SingleTask

MODELS: dict[str, type[MultiTaskModel]] = {
    "single": SingleTask, "shared-bottom": SharedBottom, "mmoe": MMoE, "ple": PLE, "esmm": ESMM,
}


def build_model(cfg: ModelConfig, desc: dict, tables: dict[str, torch.Tensor], tasks) -> MultiTaskModel:
    """desc/tables come from FeatureSpace.describe() / FeatureSpace.tensors()."""
    return MODELS[cfg.arch](cfg, desc, tables, tasks)


__all__ = ["MODELS", "build_model", "MultiTaskModel", "Body"]
