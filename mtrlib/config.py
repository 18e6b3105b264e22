"""Typed run configuration: one dataclass tree drives the UI, the CLI and the run store.

`TrainConfig.to_dict()` / `TrainConfig.from_dict()` round-trip through JSON; unknown keys are
refused with a message so a typo in a config file does not silently do nothing.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import asdict, dataclass, field

from .data.errors import DataError
from .data.world import WorldConfig

ARCHS = ("single", "shared-bottom", "mmoe", "ple", "esmm")
ARCH_LABELS = {"single": "Single-task", "shared-bottom": "Shared-Bottom", "mmoe": "MMoE", "ple": "PLE / CGC",
               "esmm": "ESMM"}
WEIGHTINGS = ("fixed", "uncertainty", "gradnorm", "dwa")
OPTIMIZERS = ("adam", "adamw", "sgd", "adagrad")
DEVICES = ("auto", "cpu", "cuda", "mps")
TEXT_COMBINE = ("sum", "concat", "gated")


@dataclass
class DataConfig:
    source: str = "world"  # "world" | "files"
    world: WorldConfig = field(default_factory=WorldConfig)
    files: dict[str, str] = field(default_factory=dict)  # role -> path (CLI) or upload name (UI, display only)
    tasks: list[str] = field(default_factory=list)  # empty: the dataset's suggested tasks
    negatives: int = 4
    split: str = "random"  # random | temporal | cold-items
    val_frac: float = 0.1
    test_frac: float = 0.1
    use_features: bool = True  # side features (genres, attributes); False = ids only
    text_columns: list[str] | None = None


@dataclass
class ModelConfig:
    arch: str = "mmoe"
    emb_dim: int = 16
    shared: list[int] = field(default_factory=lambda: [64, 32])  # Shared-Bottom / single-task / ESMM MLP
    experts: list[int] = field(default_factory=lambda: [64, 32])  # one expert's MLP (MMoE, PLE)
    n_experts: int = 4  # MMoE
    specific_experts: int = 1  # PLE: per task
    shared_experts: int = 2  # PLE
    levels: int = 1  # PLE extraction levels (1 = CGC)
    towers: list[int] = field(default_factory=lambda: [32])
    dropout: float = 0.0
    text_features: bool = False
    text_dim: int = 16  # projection of the language-model vector (sum needs text_dim == emb_dim)
    text_combine: str = "sum"


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    weighting: str = "fixed"
    weights: dict[str, float] = field(default_factory=dict)  # task -> weight (missing = 1)
    gradnorm_alpha: float = 1.5
    dwa_temperature: float = 2.0
    optimizer: str = "adam"
    # defaults tuned on the built-in world and on ml-latest-small (docs/RESULTS-models.md): the
    # L2 weight decay shrinks the embeddings of rarely seen items and users, the largest gain
    lr: float = 0.01
    weight_decay: float = 1e-4
    batch_size: int = 1024
    epochs: int = 8
    seed: int = 0
    device: str = "auto"
    # intra-op CPU threads while training; 0 = auto = 1. The models here are small: a second
    # thread gains little, and on a machine whose cores are shared (a server, a laptop running
    # the app) one descheduled thread stalls every operation, measured 10-50x slower.
    cpu_threads: int = 0
    log_every: int = 10  # steps between progress events
    early_stop_task: str | None = None  # None = off
    patience: int = 2
    name: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return _build(cls, d, "config")

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"The config file is not valid JSON ({e.msg} at line {e.lineno}).",
                            fix="check the file, or write it with `python -m mtrlib train --save-config`") from None
        if not isinstance(d, dict):
            raise DataError("The config file must hold a JSON object.", fix="start it with '{'")
        return cls.from_dict(d)


def _build(cls, d: dict, where: str):
    if not isinstance(d, dict):
        raise DataError(f"'{where}' must be an object.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise DataError(f"Unknown setting(s) in {where}: {', '.join(unknown)}.",
                        fix=f"known settings: {', '.join(fields)}")
    kw = {}
    for k, v in d.items():
        sub = {"data": DataConfig, "model": ModelConfig, "world": WorldConfig}.get(k)
        if sub is not None and not isinstance(v, (dict, sub)):
            raise DataError(f"'{where}.{k}' must be an object of settings (got {type(v).__name__}).",
                            fix=f'write it as "{k}": {{...}}')
        kw[k] = _build(sub, v, f"{where}.{k}") if sub is not None and isinstance(v, dict) else v
    return cls(**kw)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


_INTS = {"batch_size": "batch size", "epochs": "epochs", "seed": "seed", "log_every": "log_every",
         "patience": "patience", "cpu_threads": "CPU threads"}
_NUMBERS = {"lr": "learning rate", "weight_decay": "weight decay", "gradnorm_alpha": "GradNorm alpha",
            "dwa_temperature": "DWA temperature"}
_MODEL_INTS = {"emb_dim": "embedding dimension", "n_experts": "number of experts",
               "specific_experts": "task-specific experts", "shared_experts": "shared experts",
               "levels": "extraction levels", "text_dim": "text dimension"}


def _check_types(cfg: "TrainConfig") -> None:
    """Settings read from JSON or a URL can hold any type: refuse the wrong ones by name."""
    for obj, ints, nums in ((cfg, _INTS, _NUMBERS), (cfg.model, _MODEL_INTS, {"dropout": "dropout"})):
        for k, label in ints.items():
            v = getattr(obj, k)
            if not _is_int(v):
                raise DataError(f"The {label} must be a whole number (got {v!r}).", fix="e.g. " + {
                    "batch_size": "1024", "epochs": "8", "emb_dim": "16"}.get(k, "1"))
        for k, label in nums.items():
            v = getattr(obj, k)
            if not _is_number(v):
                raise DataError(f"The {label} must be a number (got {v!r}).", fix="write it without quotes")
    m = cfg.model
    for label, sizes in (("shared layer", m.shared), ("expert layer", m.experts), ("tower layer", m.towers)):
        if not isinstance(sizes, (list, tuple)):
            raise DataError(f"The {label} sizes must be a list of widths (got {sizes!r}).", fix="e.g. [64, 32]")
    if not isinstance(cfg.weights, dict):
        raise DataError(f"Task weights must map task names to numbers (got {cfg.weights!r}).",
                        fix='e.g. {"click": 1, "like": 2}')


def validate(cfg: TrainConfig, task_names: list[str] | None = None) -> list[str]:
    """Refuse impossible settings before training, with the fix; return warnings for odd ones."""
    _check_types(cfg)
    m = cfg.model
    warn: list[str] = []
    if m.arch not in ARCHS:
        raise DataError(f"Unknown model '{m.arch}'.", fix=f"choose one of: {', '.join(ARCHS)}")
    if cfg.weighting not in WEIGHTINGS:
        raise DataError(f"Unknown weighting '{cfg.weighting}'.", fix=f"choose one of: {', '.join(WEIGHTINGS)}")
    if cfg.optimizer not in OPTIMIZERS:
        raise DataError(f"Unknown optimiser '{cfg.optimizer}'.", fix=f"choose one of: {', '.join(OPTIMIZERS)}")
    if cfg.device not in DEVICES:
        raise DataError(f"Unknown device '{cfg.device}'.", fix=f"choose one of: {', '.join(DEVICES)}")
    if m.text_combine not in TEXT_COMBINE:
        raise DataError(f"Unknown text combination '{m.text_combine}'.", fix=f"choose one of: {', '.join(TEXT_COMBINE)}")
    for label, sizes in (("shared layer", m.shared), ("expert layer", m.experts), ("tower layer", m.towers)):
        if any((not isinstance(s, int)) or s < 1 for s in sizes):
            raise DataError(f"Every {label} needs a width of at least 1 (got {sizes}).",
                            fix="remove the layer or give it a positive width")
        if any(s > 4096 for s in sizes):
            raise DataError(f"A {label} of width {max(sizes)} is too wide for this tool.", fix="use at most 4096")
    if m.arch in ("shared-bottom", "single", "esmm") and not m.shared:
        raise DataError(f"{ARCH_LABELS[m.arch]} needs at least one shared layer.", fix="add a layer, e.g. 64")
    if m.arch in ("mmoe", "ple") and not m.experts:
        raise DataError("Experts need at least one layer.", fix="set expert sizes, e.g. 64,32")
    if not 1 <= m.emb_dim <= 512:
        raise DataError(f"Embedding dimension must be 1..512 (got {m.emb_dim}).", fix="e.g. 16")
    if not 1 <= m.n_experts <= 64:
        raise DataError(f"MMoE takes 1 to 64 experts (got {m.n_experts}).", fix="e.g. 4")
    if m.arch == "ple" and (m.specific_experts < 0 or m.shared_experts < 0 or m.specific_experts + m.shared_experts < 1):
        raise DataError("PLE needs at least one expert per task (specific + shared).", fix="e.g. 1 specific, 2 shared")
    if m.specific_experts > 64 or m.shared_experts > 64:
        raise DataError(f"PLE takes at most 64 task-specific and 64 shared experts "
                        f"(got {m.specific_experts} and {m.shared_experts}).", fix="e.g. 1 specific, 2 shared")
    if not 1 <= m.levels <= 4:
        raise DataError(f"PLE takes 1 to 4 extraction levels (got {m.levels}).", fix="1 (CGC) or 2")
    if not 0 <= m.dropout < 1:
        raise DataError(f"Dropout must be in [0, 1) (got {m.dropout}).", fix="e.g. 0.1")
    if m.text_features and m.text_combine == "sum" and m.text_dim != m.emb_dim:
        m.text_dim = m.emb_dim  # sum needs equal widths; say nothing surprising happens
    if not (cfg.lr > 0):
        raise DataError(f"Learning rate must be above 0 (got {cfg.lr}).", fix="e.g. 0.003 for Adam")
    if cfg.lr > 10:
        raise DataError(f"Learning rate {cfg.lr} is far too high.", fix="use 0.0001..0.1")
    if not 0 <= cfg.weight_decay <= 1:
        raise DataError(f"Weight decay must be between 0 and 1 (got {cfg.weight_decay}).", fix="e.g. 0.0001")
    if not 0 <= cfg.gradnorm_alpha <= 10:
        raise DataError(f"GradNorm's alpha must be between 0 and 10 (got {cfg.gradnorm_alpha}).", fix="e.g. 1.5")
    if not 0 < cfg.dwa_temperature <= 100:
        raise DataError(f"DWA's temperature must be above 0 (got {cfg.dwa_temperature}).", fix="e.g. 2")
    if cfg.batch_size < 1 or cfg.epochs < 1:
        raise DataError("Batch size and epochs must be at least 1.", fix="e.g. batch 1024, 5 epochs")
    if cfg.epochs > 1000:
        raise DataError(f"{cfg.epochs} epochs is more than this tool runs.", fix="use at most 1000")
    if cfg.log_every < 1:
        raise DataError("log_every must be at least 1.")
    if not isinstance(cfg.cpu_threads, int) or not 0 <= cfg.cpu_threads <= 256:
        raise DataError(f"CPU threads must be 0 (auto) to 256 (got {cfg.cpu_threads}).", fix="0 (auto) or e.g. 4")
    if cfg.patience < 1:
        raise DataError(f"Early-stopping patience must be at least 1 epoch (got {cfg.patience}).", fix="e.g. 2")
    for k, v in cfg.weights.items():
        if not isinstance(v, (int, float)) or v < 0 or v != v:
            raise DataError(f"Task weight for '{k}' must be a number >= 0 (got {v}).", fix="e.g. 1")
    if task_names is not None:
        unknown = sorted(set(cfg.weights) - set(task_names))
        if unknown:
            raise DataError(f"Weights name unknown task(s): {', '.join(unknown)}.",
                            fix=f"tasks are: {', '.join(task_names)}")
        if all(cfg.weights.get(t, 1.0) == 0 for t in task_names):
            raise DataError("Every task has weight 0, so nothing would be learned.",
                            fix="give at least one task a weight above 0")
        if cfg.early_stop_task and cfg.early_stop_task not in task_names:
            raise DataError(f"Early stopping watches task '{cfg.early_stop_task}', which is not defined.",
                            fix=f"tasks are: {', '.join(task_names)}")
    if m.arch == "mmoe" and m.n_experts > 16:
        warn.append(f"{m.n_experts} experts is many for this data; training will be slower.")
    return warn
