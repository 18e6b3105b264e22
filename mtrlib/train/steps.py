"""The named steps of the training loop (`mtrlib.train`), each a small object that keeps its
own state, so the loop reads top to bottom: shuffled batches, a divergence guard, a window of
step statistics between progress events, early stopping, and the clock.

None of them knows any architecture or weighting method.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ..eval.pointwise import headline, higher_is_better

EXPLODE = 50.0  # a task's windowed loss above EXPLODE x max(its first loss, 1) counts as diverged

# above these learning rates a diverging run is blamed on the learning rate itself
HIGH_LR = {"adam": 0.03, "adamw": 0.03, "adagrad": 0.1, "sgd": 0.3}


@dataclass
class Batch:
    user: torch.Tensor  # [B] user rows
    item: torch.Tensor  # [B] item rows
    labels: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T] float: 1 where the label is observed
    size: int
    last: bool  # the epoch's last batch
    history: object | None = None  # the examples' past items (mtrlib.data.history.History), if the run has them
    context: object | None = None  # the examples' impression context (mtrlib.data.context.Context), if any


def shuffled_batches(data, perm: torch.Tensor, mask: torch.Tensor, batch_size: int):
    """One epoch of batches: the tensors are permuted once, then sliced (no per-sample loader)."""
    n = len(perm)
    U, I, Y, M = data.user[perm], data.item[perm], data.labels[perm], mask[perm]
    H = data.rows[perm] if getattr(data, "table", None) is not None else None  # history table rows
    C = data.context.subset(perm) if getattr(data, "context", None) is not None else None
    for b in range(0, n, batch_size):
        yield Batch(U[b:b + batch_size], I[b:b + batch_size], Y[b:b + batch_size], M[b:b + batch_size],
                    min(batch_size, n - b), b + batch_size >= n,
                    None if H is None else data.table.batch(H[b:b + batch_size]),
                    None if C is None else C.batch(slice(b, b + batch_size)))


def forward(model, user: torch.Tensor, item: torch.Tensor, history=None, context=None) -> torch.Tensor:
    """The model's raw outputs; `history` and `context` are passed only when there is one, so a
    model without them is called exactly as before."""
    extra = {k: v for k, v in (("history", history), ("context", context)) if v is not None}
    return model(user, item, **extra)


def diverged_reason(cfg, step: int, task: str | None, what: str) -> str:
    where = f" for task '{task}'" if task else ""
    if cfg.lr > HIGH_LR.get(cfg.optimizer, 0.03):
        hint = f"The learning rate {cfg.lr:g} is too high: try {cfg.lr / 10:g}."
    else:
        hint = f"Try a lower learning rate (e.g. {cfg.lr / 10:g}) or smaller task weights."
    return f"Training diverged at step {step}: the loss{where} {what}. {hint}"


class DivergenceGuard:
    """Ends a run whose loss turns NaN or infinite (checked every step on CPU, before the
    update; an accelerator would stall on the check) or explodes: a task's windowed mean loss
    above EXPLODE x its first loss. The reason names the task and suggests the fix."""

    def __init__(self, cfg, names: list[str], each_step: bool):
        self.cfg, self.names, self.each_step = cfg, names, each_step
        self.first: list[float] | None = None  # the untrained model's losses: the yardstick

    def check_step(self, total: torch.Tensor, losses: torch.Tensor, step: int) -> str | None:
        if self.each_step and not bool(torch.isfinite(total)):
            bad = (~torch.isfinite(losses)).nonzero().flatten().tolist()
            return diverged_reason(self.cfg, step, self.names[bad[0]] if bad else None, "became NaN or infinite")
        if self.first is None:
            self.first = [max(abs(v), 1.0) if math.isfinite(v) else 1.0 for v in losses.detach().tolist()]
        return None

    def check_window(self, mean: list[float], step: int) -> str | None:
        bad = [k for k, v in enumerate(mean) if not math.isfinite(v) or v > EXPLODE * self.first[k]]
        if not bad:
            return None
        k, v = bad[0], mean[bad[0]]
        what = (f"grew to {v:.3g} (it started near {self.first[k]:.2g})" if math.isfinite(v)
                else "became NaN or infinite")
        return diverged_reason(self.cfg, step, self.names[k], what)


class StepWindow:
    """Per-task loss sums and samples between two progress events (every `log_every` steps and
    at the end of each epoch), and the epoch's sums for its mean training loss."""

    def __init__(self, n_tasks: int, device, log_every: int):
        self.n_tasks, self.device, self.log_every = n_tasks, device, log_every
        self.seen = 0  # samples since the start of training

    def start_epoch(self) -> None:
        self.epoch_sums = torch.zeros(self.n_tasks, device=self.device)
        self.sums = torch.zeros(self.n_tasks, device=self.device)
        self.steps, self.samples, self.t = 0, 0, time.perf_counter()

    def add(self, losses: torch.Tensor, size: int) -> None:
        self.sums += losses.detach()
        self.steps += 1
        self.samples += size
        self.seen += size

    def due(self, step: int, batch: Batch) -> bool:
        return step % self.log_every == 0 or batch.last

    def close(self) -> tuple[list[float], float, float]:
        """(mean loss per task, samples/s, the time it closed); the epoch sums take it in."""
        te = time.perf_counter()
        self.epoch_sums += self.sums
        mean = (self.sums / self.steps).tolist()
        return mean, self.samples / max(te - self.t, 1e-9), te

    def reset(self) -> float:
        """Start the next window; returns the time it starts."""
        self.sums.zero_()
        self.steps, self.samples, self.t = 0, 0, time.perf_counter()
        return self.t


class EarlyStopping:
    """Watches one task's validation headline metric (AUC up, RMSE down); keeps the best
    epoch's weights; says when `patience` epochs went by without improvement."""

    def __init__(self, cfg, tasks):
        self.cfg = cfg
        names = [t.name for t in tasks]
        self.task = tasks[names.index(cfg.early_stop_task)] if cfg.early_stop_task else None
        self.best_score = self.best_epoch = self.best_state = None
        self.bad = 0

    def update(self, epoch: int, val: dict, state: dict) -> str | None:
        if self.task is None:
            return None
        key, score = headline(self.task, val[self.task.name])
        score = score if higher_is_better(key) else -score
        score = score if math.isfinite(score) else -math.inf
        if self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch, self.best_state, self.bad = score, epoch, state, 0
            return None
        self.bad += 1
        if self.bad < self.cfg.patience:
            return None
        return (f"Early stop after epoch {epoch}: {self.task.name} validation {key} has not improved "
                f"for {self.cfg.patience} epochs; restored epoch {self.best_epoch}.")


class Clock:
    """Wall time since the start, time spent in the training loop, and the share of it that
    building and sending progress events cost."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.train = self.events = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.t0


def snapshot(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
