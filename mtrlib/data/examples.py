"""From a dataset and its tasks to labelled examples (rows x tasks, NaN = not observed).

Implicit tasks add K sampled negatives per logged row, drawn uniformly from the items the
user never interacted with, reproducibly by seed, with one vectorised rejection loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from .dataset import Dataset, index_positions
from .kinds import KINDS, TaskSpec
from .tasks import parse_tasks

CLASH_CHUNK = 1 << 22  # negatives checked against the positives per chunk (memory, not results)


@dataclass
class Examples:
    """Labelled examples: `frame` (user_id, item_id, [timestamp], origin, sampled) + labels [N, T]."""
    frame: pd.DataFrame
    labels: np.ndarray  # float32, NaN where a task is not observed
    tasks: list[TaskSpec]
    notes: list[str]

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def mask(self) -> np.ndarray:
        return ~np.isnan(self.labels)

    def __len__(self) -> int:
        return len(self.frame)

    def balance(self) -> dict:
        """Per task: observed count and positive rate (binary) or mean/std (regression)."""
        out = {}
        for j, t in enumerate(self.tasks):
            y = self.labels[:, j]
            y = y[~np.isnan(y)]
            if t.is_retrieval:  # positives only: the other items of a batch are its negatives
                out[t.name] = {"observed": int(len(y))}
            elif t.is_binary:
                out[t.name] = {"observed": int(len(y)), "positive_rate": float(y.mean()) if len(y) else float("nan")}
            else:
                out[t.name] = {"observed": int(len(y)), "mean": float(y.mean()) if len(y) else float("nan"),
                               "std": float(y.std()) if len(y) else float("nan")}
        return out


def _logged_labels(ds: Dataset, task: TaskSpec) -> np.ndarray:
    return KINDS[task.kind].labels(ds, task)


def sample_negatives(
    user_idx: np.ndarray, item_idx: np.ndarray, n_items: int, k: int, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """K items per logged row that the row's user never interacted with.

    Returns (origin row of each negative, sampled item index, number of rows that could not be
    given all K because the user interacted with (almost) every item).
    """
    if k <= 0 or len(user_idx) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    rng = np.random.default_rng(seed)
    pos = np.unique(user_idx.astype(np.int64) * n_items + item_idx)
    origin = np.repeat(np.arange(len(user_idx), dtype=np.int64), k)
    cand = rng.integers(0, n_items, size=len(origin))
    todo = np.arange(len(origin))
    for _ in range(64):
        clash = np.zeros(len(todo), bool)
        for lo in range(0, len(todo), CLASH_CHUNK):  # in chunks: a few arrays of the chunk, not of every negative
            t = todo[lo:lo + CLASH_CHUNK]
            keys = user_idx[origin[t]].astype(np.int64) * n_items + cand[t]
            where = np.searchsorted(pos, keys)
            where[where == len(pos)] = 0
            clash[lo:lo + CLASH_CHUNK] = pos[where] == keys
        todo = todo[clash]
        if len(todo) == 0:
            break
        cand[todo] = rng.integers(0, n_items, size=len(todo))
    if len(todo) == 0:  # every row got its K negatives: the arrays as they are (no copy)
        return origin, cand, 0
    keep = np.ones(len(origin), bool)
    keep[todo] = False
    return origin[keep], cand[keep], int(len(np.unique(origin[todo])))


def build_examples(ds: Dataset, tasks, negatives: int = 4, seed: int = 0) -> Examples:
    """Label every logged row for every task; add sampled negatives if a task is implicit."""
    tasks = parse_tasks(tasks)
    inter = ds.interactions
    notes: list[str] = []
    cols = ["user_id", "item_id"] + (["timestamp"] if "timestamp" in inter.columns else [])
    frame = inter[cols].reset_index(drop=True).copy()  # arrow-backed text: the copy shares the buffers
    n = len(frame)
    origin = np.zeros(0, np.int64)
    implicit = any(KINDS[t.kind].samples_negatives for t in tasks)
    if implicit:
        if negatives < 1:
            raise DataError("An implicit task needs at least 1 sampled negative per positive.",
                            fix="set negatives per positive to 1 or more (default 4)")
        item_index = ds.items.index
        origin, neg_items, short = sample_negatives(pd.factorize(frame["user_id"])[0],
                                                    index_positions(item_index, frame["item_id"]),
                                                    len(item_index), int(negatives), seed)
        if short:
            notes.append(f"{short} rows got fewer than {negatives} negatives: their users interacted with almost every item.")
        # the negatives' columns are built in place (one take per column), not as a copied frame concatenated
        take = np.concatenate([np.arange(n), origin])  # every example's logged row: also its `origin`
        items = pd.concat([frame["item_id"], pd.Series(item_index.take(neg_items), dtype=frame["item_id"].dtype)],
                          ignore_index=True)
        del neg_items
        frame = pd.DataFrame({c: items if c == "item_id" else frame[c].take(take).reset_index(drop=True)
                              for c in cols})
        notes.append(f"Sampled {len(origin):,} negatives ({negatives} per logged row, seed {seed}).")
        frame["origin"] = take
        del take, origin, items
    else:
        frame["origin"] = np.arange(n, dtype=np.int64)
    frame["sampled"] = np.arange(len(frame)) >= n
    Y = np.empty((len(frame), len(tasks)), np.float32)  # one array, filled in place (no stack, no copy)
    for j, t in enumerate(tasks):
        Y[:n, j] = _logged_labels(ds, t)
        Y[n:, j] = 0.0 if t.is_binary else np.nan  # whole-space: a sampled non-interaction is not liked either

    # conditional tasks: observed only where the parent task is 1 (applied parents-first); a
    # retrieval task on OTHER's positives the same way
    by_name = {t.name: j for j, t in enumerate(tasks)}
    for _ in range(len(tasks)):
        for j, t in enumerate(tasks):
            if t.parent:
                Y[Y[:, by_name[t.parent]] != 1, j] = np.nan

    for j, t in enumerate(tasks):
        y = Y[:, j]
        obs = y[~np.isnan(y)]
        if len(obs) == 0 and not t.is_retrieval:
            raise DataError(f"Task '{t.name}' has no observed labels.",
                            fix="check its column and its '|' condition")
        KINDS[t.kind].check_labels(t, obs)
    return Examples(frame=frame, labels=Y, tasks=tasks, notes=notes)  # Y is float32 already: no copy
