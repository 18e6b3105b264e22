"""A given split: the train / validation / test parts a log comes with (issue 26).

Published logs come split: as three files of one layout (`*train*`, `*val*` or `*valid*`,
`*test*`, as files or in a folder or zip), or as one file with a column naming each row's part
(`split`, `fold`, `set`: train / valid / validation / val / test, or 0 / 1 / 2, case-blind).
Three files are read here and stacked into one table with a split column (`read_parts`); a
split column becomes each logged row's part (`part_codes`: 0 train, 1 val, 2 test), which
`mtrlib.data.split.split(..., "given")` uses instead of random numbers.

The split column is neither a feature nor a label: `settle` gives it the role "split" on the
loaded Dataset, takes it out of the labels, features and suggested tasks, and applies the
mapping's `ignore`, `context_features` and `position` where loading has not already.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .. import mapping as mp
from ..dataset import Dataset
from ...errors import DataError
from .parse import Table, read_one
from .sources import short

PARTS = ("train", "val", "test")  # code 0, 1, 2
PART_WORDS = {"train": 0, "0": 0, "valid": 1, "validation": 1, "val": 1, "1": 1, "test": 2, "2": 2}
SPLIT_NAMES = ("split", "fold", "set", "part", "subset", "partition")  # normalised names a split column may have
TABLE_EXTS = ("csv", "tsv", "txt", "parquet", "csv.gz", "tsv.gz", "dat", "data")
SPLIT_COLUMN = "split"  # the column three files are stacked with
FILES_REASON = "the file each row came from (train / val / test files): the given split"
SUGGESTED_REASON = "holds only train / val / test values: a given split (used with --split given)"
RELEASE_LAYOUTS = ("movielens-latest", "movielens-100k", "movielens-1m")  # their tasks come with the release
CHOSEN_REASON = "the given split's column (train / val / test per row)"


# -- three files ----------------------------------------------------------------------------------------

def part_of_name(name: str) -> str | None:
    """'ratings_train.csv' -> 'train', 'valid.tsv' -> 'val', 'x.test.csv' -> 'test'; None otherwise."""
    stem = str(name).lower().rsplit("/", 1)[-1]
    if not any(stem.endswith("." + e) for e in TABLE_EXTS):
        return None
    words = set(re.split(r"[^a-z]+", stem))
    found = [p for p, hit in (("train", "train" in stem or "trn" in words),
                              ("val", bool(words & {"val", "valid", "validation", "dev"}) or "valid" in stem),
                              ("test", "test" in stem or "tst" in words)) if hit]
    return found[0] if len(found) == 1 else None


def find_parts(files: dict) -> dict | None:
    """{"train", "val", "test" -> source} for a folder's files (lower-case names) holding one file of
    each part (train and test at least; val may be missing, which the split then reports), else None."""
    by_part: dict[str, list] = {}
    for name in sorted(files):
        part = part_of_name(name)
        if part is not None:
            by_part.setdefault(part, []).append(name)
    if "train" not in by_part or "test" not in by_part or any(len(v) > 1 for v in by_part.values()):
        return None
    return {p: files[names[0]] for p, names in by_part.items()}


def side_files(files: dict) -> tuple:
    """The items and users tables next to three part files (items.csv, users.csv), if any."""
    def one(word):
        hits = [n for n in sorted(files) if n.split(".")[0] in (word, word[:-1]) and part_of_name(n) is None]
        return files[hits[0]] if hits else None
    return one("items"), one("users")


def is_parts(source) -> bool:
    """True for a dict naming the parts: {"train": ..., "val": ..., "test": ...}."""
    return isinstance(source, dict) and bool(source) and set(source) <= set(PARTS)


def read_parts(parts: dict) -> Table:
    """The three files of one layout stacked into one table, with a `split` column naming each row's part."""
    missing = [p for p in PARTS if parts.get(p) is None]
    if "train" in missing:
        raise DataError("A given split by files needs a training file.", fix="add --train-file FILE")
    tables = {p: read_one(parts[p], f"{p} interactions") for p in PARTS if p not in missing}
    first = tables["train"]
    cols = [str(c) for c in first.frame.columns]
    for p, t in tables.items():
        these = [str(c) for c in t.frame.columns]
        if these != cols or t.header != first.header:
            raise DataError(
                f"The {p} file {t.source} does not have the layout of the training file {first.source} "
                f"(its columns: {', '.join(these[:12])}; the training file's: {', '.join(cols[:12])}).",
                fix="give train / val / test files with the same columns in the same order")
    name = SPLIT_COLUMN
    while name in cols:
        name += "_given"
    frames = []
    for p, t in tables.items():
        f = t.frame.copy()
        f.columns = first.frame.columns
        f[name] = p
        frames.append(f)
    frame = pd.concat(frames, ignore_index=True)
    notes = [n for t in tables.values() for n in t.notes]
    source = " + ".join(t.source for t in tables.values())
    return Table(frame, source, "dataframe", first.header, first.delimiter, first.encoding, notes, first.hint)


def split_column_of(table: Table) -> str:
    """The split column `read_parts` added (the last one)."""
    return str(table.frame.columns[-1])


# -- a split column -------------------------------------------------------------------------------------

def _codes(s: pd.Series) -> pd.Series:
    """Each value's part code (0, 1, 2) or NaN where it names none."""
    if pd.api.types.is_bool_dtype(s):
        return pd.Series(np.nan, index=s.index)
    if pd.api.types.is_numeric_dtype(s):
        v = pd.to_numeric(s, errors="coerce")
        return v.where(v.isin([0, 1, 2]))
    low = s.astype("str").str.strip().str.lower().str.replace(r"\.0$", "", regex=True)
    return low.map(PART_WORDS)


def part_codes(s: pd.Series, column: str) -> np.ndarray:
    """Each row's part (0 train, 1 val, 2 test) from a split column; a DataError names the first
    row whose value names no part, or the part no row is in."""
    codes = _codes(s)
    bad = np.flatnonzero(codes.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        value = s.iloc[i]
        shown = "nothing" if value is None or (isinstance(value, float) and np.isnan(value)) else f"'{short(value)}'"
        raise DataError(
            f"Row {i + 1} of the split column '{column}' holds {shown}, which names no part of a split "
            f"({len(bad):,} row(s) like it).",
            fix="write train, val (valid, validation) or test (or 0, 1, 2) in every row, "
                "or choose another split (--split random)")
    codes = codes.to_numpy(dtype=np.int64)
    counts = np.bincount(codes, minlength=3)
    empty = [PARTS[k] for k in range(3) if counts[k] == 0]
    if empty:
        held = ", ".join(f"{counts[k]:,} {PARTS[k]}" for k in range(3) if counts[k])
        raise DataError(f"The given split (column '{column}') has no {' and no '.join(empty)} rows ({held}).",
                        fix=f"add the {' and '.join(empty)} part (a file or rows), or use --split random")
    return codes


def guess_split_column(frame: pd.DataFrame, exclude=()) -> str | None:
    """A column named like a split (split, fold, set, part) whose values are all parts, else None."""
    for c in frame.columns:
        if c in exclude or mp.norm_name(c) not in SPLIT_NAMES:
            continue
        sample = frame[c].head(200_000)
        codes = _codes(sample)
        if len(sample) and not codes.isna().any() and codes.nunique() >= 2:
            return c
    return None


def plan_split(method: str, ds: Dataset) -> tuple[str, np.ndarray | None]:
    """(the split method to use, each logged row's part or None): "given" reads the mapping's split
    column; a split given by files is used unless another split than the default was chosen."""
    col = (ds.mapping or {}).get("split")
    by_files = col is not None and ds.reasons.get(col) == FILES_REASON
    if method == "given" or (by_files and method == "random"):
        if col is None:
            raise DataError("--split given needs the data's own split, and none was given.",
                            fix="name the split column (--split-col COL, or \"split\" in the mapping), give "
                                "--train-file / --val-file / --test-file, or use --split random")
        if col not in ds.interactions.columns:
            raise DataError(f"The split column '{col}' is not a column of the interactions.",
                            fix="choose the column that says train / val / test (--split-col COL)")
        return "given", part_codes(ds.interactions[col], col)
    return method, None


# -- the Dataset's roles ---------------------------------------------------------------------------------

def as_written(m: dict, mapped) -> dict:
    """The effective mapping as the file's own columns name them (a MovieLens release's mapping
    names its canonical columns: its user and item are written as the file's)."""
    out = {k: v for k, v in m.items() if k in mp.MAPPING_KEYS}
    if getattr(mapped, "release", None) is not None:
        out["user"], out["item"] = mapped.user_cols[0], mapped.item_cols[0]
    return out


def _ignored(spec) -> dict[str, str]:
    if isinstance(spec, dict):
        return {str(c): str(why or "ignored by you") for c, why in spec.items()}
    return {str(c): "ignored by you" for c in (spec or [])}


def _take_back(ds: Dataset, col: str, back: bool) -> None:
    """A column that is not a feature: out of the item / user features; with `back`, a column loading
    moved into the item / user table (constant per id) is put back into the interactions."""
    for what, table, feats in (("item", ds.items, ds.item_features), ("user", ds.users, ds.user_features)):
        if back and col in feats and col in table.columns and col not in ds.interactions.columns:
            ds.interactions[col] = table[col].reindex(ds.interactions[f"{what}_id"]).to_numpy()
            setattr(ds, f"{what}s", table.drop(columns=[col]))
        feats.pop(col, None)


def settle(ds: Dataset, explicit: dict | None, by_files: bool = False) -> Dataset:
    """The split, ignored and context columns' roles on a loaded Dataset, and its effective mapping
    (`ds.mapping`, what `inspect --mapping-out` writes)."""
    explicit = explicit or {}
    m = dict(ds.mapping or {})
    for k, v in explicit.items():
        m.setdefault(k, v)
    col = m.get("split")
    ignored = _ignored(m.get("ignore"))
    if col is None:
        col = guess_split_column(ds.interactions, exclude=("user_id", "item_id", "timestamp", *ignored))
        if col is not None:
            m["split"] = col
            ds.notes.append(f"Column '{col}' holds train / val / test: --split given uses it as the split "
                            "(otherwise it is not used).")
    out = set(ignored) | ({col} if col is not None else set())
    for c in out:
        _take_back(ds, c, back=c == col)
        ds.context_features.pop(c, None)
    if col is not None:
        ds.reasons[col] = FILES_REASON if by_files else (CHOSEN_REASON if "split" in explicit else SUGGESTED_REASON)
        if by_files:
            ds.notes.append("The data comes as train / val / test files: their split is used (--split given; "
                            "--split temporal or cold-items would split the rows anew).")
    for c, why in ignored.items():
        ds.ignored.setdefault(c, why)
        ds.reasons.setdefault(c, why)
    for c, k in (m.get("context_features") or {}).items():
        if c in ds.interactions.columns and c not in out:
            ds.context_features.setdefault(c, k)
    if m.get("position") and ds.position_column is None:
        ds.position_column = m["position"]
    before = list(m.get("labels") or [])
    labels = [c for c in before if c not in out and c not in ds.context_features]
    if m.get("labels") is not None:
        m["labels"] = labels
    for what in ("item", "user"):  # the kinds loading settled on, side tables' included
        m[f"{what}_features"] = dict(getattr(ds, f"{what}_features"))
    if ds.context_features:
        m["context_features"] = dict(ds.context_features)
    if ds.ignored:
        m["ignore"] = dict(ds.ignored)
    if labels != before and ds.layout not in RELEASE_LAYOUTS:
        ds.suggested_tasks = mp.suggest_tasks(ds.interactions, [c for c in labels if c in ds.interactions.columns])
    if ds.reasons:
        m["reasons"] = dict(ds.reasons)
    ds.mapping = {k: m[k] for k in mp.MAPPING_KEYS if k in m}
    return ds


__all__ = ["PARTS", "find_parts", "side_files", "is_parts", "read_parts", "part_codes", "guess_split_column",
           "plan_split", "settle", "FILES_REASON"]
