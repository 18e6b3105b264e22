"""Warnings that name the problem, computed once the examples are split: what would otherwise
train quietly and come back as `auc nan`, `null` metrics or a feature that teaches nothing.

`split_warnings(ds, examples, split, tasks)` gives a list of plain dicts, each
{"code", "subject" (a task or a column), "message", "fix"}:

- `no_observed` / `one_class`: a task with no observed rows, or (binary) only one class, in the
  validation or the test split: its metrics there are empty or NaN;
- `constant_context`: a context column (`Dataset.context_features`) with one value in the
  training rows: the model cannot learn anything from it;
- `unseen_codes`: a categorical column (context, item or user feature) whose values on most
  (more than half) of the test rows never appear in a training row: they all share one
  "unknown" embedding.

The CLI puts them in its JSON line ("warnings"), the run in meta.json, the Train page beside
the control they concern.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .context import usable_context
from .dataset import Dataset
from .examples import Examples
from .split import Split

UNSEEN_SHARE = 0.5  # a categorical column warns when more than this share of test rows has an unseen value
PARTS = (("val", "validation"), ("test", "test"))


def warning(code: str, subject: str, message: str, fix: str) -> dict:
    return {"code": code, "subject": subject, "message": message, "fix": fix}


def split_warnings(ds: Dataset, examples: Examples, split: Split, tasks=None) -> list[dict]:
    """Every warning for this split of these examples (an empty list when all is well)."""
    tasks = list(tasks if tasks is not None else examples.tasks)
    out = task_warnings(examples, split, tasks)
    context = usable_context(ds, tasks)  # a task's label column is no context feature
    out += context_warnings(ds, examples, split, context)
    out += unseen_warnings(ds, examples, split, context)
    return out


def task_warnings(examples: Examples, split: Split, tasks) -> list[dict]:
    """A task with no observed rows, or a binary task with one class, in validation or test."""
    out = []
    cols = {t.name: j for j, t in enumerate(examples.tasks)}
    for t in tasks:
        j = cols.get(t.name)
        if j is None or t.is_retrieval:  # a retrieval task is all positives by design
            continue
        for part, words in PARTS:
            y = examples.labels[getattr(split, part), j]
            y = y[~np.isnan(y)]
            if len(y) == 0:
                where = f" (observed only where '{t.parent}' is 1)" if t.parent else ""
                out.append(warning(
                    "no_observed", t.name,
                    f"Task '{t.name}' has no observed rows in the {words} split{where}, so its {words} metrics "
                    "are empty.",
                    "use a larger validation / test fraction or more data, or a random split"))
            elif t.is_binary and len(np.unique(y)) < 2:
                has = "positives" if y[0] == 1 else "negatives"
                lacks = "negatives" if y[0] == 1 else "positives"
                out.append(warning(
                    "one_class", t.name,
                    f"Task '{t.name}' has no {lacks} in the {words} split (all {len(y):,} observed rows are "
                    f"{has}), so its {words} AUC cannot be computed.",
                    "use a larger validation / test fraction or more data, a random split, "
                    f"or another column or threshold for '{t.name}'"))
    return out


def _rows(examples: Examples, idx: np.ndarray) -> np.ndarray:
    """The interaction row each of these examples comes from (a sampled negative: its positive's)."""
    return examples.frame["origin"].to_numpy()[idx]


def context_warnings(ds: Dataset, examples: Examples, split: Split, context: dict | None = None) -> list[dict]:
    """A context column with one value (or none) in the training rows."""
    out = []
    inter = ds.interactions
    train_rows = np.unique(_rows(examples, split.train))
    for col in (ds.context_features if context is None else context):
        if col not in inter.columns:
            continue
        values = inter[col].iloc[train_rows].dropna()
        distinct = values.unique()
        if len(distinct) > 1:
            continue
        everywhere = inter[col].nunique(dropna=True) <= 1
        what = f"one value ('{distinct[0]}')" if len(distinct) else "no values"
        where = "in every row" if everywhere else "in the training rows"
        out.append(warning(
            "constant_context", col,
            f"Context column '{col}' holds {what} {where}, so the model cannot learn anything from it.",
            f"drop '{col}' from the context features (role 'ignored')" if everywhere
            else f"use a random split, or drop '{col}' from the context features"))
    return out


def _unseen_share(codes: np.ndarray, split: Split) -> tuple[float, int, int]:
    """(share of test rows whose code never occurs in a training row, unseen distinct codes, test
    rows with a value); codes are -1 where the value is missing (not counted)."""
    seen = np.zeros(int(codes.max(initial=-1)) + 2, bool)  # slot 0: missing (-1 + 1)
    seen[codes[split.train] + 1] = True
    test = codes[split.test]
    test = test[test >= 0]
    if len(test) == 0:
        return 0.0, 0, 0
    unseen = ~seen[test + 1]
    return float(unseen.mean()), int(len(np.unique(test[unseen]))), int(len(test))


def _feature_codes(table: pd.DataFrame, col: str, ids: tuple[np.ndarray, pd.Index]) -> np.ndarray:
    """Per example: the code of its item's (or user's) value of `col`; -1 where missing. `ids`:
    the examples' ids factorized once (codes, distinct ids), not once per column."""
    id_codes, uniques = ids
    values = table[col].reindex(pd.Index(uniques.astype(str)))
    value_codes, _ = pd.factorize(values)
    return np.where(id_codes >= 0, value_codes[np.maximum(id_codes, 0)], -1)


def unseen_warnings(ds: Dataset, examples: Examples, split: Split, context: dict | None = None) -> list[dict]:
    """A categorical column whose test values are mostly unseen in training."""
    out = []
    inter, frame = ds.interactions, examples.frame
    columns = []  # (column, what it is, codes per example)
    origin = frame["origin"].to_numpy()
    for col, kind in (ds.context_features if context is None else context).items():
        if kind == "categorical" and col in inter.columns:
            codes, _ = pd.factorize(inter[col])
            columns.append((col, "context column", codes[origin]))
    for table, features, who in ((ds.items, ds.item_features, "item"), (ds.users, ds.user_features, "user")):
        wanted = [col for col, kind in features.items() if kind == "categorical" and col in table.columns]
        ids = pd.factorize(frame[f"{who}_id"]) if wanted else None
        for col in wanted:
            columns.append((col, f"{who} feature", _feature_codes(table, col, ids)))
    for col, what, codes in columns:
        share, n_unseen, n_test = _unseen_share(codes, split)
        if n_test and share > UNSEEN_SHARE:
            out.append(warning(
                "unseen_codes", col,
                f"The {what} '{col}' has values never seen in training on {share:.0%} of the test rows "
                f"({n_unseen:,} distinct value(s)): the model meets them all as one unknown value.",
                f"use a random split, or group the rare values of '{col}' (or drop it)"))
    return out


def describe(w: dict) -> str:
    """One line for a log: the message and its fix."""
    return f"{w['message']} Fix: {w['fix']}." if w.get("fix") else w["message"]
