"""The single training loop: every model, every weighting method, events out, stop in.

Batches come from slicing pre-encoded tensors that are shuffled once per epoch (no per-sample
Dataset), data moves to the device once, evaluation runs in large batches under
`torch.inference_mode()`. The loop knows nothing about any particular architecture or
weighting method, and reads top to bottom; each concern is a named step in `mtrlib.train.steps`
(divergence guard, step window, early stopping, clock), in the style of nanoGPT's train.py.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from collections.abc import Callable

import torch

from ..config import TrainConfig, validate, weighting_options
from ..data import Dataset
from .device import DENORMAL_FIX, available_devices, cpu_compute, float_state, resolve_device, scrub_denormals
from .gradients import RepCapture, SharedParameters, TaskGradients
from ..eval.pointwise import popularity_baseline
from ..models import MultiTaskModel, build_model
from . import distributed
from .optim import training_optimizer
from .prepare import Prepared, load_dataset, prepare
from .steps import Clock, DivergenceGuard, EarlyStopping, StepWindow, snapshot
from .telemetry import GradientTelemetry, summary as grad_summary
from . import experts
from ..weighting import StepContext, make_weighting


@dataclass
class History:
    """Flat rows, ready for a DataFrame: keys like 'loss/click', 'weight/like', 'val/click/auc'."""
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)


@dataclass
class TrainResult:
    status: str  # finished | stopped | diverged
    reason: str
    model: MultiTaskModel
    history: History
    metrics: dict  # test split, per task
    val_metrics: dict
    baseline: dict  # popularity on the test split, per task
    samples_per_s: float
    elapsed: float
    best_epoch: int | None = None
    device: str = "cpu"
    event_overhead: float = 0.0  # share of training time spent building and sending step events
    grad: dict = field(default_factory=dict)  # gradient-conflict summary of the last epoch (mtrlib.train.telemetry.summary)
    experts: dict = field(default_factory=dict)  # expert health of the last epoch ({} without experts: mtrlib.train.experts)


def build(cfg: TrainConfig, prep: Prepared) -> MultiTaskModel:
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, prep.space.describe(), prep.space.tensors(), prep.tasks)


def train(cfg: TrainConfig, prep: Prepared, callback: Callable[[dict], None] | None = None,
          stop: threading.Event | None = None, model: MultiTaskModel | None = None) -> TrainResult:
    """Train one model; never raises for divergence or a stop request (see `TrainResult.status`).

    Events to `callback`: "start"; "step" every `cfg.log_every` steps and at the end of each
    epoch (mean train loss and effective weight per task, samples/s); "epoch" (validation
    metrics per task); "end". `stop.set()` ends the run after the current batch, keeping what
    was learned. With `cfg.early_stop_task`, the weights of the best validation epoch are
    restored at the end. On CPU it runs with `cfg.cpu_threads` threads (0 = auto = 1).
    """
    validate(cfg, prep.task_names)
    on_cpu = resolve_device(cfg.device).type == "cpu"
    # on an accelerator: threads and the denormal flag left alone (0, False)
    with cpu_compute((cfg.cpu_threads or 1) if on_cpu else 0, flush_denormal=on_cpu):
        return _train(cfg, prep, callback, stop, model)


def _train(cfg: TrainConfig, prep: Prepared, callback, stop, model) -> TrainResult:
    names, emit = prep.task_names, callback or (lambda e: None)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = (model or build(cfg, prep)).to(device)
    tr, va = prep.train.to(device), prep.val.to(device)
    model.fit_targets(tr.labels, tr.mask)
    weighting = make_weighting(cfg.weighting.name, names, cfg.weights, lr=cfg.lr, **weighting_options(cfg)).to(device)
    opt = training_optimizer(cfg, model, weighting, device)  # lazy updates for big id tables (mtrlib.train.optim)
    procs = distributed.current()  # one process, or this one's place among several (torchrun)
    forward = procs.wrap(model, weighting, device)  # batch -> per-task losses (through DDP when several)
    # gradient-conflict telemetry: one process only (under DDP each process's gradients are its
    # slice's, and the step's gradient is already averaged when telemetry would read it)
    measure = cfg.grad_telemetry and not procs.active
    shared = _shared_parameters(measure, model, tr, weighting)
    layer = shared.last_layer  # GradNorm's W (found when the method asks: `needs_shared_layer`)
    reps = RepCapture(shared, on=cfg.grad_space == "rep" and weighting.needs_task_gradients)
    telemetry = GradientTelemetry(shared, names, cfg.log_every, measure, weighting)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    n, steps_per_epoch = len(tr), max(1, -(-len(tr) // int(cfg.batch_size)))
    mask = tr.mask.to(torch.float32)
    health_sample = experts.fixed_sample(va) if cfg.expert_health and model.expert_modules() else None
    health = {}
    emit({"type": "start", "tasks": names, "n_train": n, "n_val": len(va), "steps_per_epoch": steps_per_epoch,
          "epochs": cfg.epochs, "device": str(device), "parameters": model.n_parameters()})

    guard = DivergenceGuard(cfg, names, each_step=device.type == "cpu")
    window = StepWindow(len(names), device, cfg.log_every)
    early = EarlyStopping(cfg, prep.tasks)
    clock, hist = Clock(), History()
    status, reason, step = "finished", "", 0
    last_good, epochs_done = snapshot(model), 0  # restored if the run diverges
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(n, generator=gen).to(device)
        window.start_epoch()
        ep_t = clock.now()
        for batch in procs.batches(tr, perm, mask, int(cfg.batch_size)):
            losses = forward(batch)
            ctx = StepContext(layer, step, epoch, mean=procs.mean, model=model, batch=batch,
                              grads=TaskGradients(shared, losses, reps.take(), mean=procs.mean))
            total = weighting.combine(losses, ctx)
            seen, seen_total, stop_all = procs.agree(losses, total, stop)  # every process's (one: these)
            if (why := guard.check_step(seen_total, seen, step + 1)) is not None:
                status, reason = "diverged", why
                break
            opt.zero_grad(set_to_none=True)
            with telemetry.measuring(ctx, total, losses, batch):  # per-task gradient cosines, when due
                procs.backward(forward, weighting, total, losses, ctx)
            opt.step()
            weighting.after_step(ctx)
            step += 1
            window.add(seen, batch.size)
            if window.due(step, batch):
                mean, rate, te = window.close()
                if (why := guard.check_window(mean, step)) is not None:
                    status, reason = "diverged", why
                    break
                row = _step_row(step, epoch - 1 + (window.seen - (epoch - 1) * n) / n, te - clock.t0,
                                window.seen, rate, names, mean, weighting.effective().tolist())
                row.update(telemetry.row())
                hist.steps.append(row)
                emit({"type": "step", **row})
                clock.events += window.reset() - te
            if procs.stop_requested(stop, stop_all):
                status, reason = "stopped", f"Stopped by the user at step {step} (epoch {epoch})."
                break
        ep_time = clock.now() - ep_t
        clock.train += ep_time
        if status != "finished":
            break
        if device.type == "cpu" and DENORMAL_FIX:
            scrub_denormals(float_state(model, opt))
        epoch_loss = window.epoch_sums / steps_per_epoch
        used = weighting.effective().tolist()  # the weights this epoch trained with
        weighting.end_epoch(epoch_loss)
        val = procs.evaluate(model, va, prep.tasks)
        row = _epoch_row(epoch, step, clock, window.seen, n / max(ep_time, 1e-9), names, epoch_loss.tolist(), used, val)
        health, health_cols = experts.measure(model, health_sample)  # one forward pass of the fixed sample
        row.update(health_cols)
        hist.epochs.append(row)
        emit({"type": "epoch", **row})
        last_good, epochs_done = snapshot(model), epoch
        if (why := early.update(epoch, val, last_good)) is not None:
            reason = why
            break

    reps.close()
    if status == "diverged":
        model.load_state_dict(last_good)  # the last finite weights (the initial ones in epoch 1)
    elif early.best_state is not None:
        model.load_state_dict(early.best_state)
        reason = reason or f"Restored the weights of epoch {early.best_epoch}, the best on {cfg.early_stop_task}."
    model.eval()
    trained = status != "diverged" or epochs_done > 0
    test_m = procs.evaluate(model, prep.test.to(device), prep.tasks) if trained else {}
    val_m = procs.evaluate(model, va, prep.tasks) if trained else {}
    base = _popularity(prep, model.n_items)
    sps = window.seen / clock.train if clock.train > 0 else 0.0
    overhead = clock.events / clock.train if clock.train > 0 else 0.0
    elapsed = clock.now()
    emit({"type": "end", "status": status, "reason": reason, "metrics": test_m, "samples_per_s": sps,
          "elapsed": elapsed, "event_overhead": overhead})
    return TrainResult(status, reason, model, hist, test_m, val_m, base, sps, elapsed, early.best_epoch, str(device),
                       overhead, grad_summary(hist.steps), health)


def _shared_parameters(measure: bool, model: MultiTaskModel, data, weighting) -> SharedParameters:
    """The parameters more than one task uses, probed once when telemetry or the method needs them
    (GradNorm's last shared layer: with two outputs or more, a retrieval task's included)."""
    if weighting.needs_shared_layer and len(model.output_tasks) >= 2:
        return SharedParameters.find(model, data)
    if not (measure or weighting.needs_task_gradients) or len(model.tasks) < 2:
        return SharedParameters.none()
    return SharedParameters.find(model, data)


def _step_row(step, epoch_pos, time_s, seen, rate, names, mean, weights) -> dict:
    """A progress event: mean train loss and effective weight per task over the window."""
    row = {"step": step, "epoch": epoch_pos, "time": time_s, "samples": seen, "samples_per_s": rate,
           "loss": float(sum(mean))}
    row.update({f"loss/{t}": v for t, v in zip(names, mean)})
    row.update({f"weight/{t}": v for t, v in zip(names, weights)})
    return row


def _epoch_row(epoch, step, clock, seen, epoch_rate, names, losses, weights, val) -> dict:
    """An epoch event: mean train loss, the weights it trained with, validation metrics per task."""
    row = {"epoch": epoch, "step": step, "time": clock.now(), "samples_per_s": seen / max(clock.train, 1e-9),
           "epoch_samples_per_s": epoch_rate}
    row.update({f"train_loss/{t}": v for t, v in zip(names, losses)})
    row.update({f"weight/{t}": v for t, v in zip(names, weights)})
    for t, ms in val.items():
        row.update({f"val/{t}/{k}": v for k, v in ms.items() if k != "n"})
    return row


def _popularity(prep: Prepared, n_items: int) -> dict:
    """The popularity baseline on the test split, per task (what every model must beat)."""
    tr, te = prep.train, prep.test
    return popularity_baseline(prep.tasks, tr.item.numpy(), tr.labels.numpy(), tr.mask.numpy(), te.item.numpy(),
                               te.labels.numpy(), te.mask.numpy(), n_items)


def run(cfg: TrainConfig, dataset: Dataset | None = None, **kw) -> tuple[TrainResult, Prepared]:
    """prepare + train in one call (scripts, tests, the CLI)."""
    prep = prepare(cfg, dataset)
    return train(cfg, prep, **kw), prep


# available_devices / resolve_device live in mtrlib.train.device; re-exported here, where pages and scripts import them
__all__ = ["prepare", "train", "run", "Prepared", "TrainResult", "History", "build", "load_dataset",
           "available_devices", "resolve_device"]
