"""Typed run configuration: one dataclass tree drives the UI, the CLI and the run store.

`TrainConfig.to_dict()` / `TrainConfig.from_dict()` round-trip through JSON; unknown keys are
refused with a message so a typo in a config file does not silently do nothing. The
architecture and weighting names, and their own settings, come from the registries
(`mtrlib.models`, `mtrlib.weighting`): a new architecture or method file adds its knobs here.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field

from .errors import DataError
from .data.world import WorldConfig
from .models import ARCHITECTURES
from .models.retrieval import Retrieval, RetrievalOptions
from .models.history import HISTORY_ENCODERS, PREFIX as _HISTORY_PREFIX
from .registry import (check_knob_rule, check_knob_type, is_int as _is_int, is_number as _is_number, knob_fields,
    merge_knobs, options_of)
from .weighting import WEIGHTINGS as _WEIGHTING_CLASSES

# names derived from the registries (one file per architecture / weighting method)
ARCHS = tuple(ARCHITECTURES)
ARCH_LABELS = {a: cls.label for a, cls in ARCHITECTURES.items()}
WEIGHTINGS = tuple(_WEIGHTING_CLASSES)
WEIGHTING_LABELS = {w: cls.label for w, cls in _WEIGHTING_CLASSES.items()}
OPTIMIZERS = ("adam", "adamw", "sgd", "adagrad")
DEVICES = ("auto", "cpu", "cuda", "mps")
TEXT_COMBINE = ("sum", "concat", "gated")
GRAD_SPACES = ("params", "rep")  # where a gradient method takes the tasks' gradients (mtrlib.train.gradients)
EMBEDDING_UPDATES = ("auto", "dense", "lazy")  # mtrlib.train.optim


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
class _ModelCommon:
    """What every architecture has; its own knobs are added from its `Options` (below)."""
    arch: str = "mmoe"
    emb_dim: int = 16
    towers: list[int] = field(default_factory=lambda: [32])
    dropout: float = 0.0
    text_features: bool = False
    text_dim: int = 16  # projection of the language-model vector (sum needs text_dim == emb_dim)
    text_combine: str = "sum"
    # the user's last `history` interactions as a feature (0 = off; mtrlib.data.history), read by
    # the encoder `history_encoder` (mtrlib.models.history), optionally only where the binary task
    # `history_task` is 1, "before" by timestamp ("time") or by the row order of the file ("file")
    history: int = 0
    history_encoder: str = "mean"
    history_task: str | None = None
    history_order: str = "time"
    history_pool: str = "train"  # "train+val": test examples also read the validation period before them


def _weighting_prefix(name: str) -> str:
    return name.replace("-", "_") + "_"


# knob fields: every architecture's Options (shared names once, e.g. `experts` of MMoE and PLE),
# and every weighting method's Options as `<method>_<knob>` (e.g. gradnorm_alpha)
# (+ the retrieval task's towers, mtrlib.models.retrieval: set whichever architecture is chosen)
MODEL_KNOBS = merge_knobs([(f"{c.__module__}.{c.__name__}", knob_fields(c.Options)) for c in ARCHITECTURES.values()]
                          + [("mtrlib.models.retrieval.RetrievalOptions", knob_fields(RetrievalOptions))]
                          + [(f"{c.__module__}.{c.__name__}", knob_fields(c.Options, _HISTORY_PREFIX))
                             for c in HISTORY_ENCODERS.values()])  # history encoders: history_<knob>
WEIGHTING_KNOBS = merge_knobs([(f"{c.__module__}.{c.__name__}", knob_fields(c.Options, _weighting_prefix(w)))
                               for w, c in _WEIGHTING_CLASSES.items()])
TOWER_SIZES = ("towers", "tower layer")


def knob_owners(name: str) -> list[tuple[type, object]]:
    """(class, its Knob) for every architecture / weighting method that declares config field `name`."""
    out = []
    for prefix_of, classes in ((lambda c: "", ARCHITECTURES), (lambda c: _weighting_prefix(c.name), _WEIGHTING_CLASSES),
                               (lambda c: "", {"retrieval": Retrieval}),
                               (lambda c: _HISTORY_PREFIX, HISTORY_ENCODERS)):
        for c in classes.values():
            for kf in knob_fields(c.Options, prefix_of(c)):
                if kf.name == name:
                    out.append((c, kf.knob))
    return out


def _generated(name: str, base: type, knobs, doc: str) -> type:
    cls = dataclasses.make_dataclass(name, [(k.name, k.type, k.copy_field()) for k in knobs], bases=(base,))
    cls.__module__, cls.__qualname__, cls.__doc__ = __name__, name, doc
    return cls


ModelConfig = _generated("ModelConfig", _ModelCommon, MODEL_KNOBS, """The network's settings: the common
    ones (arch, emb_dim, towers, dropout, text_*) plus every architecture's own knobs, one flat
    field each (shared, experts, n_experts, specific_experts, shared_experts, levels, ...), taken
    from each architecture's `Options` (mtrlib.models). Flat and named as in config.json since
    the first version, so old runs still open; an architecture reads the knobs it declared.""")


def arch_class(cfg_or_name):
    """The architecture class of a ModelConfig (or of an arch name)."""
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.arch
    return ARCHITECTURES[name]


def model_options(cfg) -> object:
    """The chosen architecture's own Options, filled from a ModelConfig."""
    return options_of(arch_class(cfg), cfg)


@dataclass
class _TrainCommon:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    weighting: str = "fixed"
    weights: dict[str, float] = field(default_factory=dict)  # task -> weight (missing = 1)
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
    # gradient methods: per-task gradients on every parameter more than one task uses ("params")
    # or on the shared representation ("rep", LibMTL's rep_grad: cheaper)
    grad_space: str = "params"
    grad_telemetry: bool = True  # cosines between the tasks' gradients every log_every steps (mtrlib.train.telemetry)
    # how the user / item id tables are updated (mtrlib.train.optim): "dense" every row at every step,
    # "lazy" only the rows of the batch (sparse gradients, SparseAdam, lazy weight decay), "auto"
    # lazy for big tables on the CPU (bench/embedding_optim.py)
    embedding_updates: str = "auto"
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


TrainConfig = _generated("TrainConfig", _TrainCommon, WEIGHTING_KNOBS, """One run's whole setup: data, model,
    weighting, optimisation. Every weighting method's own knobs are flat fields named
    `<method>_<knob>` (gradnorm_alpha, dwa_temperature, ...), from each method's `Options`
    (mtrlib.weighting). `to_dict()` / `from_dict()` round-trip through JSON; unknown keys are
    refused with a message so a typo in a config file does not silently do nothing.""")


def weighting_class(cfg_or_name):
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.weighting
    return _WEIGHTING_CLASSES[name]


def weighting_options(cfg) -> dict:
    """The chosen weighting method's own settings, by their names in its Options."""
    cls = weighting_class(cfg)
    if cls.Options is None:
        return {}
    prefix = _weighting_prefix(cls.name)
    return {f.name: getattr(cfg, prefix + f.name) for f in dataclasses.fields(cls.Options)}


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


_INTS = {"batch_size": "batch size", "epochs": "epochs", "seed": "seed", "log_every": "log_every",
         "patience": "patience", "cpu_threads": "CPU threads"}
_NUMBERS = {"lr": "learning rate", "weight_decay": "weight decay"}
_MODEL_INTS = {"emb_dim": "embedding dimension", "text_dim": "text dimension"}


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
    for kf in MODEL_KNOBS:
        check_knob_type(kf, getattr(cfg.model, kf.name))
    for kf in WEIGHTING_KNOBS:
        check_knob_type(kf, getattr(cfg, kf.name))
    if not isinstance(cfg.model.towers, (list, tuple)):
        raise DataError(f"The tower layer sizes must be a list of widths (got {cfg.model.towers!r}).", fix="e.g. [64, 32]")
    if not isinstance(cfg.weights, dict):
        raise DataError(f"Task weights must map task names to numbers (got {cfg.weights!r}).",
                        fix='e.g. {"click": 1, "like": 2}')


def _layer_lists(m) -> list[tuple[str, list]]:
    """(noun, sizes) of every layer-size setting: each architecture's and the towers."""
    out = [(kf.knob.name_in_text, getattr(m, kf.name)) for kf in MODEL_KNOBS if kf.base_type is list]
    return out + [(TOWER_SIZES[1], m.towers)]


HISTORY_ENCODER_LABELS = {n: c.label for n, c in HISTORY_ENCODERS.items()}


def check_history_settings(m, task_names: list[str] | None = None) -> list[str]:
    """The history block's settings (mtrlib.data.history; what the data must hold is checked
    when it is prepared): length, encoder, order, task; the chosen encoder's own rules."""
    from .data.history import ORDERS, POOLS, check_length
    check_length(m.history)
    if m.history_order not in ORDERS:
        raise DataError(f"Unknown history order '{m.history_order}'.",
                        fix="use 'time' (the timestamp) or 'file' (the file's row order stands for time)")
    if m.history_pool not in POOLS:
        raise DataError(f"Unknown history pool '{m.history_pool}'.",
                        fix="use 'train' (only training interactions) or 'train+val' (test examples also read "
                            "the validation interactions before them)")
    if m.history_encoder not in HISTORY_ENCODERS:
        raise DataError(f"Unknown history encoder '{m.history_encoder}'.",
                        fix=f"choose one of: {', '.join(HISTORY_ENCODERS)}")
    if m.history_task is not None and not isinstance(m.history_task, str):
        raise DataError(f"The history task must be a task name (got {m.history_task!r}).", fix="e.g. liked")
    if not m.history:
        return []
    if task_names is not None and m.history_task is not None and m.history_task not in task_names:
        raise DataError(f"The history task '{m.history_task}' is not one of the tasks.",
                        fix=f"tasks are: {', '.join(task_names)} (or leave --history-task out for every interaction)")
    enc = HISTORY_ENCODERS[m.history_encoder]
    return enc.check(options_of(enc, m, _HISTORY_PREFIX), m)


def validate(cfg: TrainConfig, task_names: list[str] | None = None) -> list[str]:
    """Refuse impossible settings before training, with the fix; return warnings for odd ones.

    Every knob's own rule is checked whichever architecture or method is chosen (a config
    carries them all); the chosen architecture's and method's `check` add their rules."""
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
    if cfg.embedding_updates not in EMBEDDING_UPDATES:
        raise DataError(f"Unknown embedding updates '{cfg.embedding_updates}'.",
                        fix=f"choose one of: {', '.join(EMBEDDING_UPDATES)}")
    if m.text_combine not in TEXT_COMBINE:
        raise DataError(f"Unknown text combination '{m.text_combine}'.", fix=f"choose one of: {', '.join(TEXT_COMBINE)}")
    for label, sizes in _layer_lists(m):
        if any((not isinstance(s, int)) or s < 1 for s in sizes):
            raise DataError(f"Every {label} needs a width of at least 1 (got {sizes}).",
                            fix="remove the layer or give it a positive width")
        if any(s > 4096 for s in sizes):
            raise DataError(f"A {label} of width {max(sizes)} is too wide for this tool.", fix="use at most 4096")
    warn += arch_class(m).check(model_options(m), m)
    warn += check_history_settings(m, task_names)
    if not 1 <= m.emb_dim <= 512:
        raise DataError(f"Embedding dimension must be 1..512 (got {m.emb_dim}).", fix="e.g. 16")
    for kf in MODEL_KNOBS:
        check_knob_rule(kf, getattr(m, kf.name), m)
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
    for kf in WEIGHTING_KNOBS:
        check_knob_rule(kf, getattr(cfg, kf.name), cfg)
    if cfg.batch_size < 1 or cfg.epochs < 1:
        raise DataError("Batch size and epochs must be at least 1.", fix="e.g. batch 1024, 5 epochs")
    if cfg.epochs > 1000:
        raise DataError(f"{cfg.epochs} epochs is more than this tool runs.", fix="use at most 1000")
    if cfg.log_every < 1:
        raise DataError("log_every must be at least 1.")
    if cfg.grad_space not in GRAD_SPACES:
        raise DataError(f"Unknown gradient space '{cfg.grad_space}'.",
                        fix="params (every shared parameter) or rep (the shared representation)")
    if not isinstance(cfg.grad_telemetry, bool):
        raise DataError(f"grad_telemetry must be true or false (got {cfg.grad_telemetry!r}).")
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
    warn += weighting_class(cfg).check(cfg, task_names)
    return warn
