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

from .config import TrainConfig, validate
from .data import (DataError, Dataset, EncodedExamples, Examples, FeatureSpace, Split, build_examples,
                   encode_examples, make_world, split)
from .data.tasks import TaskSpec, parse_tasks
from .metrics import headline, popularity_baseline, task_metrics
from .models import MultiTaskModel, build_model
from .weighting import StepContext, make_weighting

EVAL_BATCH = 65536


def available_devices() -> list[str]:
    """Devices that exist on this machine, in the order `auto` prefers them."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out + ["cpu"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device(available_devices()[0])
    if name not in available_devices():
        raise DataError(f"Device '{name}' is not available on this machine.",
                        fix=f"use one of: auto, {', '.join(available_devices())}")
    return torch.device(name)


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
        w = d.world
        return make_world(w.n_users, w.n_items, w.n_genres, w.correlation, w.seed, w.impressions_per_user,
                          w.latent_dim, w.zipf)
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
        dev = "cpu" if cfg.device == "auto" and not torch.cuda.is_available() else cfg.device
        space.item_text = item_text_vectors(ds, cfg.data.text_columns, device=dev, progress=text_progress)
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


def build(cfg: TrainConfig, prep: Prepared) -> MultiTaskModel:
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, prep.space.describe(), prep.space.tensors(), prep.tasks)


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.Adagrad(params, lr=lr, weight_decay=weight_decay)


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


def _diverged_reason(cfg: TrainConfig, step: int, task: str | None) -> str:
    where = f" (task '{task}')" if task else ""
    hint = (f"learning rate {cfg.lr:g} is too high; try {cfg.lr / 10:g}" if cfg.lr > 0.01
            else "try a lower learning rate or smaller task weights")
    return f"Training diverged: the loss became NaN or infinite at step {step}{where}. The {hint}."


def train(cfg: TrainConfig, prep: Prepared, callback: Callable[[dict], None] | None = None,
          stop: threading.Event | None = None, model: MultiTaskModel | None = None) -> TrainResult:
    """Train; never raises for divergence or a stop request (see `status`)."""
    names = prep.task_names
    validate(cfg, names)
    emit = callback or (lambda e: None)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = (model or build(cfg, prep)).to(device)
    tr, va = prep.train.to(device), prep.val.to(device)
    model.fit_targets(tr.labels, tr.mask)
    weighting = make_weighting(cfg.weighting, names, cfg.weights, alpha=cfg.gradnorm_alpha,
                               temperature=cfg.dwa_temperature, lr=cfg.lr).to(device)
    opt = make_optimizer(cfg.optimizer, list(model.parameters()) + weighting.extra_parameters(), cfg.lr,
                         cfg.weight_decay)
    shared = model.shared_parameters()
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    n, bs = len(tr), int(cfg.batch_size)
    steps_per_epoch = max(1, math.ceil(n / bs))
    hist = History()
    emit({"type": "start", "tasks": names, "n_train": n, "n_val": len(va), "steps_per_epoch": steps_per_epoch,
          "epochs": cfg.epochs, "device": str(device), "parameters": model.n_parameters()})

    status, reason = "finished", ""
    step, seen, best_epoch, best_score, best_state, last_good, bad_epochs = 0, 0, None, None, None, None, 0
    t0 = time.perf_counter()
    train_time = 0.0
    check_each_step = device.type == "cpu"
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        perm = torch.randperm(n, generator=gen).to(device)
        U, I, Y, M = tr.user[perm], tr.item[perm], tr.labels[perm], tr.mask[perm]
        sums = torch.zeros(len(names), device=device)
        win_sums = torch.zeros(len(names), device=device)
        win_n, win_samples, win_t = 0, 0, time.perf_counter()
        ep_t = time.perf_counter()
        for b in range(0, n, bs):
            raw = model(U[b:b + bs], I[b:b + bs])
            losses = model.task_losses(raw, Y[b:b + bs], M[b:b + bs])
            total = weighting.combine(losses, StepContext(shared, step, epoch))
            if check_each_step and not torch.isfinite(total):
                status, reason = "diverged", _diverged_reason(cfg, step + 1, _bad_task(losses, names))
                break
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            step += 1
            nb = min(bs, n - b)
            seen += nb
            win_samples += nb
            dl = losses.detach()
            sums += dl
            win_sums += dl
            win_n += 1
            if step % cfg.log_every == 0 or b + bs >= n:
                now = time.perf_counter()
                mean = (win_sums / win_n).tolist()
                if not all(map(math.isfinite, mean)):
                    status, reason = "diverged", _diverged_reason(cfg, step, _bad_task(win_sums, names))
                    break
                w = weighting.effective().tolist()
                row = {"step": step, "epoch": epoch - 1 + (b + nb) / n, "time": now - t0, "samples": seen,
                       "samples_per_s": win_samples / max(now - win_t, 1e-9), "loss": float(sum(mean))}
                row.update({f"loss/{t}": v for t, v in zip(names, mean)})
                row.update({f"weight/{t}": v for t, v in zip(names, w)})
                hist.steps.append(row)
                emit({"type": "step", **row})
                win_sums.zero_()
                win_n, win_samples, win_t = 0, 0, time.perf_counter()
            if stop is not None and stop.is_set():
                status, reason = "stopped", f"Stopped by the user at step {step} (epoch {epoch})."
                break
        train_time += time.perf_counter() - ep_t
        if status != "finished":
            break
        weighting.end_epoch(sums / steps_per_epoch)
        val = evaluate(model, va, prep.tasks)
        row = {"epoch": epoch, "step": step, "time": time.perf_counter() - t0}
        row.update({f"train_loss/{t}": v for t, v in zip(names, (sums / steps_per_epoch).tolist())})
        for t, ms in val.items():
            row.update({f"val/{t}/{k}": v for k, v in ms.items() if k != "n"})
        hist.epochs.append(row)
        emit({"type": "epoch", **row})
        last_good = _snapshot(model)
        if cfg.early_stop_task:
            task = prep.tasks[names.index(cfg.early_stop_task)]
            key, score = headline(task, val[task.name])
            score = score if key == "auc" else -score
            if best_score is None or score > best_score:
                best_score, best_epoch, best_state, bad_epochs = score, epoch, last_good, 0
            else:
                bad_epochs += 1
                if bad_epochs >= cfg.patience:
                    reason = (f"Early stop after epoch {epoch}: {task.name} validation {key} has not improved "
                              f"for {cfg.patience} epochs; restored epoch {best_epoch}.")
                    break
    if status == "diverged" and last_good is not None:
        model.load_state_dict(last_good)  # keep the last finite weights
    if best_state is not None and status != "diverged":
        model.load_state_dict(best_state)
    model.eval()
    te = prep.test.to(device)
    finite = status != "diverged" or last_good is not None
    test_m = evaluate(model, te, prep.tasks) if finite else {}
    val_m = evaluate(model, va, prep.tasks) if finite else {}
    base = popularity_baseline(prep.tasks, prep.train.item.numpy(), prep.train.labels.numpy(),
                               prep.train.mask.numpy(), prep.test.item.numpy(), prep.test.labels.numpy(),
                               prep.test.mask.numpy(), model.n_items)
    sps = seen / train_time if train_time > 0 else 0.0
    elapsed = time.perf_counter() - t0
    emit({"type": "end", "status": status, "reason": reason, "metrics": test_m, "samples_per_s": sps,
          "elapsed": elapsed})
    return TrainResult(status, reason, model, hist, test_m, val_m, base, sps, elapsed, best_epoch, str(device))


def _snapshot(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _bad_task(losses: torch.Tensor, names: list[str]) -> str | None:
    bad = (~torch.isfinite(losses)).nonzero().flatten().tolist()
    return names[bad[0]] if bad else None


def run(cfg: TrainConfig, dataset: Dataset | None = None, **kw) -> tuple[TrainResult, Prepared]:
    """prepare + train in one call (scripts, tests, the CLI)."""
    prep = prepare(cfg, dataset)
    return train(cfg, prep, **kw), prep


__all__ = ["prepare", "train", "run", "Prepared", "TrainResult", "History", "predict", "evaluate",
           "available_devices", "resolve_device"]
