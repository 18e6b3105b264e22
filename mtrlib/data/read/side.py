"""Side tables: the items and users files, joined onto the ids the interactions use.

Each file is read, recognised (a MovieLens file arrives in canonical form through
`movielens.recognise`) or else its id column is found by the mapping, by name, or by which
column's values match the interactions' ids. Several files for one side (movies + tags) are
outer-joined on id, and `catalogue` makes the final table cover every id of the interactions
while keeping catalogue-only ids (items nobody touched are still recommendable).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import mapping as mp
from .. import values as vl
from .. import movielens as ml
from ...errors import DataError
from .parse import Table, read_one
from .sources import counted, short


@dataclass
class Side:
    """One side (items or users) as read: the table indexed by normalised id, and what it holds."""
    table: pd.DataFrame  # indexed by normalised id
    kinds: dict
    title: str | None
    source: str


def notes_on(table: Table, release: ml.Release | None) -> list[str]:
    """What reading said about a file, plus a Latin-1 read (expected for MovieLens, worth saying otherwise)."""
    notes = list(table.notes)
    if table.encoding == "latin-1" and release is None:
        notes.append(f"Read {table.source} as Latin-1 (it is not UTF-8).")
    return notes


def _id_strings(s: pd.Series) -> pd.Series:
    """Lenient id normalisation for matching columns (never raises)."""
    if pd.api.types.is_float_dtype(s):
        arr = s.to_numpy(dtype=float, na_value=np.nan)
        ok = np.isfinite(arr) & (np.floor(arr) == arr) & (np.abs(arr) < 2**63)
        out = s.astype("str")
        out[ok] = arr[ok].astype(np.int64).astype(str)
        return out
    return s.astype("str").str.strip().str.replace(vl.INTEGRAL_TEXT, r"\1", regex=True)


def _id_column(raw: pd.DataFrame, what: str, inter_ids: pd.Index, id_names: list, mapping: dict, src: str):
    """The id column of a generic side table: from the mapping, by name, or by matching values."""
    key = mapping.get(f"{what}_table_id")
    if key is not None and key not in raw.columns:
        raise DataError(f"The column mapping names '{key}' as the {what} id column, but there is no such column. "
                        f"The columns are: {', '.join(map(str, raw.columns))}.",
                        fix="choose one of those columns", source=src)
    if key is None:
        names = mp.ITEM_NAMES if what == "item" else mp.USER_NAMES
        words = mp.ITEM_WORDS if what == "item" else mp.USER_WORDS
        key = mp.find_id_column(raw, id_names, names, words)
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
    return key


def read_side(source, what: str, inter_ids: pd.Index, id_names: list, mapping: dict, notes: list[str]) -> Side:
    """One items/users source -> table indexed by id, with kinds.

    `id_names` are what the id column may be called here (the interactions' own name for it, and
    the canonical one); `mapping` is the user's column mapping (`{what}_table_id`, `{what}_features`).
    """
    role = f"{what}s"
    read = read_one(source, role)
    release = ml.recognise(read)
    notes += notes_on(read, release)
    raw, src = read.frame, read.source
    kinds, title = None, None
    if release is not None:
        raw, key, kinds, title = release.side(raw, role)
    else:
        key = _id_column(raw, what, inter_ids, id_names, mapping, src)
    ids = vl.normalise_ids(raw[key], source=src, column=str(key), what=what, header=read.line_header, every="row")
    dup = ids.duplicated(keep=False).to_numpy()
    if dup.any() and release is None:  # repeated ids beside a tag column: a tags table, one text per item
        tagcol = mp.find_column([c for c in raw.columns if c != key], ["tag", "tags", "keyword", "keywords", "label"])
        if tagcol is not None and what == "item":
            agg = vl.join_tags(ids, raw[tagcol])
            raw = agg.rename(columns={"tags": str(tagcol)})
            key, ids, kinds = "item_id", agg["item_id"], {str(tagcol): "text"}
            dup = np.zeros(len(ids), bool)
    if dup.any():
        first = ids.iloc[int(np.flatnonzero(dup)[0])]
        where = np.flatnonzero((ids == first).to_numpy())
        n_rep = int(ids.duplicated().sum())
        raise DataError(
            f"The {what} id '{short(first)}' appears on more than one row (data rows "
            f"{', '.join(str(r + 1) for r in where[:5])}); {counted(n_rep, 'row')} "
            f"{'repeats' if n_rep == 1 else 'repeat'} "
            f"an earlier id. The {what}s table needs exactly one row per {what}.",
            fix=f"remove the repeated rows, or merge them into one row per {what}", source=src)
    matched = int(vl.isin(pd.Index(ids), inter_ids).sum())
    if matched == 0:
        ex_side = ", ".join(f"'{short(x, 20)}'" for x in ids.iloc[:3])
        ex_inter = ", ".join(f"'{short(x, 20)}'" for x in inter_ids[:3])
        raise DataError(
            f"None of the {len(ids):,} {what} ids in column '{key}' appears in the interactions "
            f"(this table has ids like {ex_side}; the interactions have {ex_inter}).",
            fix=f"check that the files belong together and that '{key}' is the {what} id column", source=src)
    table = raw.drop(columns=[key])
    table.index = pd.Index(ids.to_numpy(), name=f"{what}_id", dtype="str")
    feats = mapping.get(f"{what}_features")
    if kinds is None:
        kinds = mp.guess_kinds(table)
    if feats is not None:
        kinds = {c: k for c, k in feats.items() if c in table.columns}
    for c, k in kinds.items():  # numbers read from text become numbers (zip codes etc. stay text)
        if k == "numeric" and c in table.columns:
            table[c] = vl.to_numeric_where_possible(table[c])
    if title is None and what == "item":
        title = mp.guess_title(table, kinds)
    return Side(table, {c: k for c, k in kinds.items() if c in table.columns}, title, src)


def combine(sides: list[Side], what: str) -> Side | None:
    """Several sources for one side (movies + tags) -> one table, outer-joined on id, order kept."""
    if not sides:
        return None
    table = sides[0].table
    kinds = dict(sides[0].kinds)
    title = sides[0].title
    for s in sides[1:]:
        idx = table.index.append(s.table.index[~vl.isin(s.table.index, table.index)])
        table = table.reindex(idx)
        other = s.table.reindex(idx)
        for c in other.columns:
            name = c if c not in table.columns else f"{c}_{len(table.columns)}"
            table[name] = other[c].to_numpy()
            if c in s.kinds:
                kinds[name] = s.kinds[c]
        title = title or s.title
        table.index.name = f"{what}_id"
    return Side(table, kinds, title, " + ".join(dict.fromkeys(s.source for s in sides)))


def catalogue(side: Side | None, moved: pd.DataFrame | None, used: pd.Index, what: str, noun: str, event: str,
              notes: list[str]) -> pd.DataFrame:
    """Side table covering every id seen in the interactions; catalogue-only ids are kept.

    `moved`: attributes found constant per id in the interactions (moved out of them by the loader)."""
    if side is None and moved is None:
        return pd.DataFrame(index=pd.Index(used, name=f"{what}_id", dtype="str"))
    if side is None:
        table = moved.reindex(used)
        table.index.name = f"{what}_id"
        return table
    table = side.table
    if moved is not None:
        for c in moved.columns:
            if c in table.columns:
                notes.append(f"Column '{c}' is in both the interactions and {side.source}; the latter is used.")
                continue
            table[c] = moved[c].reindex(table.index).to_numpy()
    extra = used[~vl.isin(used, table.index)]
    unused = int((~vl.isin(table.index, used)).sum())
    if len(extra):
        notes.append(f"{counted(len(extra), noun)} in the interactions {'is' if len(extra) == 1 else 'are'} missing "
                     f"from {side.source}; {'it gets' if len(extra) == 1 else 'they get'} empty attributes.")
        table = table.reindex(table.index.append(pd.Index(extra, dtype="str")))
        if moved is not None:  # every moved column is in table (added above) and in fill
            fill = moved.reindex(extra)
            for c in moved.columns:
                table.loc[extra, c] = fill[c].to_numpy()
    if unused:
        notes.append(f"{counted(unused, noun)} {'has' if unused == 1 else 'have'} no {event}; kept in the catalogue.")
    table.index.name = f"{what}_id"
    return table

