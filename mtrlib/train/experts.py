"""Expert-health telemetry: is each expert alive, and do the gates use the experts as designed?

HoME (Wang et al., Kuaishou, arXiv 2408.05430) names three failures of mixture-of-experts
rankers, each flagged here with its rule (`RULES`):

- expert **collapse**: an expert whose units are almost all dead (exactly 0 after its
  activation, ReLU, on every sampled input): its output carries next to nothing;
- expert **degradation**: a shared expert that one task has to itself (it holds most of the gate
  weight all tasks put on it), so it is no longer shared;
- expert **underfitting**: a task that ignores its own task-specific experts (PLE, STEM) and
  leans on the shared ones.

Measured on a FIXED sample (`fixed_sample`: the first `SAMPLE_ROWS` validation examples, with
their history and context), in eval mode without gradients: one forward pass, forward hooks on
`model.expert_modules()` (each expert's output) and the gates from `model.inspect` (each task's
[B, n_experts] laid out on `model.expert_names`). The training loop measures it once per epoch
and writes it into the epoch row as flat columns (`row_of`), which `from_row` turns back into the
nested dict the pages and the CLI show.

Gate numbers per task, two ways: `entropy` / `eff_experts` are the entropy (natural log) of the
gate distribution averaged over the sample, and its exp (how many experts the task uses overall);
`example_entropy` / `example_eff_experts` average each example's own entropy (how many experts
one example mixes). A gate that always picks one expert gives 0 and 1 both ways; a uniform gate
over E experts gives log E and E both ways; a gate that picks a different expert per example
gives a high entropy of the mean but 0 per example.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..data.context import context_of
from ..data.history import history_of

SAMPLE_ROWS = 2048  # validation examples the health is measured on (the same ones every epoch)
DEAD_SHARE = 0.9  # collapsed from this share of dead units
DOMINANT_SHARE = 0.9  # degraded from this share of a shared expert's gate weight held by one task
OWN_FLOOR = 0.1  # underfitted below this share of a task's gate weight on its own experts

RULES = {
    "collapsed": f"dead-unit share >= {DEAD_SHARE:.0%} (units exactly 0 on every sampled input)",
    "degraded": f"one task holds >= {DOMINANT_SHARE:.0%} of a shared expert's gate weight",
    "underfitted": f"a task puts < {OWN_FLOOR:.0%} of its gate weight on its own task-specific experts",
}


@dataclass
class Sample:
    """The inputs of the fixed sample: user and item rows, their history and context (or None)."""
    user: torch.Tensor
    item: torch.Tensor
    history: object = None
    context: object = None

    def __len__(self) -> int:
        return int(self.user.shape[0])


def fixed_sample(data, rows: int = SAMPLE_ROWS) -> Sample | None:
    """The first `rows` examples of `data` (validation examples), or None when it has none."""
    n = min(int(rows), len(data))
    if n <= 0:
        return None
    idx = slice(0, n)
    return Sample(data.user[:n], data.item[:n], history_of(data, idx), context_of(data, idx))


def owner_of(expert: str, tasks: list[str]) -> str | None:
    """The task an expert belongs to, by its name ('click 1' is click's; 'shared 1', 'expert 1' no
    task's): PLE and STEM name their task-specific experts '<task> <k>'."""
    head, _, tail = expert.rpartition(" ")
    return head if head in tasks and tail.isdigit() else None


def _tensor(out) -> torch.Tensor:
    """A module's output as one tensor (the first, for a module that returns several)."""
    return out if isinstance(out, torch.Tensor) else out[0]


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy (natural log) along the last axis, 0 log 0 = 0."""
    p = p.double()
    return -(p * torch.log(p.clamp(min=1e-300))).where(p > 0, torch.zeros_like(p)).sum(-1)


@torch.no_grad()
def expert_health(model: nn.Module, sample: Sample | None) -> dict:
    """The health of `model`'s experts on `sample` (JSON-able); {} for a model without experts.

    {"sample": rows, "experts": {name: {"dead_share", "mean_norm", "units", "owner" (a task or
    None), "task_share" ({task: share}, shared experts only), "flags"}}, "tasks": {task:
    {"entropy", "eff_experts", "example_entropy", "example_eff_experts", "mean_gate" ({expert:
    mean weight}), "own_share" (tasks with own experts), "flags"}}, "flags": [{"flag", "subject", "value", "rule"}]}."""
    modules = model.expert_modules() if hasattr(model, "expert_modules") else {}
    if not modules or sample is None or len(sample) == 0:
        return {}
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: outputs[name].append(_tensor(out).detach()))
             for name, m in modules.items()]
    was_training = model.training
    model.eval()
    try:
        reps = model.inspect(sample.user, sample.item, sample.history, sample.context)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    gates = {k[5:]: v for k, v in reps.items() if k.startswith("gate:")}
    experts = {}
    for name, outs in outputs.items():
        if not outs:
            continue
        out = torch.cat([o.reshape(-1, o.shape[-1]) for o in outs], 0).float()
        dead = (out == 0).all(0)
        experts[name] = {"dead_share": float(dead.float().mean()), "mean_norm": float(out.norm(dim=-1).mean()),
                         "units": int(out.shape[-1])}
    names = list(getattr(model, "expert_names", None) or modules)
    return assess(experts, gate_stats(gates, names), len(sample))


def gate_stats(gates: dict[str, torch.Tensor], names: list[str]) -> dict:
    """Per task: the entropy numbers of its gate [B, E] (laid out on `names`), and its mean weight
    on each expert (`mean_gate`, what the shares and flags are computed from)."""
    tasks = {}
    for task, g in gates.items():
        g = g.detach().double().cpu()
        mean = g.mean(0)
        h, h_ex = float(_entropy(mean)), float(_entropy(g).mean())
        tasks[task] = {"entropy": h, "eff_experts": math.exp(h), "example_entropy": h_ex,
                       "example_eff_experts": math.exp(h_ex),
                       "mean_gate": {n: float(w) for n, w in zip(names, mean.tolist())}}
    return tasks


def assess(experts: dict, tasks: dict, rows: int) -> dict:
    """Shares and flags from the measured numbers (`expert_health`, `from_row`): `experts` {name:
    {dead_share, mean_norm, ...}}, `tasks` {task: {entropy numbers, mean_gate: {expert: weight}}}."""
    task_names = list(tasks)
    flags = []
    for name, e in experts.items():
        e["owner"] = owner_of(name, task_names)
        e["flags"] = []
        if e["dead_share"] >= DEAD_SHARE:
            e["flags"].append("collapsed")
            flags.append({"flag": "collapsed", "subject": name, "value": e["dead_share"], "rule": RULES["collapsed"]})
        users = {t: s["mean_gate"].get(name, 0.0) for t, s in tasks.items() if s["mean_gate"].get(name, 0.0) > 0}
        if e["owner"] is None and len(users) >= 2:  # a shared expert: more than one task's gate weights it
            total = sum(users.values())
            e["task_share"] = {t: w / total for t, w in users.items()}
            top, share = max(e["task_share"].items(), key=lambda kv: kv[1])
            if share >= DOMINANT_SHARE:
                e["flags"].append("degraded")
                flags.append({"flag": "degraded", "subject": name, "task": top, "value": share,
                              "rule": RULES["degraded"]})
    for task, s in tasks.items():
        weight = s["mean_gate"]
        s["flags"] = []
        own = [n for n in weight if owner_of(n, task_names) == task]
        if own:
            total = sum(weight.values()) or 1.0
            s["own_share"] = sum(weight[n] for n in own) / total
            if s["own_share"] < OWN_FLOOR:
                s["flags"].append("underfitted")
                flags.append({"flag": "underfitted", "subject": task, "value": s["own_share"],
                              "rule": RULES["underfitted"]})
    return {"sample": int(rows), "experts": experts, "tasks": tasks, "flags": flags}


# -- as history columns ------------------------------------------------------------------------------
# expert_dead/<expert>, expert_norm/<expert>, gate_entropy/<task>, gate_eff/<task>,
# gate_example_entropy/<task>, gate_example_eff/<task>, gate_weight/<task>/<expert>, expert_sample

_EXPERT_COLS = {"expert_dead": "dead_share", "expert_norm": "mean_norm"}
_TASK_COLS = {"gate_entropy": "entropy", "gate_eff": "eff_experts", "gate_example_entropy": "example_entropy",
              "gate_example_eff": "example_eff_experts"}


def row_of(health: dict) -> dict:
    """The flat epoch-row columns of a health dict (each task's mean gate weights included, so
    that `from_row` recomputes the shares and flags)."""
    if not health:
        return {}
    row = {"expert_sample": health["sample"]}
    for name, e in health["experts"].items():
        row.update({f"{col}/{name}": e[key] for col, key in _EXPERT_COLS.items()})
    for task, s in health["tasks"].items():
        row.update({f"{col}/{task}": s[key] for col, key in _TASK_COLS.items()})
        row.update({f"gate_weight/{task}/{n}": w for n, w in s["mean_gate"].items()})
    return row


def from_row(row: dict) -> dict:
    """The health dict back from an epoch row's columns (history.jsonl, a live event); {} when the
    row has none. NaN cells (another run's columns in a DataFrame) are skipped."""
    experts, tasks = {}, {}

    def num(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v

    for k, v in row.items():
        if not isinstance(k, str) or "/" not in k or not num(v):
            continue
        col, _, rest = k.partition("/")
        if col in _EXPERT_COLS:
            experts.setdefault(rest, {"units": None})[_EXPERT_COLS[col]] = float(v)
        elif col in _TASK_COLS:
            tasks.setdefault(rest, {"mean_gate": {}})[_TASK_COLS[col]] = float(v)
        elif col == "gate_weight":
            task, _, name = rest.partition("/")
            tasks.setdefault(task, {"mean_gate": {}})["mean_gate"][name] = float(v)
    if not experts and not tasks:
        return {}
    experts = {n: e for n, e in experts.items() if "dead_share" in e and "mean_norm" in e}
    tasks = {t: s for t, s in tasks.items() if all(k in s for k in _TASK_COLS.values())}
    rows = row.get("expert_sample")
    return assess(experts, tasks, int(rows) if num(rows) else 0)


def measure(model: nn.Module, sample: Sample | None) -> tuple[dict, dict]:
    """(health, its epoch-row columns): what the training loop calls once per epoch."""
    modules = model.expert_modules() if hasattr(model, "expert_modules") else {}
    if not modules or sample is None:
        return {}, {}
    health = expert_health(model, sample)
    return health, row_of(health)
