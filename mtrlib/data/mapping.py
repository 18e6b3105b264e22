"""Column mapping for generic tables: which column is the user, the item, the time, a feature, a label.

Guesses come from column names first (they are what a person would look at) and from the
values second (numbers, `|`-lists, long text, a value that never changes within an item).
Everything here is vectorised pandas: tables may hold millions of rows.

The mapping is a plain dict so the app can show it, let the user edit it, and pass it back:

    {"user": "userId", "item": "movieId", "timestamp": "timestamp" | None,
     "item_features": {"genre": "categorical"}, "user_features": {"age": "numeric"},
     "labels": ["rating"]}

Optional keys `item_table_id` / `user_table_id` name the id column of the side tables when
it cannot be found by name or by matching values. Issue 26 adds `context_features` (columns of
the interactions that describe the impression: column -> kind), `position` (the context column
that is the slot), `ignore` (column -> why it is not used), `split` (a given split's column) and
`reasons` (column -> why it got its role; informational). The whole object is what
`inspect --mapping-out` writes, `--mapping` reads and a run's config.json records.
"""
from __future__ import annotations

import difflib
import re

import numpy as np
import pandas as pd

from ..errors import DataError
from .dataset import CONTEXT_KINDS, FEATURE_KINDS
from .roles import interaction_roles, kind_with_reason
from .values import as_numeric, is_boolish, to_epoch_seconds

MAPPING_KEYS = ("user", "item", "timestamp", "item_features", "user_features", "labels",
                "item_table_id", "user_table_id",
                # impression context: column -> kind (CONTEXT_KINDS), and which of them is the slot
                "context_features", "position",
                # column -> why it is not used (a list of names reads as 'ignored by you')
                "ignore",
                # a column holding a given split (train/valid/test or 0/1/2), for --split given
                "split",
                # column -> why it got its role and kind (written by the guess; read back and ignored)
                "reasons")

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
    "timestamp", "time", "ts", "timems", "timestampms", "date", "datetime", "eventtime", "eventtimestamp", "eventdate", "createdat",
    "created", "updatedat", "unixtime", "unixtimestamp", "epoch", "timetamp", "timestampms", "clicktime",
    "ratingtime", "ratedat", "watchedat", "viewedat", "purchasedat", "day", "when",
]
LABEL_WORDS = ("rating", "label", "target", "click", "like", "purchase", "buy", "bought", "convert", "conversion",
               "watch", "play", "listen", "dwell", "duration", "view", "share", "favorite", "favourite",
               "score", "stars", "star", "finish", "complete", "skip", "add", "cart", "order", "read", "y")
TITLE_NAMES = ["title", "name", "itemname", "productname", "movietitle", "songname", "trackname", "booktitle",
               "headline", "displayname"]


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


# ---------------------------------------------------------------- kinds


def guess_kind(s: pd.Series) -> str | None:
    """categorical / multi / numeric / text for one attribute column, or None (no usable signal);
    the rules and their reasons are `roles.kind_with_reason`'s."""
    return kind_with_reason(s)[0]


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

    per_item: set = set()
    per_user: set = set()
    if user is not None and item is not None and rest:
        cand = [c for c in rest if not _is_label_name(c) and not is_boolish(df[c])]
        overall = df[cand].nunique(dropna=False) if cand else pd.Series(dtype=int)
        cand = [c for c in cand if overall[c] > 1]
        per_item = _constant_within(df, df[item].astype("str"), cand)
        per_user = _constant_within(df, df[user].astype("str"), [c for c in cand if c not in per_item])
    roles = interaction_roles(df, rest, per_item=per_item, per_user=per_user, time_col=ts,
                              is_label_name=_is_label_name)
    if user is None or item is None:  # no side to attach features to: every number may be a label
        roles["labels"] = [c for c in rest if is_boolish(df[c]) or as_numeric(df[c]) is not None]
    for what, col in (("user", user), ("item", item), ("timestamp", ts)):
        if col is not None:
            roles["reasons"][col] = _id_reason(what, col, header)
    return {"user": user, "item": item, "timestamp": ts, **roles}


def _id_reason(what: str, col, header) -> str:
    if header is False:
        return f"no header row: taken as the {what} by position"
    return f"named like the {what}" + (" (and readable as times)" if what == "timestamp" else "")


ROLE_KEYS = ("labels", "item_features", "user_features", "context_features", "ignore")


def as_ignore(value) -> dict:
    """The `ignore` key as column -> why: a list of names reads as 'ignored by you'."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return {str(c): "ignored by you" for c in value}


def merge_mapping(guess: dict, explicit: dict) -> dict:
    """The user's mapping over the guessed one. A column the user gives a role (user, item, time,
    a label, a feature of any group, ignored, the split) leaves whatever role the guess gave it, so
    no column ever has two roles."""
    m = dict(guess)
    m.update({k: v for k, v in explicit.items() if k != "reasons"})
    if "ignore" in m:
        m["ignore"] = as_ignore(m["ignore"])
    named: dict[str, str] = {}  # column -> the explicit key that names it
    for key in ("user", "item", "timestamp", "position", "split"):
        if explicit.get(key) is not None:
            named[str(explicit[key])] = key
    for key in ROLE_KEYS:
        for c in (explicit.get(key) or []):
            named[str(c)] = key
    for key in ROLE_KEYS:
        if key in explicit or not m.get(key):
            continue
        value = m[key]
        if isinstance(value, dict):
            m[key] = {c: k for c, k in value.items() if str(c) not in named}
        else:
            m[key] = [c for c in value if str(c) not in named]
    for key in ("position", "split"):
        if key not in explicit and m.get(key) is not None and named.get(str(m[key]), key) != key:
            m[key] = None
    if "context_features" in explicit and "position" not in explicit \
            and m.get("position") not in (explicit["context_features"] or {}):
        m["position"] = None  # the user's context features leave the guessed slot out
    if m.get("position") is not None and m["position"] not in (m.get("context_features") or {}):
        m.setdefault("context_features", {})
        m["context_features"] = {**m["context_features"], m["position"]: "categorical"}
    reasons = dict(guess.get("reasons") or {})
    for c, key in named.items():
        reasons[c] = f"set by you: {key.replace('_', ' ').rstrip('s')}"
    m["reasons"] = reasons
    return m


def find_id_column(table: pd.DataFrame, same_as: list, names, words) -> str | None:
    """The id column of a side table, by name only (value matching lives in read.side)."""
    cols = list(table.columns)
    for c in same_as:
        if c in cols:
            return c
    return find_column(cols, names, words)


def _nearest(name, cols) -> str:
    near = difflib.get_close_matches(str(name), [str(c) for c in cols], n=1, cutoff=0.6)
    return f" (did you mean '{near[0]}'?)" if near else ""


def _no_column(what: str, name, cols, source) -> DataError:
    return DataError(f"The column mapping names '{name}' as {what}, but there is no such column{_nearest(name, cols)}. "
                     f"The columns are: {', '.join(map(str, cols))}.",
                     fix=f"choose one of those columns as {what}", source=source)


def _check_kinds(key: str, feats, kinds) -> None:
    if not isinstance(feats, dict):
        raise DataError(f"'{key}' in the column mapping must map column -> kind, e.g. {{'genre': 'categorical'}}.",
                        fix=f"write it as \"{key}\": {{\"COLUMN\": \"categorical\"}}")
    for c, k in feats.items():
        if k not in kinds:
            raise DataError(f"Feature '{c}' has kind '{k}', which is not one of {', '.join(kinds)}"
                            f"{' (bucket is for context features only)' if k == 'bucket' else ''}.",
                            fix="pick one of those kinds" + (f", or make '{c}' a context feature" if k == "bucket"
                                                            else ""))


def check_mapping(mapping: dict, columns, *, source: str) -> dict:
    """Validate a user-given mapping's shape early, with messages about the mapping itself: its
    keys, the columns it names (of the interactions; side-table features are checked when those
    are read), the kinds, the position among the context features, and no column in two roles."""
    if not isinstance(mapping, dict):
        raise DataError("The column mapping must be a dictionary such as {'user': 'customer', 'item': 'sku'}.",
                        fix="write it as a JSON object (what `inspect FILE --mapping-out FILE` writes)")
    unknown = [k for k in mapping if k not in MAPPING_KEYS]
    if unknown:
        near = _nearest(unknown[0], MAPPING_KEYS)
        raise DataError(f"Unknown key(s) in the column mapping: {', '.join(map(str, unknown))}{near}.",
                        fix=f"use only: {', '.join(MAPPING_KEYS)}")
    cols = list(columns)
    for key, what in (("user", "the user"), ("item", "the item"), ("timestamp", "the timestamp"),
                      ("split", "the split column")):
        if key in mapping and mapping[key] is not None and mapping[key] not in cols:
            raise _no_column(what, mapping[key], cols, source)
    for key in ("item_features", "user_features"):
        if mapping.get(key) is not None:
            _check_kinds(key, mapping[key], FEATURE_KINDS)
    context = mapping.get("context_features")
    if context is not None:
        _check_kinds("context_features", context, CONTEXT_KINDS)
        for c in context:
            if c not in cols:
                raise _no_column("a context feature", c, cols, source)
    position = mapping.get("position")
    if position is not None and not isinstance(position, str):
        raise DataError(f"'position' in the column mapping must be one column name (got {position!r}).",
                        fix='e.g. "position": "slot"')
    if position is not None and position not in (context or {}):
        raise DataError(f"The position column '{position}' is not among the context features "
                        f"({', '.join(map(str, context or {})) or 'none'}).",
                        fix=f"add it to context_features (e.g. --feature {position}=categorical) or leave position out")
    ignore = mapping.get("ignore")
    if ignore is not None:
        if isinstance(ignore, str) or not isinstance(ignore, (list, tuple, dict)):
            raise DataError("'ignore' in the column mapping must be a list of column names (or column -> why).",
                            fix='e.g. "ignore": ["row_id"]')
        for c in ignore:
            if c not in cols:
                raise _no_column("a column to ignore", c, cols, source)
    labels = mapping.get("labels")
    if labels is not None:
        if not isinstance(labels, (list, tuple)) or not all(isinstance(x, str) for x in labels):
            raise DataError("'labels' in the column mapping must be a list of column names.",
                            fix='e.g. "labels": ["click", "rating"]')
        missing = [c for c in labels if c not in cols]
        if missing:
            raise DataError(f"Label column(s) {', '.join(missing)} not found{_nearest(missing[0], cols)}. "
                            f"The columns are: {', '.join(map(str, cols))}.",
                            fix="choose label columns from that list", source=source)
    if mapping.get("reasons") is not None and not isinstance(mapping["reasons"], dict):
        raise DataError("'reasons' in the column mapping must map column -> reason (it is informational).",
                        fix="remove it, or write it as {\"COLUMN\": \"why\"}")
    _check_one_role(mapping, source)
    return dict(mapping)


def _check_one_role(mapping: dict, source) -> None:
    """A column has one role: a label is not also ignored, the split column is not a feature."""
    roles: dict[str, str] = {}
    named = [("user", [mapping.get("user")]), ("item", [mapping.get("item")]),
             ("timestamp", [mapping.get("timestamp")]), ("split column", [mapping.get("split")]),
             ("label", mapping.get("labels") or []), ("context feature", mapping.get("context_features") or {}),
             ("item feature", mapping.get("item_features") or {}), ("user feature", mapping.get("user_features") or {}),
             ("ignored column", mapping.get("ignore") or [])]
    for role, names in named:
        for c in names:
            if c is None:
                continue
            if c in roles and roles[c] != role:
                raise DataError(f"The same column '{c}' has two roles in the column mapping: {roles[c]} and {role}.",
                                fix="give each column one role (a flag such as --ignore or --label moves it)",
                                source=source)
            roles[c] = role


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
