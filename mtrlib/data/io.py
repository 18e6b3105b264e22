"""Reading a user's files into one validated `Dataset`: `load`, `read_table`.

Everything a person might hand over is accepted the same way: a path, raw bytes, an open
file (what `st.file_uploader` gives; its `.name` is used only to guess the format and in
messages, never as a path), a pandas DataFrame, or a folder / zip holding a known set of
files (MovieLens, or the trio that `python -m mtrlib world` writes).

Reading is defensive because the files come from anyone: size is capped before and after
decompression (`MTR_MAX_FILE_MB`, default 200), the column count is capped before parsing,
encodings are detected (UTF-8, BOMs, UTF-16, Latin-1) and refused when they are none of
these, the delimiter is sniffed and checked on every line, and every failure becomes a
`DataError` that names the file, the line or column, and what to do.
"""
from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io as _io
import lzma
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import mapping as mp
from . import movielens as ml
from .dataset import Dataset
from .errors import DataError

DEFAULT_MAX_FILE_MB = 200
MAX_COLUMNS = 1000
MIN_INTERACTIONS = 5
SNIFF_BYTES = 64 * 1024
MAX_HEADER_BYTES = 1 << 20
DELIMITERS = [",", "\t", ";", "|"]
NA_VALUES = ["", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "#N/A", "<NA>"]
_DELIM_NAMES = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "'|' bars", "::": "'::'",
                "\x1f": "'::'"}
_SAFETY_NET = True  # tests switch it off so an unexpected exception shows up as the bug it is
_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"), (b"%PDF", "a PDF document"), (b"\xd0\xcf\x11\xe0", "an old-style Excel/Office file"),
    (b"SQLite format 3\x00", "an SQLite database"), (b"\x7fELF", "a program"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"), (b"ARROW1", "an Arrow/Feather file"), (b"OggS", "an audio file"),
    (b"ID3", "an MP3 file"), (b"\x00\x00\x01\x00", "an icon image"), (b"RIFF", "an audio or video file"),
    (b"PK\x05\x06", "an empty zip archive"),
]
_KEEP_BYTES = bytes(range(32, 256)) + b"\t\n\r\f"
_BLANKISH = re.compile(rb"(?m)^ +\r?$")


def max_file_bytes() -> int:
    """The size cap, from MTR_MAX_FILE_MB (megabytes; default 200)."""
    raw = os.environ.get("MTR_MAX_FILE_MB", "").strip()
    try:
        mb = float(raw) if raw else DEFAULT_MAX_FILE_MB
    except ValueError:
        mb = DEFAULT_MAX_FILE_MB
    if not mb > 0:
        mb = DEFAULT_MAX_FILE_MB
    return int(mb * 1024 * 1024)


def _cap_mb() -> str:
    return f"{max_file_bytes() / 1024 / 1024:g} MB"


def _too_big(name: str, size: int | None = None, unpacked: bool = False) -> DataError:
    what = (f"unpacks to more than {_cap_mb()}" if unpacked else
            f"is {size / 1024 / 1024:.1f} MB ({size:,} bytes)" if size is not None else f"is over {_cap_mb()}")
    return DataError(
        f"The file {what}, over the {_cap_mb()} limit for one file.",
        fix="use a smaller file (for example a sample of the rows), or raise the limit by setting the "
            "environment variable MTR_MAX_FILE_MB (e.g. MTR_MAX_FILE_MB=500) before starting the app or command",
        source=name)


# ------------------------------------------------------------------ sources


@dataclass
class _Blob:
    """The bytes of one file plus the name shown in messages and used to recognise formats."""
    data: bytes
    name: str
    hint: str = ""


@dataclass
class _Folder:
    """A folder, or an archive with several files: basename -> Path or a function giving a _Blob."""
    files: dict
    name: str


def _n(k: int, noun: str) -> str:
    """'1 movie', '18 movies': notes are read by people."""
    singular = noun[:-1] if noun.endswith("s") else noun
    plural = noun if noun.endswith("s") else noun + "s"
    return f"{k:,} {singular if k == 1 else plural}"


def _short(x, n: int = 60) -> str:
    x = str(x)
    return x if len(x) <= n else x[: n - 3] + "..."


def _open(source, role: str, name: str | None = None):
    """Any accepted source -> DataFrame, _Blob or _Folder (size-capped, never trusting `.name`)."""
    cap = max_file_bytes()
    if isinstance(source, pd.DataFrame):
        return source
    if callable(source) and not hasattr(source, "read"):
        return source()
    if isinstance(source, _Blob | _Folder):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        shown = name or f"{role.capitalize()} data"
        if len(data) > cap:
            raise _too_big(shown, len(data))
        return _Blob(data, shown, name or "")
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if "\n" in text or len(text) > 4096:
            raise DataError("The text given is not the path of a file.",
                            fix="pass a file path, an uploaded file, raw bytes or a DataFrame")
        p = Path(text).expanduser()
        shown = name or p.name or text
        try:
            if p.is_dir():
                files = {c.name: c for c in sorted(p.iterdir()) if c.is_file() and not c.name.startswith(".")}
                return _Folder(files, name or p.name)
            if not p.exists():
                raise DataError(f"File not found: {p}", fix="check the path and the file name", source=None)
            size = p.stat().st_size
            if size > cap:
                raise _too_big(shown, size)
            with open(p, "rb") as f:
                data = f.read(cap + 1)
        except PermissionError:
            raise DataError(f"Permission denied when reading {p}.", fix="check the file's permissions") from None
        except OSError as e:
            raise DataError(f"Could not read {p}: {e.strerror or e}.", fix="check the path") from None
        if len(data) > cap:
            raise _too_big(shown, len(data))
        return _Blob(data, shown, p.name)
    if hasattr(source, "read"):
        fname = getattr(source, "name", None)
        base = os.path.basename(str(fname)) if isinstance(fname, (str, os.PathLike)) and str(fname) else ""
        shown = name or base or f"Uploaded {role} file"
        try:
            if hasattr(source, "seek"):
                try:
                    source.seek(0)
                except (OSError, ValueError):
                    pass
            try:
                data = source.read(cap + 1)
            except TypeError:
                data = source.read()
        except (OSError, ValueError) as e:
            raise DataError(f"Could not read the uploaded file: {e}.", fix="upload it again", source=shown) from None
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray)):
            raise DataError("The uploaded object did not give bytes when read.", fix="upload a file", source=shown)
        data = bytes(data)
        if len(data) > cap:  # only cap + 1 bytes were read: ask the object for its real size
            size = getattr(source, "size", None)  # st.file_uploader's UploadedFile has .size
            if not isinstance(size, int):
                try:
                    size = source.seek(0, os.SEEK_END)
                except (AttributeError, OSError, ValueError, TypeError):
                    size = None
            raise _too_big(shown, size if isinstance(size, int) and size > cap else None)
        return _Blob(data, shown, name or base)
    raise DataError(f"Cannot read data from a {type(source).__name__}.",
                    fix="pass a file path, an uploaded file, raw bytes or a pandas DataFrame")


def _read_capped(stream, name: str) -> bytes:
    out = stream.read(max_file_bytes() + 1)
    if len(out) > max_file_bytes():
        raise _too_big(name, unpacked=True)
    return out


def _unpack(blob: _Blob, depth: int = 0):
    """gzip / bz2 / xz / zip -> the file inside (capped); a zip of several files -> _Folder."""
    data, name = blob.data, blob.name
    inner_hint = re.sub(r"\.(gz|gzip|bz2|xz|zip)$", "", blob.hint, flags=re.I)
    opener = None
    if data[:2] == b"\x1f\x8b":
        opener, what = (lambda f: gzip.GzipFile(fileobj=f)), "gzip"
    elif re.match(rb"BZh[1-9](1AY&SY|\x17rE8P\x90)", data[:10]):
        opener, what = bz2.BZ2File, "bz2"
    elif data[:6] == b"\xfd7zXZ\x00":
        opener, what = lzma.LZMAFile, "xz"
    if opener is not None:
        if depth > 1:
            raise DataError("The file is compressed several times over.", fix="unpack it first", source=name)
        try:
            with opener(_io.BytesIO(data)) as f:
                out = _read_capped(f, name)
        except DataError:
            raise
        except (EOFError, OSError, ValueError, lzma.LZMAError, zipfile.BadZipFile) as e:
            raise DataError(f"The {what} archive is damaged or cut short ({_short(e, 80)}).",
                            fix="download or copy the file again", source=name) from None
        return _unpack(_Blob(out, name, inner_hint), depth + 1)
    if data[:4] == b"PK\x03\x04":
        if depth > 1:
            raise DataError("The archive holds another archive.", fix="unpack it first", source=name)
        try:
            zf = zipfile.ZipFile(_io.BytesIO(data))
            infos = zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DataError(f"The zip archive is damaged ({_short(e, 80)}).", fix="download or copy it again",
                            source=name) from None
        names = {i.filename for i in infos}
        if "[Content_Types].xml" in names and any(n.startswith("xl/") for n in names):
            raise DataError("This is an Excel workbook, not a CSV table.",
                            fix="open it in Excel or LibreOffice and save the sheet as 'CSV UTF-8'", source=name)
        members = [i for i in infos if not i.is_dir() and not i.filename.startswith("__MACOSX/")
                   and not os.path.basename(i.filename).startswith(".")]
        if not members:
            raise DataError("The zip archive holds no files.", fix="zip the data file itself", source=name)

        def reader(info):
            def get():
                try:
                    with zf.open(info) as f:
                        out = _read_capped(f, name)
                except DataError:
                    raise
                except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError) as e:
                    raise DataError(f"Could not unpack '{info.filename}' from the zip ({_short(e, 80)}).",
                                    fix="unpack it yourself (it may be encrypted or damaged) and load the file",
                                    source=name) from None
                return _unpack(_Blob(out, f"{name}/{os.path.basename(info.filename)}",
                                     os.path.basename(info.filename)), depth + 1)
            return get
        if len(members) == 1:
            return reader(members[0])()
        files = {}
        for i in members:
            files.setdefault(os.path.basename(i.filename), reader(i))
        return _Folder(files, inner_hint or name)
    return blob


# ------------------------------------------------------------------ parsing


def _refuse_binary(data: bytes, name: str) -> None:
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise DataError(f"This is {what}, not a table.",
                            fix="choose the CSV, TSV or Parquet file that holds your data", source=name)
    if data[257:262] == b"ustar":
        raise DataError("This is a tar archive, not a table.", fix="unpack it and load the data file inside",
                        source=name)


def _decode(data: bytes, name: str) -> tuple[bytes, str]:
    """-> (UTF-8 bytes, encoding found). Refuses text that is neither UTF-8/16/32 nor Latin-1."""
    for bom, enc in ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                     (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return _redecode(data, enc, name), enc
    head = data[:4096]
    if len(head) >= 8:
        even, odd = head[0::2], head[1::2]
        ez, oz = even.count(0) / len(even), odd.count(0) / len(odd)
        if oz > 0.3 and ez < 0.05:
            return _redecode(data, "utf-16-le", name), "utf-16-le"
        if ez > 0.3 and oz < 0.05:
            return _redecode(data, "utf-16-be", name), "utf-16-be"
    enc = "utf-8"
    if data.startswith(b"\xef\xbb\xbf"):
        data, enc = data[3:], "utf-8-sig"
    if b"\x00" in data:
        ln = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise DataError(f"The file contains NUL bytes (first on line {ln}): it is a binary file or text in an "
                        "unusual encoding, not a plain-text table.",
                        fix="save it as 'CSV UTF-8' from a spreadsheet or text editor", source=name)
    dec = codecs.getincrementaldecoder("utf-8")()
    step = 1 << 22
    view = memoryview(data)
    bad = None
    try:
        for off in range(0, len(data), step):
            dec.decode(view[off: off + step], final=off + step >= len(data))
    except UnicodeDecodeError as e:
        bad = off + e.start
    if bad is None:
        return data, enc
    c1 = re.search(rb"[\x80-\x9f]", data)
    if c1 is not None:
        pos = c1.start()
        bad_line, pos_line = data.count(b"\n", 0, bad) + 1, data.count(b"\n", 0, pos) + 1
        raise DataError(
            f"The file is not in a text encoding that can be read: it is not UTF-8 (byte 0x{data[bad]:02x} on line "
            f"{bad_line}) and not Latin-1 either (control byte 0x{data[pos]:02x} on line {pos_line}).",
            fix="open it in a spreadsheet or text editor and save it as 'CSV UTF-8'", source=name)
    return data.decode("latin-1").encode("utf-8"), "latin-1"


def _redecode(data: bytes, enc: str, name: str) -> bytes:
    try:
        text = data.decode(enc)
    except UnicodeDecodeError as e:
        raise DataError(f"The file looks like {enc.upper()} text but is damaged at byte {e.start}.",
                        fix="save it again as 'CSV UTF-8'", source=name) from None
    text = text.lstrip("\ufeff")
    if "\x00" in text:
        raise DataError("The file contains NUL characters: it is not a plain-text table.",
                        fix="save it as 'CSV UTF-8'", source=name)
    return text.encode("utf-8")


def _refuse_markup(text: str, name: str) -> None:
    s = text.lstrip("\ufeff \t\r\n")[:2000].lower()
    if not s:
        return
    if s.startswith("<!doctype html") or s.startswith("<html") or (
            s.startswith("<") and any(t in s for t in ("<html", "<head", "<body", "<div", "<table", "<script"))):
        raise DataError("This is a web page (HTML), not a table.",
                        fix="save the data file itself (often a 'Download' or 'Raw' link), not the page showing it",
                        source=name)
    if s.startswith("<?xml") or s.startswith("<"):
        raise DataError("This is an XML document, not a table.", fix="export the data as CSV", source=name)
    if s[0] in "{[":
        first_line = s.split("\n", 1)[0]
        if s[0] == "{" or '"' in first_line or first_line.strip() in ("[", "[{"):
            raise DataError("This is JSON, not a table.",
                            fix="export the data as CSV: one row per interaction, one column per field",
                            source=name)


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
                first = _short((delim or "").join(recs[0][1]), 40)
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
    """The same check on the whole file at numpy speed, for files without quotes."""
    arr = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(arr == 10)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(arr)]])
    dpos = np.flatnonzero(arr == ord(delim))
    counts = np.searchsorted(dpos, ends) - np.searchsorted(dpos, starts) + 1
    length = ends - starts
    cr = (length > 0) & (arr[np.maximum(ends - 1, 0)] == 13)
    blank = (length - cr) <= 0
    bad = np.flatnonzero(~blank & (counts != n0))
    if len(bad):
        k = int(bad[0])
        raise DataError(
            f"Line {k + 1} has {int(counts[k]):,} field(s) when split on {_delim_words(delim)}, but the "
            f"{'header' if header else 'first line'} has {n0:,}"
            f"{f' ({len(bad) - 1:,} more lines disagree too)' if len(bad) > 1 else ''}.",
            fix="use one separator throughout the file, and put values that contain the separator "
                "in double quotes", source=name)


def _parse_text(data: bytes, name: str, header: bool | None, notes: list[str]) -> pd.DataFrame:
    if not data.strip():
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
    _refuse_markup(text, name)
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
    if delim is not None:
        _check_counts(recs, sep, header, name, text)
        if b'"' not in data or quoting == csv.QUOTE_NONE:
            _check_counts_fast(data, sep, len(recs[0][1]), header, name)
    n0 = len(recs[0][1])
    if header:
        names = [f.strip() for f in recs[0][1]]
        seen: dict[str, int] = {}
        for j, c in enumerate(names):
            if c and c in seen:
                raise DataError(f"The column name '{_short(c)}' appears twice (columns {seen[c] + 1} and {j + 1}).",
                                fix="rename one of the two columns so every column name is different",
                                source=name)
            seen.setdefault(c, j)
        names = _dedupe([c or f"column{j + 1}" for j, c in enumerate(names)])
        blank_named = [names[j] for j, c in enumerate(recs[0][1]) if not c.strip()]
    else:
        names = [f"col{j + 1}" for j in range(n0)]
        blank_named = []
    try:
        df = pd.read_csv(
            _io.BytesIO(data), sep=sep or "\x1f", header=0 if header else None, names=names, dtype=str,
            keep_default_na=False, na_values=NA_VALUES, quoting=quoting, engine="c", skip_blank_lines=True,
            encoding="utf-8", index_col=False, on_bad_lines="error",
        )
    except pd.errors.ParserError as e:
        raise _parser_error(e, header, name) from None
    except (ValueError, UnicodeError, OverflowError, MemoryError, csv.Error) as e:
        raise DataError(f"The file could not be read as a table ({_short(e, 120)}).",
                        fix="check that it is a plain CSV/TSV file", source=name) from None
    for c in df.columns:
        s = df[c].str.strip()
        df[c] = s.mask(s == "")
    for c in blank_named:  # a trailing separator on every line, or a spreadsheet's row numbers
        s = df[c]
        if s.isna().all():
            df = df.drop(columns=c)
        elif c == df.columns[0] and (num := mp.as_numeric(s)) is not None and \
                np.array_equal(num.to_numpy(), np.arange(len(s))):
            df = df.drop(columns=c)
            notes.append(f"{name}: dropped an unnamed first column holding row numbers.")
    if len(df) == 0:
        if header:
            raise DataError("The file has a header row but no data rows.",
                            fix="choose the file that holds the data, not just its column names", source=name)
        raise DataError("The file is empty.", fix="choose a file that holds your data", source=name)
    df.attrs["mtr"] = {"delimiter": delim, "header": bool(header)}
    return df


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
    return DataError(f"The file could not be read as a table ({_short(msg.splitlines()[-1] if msg else e, 120)}).",
                     fix="check that it is a plain CSV/TSV file with one row per line", source=name)


def _parse_parquet(data: bytes, name: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq
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
            raise _too_big(name, unpacked=True)
        df = pf.read().to_pandas()
    except DataError:
        raise
    except (pa.ArrowException, OSError, ValueError, TypeError, MemoryError) as e:
        raise DataError(f"The Parquet file is damaged or unsupported ({_short(e, 120)}).",
                        fix="write it again, or save the table as CSV", source=name) from None
    if len(df) == 0:
        raise DataError("The Parquet file has columns but no rows.", fix="choose the file that holds the data",
                        source=name)
    return _from_frame(df, name)  # a stored index (e.g. item_id) becomes a column again


def _from_frame(df: pd.DataFrame, name: str) -> pd.DataFrame:
    if not isinstance(df.index, pd.RangeIndex) or df.index.name is not None:
        if df.index.name is not None or not (pd.api.types.is_integer_dtype(df.index)):
            df = df.reset_index()
    df = df.copy()
    if isinstance(df.columns, pd.MultiIndex):
        df.columns = ["_".join(map(str, c)) for c in df.columns]
    cols = [str(c) for c in df.columns]
    if len(cols) > MAX_COLUMNS:
        raise DataError(f"The table has {len(cols):,} columns; at most {MAX_COLUMNS:,} are supported.",
                        fix="keep only the columns you need", source=name)
    seen: dict[str, int] = {}
    for j, c in enumerate(cols):
        if c in seen:
            raise DataError(f"The column name '{_short(c)}' appears twice (columns {seen[c] + 1} and {j + 1}).",
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
    df.attrs["mtr"] = {"delimiter": None, "header": True}
    return df


def _table(source, role: str, name: str | None = None, header: bool | None = None) -> pd.DataFrame:
    """One table from one source; attrs["mtr"] records how it was read and the notes about it."""
    obj = _open(source, role, name)
    if isinstance(obj, pd.DataFrame):
        shown = name or f"{role.capitalize()} table"
        df = _from_frame(obj, shown)
        df.attrs["mtr"].update(source=shown, format="dataframe", encoding=None, notes=[], hint="")
        return df
    if isinstance(obj, _Blob):
        obj = _unpack(obj)
    if isinstance(obj, _Folder):
        listing = ", ".join(sorted(obj.files)[:12])
        raise DataError(f"'{obj.name}' holds several files ({listing}), and it is not a known set "
                        "(MovieLens or an exported world) in this position.",
                        fix=f"choose the one file that holds the {role}")
    blob: _Blob = obj
    notes: list[str] = []
    data = blob.data
    if not data.strip():
        raise DataError("The file is empty.", fix="choose a file that holds your data", source=blob.name)
    _refuse_binary(data, blob.name)
    if data[:4] == b"PAR1":
        df = _parse_parquet(data, blob.name)
        df.attrs["mtr"].update(source=blob.name, format="parquet", encoding=None, notes=notes, hint=blob.hint)
        return df
    text, enc = _decode(data, blob.name)
    df = _parse_text(text, blob.name, header, notes)
    df.attrs["mtr"].update(source=blob.name, format="text", encoding=enc, notes=notes, hint=blob.hint)
    return df


def read_table(source, *, name: str | None = None, header: bool | None = None) -> pd.DataFrame:
    """Read one file (path, bytes, upload or DataFrame) into a DataFrame of stripped strings.

    For previews and the column-mapping form; `load` does the validation and typing. How the
    file was read (delimiter, header, encoding) is in `df.attrs["mtr"]`.
    """
    return _table(source, "data", name=name, header=header)


# ------------------------------------------------------------------ side tables


@dataclass
class _Side:
    table: pd.DataFrame  # indexed by normalised id
    kinds: dict
    title: str | None
    source: str


def _id_strings(s: pd.Series) -> pd.Series:
    """Lenient id normalisation for matching columns (never raises)."""
    if pd.api.types.is_float_dtype(s):
        arr = s.to_numpy(dtype=float, na_value=np.nan)
        ok = np.isfinite(arr) & (np.floor(arr) == arr) & (np.abs(arr) < 2**63)
        out = s.astype("str")
        out[ok] = arr[ok].astype(np.int64).astype(str)
        return out
    return s.astype("str").str.strip().str.replace(mp._INTEGRAL, r"\1", regex=True)


def _side(source, what: str, inter_ids: pd.Index, item_cols: list, mapping: dict, notes: list[str]) -> _Side:
    """One items/users source -> table indexed by id, with kinds (MovieLens recognised)."""
    role = f"{what}s"
    raw = _table(source, role)
    meta = raw.attrs["mtr"]
    src = meta["source"]
    header = meta["header"]
    notes += meta["notes"]
    kind = ml.recognise(raw)
    if meta.get("encoding") == "latin-1" and kind is None:  # expected for MovieLens, worth saying otherwise
        notes.append(f"Read {src} as Latin-1 (it is not UTF-8).")
    kinds, title = None, None
    if kind is not None:
        if ml.ROLES[kind] != role:
            raise DataError(f"This looks like the MovieLens {ml.ROLES[kind]} table, but it was given as the {role} "
                            "table.", fix=f"give it as the {ml.ROLES[kind]} file instead", source=src)
        if what == "item":
            raw, key, kinds, title = ml.items(raw, kind)
        else:
            raw, key, kinds = ml.users(raw, kind)
    else:
        key = mapping.get(f"{what}_table_id")
        if key is not None and key not in raw.columns:
            raise DataError(f"The column mapping names '{key}' as the {what} id column, but there is no such column. "
                            f"The columns are: {', '.join(map(str, raw.columns))}.",
                            fix="choose one of those columns", source=src)
        if key is None:
            names = mp.ITEM_NAMES if what == "item" else mp.USER_NAMES
            words = mp.ITEM_WORDS if what == "item" else mp.USER_WORDS
            key = mp.find_id_column(raw, item_cols, names, words)
        if key is None and raw.shape[1] == 1:
            key = raw.columns[0]
        if key is None:
            wanted = set(inter_ids)
            overlap = {c: float(_id_strings(raw[c].dropna()).isin(wanted).mean()) if raw[c].notna().any() else 0.0
                       for c in list(raw.columns)[:50]}
            best = max(overlap, key=overlap.get) if overlap else None
            if best is None or overlap[best] == 0:
                raise DataError(
                    f"Could not tell which column holds the {what} ids: no column is named like one and no column's "
                    f"values match the {what} ids of the interactions. The columns are: "
                    f"{', '.join(map(str, raw.columns))}.",
                    fix=f"name the id column '{what}_id', or choose it in the column mapping "
                        f"('{what}_table_id')", source=src)
            key = best
    lines = header if meta.get("format") == "text" else None  # a DataFrame or Parquet file has rows, not lines
    ids = mp.normalise_ids(raw[key], source=src, column=str(key), what=what, header=lines, every="row")
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any() and kind is None:
        tagcol = mp._find([c for c in raw.columns if c != key], ["tag", "tags", "keyword", "keywords", "label"])
        if tagcol is not None and what == "item":
            t = pd.DataFrame({"movieId": ids.to_numpy(), "tag": raw[tagcol].to_numpy()})
            agg = ml.tags(t)
            raw = agg.rename(columns={"tags": str(tagcol)})
            key, ids, kinds = "item_id", agg["item_id"], {str(tagcol): "text"}
            dup = np.zeros(len(ids), bool)
    if dup.any():
        first = ids.iloc[int(np.flatnonzero(dup)[0])]
        where = np.flatnonzero((ids == first).to_numpy())
        n_rep = int(ids.duplicated().sum())
        raise DataError(
            f"The {what} id '{_short(first)}' appears on more than one row (data rows "
            f"{', '.join(str(r + 1) for r in where[:5])}); {_n(n_rep, 'row')} {'repeats' if n_rep == 1 else 'repeat'} "
            f"an earlier id. The {what}s table needs exactly one row per {what}.",
            fix=f"remove the repeated rows, or merge them into one row per {what}", source=src)
    matched = int(pd.Index(ids).isin(inter_ids).sum())
    if matched == 0:
        ex_side = ", ".join(f"'{_short(x, 20)}'" for x in ids.iloc[:3])
        ex_inter = ", ".join(f"'{_short(x, 20)}'" for x in inter_ids[:3])
        raise DataError(
            f"None of the {len(ids):,} {what} ids in column '{key}' appears in the interactions "
            f"(this table has ids like {ex_side}; the interactions have {ex_inter}).",
            fix=f"check that the files belong together and that '{key}' is the {what} id column", source=src)
    table = raw.drop(columns=[key])
    table.index = pd.Index(ids.to_numpy(), name=f"{what}_id", dtype="str")
    table.attrs = {}
    feats = mapping.get(f"{what}_features")
    if kinds is None:
        kinds = mp.guess_kinds(table)
    if feats is not None:
        kinds = {c: k for c, k in feats.items() if c in table.columns}
    for c, k in kinds.items():  # numbers read from text become numbers (zip codes etc. stay text)
        if k == "numeric" and c in table.columns:
            table[c] = mp.to_numeric_where_possible(table[c])
    if title is None and what == "item":
        title = mp.guess_title(table, kinds)
    return _Side(table, {c: k for c, k in kinds.items() if c in table.columns}, title, src)


def _combine(sides: list[_Side], what: str) -> _Side | None:
    """Several sources for one side (movies + tags) -> one table, outer-joined on id, order kept."""
    if not sides:
        return None
    table = sides[0].table
    kinds = dict(sides[0].kinds)
    title = sides[0].title
    for s in sides[1:]:
        idx = table.index.append(s.table.index[~s.table.index.isin(table.index)])
        table = table.reindex(idx)
        other = s.table.reindex(idx)
        for c in other.columns:
            name = c if c not in table.columns else f"{c}_{len(table.columns)}"
            table[name] = other[c].to_numpy()
            if c in s.kinds:
                kinds[name] = s.kinds[c]
        title = title or s.title
        table.index.name = f"{what}_id"
    return _Side(table, kinds, title, " + ".join(dict.fromkeys(s.source for s in sides)))


def _catalogue(side: _Side | None, attrs: pd.DataFrame | None, used: pd.Index, what: str, noun: str, event: str,
               notes: list[str]) -> pd.DataFrame:
    """Side table covering every id seen in the interactions; catalogue-only ids are kept."""
    if side is None and attrs is None:
        return pd.DataFrame(index=pd.Index(used, name=f"{what}_id", dtype="str"))
    if side is None:
        table = attrs.reindex(used)
        table.index.name = f"{what}_id"
        return table
    table = side.table
    if attrs is not None:
        for c in attrs.columns:
            if c in table.columns:
                notes.append(f"Column '{c}' is in both the interactions and {side.source}; the latter is used.")
                continue
            table[c] = attrs[c].reindex(table.index).to_numpy()
    extra = used[~used.isin(table.index)]
    unused = int((~table.index.isin(used)).sum())
    if len(extra):
        notes.append(f"{_n(len(extra), noun)} in the interactions {'is' if len(extra) == 1 else 'are'} missing "
                     f"from {side.source}; {'it gets' if len(extra) == 1 else 'they get'} empty attributes.")
        table = table.reindex(table.index.append(pd.Index(extra, dtype="str")))
        if attrs is not None:  # every attrs column is in table (added above) and in fill
            fill = attrs.reindex(extra)
            for c in attrs.columns:
                table.loc[extra, c] = fill[c].to_numpy()
    if unused:
        notes.append(f"{_n(unused, noun)} {'has' if unused == 1 else 'have'} no {event}; kept in the catalogue.")
    table.index.name = f"{what}_id"
    return table


# ------------------------------------------------------------------ load


def _resolve_folder(folder: _Folder) -> tuple:
    """A folder or multi-file zip -> (interactions source, item sources, users source, name)."""
    files = {k.lower(): v for k, v in folder.files.items()}
    for inter, item_files, user_file in ml.FOLDERS:
        if inter in files:
            items = [files[f] for f in item_files if f in files] or None
            users = files.get(user_file) if user_file else None
            return files[inter], items, users, folder.name
    for ext in ("csv", "tsv", "parquet", "csv.gz", "txt"):
        if f"interactions.{ext}" in files:
            items = files.get(f"items.{ext}")
            users = files.get(f"users.{ext}")
            return files[f"interactions.{ext}"], items, users, folder.name
    listing = ", ".join(sorted(folder.files)[:12]) or "(no files)"
    raise DataError(
        f"The folder '{folder.name}' holds no set of files that is recognised ({listing}).",
        fix="choose the interactions file itself, or a MovieLens folder (ratings.csv + movies.csv, u.data, "
            "ratings.dat) or a folder with interactions.csv (+ items.csv, users.csv)")


def _missing_column(what: str, cols, src: str) -> DataError:
    return DataError(
        f"Could not find {'an' if what == 'item' else 'a'} {what} column. "
        f"The columns are: {', '.join(repr(str(c)) for c in cols)}.",
        fix=f"rename the column that holds the {what} id to '{what}_id', or choose it in the column mapping "
            f"(mapping={{'{what}': 'COLUMN'}}); if the file has no header row, add one", source=src)


def load(interactions, items=None, users=None, *, mapping: dict | None = None, name: str | None = None) -> Dataset:
    """Read, recognise and validate interactions (+ item and user side tables) into a Dataset.

    `items` may be one source or a list (e.g. movies.csv and tags.csv); `interactions` may be a
    folder or zip holding a MovieLens release or an exported world. Any problem is a DataError.
    """
    try:
        return _load(interactions, items, users, mapping, name)
    except DataError:
        raise
    except Exception as e:  # the last line of defence: the user sees a message, never a traceback
        if not _SAFETY_NET:
            raise
        raise DataError(f"The data could not be read ({type(e).__name__}: {_short(e, 200)}).",
                        fix="check that the files are plain tables (CSV, TSV or Parquet); if this persists, "
                            "report this message") from e


@dataclass
class _Mapped:
    """The interactions in canonical form, plus what the side tables need to join onto them."""
    inter: pd.DataFrame
    mapping: dict  # the effective mapping (guesses overridden by the user's)
    layout: str
    item_cols: list  # names the item id may have in a side table (e.g. movieId, item_id)
    user_cols: list
    moved: dict  # "item"/"user" -> attributes found constant per id in the interactions


def _map_interactions(raw: pd.DataFrame, mapping: dict | None, notes: list[str]) -> _Mapped:
    """Recognise (MovieLens) or map (generic) the interactions table, then canonicalise it."""
    meta = raw.attrs["mtr"]
    src, header = meta["source"], meta["header"]
    if raw.shape[1] < 2:
        raise DataError(
            f"The file has only one column ('{_short(raw.columns[0])}'). An interactions table needs at least a "
            "user column and an item column.",
            fix="if the values are separated by something other than commas, tabs, semicolons, '|' or '::', "
                "save the file as CSV", source=src)
    kind = ml.recognise(raw) if not mapping else None
    if kind is not None and ml.ROLES[kind] != "interactions":
        raise DataError(f"This looks like the MovieLens {ml.ROLES[kind]} table, not the ratings.",
                        fix=f"give the ratings file as the interactions, and this one as the {ml.ROLES[kind]}",
                        source=src)
    explicit = mp.check_mapping(mapping, raw.columns, source=src) if mapping else {}
    if kind is not None:
        raw, m, orig_item = ml.ratings(raw, kind)
        orig_user = "userId" if kind == "ml-latest-ratings" else "user_id"
        layout, strict_ts = ml.layout_of(kind), True
    else:
        m = mp.guess_mapping(raw)
        m.update(explicit)
        orig_item, orig_user = m["item"], m["user"]
        layout, strict_ts = "generic", "timestamp" in explicit
        if m.get("timestamp") is None and "timestamp" not in explicit:
            looks = mp._find([c for c in raw.columns if c not in (m["user"], m["item"])], mp.TIME_NAMES)
            if looks is not None:
                notes.append(f"Column '{looks}' looks like a time but could not be read as one; it is kept as a "
                             "plain column (choose it in the column mapping to see which row is wrong).")
        if header is False and not explicit and m["user"] is not None and m["item"] is not None:
            notes.append(f"No header row in {src}: column {raw.columns.get_loc(m['user']) + 1} was taken as the "
                         f"user, column {raw.columns.get_loc(m['item']) + 1} as the item.")
    for what in ("user", "item"):
        if m.get(what) is None:
            raise _missing_column(what, raw.columns, src)
    if m["user"] == m["item"]:
        raise DataError(f"The same column '{m['user']}' is mapped as both user and item.",
                        fix="choose two different columns", source=src)

    lines = header if meta.get("format") == "text" else None  # a DataFrame or Parquet file has rows, not lines
    uid = mp.normalise_ids(raw[m["user"]], source=src, column=str(m["user"]), what="user", header=lines)
    iid = mp.normalise_ids(raw[m["item"]], source=src, column=str(m["item"]), what="item", header=lines)
    inter = pd.DataFrame({"user_id": uid.to_numpy(), "item_id": iid.to_numpy()}).astype("str")
    used = {m["user"], m["item"]}
    ts = m.get("timestamp")
    if ts is not None:
        secs = mp.to_epoch_seconds(raw[ts], source=src, column=str(ts), header=lines, strict=strict_ts)
        if secs is None:
            notes.append(f"Column '{ts}' looks like a time but could not be read as one; it is kept as a plain "
                         "column (choose it in the column mapping to see which row is wrong).")
        else:
            inter["timestamp"] = secs
            used.add(ts)
    moved = {}
    for what, key in (("item", iid), ("user", uid)):  # attributes of the item/user, not of the event
        feats = [c for c in (m.get(f"{what}_features") or {}) if c in raw.columns and c not in used]
        if feats:
            block = raw[feats].reset_index(drop=True)
            block.index = pd.Index(key.to_numpy(), dtype="str")
            nun = block.groupby(level=0, sort=False).nunique()
            varying = [c for c in feats if int(nun[c].max()) > 1]
            if varying:
                notes.append(f"Column(s) {', '.join(varying)} vary within one {what}; the first value is used.")
            moved[what] = block.groupby(level=0, sort=False).first()
            used.update(feats)
    for c in raw.columns:
        if c in used:
            continue
        target = c if c not in ("user_id", "item_id", "timestamp") else f"{c}_original"
        if target != c:
            notes.append(f"Column '{c}' was renamed '{target}' (the name is used for the mapped column).")
        inter[target] = mp.to_numeric_where_possible(raw[c]).reset_index(drop=True)
    _check_size(inter, src, notes)
    return _Mapped(inter, m, layout, [orig_item, "item_id"], [orig_user, "user_id"], moved)


def _check_size(inter: pd.DataFrame, src: str, notes: list[str]) -> None:
    """Too little data to do anything with is an error; repeated rows are worth a note."""
    n = len(inter)
    if n < MIN_INTERACTIONS:
        raise DataError(f"The file has only {n} interaction row(s); at least {MIN_INTERACTIONS} are needed.",
                        fix="use a larger file", source=src)
    for what in ("user", "item"):
        if inter[f"{what}_id"].nunique() < 2:
            raise DataError(f"Every row has the same {what} ('{_short(inter[f'{what}_id'].iloc[0])}'): a recommender "
                            f"needs at least 2 {what}s.",
                            fix=f"check that the {what} column is the right one, or use more data", source=src)
    dups = int(inter.duplicated().sum())
    if dups:
        notes.append(f"{_n(dups, 'row')} {'is an exact repeat' if dups == 1 else 'are exact repeats'} of earlier "
                     "rows; kept (remove them first if they are mistakes).")


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else ([] if x is None else [x])


def _load(interactions, items, users, mapping, name) -> Dataset:
    notes: list[str] = []
    if interactions is None:
        raise DataError("No interactions data was given.",
                        fix="choose the file with one row per user-item interaction (e.g. ratings.csv)")
    src_obj = _open(interactions, "interactions")
    if isinstance(src_obj, _Blob):
        src_obj = _unpack(src_obj)
    if isinstance(src_obj, _Folder):  # MovieLens release or exported world: the folder names the parts
        inter_src, f_items, f_users, folder_name = _resolve_folder(src_obj)
        items = f_items if items is None else items
        users = f_users if users is None else users
        name = name or folder_name
        src_obj = inter_src
    raw = _table(src_obj, "interactions")
    src = raw.attrs["mtr"]["source"]
    notes += raw.attrs["mtr"]["notes"]
    if raw.attrs["mtr"].get("encoding") == "latin-1" and ml.recognise(raw) is None:
        notes.append(f"Read {src} as Latin-1 (it is not UTF-8).")
    mapped = _map_interactions(raw, mapping, notes)
    inter, m = mapped.inter, mapped.mapping
    explicit = dict(mapping or {})

    used_items = pd.Index(pd.unique(inter["item_id"]), dtype="str")
    used_users = pd.Index(pd.unique(inter["user_id"]), dtype="str")
    item_side = _combine([_side(s, "item", used_items, mapped.item_cols, explicit, notes)
                          for s in _as_list(items)], "item")
    user_side = _combine([_side(s, "user", used_users, mapped.user_cols, explicit, notes)
                          for s in _as_list(users)], "user")
    movielens = mapped.layout.startswith("movielens")
    item_noun, event = ("movies", "ratings") if movielens else ("items", "interactions")
    items_df = _catalogue(item_side, mapped.moved.get("item"), used_items, "item", item_noun, event, notes)
    users_df = _catalogue(user_side, mapped.moved.get("user"), used_users, "user", "users", event, notes)

    kinds = {"item": dict(item_side.kinds) if item_side else {}, "user": dict(user_side.kinds) if user_side else {}}
    for what, df, side in (("item", items_df, item_side), ("user", users_df, user_side)):
        for c, k in (m.get(f"{what}_features") or {}).items():
            if c in df.columns:
                kinds[what][c] = k
            elif f"{what}_features" in explicit:
                raise DataError(f"The {what} feature '{c}' is not a column of the interactions"
                                f"{' or of ' + side.source if side else ''}.",
                                fix=f"choose {what} features among the existing columns")
    title = (item_side.title if item_side else None) or mp.guess_title(items_df, kinds["item"])
    if movielens and m.get("labels") == ["rating"] and "rating" in inter.columns:
        suggested = list(ml.SUGGESTED_TASKS)
    else:
        suggested = mp.suggest_tasks(inter, [c for c in (m.get("labels") or []) if c in inter.columns])
    if name is None:
        name = re.sub(r"\.(csv|tsv|txt|dat|data|parquet|gz|zip)$", "", src, flags=re.I) or "data"
    return Dataset(
        interactions=inter, items=items_df, users=users_df, layout=mapped.layout, name=name,
        item_features=kinds["item"], user_features=kinds["user"], title_column=title,
        text_columns=[c for c, k in kinds["item"].items() if k == "text"], suggested_tasks=suggested, notes=notes,
    )
