"""Parsing one file's bytes into a table of stripped strings, and saying how it was read.

Text is split after sniffing: the delimiter is the one whose field count agrees with the first
line on the most lines, a header row is told from a data row by its values, and every line's
field count is checked (at numpy speed when there are no quotes) so a stray separator is
reported with its line number instead of shifting the columns. Parquet and DataFrames get the
same checks on column names and shapes. `read_one` returns a `Table`: the frame plus the facts
(source, format, header, delimiter, encoding, notes) that later stages need and a DataFrame
cannot carry honestly.
"""
from __future__ import annotations

import csv
import io as _io
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import csv as pacsv

from .. import mapping as mp
from .. import values as vl
from ...errors import DataError
from .sources import (Blob, Folder, decode, max_file_bytes, open_source, refuse_binary, refuse_markup, short,
    too_big, unpack)

MAX_COLUMNS = 1000
SNIFF_BYTES = 64 * 1024
MAX_HEADER_BYTES = 1 << 20
CHECK_WINDOW = 64 << 20  # bytes per window of the whole-file field-count check
DELIMITERS = [",", "\t", ";", "|"]
NA_VALUES = ["", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "#N/A", "<NA>"]
_DELIM_NAMES = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "'|' bars", "::": "'::'",
                "\x1f": "'::'"}
_KEEP_BYTES = bytes(range(32, 256)) + b"\t\n\r\f"
ARROW_BLOCK = 16 << 20  # bytes per block of the CSV reader (its unit of parallel work)
_BLANKISH = re.compile(rb"(?m)^ +\r?$")


def _records(text: str, delim: str, quoting: int) -> list[tuple[int, list[str]]]:
    """(start line, fields) per non-blank record of the sample; quotes and quoted newlines handled."""
    out = []
    reader = csv.reader(_io.StringIO(text, newline=""), delimiter=delim, quoting=quoting)
    prev = 0
    try:
        for row in reader:
            start = prev + 1
            prev = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            out.append((start, row))
    except csv.Error:
        return out
    return out


def _sniff(text: str, truncated: bool) -> tuple[str | None, int, list[tuple[int, list[str]]]]:
    """Pick the delimiter whose field count agrees with the first line on the most lines."""
    def records(txt: str, delim: str, quoting: int) -> list[tuple[int, list[str]]]:
        recs = _records(txt, delim, quoting)
        if truncated and len(recs) > 1:
            recs = recs[:-1]  # the sample's last record may be cut off
        return recs

    lines = [ln for ln in text.split("\n")[:60] if ln.strip()]
    if lines and sum("::" in ln for ln in lines) >= 0.9 * len(lines):
        return "::", csv.QUOTE_NONE, records(text.replace("::", "\x1f"), "\x1f", csv.QUOTE_NONE)
    best = None
    for order, d in enumerate(DELIMITERS):
        recs = records(text, d, csv.QUOTE_MINIMAL)
        if not recs:
            continue
        counts = np.array([len(r) for _, r in recs])
        if counts.max() < 2:
            continue
        agree = float((counts == counts[0]).mean())
        key = (counts[0] >= 2, agree, counts[0], -order)
        if best is None or key > best[0]:
            best = (key, d, recs)
    if best is None:
        return None, csv.QUOTE_MINIMAL, records(text, "\x1f", csv.QUOTE_MINIMAL)
    return best[1], csv.QUOTE_MINIMAL, best[2]


def _is_number(x: str) -> bool:
    try:
        float(x)
        return True
    except ValueError:
        return False


def _has_header(recs: list[tuple[int, list[str]]]) -> bool:
    """A first row of names above rows of values; names never repeat as values of their column."""
    first = [f.strip() for f in recs[0][1]]
    rest = [r for _, r in recs[1:200]]
    if not rest:
        return True
    present = [x for x in first if x]
    if present and all(_is_number(x) for x in present):
        return False
    if any(mp.norm_name(x) in mp.USER_NAMES + mp.ITEM_NAMES + mp.TIME_NAMES for x in present):
        return True
    for j, x in enumerate(first):
        col = [r[j].strip() for r in rest if len(r) > j and r[j].strip()]
        if x and col and not _is_number(x) and np.mean([_is_number(v) for v in col]) >= 0.9:
            return True
    for j, x in enumerate(first):
        col = {r[j].strip() for r in rest if len(r) > j}
        if x and x in col:
            return False
    return True


def _delim_words(d: str | None) -> str:
    return _DELIM_NAMES.get(d, repr(d))


def _check_counts(recs, delim, header: bool, name: str, text: str) -> None:
    """Every line of the sample must have as many fields as the first one."""
    n0 = len(recs[0][1])
    for line, row in recs[1:]:
        if len(row) != n0:
            hint = ""
            lines = text.split("\n", line)
            raw = lines[line - 1] if len(lines) >= line else ""
            for other in DELIMITERS:
                if n0 >= 2 and other != delim and other in raw and len(raw.split(other)) == n0:
                    hint = f" (that line seems to use {_delim_words(other)} instead)"
            if n0 < len(row) and len(recs) > 2 and all(len(r) == len(row) for _, r in recs[1:]):
                first = short((delim or "").join(recs[0][1]), 40)
                raise DataError(
                    f"The first line ('{first}') has {n0} field{'s' if n0 > 1 else ''} but every line below it has "
                    f"{len(row):,} (split on {_delim_words(delim)}).",
                    fix="if the first line is a title or a comment above the table, delete it so the file starts "
                        "with the header row; if it is the header, give every column a name", source=name)
            raise DataError(
                f"Line {line} has {len(row):,} field(s) when split on {_delim_words(delim)}, but the "
                f"{'header' if header else 'first line'} has {n0:,}{hint}.",
                fix="use one separator throughout the file, and put values that contain the separator "
                    "in double quotes", source=name)


def _check_counts_fast(data: bytes, delim: str, n0: int, header: bool, name: str) -> None:
    """The same check on the whole file at numpy speed, for files without quotes; in windows of
    CHECK_WINDOW bytes cut at line ends, so a file of any size costs a few window-sized arrays."""
    arr = np.frombuffer(data, np.uint8)
    first_bad, n_bad, line0, start = None, 0, 0, 0
    while start < len(arr):
        stop = min(len(arr), start + CHECK_WINDOW)
        if stop < len(arr):
            cut = data.rfind(b"\n", start, stop)
            stop = cut + 1 if cut >= start else (data.find(b"\n", stop) + 1 or len(arr))
        bad, counts = _bad_lines(arr[start:stop], delim, n0)
        if len(bad) and first_bad is None:
            first_bad = (line0 + int(bad[0]), int(counts[bad[0]]))
        n_bad += len(bad)
        line0 += int(np.count_nonzero(arr[start:stop] == 10))
        start = stop
    if first_bad is not None:
        k, got = first_bad
        raise DataError(
            f"Line {k + 1} has {got:,} field(s) when split on {_delim_words(delim)}, but the "
            f"{'header' if header else 'first line'} has {n0:,}"
            f"{f' ({n_bad - 1:,} more lines disagree too)' if n_bad > 1 else ''}.",
            fix="use one separator throughout the file, and put values that contain the separator "
                "in double quotes", source=name)


def _bad_lines(arr: np.ndarray, delim: str, n0: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the non-blank lines of `arr` whose field count is not n0, every line's count)."""
    nl = np.flatnonzero(arr == 10)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(arr)]])
    if len(ends) > 1 and ends[-1] == starts[-1]:  # the window ends with a line end: no line after it
        starts, ends = starts[:-1], ends[:-1]
    dpos = np.flatnonzero(arr == ord(delim))
    counts = np.searchsorted(dpos, ends) - np.searchsorted(dpos, starts) + 1
    length = ends - starts
    cr = (length > 0) & (arr[np.maximum(ends - 1, 0)] == 13)
    blank = (length - cr) <= 0
    return np.flatnonzero(~blank & (counts != n0)), counts


def _blank(data: bytes) -> bool:
    """Empty or only white space, without the copy `data.strip()` would make of a big file."""
    return not data or data.isspace()


def _parse_text(data: bytes, name: str, header: bool | None,
                notes: list[str]) -> tuple[pd.DataFrame, str | None, bool]:
    """UTF-8 text -> (frame, delimiter, header found); `header=None` lets the values decide."""
    if _blank(data):
        raise DataError("The file is empty.", fix="choose a file that holds your data", source=name)
    if b"\r" in data:  # CRLF, old-Mac CR, and stray CRs that pandas would read inconsistently: all are line ends
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if (b"\n " in data or data.startswith(b" ")) and _BLANKISH.search(data):  # blank, not a row of empties
        data = _BLANKISH.sub(b"", data)
    sep_line = re.match(rb'"?sep=(.)"?[ ,;\t|]*\n', data)  # Excel's "sep=;" hint line above the header
    if sep_line:
        data = b"\n" + data[sep_line.end():]  # kept as a blank line, so line numbers in messages stay right
        notes.append(f"{name}: skipped the spreadsheet hint line 'sep={sep_line.group(1).decode('utf-8', 'replace')}' "
                     "at the top.")
    lead = len(data) - len(data.lstrip(b"\n"))  # blank lines above the header do not hide its width
    nl = data.find(b"\n", lead)
    first_line = data[lead: nl if nl >= 0 else len(data)]
    for d in DELIMITERS:
        n = first_line.count(d.encode()) + 1
        if n > MAX_COLUMNS:
            raise DataError(f"The first line has {n:,} columns (split on {_delim_words(d)}); at most "
                            f"{MAX_COLUMNS:,} are supported.",
                            fix="keep only the columns you need: user, item, time, labels and a few features",
                            source=name)
    if len(first_line) > MAX_HEADER_BYTES:
        raise DataError(f"The first line is {len(first_line) / 1e6:.1f} MB long with no line break, which is not "
                        "the start of a table.", fix="check that this is a CSV/TSV file with one row per line",
                        source=name)
    sample = data[: lead + len(first_line) + SNIFF_BYTES]
    truncated = len(sample) < len(data)
    if truncated and b"\n" in sample:
        sample = sample[: sample.rfind(b"\n") + 1]
    text = sample.decode("utf-8", errors="replace")
    refuse_markup(text, name)
    ctrl = len(sample.translate(None, _KEEP_BYTES))
    if ctrl > max(8, 0.01 * len(sample)):
        raise DataError("The file holds many control characters: it is binary, not a text table.",
                        fix="choose the CSV, TSV or Parquet file that holds your data", source=name)
    delim, quoting, recs = _sniff(text, truncated)
    if not recs:
        raise DataError("The file is empty.", fix="choose a file that holds your data", source=name)
    if header is None:
        header = _has_header(recs)
    sep = delim
    if delim == "::":
        data = data.replace(b"::", b"\x1f")
        sep = "\x1f"
    n0 = len(recs[0][1])
    whole_file_check = None  # pyarrow's reader checks every line's field count; this names the line when it refuses
    if delim is not None:
        _check_counts(recs, sep, header, name, text)
        if b'"' not in data or quoting == csv.QUOTE_NONE:
            def whole_file_check():
                _check_counts_fast(data, sep, n0, header, name)
    if header:
        names = [f.strip() for f in recs[0][1]]
        seen: dict[str, int] = {}
        for j, c in enumerate(names):
            if c and c in seen:
                raise DataError(f"The column name '{short(c)}' appears twice (columns {seen[c] + 1} and {j + 1}).",
                                fix="rename one of the two columns so every column name is different",
                                source=name)
            seen.setdefault(c, j)
        names = _dedupe([c or f"column{j + 1}" for j, c in enumerate(names)])
        blank_named = [names[j] for j, c in enumerate(recs[0][1]) if not c.strip()]
    else:
        names = [f"col{j + 1}" for j in range(n0)]
        blank_named = []
    df = _read_csv(data, lead, sep or "\x1f", header, names, quoting, name, whole_file_check)
    for c in df.columns:
        s = df[c].str.strip()
        df[c] = s.mask(s == "")
    for c in blank_named:  # a trailing separator on every line, or a spreadsheet's row numbers
        s = df[c]
        if s.isna().all():
            df = df.drop(columns=c)
        elif c == df.columns[0] and (num := vl.as_numeric(s)) is not None and \
                np.array_equal(num.to_numpy(), np.arange(len(s))):
            df = df.drop(columns=c)
            notes.append(f"{name}: dropped an unnamed first column holding row numbers.")
    if len(df) == 0:
        if header:
            raise DataError("The file has a header row but no data rows.",
                            fix="choose the file that holds the data, not just its column names", source=name)
        raise DataError("The file is empty.", fix="choose a file that holds your data", source=name)
    return df, delim, bool(header)


def _read_csv(data: bytes, lead: int, sep: str, header: bool, names: list[str], quoting: int,
              name: str, refused=None) -> pd.DataFrame:
    """Every field as text (the mapping types the columns later), with pyarrow's multi-threaded
    CSV reader, which also checks that every line has the header's number of fields. A file it
    refuses is checked by `refused()` (the line-by-line field count, which raises naming the
    line) and read again by pandas' parser, whose message names the line too."""
    quoted = quoting != csv.QUOTE_NONE and b'"' in data
    if quoted and data.count(b'"') % 2:  # a quote never closed: pyarrow would read the rest as one value
        return _read_csv_pandas(data, sep, header, names, quoting, name)
    try:
        table = pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)[lead:]),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if header else 0, use_threads=True,
                                           block_size=ARROW_BLOCK),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char='"' if quoting != csv.QUOTE_NONE else False,
                                             double_quote=True, newlines_in_values=quoted, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in names}, null_values=NA_VALUES,
                                                 strings_can_be_null=True, quoted_strings_can_be_null=True))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowKeyError):
        if refused is not None:
            refused()
        return _read_csv_pandas(data, sep, header, names, quoting, name)
    except MemoryError as e:
        raise DataError(f"The file could not be read as a table ({short(e, 120)}).",
                        fix="check that it is a plain CSV/TSV file", source=name) from None
    return arrow_to_pandas(table)


def arrow_to_pandas(table) -> pd.DataFrame:
    """An arrow table as a DataFrame, text as pandas' arrow-backed "str" (what its own reader
    gives, without a copy of every string into a Python object), freeing each arrow column as it
    is converted so the two never both hold the whole table."""
    as_str = pd.StringDtype("pyarrow", na_value=np.nan)
    return table.to_pandas(types_mapper={pa.string(): as_str, pa.large_string(): as_str}.get, split_blocks=True,
                           self_destruct=True)


def _read_csv_pandas(data: bytes, sep: str, header: bool, names: list[str], quoting: int, name: str) -> pd.DataFrame:
    """pandas' single-threaded parser: slower, but its errors give the line (and it reads the odd
    file pyarrow's stricter parser refuses)."""
    try:
        return pd.read_csv(
            _io.BytesIO(data), sep=sep, header=0 if header else None, names=names, dtype=str,
            keep_default_na=False, na_values=NA_VALUES, quoting=quoting, engine="c", skip_blank_lines=True,
            encoding="utf-8", index_col=False, on_bad_lines="error",
        )
    except pd.errors.ParserError as e:
        raise _parser_error(e, header, name) from None
    except (ValueError, UnicodeError, OverflowError, MemoryError, csv.Error) as e:
        raise DataError(f"The file could not be read as a table ({short(e, 120)}).",
                        fix="check that it is a plain CSV/TSV file", source=name) from None


def _dedupe(names: list[str]) -> list[str]:
    """Generated names ('column3') may collide with a real column called 'column3'."""
    out, seen = [], set()
    for c in names:
        while c in seen:
            c = c + "_"
        seen.add(c)
        out.append(c)
    return out


def _parser_error(e: Exception, header: bool, name: str) -> DataError:
    msg = str(e)
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
    if m:
        exp, line, saw = m.groups()
        return DataError(f"Line {line} has {saw} fields, but the {'header' if header else 'first line'} has {exp}.",
                         fix="use one separator throughout the file, and put values that contain the separator "
                             "in double quotes", source=name)
    m = re.search(r"EOF inside string starting at row (\d+)", msg)
    if m:
        return DataError(f"A quote mark (\") opened on line {int(m.group(1)) + 1} is never closed, so the rest "
                         "of the file would be read as one value.",
                         fix="close the quote, or remove the stray quote mark", source=name)
    return DataError(f"The file could not be read as a table ({short(msg.splitlines()[-1] if msg else e, 120)}).",
                     fix="check that it is a plain CSV/TSV file with one row per line", source=name)


def _parse_parquet(data: bytes, name: str) -> pd.DataFrame:
    try:
        pf = pq.ParquetFile(_io.BytesIO(data))
        schema = pf.schema_arrow
        if len(schema) > MAX_COLUMNS:
            raise DataError(f"The Parquet file has {len(schema):,} columns; at most {MAX_COLUMNS:,} are supported.",
                            fix="keep only the columns you need", source=name)
        nested = [f.name for f in schema if pa.types.is_nested(f.type)]
        if nested:
            raise DataError(f"Column(s) {', '.join(map(repr, nested[:5]))} hold nested values (lists or records), "
                            "which a flat table cannot have.",
                            fix="flatten them into plain columns (for lists, join the values with '|')", source=name)
        names = list(schema.names)
        dup = sorted({c for c in names if names.count(c) > 1})
        if dup:
            raise DataError(f"The column name '{dup[0]}' appears more than once.",
                            fix="rename the columns so each name is different", source=name)
        md = pf.metadata
        unpacked = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
        if unpacked > 4 * max_file_bytes():
            raise too_big(name, unpacked=True)
        df = arrow_to_pandas(pf.read(use_threads=True))  # typed columns, converted one by one
    except DataError:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError, MemoryError) as e:
        raise DataError(f"The Parquet file is damaged or unsupported ({short(e, 120)}).",
                        fix="write it again, or save the table as CSV", source=name) from None
    if len(df) == 0:
        raise DataError("The Parquet file has columns but no rows.", fix="choose the file that holds the data",
                        source=name)
    return _from_frame(df, name, copy=False)  # a stored index (e.g. item_id) becomes a column again


def _from_frame(df: pd.DataFrame, name: str, copy: bool = True) -> pd.DataFrame:
    """Checks on a frame's names and shape; `copy=False` for a frame this module made (Parquet):
    a caller's own DataFrame is copied, so nothing done here reaches it."""
    if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
        if df.index.name is not None or not (pd.api.types.is_integer_dtype(df.index)):
            df = df.reset_index()
    if copy:
        df = df.copy()
    df.attrs = {}  # the caller's own metadata is not carried into the Dataset
    if isinstance(df.columns, pd.MultiIndex):
        df.columns = ["_".join(map(str, c)) for c in df.columns]
    cols = [str(c) for c in df.columns]
    if len(cols) > MAX_COLUMNS:
        raise DataError(f"The table has {len(cols):,} columns; at most {MAX_COLUMNS:,} are supported.",
                        fix="keep only the columns you need", source=name)
    seen: dict[str, int] = {}
    for j, c in enumerate(cols):
        if c in seen:
            raise DataError(f"The column name '{short(c)}' appears twice (columns {seen[c] + 1} and {j + 1}).",
                            fix="rename one of the two columns", source=name)
        seen[c] = j
    df.columns = cols
    if len(df) == 0:
        raise DataError("The table has no rows.", fix="pass a table with data", source=name)
    nested = [c for c in cols if pd.api.types.is_object_dtype(df[c])
              and df[c].head(1000).map(lambda v: isinstance(v, (list, dict, tuple, set, np.ndarray))).any()]
    if nested:
        raise DataError(f"Column(s) {', '.join(map(repr, nested[:5]))} hold lists or records, not plain values.",
                        fix="flatten them (for lists, join the values with '|')", source=name)
    return df


@dataclass
class Table:
    """One table as read, with how it was read: what later stages need and the frame cannot hold.

    MovieLens recognition needs `header` and `delimiter` (ml-100k and ml-1m have no header row),
    the mapping guess needs `header` (a headerless file is user, item, ... by convention), and
    messages need `source` and whether rows are lines of a file (`line_header`).
    """
    frame: pd.DataFrame
    source: str  # the name shown in messages
    format: str  # "text" | "parquet" | "dataframe"
    header: bool  # the first line held column names (always True for Parquet and DataFrames)
    delimiter: str | None = None  # "," "\t" ";" "|" "::"; None for Parquet, DataFrames, one-column text
    encoding: str | None = None  # the text encoding found (e.g. "utf-8", "latin-1"); None when not text
    notes: list[str] = field(default_factory=list)  # what reading fixed on the way, for the Dataset's notes
    hint: str = ""  # the file's own base name, a hint at its format; "" for raw bytes and DataFrames

    @property
    def line_header(self) -> bool | None:
        """`header` when rows are lines of a text file (messages then give line numbers), else None."""
        return self.header if self.format == "text" else None


def read_one(source, role: str, name: str | None = None, header: bool | None = None) -> Table:
    """One table from one source (`role` names it in messages: "interactions", "items"...)."""
    obj = open_source(source, role, name)
    if isinstance(obj, pd.DataFrame):
        shown = name or f"{role.capitalize()} table"
        return Table(_from_frame(obj, shown), shown, "dataframe", header=True)
    if isinstance(obj, Blob):
        obj = unpack(obj)
    if isinstance(obj, Folder):
        listing = ", ".join(sorted(obj.files)[:12])
        raise DataError(f"'{obj.name}' holds several files ({listing}), and it is not a known set "
                        "(MovieLens or an exported world) in this position.",
                        fix=f"choose the one file that holds the {role}")
    blob: Blob = obj
    data = blob.data
    if _blank(data):
        raise DataError("The file is empty.", fix="choose a file that holds your data", source=blob.name)
    refuse_binary(data, blob.name)
    if data[:4] == b"PAR1":
        return Table(_parse_parquet(data, blob.name), blob.name, "parquet", header=True, hint=blob.hint)
    text, enc = decode(data, blob.name)
    notes: list[str] = []
    df, delim, has_header = _parse_text(text, blob.name, header, notes)
    return Table(df, blob.name, "text", has_header, delim, enc, notes, blob.hint)
