"""The single training loop: every model, every weighting method, events out, stop in.

Batches come from slicing pre-encoded tensors that are shuffled once per epoch (no per-sample
Dataset), data moves to the device once, evaluation runs in large batches under
`torch.inference_mode()`. The loop knows nothing about any particular architecture.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from .config import TrainConfig, validate, weighting_options
from .data import (DataError, Dataset, EncodedExamples, Examples, FeatureSpace, Split, build_examples,
                   encode_examples, make_world, split)
from .data.tasks import TaskSpec, parse_tasks
from .device import DENORMAL_FIX, available_devices, cpu_compute, resolve_device, text_device_for
from .metrics import headline, popularity_baseline, task_metrics
from .models import MultiTaskModel, build_model
from .weighting import StepContext, make_weighting

EVAL_BATCH = 65536


@dataclass
class Prepared:
    """Everything between the raw dataset and the trainer, built once per data + task choice."""
    dataset: Dataset
    examples: Examples
    split: Split
    space: FeatureSpace
    train: EncodedExamples
    val: EncodedExamples
    test: EncodedExamples
    tasks: list[TaskSpec]

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


def load_dataset(cfg: TrainConfig) -> Dataset:
    d = cfg.data
    if d.source == "world":
        return make_world(**d.world.to_dict())
    from .data import load  # the file loaders
    f = d.files
    if "interactions" not in f:
        raise DataError("No interactions file was given.", fix="pass --data FILE (or choose the built-in world)")
    return load(f["interactions"], f.get("items"), f.get("users"))


def prepare(cfg: TrainConfig, dataset: Dataset | None = None,
            text_progress: Callable[[int, int], None] | None = None) -> Prepared:
    """Dataset -> labelled examples -> split -> feature space -> tensors (+ text vectors)."""
    ds = dataset if dataset is not None else load_dataset(cfg)
    tasks = parse_tasks(cfg.data.tasks or ds.suggested_tasks)
    validate(cfg, [t.name for t in tasks])
    ex = build_examples(ds, tasks, negatives=cfg.data.negatives, seed=cfg.seed)
    sp = split(ex, cfg.data.split, cfg.data.val_frac, cfg.data.test_frac, seed=cfg.seed)
    space = FeatureSpace.fit(ds, ex.frame.iloc[sp.train], use_features=cfg.data.use_features)
    if cfg.model.text_features:
        from .text import item_text_vectors
        space.item_text = item_text_vectors(ds, cfg.data.text_columns, device=text_device_for(cfg.device),
                                            progress=text_progress)
    enc = encode_examples(space, ex.frame, ex.labels)
    return Prepared(ds, ex, sp, space, enc.subset(sp.train), enc.subset(sp.val), enc.subset(sp.test), tasks)


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


def build(cfg: TrainConfig, prep: Prepared) -> MultiTaskModel:
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, prep.space.describe(), prep.space.tensors(), prep.tasks)


def make_optimizer(name: str, params, lr: float, weight_decay: float, extra=(),
                   device: torch.device | None = None) -> torch.optim.Optimizer:
    """The optimiser over the model's parameters (+ a weighting's own, without weight decay).

    Uses PyTorch's fused single-kernel implementation where it exists for the device: on CPU
    the default per-parameter loop costs as much as a third of a small model's step.
    """
    groups = [{"params": list(params)}]
    if extra:
        groups.append({"params": list(extra), "weight_decay": 0.0})
    cls, kw = {"adam": (torch.optim.Adam, {}), "adamw": (torch.optim.AdamW, {}),
               "sgd": (torch.optim.SGD, {"momentum": 0.9}), "adagrad": (torch.optim.Adagrad, {})}[name]
    if device is not None and device.type in ("cpu", "cuda"):
        try:
            return cls(groups, lr=lr, weight_decay=weight_decay, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            pass  # no fused kernel for this optimiser/device in this PyTorch
    return cls(groups, lr=lr, weight_decay=weight_decay, **kw)


@torch.inference_mode()
def predict(model: MultiTaskModel, data: EncodedExamples, batch: int = EVAL_BATCH) -> np.ndarray:
    """Predictions [N, T] (probabilities / values), in large batches."""
    was = model.training
    model.eval()
    out = [model.predict(model(data.user[s:s + batch], data.item[s:s + batch])) for s in range(0, len(data), batch)]
    model.train(was)
    if not out:
        return np.zeros((0, len(model.tasks)), np.float32)
    return torch.cat(out).float().cpu().numpy()


def evaluate(model: MultiTaskModel, data: EncodedExamples, tasks) -> dict[str, dict]:
    preds = predict(model, data)
    return task_metrics(tasks, data.labels.cpu().numpy(), data.mask.cpu().numpy(), preds)


_TINY = torch.finfo(torch.float32).tiny


@torch.no_grad()
def scrub_denormals(tensors) -> int:
    """Set denormal values to exact zeros; returns how many there were. The thread flag
    (`mtrlib.device.flush_denormals`) does not reach PyTorch's extra intra-op threads
    (cpu_threads > 1), so once an epoch the source is removed as well: parameters and
    optimiser moments."""
    n = 0
    for t in tensors:
        if t.is_floating_point() and t.device.type == "cpu" and t.numel():
            tiny = (t != 0) & (t.abs() < _TINY)
            k = int(tiny.sum())
            if k:
                t.masked_fill_(tiny, 0.0)
                n += k
    return n


def _float_state(model: torch.nn.Module, opt: torch.optim.Optimizer):
    yield from model.parameters()
    for st in opt.state.values():
        for v in st.values():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                yield v


EXPLODE = 50.0  # a task's windowed loss above EXPLODE x max(its first loss, 1) counts as diverged


# above these learning rates a diverging run is blamed on the learning rate itself
HIGH_LR = {"adam": 0.03, "adamw": 0.03, "adagrad": 0.1, "sgd": 0.3}


def _diverged_reason(cfg: TrainConfig, step: int, task: str | None, what: str) -> str:
    where = f" for task '{task}'" if task else ""
    if cfg.lr > HIGH_LR.get(cfg.optimizer, 0.03):
        hint = f"The learning rate {cfg.lr:g} is too high: try {cfg.lr / 10:g}."
    else:
        hint = f"Try a lower learning rate (e.g. {cfg.lr / 10:g}) or smaller task weights."
    return f"Training diverged at step {step}: the loss{where} {what}. {hint}"


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
    names = prep.task_names
    emit = callback or (lambda e: None)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = (model or build(cfg, prep)).to(device)
    tr, va = prep.train.to(device), prep.val.to(device)
    model.fit_targets(tr.labels, tr.mask)
    weighting = make_weighting(cfg.weighting, names, cfg.weights, lr=cfg.lr, **weighting_options(cfg)).to(device)
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay,
                         weighting.extra_parameters(), device)
    shared = model.gradnorm_layer()
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    n, bs = len(tr), int(cfg.batch_size)
    steps_per_epoch = max(1, math.ceil(n / bs))
    hist = History()
    emit({"type": "start", "tasks": names, "n_train": n, "n_val": len(va), "steps_per_epoch": steps_per_epoch,
          "epochs": cfg.epochs, "device": str(device), "parameters": model.n_parameters()})

    status, reason = "finished", ""
    step, seen, best_epoch, best_score, best_state, bad_epochs = 0, 0, None, None, None, 0
    last_good, epochs_done = _snapshot(model), 0  # restored if the run diverges
    first_loss: list[float] | None = None
    t0 = time.perf_counter()
    train_time = event_time = 0.0
    check_each_step = device.type == "cpu"  # a per-step check would stall an accelerator's queue
    Mf = tr.mask.to(torch.float32)
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(n, generator=gen).to(device)
        U, I, Y, M = tr.user[perm], tr.item[perm], tr.labels[perm], Mf[perm]
        sums = torch.zeros(len(names), device=device)
        win_sums = torch.zeros(len(names), device=device)
        win_n, win_samples, win_t = 0, 0, time.perf_counter()
        ep_t = time.perf_counter()
        for b in range(0, n, bs):
            raw = model(U[b:b + bs], I[b:b + bs])
            losses = model.task_losses(raw, Y[b:b + bs], M[b:b + bs])
            total = weighting.combine(losses, StepContext(shared, step, epoch))
            if check_each_step and not bool(torch.isfinite(total)):
                status = "diverged"
                reason = _diverged_reason(cfg, step + 1, _bad_task(losses, names), "became NaN or infinite")
                break
            if first_loss is None:  # the untrained model's loss: the yardstick for an exploding loss
                first_loss = [max(abs(v), 1.0) if math.isfinite(v) else 1.0 for v in losses.detach().tolist()]
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            step += 1
            nb = min(bs, n - b)
            seen += nb
            win_samples += nb
            win_sums += losses.detach()
            win_n += 1
            if step % cfg.log_every == 0 or b + bs >= n:
                te = time.perf_counter()
                sums += win_sums
                mean = (win_sums / win_n).tolist()
                bad = [k for k, v in enumerate(mean) if not math.isfinite(v) or v > EXPLODE * first_loss[k]]
                if bad:
                    k, v = bad[0], mean[bad[0]]
                    what = (f"grew to {v:.3g} (it started near {first_loss[k]:.2g})" if math.isfinite(v)
                            else "became NaN or infinite")
                    status, reason = "diverged", _diverged_reason(cfg, step, names[k], what)
                    break
                w = weighting.effective().tolist()
                row = {"step": step, "epoch": epoch - 1 + (b + nb) / n, "time": te - t0, "samples": seen,
                       "samples_per_s": win_samples / max(te - win_t, 1e-9), "loss": float(sum(mean))}
                row.update({f"loss/{t}": v for t, v in zip(names, mean)})
                row.update({f"weight/{t}": v for t, v in zip(names, w)})
                hist.steps.append(row)
                emit({"type": "step", **row})
                win_sums.zero_()
                win_n, win_samples = 0, 0
                win_t = time.perf_counter()
                event_time += win_t - te
            if stop is not None and stop.is_set():
                status, reason = "stopped", f"Stopped by the user at step {step} (epoch {epoch})."
                break
        ep_time = time.perf_counter() - ep_t
        train_time += ep_time
        if status != "finished":
            break
        if device.type == "cpu" and DENORMAL_FIX:
            scrub_denormals(_float_state(model, opt))
        epoch_loss = sums / steps_per_epoch
        used = weighting.effective().tolist()  # the weights this epoch trained with
        weighting.end_epoch(epoch_loss)
        val = evaluate(model, va, prep.tasks)
        row = {"epoch": epoch, "step": step, "time": time.perf_counter() - t0,
               "samples_per_s": seen / max(train_time, 1e-9), "epoch_samples_per_s": n / max(ep_time, 1e-9)}
        row.update({f"train_loss/{t}": v for t, v in zip(names, epoch_loss.tolist())})
        row.update({f"weight/{t}": v for t, v in zip(names, used)})
        for t, ms in val.items():
            row.update({f"val/{t}/{k}": v for k, v in ms.items() if k != "n"})
        hist.epochs.append(row)
        emit({"type": "epoch", **row})
        last_good, epochs_done = _snapshot(model), epoch
        if cfg.early_stop_task:
            task = prep.tasks[names.index(cfg.early_stop_task)]
            key, score = headline(task, val[task.name])
            score = score if key == "auc" else -score
            score = score if math.isfinite(score) else -math.inf
            if best_score is None or score > best_score:
                best_score, best_epoch, best_state, bad_epochs = score, epoch, last_good, 0
            else:
                bad_epochs += 1
                if bad_epochs >= cfg.patience:
                    reason = (f"Early stop after epoch {epoch}: {task.name} validation {key} has not improved "
                              f"for {cfg.patience} epochs; restored epoch {best_epoch}.")
                    break
    if status == "diverged":
        model.load_state_dict(last_good)  # the last finite weights (the initial ones in epoch 1)
    elif best_state is not None:
        model.load_state_dict(best_state)
        if not reason:
            reason = f"Restored the weights of epoch {best_epoch}, the best on {cfg.early_stop_task}."
    model.eval()
    te_ = prep.test.to(device)
    trained = status != "diverged" or epochs_done > 0
    test_m = evaluate(model, te_, prep.tasks) if trained else {}
    val_m = evaluate(model, va, prep.tasks) if trained else {}
    base = popularity_baseline(prep.tasks, prep.train.item.numpy(), prep.train.labels.numpy(),
                               prep.train.mask.numpy(), prep.test.item.numpy(), prep.test.labels.numpy(),
                               prep.test.mask.numpy(), model.n_items)
    sps = seen / train_time if train_time > 0 else 0.0
    elapsed = time.perf_counter() - t0
    overhead = event_time / train_time if train_time > 0 else 0.0
    emit({"type": "end", "status": status, "reason": reason, "metrics": test_m, "samples_per_s": sps,
          "elapsed": elapsed, "event_overhead": overhead})
    return TrainResult(status, reason, model, hist, test_m, val_m, base, sps, elapsed, best_epoch, str(device),
                       overhead)


def _snapshot(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bad_task(losses: torch.Tensor, names: list[str]) -> str | None:
    bad = (~torch.isfinite(losses)).nonzero().flatten().tolist()
    return names[bad[0]] if bad else None


def run(cfg: TrainConfig, dataset: Dataset | None = None, **kw) -> tuple[TrainResult, Prepared]:
    """prepare + train in one call (scripts, tests, the CLI)."""
    prep = prepare(cfg, dataset)
    return train(cfg, prep, **kw), prep


# available_devices / resolve_device live in mtrlib.device; re-exported here, where pages and scripts import them
__all__ = ["prepare", "train", "run", "Prepared", "TrainResult", "History", "predict", "evaluate",
           "available_devices", "resolve_device"]
