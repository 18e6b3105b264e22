"""Registries by discovery, and the typed knobs each registered class declares.

Adding an architecture, a weighting method (or any other registered kind) is one new file:
every module of the package is imported once, and every class in it that subclasses the
package's base class and sets its key (`arch`, `name`) on itself is registered under that
key. No hand-kept list, so nothing else needs an edit; two classes claiming one key are
refused at import with both modules named.

A class's own knobs live in its nested `Options` dataclass, one field per knob, declared with
`knob(...)`: the default, a label, the bounds the UI offers, an always-on validity rule with
its message, and the CLI flag and URL key it answers to. Config fields, validation, CLI
flags, URL keys and page widgets are all derived from these declarations.
"""
from __future__ import annotations

import dataclasses
import importlib
import numbers
import pkgutil
import typing
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from .errors import ConfigError


def discover(package: str, base: type, key: str) -> dict[str, type]:
    """{key value: class} for the classes of `package`'s modules, ordered by their `order`
    attribute (then key). Modules whose name starts with '_' are skipped (helpers)."""
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    found: dict[str, type] = {}
    for cls in _subclasses(base):
        name = cls.__dict__.get(key)  # set on the class itself, not inherited
        if not name or not cls.__module__.startswith(package + "."):
            continue
        other = found.get(name)
        if other is not None and other is not cls:
            raise RuntimeError(f"Two classes register {key} '{name}': {other.__module__}.{other.__name__} and "
                               f"{cls.__module__}.{cls.__name__}. Give one of them another {key}.")
        found[name] = cls
    return dict(sorted(found.items(), key=lambda kv: (getattr(kv[1], "order", 100), kv[0])))


def _subclasses(base: type) -> list[type]:
    out, todo = [], list(base.__subclasses__())
    while todo:
        c = todo.pop(0)
        if c not in out:
            out.append(c)
            todo.extend(c.__subclasses__())
    return out


class LiveNames:
    """The keys of a registry as they are when asked (a knob's `choices`): a plugin registered
    after the config module was imported (a test's, a notebook's) is a valid choice too."""

    def __init__(self, registry: dict):
        self._registry = registry

    def __iter__(self):
        return iter(self._registry)

    def __contains__(self, value) -> bool:
        return isinstance(value, str) and value in self._registry

    def __len__(self) -> int:
        return len(self._registry)

    def __repr__(self) -> str:
        return repr(tuple(self._registry))


# -- knobs ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Knob:
    """What is known about one setting besides its type and default."""
    label: str  # widget label, and the noun in messages ("number of experts")
    noun: str = ""  # how messages name it when the label does not read well in a sentence
    help: str = ""
    flag: str | None = None  # CLI flag, e.g. "--n-experts"
    url: str | None = None  # URL query key, e.g. "nexp"
    widget: str = "number"  # number | slider | select_slider | sizes | toggle | select
    lo: float | None = None  # widget bounds
    hi: float | None = None
    step: float | None = None
    options: tuple | None = None  # the widget's offered values (select / select_slider); `choices` if unset
    choices: tuple | None = None  # the only valid values (checked by validation, the CLI and URLs)
    aliases: tuple = ()  # older names a user may still type (sweep / lesson keys, URL keys), e.g. "rho"
    flag_sets: Any = None  # an on/off flag without a value: the value it sets (e.g. --ids-only sets False)
    metavar: str | None = None  # the CLI's placeholder for the value
    valid: Callable[[Any], bool] | None = None  # always-on rule (whatever the selected class)
    message: str = ""  # refusal when `valid` fails; formatted with the value as {v} and every field by name
    fix: str = ""
    example: str = "1"  # shown in "must be a whole number" type errors
    rules: tuple = ()  # further (valid, message, fix) rules, checked after `valid`

    @property
    def name_in_text(self) -> str:
        return self.noun or self.label


def knob(default, label: str, **meta) -> Any:
    """A dataclass field carrying its `Knob` description (lists get a fresh copy per instance)."""
    k = Knob(label=label, **meta)
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"knob": k})
    return dataclasses.field(default=default, metadata={"knob": k})


@dataclass(frozen=True)
class KnobField:
    """A knob as a config field: its name, resolved type, default and description."""
    name: str
    type: Any
    knob: Knob
    field: dataclasses.Field

    def default(self):
        f = self.field
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default

    def copy_field(self) -> dataclasses.Field:
        f = self.field
        if f.default_factory is not dataclasses.MISSING:
            return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
        return dataclasses.field(default=f.default, metadata=f.metadata)

    @property
    def base_type(self):
        return typing.get_origin(self.type) or self.type


def knob_fields(options_cls: type | None, prefix: str = "") -> list[KnobField]:
    """The knob fields of an Options dataclass (as config field names: `prefix + name`)."""
    if options_cls is None:
        return []
    hints = typing.get_type_hints(options_cls)
    out = []
    for f in dataclasses.fields(options_cls):
        k = f.metadata.get("knob") or Knob(label=f.name.replace("_", " "))
        out.append(KnobField(prefix + f.name, hints[f.name], k, f))
    return out


def merge_knobs(groups: list[tuple[str, list[KnobField]]]) -> list[KnobField]:
    """One field per name across classes; a name two classes declare must have one type and
    default (e.g. MMoE's and PLE's `experts`)."""
    seen: dict[str, tuple[str, KnobField]] = {}
    out = []
    for owner, fields in groups:
        for kf in fields:
            if kf.name in seen:
                first_owner, first = seen[kf.name]
                if first.type != kf.type or first.default() != kf.default():
                    raise RuntimeError(f"Setting '{kf.name}' is declared by {first_owner} and {owner} with different "
                                       f"types or defaults ({first.type}={first.default()!r} vs "
                                       f"{kf.type}={kf.default()!r}): give one of them another name.")
                continue
            seen[kf.name] = (owner, kf)
            out.append(kf)
    return out


def is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_knob_type(kf: KnobField, value) -> None:
    """Settings read from JSON or a URL can hold any type: refuse the wrong ones by name."""
    t, optional = kf.base_type, type(None) in typing.get_args(kf.type)
    if optional:  # X | None
        if value is None:
            return
        t = next(a for a in typing.get_args(kf.type) if a is not type(None))
        t = typing.get_origin(t) or t
    noun = kf.knob.name_in_text
    if t is int and not is_int(value):
        raise ConfigError(f"The {noun} must be a whole number (got {value!r}).", fix=f"e.g. {kf.knob.example}")
    if t is float and not is_number(value):
        raise ConfigError(f"The {noun} must be a number (got {value!r}).", fix="write it without quotes")
    if t is list and not isinstance(value, (list, tuple)):
        raise ConfigError(f"The {noun} sizes must be a list of widths (got {value!r}).", fix="e.g. [64, 32]")
    if t is bool and not isinstance(value, bool):
        raise ConfigError(f"{kf.name.rsplit('.', 1)[-1]} must be true or false (got {value!r}).")
    if t is str and not isinstance(value, str):
        raise ConfigError(f"The {noun} must be a name (got {value!r}).", fix=f"e.g. {kf.knob.example}")
    if t is dict and not isinstance(value, dict):
        raise ConfigError(f"The {noun} must be an object (got {value!r}).")


def check_knob_rule(kf: KnobField, value, obj) -> None:
    """The knob's always-on validity rule (`valid` / `message`), if it has one."""
    k = kf.knob
    if k.choices is not None and value not in k.choices:
        raise ConfigError(f"Unknown {k.name_in_text} '{value}'.",
                          fix=k.fix or f"choose one of: {', '.join(map(str, k.choices))}")
    if k.valid is None or k.valid(value):
        return
    names = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else {}
    raise ConfigError(k.message.format(v=value, **names), fix=k.fix or None)


def options_of(cls: type, cfg, prefix: str = ""):
    """The typed `cls.Options` instance a config holds for plugin `cls` (None for a class without
    options). `cfg` is a config object whose nested options belong to `cls` (ModelConfig's
    `options` for an architecture, `history_options` for a history encoder, WeightingConfig's
    `options` for a method), or any object with one attribute per knob (`prefix + name`, the
    flat layout before config format 2). Options of another class are carried over by name."""
    opts = getattr(cls, "Options", None)
    if opts is None:
        return None
    for attr in ("options", "history_options"):
        held = getattr(cfg, "__dict__", {}).get(attr)
        if isinstance(held, opts):
            return held
    return opts(**{f.name: getattr(cfg, prefix + f.name) for f in dataclasses.fields(opts)
                   if hasattr(cfg, prefix + f.name)})


__all__ = ["discover", "LiveNames", "Knob", "knob", "KnobField", "knob_fields", "merge_knobs", "check_knob_type",
           "check_knob_rule", "options_of", "is_int", "is_number"]
