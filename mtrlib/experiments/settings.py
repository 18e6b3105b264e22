"""Settings a sweep varies, by name: `arch`, `weights.TASK`, `correlation`, `lr`, `emb_dim`, ...

A key names one field of the run's configuration, found in the config tree (mtrlib.config:
so a new architecture's knob or a new world field is sweepable the day it exists, and a key
that names nothing is refused with the list of known ones, never silently ignored):

- a dotted path, the canonical name (`model.emb_dim`, `data.world.n_users`, or
  `world.n_users` for short; a plugin's knob `model.options.n_experts`);
- a plain field name, looked up at the top, then in the model, the data, the world, the
  weighting and the plugins' options (`lr`, `emb_dim`, `n_experts`, `split`, `correlation`);
- any older name (mtrlib.config.resolve): URL keys and declared aliases (`arch`, `rho`), the
  flat names of config format 1 (`model.n_experts`, `history_heads`, `gradnorm_alpha`);
- `weights.TASK`, the fixed weight of one task.

Plugin choices are applied before plugin knobs. A point that sets a knob its chosen plugin
does not have (`n_experts` on a PLE point of an `arch=mmoe,ple` sweep) trains without it: the
knob is ignored for that point, as it had no effect when every knob was a flat field.

Values are typed by the field: whole numbers, numbers, on/off (`true`, `1`, `on`), text, and
layer sizes written with `/` (`64/32`), since commas separate a grid's values.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import typing
from dataclasses import dataclass

import numpy as np

from ..config import (ARCHS, FLAT_NAMES, OPTIMIZERS, PLUGIN_SETTINGS, PLUGINS, WEIGHTINGS, DataConfig,
                      ModelConfig, TrainConfig, WeightingConfig, resolve as resolve_path, set_value)
from ..data.world import WorldConfig
from ..errors import ConfigError

ALIASES = {"arch": "model.arch", "rho": "data.world.correlation", "weighting": "weighting.name"}
# paths a sweep must not vary: the seed is what --seeds repeats, the rest are bookkeeping or objects
NOT_SWEPT = {"seed": "the seed is what repeats vary: give --seeds N (or --seeds 1,2,3) instead",
             "name": "a run's name is not a setting", "data": "name one of its fields, e.g. data.split",
             "model": "name one of its fields, e.g. model.emb_dim", "data.world": "name one of its fields, "
             "e.g. world.n_users", "weights": "name one task's weight, e.g. weights.click"}
_CLASSES = (("", TrainConfig), ("model.", ModelConfig), ("data.", DataConfig), ("data.world.", WorldConfig),
            ("weighting.", WeightingConfig))
_OBJECTS = {"data", "model", "data.world", "weighting", *PLUGINS}
_CHOOSERS = tuple(choice for _, choice in PLUGINS.values())


def _fields() -> dict[str, type]:
    """Every settable config path -> its type (the objects themselves left out): every field
    of the config classes, and every plugin's knobs at their nested paths."""
    out = {}
    for prefix, cls in _CLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            path = prefix + f.name
            if path not in _OBJECTS:
                out[path] = hints[f.name]
    for kf in PLUGIN_SETTINGS:
        out[kf.name] = kf.type
    return out


FIELDS = _fields()


@dataclass(frozen=True)
class Setting:
    """One resolved key: as the user wrote it, where it goes in a TrainConfig, and its type."""
    key: str
    path: str
    type: object

    def parse(self, text) -> object:
        """A value for this setting from text (or a value already of the right kind)."""
        return _coerce(self.type, text, self.key)


SUGGESTED = {"lr": "0.003, 0.01, 0.03", "emb_dim": "8, 16, 32", "epochs": "4, 8, 16", "dropout": "0, 0.1, 0.3",
             "weight_decay": "0, 0.0001, 0.001", "batch_size": "256, 1024, 4096", "rho": "0.9, 0, -0.9",
             "n_experts": "2, 4, 8", "negatives": "2, 4, 8"}


def sweepable(task_names: list[str], world: bool) -> list[str]:
    """The keys the app offers first: architecture, weighting, each task's weight, the world's ρ
    (on the world), then the training and model settings (every knob of every architecture and
    method, from the registries through the config, by its short name)."""
    keys = ["arch", "weighting"] + [f"weights.{t}" for t in task_names] + (["rho"] if world else [])
    keys += ["lr", "emb_dim", "epochs", "dropout", "weight_decay", "batch_size", "optimizer", "negatives"]
    keys += [name for name, path in FLAT_NAMES.items() if "." not in name]
    return list(dict.fromkeys(keys))


def suggest(key: str) -> str:
    """Values to start from for a key (the app's text field): every choice for a name field."""
    if key == "arch":
        return ", ".join(ARCHS)
    if key == "weighting":
        return ", ".join(WEIGHTINGS)
    if key == "optimizer":
        return ", ".join(OPTIMIZERS)
    if key.startswith("weights."):
        return "0.5, 1, 2"
    return SUGGESTED.get(key, "")


def parse_values(key: str, text: str) -> Axis:
    """An Axis from a key and its values typed in a text field ('mmoe, ple' or '0.5 1 2')."""
    raw = [v for v in str(text).replace(";", ",").replace(" ", ",").split(",") if v.strip()]
    if not raw:
        raise ConfigError(f"No values for {key}.", fix="type values separated by commas, e.g. " + (suggest(key) or "1, 2"))
    return parse_grid(f"{key}={','.join(raw)}")


def known_keys() -> list[str]:
    """Every plain name a key may use (for messages and the Sweep page)."""
    short = [p.rsplit(".", 1)[-1] for p in FIELDS if p.rsplit(".", 1)[-1] not in NOT_SWEPT]
    return sorted(set(short) | set(ALIASES) | {"weights.TASK"})


def _path(key: str) -> str | None:
    """The config path a key names (None: nothing), through this module's and config's aliases."""
    k = str(key).strip().replace("-", "_")
    if k.startswith("world."):
        k = "data." + k
    k = ALIASES.get(k, k)
    if k in FIELDS:
        return k
    path = resolve_path(key) or resolve_path(k)
    if path is not None:
        return path
    if "." not in k:
        for prefix, _ in _CLASSES:
            if prefix + k in FIELDS:
                return prefix + k
    return None


def resolve(key: str) -> Setting:
    """The config field a key names; ConfigError naming the key and the known ones otherwise."""
    raw = str(key).strip()
    k = raw.replace("-", "_")
    if k.startswith("world."):
        k = "data." + k
    if k in NOT_SWEPT:
        raise ConfigError(f"'{raw}' cannot be swept: {NOT_SWEPT[k]}.")
    if k.startswith("weights."):
        task = raw.split(".", 1)[1].strip()
        if not task:
            raise ConfigError(f"'{raw}' names no task.", fix="e.g. weights.click")
        return Setting(raw, "weights." + task, float)
    path = _path(raw)
    if path is not None and path not in NOT_SWEPT:
        return Setting(raw, path, FIELDS[path])
    raise ConfigError(f"Unknown setting '{raw}': no configuration field has that name.",
                    fix="known settings: " + ", ".join(known_keys()))


def _coerce(typ, value, key: str):
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin is typing.Union or (origin is not None and type(None) in args):  # X | None
        if isinstance(value, str) and value.strip().lower() in ("none", "off", ""):
            return None
        typ = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(typ), typing.get_args(typ)
    text = value.strip() if isinstance(value, str) else value
    try:
        if typ is bool:
            if isinstance(text, bool):
                return text
            if str(text).lower() in ("1", "true", "yes", "on"):
                return True
            if str(text).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("not on/off")
        if typ is int:
            f = float(text)
            if not f.is_integer() or isinstance(text, bool):
                raise ValueError("not a whole number")
            return int(f)
        if typ is float:
            if isinstance(text, bool):
                raise ValueError("not a number")
            return float(text)
        if typ is str:
            return str(text)
        if origin is list and args and args[0] is int:
            if isinstance(text, (list, tuple)):
                return [int(x) for x in text]
            parts = [p for p in str(text).strip("[]").replace("/", ",").split(",") if p.strip()]
            return [int(p) for p in parts]
    except (TypeError, ValueError) as e:
        raise ConfigError(f"'{value}' is not a valid value for {key} ({e}).", fix=_example(typ)) from None
    raise ConfigError(f"The setting {key} holds {getattr(typ, '__name__', typ)}, which a sweep cannot vary.",
                    fix="sweep a setting that holds a number, a name, on/off or layer sizes")


def _example(typ) -> str:
    return {bool: "e.g. true,false", int: "e.g. 8,16,32", float: "e.g. 0.001,0.01"}.get(
        typ, "layer sizes are written 64/32" if typing.get_origin(typ) is list else "e.g. mmoe,ple")


# -- applying settings ----------------------------------------------------------------------------------

def _set(cfg: TrainConfig, path: str, value) -> None:
    """Set one path (a knob the chosen plugin lacks is ignored: see the module's docstring)."""
    if path.startswith("weights."):
        cfg.weights[path.split(".", 1)[1]] = float(value)
        return
    set_value(cfg, path, copy.deepcopy(value))


def _choices_first(pairs):
    """(path, value) pairs with the plugin choices first: a plugin knob belongs to the chosen plugin."""
    return sorted(pairs, key=lambda pv: pv[0] not in _CHOOSERS)


def apply(cfg: TrainConfig, settings: dict) -> TrainConfig:
    """A copy of `cfg` with `settings` ({key: value}, keys as `resolve` reads them) applied."""
    out = TrainConfig.from_dict(cfg.to_dict())
    pairs = []
    for key, value in settings.items():
        s = resolve(key)
        pairs.append((s.path, s.parse(value)))
    for path, value in _choices_first(pairs):
        _set(out, path, value)
    return out


def flatten(overrides: dict, where: str = "settings") -> dict[str, object]:
    """Nested overrides ({"world": {"correlation": -0.5}, "model": {...}, "epochs": 6}) as
    {path: value}, each checked against the real config classes: a field that does not exist
    is refused by name, so a definition written for a newer config fails loudly, not silently."""
    out: dict[str, object] = {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where} must be an object of settings (got {type(overrides).__name__}).")

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            path = prefix + str(k)
            if path == "world" or path.startswith("world."):
                path = "data." + path
            if path == "weighting" and isinstance(v, str):  # format 1: "weighting": "gradnorm"
                path = "weighting.name"
            if path not in FIELDS and path not in _OBJECTS and path in FLAT_NAMES:  # format 1's flat knob names
                path = FLAT_NAMES[path]
            if path in _OBJECTS:
                if not isinstance(v, dict):
                    raise ConfigError(f"{where}: '{k}' must be an object of settings.")
                walk(v, path + ".")
            elif path == "weights":
                if not isinstance(v, dict):
                    raise ConfigError(f"{where}: 'weights' must map task names to numbers.")
                for t, w in v.items():
                    out[f"weights.{t}"] = _coerce(float, w, f"weights.{t}")
            elif path in FIELDS:
                out[path] = _coerce(FIELDS[path], v, path) if not _is_container(FIELDS[path]) else v
            else:
                classes = dict(_CLASSES)
                if prefix.rstrip(".") in PLUGINS:
                    known = sorted(p.rsplit(".", 1)[1] for p in FIELDS if p.startswith(prefix))
                    raise ConfigError(f"{where} sets '{path}', which no plugin of this version declares.",
                                      fix=f"known options: {', '.join(known)}")
                cls = classes[prefix] if prefix in classes else TrainConfig
                known = [f.name for f in dataclasses.fields(cls)]
                raise ConfigError(f"{where} sets '{path}', which this version's {cls.__name__} does not have.",
                                  fix=f"known fields of {cls.__name__}: {', '.join(known)}")

    walk(overrides, "")
    return out


def _is_container(typ) -> bool:
    return typing.get_origin(typ) in (dict, list) and not (typing.get_args(typ)[:1] == (int,))


def with_overrides(cfg: TrainConfig, overrides: dict, where: str = "settings") -> TrainConfig:
    """A copy of `cfg` with nested `overrides` (see `flatten`) applied."""
    out = TrainConfig.from_dict(cfg.to_dict())
    for path, value in _choices_first(flatten(overrides, where).items()):
        _set(out, path, value)
    return out


# -- grids ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Axis:
    """One dimension of a sweep: one or more keys that change together, and their values.

    `KEY=V1,V2,V3` is one key; `K1,K2=a:b,c:d` links two keys (each value is a pair), which is
    how a task-weight ratio is swept: `weights.click,weights.like=1:8,1:1,8:1`."""
    keys: tuple[str, ...]
    values: tuple[tuple, ...]  # one tuple per point, aligned with keys

    def points(self) -> list[dict]:
        return [dict(zip(self.keys, v)) for v in self.values]

    @classmethod
    def of(cls, key: str, values) -> Axis:
        s = resolve(key)
        return cls((key,), tuple((s.parse(v),) for v in values))

    @classmethod
    def linked(cls, keys, rows) -> Axis:
        ss = [resolve(k) for k in keys]
        return cls(tuple(keys), tuple(tuple(s.parse(v) for s, v in zip(ss, row)) for row in rows))


def parse_grid(spec: str) -> Axis:
    """`KEY=V1,V2,...` or `K1,K2=a:b,c:d,...` -> an Axis (values typed by their fields)."""
    text = str(spec).strip()
    if "=" not in text:
        raise ConfigError(f"--grid {text}: a grid is KEY=V1,V2,...", fix="e.g. --grid arch=mmoe,ple or "
                        "--grid weights.click,weights.like=1:8,1:1,8:1")
    left, right = text.split("=", 1)
    keys = [k.strip() for k in left.split(",") if k.strip()]
    raw = [v.strip() for v in right.split(",") if v.strip()]
    if not keys or not raw:
        raise ConfigError(f"--grid {text}: no key or no values.", fix="e.g. --grid lr=0.001,0.01")
    if len(keys) == 1:
        axis = Axis.of(keys[0], raw)
    else:
        rows = [v.split(":") for v in raw]
        bad = [v for v, r in zip(raw, rows) if len(r) != len(keys)]
        if bad:
            raise ConfigError(f"--grid {text}: '{bad[0]}' does not give one value per key ({', '.join(keys)}).",
                            fix="write linked values with ':', e.g. 1:8,1:1,8:1")
        axis = Axis.linked(keys, rows)
    if len(set(map(repr, axis.values))) != len(axis.values):
        raise ConfigError(f"--grid {text} repeats a value.", fix="give each value once")
    return axis


def product(axes: list[Axis]) -> list[dict]:
    """Every combination of the axes' points, as {key: value} (one empty dict for no axes)."""
    keys = [k for a in axes for k in a.keys]
    if len(set(resolve(k).path for k in keys)) != len(keys):
        raise ConfigError("Two grids set the same setting.", fix="give each setting one --grid")
    out = []
    for combo in itertools.product(*[a.points() for a in axes]):
        d: dict = {}
        for part in combo:
            d.update(part)
        out.append(d)
    return out


def label(settings: dict) -> str:
    """'arch=mmoe · weights.like=2' (values as written: 2 not 2.0, sizes as 64/32)."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:g}"
        if isinstance(v, list):
            return "/".join(map(str, v))
        return str(v)
    return " · ".join(f"{k}={fmt(v)}" for k, v in settings.items()) or "base setup"


def parse_seeds(text: str | None = None, repeat: int | None = None, start: int = 0) -> list[int]:
    """`--seeds 1,2,3` (a list) or `--seeds N` / `--repeat N` (N seeds from `start`)."""
    if text is not None and repeat is not None:
        raise ConfigError("Give --seeds or --repeat, not both.")
    if text is None and repeat is None:
        return [start]
    if repeat is not None or "," not in str(text):
        n = repeat if repeat is not None else _int(text, "--seeds")
        if not 1 <= n <= 100:
            raise ConfigError(f"The number of seeds must be 1..100 (got {n}).", fix="e.g. --seeds 3")
        return list(range(start, start + n))
    seeds = [_int(s, "--seeds") for s in str(text).split(",") if s.strip()]
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {text}: seeds must be distinct whole numbers >= 0.", fix="e.g. --seeds 1,2,3")
    return seeds


def _int(text, flag: str) -> int:
    try:
        f = float(str(text).strip())
    except ValueError:
        raise ConfigError(f"{flag} {text}: not a whole number.", fix="e.g. --seeds 3 or --seeds 1,2,3") from None
    if not f.is_integer():
        raise ConfigError(f"{flag} {text}: not a whole number.", fix="e.g. --seeds 3 or --seeds 1,2,3")
    return int(f)


__all__ = ["Setting", "Axis", "resolve", "apply", "flatten", "with_overrides", "parse_grid", "product", "label",
           "parse_seeds", "known_keys", "sweepable", "suggest", "parse_values", "ratio_axis", "FIELDS", "ALIASES"]


def ratio_axis(task_a: str, task_b: str, points: int = 7, span: float = 8.0) -> Axis:
    """The weight ratio of two tasks on a log grid from 1:span to span:1 (`points` >= 3, odd so
    that 1:1 is on it): linked keys weights.A, weights.B, the smaller weight 1."""
    if points < 3:
        raise ConfigError("A weight-ratio front needs at least 3 points.", fix="e.g. 7")
    rows = []
    for e in np.linspace(-1.0, 1.0, points):
        r = float(span ** e)  # weight of A over weight of B
        a, b = (r, 1.0) if r >= 1 else (1.0, 1.0 / r)
        rows.append((round(a, 4), round(b, 4)))
    return Axis.linked((f"weights.{task_a}", f"weights.{task_b}"), rows)


def ratio_label(settings: dict, task_a: str, task_b: str) -> str:
    """'1:8' for weights.A = 1, weights.B = 8."""
    a, b = settings.get(f"weights.{task_a}"), settings.get(f"weights.{task_b}")
    if a is None or b is None:
        return label(settings)
    return f"{a:g}:{b:g}"
