"""Every column's role and kind, each with its reason: what `guess_mapping` says about a log.

A log in the industry layout (Ali-CCP, Tenrec, KuaiRand: one row per impression) holds, beside the
user, item, time and labels, columns that describe the *impression*: device, position, hour, page,
query category, often as integer codes. Peers (torch-rechub, DeepCTR-Torch, FuxiCTR) read them as
feature columns; so does this tool: they are **context features**, beside the item and user
features (columns constant within an item or a user).

The rules, in the order they are tried for a column of the interactions (data/README.md has them
as a table):

1. a column named split / fold / set holding train / valid / test (or 0/1/2) is a given split;
2. a column named position / slot / rank is the slot the item was shown in: context, categorical;
3. a second time column (the time is already taken) is context when it is an hour, weekday or
   minute of the day, otherwise ignored (a coarser copy of the time says nothing new);
4. a 0/1 column is a label unless its name says context (is_mobile);
5. a column constant within each item (user) with real repeats is an item (user) feature;
6. a label-named number (rating, dwell, play_time), or a column named like the event (event,
   action, behavior) with few values, is a label;
7. anything else that varies is context, of the kind `kind_with_reason` gives;
8. a column with one value, no values, or near-unique text (urls, external ids) is ignored.

Kinds (`kind_with_reason`): floats are numeric; integers are categorical when they are codes
(few distinct values against the rows, at most `CODE_SHARE` of them, or hashed codes of huge
magnitude) unless the name says an amount (age, price, count); otherwise numeric.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .values import as_numeric, is_boolish

GUESS_SAMPLE = 200_000  # rows looked at when guessing kinds (the guess, not the data, is sampled)
CODE_SHARE = 0.2  # integers with at most this many distinct values per row are codes (5+ rows per code)
HASHED = 2 ** 24  # integers this large in magnitude are hashed ids, never amounts
NEAR_UNIQUE = 0.9  # text more unique than this (per row) carries no shared signal

AMOUNT_WORDS = ("age", "price", "cost", "count", "num", "amount", "qty", "quantity", "duration", "length", "len",
                "size", "weight", "height", "income", "salary", "year", "pct", "percent", "ratio", "rate", "total",
                "sum", "avg", "mean", "ms", "sec", "seconds", "minutes", "days", "distance", "km", "score")
CONTEXT_WORDS = ("device", "position", "pos", "slot", "rank", "hour", "weekday", "dow", "page", "tab", "channel",
                 "platform", "os", "network", "net", "query", "scene", "city", "region", "geo", "country", "app",
                 "version", "source", "surface", "context", "ctx", "browser", "mobile", "screen", "entry",
                 "referrer", "session", "request", "location")
POSITION_NAMES = ("position", "pos", "slot", "rank", "displayposition", "impressionposition", "posid", "rankpos")
SPLIT_NAMES = ("split", "fold", "set", "part", "subset", "partition", "dataset")
SPLIT_VALUES = {"train": 0, "training": 0, "trn": 0, "0": 0, "valid": 1, "validation": 1, "val": 1, "dev": 1,
                "1": 1, "test": 2, "testing": 2, "tst": 2, "2": 2}
EVENT_NAMES = ("event", "events", "eventtype", "action", "actiontype", "behavior", "behaviour", "behaviortype",
               "interaction", "interactiontype", "feedback", "response", "outcome")
CYCLIC_TIME = ("hour", "hr", "weekday", "dow", "dayofweek", "wday", "month", "minute", "hourmin", "hhmm")
TIME_WORDS = ("time", "date", "day", "hour", "minute", "week", "month", "year", "ts", "epoch", "when")


def norm(name) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _words(name) -> list[str]:
    """'play_time_ms' -> ['play', 'time', 'ms'], 'deviceType' -> ['device', 'type']."""
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", str(name))
    return [w for w in re.split(r"[^a-z0-9]+", s.lower()) if w]


def _has_word(name, words) -> bool:
    ws = _words(name)
    return any(w in words for w in ws) or norm(name) in words


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def kind_with_reason(s: pd.Series, name=None) -> tuple[str | None, str]:
    """(categorical / multi / numeric / text, or None for no usable signal; and why), for one column."""
    name = s.name if name is None else name
    v = s.dropna()
    if len(v) > GUESS_SAMPLE:
        v = v.sample(GUESS_SAMPLE, random_state=0)
    if len(v) == 0:
        return None, "no values"
    if pd.api.types.is_bool_dtype(v):
        return ("categorical", "true/false") if v.nunique() > 1 else (None, "one value in every row")
    if pd.api.types.is_datetime64_any_dtype(v):
        return None, "dates (a time, not a feature)"
    num = v if pd.api.types.is_numeric_dtype(v) else None
    if num is None:
        t = v.astype("str").str.strip()
        t = t[t != ""]
        if len(t) == 0:
            return None, "no values"
        if t.nunique() <= 1:
            return None, "one value in every row"
        num = as_numeric(t)
        if num is None:
            return _text_kind(t)
    return _number_kind(num.dropna(), name)


def _number_kind(v: pd.Series, name) -> tuple[str | None, str]:
    k, n = int(v.nunique()), len(v)
    if k <= 1:
        return None, "one value in every row"
    arr = v.to_numpy(dtype=float)
    integral = bool(np.all(np.isfinite(arr)) and np.all(np.floor(arr) == arr))
    if not integral:
        return "numeric", "decimal numbers"
    if _has_word(name, AMOUNT_WORDS):
        return "numeric", f"whole numbers named like an amount ('{name}')"
    if float(np.abs(arr).max()) >= HASHED:
        return "categorical", f"{_count(k, 'distinct integer code')} up to {np.abs(arr).max():.3g}: hashed codes"
    if k <= 2:
        return "categorical", "two integer values"
    if k <= CODE_SHARE * n:
        return "categorical", f"{_count(k, 'distinct integer code')} in {n:,} rows: categorical"
    return "numeric", f"{_count(k, 'distinct integer')} in {n:,} rows (too many for codes): numeric"


def _text_kind(t: pd.Series) -> tuple[str | None, str]:
    nun = t.nunique()
    if t.str.contains("|", regex=False).mean() >= 0.1:
        return "multi", "'|'-separated lists"
    mean_len = float(t.str.len().mean())
    spaces = float(t.str.contains(" ", regex=False).mean())
    uniq = nun / len(t)
    if mean_len >= 25 or (spaces >= 0.5 and uniq >= 0.5):
        return "text", f"free text ({mean_len:.0f} characters on average)"
    if uniq > NEAR_UNIQUE and len(t) >= 20:
        return None, f"{uniq:.0%} of the values are unique ({nun:,} of {len(t):,}): no shared signal"
    return "categorical", f"{_count(nun, 'distinct text value')} in {len(t):,} rows"


def split_values(s: pd.Series) -> np.ndarray | None:
    """The column as parts 0 (train) / 1 (validation) / 2 (test), or None when some value is not one."""
    low = s.astype("str").str.strip().str.lower().str.replace(r"\.0+$", "", regex=True)
    codes = low.map(SPLIT_VALUES)
    if codes.isna().any():
        return None
    return codes.to_numpy(dtype=np.int64)


def is_split_column(s: pd.Series) -> bool:
    if not _has_word(s.name, SPLIT_NAMES):
        return False
    values = pd.Series(s.dropna().unique())  # every distinct value (a file's test rows may all come last)
    return 2 <= len(values) <= 12 and split_values(values) is not None


def is_position_column(name) -> bool:
    return norm(name) in POSITION_NAMES or any(w in ("position", "slot") for w in _words(name))


def is_time_name(name) -> bool:
    return any(w in TIME_WORDS or w.startswith(("time", "date", "hour")) for w in _words(name))


def is_cyclic_time(name) -> bool:
    return norm(name) in CYCLIC_TIME or any(w in CYCLIC_TIME for w in _words(name))


def is_context_name(name) -> bool:
    return _has_word(name, CONTEXT_WORDS)


def interaction_roles(df: pd.DataFrame, rest: list, *, per_item: set, per_user: set, time_col, is_label_name,
                      ) -> dict:
    """Roles for the interaction columns `rest` (not user, item or time): labels, item / user
    features (from `per_item` / `per_user`, the columns constant within one), context features
    (+ the position), a given split column, and the ignored columns; each with its reason."""
    labels: list = []
    item_f: dict = {}
    user_f: dict = {}
    context: dict = {}
    ignored: dict = {}
    reasons: dict = {}
    position = split = None
    for c in rest:
        s = df[c]
        n_distinct = int(s.nunique(dropna=True))
        if n_distinct <= 1:
            ignored[c] = "one value in every row" if n_distinct == 1 else "no values"
            continue
        if split is None and is_split_column(s):
            split, reasons[c] = c, "named like a split and holds train / valid / test: a given split (used with --split given)"
            continue
        if position is None and is_position_column(c):
            position, context[c] = c, "categorical"
            reasons[c] = f"the slot the item was shown in ({_count(n_distinct, 'value')}): context, categorical"
            continue
        if time_col is not None and is_time_name(c) and not is_label_name(c):
            if is_cyclic_time(c):
                kind = "categorical" if n_distinct <= 60 else "bucket"
                context[c] = kind
                reasons[c] = f"time of day or week ({_count(n_distinct, 'value')}): context, {kind}"
            else:
                ignored[c] = f"another time column (the time is '{time_col}')"
            continue
        boolish = is_boolish(s)
        if boolish and not is_context_name(c):
            labels.append(c)
            reasons[c] = "0/1 values: a label"
            continue
        if c in per_item or c in per_user:
            key = "item" if c in per_item else "user"
            kind, why = kind_with_reason(s)
            if kind:
                (item_f if key == "item" else user_f)[c] = kind
                reasons[c] = f"one value per {key}: {key} feature, {why}"
            else:
                ignored[c] = why
            continue
        if is_label_name(c) and not is_context_name(c) and as_numeric(s) is not None:
            labels.append(c)
            reasons[c] = "numbers named like an outcome: a label"
            continue
        if norm(c) in EVENT_NAMES and n_distinct <= 50:
            labels.append(c)
            reasons[c] = f"named like what happened ({_count(n_distinct, 'value')}): a label (e.g. buy={c}==purchase)"
            continue
        kind, why = kind_with_reason(s)
        if kind is None:
            ignored[c] = why
            continue
        if kind == "text":  # context text is read as a bag of its words (mtrlib.data.context)
            why += ", read as its words"
        context[c] = kind
        reasons[c] = f"varies per impression: context, {why}"
    for c, why in ignored.items():
        reasons[c] = f"ignored: {why}"
    return {"labels": labels, "item_features": item_f, "user_features": user_f, "context_features": context,
            "position": position, "split": split, "ignore": ignored, "reasons": reasons}
