"""Issue 9, bad configurations: refused before training with a message that says what to
change, or -- for a learning rate that only turns out too high once training runs -- ended
cleanly with status "diverged" and a readable reason. Never a raw exception.

Every refusal is checked on the three ways in: `config.validate`, `train.prepare` (which the
UI and CLI call first) and `train.train` given an already prepared dataset (the UI may change
settings between the two). A refusal from `train` must come before the first training event.
"""
from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtrlib.errors import UserError
from mtrlib.config import TrainConfig, validate
from mtrlib.data import make_world
from mtrlib.train import loop as T
from mtrlib.train.predict import predict

from _mtr import tiny_cfg

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["click", "like", "dwell"]


@pytest.fixture(scope="module")
def world():
    """A tiny world (800 rows): every refusal below costs milliseconds."""
    return make_world(n_users=80, n_items=40, n_genres=3, correlation=0.5, seed=0, impressions_per_user=10)


# A small, valid config: tiny_cfg(**(SMALL | changes)), where changes are tiny_cfg's arguments
# (a change of the network: model=dict(NET, experts=[0])). The world is `world` above, passed
# to prepare, so the config's own world is never built.
NET = dict(emb_dim=8, shared=[16], experts=[16], towers=[8])
SMALL = dict(model=NET, epochs=1, batch_size=256, device="cpu", log_every=2)


@pytest.fixture(scope="module")
def prepared(world):
    return T.prepare(tiny_cfg(**SMALL), world)


REFUSED = {
    # layers
    "zero-width shared layer": (dict(arch="shared-bottom", model=dict(NET, shared=[64, 0])),
                                ["Every shared layer needs a width of at least 1", "[64, 0]"]),
    "zero-width expert layer": (dict(model=dict(NET, experts=[0])), ["Every expert layer needs a width of at least 1"]),
    "negative tower size": (dict(model=dict(NET, towers=[-3])),
                            ["Every tower layer needs a width of at least 1", "[-3]"]),
    "absurdly wide layer": (dict(arch="shared-bottom", model=dict(NET, shared=[10**6])), ["width 1000000 is too wide", "at most 4096"]),
    "no shared layers for shared-bottom": (dict(arch="shared-bottom", model=dict(NET, shared=[])),
                                           ["needs at least one shared layer"]),
    "no expert layers": (dict(model=dict(NET, experts=[])), ["Experts need at least one layer"]),
    "zero embedding": (dict(model=dict(NET, emb_dim=0)), ["Embedding dimension must be 1..512 (got 0)"]),
    "negative embedding": (dict(model=dict(NET, emb_dim=-8)), ["Embedding dimension must be 1..512 (got -8)"]),
    # experts
    "1000 experts (MMoE)": (dict(model=dict(NET, n_experts=1000)), ["MMoE takes 1 to 64 experts (got 1000)"]),
    "0 experts (MMoE)": (dict(model=dict(NET, n_experts=0)), ["(got 0)"]),
    "PLE with zero experts": (dict(arch="ple", model=dict(NET, specific_experts=0, shared_experts=0)),
                              ["PLE needs at least one expert per task"]),
    "PLE with negative experts": (dict(arch="ple", model=dict(NET, specific_experts=-1, shared_experts=3)),
                                  ["PLE needs at least one expert per task"]),
    "PLE with 0 levels": (dict(arch="ple", model=dict(NET, levels=0)), ["1 to 4 extraction levels (got 0)"]),
    "dropout 1": (dict(model=dict(NET, dropout=1.0)), ["Dropout must be in [0, 1) (got 1.0)"]),
    # optimisation
    "lr 0": (dict(lr=0.0), ["Learning rate must be above 0 (got 0.0)"]),
    "lr negative": (dict(lr=-0.01), ["Learning rate must be above 0 (got -0.01)"]),
    "lr NaN": (dict(lr=float("nan")), ["Learning rate must be above 0 (got nan)"]),
    "lr 1e3": (dict(lr=1e3), ["Learning rate 1000.0 is far too high", "0.0001..0.1"]),
    "lr inf": (dict(lr=float("inf")), ["far too high"]),
    "epochs 0": (dict(epochs=0), ["epochs must be at least 1"]),
    "epochs negative": (dict(epochs=-3), ["epochs must be at least 1"]),
    "batch 0": (dict(batch_size=0), ["Batch size and epochs must be at least 1"]),
    "patience 0": (dict(early_stop_task="click", patience=0), ["patience must be at least 1"]),
    # weights
    "every task weight 0": (dict(weights={"click": 0, "like": 0, "dwell": 0.0}),
                            ["Every task has weight 0", "give at least one task a weight above 0"]),
    "weights naming unknown tasks": (dict(weights={"clik": 1.0, "dwel": 2.0}),
                                     ["Weights name unknown task(s): clik, dwel", "tasks are: click, like, dwell"]),
    "negative weight": (dict(weights={"click": -1}), ["Task weight for 'click' must be a number >= 0"]),
    "NaN weight": (dict(weights={"like": float("nan")}), ["Task weight for 'like'", "(got nan)"]),
    "early stop on unknown task": (dict(early_stop_task="buy"), ["watches task 'buy', which is not defined"]),
    # names
    "unknown architecture": (dict(arch="transformer"),
                             ["Unknown model 'transformer'", "single, shared-bottom, mmoe, ple, stem, adatt, home, pepnet, esmm"]),
    "unknown weighting": (dict(weighting="magic"), ["Unknown weighting 'magic'", "fixed, uncertainty"]),
    "unknown optimiser": (dict(optimizer="lbfgs"), ["Unknown optimiser 'lbfgs'", "adam, adamw, sgd"]),
    "unknown device": (dict(device="tpu"), ["Unknown device 'tpu'", "auto, cpu, cuda"]),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_before_training(name, world, prepared):
    changes, parts = REFUSED[name]
    bad = tiny_cfg(**(SMALL | changes))

    def check(e):
        msg = str(e.value)
        for p in parts:
            assert p in msg, (p, msg)
        assert e.value.fix, "a refusal says what to do"
        assert "Traceback" not in msg

    with pytest.raises(UserError) as e:
        validate(copy.deepcopy(bad), TASKS)
    check(e)
    with pytest.raises(UserError) as e:
        T.prepare(copy.deepcopy(bad), world)
    check(e)
    events = []
    with pytest.raises(UserError) as e:
        T.train(copy.deepcopy(bad), prepared, callback=events.append)
    check(e)
    assert events == [], "refused before the first training event"


DATA_REFUSED = {
    "task on a missing column": (dict(data=dict(tasks=["buy=purchased"])),
                                 ["Task 'buy' uses column 'purchased'", "use one of: click, like, dwell"]),
    "threshold on a missing column": (dict(data=dict(tasks=["click=click", "good=stars>=4"])),
                                      ["column 'stars'", "click, like, dwell"]),
    "task conditioned on an unknown task": (dict(data=dict(tasks=["like=like|clicked"])),
                                            ["there is no task 'clicked'"]),
    "task that is not NAME=DEF": (dict(data=dict(tasks=["click"])), ["not of the form NAME=DEFINITION"]),
    "implicit task with 0 negatives": (dict(data=dict(tasks=["seen=implicit"], negatives=0)),
                                       ["at least 1 sampled negative"]),
    "unknown split": (dict(data=dict(split="weird")), ["Unknown split 'weird'"]),
    "validation + test leave nothing to train on": (dict(data=dict(val_frac=0.6, test_frac=0.5)),
                                                    ["leave room for training"]),
    "binary task with one class": (dict(data=dict(tasks=["all=dwell>=-1"])), ["only positive labels"]),
}


@pytest.mark.parametrize("name", list(DATA_REFUSED))
def test_data_and_task_settings_refused_in_prepare(name, world):
    changes, parts = DATA_REFUSED[name]
    with pytest.raises(UserError) as e:
        T.prepare(tiny_cfg(**(SMALL | changes)), world)
    for p in parts:
        assert p in str(e.value), (p, str(e.value))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_device_refused_before_training(prepared):
    events = []
    with pytest.raises(UserError, match="Device 'cuda' is not available on this machine"):
        T.train(tiny_cfg(**(SMALL | dict(device="cuda"))), prepared, callback=events.append)
    assert events == []


def test_config_files_with_unknown_or_malformed_settings_are_refused():
    with pytest.raises(UserError, match=r"Unknown setting\(s\) in config: modle"):
        TrainConfig.from_dict({"lr": 0.1, "modle": {}})
    with pytest.raises(UserError, match=r"Unknown setting\(s\) in config.model: n_expert\."):
        TrainConfig.from_dict({"model": {"n_expert": 3}})
    with pytest.raises(UserError, match="not valid JSON"):
        TrainConfig.from_json('{"lr": 0.1,')
    with pytest.raises(UserError, match="must hold a JSON object"):
        TrainConfig.from_json("[1, 2]")


# ---------------------------------------------------------------- settings that train


def test_batch_larger_than_the_data_trains(world):
    c = tiny_cfg(**(SMALL | dict(batch_size=10**7, epochs=2)))
    prep = T.prepare(c, world)
    events = []
    r = T.train(c, prep, callback=events.append)
    assert r.status == "finished", r.reason
    start = next(e for e in events if e["type"] == "start")
    assert start["steps_per_epoch"] == 1
    assert len(r.history.epochs) == 2
    assert all(math.isfinite(v) for k, v in r.history.epochs[-1].items() if k.startswith("train_loss/"))


def test_some_weights_zero_trains(world):
    c = tiny_cfg(**(SMALL | dict(weights={"click": 0.0, "like": 0.0})))  # dwell alone still learns
    r = T.train(c, T.prepare(c, world))
    assert r.status == "finished"


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_too_high_learning_rate_ends_cleanly_as_diverged(world, optimizer):
    """lr 5 passes validation (it is not absurd for every optimiser) and blows up in training."""
    c = tiny_cfg(**(SMALL | dict(lr=5.0, optimizer=optimizer, epochs=3, batch_size=64)))
    prep = T.prepare(c, world)
    events = []
    r = T.train(c, prep, callback=events.append)
    assert r.status == "diverged"
    assert r.reason.startswith("Training diverged at step"), r.reason
    assert "learning rate" in r.reason.lower(), "the reason says what to change"
    assert any(f"task '{t}'" in r.reason for t in TASKS), r.reason
    assert events[-1]["type"] == "end" and events[-1]["status"] == "diverged"
    assert len(r.history.epochs) < c.epochs, "diverging ends the run early"
    # the model keeps its last finite weights: it still predicts numbers, not NaN
    preds = predict(r.model, prep.test)
    assert np.isfinite(preds).all()
    for row in r.history.steps:
        assert all(math.isfinite(v) for k, v in row.items() if isinstance(v, float) and k.startswith("loss/"))


# ---------------------------------------------------------------- values of the wrong type or size (config files, URLs)


def test_ple_with_1000_experts_is_refused():
    with pytest.raises(UserError):
        validate(tiny_cfg(**(SMALL | dict(arch="ple", model=dict(NET, specific_experts=1000)))), TASKS)


def test_text_learning_rate_is_refused():
    with pytest.raises(UserError):
        validate(tiny_cfg(**(SMALL | dict(lr="0.01"))), TASKS)


def test_null_layer_sizes_are_refused():
    with pytest.raises(UserError):
        validate(tiny_cfg(**(SMALL | dict(arch="shared-bottom", model=dict(NET, shared=None)))), TASKS)


def test_fractional_batch_size_is_refused():
    with pytest.raises(UserError):
        validate(tiny_cfg(**(SMALL | dict(batch_size=2.5))), TASKS)


def test_non_object_section_in_config_file_is_refused():
    with pytest.raises(UserError):
        TrainConfig.from_dict({"model": 5})


# ---------------------------------------------------------------- the same refusals through `python -m mtrlib train`

WORLD = ["--users", "80", "--items", "40", "--impressions", "10", "--genres", "3", "--epochs", "1", "--quiet"]
CLI_REFUSED = {
    "zero-width layer": (["--model", "shared-bottom", "--shared", "64,0"],
                         ["Every shared layer needs a width of at least 1 (got [64, 0])"]),
    "task on a missing column": (["--task", "buy=purchased"],
                                 ["Task 'buy' uses column 'purchased'", "use one of: click, like, dwell"]),
    "every task weight 0": (["--weights", "click=0,like=0,dwell=0"], ["Every task has weight 0"]),
    "unknown architecture": (["--model", "transformer"], ["invalid choice: 'transformer'"]),
}


def _popen(args: list[str], tmp: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MTR_RUN_STORE"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen([sys.executable, "-m", "mtrlib", "train", *args, "--store", str(tmp / "store")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def cli_train_results(tmp_path_factory):
    """All CLI cases at once (each its own process); each store holds one earlier run that must survive."""
    started = {}
    for name, (args, _) in CLI_REFUSED.items():
        tmp = tmp_path_factory.mktemp("cli_train")
        old = tmp / "store" / "earlier-run"
        old.mkdir(parents=True)
        (old / "run.json").write_text('{"status": "finished"}')
        started[name] = (_popen(WORLD + args, tmp), tmp)
    results = {}
    for name, (p, tmp) in started.items():
        out, err = p.communicate(timeout=300)
        store = tmp / "store"
        results[name] = {"rc": p.returncode, "stdout": out, "stderr": err,
                         "store": sorted(x.name for x in store.iterdir()),
                         "earlier": (store / "earlier-run" / "run.json").read_text()}
    return results


@pytest.mark.parametrize("name", list(CLI_REFUSED))
def test_cli_train_refuses_bad_settings_with_exit_2(name, cli_train_results):
    r = cli_train_results[name]
    assert r["rc"] == 2, r
    for part in CLI_REFUSED[name][1]:
        assert part in r["stderr"], (part, r["stderr"])
    assert "Traceback" not in r["stderr"] + r["stdout"]
    assert r["store"] == ["earlier-run"], "nothing was written to the run store"
    assert r["earlier"] == '{"status": "finished"}', "the earlier run is untouched"

