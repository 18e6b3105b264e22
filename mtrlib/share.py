"""The whole setup as URL query parameters, and back: a teacher sends a link that opens the
same experiment. Only settings that differ from the defaults are written.

The keys are derived from the config tree (mtrlib.config.SETTINGS): a setting whose knob
declares a short `url` key is written under it (`emb`, `rho`, `nexp`), any other under its
dotted path (`model.text_dim`). Reading accepts either, and every older name
(mtrlib.config.resolve: format 1's flat names, declared aliases). Plugin knobs are read after
the plugin choice, so `arch=ple&levels=2` sets PLE's levels; a knob the chosen plugin lacks is
ignored and listed, as is any unreadable value: a link never fails to open.
"""
from __future__ import annotations

import typing

from .config import CORE_SETTINGS, PLUGIN_SETTINGS, PLUGINS, SETTINGS, TrainConfig, get_value, resolve, set_value

# short key -> (canonical path, type), for every setting (its url key, else its dotted path)
KEYS: dict[str, tuple[str, type]] = {}
for _kf in CORE_SETTINGS + PLUGIN_SETTINGS:
    KEYS[_kf.knob.url or _kf.name] = (_kf.name, _kf.base_type)
# path -> its valid values, for the settings that declare them
CHOICES = {kf.name: kf.knob.choices for kf in CORE_SETTINGS + PLUGIN_SETTINGS if kf.knob.choices is not None}
_CHOOSERS = tuple(choice for _, choice in PLUGINS.values())
_MISSING = object()


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, list):
        return ",".join(map(str, v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def to_params(cfg: TrainConfig) -> dict[str, str]:
    """Query parameters for the settings that differ from a fresh TrainConfig (a plugin knob
    whenever the chosen plugin holds it and it differs from the plugin's default)."""
    fresh, base = TrainConfig(), TrainConfig()
    for choice in _CHOOSERS:  # plugin knobs are compared with the same plugin's defaults
        set_value(base, choice, get_value(cfg, choice))
    out = {}
    for key, (path, _) in KEYS.items():
        v = get_value(cfg, path, _MISSING)
        if v is not _MISSING and v is not None and v != get_value(base if "options." in path else fresh, path, _MISSING):
            out[key] = _fmt(v)
    if cfg.data.tasks:
        out["tasks"] = ";".join(cfg.data.tasks)
    for t, w in sorted(cfg.weights.items()):
        if w != 1:
            out[f"w.{t}"] = _fmt(float(w))
    return out


def _parse(path: str, raw: str):
    kf = SETTINGS[path]
    typ = kf.base_type
    if type(None) in typing.get_args(kf.type):
        return raw if raw.strip() not in ("", "none") else None
    if typ is bool:
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if typ is list:
        return [int(x) for x in raw.split(",") if x.strip()]
    val = typ(raw)
    if path in CHOICES and val not in CHOICES[path]:
        raise ValueError(f"not one of {', '.join(map(str, CHOICES[path]))}")
    return val


def from_params(params: dict[str, str]) -> tuple[TrainConfig, list[str]]:
    """A config from query parameters; unreadable values are skipped and listed, never fatal."""
    cfg = TrainConfig()
    problems = []
    settings = []
    for key, raw in params.items():
        raw = raw[-1] if isinstance(raw, list) else raw
        try:
            if key == "tasks":
                cfg.data.tasks = [t for t in raw.split(";") if t.strip()]
            elif key.startswith("w."):
                cfg.weights[key[2:]] = max(0.0, float(raw))
            else:
                path = KEYS[key][0] if key in KEYS else resolve(key)
                if path is not None:
                    settings.append((key, raw, path, _parse(path, raw)))
        except (TypeError, ValueError) as e:
            problems.append(f"ignored '{key}={raw}' ({e})")
    for key, raw, path, val in sorted(settings, key=lambda s: s[2] not in _CHOOSERS):  # plugin choices first
        if not set_value(cfg, path, val):
            problems.append(f"ignored '{key}={raw}' (the chosen {path.split('.')[0]} has no such setting)")
    return cfg, problems


__all__ = ["KEYS", "CHOICES", "to_params", "from_params"]
