"""Issue 9, bad input: a corpus of malformed and hostile inputs, every one built here.

Each input either loads into a dataset whose counts are right (and whose ids are the
canonical ones), or raises `DataError` whose message says what is wrong (asserted by
substring) -- never any other exception. The loader's last-resort handler is switched off,
so a raw pandas/numpy error fails the test as the bug it is instead of being wrapped.
A representative subset also goes through `python -m mtrlib inspect` in subprocesses:
exit status 2, the message on stderr, no traceback, and bounded memory for the gzip bomb.
"""
from __future__ import annotations

import bz2
import gzip
import io
import os
import random
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from _files import parquet, zipped
import mtrlib.data.read.loader as mio
from mtrlib.data import DataError, Dataset, build_examples, load
from mtrlib.safe import escape_frame, safe_csv

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _strict(monkeypatch):
    monkeypatch.setattr(mio, "_SAFETY_NET", False)
    monkeypatch.delenv("MTR_MAX_FILE_MB", raising=False)


class Upload(io.BytesIO):
    """What st.file_uploader hands over: bytes with a .name that is never used as a path."""

    def __init__(self, data: bytes, name: str = "upload.csv"):
        super().__init__(data)
        self.name = name


# ---------------------------------------------------------------- builders (all cheap)


def rows(n: int, users: int = 4, items: int = 5, sep: str = ",", header: str | None = "user,item,rating") -> str:
    """n interactions over `users` users and `items` items (every one used when n >= both)."""
    body = "".join(f"u{i % users}{sep}i{i % items}{sep}{i % 5 + 1}\n" for i in range(n))
    return (header.replace(",", sep) + "\n" if header else "") + body


GOOD = rows(20).encode()  # 20 rows, 4 users, 5 items


def two_col(ids: list[tuple[str, str]], header: str = "user,item") -> bytes:
    return (header + "\n" + "".join(f"{u},{i}\n" for u, i in ids)).encode()


def labelled(values: list[str]) -> bytes:
    """user,item,click with the given label values (one row each; 4 users, 5 items)."""
    return ("user,item,click\n" + "".join(f"u{k % 4},i{k % 5},{v}\n" for k, v in enumerate(values))).encode()


def gzip_bomb(unpacked_mib: int = 1024) -> bytes:
    """A gzip stream of `unpacked_mib` MiB of zeros in about 1 MB: one 16 MiB member, repeated.

    Concatenated members are one valid gzip file (RFC 1952), so the bytes cost milliseconds.
    """
    member = gzip.compress(b"0" * (16 << 20), compresslevel=9)
    return member * (unpacked_mib // 16)


def xlsx_bytes() -> bytes:
    """The skeleton of an Office Open XML workbook (what Excel writes), no library needed."""
    return zipped({"[Content_Types].xml": b'<?xml version="1.0"?><Types/>', "_rels/.rels": b"<Relationships/>",
                   "xl/workbook.xml": b"<workbook/>", "xl/worksheets/sheet1.xml": b"<worksheet/>"})


FORMULA = "=cmd|' /C calc'!A0"


# ---------------------------------------------------------------- checks on loaded datasets


def ids_are(users: list[str] | None = None, items: list[str] | None = None):
    def check(ds: Dataset):
        if users is not None:
            assert sorted(ds.users.index) == sorted(users)
        if items is not None:
            assert sorted(ds.items.index) == sorted(items)
    return check


def column_is(col: str, first: str):
    def check(ds: Dataset):
        assert ds.interactions[col].iloc[0] == first, repr(ds.interactions[col].iloc[0])
    return check


def has_note(part: str):
    def check(ds: Dataset):
        assert any(part in n for n in ds.notes), ds.notes
    return check


def all_of(*checks):
    def check(ds: Dataset):
        for c in checks:
            c(ds)
    return check


def positive_rate(task: str, rate: float):
    def check(ex):
        assert ex.balance()[task]["positive_rate"] == pytest.approx(rate)
    return check


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    id: str
    source: Callable  # tmp_path -> anything `load` accepts
    loads: tuple[int, int, int] | None = None  # (rows, users, items) when the input must load
    error: tuple[str, ...] = ()  # substrings of the DataError message when it must fail
    check: Callable | None = None  # extra checks on the loaded dataset
    items: Callable | None = None
    users: Callable | None = None
    cap_mb: float | None = None  # MTR_MAX_FILE_MB for this case
    task: str | None = None  # a task built on the loaded data with build_examples
    task_error: tuple[str, ...] = ()
    task_check: Callable | None = None

    @property
    def outcome(self) -> str:
        if self.task:
            return "task: DataError" if self.task_error else "task: OK"
        return "loads" if self.loads else "DataError"


def up(data, name: str = "upload.csv"):
    return lambda tmp: Upload(data() if callable(data) else data, name)


def at(files: dict[str, bytes] | None = None, name: str = "ratings.csv"):
    """A real path: one file (bytes) or a folder (dict of files) under tmp_path."""
    def make(tmp: Path):
        if isinstance(files, dict):
            d = tmp / "folder"
            d.mkdir()
            for k, v in files.items():
                (d / k).write_bytes(v)
            return d
        p = tmp / name
        p.write_bytes(files() if callable(files) else files)
        return p
    return make


QUOTED_NL = ("user,item,review\n" + "".join(f'u{k % 3},i{k % 4},"first line\nsecond, ""quoted"" line"\n'
                                            for k in range(8))).encode()
LATIN1 = ("user,item,title\n" + "".join(f"u{k % 3},i{k % 4},Café crème n°{k}\n" for k in range(8))).encode("latin-1")
UTF16_TEXT = rows(20)
LONG_CELL = 3 * 1024 * 1024

CASES = [
    # --- truncated files
    Case("truncated mid-row", up(GOOD[:-5]), error=("Line 21 has 2 field(s)", "header has 3")),
    Case("truncated mid-quote", up(b'user,item,title\n' + b'u1,i1,"fine"\n' * 6 + b'u2,i2,"half a ti'),
         error=("quote mark", "line 8", "never closed")),
    Case("truncated gzip", up(gzip.compress(GOOD)[:-30], "ratings.csv.gz"), error=("gzip archive is damaged",)),
    Case("truncated zip", up(zipped({"ratings.csv": GOOD})[:70], "ratings.zip"), error=("zip archive is damaged",)),
    Case("truncated parquet", up(parquet(pd.DataFrame({"user": [1, 2, 3, 4, 5], "item": [1, 2, 3, 4, 5]}))[:300],
                                 "r.parquet"), error=("Parquet file is damaged",)),
    Case("truncated utf-16 (odd byte)", up(b"\xff\xfe" + UTF16_TEXT.encode("utf-16-le")[:-1]),
         error=("UTF-16", "damaged")),
    # --- delimiters
    Case("semicolons in a .csv", up(rows(20, sep=";").encode()), loads=(20, 4, 5)),
    Case("tabs in a .csv", up(rows(20, sep="\t").encode()), loads=(20, 4, 5)),
    Case("pipes in a .csv", up(rows(20, sep="|").encode()), loads=(20, 4, 5)),
    Case("unsupported delimiter (colon)", up(rows(20, sep=":").encode()),
         error=("only one column", "separated by something other")),
    Case("space separated", up(rows(20, sep=" ").encode()), error=("only one column", "'user item rating'")),
    Case("mixed delimiters (comma header, semicolon rows)",
         up(b"user,item,rating\n" + rows(20, sep=";", header=None).encode()),
         error=("Line 2 has 1 field(s)", "split on commas", "semicolons instead")),
    Case("mixed delimiters (one tab row late)", up(GOOD + b"u1\ti2\t3\n" + rows(6, header=None).encode()),
         error=("Line 22", "tabs instead")),
    Case("excel sep= hint line", up(b"sep=;\n" + rows(20, sep=";").encode()), loads=(20, 4, 5),
         check=has_note("sep=;")),
    Case("comment line above header", up(b"# exported from the shop, 2024\n" + GOOD),
         error=("first line ('# exported from the shop, 2024') has 2 fields but every line below it has 3",
                "title or a comment")),
    Case("ragged rows (extra field)", up(GOOD + b"u1,i1,3,extra\n"), error=("Line 22 has 4 field(s)",)),
    # --- quoting and line ends
    Case("quoted newlines", up(QUOTED_NL), loads=(8, 3, 4),
         check=column_is("review", 'first line\nsecond, "quoted" line')),
    Case("quoted ids holding the delimiter", up(b"user,item\n" + b"".join(b'"u,%d","i;%d"\n' % (k % 3, k % 4)
                                                                           for k in range(8))),
         loads=(8, 3, 4), check=ids_are(["u,0", "u,1", "u,2"])),
    Case("CRLF line ends", up(GOOD.replace(b"\n", b"\r\n")), loads=(20, 4, 5)),
    Case("old-Mac CR line ends", up(GOOD.replace(b"\n", b"\r")), loads=(20, 4, 5)),
    Case("blank lines everywhere", up(b"\n\n" + GOOD.replace(b"\n", b"\n\n") + b"   \n"), loads=(20, 4, 5)),
    # --- encodings
    Case("utf-8 BOM", up(b"\xef\xbb\xbf" + GOOD), loads=(20, 4, 5),
         check=lambda ds: ds.interactions.columns[0] == "user_id"),
    Case("utf-16 LE with BOM", up(b"\xff\xfe" + UTF16_TEXT.encode("utf-16-le")), loads=(20, 4, 5),
         check=ids_are([f"u{k}" for k in range(4)])),
    Case("utf-16 BE with BOM", up(b"\xfe\xff" + UTF16_TEXT.encode("utf-16-be")), loads=(20, 4, 5),
         check=ids_are([f"u{k}" for k in range(4)])),
    Case("utf-16 LE without BOM", up(UTF16_TEXT.encode("utf-16-le")), loads=(20, 4, 5)),
    Case("utf-32 with BOM", up(UTF16_TEXT.encode("utf-32")), loads=(20, 4, 5)),
    Case("latin-1 text", up(LATIN1), loads=(8, 3, 4),
         check=all_of(column_is("title", "Café crème n°0"), has_note("Latin-1"))),
    Case("cp1252 smart quotes (neither utf-8 nor latin-1)",
         up(("user,item,t\n" + "".join(f"u{k % 3},i{k % 4},\u201cq\u201d\n" for k in range(8))).encode("cp1252")),
         error=("not UTF-8", "not Latin-1 either", "CSV UTF-8")),
    # --- shape
    Case("empty file", up(b""), error=("The file is empty",)),
    Case("whitespace only", up(b" \n\t\n  \r\n\n"), error=("The file is empty",)),
    Case("one column", up(b"user\n" + b"".join(b"u%d\n" % k for k in range(10))),
         error=("only one column ('user')", "at least a user column and an item column")),
    Case("header only", up(b"user,item,rating\n"), error=("header row but no data rows",)),
    Case("header and one row", up(b"user,item,rating\nu1,i1,5\n"),
         error=("only 1 interaction row", "at least 5")),
    Case("10^6 columns", up(lambda: b"c," * (10**6 - 1) + b"c\n1,2\n"),
         error=("1,000,000 columns", "at most 1,000")),
    Case("10^6 columns below a blank line", up(lambda: b"\n" + b"c," * (10**6 - 1) + b"c\n1,2\n"),
         error=("1,000,000 columns",)),
    Case("10^6 fields on a later line", up(lambda: GOOD + b"x," * 10**6 + b"\n"),
         error=("Line 22 has 1,000,001 field(s)", "header has 3")),
    Case("very long line (3 MB cell)", up(lambda: b"user,item,text\n" + b"".join(
        b"u%d,i%d,%s\n" % (k % 3, k % 4, b"y" * LONG_CELL if k == 4 else b"short") for k in range(8))),
         loads=(8, 3, 4), check=lambda ds: len(ds.interactions["text"].iloc[4]) == LONG_CELL),
    Case("one endless line", up(lambda: b"x" * (3 * 1024 * 1024)), error=("first line is 3.1 MB", "no line break")),
    Case("duplicate column names", up(b"user,item,item\n" + b"u1,i1,i2\n" * 6),
         error=("column name 'item' appears twice", "columns 2 and 3")),
    Case("no user-like column", up(b"a,b,c\n" + b"1,2,3\n" * 8),
         error=("Could not find a user column", "'a', 'b', 'c'")),
    Case("single user", up(two_col([("u1", f"i{k}") for k in range(8)])), error=("same user", "at least 2 users")),
    # --- ids
    Case("NaN user id", up(two_col([("u1", "i1"), ("NaN", "i2")] + [(f"u{k}", f"i{k}") for k in range(5)])),
         error=("'user' (the user id) has no value", "data row 2 (line 3 of the file)", "a user id")),
    Case("empty item id", up(two_col([("u1", "i1"), ("u2", "i2"), ("u3", " ")] + [(f"u{k}", "i1") for k in range(4)])),
         error=("'item' (the item id) has no value", "data row 3", "an item id")),
    Case("inf id", up(two_col([("u1", "i1"), ("inf", "i2")] + [(f"u{k}", f"i{k}") for k in range(5)])),
         error=("holds an infinite number", "data row 2")),
    Case("-inf id", up(two_col([("u1", "-inf")] + [(f"u{k}", f"i{k}") for k in range(5)])),
         error=("holds an infinite number", "data row 1")),
    Case("negative ids", up(two_col([(f"-{k % 3 + 1}", f"-{k % 4 + 10}") for k in range(8)])),
         loads=(8, 3, 4), check=ids_are(["-1", "-2", "-3"], ["-10", "-11", "-12", "-13"])),
    Case("huge ids (2**80)", up(two_col([(str(2**80 + k % 3), str(2**80 + k % 4)) for k in range(8)])),
         loads=(8, 3, 4), check=ids_are([str(2**80 + k) for k in range(3)])),
    Case("float ids (3.0 is 3, 2.5 stays)", up(two_col([("3.0", "2.5"), ("3", "2.5"), ("4.00", "7"), ("4", "7.0"),
                                                        ("5", "2.5")])),
         loads=(5, 3, 2), check=ids_are(["3", "4", "5"], ["2.5", "7"])),
    Case("whitespace around ids", up(two_col([("  u1 ", "i1"), ("u1", " i1"), ("\tu2", "i2\t"), ("u2", "i2"),
                                              ("\u00a0u3\u00a0", "i3")])),
         loads=(5, 3, 3), check=ids_are(["u1", "u2", "u3"])),
    Case("unicode ids", up(two_col([(f"用户{k % 3}", f"🎬 {k % 4}") for k in range(8)])), loads=(8, 3, 4),
         check=ids_are(items=[f"🎬 {k}" for k in range(4)])),
    Case("DataFrame: NaN float id", lambda tmp: pd.DataFrame({"user": [1.0, np.nan, 3, 4, 5], "item": [1, 2, 3, 4, 5]}),
         error=("has no value on data row 2.", "a user id")),
    Case("DataFrame: huge python ints", lambda tmp: pd.DataFrame({"user": [2**80, 2**80 + 1, 2**80, 7, 7],
                                                                  "item": [1, 2, 3, 4, 5]}, dtype=object),
         loads=(5, 3, 5), check=ids_are([str(2**80), str(2**80 + 1), "7"])),
    Case("duplicate rows", up(b"user,item,rating\n" + b"u1,i1,5\nu2,i2,3\n" * 5), loads=(10, 2, 2),
         check=has_note("exact repeats")),
    # --- labels, through build_examples with a task
    Case("binary label 2", up(labelled(["0", "1", "2", "1", "0", "1"])), task="clicked=click",
         task_error=("should hold only 0 and 1", "row 3 has 2", "click>=1")),
    Case("binary label -1", up(labelled(["0", "1", "-1", "1", "0", "1"])), task="clicked=click",
         task_error=("should hold only 0 and 1", "row 3 has -1")),
    Case("binary label yes/no (accepted)", up(labelled(["no", "yes", "YES", "no", "1", "0"])), task="clicked=click",
         task_check=positive_rate("clicked", 0.5)),
    Case("label 'yes' in a threshold task", up(labelled(["1", "2", "yes", "4", "5", "3"])), task="high=click>=4",
         task_error=("not a number", "'yes' at row 3")),
    Case("label 'maybe' in a binary task", up(labelled(["0", "1", "maybe", "1", "0", "1"])), task="clicked=click",
         task_error=("should hold 0/1, true/false or yes/no", "row 3 has 'maybe'")),
    Case("all-positive labels", up(labelled(["1"] * 10)), task="clicked=click",
         task_error=("only positive labels", "nothing to learn")),
    Case("all-negative labels", up(labelled(["0"] * 10)), task="clicked=click",
         task_error=("only negative labels",)),
    Case("infinite regression label", up(labelled(["1.5", "2", "inf", "3", "4", "5"])), task="dwell=click:reg",
         task_error=("infinite value at row 3",)),
    Case("task on a missing column", up(GOOD), task="liked=stars>=4",
         task_error=("uses column 'stars'", "use one of: rating")),
    # --- archives and files that are not tables
    Case("gzip bomb (1 GiB of zeros, cap 4 MB)", up(gzip_bomb, "ratings.csv.gz"), cap_mb=4,
         error=("unpacks to more than 4 MB", "MTR_MAX_FILE_MB")),
    Case("zip bomb member", up(lambda: zipped({"r.csv": b"0" * (24 << 20)}), "r.zip"), cap_mb=4,
         error=("unpacks to more than 4 MB",)),
    Case("gzip in gzip in gzip", up(gzip.compress(gzip.compress(gzip.compress(GOOD)))),
         error=("compressed several times over",)),
    Case("gzip holding a PNG", up(gzip.compress(b"\x89PNG\r\n\x1a\n" + bytes(64)), "r.csv.gz"), error=("PNG image",)),
    Case("bz2 (accepted)", up(bz2.compress(GOOD), "r.csv.bz2"), loads=(20, 4, 5)),
    Case("parquet with a list column", up(parquet(pd.DataFrame({"user": [1, 2, 3, 4, 5], "item": [1, 2, 3, 4, 5],
                                                                "tags": [["a"], ["b", "c"], [], ["d"], ["e"]]})),
                                          "r.parquet"),
         error=("'tags'", "nested values")),
    Case("parquet with a struct column", up(parquet(pd.DataFrame({"user": [1, 2], "item": [1, 2],
                                                                  "meta": [{"a": 1}, {"a": 2}]})), "r.parquet"),
         error=("'meta'", "nested values")),
    Case("JSON renamed .csv", up(b'[{"user": 1, "item": 2},\n {"user": 2, "item": 3}]'), error=("This is JSON",)),
    Case("HTML renamed .csv", up(b"<!DOCTYPE html>\n<html><head><title>ratings</title></head><body>"
                                 b"<table><tr><td>user</td><td>item</td></tr></table></body></html>"),
         error=("web page (HTML)",)),
    Case("PNG renamed .csv", up(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)), error=("This is a PNG image",)),
    Case("PDF renamed .csv", up(b"%PDF-1.7\n1 0 obj\n<< >>\nendobj\n"), error=("PDF document",)),
    Case("xlsx renamed .csv", up(xlsx_bytes()), error=("Excel workbook", "save the sheet as 'CSV UTF-8'")),
    Case("old .xls renamed .csv", up(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)), error=("old-style Excel",)),
    Case("binary garbage", up(random.Random(9).randbytes(8192)), error=("upload.csv:", "NUL bytes")),
    Case("NUL bytes inside text", up(GOOD[:40] + b"\x00\x00" + GOOD[40:]), error=("NUL bytes", "first on line 4")),
    Case("control characters", up(b"user,item\n" + bytes(range(1, 9)) * 50 + b"\n"), error=("control characters",)),
    # --- formula-looking cells: plain text on the way in (escaped on the way out, see below)
    Case("formula cells", up(("user,item,note\n" + "".join(f"u{k % 3},i{k % 4},{FORMULA}\n" for k in range(8)))
                             .encode()), loads=(8, 3, 4), check=column_is("note", FORMULA)),
    Case("formula ids", up(two_col([(f"=1+{k % 3}", f"@SUM(A{k % 4})") for k in range(8)])), loads=(8, 3, 4),
         check=ids_are(["=1+0", "=1+1", "=1+2"])),
    # --- size cap
    Case("file over the size cap (upload)", up(lambda: rows(100_000).encode()), cap_mb=0.5,
         error=("The file is 0.8 MB (800,017 bytes), over the 0.5 MB limit", "MTR_MAX_FILE_MB")),
    Case("file over the size cap (path)", at(lambda: rows(100_000).encode()), cap_mb=0.5,
         error=("ratings.csv", "over the 0.5 MB limit")),
    # --- side tables
    Case("items with duplicate ids", up(GOOD), items=up(b"item,genre\ni0,a\ni1,b\ni1,c\ni2,d\n", "items.csv"),
         error=("items.csv", "item id 'i1' appears on more than one row", "data rows 2, 3")),
    Case("users with duplicate ids", up(GOOD), users=up(b"user,age\nu0,20\nu0,30\nu1,40\n", "users.csv"),
         error=("users.csv", "user id 'u0' appears on more than one row")),
    Case("items whose ids match nothing", up(GOOD), items=up(b"item,genre\nx0,a\nx1,b\nx2,c\n", "items.csv"),
         error=("None of the 3 item ids", "'x0'", "'i0'")),
    Case("users whose ids match nothing", up(GOOD), users=up(b"user,age\nz0,1\nz1,2\n", "users.csv"),
         error=("None of the 2 user ids",)),
    Case("items covering only some ids", up(GOOD), items=up(b"item,genre\ni0,a\ni1,b\ni9,c\n", "items.csv"),
         loads=(20, 4, 6), check=has_note("3 items in the interactions are missing from items.csv")),
    Case("items file is a PNG", up(GOOD), items=up(b"\x89PNG\r\n\x1a\n" + bytes(64), "items.csv"),
         error=("items.csv", "PNG image")),
    Case("items header only", up(GOOD), items=up(b"item,genre\n", "items.csv"),
         error=("items.csv", "header row but no data rows")),
    # --- folders, paths, names
    Case("folder with no known files", at({"notes.txt": b"hello", "picture.png": b"\x89PNG"}),
         error=("holds no set of files that is recognised", "notes.txt, picture.png")),
    Case("zip of unknown files", up(zipped({"a.txt": b"x", "b.txt": b"y"}), "bundle.zip"),
         error=("holds no set of files that is recognised", "a.txt, b.txt")),
    Case("path that does not exist", lambda tmp: tmp / "nope" / "ratings.csv", error=("File not found",)),
    Case("upload named like a path", up(GOOD, "../../../etc/passwd"), loads=(20, 4, 5),
         check=lambda ds: ds.name == "passwd"),
    Case("zip member named like a path", up(zipped({"../../evil.csv": GOOD}), "r.zip"), loads=(20, 4, 5)),
]

IDS = [c.id for c in CASES]
assert len(CASES) >= 40 and len(set(IDS)) == len(IDS)


def _src(make, tmp):
    return None if make is None else make(tmp)


def _load(case: Case, tmp: Path):
    return load(case.source(tmp), items=_src(case.items, tmp), users=_src(case.users, tmp))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_corpus(case: Case, tmp_path, monkeypatch):
    if case.cap_mb is not None:
        monkeypatch.setenv("MTR_MAX_FILE_MB", str(case.cap_mb))
    if case.error:
        with pytest.raises(DataError) as e:
            _load(case, tmp_path)
        msg = str(e.value)
        for part in case.error:
            assert part in msg, (part, msg)
        assert e.value.fix, "every DataError says what to do"
        assert "Traceback" not in msg and "pandas" not in msg.lower() and "Error:" not in msg
        return
    ds = _load(case, tmp_path)
    if case.loads is not None:
        assert (ds.n_interactions, ds.n_users, ds.n_items) == case.loads
        assert ds.interactions["user_id"].nunique() <= ds.n_users
        assert set(ds.interactions["item_id"]) <= set(ds.items.index)
    if case.check is not None:
        assert case.check(ds) is not False
    if case.task is not None:
        if case.task_error:
            with pytest.raises(DataError) as e:
                build_examples(ds, [case.task])
            for part in case.task_error:
                assert part in str(e.value), (part, str(e.value))
            assert e.value.fix
        else:
            ex = build_examples(ds, [case.task])
            case.task_check(ex)


def test_corpus_size_and_outcomes():
    kinds = {c.outcome for c in CASES}
    assert kinds == {"loads", "DataError", "task: DataError", "task: OK"}
    assert sum(c.outcome == "DataError" for c in CASES) >= 40


def test_safety_net_turns_any_unexpected_error_into_dataerror(monkeypatch):
    """Production keeps the net on: even a bug deep inside reading shows up as a DataError."""
    monkeypatch.setattr(mio, "_SAFETY_NET", True)

    def boom(*a, **k):
        raise KeyError("internal")
    monkeypatch.setattr(mio, "_map_interactions", boom)
    with pytest.raises(DataError, match="could not be read"):
        load(GOOD)


# ---------------------------------------------------------------- the bomb: fast, and no memory blow-up


def test_gzip_bomb_fails_fast_without_eating_memory(monkeypatch):
    monkeypatch.setenv("MTR_MAX_FILE_MB", "4")
    bomb = gzip_bomb(1024)
    assert len(bomb) < 2 * 1024 * 1024  # ~1 MB on disk, 1 GiB unpacked
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    t0 = time.perf_counter()
    with pytest.raises(DataError, match="unpacks to more than 4 MB"):
        load(Upload(bomb, "ratings.csv.gz"))
    elapsed = time.perf_counter() - t0
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert elapsed < 5, elapsed  # stops after the cap, does not unpack 1 GiB
    assert grown_mb < 200, grown_mb  # the peak did not grow by anything like the unpacked size


# ---------------------------------------------------------------- formula cells escaped on export


def test_formula_cells_load_as_text_and_are_escaped_on_export():
    data = ("user,item,note,score\n" + "".join(  # note varies within every user and item: stays an event column
        f"{'=HYPERLINK(1)' if k == 0 else f'u{k % 3}'},i{k % 5},{FORMULA if k % 2 else '+1-2'},{-k}\n"
        for k in range(12))).encode()
    ds = load(Upload(data))
    inter = ds.interactions
    assert inter["note"].iloc[1] == FORMULA and inter["note"].iloc[0] == "+1-2"
    assert inter["user_id"].iloc[0] == "=HYPERLINK(1)"
    assert pd.api.types.is_numeric_dtype(inter["score"])

    esc = escape_frame(inter)
    assert esc["note"].iloc[1] == "'" + FORMULA and esc["note"].iloc[0] == "'+1-2"
    assert esc["user_id"].iloc[0] == "'=HYPERLINK(1)"
    assert esc["score"].tolist() == inter["score"].tolist(), "numbers are not text, so not escaped"
    assert inter["note"].iloc[1] == FORMULA, "escaping works on a copy"

    text = safe_csv(inter)
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    for col in ("user_id", "note"):
        assert not back[col].str.match(r"[=+@\t\r]").any(), back[col].tolist()
    assert (back["note"] == "'" + FORMULA).sum() == 6
    items = escape_frame(ds.items.assign(title=["=1+1", "@x", "plain", "-3", "\tx"]))
    assert items["title"].tolist() == ["'=1+1", "'@x", "plain", "'-3", "'\tx"]


# ---------------------------------------------------------------- the same inputs through the CLI


CLI_CASES = {
    "empty": ({"ratings.csv": b""}, {}, ["ratings.csv: The file is empty"]),
    "png renamed csv": ({"ratings.csv": b"\x89PNG\r\n\x1a\n" + bytes(100)}, {}, ["This is a PNG image"]),
    "mixed delimiters": ({"ratings.csv": b"user,item,rating\n" + rows(10, sep=";", header=None).encode()}, {},
                         ["Line 2", "semicolons instead"]),
    "10^6 columns": ({"wide.csv": b"c," * (10**6 - 1) + b"c\n1,2\n"}, {}, ["1,000,000 columns"]),
    "gzip bomb": ({"ratings.csv.gz": None}, {"MTR_MAX_FILE_MB": "4"}, ["unpacks to more than 4 MB"]),
    "items with duplicate ids": ({"ratings.csv": GOOD, "items.csv": b"item,genre\ni0,a\ni0,b\n"}, {},
                                 ["items.csv", "appears on more than one row"]),
    "folder with no known files": ({"folder/notes.txt": b"hello"}, {}, ["holds no set of files"]),
}


def _cli_args(name: str, tmp: Path) -> list[str]:
    if name == "items with duplicate ids":
        return [str(tmp / "ratings.csv"), "--items", str(tmp / "items.csv")]
    if name == "folder with no known files":
        return [str(tmp / "folder")]
    return [str(tmp / next(iter(CLI_CASES[name][0])))]


# `python -m mtrlib`, plus a note of the process's own peak memory (VmHWM) at exit. The kernel's
# ru_maxrss would include the pytest process the child was forked from, so it cannot be used.
PEAK = """import atexit, os, runpy, sys
def peak():
    with open('/proc/self/status') as f:
        hwm = [line.split()[1] for line in f if line.startswith('VmHWM:')]
    with open(os.environ['MTR_TEST_PEAK_FILE'], 'w') as f:
        f.write(hwm[0] if hwm else '0')
atexit.register(peak)
runpy.run_module('mtrlib', run_name='__main__', alter_sys=True)
"""


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Run every CLI case at once (separate processes), collecting exit status, output and peak memory."""
    procs = {}
    for name, (files, env_extra, _) in CLI_CASES.items():
        tmp = tmp_path_factory.mktemp(name.replace(" ", "_").replace("^", ""))
        for fname, data in files.items():
            p = tmp / fname
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(gzip_bomb(1024) if data is None else data)
        env = {k: v for k, v in os.environ.items() if k != "MTR_MAX_FILE_MB"}
        env.update(env_extra, PYTHONPATH=str(ROOT), MTR_TEST_PEAK_FILE=str(tmp / "_peak_kb"))
        measure = Path("/proc/self/status").exists()
        cmd = [sys.executable, *(["-c", PEAK] if measure else ["-m", "mtrlib"]), "inspect", *_cli_args(name, tmp)]
        procs[name] = (subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True), tmp, measure)
    results = {}
    for name, (p, tmp, measure) in procs.items():
        out, err = p.communicate(timeout=300)
        peak = int((tmp / "_peak_kb").read_text()) / 1024 if measure else None
        results[name] = {"rc": p.returncode, "stdout": out, "stderr": err, "peak_mb": peak}
    return results


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_inspect_exits_2_with_the_message(name, cli_results):
    r = cli_results[name]
    assert r["rc"] == 2, r
    assert r["stderr"].startswith("error: "), r["stderr"]
    for part in CLI_CASES[name][2]:
        assert part in r["stderr"], (part, r["stderr"])
    assert "Traceback" not in r["stderr"] + r["stdout"]
    assert r["stdout"] == ""


def test_cli_gzip_bomb_memory_stays_bounded(cli_results):
    """The process unpacks at most the 4 MB cap: its peak memory is the interpreter's, not 1 GiB."""
    peak = cli_results["gzip bomb"]["peak_mb"]
    if peak is None:
        pytest.skip("no /proc on this system")
    assert peak < 300, peak
