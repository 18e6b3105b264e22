"""The training loop: events, reproducibility, stop within one batch, divergence as a status,
early stopping with the best weights restored, batch size 1, event cost, config round trip."""
from __future__ import annotations

import math
import threading

import pytest
import torch

from _mtr import tiny_cfg, tiny_prep
from mtrlib.errors import TrainingError
from mtrlib.config import ARCHS, TrainConfig, validate
from mtrlib.train.loop import available_devices, resolve_device, run, train
from mtrlib.train.predict import evaluate, predict
from mtrlib.errors import UserError


def test_events_history_and_result():
    cfg = tiny_cfg("mmoe", epochs=2, log_every=3)
    prep = tiny_prep(cfg)
    events = []
    res = train(cfg, prep, callback=events.append)
    assert res.status == "finished" and res.reason == ""
    types = [e["type"] for e in events]
    assert types[0] == "start" and types[-1] == "end"
    assert types.count("epoch") == 2 and "step" in types
    start = events[0]
    assert start["tasks"] == ["click", "like", "dwell"] and start["n_train"] == len(prep.train)
    steps = [e for e in events if e["type"] == "step"]
    assert [s["step"] for s in steps] == [r["step"] for r in res.history.steps]
    spe = start["steps_per_epoch"]
    assert {s["step"] for s in steps} == set(range(3, 2 * spe + 1, 3)) | {spe, 2 * spe}
    for row in res.history.steps:
        for t in ("click", "like", "dwell"):
            assert math.isfinite(row[f"loss/{t}"]) and row[f"weight/{t}"] == 1.0
        assert row["samples_per_s"] > 0 and row["time"] >= 0 and 0 < row["epoch"] <= 2
    ep = res.history.epochs[-1]
    assert {"val/click/auc", "val/click/logloss", "val/like/auc", "val/dwell/rmse", "train_loss/like"} <= set(ep)
    assert set(res.metrics) == {"click", "like", "dwell"} and 0 < res.metrics["like"]["auc"] < 1
    assert res.metrics["like"]["n"] < res.metrics["click"]["n"]  # conditional: where clicked only
    assert set(res.baseline) == {"click", "like", "dwell"}
    assert res.samples_per_s > 0 and res.device == "cpu"
    assert events[-1]["metrics"] == res.metrics


def test_reproducible_on_cpu():
    cfg = tiny_cfg("ple", epochs=2, model={"dropout": 0.1}, weighting="uncertainty")
    prep = tiny_prep(cfg)
    a, b = train(cfg, prep), train(cfg, prep)
    assert a.metrics == b.metrics
    assert [r["loss/like"] for r in a.history.steps] == [r["loss/like"] for r in b.history.steps]
    for (k, v), (k2, v2) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    other = tiny_cfg("ple", epochs=2, model={"dropout": 0.1}, weighting="uncertainty", seed=1)
    assert train(other, tiny_prep(other)).metrics != a.metrics


def test_stop_flag_ends_within_one_batch_and_keeps_the_partial_run():
    cfg = tiny_cfg("mmoe", epochs=5, log_every=1, batch_size=64)
    prep = tiny_prep(cfg)
    stop = threading.Event()
    seen = []

    def cb(e):
        if e["type"] == "step":
            seen.append(e["step"])
            if e["step"] == 3:
                stop.set()

    res = train(cfg, prep, callback=cb, stop=stop)
    assert res.status == "stopped" and "step 3" in res.reason
    assert seen == [1, 2, 3]  # not one more batch
    assert len(res.history.steps) == 3 and res.history.epochs == []
    assert set(res.metrics) == {"click", "like", "dwell"}  # the partial model is still evaluated


def test_stop_from_another_thread():
    cfg = tiny_cfg("shared-bottom", epochs=200, log_every=1, batch_size=32)
    prep = tiny_prep(cfg)
    stop = threading.Event()
    steps = []
    first = threading.Event()

    def cb(e):
        if e["type"] == "step":
            steps.append(e["step"])
            first.set()

    out = {}
    th = threading.Thread(target=lambda: out.setdefault("res", train(cfg, prep, callback=cb, stop=stop)))
    th.start()
    assert first.wait(60)
    stop.set()
    at = len(steps)
    th.join(60)
    res = out["res"]
    assert res.status == "stopped"
    assert res.history.steps[-1]["step"] <= steps[at - 1] + 1  # at most one more batch
    assert len(res.history.epochs) < 200


@pytest.mark.parametrize("optimizer,lr", [("adam", 5.0), ("sgd", 5.0)])
def test_divergence_is_a_status_with_a_readable_reason(optimizer, lr):
    cfg = tiny_cfg("shared-bottom", epochs=3, optimizer=optimizer, lr=lr, batch_size=64)
    events = []
    res = train(cfg, tiny_prep(cfg), callback=events.append)
    assert res.status == "diverged"
    assert f"learning rate {lr:g} is too high" in res.reason and "try 0.5" in res.reason
    assert res.metrics == {}  # no finished epoch to report
    assert all(torch.isfinite(p).all() for p in res.model.parameters())  # the last finite weights
    assert events[-1]["type"] == "end" and events[-1]["status"] == "diverged"


def test_divergence_after_a_good_epoch_keeps_that_epoch():
    cfg = tiny_cfg("shared-bottom", epochs=3, lr=0.01, batch_size=256)
    prep = tiny_prep(cfg)
    calls = {"n": 0}
    from mtrlib.train.loop import build
    model = build(cfg, prep)
    orig = model.task_losses
    spe = math.ceil(len(prep.train) / cfg.batch_size)

    def task_losses(raw, y, m):  # turns NaN at the second step of epoch 2 (training steps counted, not the
        calls["n"] += model.training  # eval-mode probe of which parameters the tasks share)
        out = orig(raw, y, m)
        return out * float("nan") if calls["n"] > spe + 1 else out

    model.task_losses = task_losses
    res = train(cfg, prep, model=model)
    assert res.status == "diverged" and "NaN" in res.reason and f"step {spe + 2}" in res.reason
    assert "Try a lower learning rate (e.g. 0.001)" in res.reason  # 0.01 is not "too high" for Adam
    assert len(res.history.epochs) == 1 and res.metrics  # weights of epoch 1 are restored and evaluated


def test_early_stopping_restores_the_best_epoch():
    cfg = tiny_cfg("shared-bottom", epochs=25, lr=0.03, weight_decay=0.0, early_stop_task="like", patience=2,
                   batch_size=128)
    res = train(cfg, tiny_prep(cfg))
    aucs = [e["val/like/auc"] for e in res.history.epochs]
    assert res.best_epoch == 1 + max(range(len(aucs)), key=lambda k: aucs[k])
    assert len(aucs) < 25 and res.reason.startswith("Early stop")
    assert len(aucs) == res.best_epoch + 2  # patience 2
    # the model returned is the best epoch's: its validation AUC is the one recorded then
    assert res.val_metrics["like"]["auc"] == pytest.approx(aucs[res.best_epoch - 1], abs=1e-12)


@pytest.mark.parametrize("arch", ARCHS)
def test_batch_size_one_trains(arch):
    cfg = tiny_cfg(arch, world={"n_users": 12, "n_items": 10, "impressions_per_user": 5}, epochs=1, batch_size=1,
                   log_every=7)
    res = train(cfg, tiny_prep(cfg))
    assert res.status == "finished"
    assert all(math.isfinite(r["loss/click"]) for r in res.history.steps)
    assert res.history.steps[-1]["step"] == len(tiny_prep(cfg).train)


def test_event_cost_is_small():
    cfg = tiny_cfg("mmoe", world={"n_users": 400}, epochs=2, batch_size=256)  # default log_every=10
    res = train(cfg, tiny_prep(cfg))
    assert res.event_overhead < 0.02, res.event_overhead


def test_cpu_threads_are_set_while_training_and_restored():
    before = torch.get_num_threads()
    inside = []
    cfg = tiny_cfg("shared-bottom", epochs=1)
    train(cfg, tiny_prep(cfg), callback=lambda e: inside.append(torch.get_num_threads()))
    assert set(inside) == {1} and torch.get_num_threads() == before
    cfg = tiny_cfg("shared-bottom", epochs=1, cpu_threads=2)
    inside.clear()
    train(cfg, tiny_prep(cfg), callback=lambda e: inside.append(torch.get_num_threads()))
    assert set(inside) == {2} and torch.get_num_threads() == before


def test_predict_and_evaluate_helpers():
    cfg = tiny_cfg("esmm", epochs=1)
    prep = tiny_prep(cfg)
    res = train(cfg, prep)
    p = predict(res.model, prep.test, batch=7)
    assert p.shape == (len(prep.test), 3)
    assert predict(res.model, prep.test.subset([])).shape == (0, 3)
    assert evaluate(res.model, prep.test, prep.tasks) == res.metrics


def test_run_is_prepare_plus_train():
    cfg = tiny_cfg("shared-bottom", epochs=1)
    res, prep = run(cfg)
    assert res.status == "finished" and prep.task_names == ["click", "like", "dwell"]


def test_config_json_round_trip_and_validation():
    cfg = tiny_cfg("ple", model={"levels": 2}, weights={"like": 2.0}, early_stop_task="like", cpu_threads=2)
    back = TrainConfig.from_json(cfg.to_json())
    assert back == cfg
    with pytest.raises(UserError, match="Unknown setting"):
        TrainConfig.from_dict({"modle": {}})
    for bad in (dict(lr=0.0), dict(patience=0), dict(cpu_threads=-1), dict(batch_size=0),
                dict(weighting="magic"), dict(optimizer="lion")):
        with pytest.raises(UserError):
            validate(tiny_cfg(**bad))
    # settings from JSON or a URL can hold any type: refused by name, never a TypeError
    for bad in (dict(lr="0.01"), dict(batch_size=2.5), dict(epochs=True), dict(weight_decay=-1.0),
                dict(model={"arch": "shared-bottom", "shared": None}), dict(model={"emb_dim": 8.0})):
        with pytest.raises(UserError):
            validate(tiny_cfg(**bad))
    with pytest.raises(UserError, match="at most 64"):
        validate(tiny_cfg("ple", model={"specific_experts": 1000}))
    with pytest.raises(UserError, match="must be an object"):
        TrainConfig.from_dict({"model": 5})
    with pytest.raises(UserError, match="must be an object"):
        TrainConfig.from_dict({"data": {"world": [1]}})
    with pytest.raises(UserError, match="unknown task"):
        validate(tiny_cfg(weights={"nope": 1.0}), ["click", "like"])
    with pytest.raises(UserError, match="weight 0"):
        validate(tiny_cfg(weights={"click": 0, "like": 0}), ["click", "like"])


def test_devices():
    devs = available_devices()
    assert devs[-1] == "cpu"
    assert resolve_device("auto").type == devs[0]
    assert resolve_device("cpu").type == "cpu"
    if "cuda" not in devs:
        with pytest.raises(TrainingError, match="not available"):
            resolve_device("cuda")
