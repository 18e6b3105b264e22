"""Plain helpers shared by the test modules: import them (`from _mtr import tiny_cfg`).

Fixtures live in tests/conftest.py (they are requested by name, never imported); this module
holds what tests call: the one small-config builder, the worlds it is sized with, the cached
prepared data, and the AppTest helpers of the page tests.

`tiny_cfg` builds every small config of the suite. Each module passes the world it needs;
the sizes matter (speed, and what some tests measure), so each is named here once.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import time
from dataclasses import asdict

from mtrlib.config import DataConfig, TrainConfig
from mtrlib.data import WorldConfig
from mtrlib.train.loop import prepare

def in_ci() -> bool:
    """CI=true (as .ci/run sets it): what would skip on a laptop (no browser, no real data) must fail."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


# Worlds, by what the tests need of them. `world=` overrides TINY field by field, so each
# named world spells out all four size fields (its own seed included). The suite's worlds keep
# the click -> like funnel (a like observed only after a click: tasks click, like|click,
# dwell|click), which the model, ESMM and conditional-task tests read; the built-in default
# asks for a like on every impression.
TINY = dict(n_users=80, n_items=40, impressions_per_user=20, seed=3, like_observed="clicks")  # models, training, weighting
PAGES = dict(n_users=200, n_items=60, impressions_per_user=20, seed=0)  # pages, jobs, recommendations
STORE = dict(n_users=150, n_items=50, impressions_per_user=15, seed=0)  # the run store, projections
COLD = dict(n_users=60, n_items=40, impressions_per_user=10, seed=0)  # cold-start items (text features)


def tiny_cfg(arch: str = "mmoe", *, world: dict | None = None, model: dict | None = None,
             data: dict | None = None, **train) -> TrainConfig:
    """A small TrainConfig: architecture `arch` with its `model` knobs (ModelConfig fields), the
    TINY world changed by `world` (WorldConfig fields), `data` (other DataConfig fields: split,
    tasks, source, use_features, ...) and `train` (TrainConfig fields: epochs, lr, seed, ...).
    Everything not given keeps TrainConfig's default. The arguments are copied: a config never
    shares a list with a module's constants or with another config."""
    model, data, train = copy.deepcopy((model or {}, data or {}, train))
    cfg = TrainConfig.from_dict({**train, "model": {"arch": arch, **model}})  # flat knob names are migrated
    cfg.data = DataConfig(world=WorldConfig(**{**TINY, **(world or {})}), **data)
    return cfg


@functools.lru_cache(maxsize=8)
def _prep(key: str):
    return prepare(TrainConfig.from_dict(json.loads(key)))


def tiny_prep(cfg: TrainConfig):
    """The prepared data for cfg's data settings and seed, cached: each is prepared once per
    session (tests must not change it in place)."""
    assert not cfg.model.text_features, "tiny_prep prepares no text vectors: call prepare(cfg)"
    return _prep(json.dumps({"data": asdict(cfg.data), "seed": cfg.seed}, sort_keys=True))


# -- page tests (streamlit.testing.v1.AppTest) ---------------------------------------------------

def app_test(cfg: TrainConfig | None = None, page: str | None = None):
    """The app under streamlit.testing.v1.AppTest, with `cfg` as the session's setup, run once
    (then switched to `page`, e.g. "pages/train.py"); fails on an exception."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=120)
    if cfg is not None:
        at.session_state["cfg"] = cfg
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


app = app_test  # the short name the history tests use


def shown(markdown: str) -> str:
    """What a reader sees: user text is markdown-escaped by the pages (pages._shared.plain)."""
    return str(markdown).replace("\\", "")


def wait_job(at, timeout: float = 120) -> object:
    """The session's training job, once it has ended (fails after `timeout` seconds)."""
    job = at.session_state["job"]
    t0 = time.time()
    while job.active and time.time() - t0 < timeout:
        time.sleep(0.2)
    assert not job.active, f"job still {job.state} after {timeout}s"
    return job
