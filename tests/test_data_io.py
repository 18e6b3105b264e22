"""Loading files: every accepted format and layout, and every way a file can be wrong.

All bad files are built here (no binaries are committed). The loader's last-resort handler
is switched off so an unexpected exception fails the test instead of becoming a DataError.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import random
import re
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _files import parquet, zipped
import mtrlib.data.read.loader as mio
from mtrlib.data import DataError, build_examples, guess_mapping, load, read_table, read_table_full, split
from mtrlib.data.encode import FeatureSpace, encode_examples

ML_SMALL = Path(__file__).resolve().parents[1].parent / "shared/data/ml-latest-small"


@pytest.fixture(autouse=True)
def _strict(monkeypatch):
    monkeypatch.setattr(mio, "_SAFETY_NET", False)
    monkeypatch.delenv("MTR_MAX_FILE_MB", raising=False)


class Upload(io.BytesIO):
    """What st.file_uploader hands over: bytes with a .name (never a path)."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name


def table(n=20, sep=",", header="user,item,rating,ts", users=4, items=5) -> str:
    rows = "".join(f"u{i % users}{sep}i{i % items}{sep}{i % 5 + 1}{sep}{1_600_000_000 + i}\n" for i in range(n))
    return (header.replace(",", sep) + "\n" if header else "") + rows


GOOD = table().encode()


def err(source, *args, **kw) -> str:
    with pytest.raises(DataError) as e:
        load(source, *args, **kw)
    assert e.value.fix, "every DataError says what to do"
    return str(e.value)


def _tar(name: str, data: bytes) -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return b.getvalue()


# ---------------------------------------------------------------- the hostile corpus

BAD = {
    "empty": (b"", ["empty"]),
    "whitespace only": (b"  \n\n\t\n", ["empty"]),
    "header only": (b"user,item,rating\n", ["header row but no data rows"]),
    "png renamed csv": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), ["PNG image", "not a table"]),
    "jpeg": (b"\xff\xd8\xff\xe0" + bytes(100), ["JPEG image"]),
    "pdf": (b"%PDF-1.4\n%...", ["PDF document"]),
    "html": (b"<!DOCTYPE html>\n<html><body><table><tr><td>1</td></tr></table></body></html>", ["web page (HTML)"]),
    "html no doctype": (b"\n  <head><title>x</title></head><body>user,item</body>", ["web page (HTML)"]),
    "xml": (b'<?xml version="1.0"?><rows><row user="1"/></rows>', ["XML document"]),
    "json array": (b'[{"user": 1, "item": 2}, {"user": 2, "item": 3}]', ["JSON"]),
    "json lines": (b'{"user": 1, "item": 2}\n{"user": 2, "item": 3}\n', ["JSON"]),
    "excel workbook": (zipped({"[Content_Types].xml": b"x", "xl/workbook.xml": b"x"}), ["Excel workbook", "CSV"]),
    "tar archive": (_tar("ratings.csv", GOOD), ["tar archive"]),
    "one column": (b"user\n" + b"".join(b"%d\n" % i for i in range(10)), ["only one column", "'user'"]),
    "colon separated": (table(sep=":").encode(), ["only one column", "separated by something other"]),
    "mixed delimiters": (b"user,item,rating\n1,2,3\n4;5;6\n7,8,9\n1,1,1\n2,2,2\n",
                         ["Line 3", "split on commas", "header has 3", "semicolons instead"]),
    "ragged row late (fast check)": (table(5000).encode() + b"u1,i1\n" + table(10, header="").encode(),
                                     ["Line 5002 has 2 field", "header has 4"]),
    "extra field late (quoted file)": (b"user,item,title\n" + b'1,2,"a, b"\n' * 8000 + b"1,2,x,y\n",
                                       ["Line 8002 has 4 fields", "header has 3"]),
    "unclosed quote": (b'user,item,t\n1,2,"abc\n3,4,x\n5,6,y\n7,8,z\n9,10,w\n', ["quote", "never closed", "line 2"]),
    "no user column": (b"a,b,c\n" + b"1,2,3\n" * 10, ["Could not find a user column", "'a', 'b', 'c'", "mapping"]),
    "no item column": (b"user,b,c\n" + b"1,2,3\n" * 10, ["Could not find an item column"]),
    "duplicate column names": (b"user,item,rating,item\n" + b"1,2,3,4\n" * 10,
                               ["column name 'item' appears twice", "columns 2 and 4"]),
    "c1 control bytes": (GOOD + b"u\x81\x90,i1,1,1\n", ["not UTF-8", "not Latin-1 either", "line 22"]),
    "nul bytes": (GOOD + b"u1,i\x00\x00,1,1\n", ["NUL", "line 22"]),
    "random binary": (random.Random(0).randbytes(4096), []),
    "many control chars": (b"user,item\n" + bytes([1, 2, 3, 4, 5, 6, 7, 8]) * 40, ["control characters"]),
    "nan user id": (b"user,item\n1,2\n,3\n4,5\n6,7\n8,9\n10,11\n", ["'user' (the user id) has no value",
                                                                  "data row 2", "line 3"]),
    "NA item id": (b"user,item\n1,2\n3,NA\n4,5\n6,7\n8,9\n10,11\n", ["item id", "data row 2"]),
    "inf id": (b"user,item\n1,2\n2,inf\n4,5\n6,7\n8,9\n10,11\n", ["infinite", "data row 2"]),
    "too few rows": (b"user,item\n1,2\n3,4\n", ["only 2 interaction row", "at least 5"]),
    "single user": (b"user,item\n" + b"".join(b"u1,i%d\n" % i for i in range(9)), ["same user", "at least 2 users"]),
    "truncated gzip": (gzip.compress(GOOD)[:40], ["gzip archive is damaged or cut short"]),
    "truncated bz2": (bz2.compress(GOOD)[:40], ["bz2 archive is damaged"]),
    "damaged zip": (zipped({"r.csv": GOOD})[:60], ["zip archive is damaged"]),
    "empty zip": (zipped({}), ["empty zip"]),
    "10^6 columns": ((",".join(f"c{i}" for i in range(10**6)) + "\n1\n").encode(), ["1,000,000 columns",
                                                                                   "at most 1,000"]),
    "one endless line": (b"x" * (2 * 1024 * 1024), ["first line is 2.1 MB"]),
    "parquet nested": (parquet(pd.DataFrame({"user": [1, 2, 3, 4, 5], "item": [1, 2, 3, 1, 2],
                                              "tags": [[1], [2], [3], [1], [2]]})), ["'tags'", "nested"]),
    "parquet struct": (parquet(pd.DataFrame({"user": [1, 2], "item": [1, 2], "s": [{"a": 1}, {"a": 2}]})),
                       ["nested"]),
    "damaged parquet": (b"PAR1" + bytes(200) + b"PAR1", ["Parquet file is damaged"]),
    "utf-16 damaged": (b"\xff\xfe" + "user,item\n1,2\n".encode("utf-16-le") + b"\x00\xd8", ["UTF-16", "damaged"]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_hostile_input_gives_clear_error(name):
    data, parts = BAD[name]
    msg = err(Upload(data, "upload.csv"))
    assert msg.startswith("upload.csv"), "the message names the file"
    for p in parts:
        assert p in msg, (p, msg)
    assert "Traceback" not in msg and "pandas" not in msg.lower()


def test_random_binary_is_refused_readably():
    msg = err(random.Random(0).randbytes(4096))
    assert any(w in msg for w in ("NUL", "encoding", "control characters", "not a table")), msg


def test_size_cap_is_configurable(monkeypatch, tmp_path):
    p = tmp_path / "r.csv"
    p.write_bytes(table(60_000).encode())  # ~1.2 MB
    monkeypatch.setenv("MTR_MAX_FILE_MB", "1")
    for source in (p, str(p), p.read_bytes(), Upload(p.read_bytes(), "r.csv")):
        msg = err(source)
        assert "over the 1 MB limit" in msg and "MTR_MAX_FILE_MB" in msg
    monkeypatch.setenv("MTR_MAX_FILE_MB", "5")
    assert load(p).n_interactions == 60_000


def test_small_gzip_bomb_with_low_cap(monkeypatch):
    monkeypatch.setenv("MTR_MAX_FILE_MB", "1")
    msg = err(gzip.compress(GOOD * 100_000))
    assert "unpacks to more than 1 MB" in msg


def test_zip_bomb_member(monkeypatch):
    monkeypatch.setenv("MTR_MAX_FILE_MB", "1")
    assert "unpacks to more than" in err(zipped({"r.csv": b"0" * (3 * 1024 * 1024)}))


def test_too_many_columns_dataframe_and_parquet():
    wide = pd.DataFrame(np.zeros((2, 1001)), columns=[f"c{i}" for i in range(1001)])
    assert "1,001 columns" in err(wide)
    assert "1,001 columns" in err(parquet(wide))


def test_missing_path_folder_and_types(tmp_path):
    assert "File not found" in err(tmp_path / "nope.csv")
    (tmp_path / "notes.txt").write_text("hello")
    assert "no set of files that is recognised" in err(tmp_path)
    assert "notes.txt" in err(tmp_path)
    assert "Cannot read data from a int" in err(42)
    assert "No interactions data was given" in err(None)
    assert "not the path of a file" in err("user,item\n1,2\n")


def test_upload_name_is_never_used_as_path(tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_bytes(GOOD)
    ds = load(Upload(b"user,item\n" + b"".join(b"a%d,b%d\n" % (i % 3, i) for i in range(9)), str(secret)))
    assert ds.n_interactions == 9  # the upload's bytes, not the file its name points at
    assert "secret.csv" in err(Upload(b"", str(secret)))  # only its base name shows up in messages
    assert str(tmp_path) not in err(Upload(b"", str(secret)))


def test_bad_mappings():
    assert "no such column" in err(GOOD, mapping={"user": "nope"})
    assert "user, item, rating, ts" in err(GOOD, mapping={"item": "nope"})
    assert "Unknown key" in err(GOOD, mapping={"usr": "user"})
    assert "not one of" in err(GOOD, mapping={"item_features": {"rating": "colour"}})
    assert "same column" in err(GOOD, mapping={"user": "user", "item": "user"})
    assert "Label column(s) nope" in err(GOOD, mapping={"labels": ["nope"]})
    bad_ts = b"user,item,when\n" + b"".join(b"u%d,i%d,2020-01-0%d\n" % (i % 3, i, i + 1) for i in range(7)) + \
        b"u1,i9,someday\n"
    msg = err(bad_ts, mapping={"timestamp": "when"})
    assert "'someday' cannot be read as a date" in msg and "data row 8" in msg
    assert "not a column" in err(GOOD, mapping={"item_features": {"nope": "categorical"}})


def test_guessed_timestamp_that_is_not_one_is_kept_as_a_column():
    data = b"user,item,date\n" + b"".join(b"u%d,i%d,%s\n" % (i % 3, i, b"soon" if i == 3 else b"2020-01-01")
                                          for i in range(8))
    ds = load(data)
    assert not ds.has_timestamp and "date" in ds.interactions.columns
    assert any("could not be read as one" in n and "'date'" in n for n in ds.notes)


# ---------------------------------------------------------------- side tables

def test_side_table_errors():
    assert "appears on more than one row" in err(GOOD, b"item,genre\ni0,a\ni1,b\ni0,c\n")
    assert "data rows 1, 3" in err(GOOD, b"item,genre\ni0,a\ni1,b\ni0,c\n")
    assert "appears on more than one row" in err(GOOD, users=b"user,age\nu0,1\nu0,2\n")
    msg = err(GOOD, b"item,genre\nx0,a\nx1,b\n")
    assert "None of the 2 item ids" in msg and "'x0'" in msg and "'i0'" in msg
    assert "None of the" in err(GOOD, users=b"user_id,age\nq1,3\nq2,4\n")
    assert "has no value" in err(GOOD, b"item,genre\ni0,a\n,b\n")
    assert "which column holds the item ids" in err(GOOD, b"alpha,beta\nzz,1\nyy,2\n")
    assert "MovieLens ratings" not in err(GOOD, b"")  # empty side table: its own message
    assert "empty" in err(GOOD, b"")


def test_side_tables_join_and_cover_every_id():
    items = b"item,genre,price,blurb\ni0,a,1.5,A long description of the first thing here\n" \
            b"i1,b,2.5,Another long description of a second thing\nzz,c,3,Never seen anywhere in the logs\n"
    users = b"user,age,country\nu0,20,fr\nu1,30,de\nu2,40,fr\nu3,35,us\n"
    ds = load(GOOD, items, users)
    assert ds.n_items == 6 and ds.n_users == 4  # 5 used + 1 catalogue-only
    assert set(ds.interactions["item_id"]) <= set(ds.items.index)
    assert ds.items.loc["i0", "genre"] == "a" and pd.isna(ds.items.loc["i3", "genre"])
    assert ds.item_features == {"genre": "categorical", "price": "numeric", "blurb": "text"}
    assert ds.user_features == {"age": "numeric", "country": "categorical"}
    assert ds.items["price"].dtype.kind == "f" and ds.users["age"].dtype.kind == "i"
    assert any("3 items in the interactions are missing" in n for n in ds.notes)
    assert any("1 item has no interactions; kept in the catalogue" in n for n in ds.notes)
    assert ds.items.index.name == "item_id" and ds.users.index.name == "user_id"


def test_items_from_several_sources_and_tag_tables():
    ds = load(GOOD, [b"item,genre\ni0,a\ni1,b\n", b"item,tag\ni0,fun\ni0,Fun\ni0,sad\ni2,x\n"])
    assert ds.items.loc["i0", "tag"] == "fun, sad" and ds.items.loc["i2", "tag"] == "x"
    assert ds.item_features["tag"] == "text" and ds.item_features["genre"] == "categorical"


def test_side_table_id_found_by_values_and_by_mapping():
    ds = load(GOOD, b"code,colour\ni0,red\ni1,blue\ni2,red\n")
    assert ds.items.loc["i1", "colour"] == "blue"
    ds = load(GOOD, b"sku,other\ni0,x\ni1,y\n", mapping={"item_table_id": "sku"})
    assert ds.items.loc["i1", "other"] == "y"


def test_dataframe_side_tables_indexed_by_id():
    inter = pd.DataFrame({"user_id": [1, 2, 3, 1, 2, 3], "item_id": [10, 11, 12, 11, 12, 10]})
    items = pd.DataFrame({"genre": ["a", "b", "a"]}, index=pd.Index([10, 11, 12], name="item_id"))
    ds = load(inter, items)
    assert ds.items.loc["11", "genre"] == "b"


# ---------------------------------------------------------------- formats that must load


def _counts(ds):
    return ds.n_interactions, ds.n_users, ds.n_items


OK = {
    "utf-8 with BOM": b"\xef\xbb\xbf" + GOOD,
    "utf-16 with BOM": GOOD.decode().encode("utf-16"),
    "utf-16-le without BOM": GOOD.decode().encode("utf-16-le"),
    "utf-16-be with BOM": b"\xfe\xff" + GOOD.decode().encode("utf-16-be"),
    "crlf": GOOD.replace(b"\n", b"\r\n"),
    "cr only (old Mac)": GOOD.replace(b"\n", b"\r"),
    "semicolons": table(sep=";").encode(),
    "tabs": table(sep="\t").encode(),
    "pipes": table(sep="|").encode(),
    "double colon": table(sep="::").encode(),
    "blank lines": GOOD.replace(b"\n", b"\n\n"),
    "trailing separator on every line": GOOD.replace(b"\n", b",\n"),
    "gzip": gzip.compress(GOOD),
    "bz2": bz2.compress(GOOD),
    "xz": lzma.compress(GOOD),
    "zip with one file": zipped({"folder/ratings.csv": GOOD}),
    "zip of gzip": zipped({"r.csv.gz": gzip.compress(GOOD)}),
    "parquet": parquet(pd.read_csv(io.BytesIO(GOOD))),
    "spreadsheet row numbers": pd.read_csv(io.BytesIO(GOOD)).to_csv().encode(),
    "space after separator": GOOD.replace(b",", b", "),
}


@pytest.mark.parametrize("name", list(OK))
def test_formats_that_load(name):
    ds = load(Upload(OK[name], "upload.csv"))
    assert _counts(ds) == (20, 4, 5), name
    assert list(ds.interactions.columns[:3]) == ["user_id", "item_id", "timestamp"]
    assert ds.interactions["timestamp"].dtype == np.int64
    assert ds.interactions["rating"].dtype.kind in "if"
    assert not any("row numbers" in n for n in ds.notes) or name == "spreadsheet row numbers"


def test_latin1_and_quoted_newlines_and_long_cells():
    lat = ("user,item,title\n" + "".join(f"u{i % 3},i{i},Café {i} naïve\n" for i in range(8))).encode("latin-1")
    ds = load(lat)
    assert ds.interactions["title"].iloc[0] == "Café 0 naïve"
    assert any("Latin-1" in n for n in ds.notes)
    qn = "user,item,review\n" + "".join(f'u{i % 3},i{i},"line one\nline two, ""quoted"""\n' for i in range(8))
    ds = load(qn.encode())
    assert ds.n_interactions == 8 and ds.interactions["review"].iloc[0] == 'line one\nline two, "quoted"'
    long = b"user,item,text\n" + b"".join(b"u%d,i%d,%s\n" % (i % 3, i, b"x" * 2_000_000 if i == 2 else b"y")
                                          for i in range(8))
    ds = load(long)
    assert len(ds.interactions["text"].iloc[2]) == 2_000_000


def test_formula_cells_are_plain_text():
    data = ("user,item,note\n" + "".join(f"u{i % 3},i{i},=cmd|' /C calc'!A0\n" for i in range(8))).encode()
    ds = load(data)
    assert ds.interactions["note"].iloc[0] == "=cmd|' /C calc'!A0"


def test_sources_path_str_bytes_upload_dataframe(tmp_path):
    p = tmp_path / "ratings.csv"
    p.write_bytes(GOOD)
    df = pd.read_csv(p)
    for source in (p, str(p), GOOD, bytearray(GOOD), Upload(GOOD, "x.csv"), df):
        assert _counts(load(source)) == (20, 4, 5)
    up = Upload(GOOD, "x.csv")
    up.read()  # a rerun may hand over an already-read upload
    assert _counts(load(up)) == (20, 4, 5)
    assert load(p).name == "ratings" and load(GOOD, name="mine").name == "mine"


def test_ids_are_canonical_strings():
    data = b"user,item\n" + b"".join(b" %s ,%s\n" % (u, i) for u, i in [
        (b"1.0", b"12345678901234567890123"), (b"1", b"007"), (b"-3", b"7"), (b"u x", b"7.50"), (b"1", b"7.0")])
    ds = load(data)
    assert ds.interactions["user_id"].tolist() == ["1", "1", "-3", "u x", "1"]
    assert ds.interactions["item_id"].tolist() == ["12345678901234567890123", "007", "7", "7.50", "7"]
    assert ds.n_users == 3 and ds.n_items == 4
    df = pd.DataFrame({"u": np.arange(6.0) % 3, "i": np.arange(6, dtype=np.uint64) + np.uint64(2**63)})
    ds = load(df, mapping={"user": "u", "item": "i"})
    assert ds.interactions["user_id"].tolist()[:3] == ["0", "1", "2"]
    assert ds.interactions["item_id"].iloc[0] == str(2**63)
    assert pd.api.types.is_string_dtype(ds.interactions["user_id"])
    assert pd.api.types.is_string_dtype(ds.items.index)


def test_nan_and_inf_ids_in_dataframes():
    df = pd.DataFrame({"user": [1.0, np.nan, 2.0, 3.0, 4.0, 5.0], "item": [1, 2, 3, 4, 5, 6]})
    assert "data row 2" in err(df)
    df = pd.DataFrame({"user": [1.0, np.inf, 2.0, 3.0, 4.0, 5.0], "item": [1, 2, 3, 4, 5, 6]})
    assert "infinite" in err(df)
    df = pd.DataFrame({"user": ["a", None, "b", "c", "d", "e"], "item": [1, 2, 3, 4, 5, 6]})
    assert "has no value" in err(df)
    df = pd.DataFrame({"user": [1, 2, 3, 4, 5], "item": [[1], [2], [3], [4], [5]]})
    assert "lists or records" in err(df)
    assert "duplicate" not in err(pd.DataFrame(np.zeros((6, 2)), columns=["user", "user"])) and \
        "appears twice" in err(pd.DataFrame(np.zeros((6, 2)), columns=["user", "user"]))


def test_timestamps_become_int_seconds():
    base = b"user,item,%s\n"
    for header, values, expect in [
        (b"time", [b"1600000000000"] * 6, 1_600_000_000),  # milliseconds
        (b"event_time", [b"2020-09-13 12:26:40"] * 6, 1_600_000_000),
        (b"date", [b"2020-09-13T12:26:40Z"] * 6, 1_600_000_000),
        (b"ts", [b"1600000000.4"] * 6, 1_600_000_000),
        (b"day", [b"20200913"] * 6, 1_599_955_200),
    ]:
        data = (base % header) + b"".join(b"u%d,i%d,%s\n" % (k % 2, k, v) for k, v in enumerate(values))
        ds = load(data)
        assert ds.interactions["timestamp"].dtype == np.int64, header
        assert int(ds.interactions["timestamp"].iloc[0]) == expect, header
    df = pd.DataFrame({"user": [1, 2, 1, 2, 3], "item": [1, 1, 2, 2, 3],
                       "when": pd.to_datetime(["2020-09-13 12:26:40"] * 5)})
    assert int(load(df).interactions["timestamp"].iloc[0]) == 1_600_000_000


def test_headerless_generic_table_uses_position():
    ds = load(table(header="").encode())
    assert _counts(ds) == (20, 4, 5) and ds.has_timestamp
    assert any("No header row" in n for n in ds.notes)


def test_labels_are_numeric_when_the_whole_column_is():
    data = b"user,item,click,grade,comment\n" + b"".join(
        b"u%d,i%d,%d,%s,%s\n" % (k % 3, k, k % 2, b"A" if k == 0 else b"%d" % k, b"nice") for k in range(8))
    ds = load(data)
    assert ds.interactions["click"].dtype.kind == "i"
    assert pd.api.types.is_string_dtype(ds.interactions["grade"])  # 'A' keeps the column as text
    assert ds.suggested_tasks[0] == "click=click"


def test_read_table_preview():
    df = read_table(Upload(table(sep=";").encode(), "x.csv"))
    assert list(df.columns) == ["user", "item", "rating", "ts"] and len(df) == 20
    read = read_table_full(Upload(table(sep=";").encode(), "x.csv"))
    assert read.delimiter == ";" and read.header is True
    assert read_table_full(table(header="").encode()).header is False
    with pytest.raises(DataError, match="several files"):
        read_table(zipped({"a.csv": GOOD, "b.csv": GOOD}))


# ---------------------------------------------------------------- guessing


@pytest.mark.parametrize("cols,user,item,ts", [
    (["userId", "movieId", "rating", "timestamp"], "userId", "movieId", "timestamp"),
    (["customer_id", "sku", "event_time", "clicked"], "customer_id", "sku", "event_time"),
    (["visitorid", "itemid", "event", "timestamp"], "visitorid", "itemid", "timestamp"),
    (["UserID", "ArticleID", "Date"], "UserID", "ArticleID", "Date"),
    (["uid", "song", "ts", "played"], "uid", "song", "ts"),
    (["Customer", "Product Name", "time"], "Customer", "Product Name", "time"),
])
def test_guess_mapping_by_name(cols, user, item, ts):
    n = 12
    data = {c: [f"x{k % 3}" for k in range(n)] for c in cols}
    data[ts] = [f"2020-01-{k + 1:02d}" for k in range(n)]
    m = guess_mapping(pd.DataFrame(data))
    assert (m["user"], m["item"], m["timestamp"]) == (user, item, ts)


def test_guess_mapping_features_and_labels():
    k = np.arange(60)
    df = pd.DataFrame({
        "user": [f"u{x % 6}" for x in k], "item": [f"i{x % 10}" for x in k],
        "genres": [["A|B", "C", "A|C", "B|D", "D"][x % 10 % 5] for x in k],
        "category": [["x", "y"][x % 10 % 2] for x in k],
        "price": [1.5 + x % 10 for x in k],
        "blurb": [f"a rather long description of item number {x % 10} here" for x in k],
        "age": [20 + x % 6 for x in k],
        "click": k % 2, "watch_time": (k * 7.3) % 11,
    })
    m = guess_mapping(df)
    assert m["user"] == "user" and m["item"] == "item" and m["timestamp"] is None
    assert m["item_features"] == {"genres": "multi", "category": "categorical", "price": "numeric",
                                  "blurb": "text"}
    assert m["user_features"] == {"age": "numeric"}
    assert m["labels"] == ["click", "watch_time"]
    ds = load(df)
    assert set(ds.item_features) == {"genres", "category", "price", "blurb"} and "genres" not in ds.interactions
    assert ds.items.loc["i3", "genres"] == "B|D" and ds.users.loc["u2", "age"] == 22
    assert ds.title_column == "blurb" and ds.text_columns == ["blurb"]


def test_mapping_overrides_guesses():
    data = b"a,b,c,d\n" + b"".join(b"x%d,y%d,%d,g%d\n" % (k % 3, k % 4, k % 2, k % 4 % 2) for k in range(20))
    ds = load(data, mapping={"user": "a", "item": "b", "item_features": {"d": "multi"}})
    assert ds.item_features == {"d": "multi"} and "c" in ds.interactions.columns
    assert "d" not in ds.interactions.columns and ds.items.loc["y1", "d"] == "g1"
    ds = load(data, mapping={"user": "b", "item": "a"})
    assert ds.n_users == 4 and ds.n_items == 3


def test_suggested_tasks_find_conditional_labels():
    df = pd.DataFrame({"user": np.arange(40) % 5, "item": np.arange(40) % 7, "click": np.arange(40) % 2})
    df["like"] = np.where(df["click"] == 1, (np.arange(40) // 2) % 2, np.nan)
    df["dwell"] = np.where(df["click"] == 1, np.arange(40) * 1.5, np.nan)
    df["stars"] = np.arange(40) % 5 + 1
    assert load(df).suggested_tasks == ["click=click", "like=like|click", "dwell=dwell:reg|click", "liked=stars>=4"]


# ---------------------------------------------------------------- MovieLens


def _ml100k(d: Path) -> None:
    d.joinpath("u.data").write_bytes("".join(f"{1 + i % 7}\t{1 + i % 9}\t{1 + i % 5}\t{881250949 + i}\n"
                                             for i in range(60)).encode())
    lines = []
    for k in range(1, 12):
        flags = ["1" if (k + j) % 6 == 0 else "0" for j in range(19)]
        title = f"Café {k}, The (199{k % 10})" if k != 3 else 'Some "quoted" title (1994)'
        lines.append("|".join([str(k), title, f"01-Jan-199{k % 10}", "", f"http://us.imdb.com/M/x{k}"] + flags))
    d.joinpath("u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    d.joinpath("u.user").write_bytes("".join(f"{k}|{20 + k}|{'MF'[k % 2]}|{['technician', 'writer'][k % 2]}|"
                                             f"0571{k}\n" for k in range(1, 8)).encode())
    d.joinpath("u.genre").write_bytes(b"unknown|0\nAction|1\n")


def _ml1m(d: Path) -> None:
    d.joinpath("ratings.dat").write_bytes("".join(f"{1 + i % 7}::{1 + i % 9}::{1 + i % 5}::{978300760 + i}\n"
                                                  for i in range(60)).encode())
    d.joinpath("movies.dat").write_bytes("".join(f"{k}::Amélie: Part {k} (19{80 + k})::Action|Comedy\n"
                                                 for k in range(1, 11)).encode("latin-1"))
    d.joinpath("users.dat").write_bytes("".join(f"{k}::{'MF'[k % 2]}::{[1, 18, 25][k % 3]}::{k % 20}::4806{k}\n"
                                                for k in range(1, 8)).encode())


def _mllatest(d: Path) -> None:
    d.joinpath("ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "".join(
        f"{1 + i % 6},{1 + i % 8},{(i % 10 + 1) / 2},{964982703 + i}\n" for i in range(50)))
    d.joinpath("movies.csv").write_text('movieId,title,genres\n' + "".join(
        f'{k},"Movie, The ({1990 + k})",Comedy|Drama\n' for k in range(1, 10)) + "10,Untitled,(no genres listed)\n")
    d.joinpath("tags.csv").write_text('userId,movieId,tag,timestamp\n1,1,funny,1\n2,1,"dark, twisted",2\n'
                                      '3,2,funny,3\n1,1,Funny,4\n')
    d.joinpath("links.csv").write_text("movieId,imdbId,tmdbId\n1,114709,862\n")


def test_movielens_100k_folder(tmp_path):
    _ml100k(tmp_path)
    ds = load(tmp_path)
    assert ds.layout == "movielens-100k" and _counts(ds) == (60, 7, 11)
    assert list(ds.interactions.columns) == ["user_id", "item_id", "timestamp", "rating"]
    assert ds.items.loc["1", "title"] == "Café 1, The (1991)" and ds.items.loc["1", "year"] == 1991
    assert ds.items.loc["3", "title"] == 'Some "quoted" title (1994)'
    assert set(ds.items.loc["1", "genres"].split("|")) == {"Comedy", "Horror", "War"}
    assert ds.item_features == {"title": "text", "genres": "multi", "year": "numeric"}
    assert ds.user_features == {"age": "numeric", "gender": "categorical", "occupation": "categorical"}
    assert ds.users.loc["2", "zip_code"] == "05712"  # zip codes keep their leading zero
    assert ds.suggested_tasks == ["watched=implicit", "liked=rating>=4"] and ds.title_column == "title"
    assert "2 movies have no ratings; kept in the catalogue." in ds.notes
    # the same files one by one, renamed: recognised by content
    ds2 = load(Upload((tmp_path / "u.data").read_bytes(), "a.tsv"), Upload((tmp_path / "u.item").read_bytes(), "b"),
               Upload((tmp_path / "u.user").read_bytes(), "c"))
    assert ds2.layout == "movielens-100k" and _counts(ds2) == (60, 7, 11)


def test_movielens_1m_folder_and_zip(tmp_path):
    _ml1m(tmp_path)
    ds = load(tmp_path)
    assert ds.layout == "movielens-1m" and _counts(ds) == (60, 7, 10)
    assert ds.items.loc["2", "title"] == "Amélie: Part 2 (1982)" and ds.items.loc["2", "year"] == 1982
    assert ds.user_features["occupation"] == "categorical"
    z = zipped({f"ml-1m/{p.name}": p.read_bytes() for p in tmp_path.iterdir()})
    assert _counts(load(Upload(z, "ml-1m.zip"))) == (60, 7, 10)


def test_movielens_latest_fake(tmp_path):
    _mllatest(tmp_path)
    ds = load(tmp_path)
    assert ds.layout == "movielens-latest" and _counts(ds) == (50, 6, 10)
    assert ds.items.loc["1", "tags"] == "funny, dark, twisted"
    assert ds.items.loc["1", "title"] == "Movie, The (1991)" and ds.items.loc["1", "year"] == 1991
    assert pd.isna(ds.items.loc["10", "year"]) and "imdbId" not in ds.items
    assert ds.item_features == {"title": "text", "genres": "multi", "year": "numeric", "tags": "text"}
    assert ds.text_columns == ["title", "tags"]
    assert "movies.csv" in err(tmp_path / "movies.csv") and "MovieLens items" in err(tmp_path / "movies.csv")
    assert "MovieLens interactions" in err(tmp_path / "ratings.csv", tmp_path / "ratings.csv")


@pytest.mark.skipif(not (ML_SMALL / "ratings.csv").exists(), reason="ml-latest-small not present")
def test_real_movielens_latest_small():
    ds = load(ML_SMALL / "ratings.csv", [ML_SMALL / "movies.csv", ML_SMALL / "tags.csv"])
    assert ds.layout == "movielens-latest"
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (100_836, 610, 9_742)  # README counts
    assert ds.interactions["rating"].between(0.5, 5).all() and ds.interactions["timestamp"].dtype == np.int64
    assert ds.items.loc["1", "title"] == "Toy Story (1995)" and ds.items.loc["1", "year"] == 1995
    assert "pixar" in ds.items.loc["1", "tags"]
    assert "18 movies have no ratings; kept in the catalogue." in ds.notes
    assert ds.suggested_tasks == ["watched=implicit", "liked=rating>=4"]
    ex = build_examples(ds, ds.suggested_tasks, negatives=1, seed=0)
    sp = split(ex, "temporal", seed=0)
    space = FeatureSpace.fit(ds, ex.frame.iloc[sp.train])
    enc = encode_examples(space, ex.frame, ex.labels)
    assert len(enc) == 2 * 100_836 and space.items.describe()["multi"]["genres"] > 15


def test_loaded_data_flows_through_examples_and_encoding(tmp_path):
    _ml100k(tmp_path)
    ds = load(tmp_path)
    ex = build_examples(ds, ds.suggested_tasks, negatives=2, seed=1)
    sp = split(ex, "random", seed=0)
    space = FeatureSpace.fit(ds, ex.frame.iloc[sp.train])
    enc = encode_examples(space, ex.frame, ex.labels)
    assert len(enc) == 180 and set(space.users.cat) == {"gender", "occupation"}


# ---------------------------------------------------------------- properties

_NA = {"", "nan", "none", "null", "na", "n/a", "#n/a", "<na>"}


def _norm(x):
    """The documented id rule: stripped text, '7.0' -> '7'; None if missing (load must refuse)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    t = str(x).strip()
    if t.lower() in _NA:
        return None
    return re.sub(r"^([+-]?\d+)\.0*$", r"\1", t)


_clean = st.one_of(st.integers(-3, 12), st.sampled_from(["a", "b", " c ", "7.0", "7", "+7", "x y", 1.0, 2.5]))
_hostile = st.one_of(
    st.integers(10**18, 10**25),
    st.text(alphabet="ab1.0 ,;|\t\"'=-\n\r_x", min_size=0, max_size=5),
    st.sampled_from([None, "NA", "nan", "inf", float("nan"), "#N/A", "", "=cmd|x"]),
)
cells = st.one_of(st.none(), st.integers(-1, 5), st.floats(allow_nan=True), st.text(max_size=6))


@st.composite
def tables(draw) -> pd.DataFrame:
    """Mostly clean tables with a few hostile ids sprinkled in, so both outcomes are exercised."""
    n = draw(st.integers(0, 25))
    rows = [[draw(_clean), draw(_clean), draw(cells)] for _ in range(n)]
    for _ in range(draw(st.integers(0, 2)) if n else 0):
        rows[draw(st.integers(0, n - 1))][draw(st.integers(0, 1))] = draw(_hostile)
    return pd.DataFrame(rows, columns=["user", "item", "label"], dtype=object)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(df=tables(), sep=st.sampled_from([",", ";", "\t", "|"]), as_frame=st.booleans())
def test_random_tables_load_with_matching_counts_or_raise_dataerror(df, sep, as_frame):
    mio._SAFETY_NET = False
    try:
        source = df if as_frame else df.to_csv(index=False, sep=sep).encode()
        try:
            ds = load(source)
        except DataError:
            return
        users = [_norm(u) for u in df["user"]]
        items = [_norm(i) for i in df["item"]]
        assert None not in users and None not in items
        assert ds.n_interactions == len(df)
        assert ds.n_users == len(set(users)) and ds.n_items == len(set(items))
        assert sorted(ds.interactions["user_id"]) == sorted(users)
    finally:
        mio._SAFETY_NET = True


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_load_or_raise_dataerror(data):
    mio._SAFETY_NET = False
    try:
        try:
            ds = load(data)
        except DataError:
            return
        assert ds.n_interactions >= mio.MIN_INTERACTIONS
    finally:
        mio._SAFETY_NET = True
