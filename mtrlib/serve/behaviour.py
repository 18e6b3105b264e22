"""User behaviour in a trained run: the recent history the model reads for a user, and how
much each past item counts in the score of a chosen item (issue 18).

With DIN (target attention) the weights are the activation unit's outputs for that item,
so they change with the item: "these past items drove this score". Mean pooling weighs
every past item the same; the self-attention encoder reports its latest step's attention.
At recommendation time a user's history is their latest training history (the last L
training interactions, most recent first), saved with the run.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..train.device import device_of
from ..runs import Run, RunError, load_run

WEIGHT_MEANING = {
    "din": "DIN target attention: how strongly each past item speaks for this item (not normalised; "
           "it changes with the item)",
    "mean": "mean pooling: every past item counts the same",
    "sasrec": "self-attention: how much the latest step attends to each past item",
}


def has_history(run, store=None) -> bool:
    """Whether the run's model reads a user history."""
    run = load_run(run, store)
    return bool(run.config.model.history) and getattr(run.space, "history", None) is not None


def _history_block(run: Run):
    inp = run.model.input_layers()[0]
    if not hasattr(inp, "latest"):
        raise RunError(f"Run '{run.name}' reads no user history.", fix="train with --history L (e.g. 50)")
    return inp


def recent_history(run, user_id, item_id=None, store=None) -> pd.DataFrame:
    """The user's history as the model reads it, most recent first: `#` (1 = most recent),
    item_id, title / genres / genre where the run has them, and with `item_id` the column
    `weight`: each past item's weight in that item's score (see `WEIGHT_MEANING`).
    `df.attrs`: encoder, meaning, length (L), task (the history's filter task, if any)."""
    run = load_run(run, store)
    inp = _history_block(run)
    row = int(run.space.user_rows([str(user_id).strip()])[0])
    m = run.config.model
    attrs = {"encoder": m.history_encoder, "meaning": WEIGHT_MEANING.get(m.history_encoder, ""),
             "length": int(run.space.history.length), "task": run.space.history.task}
    cols = [c for c in ("title", "genres", "genre") if c in run.items.columns]
    if row < 0:
        out = pd.DataFrame(columns=["#", "item_id", *cols])
        out.attrs.update(attrs)
        return out
    dev = device_of(run.model)
    user = torch.tensor([row], device=dev)
    h = inp.latest(user)
    n = int(h.lengths[0])
    items = h.items[0, :n].cpu().numpy()
    out = run.items.iloc[items][cols].reset_index()
    out.insert(0, "#", np.arange(1, n + 1))
    if item_id is not None:
        irow = int(run.space.item_rows([str(item_id)])[0])
        if irow < 0:
            raise RunError(f"Item '{item_id}' is not in the run's catalogue.", fix="pick an item from the run's items")
        with torch.inference_mode():
            _, w = inp.weights(user, torch.tensor([irow], device=dev), h)
        out["weight"] = w[0, :n].float().cpu().numpy()
        attrs["item_id"] = str(item_id)
    out.attrs.update(attrs)
    return out


__all__ = ["recent_history", "has_history", "WEIGHT_MEANING"]
