"""History features: for every example, the user's last L interactions strictly before it.

User behaviour as a feature (issue 18): the model reads what a user did *recently*, not only
who they are. Built once per prepared data set, vectorised (sorts and searches, no per-row
Python):

- The **pool** of past events is the logged interactions of the *training* split (optionally
  only those where a binary task is 1, e.g. only liked items). Validation and test rows are
  never in the pool, so no history ever holds a held-out interaction.
- Each logged row's history is the pool events of the same user whose time is *strictly*
  before the row's own time (the timestamp, or the row's position in the file with
  `order="file"`), the latest L of them, most recent first. A validation or test row thus
  sees the training history before it: with a temporal split, the user's latest training
  events; with a random split, the training events of its own past.
- A sampled negative is a copy of its positive's row (same user, same time), so it shares
  the positive's history: examples index the table by their `origin` row.
- Each user's **latest** history (all of the pool, the latest L) is what the model reads at
  recommendation time; it is saved with the run's feature space.

Stored as padded index tensors with lengths: item rows [R, L] (int32, 0 where padded) and
lengths [R], one row per logged interaction.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from .encode import EncodedExamples, FeatureSpace, UserHistory

ORDERS = ("time", "file")  # what "before" means: by timestamp, or by the row's position in the file
# what a *test* example's history may hold besides the training interactions before it: nothing
# (the default, the protocol), or also the validation interactions before it ("train+val":
# at test time the validation period is past; training and validation examples never read it)
POOLS = ("train", "train+val")
MAX_HISTORY = 500  # longest history this tool builds (L x logged rows int32 cells are kept in memory)


class History(NamedTuple):
    """A batch of histories, as the model reads them."""
    items: torch.Tensor  # long [B, L]: item rows, most recent first; 0 where padded
    lengths: torch.Tensor  # long [B]: real entries per row (0..L)

    def mask(self) -> torch.Tensor:
        """bool [B, L]: True where a position holds a real past item."""
        return torch.arange(self.items.shape[1], device=self.items.device) < self.lengths[:, None]


@dataclass
class HistoryTable:
    """Padded histories, one row per logged interaction (or per user, for the latest ones)."""
    items: torch.Tensor  # int32 [R, L]
    lengths: torch.Tensor  # int32 [R]

    def __len__(self) -> int:
        return int(self.items.shape[0])

    @property
    def length(self) -> int:
        return int(self.items.shape[1])

    def batch(self, rows) -> History:
        """The histories of table rows `rows` (a tensor, slice or index array) as long tensors."""
        return History(self.items[rows].long(), self.lengths[rows].long())

    def to(self, device) -> "HistoryTable":
        return HistoryTable(self.items.to(device), self.lengths.to(device))


@dataclass
class HistoryExamples(EncodedExamples):
    """Encoded examples plus each example's row of the history table (shared by all subsets)."""
    table: HistoryTable | None = None
    rows: torch.Tensor | None = None  # long [N]: the example's row of `table` (its logged origin)

    def subset(self, idx) -> "HistoryExamples":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return attach(super().subset(idx), self.table, self.rows[idx])

    def to(self, device) -> "HistoryExamples":
        return attach(super().to(device), self.table.to(device), self.rows.to(device))

    def history_at(self, idx) -> History:
        """The histories of examples `idx` (a slice, index tensor or array)."""
        return self.table.batch(self.rows[idx])


def attach(enc: EncodedExamples, table: HistoryTable, rows: torch.Tensor) -> HistoryExamples:
    """`enc` (whatever fields it has) with a history table and each example's row of it."""
    base = {f.name: getattr(enc, f.name) for f in fields(EncodedExamples)}
    return HistoryExamples(**base, table=table, rows=rows)


def history_of(data, idx) -> History | None:
    """The histories of examples `idx` of `data`, or None when the data has no history."""
    return data.history_at(idx) if isinstance(data, HistoryExamples) else None


# -- settings ------------------------------------------------------------------------------------------

def check_length(length) -> None:
    """L must be a whole number from 1 to MAX_HISTORY (0 in a config means: no history)."""
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise DataError(f"The history length must be a whole number of past interactions (got {length!r}).",
                        fix="e.g. --history 50")
    if length < 0 or length > MAX_HISTORY:
        raise DataError(f"A history of {length} past interactions is " + ("negative" if length < 0 else "too long")
                        + f": this tool keeps 1 to {MAX_HISTORY}.",
                        fix="e.g. --history 50 (leave --history out for no history)")


def check_history(ds, tasks, length: int, task: str | None, order: str) -> None:
    """Refuse a history the data cannot give, with the fix (before anything is built)."""
    check_length(length)  # (the order's name and the encoder are settings: mtrlib.config checks them)
    if order == "time" and not ds.has_timestamp:
        raise DataError("History needs a timestamp column (to know what came before), and this data has none.",
                        fix="map one, or use --split random with --history-order file "
                            "(the file's row order stands for time)")
    if task is None:
        return
    names = [t.name for t in tasks]
    if task not in names:
        raise DataError(f"The history task '{task}' is not one of the tasks.",
                        fix=f"tasks are: {', '.join(names)} (or leave --history-task out for every interaction)")
    t = tasks[names.index(task)]
    if not t.is_binary:
        raise DataError(f"The history task '{task}' is a regression task: a history keeps the items where a "
                        "binary task is 1 (e.g. only liked items).",
                        fix="choose a binary task, e.g. " + (", ".join(x.name for x in tasks if x.is_binary)
                                                             or "liked=rating>=4"))


# -- building ----------------------------------------------------------------------------------------------

def _order_key(frame: pd.DataFrame, n_logged: int, order: str) -> np.ndarray:
    """float64 [n_logged]: when each logged row happened (NaN: unknown, no history either way)."""
    if order == "file":
        return frame["origin"].to_numpy()[:n_logged].astype(np.float64)
    t = pd.to_numeric(frame["timestamp"].iloc[:n_logged], errors="coerce").to_numpy(dtype=np.float64)
    t[~np.isfinite(t)] = np.nan
    return t


def history_events(user: np.ndarray, when: np.ndarray, in_pool: np.ndarray, length: int,
                   n_users: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The core search, on logged rows: user row [R], time [R] (NaN: unknown), pool flag [R].

    Returns (events [R, L]: the logged row of each past event, most recent first, -1 where
    padded; lengths [R]; latest [n_users, L] and latest_lengths [n_users], each user's last L
    pool events). An event is in row r's history iff it is in the pool, has the same user,
    and its time is strictly less than row r's time."""
    R = len(user)
    finite = np.isfinite(when)
    rank = np.zeros(R, np.int64)
    if finite.any():
        _, inv = np.unique(when[finite], return_inverse=True)
        rank[finite] = inv.ravel()
    top = int(rank.max()) + 1 if R else 1  # a rank beyond every event: "after everything"
    span = top + 1
    pool = np.flatnonzero(in_pool & finite)
    key = user.astype(np.int64) * span + rank
    order = pool[np.lexsort((pool, key[pool]))]  # by (user, time), ties by file order
    pool_key = key[order]

    def gather(user_q: np.ndarray, rank_q: np.ndarray, valid_q: np.ndarray):
        start = np.searchsorted(pool_key, user_q.astype(np.int64) * span, side="left")
        end = np.searchsorted(pool_key, user_q.astype(np.int64) * span + rank_q, side="left")  # strictly before
        n = np.where(valid_q, np.minimum(end - start, length), 0)
        pos = end[:, None] - 1 - np.arange(length)[None, :]
        real = np.arange(length)[None, :] < n[:, None]
        ev = np.where(real, order[np.clip(pos, 0, max(len(order) - 1, 0))] if len(order) else -1, -1)
        return ev.astype(np.int64), n.astype(np.int32)

    events, lengths = gather(user, rank, finite)
    users = np.arange(n_users)
    latest, latest_len = gather(users, np.full(n_users, top), np.ones(n_users, bool))
    return events, lengths, latest, latest_len


def _items_of(events: np.ndarray, item_rows: np.ndarray) -> np.ndarray:
    return np.where(events >= 0, item_rows[np.clip(events, 0, None)], 0).astype(np.int32)


def build_history(ex, sp, space: FeatureSpace, enc: EncodedExamples, length: int, task: str | None = None,
                  order: str = "time", pool: str = "train") -> tuple[HistoryTable, UserHistory, np.ndarray]:
    """(table: one history per logged row, the users' latest histories, each example's table row).

    `ex` / `sp` / `enc`: the prepared Examples, Split and encoded examples (all rows, frame order).
    `pool`: see POOLS (with "train+val" the latest histories hold the validation period too)."""
    frame = ex.frame
    sampled = frame["sampled"].to_numpy()
    n_logged = int((~sampled).sum())
    assert not sampled[:n_logged].any(), "logged rows come first in Examples"
    user = enc.user.numpy()[:n_logged]
    item = enc.item.numpy()[:n_logged]
    keep = np.ones(n_logged, bool)
    if task is not None:
        j = ex.task_names.index(task)
        keep = ex.labels[:n_logged, j] == 1  # NaN (unobserved) is not 1
    when = _order_key(frame, n_logged, order)
    events, lengths, latest, latest_len = history_events(user, when, _rows(sp.train, n_logged) & keep, int(length),
                                                         space.users.n)
    if pool == "train+val":  # test rows (and recommendations) also read the validation rows before them
        wide = (_rows(sp.train, n_logged) | _rows(sp.val, n_logged)) & keep
        ev, ln, latest, latest_len = history_events(user, when, wide, int(length), space.users.n)
        test = sp.test[sp.test < n_logged]
        events[test], lengths[test] = ev[test], ln[test]
    table = HistoryTable(torch.as_tensor(_items_of(events, item)), torch.as_tensor(lengths))
    users = UserHistory(_items_of(latest, item), latest_len, task=task, order=order, pool=pool)
    return table, users, frame["origin"].to_numpy().astype(np.int64)


def _rows(idx: np.ndarray, n_logged: int) -> np.ndarray:
    """bool [n_logged]: the logged rows among example indices `idx`."""
    out = np.zeros(n_logged, bool)
    out[idx[idx < n_logged]] = True
    return out


def with_history(cfg_model, ex, sp, space: FeatureSpace, enc: EncodedExamples, ds, tasks) -> HistoryExamples:
    """Check the model config's history settings against the data, build the history and set
    `space.history` (each user's latest); returns `enc` with every example's history row."""
    m = cfg_model
    check_history(ds, tasks, m.history, m.history_task, m.history_order)
    table, users, rows = build_history(ex, sp, space, enc, m.history, m.history_task, m.history_order,
                                       m.history_pool)
    space.history = users
    return attach(enc, table, torch.as_tensor(rows, dtype=torch.long))


__all__ = ["History", "HistoryTable", "UserHistory", "HistoryExamples", "attach", "history_of", "build_history",
           "history_events", "with_history", "check_history", "check_length", "ORDERS", "POOLS", "MAX_HISTORY"]
