"""The config tree: every setting declared once, as a dataclass field carrying `knob(...)` metadata.

A run's whole setup is one `TrainConfig`: `data` (`DataConfig`, with `data.world`, the built-in
world's `WorldConfig`), `model` (`ModelConfig`), `weighting` (`WeightingConfig`) and the
training fields. A field's `knob(...)` says its label, help, range, widget, CLI flag, URL key,
choices and validity rule (message and fix): `SETTINGS` is one walk of the tree, and
validation (`validate`), the CLI flags (mtrlib.cli.common), the URL keys (mtrlib.share), sweep
keys (mtrlib.experiments.settings) and the Train page's widgets are all derived from it. A
setting's canonical name is its dotted path (`model.emb_dim`, `data.world.correlation`);
older names stay accepted as aliases (`resolve`). A field without `knob(...)` is stored but
is not a user setting of its own (files, task specs, task weights, the run's name).

Plugins (architectures, weighting methods, history encoders) keep their own typed `Options`:
the chosen plugin's instance lives in the config, nested (`PLUGINS`):

- `model.options`: the chosen architecture's Options (`model.arch`);
- `model.history_options`: the chosen history encoder's Options (`model.history_encoder`).
  The history settings stay flat fields of the model (`model.history`, `model.history_task`,
  ...) as in every earlier config, so only the encoder's own knobs are nested;
- `weighting.options`: the chosen weighting method's Options (`weighting.name`).

config.json stores only the chosen plugins' options. Choosing another plugin (setting
`model.arch`, `weighting.name`, `model.history_encoder`) replaces its options with the new
class's defaults, carrying over the values of knobs both classes declare by name (MMoE's and
PLE's `experts`). A plugin knob set while the chosen plugin lacks it has no effect and is
ignored, not stored: so a sweep over architectures with an MMoE-only knob trains PLE
unchanged, as it did when every knob was a flat field.

The plugin machinery (where options live, dotted paths, format 1) is in mtrlib.plugin_options.

Format 1 (run meta.json version 1) had every plugin knob flat: `model.n_experts`,
`model.history_heads`, top-level `gradnorm_alpha`, and `"weighting": "gradnorm"`. `migrate`
turns such a dict into the nested shape on read, and the old flat names stay readable and
settable as attributes (`cfg.model.n_experts`, `cfg.gradnorm_alpha`) for code written before.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

from .data.history import MAX_HISTORY, ORDERS, POOLS
from .data.split import SPLITS
from .data.world import WorldConfig
from .errors import ConfigError
from .models import ARCHITECTURES
from .models.history import HISTORY_ENCODERS, check_history_settings
from .models.context import ContextOptions
from .models.retrieval import RetrievalOptions
from .plugin_options import (FLAT_DEFAULTS, FLAT_NAMES, PLUGIN_OWNERS, PLUGIN_SETTINGS, PLUGINS, NestedOptions,
                             as_dict, build, chosen_plugin, get_value, migrate_format_1, plugin_options, plugin_place,
                             set_value, weighting_prefix)
from .registry import KnobField, LiveNames, check_knob_rule, check_knob_type, knob, knob_fields
from .weighting import WEIGHTINGS as _WEIGHTING_CLASSES

FORMAT_VERSION = 2  # the config.json shape this code writes (1: plugin knobs flat, see `migrate`)

# names derived from the registries (one file per architecture / weighting method)
ARCHS = tuple(ARCHITECTURES)
ARCH_LABELS = {a: cls.label for a, cls in ARCHITECTURES.items()}
WEIGHTINGS = tuple(_WEIGHTING_CLASSES)
WEIGHTING_LABELS = {w: cls.label for w, cls in _WEIGHTING_CLASSES.items()}
HISTORY_ENCODER_LABELS = {n: c.label for n, c in HISTORY_ENCODERS.items()}
OPTIMIZERS = ("adam", "adamw", "sgd", "adagrad")
DEVICES = ("auto", "cpu", "cuda", "mps")
TEXT_COMBINE = ("sum", "concat", "gated")
GRAD_SPACES = ("params", "rep")  # where a gradient method takes the tasks' gradients (mtrlib.train.gradients)
EMBEDDING_UPDATES = ("auto", "dense", "lazy")  # mtrlib.train.optim


@dataclass
class DataConfig:
    source: str = knob("world", "Data source", noun="data source", choices=("world", "files"), url="src",
                       widget="none", help="the built-in world, or files (the CLI's --data sets it)")
    world: WorldConfig = field(default_factory=WorldConfig)
    files: dict[str, str] = field(default_factory=dict)  # role (interactions/items/users, or train/val/test) -> path
    mapping: dict = field(default_factory=dict)  # the column mapping (mtrlib.data.mapping) the files are read with
    tasks: list[str] = field(default_factory=list)  # empty: the dataset's suggested tasks
    negatives: int = knob(4, "Negatives per positive", noun="number of negatives", lo=1, hi=50, flag="--negatives",
                          url="neg", valid=lambda v: 0 <= v <= 1000, example="4", fix="e.g. 4",
                          message="The number of negatives per positive must be 0 to 1000 (got {v}).",
                          help="sampled negatives per positive for an implicit task")
    split: str = knob("random", "Split", noun="split", choices=SPLITS, widget="select", flag="--split", url="split",
                      help="random | temporal (each user's latest) | cold-items | given (the data's own split)")
    val_frac: float = knob(0.1, "Validation fraction", noun="validation fraction", lo=0.0, hi=0.5, step=0.05,
                           flag="--val-frac", valid=lambda v: 0 <= v < 1, fix="e.g. 0.1",
                           message="The validation fraction must be in [0, 1) (got {v}).", help="validation fraction")
    test_frac: float = knob(0.1, "Test fraction", noun="test fraction", lo=0.0, hi=0.5, step=0.05, flag="--test-frac",
                            valid=lambda v: 0 < v < 1, fix="e.g. 0.1",
                            message="The test fraction must be in (0, 1) (got {v}).", help="test fraction")
    use_features: bool = knob(True, "Side features", widget="toggle", flag="--ids-only", flag_sets=False, url="feat",
                              help="side features (genres, attributes); off = ids only")
    text_columns: list[str] | None = None
    context: bool = knob(True, "Context features", widget="toggle", flag="--no-context", flag_sets=False, url="cfeat",
                         help="the impression's context columns (device, hour, position) as features; off = none")


def _declared(cls: type, name: str) -> dataclasses.Field:
    """A fresh copy of a field another dataclass declares (its default and knob)."""
    f = cls.__dataclass_fields__[name]
    return KnobField(name, f.type, f.metadata["knob"], f).copy_field()


@dataclass
class ModelConfig(NestedOptions):
    """The network's settings: the common ones, the chosen architecture's `options`, the
    history block (the encoder's own knobs in `history_options`) and the retrieval towers."""
    arch: str = knob("mmoe", "Architecture", noun="model", choices=LiveNames(ARCHITECTURES), widget="radio", flag="--model", url="arch",
                     help="architecture (default mmoe): " + ", ".join(
                         f"{a} = {c.label} ({c.paper})" for a, c in ARCHITECTURES.items()))
    emb_dim: int = knob(16, "Embedding dimension", noun="embedding dimension", widget="select_slider",
                        options=(4, 8, 16, 32, 64, 128), flag="--emb-dim", url="emb", example="16",
                        valid=lambda v: 1 <= v <= 512, message="Embedding dimension must be 1..512 (got {v}).",
                        fix="e.g. 16", help="embedding dimension (default 16)")
    towers: list[int] = knob([32], "Tower", noun="tower layer", widget="sizes", flag="--towers", url="towers",
                             help="tower layer sizes, e.g. 32")
    dropout: float = knob(0.0, "Dropout", noun="dropout", lo=0.0, hi=0.9, step=0.05, flag="--dropout", url="drop",
                          valid=lambda v: 0 <= v < 1, message="Dropout must be in [0, 1) (got {v}).", fix="e.g. 0.1",
                          help="dropout rate")
    text_features: bool = knob(False, "Language-model item text features", widget="toggle", flag="--text-features",
                               flag_sets=True, url="text",
                               help="add language-model item text vectors (all-MiniLM-L6-v2; cached after the first use)")
    # projection of the language-model vector (sum needs text_dim == emb_dim)
    text_dim: int = knob(16, "Text dimension", noun="text dimension", lo=1, hi=512, flag="--text-dim",
                         valid=lambda v: 1 <= v <= 512, message="The text dimension must be 1..512 (got {v}).",
                         fix="e.g. 16", help="width of the item text's projection (sum makes it the embedding dimension)")
    text_combine: str = knob("sum", "Text combination", noun="text combination", choices=TEXT_COMBINE, widget="select",
                             flag="--text-combine", help="how the text vector joins the item embedding")
    # the user's last `history` interactions as a feature (0 = off; mtrlib.data.history), read by
    # the encoder `history_encoder` (mtrlib.models.history), optionally only where the binary task
    # `history_task` is 1, "before" by timestamp ("time") or by the row order of the file ("file")
    history: int = knob(0, "History length L", noun="history length", widget="none", flag="--history", url="hist",
                        metavar="L", example="50",  # its range is checked by mtrlib.data.history.check_length
                        help=f"read each user's last L interactions before each example (1..{MAX_HISTORY}; default: none)")
    history_encoder: str = knob("mean", "History encoder", noun="history encoder", choices=LiveNames(HISTORY_ENCODERS),
                                widget="none", flag="--history-encoder", url="henc",
                                help="how the history is read (default mean): " + ", ".join(
                                    f"{n} = {c.label} ({c.paper})" for n, c in HISTORY_ENCODERS.items()))
    history_task: str | None = knob(None, "History keeps", noun="history task", widget="none", flag="--history-task",
                                    url="htask", metavar="TASK", example="liked",
                                    help="keep only past items where this binary task is 1 (e.g. liked); "
                                         "default: every interaction")
    history_order: str = knob("time", "Before means", noun="history order", choices=ORDERS, widget="none",
                              flag="--history-order", url="horder",
                              fix="use 'time' (the timestamp) or 'file' (the file's row order stands for time)",
                              help="what 'before' means: time (the timestamp, default) or file (the row order of "
                                   "the file, for data without a timestamp)")
    history_pool: str = knob("train", "History pool", noun="history pool", choices=POOLS, widget="none",
                             flag="--history-pool", url="hpool",
                             fix="use 'train' (only training interactions) or 'train+val' (test examples also read "
                                 "the validation interactions before them)",
                             help="what a test example's history holds: train (the training interactions before it, "
                                  "default) or train+val (also the validation ones before it)")
    # the context fields' width, and what reads the slot (mtrlib.models.context)
    context_dim: int = _declared(ContextOptions, "context_dim")
    position: str = _declared(ContextOptions, "position")
    # the retrieval task's towers (mtrlib.models.retrieval): used whichever architecture is chosen
    retrieval_dim: int = _declared(RetrievalOptions, "retrieval_dim")
    retrieval_layers: list[int] = _declared(RetrievalOptions, "retrieval_layers")
    retrieval_temperature: float = _declared(RetrievalOptions, "retrieval_temperature")
    options: Any = None  # the chosen architecture's Options (ARCHITECTURES[arch].Options)
    history_options: Any = None  # the chosen history encoder's Options

    def __post_init__(self):
        object.__setattr__(self, "options", plugin_options(ARCHITECTURES, self.arch, self.options))
        object.__setattr__(self, "history_options",
                           plugin_options(HISTORY_ENCODERS, self.history_encoder, self.history_options))


ModelConfig._CHOICE = {"arch": ("options", ARCHITECTURES), "history_encoder": ("history_options", HISTORY_ENCODERS)}


@dataclass
class WeightingConfig(NestedOptions):
    """The task-weighting method (`name`, mtrlib.weighting) and its own typed `options`."""
    name: str = knob("fixed", "Weighting method", noun="weighting", choices=LiveNames(_WEIGHTING_CLASSES), widget="select",
                     flag="--weighting", url="weighting",
                     help="task weighting method (default fixed): " + ", ".join(
                         f"{w} = {c.label}" for w, c in _WEIGHTING_CLASSES.items()))
    options: Any = None  # the chosen method's Options (WEIGHTINGS[name].Options), None if it has none

    def __post_init__(self):
        object.__setattr__(self, "options", plugin_options(_WEIGHTING_CLASSES, self.name, self.options))


WeightingConfig._CHOICE = {"name": ("options", _WEIGHTING_CLASSES)}


@dataclass
class TrainConfig:
    """One run's whole setup: data, model, weighting, optimisation. `to_dict()` / `from_dict()`
    round-trip through JSON; unknown keys are refused with a message, so a typo in a config file
    does not silently do nothing; a format-1 dict (flat plugin knobs) is migrated on read."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    weighting: WeightingConfig = field(default_factory=WeightingConfig)
    weights: dict[str, float] = field(default_factory=dict)  # task -> weight (missing = 1)
    optimizer: str = knob("adam", "Optimiser", noun="optimiser", choices=OPTIMIZERS, widget="select",
                          flag="--optimizer", url="opt", help="optimiser (default adam)")
    # defaults tuned on the built-in world and on ml-latest-small (docs/RESULTS-models.md): the
    # L2 weight decay shrinks the embeddings of rarely seen items and users, the largest gain
    lr: float = knob(0.01, "Learning rate", noun="learning rate", widget="select_slider",
                     options=(0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0), flag="--lr", url="lr",
                     valid=lambda v: v > 0, message="Learning rate must be above 0 (got {v}).", fix="e.g. 0.003 for Adam",
                     rules=((lambda v: v <= 10, "Learning rate {v} is far too high.", "use 0.0001..0.1"),),
                     help="learning rate (default 0.01)")
    weight_decay: float = knob(1e-4, "Weight decay (L2)", noun="weight decay", widget="select_slider",
                               options=(0.0, 1e-5, 1e-4, 3e-4, 1e-3, 1e-2), flag="--weight-decay", url="wd",
                               valid=lambda v: 0 <= v <= 1, fix="e.g. 0.0001",
                               message="Weight decay must be between 0 and 1 (got {v}).",
                               help="Shrinks rarely-seen embeddings; the main guard against overfitting here.")
    batch_size: int = knob(1024, "Batch size", noun="batch size", widget="select_slider",
                           options=(1, 32, 128, 256, 512, 1024, 2048, 4096, 8192), flag="--batch-size", url="bs",
                           example="1024", valid=lambda v: v >= 1, message="Batch size and epochs must be at least 1.",
                           fix="e.g. batch 1024, 5 epochs", help="batch size (default 1024)")
    epochs: int = knob(8, "Epochs", noun="epochs", lo=1, hi=1000, flag="--epochs", url="epochs", example="8",
                       valid=lambda v: v >= 1, message="Batch size and epochs must be at least 1.",
                       fix="e.g. batch 1024, 5 epochs",
                       rules=((lambda v: v <= 1000, "{v} epochs is more than this tool runs.", "use at most 1000"),),
                       help="epochs (default 8)")
    seed: int = knob(0, "Seed", noun="seed", lo=0, hi=10**6, flag="--seed", url="seed", help="random seed (default 0)")
    device: str = knob("auto", "Device", noun="device", choices=DEVICES, widget="select", flag="--device", url="device",
                       help="auto (CUDA, then MPS, then CPU) or a device")
    # intra-op CPU threads while training; 0 = auto = 1. The models here are small: a second
    # thread gains little, and on a machine whose cores are shared (a server, a laptop running
    # the app) one descheduled thread stalls every operation, measured 10-50x slower.
    cpu_threads: int = knob(0, "CPU threads", noun="CPU threads", lo=0, hi=256, flag="--cpu-threads",
                            valid=lambda v: 0 <= v <= 256, message="CPU threads must be 0 (auto) to 256 (got {v}).",
                            fix="0 (auto) or e.g. 4", help="intra-op CPU threads while training (0: auto, one thread)")
    log_every: int = knob(10, "Log every (steps)", noun="log_every", lo=1, hi=10000, flag="--log-every",
                          valid=lambda v: v >= 1, message="log_every must be at least 1.",
                          help="steps between progress events (default 10)")
    # gradient methods: per-task gradients on every parameter more than one task uses ("params")
    # or on the shared representation ("rep", LibMTL's rep_grad: cheaper)
    grad_space: str = knob("params", "Gradients taken on", noun="gradient space", choices=GRAD_SPACES, widget="radio",
                           flag="--grad-space", url="gspace",
                           fix="params (every shared parameter) or rep (the shared representation)",
                           help="gradient methods: per-task gradients on every parameter more than one task uses "
                                "(params, default) or on the shared representation (rep: cheaper)")
    grad_telemetry: bool = knob(True, "Measure gradient conflict", widget="toggle", flag="--no-grad-telemetry",
                                flag_sets=False, url="gtel",
                                help="measure the cosines between the tasks' gradients every log_every steps "
                                     "(the flag turns it off)")
    expert_health: bool = knob(True, "Measure expert health", widget="toggle", flag="--no-expert-health",
                               flag_sets=False, url="ehealth",
                               help="once per epoch, on 2,048 validation examples: dead units per expert, gate entropy "
                                    "per task, collapse / degradation / underfitting flags (the flag turns it off)")
    # how the user / item id tables are updated (mtrlib.train.optim): "dense" every row at every step,
    # "lazy" only the rows of the batch (sparse gradients, SparseAdam, lazy weight decay), "auto"
    # lazy for big tables on the CPU (bench/embedding_optim.py)
    embedding_updates: str = knob("auto", "Embedding updates", noun="embedding updates", choices=EMBEDDING_UPDATES,
                                  widget="select", flag="--embedding-updates", url="embupd",
                                  help="id tables: dense (every row, every step), lazy (only the batch's rows: sparse "
                                       "gradients, SparseAdam, lazy weight decay), or auto (default: lazy for big "
                                       "tables on the CPU, mtrlib.train.optim.LAZY_MIN_ROWS rows or more)")
    early_stop_task: str | None = knob(None, "Early stop on task", noun="early-stopping task", flag="--early-stop",
                                       metavar="TASK", widget="text", example="like",
                                       help="stop when this task's validation metric stops improving (empty: off)")
    patience: int = knob(2, "Early-stopping patience", noun="patience", lo=1, hi=100, flag="--patience", example="2",
                         valid=lambda v: v >= 1, message="Early-stopping patience must be at least 1 epoch (got {v}).",
                         fix="e.g. 2", help="epochs without improvement before an early stop (default 2)")
    name: str | None = None

    def __setattr__(self, name, value):
        """`cfg.weighting = "gradnorm"` (format 1's string) chooses the method; a method's flat
        knob (`cfg.gradnorm_alpha = 2`) sets its option when that method is the chosen one."""
        if name == "weighting" and isinstance(value, str):
            value = WeightingConfig(name=value)
        opts = self._flat_options(name)
        if opts is not None:
            if opts is not False:
                setattr(opts, FLAT_NAMES[name].rsplit(".", 1)[1], value)
            return
        object.__setattr__(self, name, value)

    def __getattr__(self, name):  # only for names that are not attributes: format 1's flat knobs
        opts = self._flat_options(name)
        if opts is None:
            raise AttributeError(f"TrainConfig has no setting '{name}'")
        return getattr(opts, FLAT_NAMES[name].rsplit(".", 1)[1]) if opts is not False else FLAT_DEFAULTS[name]

    def _flat_options(self, name):
        """For a method's flat knob name: the chosen method's options if they are its, else
        False; None for any other name."""
        if name.startswith("_") or not FLAT_NAMES.get(name, "").startswith("weighting."):
            return None
        w = self.__dict__.get("weighting")
        if w is None or w.options is None or not name.startswith(weighting_prefix(w.name)):
            return False
        return w.options

    def to_dict(self) -> dict:
        return as_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return build(cls, migrate(d), "config")

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"The config file is not valid JSON ({e.msg} at line {e.lineno}).",
                              fix="check the file, or write it with `python -m mtrlib train --save-config`") from None
        if not isinstance(d, dict):
            raise ConfigError("The config file must hold a JSON object.", fix="start it with '{'")
        return cls.from_dict(d)


_OBJECTS = {"data": DataConfig, "data.world": WorldConfig, "model": ModelConfig, "weighting": WeightingConfig}
# -- the walk ---------------------------------------------------------------------------------------

def _core(cls: type, prefix: str = "") -> list[KnobField]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _core(hints[f.name], prefix + f.name + ".")
        elif "knob" in f.metadata:
            out.append(KnobField(prefix + f.name, hints[f.name], f.metadata["knob"], f))
    return out


CORE_SETTINGS: list[KnobField] = _core(TrainConfig)
SETTINGS: dict[str, KnobField] = {kf.name: kf for kf in CORE_SETTINGS + PLUGIN_SETTINGS}  # path -> knob field


def section(path: str) -> str:
    """Where a setting belongs on a page and in `--help`: data, world, model, history, weighting, training."""
    if path.startswith("data.world."):
        return "world"
    if path.startswith("model.history"):
        return "history"
    for head in ("data", "model", "weighting"):
        if path.startswith(head + "."):
            return head
    return "training"


def settings_of(cfg: TrainConfig) -> list[KnobField]:
    """The settings this config holds: every core one and the chosen plugins' knobs, each as
    the chosen plugin declares it (its own label and rule: PLE's and MMoE's `experts` differ)."""
    out = list(CORE_SETTINGS)
    for place in PLUGINS:
        for kf in knob_fields(getattr(chosen_plugin(cfg, place), "Options", None)):
            out.append(KnobField(f"{place}.{kf.name}", kf.type, kf.knob, kf.field))
    return out


def setting_of(cfg: TrainConfig, path: str) -> KnobField:
    """One setting of this config by path (a plugin knob as the chosen plugin declares it)."""
    if plugin_place(path) is not None:
        own = next((kf for kf in settings_of(cfg) if kf.name == path), None)
        if own is not None:
            return own
    return SETTINGS[path]


# alias -> canonical path: URL keys, declared older names, format 1's flat names
ALIASES: dict[str, str] = {"weighting": "weighting.name", "arch": "model.arch", **FLAT_NAMES}
for _kf in CORE_SETTINGS + PLUGIN_SETTINGS:
    for _a in ((_kf.knob.url,) if _kf.knob.url else ()) + tuple(_kf.knob.aliases):
        ALIASES.setdefault(_a, _kf.name)

ModelConfig._FLAT = {n: (p.split(".")[1], p.rsplit(".", 1)[1]) for n, p in FLAT_NAMES.items()
                     if p.startswith("model.") and "." not in n}


def resolve(key: str) -> str | None:
    """The canonical dotted path of a name a user typed (a path, an alias, a URL key, a flat
    format-1 name, or a plain field name, looked up at the top, then model, data, world,
    weighting and the plugins' options); None if nothing has that name."""
    k = str(key).strip()
    if k.startswith("world."):
        k = "data." + k
    if k in SETTINGS:
        return k
    if k in ALIASES:
        return ALIASES[k]
    k = k.replace("-", "_")
    if k in SETTINGS or k in ALIASES:
        return SETTINGS[k].name if k in SETTINGS else ALIASES[k]
    if "." not in k:
        for prefix in ("", "model.", "data.", "data.world.", "weighting.", *(p + "." for p in PLUGINS)):
            if prefix + k in SETTINGS:
                return prefix + k
    return None


def migrate(d: dict) -> dict:
    """A config dict in this version's nested shape (format 1's flat plugin knobs moved into the
    chosen plugins' options: mtrlib.plugin_options.migrate_format_1)."""
    defaults = ModelConfig.__dataclass_fields__
    return migrate_format_1(d, defaults["arch"].default, defaults["history_encoder"].default)


# -- what the plugins read --------------------------------------------------------------------------

def arch_class(cfg_or_name):
    """The architecture class of a ModelConfig (or of an arch name)."""
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.arch
    return ARCHITECTURES[name]


def model_options(cfg) -> object:
    """The chosen architecture's typed Options, as the ModelConfig holds them."""
    return cfg.options if cfg.options is not None else plugin_options(ARCHITECTURES, cfg.arch)


def weighting_class(cfg_or_name):
    if isinstance(cfg_or_name, str):
        name = cfg_or_name
    else:
        w = cfg_or_name.weighting if isinstance(cfg_or_name, TrainConfig) else cfg_or_name
        name = w.name
    return _WEIGHTING_CLASSES[name]


def weighting_options(cfg) -> dict:
    """The chosen weighting method's own settings, by their names in its Options."""
    opts = cfg.weighting.options
    return {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)} if opts is not None else {}


# -- validation -------------------------------------------------------------------------------------

def _check_sizes(kf: KnobField, sizes) -> None:
    noun = kf.knob.name_in_text
    if any((not isinstance(s, int)) or isinstance(s, bool) or s < 1 for s in sizes):
        raise ConfigError(f"Every {noun} needs a width of at least 1 (got {sizes}).",
                          fix="remove the layer or give it a positive width")
    if any(s > 4096 for s in sizes):
        raise ConfigError(f"A {noun} of width {max(sizes)} is too wide for this tool.", fix="use at most 4096")


def _owner(cfg, path: str):
    head = path.rsplit(".", 1)[0] if "." in path else ""
    return get_value(cfg, head) if head else cfg


def validate(cfg: TrainConfig, task_names: list[str] | None = None) -> list[str]:
    """Refuse impossible settings before training, with the fix; return warnings for odd ones.

    One walk over the settings this config holds (every core one and the chosen plugins'
    knobs): each value's type, choices and declared rules; then the rules that span several
    settings, and the chosen architecture's, encoder's and method's own `check`."""
    m = cfg.model
    held = settings_of(cfg)
    for kf in held:  # types first: a rule may compare values
        check_knob_type(kf, get_value(cfg, kf.name))
    if not isinstance(cfg.weights, dict):
        raise ConfigError(f"Task weights must map task names to numbers (got {cfg.weights!r}).",
                          fix='e.g. {"click": 1, "like": 2}')
    for kf in held:
        value = get_value(cfg, kf.name)
        if kf.base_type is list and kf.knob.widget == "sizes":
            _check_sizes(kf, value)
        check_knob_rule(kf, value, _owner(cfg, kf.name))
        for valid, message, fix in kf.knob.rules:
            if not valid(value):
                raise ConfigError(message.format(v=value), fix=fix or None)
    warn: list[str] = list(arch_class(m).check(model_options(m), m))
    warn += check_history_settings(m, task_names)
    if m.text_features and m.text_combine == "sum" and m.text_dim != m.emb_dim:
        m.text_dim = m.emb_dim  # sum needs equal widths; say nothing surprising happens
    for k, v in cfg.weights.items():
        if not isinstance(v, (int, float)) or v < 0 or v != v:
            raise ConfigError(f"Task weight for '{k}' must be a number >= 0 (got {v}).", fix="e.g. 1")
    if task_names is not None:
        unknown = sorted(set(cfg.weights) - set(task_names))
        if unknown:
            raise ConfigError(f"Weights name unknown task(s): {', '.join(unknown)}.",
                              fix=f"tasks are: {', '.join(task_names)}")
        if all(cfg.weights.get(t, 1.0) == 0 for t in task_names):
            raise ConfigError("Every task has weight 0, so nothing would be learned.",
                              fix="give at least one task a weight above 0")
        if cfg.early_stop_task and cfg.early_stop_task not in task_names:
            raise ConfigError(f"Early stopping watches task '{cfg.early_stop_task}', which is not defined.",
                              fix=f"tasks are: {', '.join(task_names)}")
    warn += weighting_class(cfg).check(cfg, task_names)
    return warn


__all__ = ["TrainConfig", "ModelConfig", "DataConfig", "WeightingConfig", "WorldConfig", "SETTINGS",
           "CORE_SETTINGS", "PLUGIN_SETTINGS", "PLUGIN_OWNERS", "PLUGINS", "ALIASES", "FLAT_NAMES", "resolve",
           "get_value", "set_value", "settings_of", "setting_of", "section", "plugin_place", "chosen_plugin", "migrate",
           "validate", "arch_class", "model_options", "weighting_class", "weighting_options", "FORMAT_VERSION",
           "ARCHS", "ARCH_LABELS", "WEIGHTINGS", "WEIGHTING_LABELS", "HISTORY_ENCODER_LABELS", "OPTIMIZERS",
           "DEVICES", "TEXT_COMBINE", "GRAD_SPACES", "EMBEDDING_UPDATES"]
