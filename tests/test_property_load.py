"""Issue 9, property-based: random small tables either load with the counts they imply, or
raise DataError -- nothing else, and never a silently wrong count.

The tables are written with the csv module (so quoting is right by construction) with random
ids (unicode, whitespace, numbers, huge integers, `7.0`-style floats, missing and infinite
values), random extra columns holding anything printable (delimiters, quotes, newlines),
random missing values, a random delimiter, an optional header, and a random encoding or
compression. The expected ids follow the documented canonical form: stripped text, `7.0` ->
`7`, every digit of big integers kept, missing / infinite ids refused.
"""
from __future__ import annotations

import csv
import gzip
import io
import os
import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import mtrlib.data.read.loader as mio
from mtrlib.data import DataError, load

MISSING = {"", "na", "n/a", "nan", "null", "none", "#n/a", "<na>"}
INFINITE = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
INTEGRAL = re.compile(r"^([+-]?\d+)\.0*$")
EXAMPLES = int(os.environ.get("MTR_PROPERTY_EXAMPLES", "150"))  # raise it locally to hunt harder
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def canonical(cell: str) -> str | None:
    """The id `load` should produce for one cell; None = missing or infinite (a DataError)."""
    t = cell.strip()
    if t.lower() in MISSING or t.lower() in INFINITE:
        return None
    return INTEGRAL.sub(r"\1", t)


def expected(users: list[str], items: list[str]) -> tuple[int, int, int] | None:
    """(rows, users, items) the input implies, or None when it must be refused."""
    u = [canonical(x) for x in users]
    i = [canonical(x) for x in items]
    if None in u or None in i:
        return None
    if len(u) < mio.MIN_INTERACTIONS or len(set(u)) < 2 or len(set(i)) < 2:
        return None
    return len(u), len(set(u)), len(set(i))


# ---------------------------------------------------------------- strategies

printable = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn"))
text_id = st.text(st.one_of(printable, st.sampled_from(list(",;|\t\"' :\né日😀"))), min_size=1, max_size=8)
number_id = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.integers(2**62, 2**90).map(str),  # beyond int64 and float precision: every digit matters
    st.integers(-50, 50).map(lambda k: f"{k}.0"),  # the same id as k
    st.sampled_from(["2.5", "+7", "007", "1e3", "-0", "1_000"]),
)
padding = st.sampled_from(["", " ", "  ", "\t", "\u00a0", " \u3000"])
padded_id = st.builds(lambda a, x, b: a + x + b, padding, st.one_of(text_id, number_id), padding)
bad_id = st.sampled_from(["", " ", "NA", "nan", "NULL", "None", "#N/A", "inf", "-Infinity"])


def id_pool(kind: str, min_size: int = 1):
    return st.lists({"text": st.one_of(padded_id, number_id), "number": number_id}[kind],
                    min_size=min_size, max_size=6)


cell = st.one_of(st.none(), st.integers(-5, 5).map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
                 st.text(st.one_of(printable, st.sampled_from(list(",;|\t\"\n:="))), max_size=12))
number_cell = st.one_of(st.none(), st.integers(-10**6, 10**6).map(str), st.sampled_from(["1.5", "-0.25", "3e2"]))
EXTRA_NAMES = ["rating", "clicked", "note", "price", "f1", "f2", "comment", "score"]


@st.composite
def tables(draw, clean: bool = False):
    """(csv text, user cells, item cells, header?). clean: no bad ids, and enough rows, users and items."""
    header = draw(st.booleans())
    kind = "text" if header else "number"  # a headerless table is ml-100k style: numbers only
    pool = id_pool(kind, 2 if clean else 1)
    if clean:
        pool = pool.filter(lambda p: None not in (ids := {canonical(x) for x in p}) and len(ids) > 1)
    users_pool, items_pool = draw(pool), draw(pool)
    n = draw(st.integers(mio.MIN_INTERACTIONS + 1 if clean else 0, 30))
    users = [draw(st.sampled_from(users_pool)) for _ in range(n)]
    items = [draw(st.sampled_from(items_pool)) for _ in range(n)]
    if clean:  # every pool id used at least once (the rows are what the counts are about)
        users[:len(users_pool)] = users_pool
        items[:len(items_pool)] = items_pool
    elif n and header and draw(st.integers(0, 3)) == 0:  # sometimes one bad id
        col = users if draw(st.booleans()) else items
        col[draw(st.integers(0, n - 1))] = draw(bad_id)
    k = draw(st.integers(0, 3))
    names = draw(st.permutations(EXTRA_NAMES))[:k]
    extras = {c: [draw(cell if header else number_cell) for _ in range(n)] for c in names}
    columns = ["user_id", "item_id", *names]
    if header:  # ids need not come first when the header names them
        columns = draw(st.permutations(columns))
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    data = {"user_id": users, "item_id": items, **extras}
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=sep, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    if header:
        w.writerow(columns)
    for r in range(n):
        w.writerow(["" if data[c][r] is None else data[c][r] for c in columns])
    return buf.getvalue(), users, items, header


def encode(text: str, how: str) -> bytes | None:
    if how == "utf-8":
        return text.encode("utf-8")
    if how == "utf-8-sig":
        return text.encode("utf-8-sig")
    if how == "utf-16":
        return text.encode("utf-16")  # with BOM
    if how == "gzip":
        return gzip.compress(text.encode("utf-8"), mtime=0)
    raise AssertionError(how)


@pytest.fixture(autouse=True)
def _strict(monkeypatch):
    monkeypatch.setattr(mio, "_SAFETY_NET", False)  # a raw exception is a failure, not a DataError
    monkeypatch.delenv("MTR_MAX_FILE_MB", raising=False)


# ---------------------------------------------------------------- properties


@SETTINGS
@given(t=tables(), how=st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "gzip"]))
def test_random_tables_load_with_the_implied_counts_or_raise_dataerror(t, how):
    text, users, items, header = t
    want = expected(users, items)
    try:
        ds = load(encode(text, how), name="random.csv")
    except DataError as e:
        assert str(e) and "Traceback" not in str(e)
        event("DataError, as implied" if want is None else "DataError on a valid-looking table")
        if want is not None:  # refusing is allowed, but only for a reason the message gives
            assert e.fix, str(e)
        return
    assert want is not None, f"loaded a table that should have been refused: {users!r} / {items!r}"
    event("loaded")
    assert (ds.n_interactions, ds.n_users, ds.n_items) == want
    assert sorted(ds.interactions["user_id"]) == sorted(canonical(x) for x in users)
    assert sorted(ds.interactions["item_id"]) == sorted(canonical(x) for x in items)
    assert ds.interactions["user_id"].notna().all() and ds.interactions["item_id"].notna().all()


@SETTINGS
@given(t=tables(clean=True))
def test_well_formed_tables_always_load(t):
    """No missing ids and enough rows: refusing such a table would be a loader bug."""
    text, users, items, header = t
    want = expected(users, items)
    assert want is not None
    ds = load(text.encode("utf-8"), name="clean.csv")
    assert (ds.n_interactions, ds.n_users, ds.n_items) == want


frame_ids = st.one_of(st.integers(-3, 3), st.integers(2**63, 2**80), padded_id)


@SETTINGS
@given(pairs=st.lists(st.tuples(frame_ids, frame_ids), min_size=0, max_size=20), hole=st.integers(-1, 40))
def test_random_dataframes_load_with_the_implied_counts_or_raise_dataerror(pairs, hole):
    """Object columns mixing Python ints (any size) and text; sometimes one None."""
    users, items = [p[0] for p in pairs], [p[1] for p in pairs]
    if 0 <= hole < len(users):
        (users if hole % 2 else items)[hole] = None
    df = pd.DataFrame({"user": users, "item": items}, dtype=object)
    want = expected(["" if v is None else str(v) for v in users], ["" if v is None else str(v) for v in items])
    try:
        ds = load(df)
    except DataError as e:
        assert want is None, f"refused a valid frame: {e}"
        return
    assert want is not None
    assert (ds.n_interactions, ds.n_users, ds.n_items) == want
