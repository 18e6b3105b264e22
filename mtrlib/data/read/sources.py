"""Opening what a person hands over, defensively: paths, bytes, uploads, folders and archives.

Everything is reduced to a `Blob` (the bytes of one file plus the name shown in messages) or a
`Folder` (several files, for the loader to recognise as a known set), or passed through as a
DataFrame. The files come from anyone, so size is capped before and after decompression
(`MTR_MAX_FILE_MB`, default 200 MB for the app's uploads; the CLI reads any size unless
`--max-file-mb` or the variable sets a cap: `file_cap`), an upload's `.name` is only ever a label (never a path),
images, documents, databases and web pages are refused by their first bytes, and text is
decoded here (UTF-8, BOMs, UTF-16/32, Latin-1) or refused with a message saying what to do.
"""
from __future__ import annotations

import bz2
import codecs
import contextlib
import contextvars
import gzip
import io as _io
import lzma
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ...errors import DataError

DEFAULT_MAX_FILE_MB = 200
_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"), (b"%PDF", "a PDF document"), (b"\xd0\xcf\x11\xe0", "an old-style Excel/Office file"),
    (b"SQLite format 3\x00", "an SQLite database"), (b"\x7fELF", "a program"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"), (b"ARROW1", "an Arrow/Feather file"), (b"OggS", "an audio file"),
    (b"ID3", "an MP3 file"), (b"\x00\x00\x01\x00", "an icon image"), (b"RIFF", "an audio or video file"),
    (b"PK\x05\x06", "an empty zip archive"),
]


NO_CAP = 1 << 62  # "no limit": larger than any file
# what the caller set (`file_cap`): None = not set (MTR_MAX_FILE_MB, else the app's default),
# a number of megabytes, or "none" for no cap (the CLI's default: a user's own files, any size)
_CAP: contextvars.ContextVar = contextvars.ContextVar("mtr_file_cap", default=None)


@contextlib.contextmanager
def file_cap(mb: float | str | None):
    """Within the block, cap one file at `mb` megabytes ("none": no cap; None: leave it to
    MTR_MAX_FILE_MB / the default). The CLI reads any size by default (`--max-file-mb` caps it);
    the app's uploads keep the 200 MB default, which protects a shared server."""
    token = _CAP.set(mb)
    try:
        yield
    finally:
        _CAP.reset(token)


def _env_mb() -> float | None:
    raw = os.environ.get("MTR_MAX_FILE_MB", "").strip()
    try:
        mb = float(raw) if raw else None
    except ValueError:
        return None
    return mb if mb is not None and mb > 0 else None


def max_file_bytes() -> int:
    """The size cap in bytes: `file_cap(mb)` if set, else MTR_MAX_FILE_MB (megabytes), else 200 MB;
    a caller's `file_cap("none")` (the CLI without --max-file-mb) gives NO_CAP unless the variable is set."""
    set_by_caller, env = _CAP.get(), _env_mb()
    if set_by_caller == "none":
        mb = env
    elif set_by_caller is not None:
        mb = float(set_by_caller)
    else:
        mb = env if env is not None else DEFAULT_MAX_FILE_MB
    return NO_CAP if mb is None else int(mb * 1024 * 1024)


def _cap_mb() -> str:
    return f"{max_file_bytes() / 1024 / 1024:.4g} MB"


def _read_up_to(stream, cap: int) -> bytes:
    """At most cap + 1 bytes (all of them without a cap: read(2**62) would try to allocate that)."""
    return stream.read() if cap >= NO_CAP else stream.read(cap + 1)


def too_big(name: str, size: int | None = None, unpacked: bool = False) -> DataError:
    """The one message for every size cap (file, upload, unpacked archive, Parquet), with the way out."""
    what = (f"unpacks to more than {_cap_mb()}" if unpacked else
            f"is {size / 1024 / 1024:.1f} MB ({size:,} bytes)" if size is not None else f"is over {_cap_mb()}")
    return DataError(
        f"The file {what}, over the {_cap_mb()} limit for one file.",
        fix="use a smaller file (for example a sample of the rows), or raise the limit: the command line's "
            "--max-file-mb 500, or the environment variable MTR_MAX_FILE_MB (e.g. MTR_MAX_FILE_MB=500) before "
            "starting the app or command",
        source=name)


@dataclass
class Blob:
    """The bytes of one file plus the name shown in messages and used to recognise formats."""
    data: bytes
    name: str
    hint: str = ""


@dataclass
class Folder:
    """A folder, or an archive with several files: basename -> Path or a function giving a Blob."""
    files: dict
    name: str


def counted(k: int, noun: str) -> str:
    """'1 movie', '18 movies': notes are read by people."""
    singular = noun[:-1] if noun.endswith("s") else noun
    plural = noun if noun.endswith("s") else noun + "s"
    return f"{k:,} {singular if k == 1 else plural}"


def short(x, n: int = 60) -> str:
    """A value quoted in a message, cut so one odd cell cannot flood it."""
    x = str(x)
    return x if len(x) <= n else x[: n - 3] + "..."


def open_source(source, role: str, name: str | None = None):
    """Any accepted source -> DataFrame, Blob or Folder (size-capped, never trusting `.name`)."""
    cap = max_file_bytes()
    if isinstance(source, pd.DataFrame):
        return source
    if callable(source) and not hasattr(source, "read"):
        return source()
    if isinstance(source, Blob | Folder):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        shown = name or f"{role.capitalize()} data"
        if len(data) > cap:
            raise too_big(shown, len(data))
        return Blob(data, shown, name or "")
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
                return Folder(files, name or p.name)
            if not p.exists():
                raise DataError(f"File not found: {p}", fix="check the path and the file name", source=None)
            size = p.stat().st_size
            if size > cap:
                raise too_big(shown, size)
            with open(p, "rb") as f:
                data = _read_up_to(f, cap)
        except PermissionError:
            raise DataError(f"Permission denied when reading {p}.", fix="check the file's permissions") from None
        except OSError as e:
            raise DataError(f"Could not read {p}: {e.strerror or e}.", fix="check the path") from None
        if len(data) > cap:
            raise too_big(shown, len(data))
        return Blob(data, shown, p.name)
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
                data = _read_up_to(source, cap)
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
            raise too_big(shown, size if isinstance(size, int) and size > cap else None)
        return Blob(data, shown, name or base)
    raise DataError(f"Cannot read data from a {type(source).__name__}.",
                    fix="pass a file path, an uploaded file, raw bytes or a pandas DataFrame")


def _read_capped(stream, name: str) -> bytes:
    """Read at most one byte past the cap, so a decompression bomb never unpacks in full."""
    cap = max_file_bytes()
    out = _read_up_to(stream, cap)
    if len(out) > cap:
        raise too_big(name, unpacked=True)
    return out


def unpack(blob: Blob, depth: int = 0):
    """gzip / bz2 / xz / zip -> the file inside (capped); a zip of several files -> Folder."""
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
            raise DataError(f"The {what} archive is damaged or cut short ({short(e, 80)}).",
                            fix="download or copy the file again", source=name) from None
        return unpack(Blob(out, name, inner_hint), depth + 1)
    if data[:4] == b"PK\x03\x04":
        if depth > 1:
            raise DataError("The archive holds another archive.", fix="unpack it first", source=name)
        try:
            zf = zipfile.ZipFile(_io.BytesIO(data))
            infos = zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise DataError(f"The zip archive is damaged ({short(e, 80)}).", fix="download or copy it again",
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
                    raise DataError(f"Could not unpack '{info.filename}' from the zip ({short(e, 80)}).",
                                    fix="unpack it yourself (it may be encrypted or damaged) and load the file",
                                    source=name) from None
                return unpack(Blob(out, f"{name}/{os.path.basename(info.filename)}",
                                     os.path.basename(info.filename)), depth + 1)
            return get
        if len(members) == 1:
            return reader(members[0])()
        files = {}
        for i in members:
            files.setdefault(os.path.basename(i.filename), reader(i))
        return Folder(files, inner_hint or name)
    return blob


def refuse_binary(data: bytes, name: str) -> None:
    """Name what a non-table file is (an image, a PDF, a database...) instead of failing to parse it."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise DataError(f"This is {what}, not a table.",
                            fix="choose the CSV, TSV or Parquet file that holds your data", source=name)
    if data[257:262] == b"ustar":
        raise DataError("This is a tar archive, not a table.", fix="unpack it and load the data file inside",
                        source=name)


def decode(data: bytes, name: str) -> tuple[bytes, str]:
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


def refuse_markup(text: str, name: str) -> None:
    """HTML, XML and JSON would otherwise parse as a one-column table of junk: say what they are."""
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
