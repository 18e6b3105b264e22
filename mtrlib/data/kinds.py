"""Task kinds: one small class each, owning its piece of the task grammar, its text, its
plain-words description and how its labels are made from the interactions.

`KINDS` is tried in order by `parse_task` (the first kind that reads the definition wins, so
the catch-all binary column comes last). A kind's `type` is its loss family, which models and
metrics act on: "binary" (BCE, AUC), "regression" (MSE, RMSE) or "retrieval" (a two-tower
in-batch softmax, Recall@K; mtrlib.models.retrieval). To add a kind: a class here with `name`,
`type`, `parse`, `body`, `describe` and `labels`, and an entry in `KINDS`.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError

OPS = (">=", "<=", "==", ">", "<")
EXAMPLE = "examples: watched=implicit, liked=rating>=4|watched, click=clicked, dwell=dwell_time:reg"
RETRIEVAL_EXAMPLE = "e.g. r=retrieval (every logged row is a positive) or r=retrieval:liked (the positives of task liked)"


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
        from .tasks import TaskSpec
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
        from .tasks import TaskSpec
        return TaskSpec(name, self.name, given=given) if body == "implicit" else None

    def body(self, t):
        return "implicit"

    def describe(self, t):
        return "1 for every logged interaction, 0 for sampled non-interactions"

    def labels(self, ds, t):
        return np.ones(len(ds.interactions))


class Regression(TaskKind):
    name = "regression"
    type = "regression"

    def parse(self, name, body, given):
        from .tasks import TaskSpec
        if not body.endswith(":reg"):
            return None
        col = body[: -len(":reg")].strip()
        if not col:
            raise DataError(f"Task '{name}': no column before ':reg'.", fix=EXAMPLE)
        return TaskSpec(name, self.name, column=col, given=given)

    def body(self, t):
        return f"{t.column}:reg"

    def describe(self, t):
        return f"regression on '{t.column}'"

    def labels(self, ds, t):
        from .examples import numeric_column
        return numeric_column(ds, t)


class Threshold(TaskKind):
    name = "threshold"

    def parse(self, name, body, given):
        from .tasks import TaskSpec
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
        from .examples import numeric_column
        values = numeric_column(ds, t)
        with np.errstate(invalid="ignore"):
            res = {">=": values >= t.threshold, ">": values > t.threshold, "<=": values <= t.threshold,
                   "<": values < t.threshold, "==": values == t.threshold}[t.op].astype(float)
        res[np.isnan(values)] = np.nan
        return res


class Binary(TaskKind):
    name = "binary"

    def parse(self, name, body, given):
        from .tasks import TaskSpec
        if any(c in body for c in "<>=:!"):
            raise DataError(f"Task '{name}': cannot read the definition '{body}'.", fix=EXAMPLE)
        return TaskSpec(name, self.name, column=body, given=given)

    def body(self, t):
        return str(t.column)

    def describe(self, t):
        return f"binary column '{t.column}'"

    def labels(self, ds, t):
        from .examples import binary_column
        return binary_column(ds, t)


KINDS: dict[str, TaskKind] = {k.name: k for k in (Retrieval(), Implicit(), Regression(), Threshold(), Binary())}


def kind_of(t) -> TaskKind | None:
    return KINDS.get(t.kind)
