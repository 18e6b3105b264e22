"""Bounded live series: what a polling chart needs of a run that may take a million steps.

A live chart redraws about once a second. If it were sent the whole step history, each
redraw would cost more as the run grows and compete with training for the GIL and the
cores. `Downsampled` keeps at most `2 * max_points` rows whatever the run length: rows are
appended one by one (amortised O(1)), and when the buffer is full every other row is
dropped, so older stretches are thinned progressively while the newest row is always kept.
The full-resolution history stays in the run folder (history.jsonl) for the Runs page.
"""
from __future__ import annotations

import threading
import numpy as np

DEFAULT_POINTS = 300


class Downsampled:
    """Rows (dicts) of a series, thinned to between `max_points` and `2 * max_points`."""

    def __init__(self, max_points: int = DEFAULT_POINTS):
        if max_points < 2:
            raise ValueError("max_points must be at least 2")
        self.max_points = int(max_points)
        self._rows: list[dict] = []
        self._stride = 1  # keep one new row in `_stride` (doubles at each thinning)
        self._pending = 0  # rows seen since the last kept one
        self._last: dict | None = None  # the newest row, kept even when the stride skips it
        self.total = 0  # rows ever appended
        self._lock = threading.Lock()

    def append(self, row: dict) -> None:
        with self._lock:
            self.total += 1
            self._last = row
            self._pending += 1
            if self._pending < self._stride:
                return
            self._pending = 0
            self._rows.append(row)
            if len(self._rows) >= 2 * self.max_points:
                self._rows = self._rows[1::2]  # every other row: the newest one (odd index) stays
                self._stride *= 2

    def rows(self) -> list[dict]:
        """A copy of the kept rows in order, ending with the newest row appended."""
        with self._lock:
            out = list(self._rows)
            if self._last is not None and (not out or out[-1] is not self._last):
                out.append(self._last)
            return out

    def __len__(self) -> int:
        return len(self.rows())

    def __bool__(self) -> bool:
        return self.total > 0

    def __iter__(self):
        return iter(self.rows())

    def __getitem__(self, k):
        return self.rows()[k]


def thin(rows, max_points: int = 2 * DEFAULT_POINTS):
    """At most `max_points` evenly spaced rows of a DataFrame (or list), first and last kept:
    for live charts of a run that is still growing, read back from its history file."""
    n = len(rows)
    if n <= max_points:
        return rows
    idx = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    return rows.iloc[idx] if hasattr(rows, "iloc") else [rows[i] for i in idx]
