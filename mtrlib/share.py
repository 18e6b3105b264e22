"""The whole setup as URL query parameters, and back: a teacher sends a link that opens the
same experiment. Only settings that differ from the defaults are written, with short names.
"""
from __future__ import annotations

from .config import ARCHS, DEVICES, GRAD_SPACES, MODEL_KNOBS, OPTIMIZERS, WEIGHTING_KNOBS, WEIGHTINGS, TrainConfig
from .data.history import ORDERS, POOLS
from .data.split import SPLITS
from .models.history import HISTORY_ENCODERS
from .data.world import LIKE_OBSERVED

# short key -> (path in the config, type): the common settings here; every architecture's and
# weighting method's own knobs add theirs from their declarations (knob url=...)
KEYS: dict[str, tuple[str, type]] = {
    "src": ("data.source", str), "users": ("data.world.n_users", int), "items": ("data.world.n_items", int),
    "genres": ("data.world.n_genres", int), "rho": ("data.world.correlation", float),
    "wseed": ("data.world.seed", int), "imp": ("data.world.impressions_per_user", int),
    "likeobs": ("data.world.like_observed", str), "moods": ("data.world.moods", int),
    "neg": ("data.negatives", int), "split": ("data.split", str), "feat": ("data.use_features", bool),
    "arch": ("model.arch", str), "emb": ("model.emb_dim", int), "towers": ("model.towers", list),
    "drop": ("model.dropout", float), "text": ("model.text_features", bool),
    "weighting": ("weighting", str),
    "opt": ("optimizer", str), "lr": ("lr", float), "wd": ("weight_decay", float), "bs": ("batch_size", int), "epochs": ("epochs", int),
    "seed": ("seed", int), "device": ("device", str),
    "gspace": ("grad_space", str), "gtel": ("grad_telemetry", bool),
    "hist": ("model.history", int), "henc": ("model.history_encoder", str), "htask": ("model.history_task", str),
    "horder": ("model.history_order", str), "hpool": ("model.history_pool", str),
}
for _prefix, _knobs in (("model.", MODEL_KNOBS), ("", WEIGHTING_KNOBS)):
    for _k in _knobs:
        if _k.knob.url:
            KEYS[_k.knob.url] = (_prefix + _k.name, _k.base_type)
CHOICES = {"data.source": ("world", "files"), "data.split": SPLITS, "data.world.like_observed": LIKE_OBSERVED,
           "model.arch": ARCHS, "weighting": WEIGHTINGS, "optimizer": OPTIMIZERS, "device": DEVICES,
           "grad_space": GRAD_SPACES, "model.history_encoder": tuple(HISTORY_ENCODERS), "model.history_order": ORDERS,
           "model.history_pool": POOLS}


def _get(obj, path):
    for p in path.split("."):
        obj = getattr(obj, p)
    return obj


def _set(obj, path, value):
    *head, last = path.split(".")
    for p in head:
        obj = getattr(obj, p)
    setattr(obj, last, value)


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, list):
        return ",".join(map(str, v))
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def to_params(cfg: TrainConfig) -> dict[str, str]:
    """Query parameters for the settings that differ from a fresh TrainConfig."""
    base = TrainConfig()
    out = {}
    for key, (path, _) in KEYS.items():
        v = _get(cfg, path)
        if v != _get(base, path):
            out[key] = _fmt(v)
    if cfg.data.tasks:
        out["tasks"] = ";".join(cfg.data.tasks)
    for t, w in sorted(cfg.weights.items()):
        if w != 1:
            out[f"w.{t}"] = _fmt(float(w))
    return out


def from_params(params: dict[str, str]) -> tuple[TrainConfig, list[str]]:
    """A config from query parameters; unreadable values are skipped and listed, never fatal."""
    cfg = TrainConfig()
    problems = []
    for key, raw in params.items():
        raw = raw[-1] if isinstance(raw, list) else raw
        try:
            if key == "tasks":
                cfg.data.tasks = [t for t in raw.split(";") if t.strip()]
            elif key.startswith("w."):
                cfg.weights[key[2:]] = max(0.0, float(raw))
            elif key in KEYS:
                path, typ = KEYS[key]
                if typ is bool:
                    val = raw.strip().lower() in ("1", "true", "yes", "on")
                elif typ is list:
                    val = [int(x) for x in raw.split(",") if x.strip()]
                else:
                    val = typ(raw)
                if path in CHOICES and val not in CHOICES[path]:
                    raise ValueError(f"not one of {', '.join(CHOICES[path])}")
                _set(cfg, path, val)
        except (TypeError, ValueError) as e:
            problems.append(f"ignored '{key}={raw}' ({e})")
    return cfg, problems
