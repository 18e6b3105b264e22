"""Column mapping for generic tables: which column is the user, the item, the time, a feature, a label.

Guesses come from column names first (they are what a person would look at) and from the
values second (numbers, `|`-lists, long text, a value that never changes within an item).
Everything here is vectorised pandas: tables may hold millions of rows.

The mapping is a plain dict so the app can show it, let the user edit it, and pass it back:

    {"user": "userId", "item": "movieId", "timestamp": "timestamp" | None,
     "item_features": {"genre": "categorical"}, "user_features": {"age": "numeric"},
     "labels": ["rating"]}

Optional keys `item_table_id` / `user_table_id` name the id column of the side tables when
it cannot be found by name or by matching values.
"""
from __future__ import annotations

import contextlib
import contextvars
import re
import warnings

import numpy as np
import pandas as pd

from .dataset import FEATURE_KINDS
from ..errors import DataError

MAPPING_KEYS = ("user", "item", "timestamp", "item_features", "user_features", "labels",
                "item_table_id", "user_table_id")

# normalised names (lower case, letters and digits only), best first
USER_NAMES = [
    "userid", "user", "uid", "users", "username", "customerid", "customer", "custid", "clientid", "client",
    "visitorid", "visitor", "memberid", "member", "accountid", "account", "readerid", "reader", "viewerid",
    "viewer", "listenerid", "listener", "buyerid", "buyer", "personid", "person", "subscriberid", "playerid",
    "player", "studentid", "student", "learnerid", "learner", "profileid", "sessionid", "session", "u",
]
ITEM_NAMES = [
    "itemid", "item", "iid", "items", "movieid", "movie", "productid", "product", "prodid", "sku", "skuid",
    "songid", "song", "trackid", "track", "articleid", "article", "bookid", "book", "isbn", "asin",
    "videoid", "video", "contentid", "content", "docid", "document", "doc", "postid", "post", "newsid",
    "adid", "ad", "offerid", "offer", "courseid", "course", "gameid", "game", "recipeid", "recipe",
    "restaurantid", "businessid", "hotelid", "poiid", "placeid", "artistid", "albumid", "showid", "episodeid",
    "podcastid", "appid", "jobid", "eventid", "mid", "pid", "i",
]
USER_WORDS = ("user", "customer", "visitor", "client", "member", "account", "reader", "viewer", "listener",
              "buyer", "subscriber", "player", "student", "learner")
ITEM_WORDS = ("item", "movie", "product", "sku", "song", "track", "article", "book", "video", "content",
              "film", "asin", "isbn", "course", "recipe", "game", "album", "artist", "episode", "podcast")
TIME_NAMES = [
    "timestamp", "time", "ts", "date", "datetime", "eventtime", "eventtimestamp", "eventdate", "createdat",
    "created", "updatedat", "unixtime", "unixtimestamp", "epoch", "timetamp", "timestampms", "clicktime",
    "ratingtime", "ratedat", "watchedat", "viewedat", "purchasedat", "day", "when",
]
LABEL_WORDS = ("rating", "label", "target", "click", "like", "purchase", "buy", "bought", "convert", "conversion",
               "watch", "play", "listen", "dwell", "duration", "view", "share", "favorite", "favourite",
               "score", "stars", "star", "finish", "complete", "skip", "add", "cart", "order", "read", "y")
TITLE_NAMES = ["title", "name", "itemname", "productname", "movietitle", "songname", "trackname", "booktitle",
               "headline", "displayname"]
_TRUE_FALSE = {"0", "1", "true", "false", "t", "f", "yes", "no", "y", "n"}
_MISSING_WORDS = {"", "nan", "none", "null", "na", "n/a", "#n/a", "<na>"}
_INF_WORDS = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
INTEGRAL_TEXT = r"^([+-]?\d+)\.0*$"  # an integer written with a decimal point: '7.0' is the id '7'
GUESS_SAMPLE = 200_000  # rows looked at when guessing kinds (the guess, not the data, is sampled)


def norm_name(name) -> str:
    """'User ID' -> 'userid': the form column names are compared in."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def find_column(columns, names, words=(), exclude=()) -> str | None:
    """The first column whose normalised name is one of `names` (best first), else the first containing
    one of `words`; None when nothing matches. Names beat words so 'user_id' wins over 'username'."""
    cols = [c for c in columns if c not in exclude]
    normed = {c: norm_name(c) for c in cols}
    for n in names:
        for c in cols:
            if normed[c] == n:
                return c
    for w in words:
        for c in cols:
            if w in normed[c]:
                return c
    return None


# ---------------------------------------------------------------- values


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
    import pyarrow as pa
    import pyarrow.compute as pc
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
    import pyarrow.compute as pc
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


# ---------------------------------------------------------------- kinds


def guess_kind(s: pd.Series) -> str | None:
    """categorical / multi / numeric / text for one attribute column, or None (no usable signal)."""
    v = s.dropna()
    if len(v) > GUESS_SAMPLE:
        v = v.sample(GUESS_SAMPLE, random_state=0)
    if len(v) == 0:
        return None
    if pd.api.types.is_bool_dtype(v):
        return "categorical" if v.nunique() > 1 else None
    if pd.api.types.is_datetime64_any_dtype(v):
        return None
    if pd.api.types.is_numeric_dtype(v):
        return "numeric" if v.nunique() > 1 else None
    t = v.astype("str").str.strip()
    t = t[t != ""]
    if len(t) == 0:
        return None
    nun = t.nunique()
    if nun <= 1:
        return None
    if as_numeric(t) is not None:
        return "numeric"
    if t.str.contains("|", regex=False).mean() >= 0.1:
        return "multi"
    mean_len = float(t.str.len().mean())
    spaces = float(t.str.contains(" ", regex=False).mean())
    uniq = nun / len(t)
    if mean_len >= 25 or (spaces >= 0.5 and uniq >= 0.5):
        return "text"
    if uniq > 0.9 and len(t) >= 20:
        return None  # near-unique codes (urls, zip codes, external ids) carry no shared signal
    return "categorical"


def guess_kinds(table: pd.DataFrame, exclude=()) -> dict[str, str]:
    """Kinds for every attribute column of a side table (id column excluded)."""
    out = {}
    for c in table.columns:
        if c in exclude:
            continue
        k = guess_kind(table[c])
        if k:
            out[c] = k
    return out


def guess_title(table: pd.DataFrame, kinds: dict[str, str]) -> str | None:
    """The column a person would call the item's name."""
    col = find_column([c for c in table.columns if kinds.get(c) in ("text", "categorical")], TITLE_NAMES)
    if col:
        return col
    texts = [c for c, k in kinds.items() if k == "text"]
    return texts[0] if texts else None


def _constant_within(df: pd.DataFrame, key: pd.Series, cols: list[str]) -> set[str]:
    """Columns with one value per key (an attribute of the item / user, not of the event).

    Only informative when keys repeat: if every item appears once, everything is 'constant'.
    """
    if not cols or len(df) == 0:
        return set()
    sizes = key.value_counts()
    if (sizes >= 2).sum() < 2 or sizes[sizes >= 2].sum() < 0.5 * len(df):
        return set()
    frame = df[cols].copy()
    frame["__key__"] = key.to_numpy()
    nun = frame.groupby("__key__", sort=False)[cols].nunique(dropna=False)
    return {c for c in cols if int(nun[c].max()) <= 1}


def _is_label_name(col) -> bool:
    n = norm_name(col)
    return any(n == w or n.startswith(w) or n.endswith(w) for w in LABEL_WORDS if len(w) > 1) or n == "y"


def _timestamp_ok(s: pd.Series) -> bool:
    try:
        return to_epoch_seconds(s.head(5000), source="", column=str(s.name), strict=False) is not None
    except DataError:  # pragma: no cover - strict=False never raises
        return False


def guess_mapping(df: pd.DataFrame, *, header: bool | None = None) -> dict:
    """Pre-filled column mapping for an interactions table.

    Returns {"user", "item", "timestamp", "item_features", "user_features", "labels"}; user or
    item is None when nothing looks like one (then `load` asks the user to choose).
    `header=False` says the file had no header row (`Table.header`): its columns are then taken
    as user, item, ... by convention, and a column of epoch-like numbers as the time.
    """
    cols = [c for c in df.columns]
    headerless = header is False
    user = find_column(cols, USER_NAMES, USER_WORDS)
    item = find_column(cols, ITEM_NAMES, ITEM_WORDS, exclude=(user,))
    if user is not None and item is None and norm_name(user) in ("u",):
        user = None
    if headerless and user is None and item is None and len(cols) >= 2:
        user, item = cols[0], cols[1]  # no header: by convention user, item, ...
    taken = {user, item}
    ts = find_column([c for c in cols if c not in taken], TIME_NAMES)
    if ts is None:  # 'order_date', 'time_utc' - but not 'watch_time', which is a label
        ts = find_column([c for c in cols if c not in taken and not _is_label_name(c)], [],
                         ("timestamp", "datetime", "time", "date"))
    if ts is not None and not _timestamp_ok(df[ts]):
        ts = None
    if ts is None:
        for c in cols:
            if c in taken:
                continue
            if pd.api.types.is_datetime64_any_dtype(df[c]):
                ts = c
                break
            if headerless:
                num = as_numeric(df[c].head(5000))
                if num is not None and len(num) and 1e8 <= num.min() and num.max() < 1e13:
                    ts = c
                    break
    taken.add(ts)
    rest = [c for c in cols if c not in taken]

    item_features: dict[str, str] = {}
    user_features: dict[str, str] = {}
    if user is not None and item is not None and rest:
        cand = [c for c in rest if not _is_label_name(c)]
        overall = df[cand].nunique(dropna=False) if cand else pd.Series(dtype=int)
        cand = [c for c in cand if overall[c] > 1]
        per_item = _constant_within(df, df[item].astype("str"), cand)
        per_user = _constant_within(df, df[user].astype("str"), [c for c in cand if c not in per_item])
        for c in cand:
            if c in per_item or c in per_user:
                key = item if c in per_item else user
                k = guess_kind(df[[key, c]].drop_duplicates(key)[c])
                if k:
                    (item_features if c in per_item else user_features)[c] = k
    labels = [c for c in rest if c not in item_features and c not in user_features
              and (is_boolish(df[c]) or as_numeric(df[c]) is not None)]
    return {"user": user, "item": item, "timestamp": ts, "item_features": item_features,
            "user_features": user_features, "labels": labels}


def find_id_column(table: pd.DataFrame, same_as: list, names, words) -> str | None:
    """The id column of a side table, by name only (value matching lives in read.side)."""
    cols = list(table.columns)
    for c in same_as:
        if c in cols:
            return c
    return find_column(cols, names, words)


def check_mapping(mapping: dict, columns, *, source: str) -> dict:
    """Validate a user-given mapping's shape early, with messages about the mapping itself."""
    if not isinstance(mapping, dict):
        raise DataError("The column mapping must be a dictionary such as {'user': 'customer', 'item': 'sku'}.")
    unknown = [k for k in mapping if k not in MAPPING_KEYS]
    if unknown:
        raise DataError(f"Unknown key(s) in the column mapping: {', '.join(map(str, unknown))}.",
                        fix=f"use only: {', '.join(MAPPING_KEYS)}")
    cols = list(columns)
    for key in ("user", "item", "timestamp"):
        if key in mapping and mapping[key] is not None and mapping[key] not in cols:
            raise DataError(
                f"The column mapping says the {key} is in column '{mapping[key]}', but there is no such column. "
                f"The columns are: {', '.join(map(str, cols))}.",
                fix=f"choose one of those columns as the {key}", source=source)
    for key in ("item_features", "user_features"):
        feats = mapping.get(key)
        if feats is None:
            continue
        if not isinstance(feats, dict):
            raise DataError(f"'{key}' in the column mapping must map column -> kind, e.g. {{'genre': 'categorical'}}.")
        for c, k in feats.items():
            if k not in FEATURE_KINDS:
                raise DataError(f"Feature '{c}' has kind '{k}', which is not one of {', '.join(FEATURE_KINDS)}.",
                                fix="pick one of those kinds")
    labels = mapping.get("labels")
    if labels is not None:
        if isinstance(labels, str) or not all(isinstance(x, str) for x in labels):
            raise DataError("'labels' in the column mapping must be a list of column names.")
        missing = [c for c in labels if c not in cols]
        if missing:
            raise DataError(f"Label column(s) {', '.join(missing)} not found. "
                            f"The columns are: {', '.join(map(str, cols))}.",
                            fix="choose label columns from that list", source=source)
    return dict(mapping)


# ---------------------------------------------------------------- tasks


def _task_name(col: str) -> str | None:
    name = re.sub(r"[^A-Za-z0-9_\-]", "_", str(col)).strip("_-")[:40]
    if not name:
        return None
    if not re.match(r"[A-Za-z_]", name[0]):
        name = ("t_" + name)[:40]
    return name


def suggest_tasks(inter: pd.DataFrame, labels: list[str]) -> list[str]:
    """Task strings a person would start from: binary columns as-is, ratings thresholded,
    other numbers as regression, and `|PARENT` where a label exists only where PARENT is 1."""
    usable = [c for c in labels if c in inter.columns and not re.search(r"[=|<>:!]", str(c))
              and _task_name(c)]
    binary = [c for c in usable if is_boolish(inter[c])]
    out: list[str] = []
    parent_values: dict[str, np.ndarray] = {}

    def values_of(p: str) -> np.ndarray:
        if p not in parent_values:
            pv = pd.to_numeric(inter[p], errors="coerce").to_numpy(dtype=float, na_value=np.nan) \
                if not pd.api.types.is_bool_dtype(inter[p]) else inter[p].to_numpy(float)
            if pd.api.types.is_string_dtype(inter[p]) or pd.api.types.is_object_dtype(inter[p]):
                low = inter[p].astype("str").str.strip().str.lower()
                pv = np.where(low.isin(["1", "true", "t", "yes", "y"]), 1.0,
                              np.where(low.isin(["0", "false", "f", "no", "n"]), 0.0, np.nan))
            parent_values[p] = pv
        return parent_values[p]

    def parent_of(c: str) -> str | None:
        obs = inter[c].notna().to_numpy()
        if obs.all():
            return None
        for p in binary:
            if p == c:
                continue
            pv = values_of(p)
            is_one = pv == 1
            if (pv == 0).any() and not (obs & ~is_one).any():
                return p
        return None

    names = {c: _task_name(c) for c in usable}
    if not binary:
        out.append("interacted=implicit")
    for c in usable:
        given = parent_of(c)
        suffix = f"|{names[given]}" if given and given in names else ""
        if c in binary:
            out.append(f"{names[c]}={c}{suffix}")
            continue
        num = as_numeric(inter[c])
        if num is None:
            continue
        v = num.dropna()
        if len(v) == 0 or v.nunique() < 2:
            continue
        n = norm_name(c)
        rating_like = any(w in n for w in ("rating", "stars", "score")) and v.min() >= 0 and v.max() <= 100 \
            and v.nunique() <= 201
        if rating_like:
            thr = float(np.ceil(0.8 * float(v.max())))
            name = "liked" if "liked" not in names.values() else f"{names[c]}_high"
            out.append(f"{name}={c}>={int(thr) if thr.is_integer() else thr}{suffix}")
        else:
            out.append(f"{names[c]}={c}:reg{suffix}")
    return out
