"""What a run is called and what its table compares: derived from its TrainConfig only."""
from __future__ import annotations

import hashlib
import json
import secrets
import time
import weakref

import pandas as pd

import dataclasses

from ..config import ARCHITECTURES, TrainConfig
from ..plugin_options import format_1_view
from ..registry import options_of


def model_summary(cfg: TrainConfig) -> str:
    """'MMoE 4x[64,32]', 'Shared-Bottom [128,64]', 'PLE 1+2x[64,32]'... (each architecture's own summary)."""
    cls = ARCHITECTURES.get(cfg.model.arch)
    s = cls.summary(options_of(cls, cfg.model), cfg.model) if cls is not None else cfg.model.arch
    if cfg.model.text_features:
        s += " +text"
    if cfg.model.history:
        s += f" +history {cfg.model.history_encoder} {cfg.model.history}"
    return s


def default_name(cfg: TrainConfig, task_names, when: float | None = None) -> str:
    """Readable default: 'MMoE 4x[64,32] · click,like · 14:05:12' (+ weighting when not fixed)."""
    parts = [model_summary(cfg), ",".join(task_names)]
    if cfg.weighting.name != "fixed":
        parts.append(cfg.weighting.name)
    parts.append(time.strftime("%H:%M:%S", time.localtime(when if when is not None else time.time())))
    return " · ".join(parts)


def new_run_id(cfg: TrainConfig, when: float | None = None) -> str:
    """Unique, sortable folder name: 20240101-140512-mmoe-3f9a1c."""
    t = when if when is not None else time.time()
    return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(t))}-{cfg.model.arch}-{secrets.token_hex(3)}"


def settings_of(cfg: TrainConfig) -> dict:
    """The settings a runs table compares (flat, JSON-able)."""
    m, d = cfg.model, cfg.data
    knobs = dataclasses.asdict(m.options) if m.options is not None else {}  # the chosen architecture's
    return {
        "arch": m.arch, "emb_dim": m.emb_dim, **knobs, "towers": list(m.towers), "dropout": m.dropout,
        "text_features": m.text_features, "weighting": cfg.weighting.name, "weights": dict(cfg.weights),
        "optimizer": cfg.optimizer, "lr": cfg.lr, "batch_size": cfg.batch_size, "epochs": cfg.epochs, "seed": cfg.seed,
        "split": d.split, "negatives": d.negatives, "source": d.source, "use_features": d.use_features,
        "history": m.history, "history_encoder": m.history_encoder if m.history else None,
        "history_task": m.history_task if m.history else None,
    }


# what does not change what a run learns, so runs that differ only here are one experiment
# (the seed is what repeats vary; the name, the device and the logging are bookkeeping)
_NOT_THE_SETUP = ("seed", "name", "device", "cpu_threads", "log_every")
# settings added after the config's format 2 (issue 26), with their defaults: a run that leaves
# them at the default is the same setup as one saved before they existed
_ADDED_LATER = ((("data", "world", "context"), False), (("data", "mapping"), {}), (("data", "context"), True),
                (("model", "context_dim"), 8), (("model", "position"), "feature"),
                (("expert_health",), True), (("model", "expert_norm"), "none"), (("model", "expert_activation"), "relu"),
                (("model", "feature_gate"), False), (("model", "self_gate"), False),  # issue 28: HoME's knobs
                (("model", "task_groups"), ""), (("model", "group_experts"), 1), (("model", "home_norm"), "batch"),
                (("model", "home_activation"), "swish"), (("model", "gamma"), 2.0))  # HoME's and PEPNet's own


def data_signature(ds) -> dict:
    """What tells one dataset from another in a group key (known before anything is prepared)."""
    return {"name": ds.name, "layout": ds.layout, "users": int(ds.n_users), "items": int(ds.n_items),
            "interactions": int(ds.n_interactions)}


_FINGERPRINTS: dict[int, tuple[weakref.ref, str]] = {}  # id(dataset) -> (the dataset, its fingerprint)


def data_fingerprint(ds) -> str:
    """A hash of the interactions' content (not only their shape, as `data_signature`): two
    uploads with the same counts but other rows never share a run. Computed once per dataset
    object (the app shares one object between sessions), so a press costs no rehash."""
    hit = _FINGERPRINTS.get(id(ds))
    if hit is not None and hit[0]() is ds:
        return hit[1]
    h = pd.util.hash_pandas_object(ds.interactions, index=False).to_numpy()
    fp = "d-" + hashlib.sha1(h.tobytes()).hexdigest()[:12]
    key = id(ds)  # datasets compare by value (unhashable), so they are remembered by identity
    try:
        _FINGERPRINTS[key] = (weakref.ref(ds, lambda _r: _FINGERPRINTS.pop(key, None)), fp)
    except TypeError:  # an object that cannot be weakly referenced is hashed again next time
        pass
    return fp


def run_key(cfg: TrainConfig, ds) -> str:
    """What identifies a run on this server: its setup group, its seed and its data's fingerprint.
    Two presses with the same key would train the same thing, so the second one shares the first."""
    return f"{group_key(cfg, data_signature(ds))}/{cfg.seed}/{data_fingerprint(ds)}"


def group_key(cfg: TrainConfig, dataset: dict | None = None) -> str:
    """The experiment a run belongs to: a short hash of its whole setup except the seed (and
    bookkeeping), plus what identifies its data (`dataset`: `data_signature`), so two uploads
    that share a file name are not mixed. Runs with the same key are repeats of one setup with
    different model and split seeds."""
    d = format_1_view(cfg.to_dict())  # the same group as before plugin options were nested
    for k in _NOT_THE_SETUP:
        d.pop(k, None)
    for (*parents, key), default in _ADDED_LATER:
        node = d
        for p in parents:
            node = node.get(p) or {}
        if key in node and node[key] == default:
            node.pop(key)
    if d["model"].get("text_features") and d["model"].get("text_combine") == "sum":
        d["model"]["text_dim"] = d["model"].get("emb_dim")  # what validation makes of it
    data = {k: (dataset or {}).get(k) for k in ("name", "layout", "users", "items", "interactions")}
    text = json.dumps({"setup": d, "data": data}, sort_keys=True, default=str)
    return "g-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]
