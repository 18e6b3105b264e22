"""The interface every architecture implements, and the parts they all share.

An architecture file holds two classes:

- the network, a `MultiTaskModel` (nn.Module): it only writes `body(x)`, from the input row to
  each task's tower input (plus the shared representation and gate weights, for the dashboard),
  reading its own knobs from `self.options` (its typed Options). Losses, predictions, target
  scaling, the embedding accessors and the scoring hook live here, so the trainer never
  special-cases a model; a model with its own objective (ESMM) overrides `task_losses` / `predict`;
- its description, an `Architecture`: registry key, label, paper, `Options`, rules (`check`),
  run-name summary, diagram, and the names of its experts. Lists, the CLI, URLs, validation, run
  names and the pages read it; `Model` is the network class.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from ..data.tasks import TaskSpec
from ..registry import knob, knob_fields
from .blocks import InputLayer, PairRows, Tower
from .context import PositionBias
from .diagram import Canvas, sizes
from .history._block import HistoryInput

if TYPE_CHECKING:  # config builds ModelConfig from this package's registry
    from ..config import ModelConfig

LOG_FLOOR = 1e-7  # probabilities below it count as it on the log scale (fusion)


@dataclass
class Body:
    tower_inputs: list[torch.Tensor]  # one [B, d_t] per task
    # [B, d] what all tasks share (None for single-task); or a function giving it, when building
    # it costs work that training does not need (read only by `inspect`)
    shared: torch.Tensor | Callable[[], torch.Tensor] | None = None
    gates: dict[str, torch.Tensor] = field(default_factory=dict)  # task -> [B, n_experts]


class MultiTaskModel(nn.Module):
    """Base of every architecture's network (its description: `Architecture`, `spec` here).

    `cfg` is the ModelConfig, read for the settings every architecture shares (emb_dim, towers,
    dropout, text, history); `options` the architecture's own knobs (an instance of
    `spec.Options`, from `mtrlib.registry.options_of`), kept as `self.options`."""
    spec: type[Architecture]  # set by the Architecture whose `Model` this is

    def __init__(self, cfg: ModelConfig, desc: dict, tables: dict[str, torch.Tensor], tasks: list[TaskSpec],
                 options=None):
        super().__init__()
        self.cfg = cfg
        self.options = options if options is not None else self.spec.default_options()
        self.tasks = list(tasks)
        self.task_names = [t.name for t in tasks]
        self.register_buffer("is_binary", torch.tensor([t.is_binary for t in tasks], dtype=torch.bool))
        self.all_binary = all(t.is_binary for t in tasks)
        # regression targets are standardised with training statistics (set by fit_targets)
        self.register_buffer("target_mean", torch.zeros(len(tasks)))
        self.register_buffer("target_std", torch.ones(len(tasks)))
        self.expert_names: list[str] = self.spec.expert_names(self.options, self.task_names)
        ctx = desc.get("context") or {}
        if getattr(cfg, "position", "feature") == "tower" and ctx.get("position") in (ctx.get("cat") or {}):
            self.position_bias = PositionBias(ctx, len(tasks))
            self.register_buffer("examined", torch.tensor([t.is_binary and not t.parent for t in tasks]),
                                 persistent=False)

    @property
    def arch(self) -> str:
        """The registry key of this network's architecture (config.json's model.arch)."""
        return self.spec.arch

    # -- what an architecture provides --------------------------------------------------------
    def make_input(self, desc, tables) -> InputLayer:
        c = self.cfg
        if getattr(c, "history", 0):  # the user's past items join the input (mtrlib.models.history)
            return HistoryInput(desc, tables, c)
        return InputLayer(desc, tables, c.emb_dim, c.text_features, c.text_dim, c.text_combine)

    def make_towers(self, in_dims: list[int]) -> nn.ModuleList:
        return nn.ModuleList(Tower(d + self._task_input_dim(), self.cfg.towers, self.cfg.dropout) for d in in_dims)

    def make_task_inputs(self, desc, tables) -> None:
        """Task-specific embeddings (the `task_emb` knob, after STEM, Su et al. AAAI 2024): each
        task gets its own input layer of that width, read by its tower only, beside what the
        architecture shares. Call before `make_towers`; a width of 0 adds nothing."""
        width = int(getattr(self.options, "task_emb", 0) or 0)
        if width:
            c = self.cfg
            self.task_inputs = nn.ModuleList(InputLayer(desc, tables, width, c.text_features, width, "sum")
                                             for _ in self.tasks)  # (context features included: STEM's per-task tables cover them)

    def _task_input_dim(self) -> int:
        inputs = getattr(self, "task_inputs", None)
        return inputs[0].out_dim if inputs else 0

    def body(self, x: torch.Tensor) -> Body:
        raise NotImplementedError

    def input_row(self, user: torch.Tensor, item: torch.Tensor, history=None, context=None) -> torch.Tensor:
        """x, the row `body` reads for each (user, item) pair: the input layer's output (the
        module is `self.input`, a name kept for saved weights; `inspect` reports x as 'input').
        `history`: each pair's past items (mtrlib.data.history.History), for a model with a
        history block; None there means each user's latest training history. `context`: each
        pair's impression context (mtrlib.data.context.Context); None: the run's default one."""
        return input_of(self.input, user, item, history, context)

    def split_input(self) -> InputLayer | None:
        """The input layer whose row `body` reads, so that a caller may feed the body
        `user_part(u) + item_part(i)` (`score_parts`; mtrlib.serve.scoring does); None where
        `input_row` builds the body's input some other way (or a target-aware history block
        makes the row depend on the pair, or task-specific embeddings add rows of their own)."""
        if getattr(self, "task_inputs", None):
            return None
        return self.input if getattr(self.input, "factorised", True) else None

    # -- scoring a user block x an item block ------------------------------------------------------
    # True where `body` reads its input row only through InputLinear layers (blocks.mlp's first
    # layer, gates): then `score_parts` hands it the rows factorised (blocks.PairRows) and every first
    # layer costs O(users + items) instead of O(users x items). False: the rows are built first.
    factorised_body = False

    def scores_from_parts(self) -> bool:
        """Whether scoring may call `score_parts` (the model has one input row to split);
        otherwise it runs the forward pass over repeated (user, item) rows."""
        return self.split_input() is not None

    def score_parts(self, xu: torch.Tensor, xi: torch.Tensor, cache: dict | None = None, pairs=None) -> torch.Tensor:
        """Raw outputs of the ranking towers [len(xu) * len(xi), R] user-major (or [P, R] for
        `pairs`) for the rows xu[u] + xi[i]: `split_input()`'s user_part and item_part."""
        rows = PairRows(xu, xi, cache, pairs)
        b = self.body(rows if self.factorised_body else rows.dense())
        return torch.stack([tw(h) for tw, h in zip(self.towers, b.tower_inputs)], -1)  # [rows, R]

    # -- the common part -------------------------------------------------------------------------
    def forward(self, user: torch.Tensor, item: torch.Tensor, history=None, context=None) -> torch.Tensor:
        """Raw outputs [B, T]: logits for binary tasks, standardised values for regression."""
        b = self.body(self.input_row(user, item, history, context))
        ins = b.tower_inputs
        inputs = getattr(self, "task_inputs", None)
        if inputs:  # task-specific embeddings: each tower also reads its task's own input row
            ins = [torch.cat([h, inp(user, item, context)], -1) for h, inp in zip(ins, inputs)]
        raw = torch.stack([tw(h) for tw, h in zip(self.towers, ins)], -1)
        bias = getattr(self, "position_bias", None)
        if bias is not None and self.training and context is not None:  # dropped at serving and evaluation
            raw = bias(raw, context, self.examined)
        return raw

    def task_losses(self, raw: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-task mean loss over observed labels [T]: BCE for binary, MSE for (scaled) regression.

        `mask` [B, T] (bool or float) marks observed labels; a task with no observed label in the
        batch contributes 0. Unobserved labels must be finite (the encoder stores 0 there).
        """
        m = mask.to(raw.dtype)
        if self.all_binary:
            per = F.binary_cross_entropy_with_logits(raw, labels, reduction="none")
        else:
            target = torch.where(self.is_binary, labels, (labels - self.target_mean) / self.target_std)
            per = torch.where(self.is_binary, F.binary_cross_entropy_with_logits(raw, target, reduction="none"),
                              (raw - target) ** 2)
        return (per * m).sum(0) / m.sum(0).clamp(min=1)

    def loss_counts(self, mask: torch.Tensor) -> torch.Tensor:
        """[T]: how many rows each task's loss in `task_losses` is a mean over (at least 1). Training
        on several processes weights each process's losses by its share of the global batch's
        counts, so that their average is the whole batch's loss (mtrlib.train.distributed)."""
        return mask.to(torch.float32).sum(0).clamp(min=1)

    def predict(self, raw: torch.Tensor) -> torch.Tensor:
        """Probabilities for binary tasks, values in original units for regression."""
        return torch.where(self.is_binary, torch.sigmoid(raw), raw * self.target_std + self.target_mean)

    # -- output columns: the ranking tasks' towers, and where a run has one, each retrieval task's
    # two-tower score (mtrlib.models.retrieval adds those; every architecture gets them unchanged)
    @property
    def output_tasks(self) -> list[TaskSpec]:
        """The task of each column of `forward` / `predict`, in order."""
        return self.tasks

    @property
    def retrieval_tasks(self) -> list[TaskSpec]:
        return []

    def ranking_forward(self, user: torch.Tensor, item: torch.Tensor, history=None, context=None) -> torch.Tensor:
        """Raw outputs of the ranking towers only [B, len(self.tasks)]."""
        return self.forward(user, item, history, context)

    def fusion_scale(self, preds: torch.Tensor) -> torch.Tensor:
        """Predictions [..., T] on the fusion scale (mtrlib.serve.recommend): log p for binary tasks,
        the standardised value for regression."""
        logp = torch.log(preds.clamp(min=LOG_FLOOR))
        return torch.where(self.is_binary, logp, (preds - self.target_mean) / self.target_std)

    @torch.no_grad()
    def fit_targets(self, labels: torch.Tensor, mask: torch.Tensor) -> None:
        m = mask.float()
        n = m.sum(0).clamp(min=1)
        mean = (labels * m).sum(0) / n
        std = (((labels - mean) ** 2) * m).sum(0).div(n).sqrt().clamp(min=1e-6)
        self.target_mean.copy_(torch.where(self.is_binary, torch.zeros_like(mean), mean))
        self.target_std.copy_(torch.where(self.is_binary, torch.ones_like(std), std))

    # -- for the dashboard -----------------------------------------------------------------------
    @torch.no_grad()
    def inspect(self, user: torch.Tensor, item: torch.Tensor, history=None, context=None) -> dict[str, torch.Tensor]:
        """Representations for a batch: 'input', 'shared', 'task:<name>', 'gate:<name>'."""
        x = self.input_row(user, item, history, context)
        b = self.body(x)
        out = {"input": x}
        if b.shared is not None:
            out["shared"] = b.shared() if callable(b.shared) else b.shared
        for name, h in zip(self.task_names, b.tower_inputs):
            out[f"task:{name}"] = h
        for name, g in b.gates.items():
            out[f"gate:{name}"] = self.spec.gate_layout(self.options, self.task_names, name, g)
        return out

    @torch.no_grad()
    def item_embeddings(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        inp = self.input_layers()[0]
        if rows is None:
            rows = torch.arange(inp.item.slots.shape[0], device=inp.item.slots.device)
        return inp.item_vectors(rows)

    @torch.no_grad()
    def item_inputs(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """What the network reads for each item: id vector (+ text) and side features, as fed in."""
        inp = self.input_layers()[0]
        if rows is None:
            rows = torch.arange(inp.item.slots.shape[0], device=inp.item.slots.device)
        return inp.item_input(rows)

    @torch.no_grad()
    def user_embeddings(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        inp = self.input_layers()[0]
        if rows is None:
            rows = torch.arange(inp.user.slots.shape[0], device=inp.user.slots.device)
        return inp.user_vectors(rows)

    def input_layers(self) -> list[InputLayer]:
        return [self.input]

    def shared_input_layer(self) -> InputLayer | None:
        """The input layer every task reads (what retrieval towers are built on), or None when
        the architecture shares none (Single-task)."""
        inp = getattr(self, "input", None)
        return inp if isinstance(inp, InputLayer) else None

    @property
    def n_users(self) -> int:
        return int(self.input_layers()[0].user.slots.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.input_layers()[0].item.slots.shape[0])

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def expert_modules(self) -> dict[str, nn.Module]:
        """The modules whose forward output is each expert's output, keyed and ordered like
        `expert_names` (mtrlib.train.experts hooks them); {} for an architecture without experts."""
        return {}


def input_of(inp: InputLayer, user, item, history=None, context=None) -> torch.Tensor:
    """An input layer's row, given a history only when there is one (a plain InputLayer takes none)."""
    return inp(user, item, context=context) if history is None else inp(user, item, history, context=context)


class Architecture:
    """An architecture's description, beside its network in the same file. A subclass in its own
    module of this package that sets `arch` is registered by discovery
    (`mtrlib.models.ARCHITECTURES`). Each method takes the architecture's options `opts` (an
    instance of `Options`) and the ModelConfig `m` (the settings all architectures share)."""
    arch = "base"  # registry key: --model, the URL's arch=, config.json's model.arch
    label = ""  # how lists, titles and run names show it
    paper = ""  # the paper it comes from
    order = 100  # position in lists
    Options = None  # dataclass of this architecture's own knobs, declared with mtrlib.registry.knob
    Model: type[MultiTaskModel] = MultiTaskModel  # the network

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "Model" in cls.__dict__:
            cls.Model.spec = cls  # the network finds its description (defaults, expert names)

    @classmethod
    def default_options(cls):
        return cls.Options() if cls.Options is not None else None

    @classmethod
    def check(cls, opts, m: ModelConfig) -> list[str]:
        """Rules across its knobs, applied when it is the chosen architecture: raise DataError
        with the fix, or return warnings. By default every layer-sizes knob needs a layer."""
        for kf in knob_fields(cls.Options):
            if kf.knob.widget == "sizes":
                require_layers(getattr(opts, kf.name), cls.label, kf.knob.name_in_text)
        return []

    @classmethod
    def summary(cls, opts, m: ModelConfig) -> str:
        """Short description for run names and tables, e.g. 'Shared-Bottom [64,32]'."""
        first = next((kf for kf in knob_fields(cls.Options) if kf.knob.widget == "sizes"), None)
        return f"{cls.label} {sizes(getattr(opts, first.name))}" if first else cls.label

    @classmethod
    def diagram_width(cls, opts, m: ModelConfig, tasks: list[str]) -> int:
        return max(len(tasks), 3)

    @classmethod
    def draw(cls, c: Canvas, opts, m: ModelConfig) -> None:
        """Draw what lies between the embeddings and the towers (see mtrlib.models.diagram)."""
        for x in c.task_x:
            c.arrow(c.from_input(x), c.to_tower(x))

    @classmethod
    def expert_names(cls, opts, tasks: list[str]) -> list[str]:
        """The experts the gates mix, as the dashboard names them (none: no gates)."""
        return []

    @classmethod
    def gate_layout(cls, opts, tasks: list[str], task: str, gate: torch.Tensor) -> torch.Tensor:
        """A task's gate weights [B, n] laid out on `expert_names` (PLE's gates are partial)."""
        return gate


def require_layers(layers: list[int], label: str, what: str = "shared layer", fix: str = "add a layer, e.g. 64") -> None:
    """Refuse an architecture whose MLP has no layer (a check() helper)."""
    if not layers:
        raise DataError(f"{label} needs at least one {what}.", fix=fix)


def require_experts(layers: list[int]) -> None:
    if not layers:
        raise DataError("Experts need at least one layer.", fix="set expert sizes, e.g. 64,32")


# the task-specific embeddings knob of the architectures that share their embeddings (Shared-Bottom,
# MMoE, PLE): one config field, flag and URL key
TASK_EMB = dict(noun="task-specific embedding width", lo=0, hi=128, flag="--task-emb", url="temb", valid=lambda v: 0 <= v <= 512,
                message="The task-specific embedding width must be 0 (off) to 512 (got {v}).", fix="0, 8 or 16",
                help="each task also gets its own embeddings of this width, read by its tower only (0: off; "
                     "STEM's idea, Su et al. AAAI 2024)")

SHARED_MLP = dict(noun="shared layer", widget="sizes", flag="--shared", url="shared")  # config.json's `shared`


@dataclass
class PerTaskMLP:
    """Options of an architecture whose tasks each have their own MLP. It is stored as `shared`,
    config.json's name since the first version (Shared-Bottom's one shared MLP uses it too)."""
    shared: list[int] = knob([64, 32], "Per-task layers", help="each task's own MLP", **SHARED_MLP)
