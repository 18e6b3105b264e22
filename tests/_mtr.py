"""Shared helpers for the models/training tests: tiny synthetic worlds, prepared once."""
from __future__ import annotations

import functools

from mtrlib.config import ModelConfig, TrainConfig
from mtrlib.data import WorldConfig
from mtrlib.train import prepare

TINY = dict(n_users=80, n_items=40, impressions_per_user=20, seed=3)


def tiny_cfg(arch: str = "mmoe", world: dict | None = None, model: dict | None = None, **train_kw) -> TrainConfig:
    cfg = TrainConfig(model=ModelConfig(arch=arch, **(model or {})), **train_kw)
    cfg.data.world = WorldConfig(**{**TINY, **(world or {})})
    return cfg


@functools.lru_cache(maxsize=8)
def _prep(world_items: tuple, seed: int):
    cfg = TrainConfig(seed=seed)
    cfg.data.world = WorldConfig(**dict(world_items))
    return prepare(cfg)


def tiny_prep(cfg: TrainConfig):
    """The prepared data for cfg's world and seed (cached: prepare once per module run)."""
    return _prep(tuple(sorted(cfg.data.world.to_dict().items())), cfg.seed)


def one_thread():
    """For tests that run torch outside `train` (which picks its own thread count): one
    intra-op thread, so that a busy machine does not stall every small operation."""
    from mtrlib.device import cpu_compute
    return cpu_compute(1)
