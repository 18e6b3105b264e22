"""Tasks: named labels derived from the data, in a small text grammar.

Grammar (used by the CLI and the run store):

    NAME=COL            binary column (0/1, true/false, yes/no)
    NAME=COL>=X         threshold of a numeric column (also >, <=, <, ==)
    NAME=COL:reg        regression on a numeric column
    NAME=COL:reg:log    regression on log(1 + COL), for heavy tails (values above -1); RMSE
                        is also reported in COL's units (`rmse_orig`)
    NAME=implicit       every logged row is 1; K sampled negatives per positive
    NAME=retrieval      a two-tower retrieval task; every logged row is a positive
    NAME=retrieval:OTHER  a retrieval task on the positives of binary task OTHER
    ...|OTHER           observed only where task OTHER is 1 (ESMM's CVR given click)
"""
from __future__ import annotations

import math
import re

from ..errors import DataError
from .kinds import KINDS, OPS, TaskSpec  # noqa: F401  (OPS: the operators, re-exported; TaskSpec: its grammar's value)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,39}$")


def parse_task(text: str) -> TaskSpec:
    """Parse one task string of the grammar above; raise DataError with an example on failure."""
    example = "examples: watched=implicit, liked=rating>=4|watched, click=clicked, dwell=dwell_time:reg"
    if not isinstance(text, str) or "=" not in text:
        raise DataError(f"Task '{text}' is not of the form NAME=DEFINITION.", fix=example)
    name, _, body = text.strip().partition("=")
    name = name.strip()
    if body.startswith("="):  # "a==1" would split wrongly; a name never contains '='
        raise DataError(f"Task '{text}' has no name before '='.", fix=example)
    if not _NAME.match(name):
        raise DataError(
            f"Task name '{name}' is not allowed: use letters, digits, '_' or '-', starting with a letter.",
            fix=example,
        )
    given = None
    if "|" in body:
        body, _, given = body.rpartition("|")
        given = given.strip()
        if not _NAME.match(given):
            raise DataError(f"Task '{text}': '{given}' after '|' must be the name of another task.", fix=example)
        if given == name:
            raise DataError(f"Task '{name}' cannot be observed only where itself is 1.", fix=example)
    body = body.strip()
    if not body:
        raise DataError(f"Task '{name}' has an empty definition.", fix=example)
    for kind in KINDS.values():  # in order: the catch-all binary column last
        spec = kind.parse(name, body, given)
        if spec is not None:
            return spec
    raise DataError(f"Task '{name}': cannot read the definition '{body}'.", fix=example)  # pragma: no cover


def task_from_fields(name, kind, column=None, op=None, threshold=None, given=None) -> TaskSpec:
    """The task one row of a task editor describes (the Data page's table), blanks and all.

    Nothing is checked here, so `.to_string()` of an incomplete row is text that `parse_tasks`
    refuses with the same message the CLI gives: a blank name, column or kind stays blank, a
    threshold that is blank (None/NaN) writes nothing after the operator, and a blank operator
    means '>='. Text fields are stripped; the column is ignored by implicit and retrieval tasks (a
    retrieval task's 'observed only where' is the OTHER of 'NAME=retrieval:OTHER'). A regression
    row's operator cell holds its transform: "log" for 'COL:reg:log', blank (or any other) for none.
    """
    def text(x) -> str:
        return str(x or "").strip()

    if kind == "threshold":
        return TaskSpec(text(name), kind, text(column), str(op or "") or ">=", _number(threshold), text(given) or None)
    if kind == "retrieval":  # 'observed only where' names its OTHER task ('retrieval:OTHER'); no column
        return TaskSpec(text(name), kind, text(given) or None)
    transform = "log" if kind == "regression" and text(op) == "log" else None
    return TaskSpec(text(name), kind, None if kind == "implicit" else text(column), given=text(given) or None,
                    transform=transform)


def _number(x) -> float | None:
    """A number from an editor cell; None for a blank one (None, NaN, pandas' NA)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def parse_tasks(texts) -> list[TaskSpec]:
    """Parse several tasks and check they fit together (unique names, known 'given' tasks, binary parents)."""
    if isinstance(texts, str):
        texts = [texts]
    tasks = [t if isinstance(t, TaskSpec) else parse_task(t) for t in texts]
    if not tasks:
        raise DataError("No tasks are defined.", fix="add at least one task, e.g. watched=implicit")
    names = [t.name for t in tasks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"Task names must be unique; repeated: {', '.join(dup)}.", fix="rename one of them")
    by_name = {t.name: t for t in tasks}
    for t in tasks:
        if t.given:
            parent = by_name.get(t.given)
            if parent is None:
                raise DataError(
                    f"Task '{t.name}' is observed only where '{t.given}' is 1, but there is no task '{t.given}'.",
                    fix=f"define a binary task named '{t.given}' or remove '|{t.given}'",
                )
            if not parent.is_binary:
                raise DataError(
                    f"Task '{t.name}' depends on '{t.given}', which is a regression task.",
                    fix="condition on a binary task",
                )
    # no cycles: follow parents
    for t in tasks:
        seen, cur = set(), t
        while cur.given:
            if cur.name in seen:
                raise DataError(f"Tasks {', '.join(sorted(seen))} depend on each other in a circle.", fix="remove one '|'")
            seen.add(cur.name)
            cur = by_name[cur.given]
    if sum(t.kind == "implicit" for t in tasks) > 1:
        raise DataError("Only one task can be 'implicit'.", fix="keep one NAME=implicit task")
    _check_retrieval(tasks, by_name)
    return tasks


def _check_retrieval(tasks: list[TaskSpec], by_name: dict[str, TaskSpec]) -> None:
    """A retrieval task's OTHER is a binary task; retrieval trains beside at least one ranking task."""
    for t in tasks:
        if not t.is_retrieval or not t.column:
            continue
        other = by_name.get(t.column)
        if other is None:
            raise DataError(f"Retrieval task '{t.name}' uses the positives of '{t.column}', but there is no task "
                            f"'{t.column}'.", fix=f"define a binary task named '{t.column}', or write {t.name}=retrieval")
        if not other.is_binary:
            what = "another retrieval task" if other.is_retrieval else "a regression task: it has no positives"
            raise DataError(f"Retrieval task '{t.name}' uses the positives of '{t.column}', which is {what}.",
                            fix=f"name a binary task after 'retrieval:', or write {t.name}=retrieval to use every "
                                f"logged row")
    if tasks and all(t.is_retrieval for t in tasks):
        names = ", ".join(t.name for t in tasks)
        raise DataError(f"{names}: a retrieval task narrows the catalogue for ranking tasks, and there is none.",
                        fix="add a ranking task beside it, e.g. watched=implicit or liked=rating>=4 "
                            "(give it weight 0 for a retrieval-only model)")


def parse_task_values(text: str, what: str = "task weight", error=DataError) -> dict[str, float]:
    """'watched=1,liked=2' -> {'watched': 1.0, 'liked': 2.0}: the CLI's --weights and --fusion."""
    out: dict[str, float] = {}
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        name, eq, val = part.partition("=")
        try:
            if not eq or not name.strip():
                raise ValueError
            value = float(val)
        except ValueError:
            raise error(f"Cannot read the {what} '{part}'.",
                        fix="write TASK=WEIGHT pairs, e.g. watched=1,liked=2") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise error(f"The {what} for '{name.strip()}' must be a finite number.", fix="e.g. 1")
        out[name.strip()] = value
    return out
