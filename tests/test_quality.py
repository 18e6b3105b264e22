"""Quality, measured then asserted with a margin (numbers in docs/RESULTS-models.md).

- The default run on the built-in world: every architecture beats the popularity baseline on
  every binary task's test AUC.
- ml-latest-small, the models issue's protocol (watched=implicit, liked=rating>=4 over the whole
  space, 4 negatives per rating, per-user temporal split with each user's last 20% as test,
  genres as item features), default settings: floors a little under what we measured, and
  above torch-rechub 0.9.0's published numbers on the same protocol.
"""
from __future__ import annotations

import pytest

import _movielens as ml
from mtrlib.config import ARCHS, TrainConfig
from mtrlib.train.loop import prepare, train


@pytest.fixture(scope="module")
def world_prep():
    return prepare(TrainConfig())


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_beats_popularity_on_the_default_world(world_prep, arch):
    cfg = TrainConfig()
    cfg.model.arch = arch
    res = train(cfg, world_prep)
    assert res.status == "finished"
    for task in ("click", "like"):
        ours, pop = res.metrics[task]["auc"], res.baseline[task]["auc"]
        # measured (seed 0): click 0.74-0.78 vs 0.49, like 0.73-0.77 vs 0.59
        assert ours > pop + 0.08, (task, ours, pop)
        assert ours > 0.68, (task, ours)
    assert res.metrics["dwell"]["rmse"] < res.baseline["dwell"]["rmse"]
    assert res.elapsed < 60  # a live demo: measured 1-4 s on 2 shared cores (world of 1,500 users)


# torch-rechub 0.9.0, ids only, 5 epochs, this protocol (the models issue)
RECHUB = {"shared-bottom": (0.838, 0.846), "mmoe": (0.830, 0.842), "ple": (0.834, 0.841)}
POPULARITY = (0.786, 0.795)

needs_ml = pytest.mark.skipif(not ml.available(), reason=f"ml-latest-small not found at {ml.ML_DIR}")


@pytest.fixture(scope="module")
def ml_prep():
    return prepare(ml.ml_config("mmoe"), ml.load_ml())


@needs_ml
@pytest.mark.slow
def test_mmoe_beats_torch_rechub_on_ml_latest_small(ml_prep):
    """MMoE with default settings (about 15-35 s here). Measured: watched 0.8405, liked 0.8554."""
    res = train(ml.ml_config("mmoe"), ml_prep)
    assert res.status == "finished"
    watched, liked = res.metrics["watched"]["auc"], res.metrics["liked"]["auc"]
    assert watched > 0.836 and liked > 0.850, (watched, liked)
    assert watched > RECHUB["mmoe"][0] and liked > RECHUB["mmoe"][1]
    assert res.baseline["watched"]["auc"] == pytest.approx(POPULARITY[0], abs=0.01)
    assert res.baseline["liked"]["auc"] == pytest.approx(POPULARITY[1], abs=0.015)
