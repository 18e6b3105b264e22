"""Gradient-conflict telemetry, for any weighting method (fixed weights too): every `log_every`
steps for a gradient method, every `cadence(...)` steps for any other (and at least once per
epoch), each task's gradient on the parameters more than one task
uses (`mtrlib.train.gradients`), compared pair by pair.

Logged in the step rows (and so in history.jsonl, the live charts and the Runs page):
- `grad_cos/A~B`: cosine between task A's and task B's gradients on all shared parameters;
  `grad_cos/GROUP/A~B` on one parameter group (embeddings, experts, bottom, gates, ...);
- `grad_norm/A`: task A's gradient norm over the mean of the tasks' norms (1 = balanced);
  `grad_norm/GROUP/A` per group;
- `grad_conflict/A~B`: share of the measurements so far with a negative cosine.

A negative cosine means a step that helps A hurts B, to first order: the tasks conflict there.

Cost: a gradient method has every task's gradient already (free). Any other method pays
T-1 extra backward passes per measurement: the last task's gradient is recovered from the
step's own gradient, sum_i a_i g_i with a = d total / d losses, minus the others'. Measured
every 10 steps that cost 8.7% of the throughput with 2 tasks and 20.9% with 3
(bench/gradient_methods.py), so such a method is measured every 2 (T-1) `log_every` steps:
about 5% whatever the number of tasks.
"""
from __future__ import annotations

import contextlib
import math

import torch

from ..weighting import WEIGHTINGS
from ..weighting.base import Weighting
from .gradients import GROUP_ORDER, SharedParameters


def _dense(v: torch.Tensor | None) -> torch.Tensor | None:
    """A gradient as a dense tensor: lazy id-table updates (mtrlib.train.optim) give sparse ones."""
    return v.to_dense() if v is not None and v.is_sparse else v


def pairs(names: list[str]) -> list[tuple[int, int]]:
    return [(a, b) for a in range(len(names)) for b in range(a + 1, len(names))]


def gramians(task_grads: list[list[torch.Tensor | None]], groups: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """{group: [T, T] inner products of the tasks' gradients on that group}, plus '' for all."""
    T = len(task_grads)
    out = {}
    for g, idx in groups.items():
        G = torch.zeros(T, T, dtype=torch.float64)
        for j in idx:
            vecs = [_dense(t[j]) for t in task_grads]
            ref = next((v for v in vecs if v is not None), None)
            if ref is None:
                continue
            M = torch.stack([(v if v is not None else torch.zeros_like(ref)).reshape(-1) for v in vecs]).double()
            G += (M @ M.T).cpu()
        out[g] = G
    out[""] = sum(out.values()) if out else torch.zeros(T, T, dtype=torch.float64)
    return out


def stats(G: torch.Tensor, names: list[str], prefix: str = "") -> dict[str, float]:
    """Row entries from one Gramian: cosines per pair and norm ratios per task (NaN-free: a task
    with no gradient here is left out)."""
    norms = G.diagonal().clamp(min=0).sqrt()
    live = [k for k in range(len(names)) if norms[k] > 0]
    row = {}
    for a, b in pairs(names):
        if a in live and b in live:
            row[f"grad_cos/{prefix}{names[a]}~{names[b]}"] = float((G[a, b] / (norms[a] * norms[b])).clamp(-1, 1))
    if live:
        mean = float(norms[live].mean())
        for k in live:
            row[f"grad_norm/{prefix}{names[k]}"] = float(norms[k]) / mean
    return row


def conflict_row(task_grads, groups: dict[str, list[int]], names: list[str]) -> dict[str, float]:
    """The telemetry of one measurement: all shared parameters, then each group."""
    Gs = gramians(task_grads, groups)
    row = stats(Gs[""], names)
    for g in groups:
        row.update(stats(Gs[g], names, f"{g}/"))
    return row


def cadence(log_every: int, n_tasks: int, weighting) -> int:
    """Steps between measurements: `log_every` where the per-task gradients come free (a gradient
    method), else 2 (T-1) `log_every`, so that the T-1 extra backward passes cost about 5%."""
    if weighting.needs_task_gradients:
        return max(1, log_every)
    return max(1, log_every) * 2 * max(1, n_tasks - 1)


class GradientTelemetry:
    """The telemetry step of the training loop: `measuring(...)` wraps the step's backward."""

    def __init__(self, shared: SharedParameters, names: list[str], every: int, enabled: bool, weighting):
        self.shared, self.names, self.every = shared, list(names), cadence(int(every), len(names), weighting)
        self.enabled = bool(enabled and shared and len(names) > 1)
        self.weighting = weighting
        # a method with the default backward (total.backward()) lets the last task's gradient be derived
        self.derive_last = not weighting.needs_task_gradients and type(weighting).backward is _default_backward()
        self.last: dict[str, float] = {}
        self.measured, self.epoch = 0, None  # measurements so far; the epoch of the latest
        self.negative: dict[str, int] = {}

    def due(self, ctx, batch) -> bool:
        """Measured on every `every`-th step, and on an epoch's last batch if the epoch had no
        measurement (an epoch shorter than that still gets one)."""
        return self.enabled and ((ctx.step + 1) % self.every == 0 or (batch.last and self.epoch != ctx.epoch))

    @contextlib.contextmanager
    def measuring(self, ctx, total: torch.Tensor, losses: torch.Tensor, batch):
        """Around `weighting.backward`: per-task gradients on the shared parameters, when due."""
        if not self.due(ctx, batch) or ctx.grads is None:
            yield
            return
        self.epoch = ctx.epoch
        if self.derive_last:
            a = torch.autograd.grad(total, losses, retain_graph=True, allow_unused=True)[0]
            a = a.detach() if a is not None else torch.zeros_like(losses)
            last = int(a.abs().argmax())
            before = [None if (k == last or not losses[k].requires_grad) else
                      torch.autograd.grad(losses[k], self.shared.params, retain_graph=True, allow_unused=True)
                      for k in range(len(losses))]
        yield
        if self.derive_last:
            task_grads = self._derive(before, a, last)
        else:
            task_grads = ctx.grads.on_shared()
        self._record(conflict_row(task_grads, self.shared.groups, self.names))

    def _derive(self, before, a: torch.Tensor, last: int):
        """The last task's gradient: (the step's gradient - sum of the others' a_k g_k) / a_last."""
        if float(a[last]) == 0:
            return [list(g) if g is not None else [None] * len(self.shared.params) for g in before]
        derived = []
        for j, p in enumerate(self.shared.params):
            g = _dense(p.grad.detach()).clone() if p.grad is not None else torch.zeros_like(p)
            for k, gk in enumerate(before):
                if gk is not None and gk[j] is not None:
                    g -= a[k] * _dense(gk[j])
            derived.append(g / a[last])
        return [derived if k == last else (list(g) if g is not None else [None] * len(derived))
                for k, g in enumerate(before)]

    def _record(self, row: dict[str, float]) -> None:
        self.measured += 1
        for key, v in row.items():
            if key.startswith("grad_cos/") and v < 0:
                self.negative[key] = self.negative.get(key, 0) + 1
        for key in list(row):
            if key.startswith("grad_cos/"):
                row_key = "grad_conflict/" + key[len("grad_cos/"):]
                row[row_key] = self.negative.get(key, 0) / self.measured
        self.last = {**row}

    def row(self) -> dict[str, float]:
        """The measurement taken since the last progress event (empty if none), for its row."""
        out, self.last = self.last, {}
        return out


def _default_backward():
    return Weighting.backward


def summary(steps: list[dict], epochs: str = "last") -> dict:
    """The CLI's "grad" object from step rows: over the last epoch's measurements (`epochs`:
    "last", "first" or "all"), the mean cosine per task pair ("cos"), the share of them with a
    negative cosine ("conflict_share"), the mean norm ratio per task ("norm"), and the same per
    parameter group ("by_group")."""
    rows = [r for r in steps if any(k.startswith("grad_cos/") for k in r)]
    out: dict = {"cos": {}, "conflict_share": {}, "norm": {}, "by_group": {}, "measurements": 0}
    if not rows:
        return out
    if epochs != "all":
        pos = [float(r.get("epoch", 0)) for r in rows]
        k = math.ceil(max(pos) - 1e-9) if epochs == "last" else max(1, math.ceil(min(pos) - 1e-9))
        rows = [r for r, p in zip(rows, pos) if k - 1 + 1e-9 < p <= k + 1e-9] or rows
    out["measurements"] = len(rows)
    keys = sorted({k for r in rows for k in r if k.startswith(("grad_cos/", "grad_norm/"))})
    for key in keys:
        vals = [float(r[key]) for r in rows if key in r and r[key] is not None and math.isfinite(float(r[key]))]
        if not vals:
            continue
        kind, *rest = key.split("/")
        group, what = (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])
        target = out if group is None else out["by_group"].setdefault(group, {"cos": {}, "conflict_share": {}, "norm": {}})
        if kind == "grad_cos":
            target["cos"][what] = sum(vals) / len(vals)
            target["conflict_share"][what] = sum(v < 0 for v in vals) / len(vals)
        else:
            target["norm"][what] = sum(vals) / len(vals)
    rank = {g: k for k, g in enumerate(GROUP_ORDER)}
    out["by_group"] = dict(sorted(out["by_group"].items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
    return out


def columns(df_columns, group: str | None = None) -> list[str]:
    """The cosine columns of a history table: all shared parameters (group None) or one group."""
    out = []
    for c in df_columns:
        parts = str(c).split("/")
        if parts[0] != "grad_cos":
            continue
        if (group is None and len(parts) == 2) or (group is not None and len(parts) == 3 and parts[1] == group):
            out.append(c)
    return out


def groups_in(df_columns) -> list[str]:
    """The parameter groups a history table has cosines for, in first-seen order."""
    return list(dict.fromkeys(str(c).split("/")[1] for c in df_columns
                              if str(c).startswith("grad_cos/") and len(str(c).split("/")) == 3))


CLEAR = 0.05  # |mean cosine| below this reads as "about unrelated"


def describe(grad: dict) -> list[str]:
    """Plain sentences from a `summary`: per task pair, the mean cosine over the last epoch, how
    often it was negative, each group's mean, and the group where the conflict is largest."""
    out = []
    for pair, cos in grad.get("cos", {}).items():
        a, b = pair.split("~")
        share = grad.get("conflict_share", {}).get(pair, 0.0)
        by = {g: v["cos"][pair] for g, v in grad.get("by_group", {}).items() if pair in v.get("cos", {})}
        verdict = ("they conflict" if cos < -CLEAR else "about unrelated" if cos < CLEAR
                   else "slightly aligned" if cos < 0.3 else "they agree")
        text = f"{a} vs {b}: cosine {cos:+.2f}, below 0 in {share:.0%} of the measured steps ({verdict})"
        if len(by) > 1:
            text += "; " + ", ".join(f"{g} {v:+.2f}" for g, v in by.items())
            worst = min(by, key=by.get)
            if by[worst] < -CLEAR:
                text += f": the conflict is largest in the {worst}"
        out.append(text + ".")
    return out


def table(runs: dict[str, list[dict]], pairs: list[str]) -> list[dict]:
    """Rows for the Runs page: per run and task pair, the last epoch's mean cosine and conflict
    share on all shared parameters and per group."""
    rows = []
    for name, steps in runs.items():
        s = summary(steps)
        for pair in pairs:
            if pair not in s["cos"]:
                continue
            row = {"run": name, "tasks": pair.replace("~", " vs "), "cosine": s["cos"][pair],
                   "below 0": s["conflict_share"][pair]}
            for g, v in s["by_group"].items():
                if pair in v["cos"]:
                    row[f"{g} cosine"] = v["cos"][pair]
            rows.append(row)
    return rows


def explanation() -> str:
    """The 'What am I looking at?' note of the conflict charts (the method lists from the registry)."""
    grad = [c.label for c in WEIGHTINGS.values() if c.needs_task_gradients]
    loss = [c.label for c in WEIGHTINGS.values() if not c.needs_task_gradients]
    return (
        "Every few steps the trainer takes each task's gradient on the parameters the tasks share "
        "and compares them by their **cosine**. **+1**: both tasks want the same change. **0**: unrelated "
        "wishes. **Below 0** (the shaded band): a step that helps one task hurts the other, to first "
        "order: the tasks **conflict** there. The lines are split by where in the network it happens: the "
        "shared **embeddings**, the **experts** or shared **bottom**, the **gates**. Conflict in the embeddings "
        "is out of the experts' reach (every expert reads the same embeddings); giving tasks embeddings of "
        "their own (STEM) is the cure there.\n\n"
        f"Methods that act on conflicting gradients: {', '.join(grad)}. They project conflicting parts away "
        "(PCGrad, UPGrad, DualProj), look for a direction good for every task (MGDA, CAGrad, Nash-MTL, IMTL-G, "
        "Aligned-MTL) or drop gradient signs that disagree (GradDrop); choose one under *Weighting method*. "
        f"The others ({', '.join(loss)}) only rescale each task's loss: the directions still conflict, one "
        "task simply counts more. A run whose cosines stay above 0 has little to gain from a gradient method."
    )


__all__ = ["GradientTelemetry", "explanation", "table", "conflict_row", "summary", "describe", "gramians", "stats", "columns", "groups_in"]
