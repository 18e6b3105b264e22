"""What a run is called and what its table compares: derived from its TrainConfig only."""
from __future__ import annotations

import secrets
import time

from ..config import ARCH_LABELS, TrainConfig


def _sizes(s) -> str:
    return "[" + ",".join(str(int(x)) for x in s) + "]"


def model_summary(cfg: TrainConfig) -> str:
    """'MMoE 4x[64,32]', 'Shared-Bottom [128,64]', 'PLE 1+2x[64,32]'..."""
    m = cfg.model
    label = ARCH_LABELS.get(m.arch, m.arch)
    if m.arch == "mmoe":
        s = f"MMoE {m.n_experts}x{_sizes(m.experts)}"
    elif m.arch == "ple":
        s = f"PLE {m.specific_experts}+{m.shared_experts}x{_sizes(m.experts)}" + (f" L{m.levels}" if m.levels > 1 else "")
    else:
        s = f"{label} {_sizes(m.shared)}"
    if m.text_features:
        s += " +text"
    return s


def default_name(cfg: TrainConfig, task_names, when: float | None = None) -> str:
    """Readable default: 'MMoE 4x[64,32] · click,like · 14:05:12' (+ weighting when not fixed)."""
    parts = [model_summary(cfg), ",".join(task_names)]
    if cfg.weighting != "fixed":
        parts.append(cfg.weighting)
    parts.append(time.strftime("%H:%M:%S", time.localtime(when if when is not None else time.time())))
    return " · ".join(parts)


def new_run_id(cfg: TrainConfig, when: float | None = None) -> str:
    """Unique, sortable folder name: 20240101-140512-mmoe-3f9a1c."""
    t = when if when is not None else time.time()
    return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(t))}-{cfg.model.arch}-{secrets.token_hex(3)}"


def settings_of(cfg: TrainConfig) -> dict:
    """The settings a runs table compares (flat, JSON-able)."""
    m, d = cfg.model, cfg.data
    return {
        "arch": m.arch, "emb_dim": m.emb_dim, "shared": list(m.shared), "experts": list(m.experts),
        "n_experts": m.n_experts, "specific_experts": m.specific_experts, "shared_experts": m.shared_experts,
        "levels": m.levels, "towers": list(m.towers), "dropout": m.dropout, "text_features": m.text_features,
        "weighting": cfg.weighting, "weights": dict(cfg.weights), "optimizer": cfg.optimizer, "lr": cfg.lr,
        "batch_size": cfg.batch_size, "epochs": cfg.epochs, "seed": cfg.seed, "split": d.split,
        "negatives": d.negatives, "source": d.source, "use_features": d.use_features,
    }
