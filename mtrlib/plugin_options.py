"""Plugin options in the config tree (mtrlib.config): where each plugin kind's options live, every
plugin's knobs at their nested paths, reading and setting a dotted path, and the flat names
config format 1 gave the knobs.

The chosen plugin's typed `Options` instance is held by the config object that chooses it
(`PLUGINS`). `plugin_options` builds it, carrying over the knobs two classes share by name;
`NestedOptions` keeps it in step with the choice and answers format 1's flat names
(`cfg.model.n_experts`, `cfg.model.history_heads`) from it.
"""
from __future__ import annotations

import copy
import dataclasses
import typing

from .errors import ConfigError
from .models import ARCHITECTURES
from .models.history import HISTORY_ENCODERS, PREFIX as _HISTORY_PREFIX
from .registry import KnobField, knob_fields
from .weighting import WEIGHTINGS as _WEIGHTING_CLASSES

# where each plugin kind's options live -> (its registry, the path of the field that chooses it)
PLUGINS = {"model.options": (ARCHITECTURES, "model.arch"),
           "model.history_options": (HISTORY_ENCODERS, "model.history_encoder"),
           "weighting.options": (_WEIGHTING_CLASSES, "weighting.name")}


def plugin_options(registry: dict, name, held=None):
    """The Options instance of plugin `name` (None: no options, or an unknown name, which
    validation refuses): `held` itself when it is one, else the class's defaults with the
    values of knobs `held` also declares carried over by name (a dict is read as given)."""
    cls = registry.get(name) if isinstance(name, str) else None
    opts = getattr(cls, "Options", None)
    if opts is None:
        return None
    if isinstance(held, opts):
        return held
    names = {f.name for f in dataclasses.fields(opts)}
    if isinstance(held, dict):
        unknown = sorted(set(held) - names)
        if unknown:
            raise ConfigError(f"Unknown setting(s) for {cls.label}: {', '.join(unknown)}.",
                              fix=f"{cls.label} has: {', '.join(sorted(names)) or 'no settings'}")
        return opts(**copy.deepcopy(held))
    if dataclasses.is_dataclass(held):
        return opts(**{f.name: copy.deepcopy(getattr(held, f.name)) for f in dataclasses.fields(held) if f.name in names})
    return opts()


class NestedOptions:
    """Keeps a config's plugin options in step with its plugin choice, and answers the flat
    names of format 1 (`n_experts`, `history_heads`, `gradnorm_alpha`) from the nested options."""
    _CHOICE: dict[str, tuple[str, dict]] = {}  # choosing field -> (options field, registry)
    _FLAT: dict[str, tuple[str, str]] = {}  # flat name -> (options field, knob name)

    def __setattr__(self, name, value):
        held = self.__dict__
        if name in self._CHOICE and "options" in type(self).__dataclass_fields__ and name in held:
            where, registry = self._CHOICE[name]
            object.__setattr__(self, name, value)
            object.__setattr__(self, where, plugin_options(registry, value, held.get(where)))
            return
        if name in self._FLAT and name not in type(self).__dataclass_fields__:
            where, knob_name = self._FLAT[name]
            opts = held.get(where)
            if opts is not None and hasattr(opts, knob_name):  # a knob the chosen plugin lacks: no effect
                setattr(opts, knob_name, value)
            return
        object.__setattr__(self, name, value)

    def __getattr__(self, name):  # only for names that are not attributes: the flat names of format 1
        flat = type(self)._FLAT.get(name)
        if flat is None:
            raise AttributeError(f"{type(self).__name__} has no setting '{name}'")
        opts = self.__dict__.get(flat[0])
        if opts is not None and hasattr(opts, flat[1]):
            return getattr(opts, flat[1])
        return FLAT_DEFAULTS[name]  # what the flat field held when nobody set it


def _plugin_knobs() -> tuple[list[KnobField], dict[str, tuple[type, ...]]]:
    """Every plugin's knobs at their nested paths, one per path: classes that share a knob name
    (MMoE's and PLE's `experts`) share its path, flag and URL key, and must agree on its type."""
    out: dict[str, KnobField] = {}
    owners: dict[str, tuple[type, ...]] = {}
    for where, (registry, _) in PLUGINS.items():
        for cls in registry.values():
            for kf in knob_fields(getattr(cls, "Options", None)):
                path = f"{where}.{kf.name}"
                first = out.get(path)
                if first is not None and first.base_type is not kf.base_type:
                    raise RuntimeError(f"Setting '{kf.name}' is declared by {owners[path][0].__name__} and "
                                       f"{cls.__name__} with different types: give one of them another name.")
                out.setdefault(path, KnobField(path, kf.type, kf.knob, kf.field))
                owners[path] = owners.get(path, ()) + (cls,)
    return list(out.values()), owners


PLUGIN_SETTINGS, PLUGIN_OWNERS = _plugin_knobs()


def plugin_place(path: str) -> str | None:
    """'model.options' for 'model.options.n_experts' (None for a core setting)."""
    head = path.rsplit(".", 1)[0]
    return head if head in PLUGINS else None


def chosen_plugin(cfg, place: str):
    """The chosen plugin class of a kind (`model.options` -> the architecture), None if unknown."""
    registry, choice = PLUGINS[place]
    return registry.get(get_value(cfg, choice))


_MISSING = object()


def get_value(cfg, path: str, default=_MISSING):
    """The value at a dotted path; `default` (else AttributeError) where the chosen plugin lacks it."""
    obj = cfg
    for p in path.split("."):
        obj = getattr(obj, p, _MISSING) if obj is not None else _MISSING
        if obj is _MISSING:
            if default is _MISSING:
                raise AttributeError(f"no setting {path}")
            return default
    return obj


def set_value(cfg, path: str, value) -> bool:
    """Set the value at a dotted path; False (nothing set) for a knob the chosen plugin lacks."""
    *head, last = path.split(".")
    obj = cfg
    for p in head:
        obj = getattr(obj, p)
    if ".".join(head) in PLUGINS and (obj is None or not hasattr(obj, last)):
        return False
    setattr(obj, last, copy.deepcopy(value))
    return True


def _flat_names() -> dict[str, str]:
    """Format 1's flat names -> nested paths: `n_experts` / `model.n_experts`, `history_heads`,
    `gradnorm_alpha` (a method's knob, prefixed by the method)."""
    out = {}
    for kf in PLUGIN_SETTINGS:
        place, name = kf.name.rsplit(".", 1)
        if place == "model.options":
            out[name] = out["model." + name] = kf.name
        elif place == "model.history_options":
            out[_HISTORY_PREFIX + name] = out["model." + _HISTORY_PREFIX + name] = kf.name
    for cls in _WEIGHTING_CLASSES.values():
        for kf in knob_fields(cls.Options):
            out[weighting_prefix(cls.name) + kf.name] = f"weighting.options.{kf.name}"
    return out


def weighting_prefix(name: str) -> str:
    return name.replace("-", "_") + "_"


FLAT_NAMES = _flat_names()
FLAT_DEFAULTS = {n: next(kf for kf in PLUGIN_SETTINGS if kf.name == p).default()
                  for n, p in FLAT_NAMES.items() if "." not in n}  # what a flat field held when nobody set it


# -- reading and writing: format 1 and 2 --------------------------------------------------------------

def as_dict(obj) -> dict:
    """JSON-able dict of a config object; plugin options as a dict ({} for a plugin without any)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name in ("options", "history_options"):
            out[f.name] = dataclasses.asdict(v) if v is not None else {}
        elif dataclasses.is_dataclass(v):
            out[f.name] = as_dict(v)
        else:
            out[f.name] = copy.deepcopy(v)
    return out


def migrate_format_1(d: dict, default_arch: str, default_encoder: str) -> dict:
    """A config dict in this version's nested shape: format 1 (every plugin knob flat:
    `model.n_experts`, `model.history_heads`, top-level `gradnorm_alpha`, `"weighting": "dwa"`)
    is rewritten; the chosen plugins' knobs move into their `options`, the other plugins'
    knobs are dropped (they never had an effect). A format-2 dict comes back unchanged."""
    if not isinstance(d, dict):
        return d
    d = dict(d)
    w = d.get("weighting", {})
    if isinstance(w, str):
        w = {"name": w}
    if isinstance(w, dict):
        w = dict(w)
        method = _WEIGHTING_CLASSES.get(w.get("name", "fixed"))
        opts = dict(w.get("options") or {})
        for key in [k for k in d if FLAT_NAMES.get(k, "").startswith("weighting.")]:
            value = d.pop(key)
            if method is not None and key.startswith(weighting_prefix(method.name)):
                opts.setdefault(FLAT_NAMES[key].rsplit(".", 1)[1], value)
        if opts or "options" in w:
            w["options"] = opts
        d["weighting"] = w
    m = d.get("model")
    if isinstance(m, dict):
        m = dict(m)
        for place, choice in (("options", "arch"), ("history_options", "history_encoder")):
            registry = ARCHITECTURES if place == "options" else HISTORY_ENCODERS
            cls = registry.get(m.get(choice, default_arch if place == "options" else default_encoder))
            known = {f.name for f in dataclasses.fields(cls.Options)} if getattr(cls, "Options", None) else set()
            opts = dict(m.get(place) or {}) if isinstance(m.get(place, {}), dict) else m.get(place)
            for key in [k for k in m if FLAT_NAMES.get(k, "").startswith(f"model.{place}.")]:
                value, name = m.pop(key), FLAT_NAMES[key].rsplit(".", 1)[1]
                if name in known and isinstance(opts, dict):
                    opts.setdefault(name, value)
            if opts or place in m:
                m[place] = opts
        d["model"] = m
    return d


def format_1_view(d: dict) -> dict:
    """The format-1 (flat) shape of a format-2 config dict: what the code before the nesting
    wrote for the same setup. Run groups (mtrlib.runs.naming.group_key) hash this view, so a
    setup keeps its group across the format change and repeats of it trained before and after
    still group together (and a sweep resumes from them). Format 1 held every plugin's knobs at
    their defaults: those come back from `FLAT_DEFAULTS`; the chosen plugins' values win."""
    d = copy.deepcopy(d)
    w = d.get("weighting")
    if isinstance(w, dict):
        d["weighting"] = name = w.get("name", "fixed")
        for k, v in FLAT_DEFAULTS.items():
            if FLAT_NAMES[k].startswith("weighting."):
                d.setdefault(k, v)
        for k, v in (w.get("options") or {}).items():
            d[weighting_prefix(name) + k] = v
    m = d.get("model")
    if isinstance(m, dict):
        opts, hist = m.pop("options", None) or {}, m.pop("history_options", None) or {}
        for k, v in FLAT_DEFAULTS.items():
            if FLAT_NAMES[k].startswith("model."):
                m.setdefault(k, v)
        m.update(opts)
        m.update({_HISTORY_PREFIX + k: v for k, v in hist.items()})
    return d


def build(cls, d: dict, where: str):
    """A config object of class `cls` from a dict (already migrated), refusing unknown keys by name."""
    if not isinstance(d, dict):
        raise ConfigError(f"'{where}' must be an object.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ConfigError(f"Unknown setting(s) in {where}: {', '.join(unknown)}.",
                          fix=f"known settings: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kw = {}
    for k, v in d.items():
        sub = hints[k] if dataclasses.is_dataclass(hints[k]) else None
        if sub is not None and not isinstance(v, (dict, sub)):
            raise ConfigError(f"'{where}.{k}' must be an object of settings (got {type(v).__name__}).",
                              fix=f'write it as "{k}": {{...}}')
        if k in ("options", "history_options") and v is not None and not isinstance(v, dict) \
                and not dataclasses.is_dataclass(v):
            raise ConfigError(f"'{where}.{k}' must be an object of settings (got {type(v).__name__}).",
                              fix=f'write it as "{k}": {{...}}')
        kw[k] = build(sub, v, f"{where}.{k}") if sub is not None and isinstance(v, dict) else v
    try:
        return cls(**kw)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e.problem}", fix=e.fix) from None


__all__ = ["PLUGINS", "PLUGIN_SETTINGS", "PLUGIN_OWNERS", "FLAT_NAMES", "NestedOptions", "plugin_options",
           "plugin_place", "chosen_plugin", "get_value", "set_value", "weighting_prefix", "FLAT_DEFAULTS", "as_dict",
           "build", "migrate_format_1"]
