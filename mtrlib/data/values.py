"""Reading values in a user's columns: numbers, ids, times, yes/no, repeats.

Vectorised (pandas and pyarrow kernels, no per-row Python): a column may hold tens of millions
of values. Below the mapping (which guesses roles from these answers) and the dataset (which
counts repeated rows with `count_repeats`), so both can use it without importing each other.
"""
from __future__ import annotations

import contextlib
import contextvars
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError

_TRUE_FALSE = {"0", "1", "true", "false", "t", "f", "yes", "no", "y", "n"}
_MISSING_WORDS = {"", "nan", "none", "null", "na", "n/a", "#n/a", "<na>"}
_INF_WORDS = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
INTEGRAL_TEXT = r"^([+-]?\d+)\.0*$"  # an integer written with a decimal point: '7.0' is the id '7'



def as_numeric(s: pd.Series) -> pd.Series | None:
    """The column as numbers if every non-missing value is a number, else None (never guesses)."""
    if pd.api.types.is_bool_dtype(s):
        return None
    if pd.api.types.is_numeric_dtype(s):
        return s
    if not (pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s)):
        return None
    fast = _arrow_numbers(s)
    if fast is not None:
        return fast
    present = s.notna()
    if pd.api.types.is_object_dtype(s):
        present &= s.astype(str).str.strip() != ""
    num = pd.to_numeric(s, errors="coerce")
    if (num.notna() == present).all() and present.any():
        return num
    return None


_MEMO: contextvars.ContextVar = contextvars.ContextVar("mtr_numbers_memo", default=None)


@contextlib.contextmanager
def numbers_memo():
    """Within the block, each text column is parsed as numbers once: loading asks `as_numeric`
    about the same column several times (guessing the mapping, typing labels, the timestamp),
    which at tens of millions of rows costs seconds a time."""
    token = _MEMO.set({})
    try:
        yield
    finally:
        _MEMO.reset(token)


def _arrow_numbers(s: pd.Series) -> pd.Series | None:
    """Text held by arrow (what the readers give) cast to int64, else float64, by pyarrow's
    vectorised parser: tens of times faster than pd.to_numeric, which goes through Python
    objects. None when a value is not a plain number (pandas then decides, as before) or
    the column is not arrow text."""
    if not isinstance(s.array, pd.arrays.ArrowStringArray):
        return None
    arr = s.array._pa_array
    memo = _MEMO.get()
    key = (id(arr), len(s))
    if memo is not None and key in memo and memo[key][0] is arr:  # the same arrow column (held, so ids stay unique)
        out = memo[key][1]
        return None if out is None else pd.Series(out, index=s.index, name=s.name, copy=False)
    out = _cast_numbers(arr) if s.notna().any() else None
    if memo is not None:
        memo[key] = (arr, out)
    return None if out is None else pd.Series(out, index=s.index, name=s.name, copy=False)


def _cast_numbers(arr) -> np.ndarray | None:
    for typ in (pa.int64(), pa.float64()):
        try:
            num = pc.cast(arr, typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if num.null_count:  # missing values: NaN, as pd.to_numeric gives
            return num.to_numpy(zero_copy_only=False).astype(float)
        return num.to_numpy()
    return None


def isin(values, wanted) -> np.ndarray:
    """bool per value: is it among `wanted`? For arrow-backed text (what the readers give) by
    pyarrow's hash kernel: pandas' own `isin` on such text first builds a Python object per
    wanted value, seconds for a hundred thousand ids."""
    a, w = _arrow_text(values), _arrow_text(wanted)
    if a is None or w is None:
        return np.asarray(pd.Index(values).isin(pd.Index(wanted) if not isinstance(wanted, set) else list(wanted)))
    return pc.is_in(a, value_set=w).to_numpy(zero_copy_only=False)


def _arrow_text(x):
    """The arrow array behind a text Series / Index / ArrowStringArray, or None."""
    arr = getattr(x, "array", x)
    if isinstance(arr, pd.arrays.ArrowStringArray):
        return arr._pa_array.combine_chunks()
    return None


def count_repeats(frame: pd.DataFrame) -> int:
    """Rows that exactly repeat an earlier row (what `frame.duplicated().sum()` counts), from one
    64-bit hash per row, sorted: pandas' own `duplicated` builds a hash table of every row (13 s at
    5M rows, minutes at 25M). Text is hashed by its integer code (pyarrow's dictionary encoding),
    numbers by value (0.0 and -0.0 alike, every NaN alike). Two different rows share a hash with
    probability about rows^2 / 2^65 (2e-5 at 25M rows): a note's count, not a result."""
    n = len(frame)
    if n < 2:
        return 0
    h = np.zeros(n, np.uint64)
    with np.errstate(over="ignore"):
        for c in frame.columns:
            s = frame[c]
            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                v = s.to_numpy(dtype=float, na_value=np.nan)
                v = np.where(np.isnan(v), np.nan, v) + 0.0  # one NaN; -0.0 + 0.0 is 0.0
                col = pd.util.hash_array(v)
            else:
                col = pd.util.hash_array(pd.factorize(s, use_na_sentinel=False)[0].astype(np.int64))
            h = h * np.uint64(1099511628211) ^ col
    h.sort()
    return int(np.count_nonzero(h[1:] == h[:-1]))


def is_boolish(s: pd.Series) -> bool:
    """0/1, true/false, yes/no (as bools, numbers or text): a binary label candidate."""
    v = s.dropna()
    if len(v) == 0:
        return False
    if pd.api.types.is_bool_dtype(s):
        return True
    if pd.api.types.is_numeric_dtype(s):
        return bool(v.isin([0, 1]).all())
    t = v.astype(str).str.strip().str.lower()
    return bool(t.isin(_TRUE_FALSE).all())


def to_numeric_where_possible(s: pd.Series) -> pd.Series:
    """Text columns that hold only numbers become numbers (labels are then usable as-is)."""
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        return s
    num = as_numeric(s)
    return num if num is not None else s


def normalise_ids(s: pd.Series, *, source: str, column: str, what: str, header: bool = True,
                  every: str = "interaction") -> pd.Series:
    """Ids as stripped strings: 7, 7.0, ' 7 ' and '7.0' all become '7'; huge integers keep every digit.

    Missing, empty or infinite ids raise a DataError naming the first bad row.
    """
    n = len(s)
    if pd.api.types.is_bool_dtype(s):
        out = pd.Series(np.where(s.to_numpy(), "True", "False"), index=s.index, dtype="str")
        return out
    if pd.api.types.is_float_dtype(s):
        arr = s.to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(arr)
        infinite = np.isinf(arr)
        _raise_bad_ids(missing, infinite, source=source, column=column, what=what, header=header, every=every)
        integral = (np.floor(arr) == arr) & (np.abs(arr) < 2**63)
        text = np.empty(n, dtype=object)
        if integral.any():
            text[integral] = arr[integral].astype(np.int64).astype(str)
        if (~integral).any():
            text[~integral] = pd.Series(arr[~integral]).astype(str).to_numpy()
        return pd.Series(text, index=s.index, dtype="str")
    if pd.api.types.is_integer_dtype(s):
        missing = s.isna().to_numpy()
        _raise_bad_ids(missing, np.zeros(n, bool), source=source, column=column, what=what, header=header,
                       every=every)
        return s.astype("str")
    # text / object / mixed
    missing = s.isna().to_numpy()
    t = s.astype("str").str.strip()
    low = t.str.lower()
    missing = missing | low.isin(list(_MISSING_WORDS)).to_numpy()
    infinite = low.isin(list(_INF_WORDS)).to_numpy()
    _raise_bad_ids(missing, infinite, source=source, column=column, what=what, header=header, every=every)
    if not t.str.contains(".", regex=False).any():  # no "7.0" to turn into "7": skip the regex over every id
        return t.astype("str")
    return t.str.replace(INTEGRAL_TEXT, r"\1", regex=True).astype("str")


def join_tags(ids: pd.Series, tags: pd.Series) -> pd.DataFrame:
    """Rows of (id, tag) -> one row per id: its distinct tags (case ignored), comma-joined, ids in order.

    A tags table (MovieLens tags.csv, or any items table whose ids repeat beside a tag column)
    becomes one text attribute per item."""
    t = pd.DataFrame({"id": ids.to_numpy(), "tag": tags.to_numpy()}).dropna()
    t = t.assign(tag=t["tag"].astype("str").str.strip())
    t = t[t["tag"] != ""]
    t = t.assign(_low=t["tag"].str.lower()).drop_duplicates(["id", "_low"])
    agg = t.groupby("id", sort=False)["tag"].agg(", ".join)
    return pd.DataFrame({"item_id": agg.index.astype("str"), "tags": agg.to_numpy()})


def _row_words(pos: int, header: bool | None) -> str:
    """'data row 5 (line 6 of the file)': both numbers, since people count either way.

    header=None: the table did not come from a text file (a DataFrame, Parquet), so it has no lines.
    """
    if header is None:
        return f"data row {pos + 1}"
    return f"data row {pos + 1} (line {pos + 1 + int(header)} of the file)"


def _raise_bad_ids(missing, infinite, *, source, column, what, header, every):
    for bad, problem in ((missing, "has no value"), (infinite, "holds an infinite number")):
        if bad.any():
            rows = np.flatnonzero(bad)
            more = f" (and {len(rows) - 1:,} more rows)" if len(rows) > 1 else ""
            raise DataError(
                f"Column '{column}' (the {what} id) {problem} on {_row_words(int(rows[0]), header)}{more}. "
                f"Every {every} needs {'an' if what[0] in 'aeio' else 'a'} {what} id.",
                fix=f"fill in the missing {what} ids or delete those rows, then load the file again",
                source=source,
            )


def to_epoch_seconds(s: pd.Series, *, source: str, column: str, header: bool = True,
                     strict: bool = True) -> np.ndarray | None:
    """Numbers (epoch s / ms / us / ns) or dates -> int64 seconds since 1970.

    strict=False (a guessed column) returns None instead of raising, so a wrong guess costs
    nothing; strict=True (the user chose this column) explains what is wrong and where.
    """
    def fail(msg, pos=None):
        if not strict:
            return None
        where = f" on {_row_words(int(pos), header)}" if pos is not None else ""
        raise DataError(f"Timestamp column '{column}'{where}: {msg}",
                        fix="fix or delete those rows, or choose 'no timestamp' in the column mapping",
                        source=source)

    if len(s) == 0:
        return np.zeros(0, np.int64)
    missing = s.isna().to_numpy()
    if not pd.api.types.is_datetime64_any_dtype(s) and not pd.api.types.is_numeric_dtype(s):
        missing = missing | (s.astype("str").str.strip() == "").to_numpy()
    if missing.any():
        return fail("some rows have no time.", np.flatnonzero(missing)[0])
    if pd.api.types.is_bool_dtype(s):
        return fail("holds true/false values, not times.")
    if pd.api.types.is_datetime64_any_dtype(s):
        dt = s
        if getattr(dt.dt, "tz", None) is None:
            dt = dt.dt.tz_localize("UTC")
        return ((dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    num = as_numeric(s)
    if num is not None:
        arr = num.to_numpy(dtype=float)
        if not np.isfinite(arr).all():
            return fail("holds an infinite or invalid number.", np.flatnonzero(~np.isfinite(arr))[0])
        med = float(np.median(np.abs(arr)))
        # yyyymmdd written as a number (20230115) is a date, not 1970 + 234 days
        if 19000101 <= arr.min() and arr.max() <= 21001231 and (arr == np.floor(arr)).all() and med > 1.9e7:
            dt = pd.to_datetime(num.astype(np.int64).astype(str), format="%Y%m%d", errors="coerce", utc=True)
            if dt.notna().all():
                return ((dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
        scale = 1e9 if med > 1e17 else 1e6 if med > 1e14 else 1e3 if med > 1e11 else 1.0
        secs = np.round(arr / scale)
        if np.abs(secs).max() > 9e18:
            return fail("holds numbers too large to be times.", int(np.argmax(np.abs(secs))))
        return secs.astype(np.int64)
    text = s.astype("str").str.strip()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            dt = pd.to_datetime(text, errors="coerce", utc=True)
            if dt.isna().any():
                dt = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        except (ValueError, TypeError, OverflowError):
            return fail("cannot be read as dates or numbers.")
    bad = dt.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        return fail(f"'{_short(text.iloc[pos])}' cannot be read as a date or a number.", pos)
    return ((dt - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def _short(x, n: int = 40) -> str:
    x = str(x)
    return x if len(x) <= n else x[: n - 3] + "..."
