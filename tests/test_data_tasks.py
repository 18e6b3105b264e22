"""The task grammar: NAME=COL, NAME=COL>=X, NAME=COL:reg, NAME=implicit, ...|OTHER."""
from __future__ import annotations

import pandas as pd
import pytest

from mtrlib.data import DataError, TaskSpec, parse_task, parse_tasks, task_from_fields


@pytest.mark.parametrize("text,kind,column,op,threshold,given", [
    ("click=clicked", "binary", "clicked", None, None, None),
    ("liked=rating>=4", "threshold", "rating", ">=", 4.0, None),
    ("hi=rating>4.5", "threshold", "rating", ">", 4.5, None),
    ("lo=rating<=2", "threshold", "rating", "<=", 2.0, None),
    ("neg=score<-0.5", "threshold", "score", "<", -0.5, None),
    ("five=rating==5", "threshold", "rating", "==", 5.0, None),
    ("dwell=dwell_time:reg", "regression", "dwell_time", None, None, None),
    ("watched=implicit", "implicit", None, None, None, None),
    ("liked=rating>=4|watched", "threshold", "rating", ">=", 4.0, "watched"),
    ("cvr=converted|click", "binary", "converted", None, None, "click"),
    ("d=dwell:reg|click", "regression", "dwell", None, None, "click"),
    (" spaced = rating >= 4 ", "threshold", "rating", ">=", 4.0, None),
    ("my-task_2=col", "binary", "col", None, None, None),
])
def test_parse(text, kind, column, op, threshold, given):
    t = parse_task(text)
    assert (t.kind, t.column, t.op, t.threshold, t.given) == (kind, column, op, threshold, given)
    assert t.type == ("regression" if kind == "regression" else "binary")


@pytest.mark.parametrize("text", [
    "click=clicked", "liked=rating>=4", "hi=rating>4.5", "d=dwell:reg|click", "watched=implicit",
    "liked=rating>=4|watched", "five=rating==5", "neg=score<-0.5",
])
def test_round_trip(text):
    t = parse_task(text)
    assert parse_task(t.to_string()) == t
    assert str(t) == t.to_string()
    assert t.name in t.describe()


def test_to_string_is_canonical():
    assert parse_task(" liked = rating >= 4.0 ").to_string() == "liked=rating>=4"
    assert TaskSpec("x", "threshold", column="r", op=">", threshold=3.5).to_string() == "x=r>3.5"


@pytest.mark.parametrize("text,fragment", [
    ("clicked", "NAME=DEFINITION"),
    ("=rating>=4", "not allowed"),
    ("a==1", "no name"),
    ("1abc=x", "not allowed"),
    ("na me=x", "not allowed"),
    ("liked=", "empty definition"),
    ("liked=rating>=high", "'high' is not a number"),
    ("liked=>=4", "no column before '>='"),
    ("d=:reg", "no column before ':reg'"),
    ("a=b|a", "only where itself"),
    ("a=b|", "must be the name of another task"),
    ("a=rating!4", "cannot read the definition"),
    (None, "NAME=DEFINITION"),
])
def test_parse_errors(text, fragment):
    with pytest.raises(DataError) as e:
        parse_task(text)
    assert fragment in str(e.value)
    assert "example" in str(e.value)  # every grammar error shows examples


def test_parse_tasks_checks_the_set():
    tasks = parse_tasks(["watched=implicit", "liked=rating>=4|watched"])
    assert [t.name for t in tasks] == ["watched", "liked"]
    assert parse_tasks("click=click")[0].kind == "binary"
    for texts, fragment in [
        ([], "No tasks"),
        (["a=x", "a=y"], "unique"),
        (["a=x|b"], "no task 'b'"),
        (["a=x|b", "b=y:reg"], "regression task"),
        (["a=x|b", "b=y|a"], "circle"),
        (["a=implicit", "b=implicit"], "Only one task"),
    ]:
        with pytest.raises(DataError) as e:
            parse_tasks(texts)
        assert fragment in str(e.value), (texts, str(e.value))


def test_parse_tasks_accepts_specs():
    t = parse_task("click=click")
    assert parse_tasks([t, "like=like|click"])[0] is t


# ---------------------------------------------------------------- the task editor's rows


@pytest.mark.parametrize("text", [
    "click=clicked", "liked=rating>=4", "hi=rating>4.5", "d=dwell:reg|click", "watched=implicit",
    "liked=rating>=4|watched", "five=rating==5", "neg=score<-0.5", "big=views>=1234567", "pi=x<3.14159265",
])
def test_task_from_fields_rebuilds_every_parsed_task(text):
    t = parse_task(text)
    row = task_from_fields(t.name, t.kind, t.column, t.op, t.threshold, t.given)
    assert row == t and row.to_string() == t.to_string()


def test_task_from_fields_reads_editor_cells():
    nan = float("nan")
    assert task_from_fields(" liked ", "threshold", " rating ", None, 4.0, " ").to_string() == "liked=rating>=4"
    assert task_from_fields("w", "implicit", "rating", "", nan, None) == parse_task("w=implicit")
    assert task_from_fields("d", "regression", "dwell", None, nan, "click").to_string() == "d=dwell:reg|click"
    assert task_from_fields("c", "binary", "clicked", None, None, None).to_string() == "c=clicked"


@pytest.mark.parametrize("fields,fragment", [
    (("liked", "threshold", "rating", ">=", float("nan"), None), "threshold '' is not a number"),
    (("liked", "threshold", "rating", None, pd.NA, None), "threshold '' is not a number"),
    (("liked", "threshold", None, ">", 4, None), "no column before '>'"),
    (("click", "binary", None, None, None, None), "empty definition"),
    (("dwell", "regression", "  ", None, None, None), "no column before ':reg'"),
    (("what", None, "rating", None, None, None), "empty definition"),
    (("1st", "binary", "clicked", None, None, None), "not allowed"),
])
def test_an_incomplete_row_gives_text_that_parse_tasks_refuses(fields, fragment):
    text = task_from_fields(*fields).to_string()
    with pytest.raises(DataError) as e:
        parse_tasks([text])
    assert fragment in str(e.value), (text, str(e.value))
