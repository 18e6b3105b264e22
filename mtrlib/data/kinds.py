"""Task kinds: one small class each, owning its piece of the task grammar, its text, its
plain-words description and how its labels are made from the interactions.

`KINDS` is tried in order by `parse_task` (the first kind that reads the definition wins, so
the catch-all binary column comes last). A kind's `type` is its loss family, which models and
metrics act on: "binary" (BCE, AUC), "regression" (MSE, RMSE) or "retrieval" (a two-tower
in-batch softmax, Recall@K; mtrlib.models.retrieval). To add a kind: a class here with `name`,
`type`, `parse`, `body`, `describe` and `labels`, and an entry in `KINDS`.

`TaskSpec` (one parsed task) lives here beside the kinds because each kind builds, writes and
describes it; `mtrlib.data.tasks` holds the grammar's parser above both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError
from .dataset import Dataset

OPS = (">=", "<=", "==", ">", "<")
EXAMPLE = "examples: watched=implicit, liked=rating>=4|watched, click=clicked, dwell=dwell_time:reg"
_TRUE = {"1", "1.0", "true", "t", "yes", "y"}
_FALSE = {"0", "0.0", "false", "f", "no", "n"}
RETRIEVAL_EXAMPLE = "e.g. r=retrieval (every logged row is a positive) or r=retrieval:liked (the positives of task liked)"


@dataclass(frozen=True)
class TaskSpec:
    """One task: a name, its kind and the kind's parts (what `parse_task` reads)."""
    name: str
    kind: str  # "binary" | "threshold" | "regression" | "implicit" | "retrieval"
    column: str | None = None
    op: str | None = None
    threshold: float | None = None
    given: str | None = None
    transform: str | None = None  # a regression's target transform: "log" trains on log(1 + value) (":reg:log")

    @property
    def type(self) -> str:
        """The loss family of its kind (mtrlib.data.kinds): "binary", "regression" or "retrieval"."""
        k = KINDS.get(self.kind)
        return k.type if k is not None else "binary"

    @property
    def is_binary(self) -> bool:
        return self.type == "binary"

    @property
    def is_retrieval(self) -> bool:
        return self.type == "retrieval"

    @property
    def parent(self) -> str | None:
        """The binary task whose positives this one is observed on: '|OTHER', or a retrieval
        task's 'retrieval:OTHER'."""
        k = KINDS.get(self.kind)
        return k.parent(self) if k is not None else self.given

    def to_string(self) -> str:
        """The task in the grammar of `mtrlib.data.tasks`, which `parse_task` reads back as this same spec.

        An incomplete spec (from `task_from_fields`) still gives text, which `parse_task` then refuses
        with its message: no threshold writes nothing after the operator, an unknown kind no definition."""
        k = KINDS.get(self.kind)
        body = k.body(self) if k is not None else ""
        return f"{self.name}={body}" + (f"|{self.given}" if self.given else "")

    def describe(self) -> str:
        """One plain-English line, for reports and the UI."""
        k = KINDS.get(self.kind)
        what = k.describe(self) if k is not None else f"unknown kind '{self.kind}'"
        if self.given:
            what += f"; observed only where '{self.given}' is 1"
        return f"{self.name}: {what}"

    def __str__(self) -> str:
        return self.to_string()

    def to_original(self, values):
        """Values on the scale the task trains and is scored on (its labels, the model's predictions)
        back in the column's own units: expm1 for a ':reg:log' task, unchanged otherwise."""
        if self.transform != "log":
            return values
        return np.expm1(np.asarray(values, dtype=np.float64))


# -- label columns: how the kinds read the interactions ------------------------------------------------

def _column(ds: Dataset, task: TaskSpec) -> pd.Series:
    inter = ds.interactions
    if task.column not in inter.columns:
        avail = ", ".join(ds.label_columns()) or "(none)"
        raise DataError(
            f"Task '{task.name}' uses column '{task.column}', which the interactions table does not have.",
            fix=f"use one of: {avail}",
        )
    return inter[task.column]


def numeric_column(ds: Dataset, task: TaskSpec) -> np.ndarray:
    s = _column(ds, task)
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float).to_numpy()
    num = s  # already numbers when the loader typed the column: nothing to check or convert
    if not pd.api.types.is_numeric_dtype(s):
        num = pd.to_numeric(s, errors="coerce")
        bad = num.isna() & s.notna() & (s.astype(str).str.strip() != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"Task '{task.name}': column '{task.column}' holds a value that is not a number "
                f"('{s.iloc[row]}' at row {row + 1}).",
                fix="clean the column, or pick a numeric column for this task",
            )
    arr = num.to_numpy(dtype=float)
    if np.isinf(arr).any():
        row = int(np.flatnonzero(np.isinf(arr))[0])
        raise DataError(f"Task '{task.name}': column '{task.column}' holds an infinite value at row {row + 1}.",
                        fix="remove or fix that row")
    return arr


def binary_column(ds: Dataset, task: TaskSpec) -> np.ndarray:
    s = _column(ds, task)
    if pd.api.types.is_bool_dtype(s):
        return s.astype(float).to_numpy()
    if pd.api.types.is_numeric_dtype(s):
        arr = s.to_numpy(dtype=float)
    else:
        text = s.astype(str).str.strip().str.lower()
        arr = np.full(len(s), np.nan)
        arr[text.isin(_TRUE).to_numpy()] = 1.0
        arr[text.isin(_FALSE).to_numpy()] = 0.0
        missing = s.isna().to_numpy() | text.isin(["", "nan", "none", "null"]).to_numpy()
        bad = np.isnan(arr) & ~missing
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"Task '{task.name}': column '{task.column}' should hold 0/1, true/false or yes/no, "
                f"but row {row + 1} has '{s.iloc[row]}'.",
                fix=f"fix the value, or define a threshold task such as {task.name}={task.column}>=4",
            )
    ok = np.isnan(arr) | (arr == 0) | (arr == 1)
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise DataError(
            f"Task '{task.name}': column '{task.column}' should hold only 0 and 1, but row {row + 1} has {arr[row]:g}.",
            fix=f"use a threshold instead, e.g. {task.name}={task.column}>=1, or {task.column}:reg for regression",
        )
    return arr


class TaskKind:
    name = ""
    type = "binary"  # the loss family
    samples_negatives = False  # True: K sampled non-interactions per logged row get label 0

    def parse(self, name: str, body: str, given: str | None):
        """The TaskSpec if this kind reads `body` (the text after 'NAME='), else None."""
        raise NotImplementedError

    def body(self, t) -> str:
        """The definition text that `parse` reads back."""
        raise NotImplementedError

    def describe(self, t) -> str:
        raise NotImplementedError

    def labels(self, ds, t) -> np.ndarray:
        """One label per logged interaction (NaN = not observed)."""
        raise NotImplementedError

    def parent(self, t) -> str | None:
        """The binary task whose positives this task is observed on (its rows elsewhere are NaN)."""
        return t.given

    def check_labels(self, t, observed: np.ndarray) -> None:
        """Refuse labels nothing can be learned from (DataError); `observed` are the non-NaN labels."""
        if t.is_binary and len(np.unique(observed)) < 2:
            only = "positive" if observed[0] == 1 else "negative"
            raise DataError(
                f"Task '{t.name}' has only {only} labels, so there is nothing to learn.",
                fix=("make it implicit to sample negatives, or pick another threshold"
                     if only == "positive" else "pick another column or threshold"),
            )


MIN_RETRIEVAL_POSITIVES = 20  # an in-batch softmax needs positives to contrast, and Recall@K some to count


class Retrieval(TaskKind):
    """A two-tower retrieval task: every logged row is a positive (`NAME=retrieval`), or only the
    positives of binary task OTHER (`NAME=retrieval:OTHER`). Nothing else is observed: sampled
    negatives of an implicit task are no positives, and in-batch items are its negatives."""
    name = "retrieval"
    type = "retrieval"

    def parse(self, name, body, given):
        head, colon, other = body.partition(":")
        if head.strip() != "retrieval":
            return None
        other = other.strip()
        if given:
            raise DataError(f"Task '{name}': a retrieval task takes the positives of another task as "
                            f"'retrieval:{given}', not '|{given}'.", fix=RETRIEVAL_EXAMPLE)
        if colon and not other:
            raise DataError(f"Task '{name}': no task named after 'retrieval:'.", fix=RETRIEVAL_EXAMPLE)
        return TaskSpec(name, self.name, column=other or None)

    def body(self, t):
        return f"retrieval:{t.column}" if t.column else "retrieval"

    def describe(self, t):
        where = f"the positives of '{t.column}'" if t.column else "every logged interaction"
        return f"retrieval (two towers, in-batch softmax) of {where}"

    def labels(self, ds, t):
        return np.ones(len(ds.interactions))

    def parent(self, t):
        return t.column

    def check_labels(self, t, observed):
        n = len(observed)
        if n < MIN_RETRIEVAL_POSITIVES:
            where = f"task '{t.column}' has only {n} positive(s)" if t.column else f"the data has only {n} interaction(s)"
            raise DataError(f"Retrieval task '{t.name}' needs at least {MIN_RETRIEVAL_POSITIVES} positives, but {where}.",
                            fix="use more data" + (f", or a task with more positives than '{t.column}'" if t.column
                                                   else "") + ", or drop the retrieval task")


class Implicit(TaskKind):
    name = "implicit"
    samples_negatives = True

    def parse(self, name, body, given):
        return TaskSpec(name, self.name, given=given) if body == "implicit" else None

    def body(self, t):
        return "implicit"

    def describe(self, t):
        return "1 for every logged interaction, 0 for sampled non-interactions"

    def labels(self, ds, t):
        return np.ones(len(ds.interactions))


class Regression(TaskKind):
    """`NAME=COL:reg`, or `NAME=COL:reg:log` for a heavy-tailed column (durations, counts, prices):
    trained and scored on log(1 + value), its RMSE also reported in the column's units."""
    name = "regression"
    type = "regression"
    TRANSFORMS = ("log",)

    def parse(self, name, body, given):
        head, sep, transform = body.rpartition(":reg:")
        if sep and ":" not in transform:
            transform = transform.strip()
            if transform not in self.TRANSFORMS:
                what = f"unknown transform ':{transform}'" if transform else "no transform"
                raise DataError(f"Task '{name}': {what} after ':reg'.",
                                fix="write COL:reg, or COL:reg:log to train on log(1 + value)")
            body = head + ":reg"
        else:
            transform = None
        if not body.endswith(":reg"):
            return None
        col = body[: -len(":reg")].strip()
        if not col:
            raise DataError(f"Task '{name}': no column before ':reg'.", fix=EXAMPLE)
        return TaskSpec(name, self.name, column=col, given=given, transform=transform)

    def body(self, t):
        return f"{t.column}:reg" + (f":{t.transform}" if t.transform else "")

    def describe(self, t):
        if t.transform == "log":
            return f"regression on log(1 + {t.column})"
        return f"regression on '{t.column}'"

    def labels(self, ds, t):
        values = numeric_column(ds, t)
        if t.transform != "log":
            return values
        with np.errstate(invalid="ignore"):
            bad = values <= -1
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"Task '{t.name}': log(1 + {t.column}) needs values above -1, but row {row + 1} has {values[row]:g}.",
                fix=f"fix or remove that row, or train on the raw values with {t.name}={t.column}:reg")
        return np.log1p(values)


class Threshold(TaskKind):
    name = "threshold"

    def parse(self, name, body, given):
        for op in OPS:
            if op in body:
                col, _, value = body.partition(op)
                col, value = col.strip(), value.strip()
                try:
                    thr = float(value)
                except ValueError:
                    raise DataError(f"Task '{name}': threshold '{value}' is not a number.", fix=EXAMPLE) from None
                if not col:
                    raise DataError(f"Task '{name}': no column before '{op}'.", fix=EXAMPLE)
                return TaskSpec(name, self.name, column=col, op=op, threshold=thr, given=given)
        return None

    def body(self, t):
        v = t.threshold
        return f"{t.column}{t.op}{'' if v is None else int(v) if float(v).is_integer() else v}"

    def describe(self, t):
        return f"1 where '{t.column}' {t.op} {t.threshold:g}, else 0"

    def labels(self, ds, t):
        values = numeric_column(ds, t)
        with np.errstate(invalid="ignore"):
            res = {">=": values >= t.threshold, ">": values > t.threshold, "<=": values <= t.threshold,
                   "<": values < t.threshold, "==": values == t.threshold}[t.op].astype(float)
        res[np.isnan(values)] = np.nan
        return res


class Binary(TaskKind):
    name = "binary"

    def parse(self, name, body, given):
        if any(c in body for c in "<>=:!"):
            raise DataError(f"Task '{name}': cannot read the definition '{body}'.", fix=EXAMPLE)
        return TaskSpec(name, self.name, column=body, given=given)

    def body(self, t):
        return str(t.column)

    def describe(self, t):
        return f"binary column '{t.column}'"

    def labels(self, ds, t):
        return binary_column(ds, t)


KINDS: dict[str, TaskKind] = {k.name: k for k in (Retrieval(), Implicit(), Regression(), Threshold(), Binary())}


def kind_of(t) -> TaskKind | None:
    return KINDS.get(t.kind)
