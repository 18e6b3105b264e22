"""Train / validation / test splits, seeded; a sampled negative always follows its positive.

"given" uses the data's own split (each logged row's part: mtrlib.data.read.given.part_codes),
a split column or train / val / test files, instead of random numbers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError
from .examples import Examples

SPLITS = ("random", "temporal", "cold-items", "given")


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str
    report: dict = field(default_factory=dict)
    cold_items: np.ndarray | None = None  # item ids held out entirely (cold-items split)


def _by_origin(ex: Examples, part_of_logged: np.ndarray) -> np.ndarray:
    """Expand a part label per logged row (0 train, 1 val, 2 test) to every example."""
    return part_of_logged[ex.frame["origin"].to_numpy()]


def split(ex: Examples, method: str = "random", val_frac: float = 0.1, test_frac: float = 0.1,
          seed: int = 0, cold_frac: float = 0.1, given: np.ndarray | None = None) -> Split:
    """Random (per logged row), temporal (each user's last fraction by time), cold-items, or given
    (`given`: each logged row's part, 0 train, 1 val, 2 test, in the order of the interactions)."""
    if method not in SPLITS:
        raise DataError(f"Unknown split '{method}'.", fix=f"use one of: {', '.join(SPLITS)}")
    if method == "given":
        return _given(ex, given)
    if not (0 < val_frac < 1 and 0 < test_frac < 1 and val_frac + test_frac < 0.9):
        raise DataError("Validation and test fractions must be between 0 and 1 and leave room for training.",
                        fix="e.g. validation 0.1, test 0.2")
    f = ex.frame
    logged = ~f["sampled"].to_numpy()
    n_logged = int(logged.sum())
    rng = np.random.default_rng(seed)
    cold = None
    if method == "random":
        r = rng.random(n_logged)
        part = np.where(r < test_frac, 2, np.where(r < test_frac + val_frac, 1, 0))
        parts = _by_origin(ex, part)
    elif method == "temporal":
        if "timestamp" not in f.columns:
            raise DataError("A temporal split needs a timestamp column, and this data has none.",
                            fix="map a timestamp column, or use the random split")
        # each user's rows ordered by (time, random tie-break); users by their code, not their id
        # text: only the order within a user matters, and sorting integers is far cheaper
        rows = np.flatnonzero(logged)
        user = pd.factorize(f["user_id"])[0][rows]
        ts = pd.to_numeric(f["timestamp"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)[rows]
        tie = rng.random(len(rows))
        order = np.lexsort((tie, ts, user))
        u_sorted = user[order]
        count = np.bincount(user)
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        rank = np.arange(len(order)) - first[u_sorted]
        q = (rank + 0.5) / count[u_sorted]
        p = np.where(q >= 1 - test_frac, 2, np.where(q >= 1 - test_frac - val_frac, 1, 0))
        part = np.empty(n_logged, np.int64)
        part[rows[order]] = p  # logged rows come first in Examples, row == origin
        parts = _by_origin(ex, part)
    else:
        items = pd.unique(f["item_id"])
        n_cold = max(1, int(round(cold_frac * len(items))))
        cold = rng.choice(items, size=n_cold, replace=False)
        is_cold = f["item_id"].isin(set(cold)).to_numpy()
        r = rng.random(n_logged)
        part = np.where(r < val_frac, 1, 0)
        parts = np.where(is_cold, 2, _by_origin(ex, part))
    train, val, test = (np.flatnonzero(parts == k) for k in range(3))
    if len(train) < 10 or len(val) < 1 or len(test) < 1:
        raise DataError(
            f"Too few rows to split: {len(train)} for training, {len(val)} for validation, {len(test)} for test.",
            fix="use a larger file (at least a few dozen interactions) or smaller validation/test fractions",
        )
    return Split(train, val, test, method, report=_report(ex, train, val, test), cold_items=cold)


def _given(ex: Examples, given: np.ndarray | None) -> Split:
    """The data's own split: each example in its logged row's part (a negative follows its positive)."""
    n_logged = int((~ex.frame["sampled"].to_numpy()).sum())
    if given is None or len(given) != n_logged:
        raise DataError("The given split needs each logged row's part (train, val or test).",
                        fix="name the split column (--split-col COL) or give --train-file / --val-file / --test-file")
    parts = _by_origin(ex, np.asarray(given, dtype=np.int64))
    train, val, test = (np.flatnonzero(parts == k) for k in range(3))
    if len(train) < 10 or len(val) < 1 or len(test) < 1:
        raise DataError(f"The given split leaves {len(train)} example(s) for training, {len(val)} for validation "
                        f"and {len(test)} for test.",
                        fix="give at least a few dozen training rows and some validation and test rows, "
                            "or use --split random")
    return Split(train, val, test, "given", report=_report(ex, train, val, test))


def _report(ex: Examples, train, val, test) -> dict:
    f = ex.frame
    rep = {"rows": {"train": int(len(train)), "val": int(len(val)), "test": int(len(test))}}
    codes = {w: pd.factorize(f[f"{w}_id"])[0] for w in ("user", "item")}  # integers: no Python set of ids
    in_train = {w: np.bincount(c[train], minlength=c.max() + 1) > 0 for w, c in codes.items()}
    for name, idx in (("val", val), ("test", test)):
        for w, c in codes.items():
            present = np.bincount(c[idx], minlength=len(in_train[w])) > 0
            rep[f"{name}_unseen_{w}s"] = int((present & ~in_train[w]).sum())
    for j, t in enumerate(ex.tasks):
        y = ex.labels[train, j]
        if not (~np.isnan(y)).any():
            raise DataError(f"Task '{t.name}' has no observed labels in the training split.",
                            fix="use more data or a random split")
    return rep
