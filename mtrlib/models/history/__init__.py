"""History encoders: how the model reads a user's past items, one small file each, found by
discovery (like the architectures).

Every module here that defines an `Encoder` subclass (the description) with its own `name` is
registered in `HISTORY_ENCODERS` (ordered by `order`); its `Model` (a `HistoryEncoder`) is the
network, which the history block (`_block.HistoryInput`) builds with the encoder's options and
whose output joins the input row, so every architecture can use it. To add an encoder, add a
file: a `HistoryEncoder` with `forward(past, mask, target)` and `weights(past, mask, target)`,
and an `Encoder` with `name`, `label`, `paper`, `Options` (its knobs, config fields
`history_<knob>`) and `Model`.
"""
from __future__ import annotations

from ...data.history import check_length
from ...errors import ConfigError
from ...registry import discover, options_of
from ._base import Encoder, HistoryEncoder

HISTORY_ENCODERS: dict[str, type[Encoder]] = discover(__name__, Encoder, "name")
PREFIX = "history_"  # an encoder's knob `heads` is the config field `history_heads`


def encoder_class(name: str) -> type[Encoder]:
    return HISTORY_ENCODERS[name]


def history_caption(cfg) -> str | None:
    """'history L=50 · DIN' (+ ' · liked=1'), or None without a history."""
    if not getattr(cfg, "history", 0):
        return None
    cls = HISTORY_ENCODERS.get(cfg.history_encoder)
    text = f"history L={cfg.history} · {cls.short if cls else cfg.history_encoder}"
    return text + (f" · {cfg.history_task}=1" if cfg.history_task else "")


def draw_input(c, cfg, embeddings: str, width: float | None = None) -> None:
    """The diagram's input row (mtrlib.viz.charts.network): the embeddings box, and beside it the
    history block, whose output joins the row every architecture reads. `width`: the row's
    width when it spans more than the architecture (a retrieval task's towers beside it)."""
    w = c.width if width is None else width
    caption = history_caption(cfg)
    if caption is None:
        c.box(w / 2, 0.3, w * 0.9, 0.4, embeddings, "input")
        return
    c.box(w * 0.31, 0.3, w * 0.56, 0.4, embeddings, "input")
    c.box(w * 0.77, 0.3, w * 0.34, 0.4, caption, "history")


def check_history_settings(m, task_names: list[str] | None = None) -> list[str]:
    """The history block's settings beyond each knob's own rule (mtrlib.data.history; what the
    data must hold is checked when it is prepared): the task, and the chosen encoder's rules."""
    check_length(m.history)
    if not m.history:
        return []
    if task_names is not None and m.history_task is not None and m.history_task not in task_names:
        raise ConfigError(f"The history task '{m.history_task}' is not one of the tasks.",
                          fix=f"tasks are: {', '.join(task_names)} (or leave --history-task out for every interaction)")
    enc = HISTORY_ENCODERS[m.history_encoder]
    return enc.check(options_of(enc, m), m)


__all__ = ["HISTORY_ENCODERS", "Encoder", "HistoryEncoder", "PREFIX", "encoder_class", "history_caption", "draw_input",
           "check_history_settings"]
