"""Loading: a user's files into one validated `Dataset` (`load`), or one file as read (`read_table`).

The interactions are read, recognised (MovieLens, through `movielens.recognise`) or mapped
(guessed, then overridden by the user's mapping), canonicalised (user_id, item_id, timestamp
and the other columns), and checked for size; attributes constant per item or user move to
the side tables, which are then read and joined (`side`). Every failure is a `DataError` that
names the file, the line or column, and what to do; anything else is turned into one too, so
the app shows a message and never a traceback.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from .. import mapping as mp
from .. import values as vl
from .. import movielens as ml
from . import given as gv
from ..dataset import Dataset
from ...errors import DataError
from .parse import Table, read_one
from .side import catalogue, combine, notes_on, read_side
from .sources import Blob, Folder, counted, open_source, short, unpack

MIN_INTERACTIONS = 5
_SAFETY_NET = True  # tests switch it off so an unexpected exception shows up as the bug it is


def read_table_full(source, *, name: str | None = None, header: bool | None = None) -> Table:
    """Read one file (path, bytes, upload or DataFrame) as a `Table`: the frame and how it was read.

    `header=None` decides from the values whether the first line names the columns.
    """
    return read_one(source, "data", name=name, header=header)


def read_table(source, *, name: str | None = None, header: bool | None = None) -> pd.DataFrame:
    """Read one file (path, bytes, upload or DataFrame) into a DataFrame of stripped strings.

    For previews and the column-mapping form; `load` does the validation and typing. How the
    file was read (delimiter, header, encoding) is in `read_table_full(...)`'s `Table`.
    """
    return read_table_full(source, name=name, header=header).frame


def _resolve_folder(folder: Folder) -> tuple:
    """A folder or multi-file zip -> (interactions source, item sources, users source, name); the
    interactions source is a dict of parts for train / val / test files (`given.find_parts`)."""
    files = {k.lower(): v for k, v in folder.files.items()}
    parts = ml.folder_parts(files)
    if parts is not None:
        return (*parts, folder.name)
    given_parts = gv.find_parts(files)
    if given_parts is not None:  # published splits: *train*, *val* / *valid*, *test* files of one layout
        return (given_parts, *gv.side_files(files), folder.name)
    for ext in ("csv", "tsv", "parquet", "csv.gz", "txt"):  # the trio `python -m mtrlib world` writes
        if f"interactions.{ext}" in files:
            items = files.get(f"items.{ext}")
            users = files.get(f"users.{ext}")
            return files[f"interactions.{ext}"], items, users, folder.name
    listing = ", ".join(sorted(folder.files)[:12]) or "(no files)"
    raise DataError(
        f"The folder '{folder.name}' holds no set of files that is recognised ({listing}).",
        fix="choose the interactions file itself, or a MovieLens folder (ratings.csv + movies.csv, u.data, "
            "ratings.dat), a folder with interactions.csv (+ items.csv, users.csv), or one with train / val / "
            "test files of one layout (*train*, *val* or *valid*, *test*)")


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
        with vl.numbers_memo():
            ds, by_files = _load(interactions, items, users, mapping, name)
            return gv.settle(ds, mapping, by_files=by_files)
    except DataError:
        raise
    except Exception as e:  # the last line of defence: the user sees a message, never a traceback
        if not _SAFETY_NET:
            raise
        raise DataError(f"The data could not be read ({type(e).__name__}: {short(e, 200)}).",
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
    release: ml.Release | None  # the MovieLens file the interactions are; None for any other table


def _map_interactions(table: Table, release: ml.Release | None, mapping: dict | None,
                      notes: list[str]) -> _Mapped:
    """Canonicalise the interactions: a recognised MovieLens `release` as it comes, any other
    table by the user's `mapping` over the guessed one."""
    raw, src, header = table.frame, table.source, table.header
    if raw.shape[1] < 2:
        raise DataError(
            f"The file has only one column ('{short(raw.columns[0])}'). An interactions table needs at least a "
            "user column and an item column.",
            fix="if the values are separated by something other than commas, tabs, semicolons, '|' or '::', "
                "save the file as CSV", source=src)
    if release is not None:
        raw, m, orig_item, orig_user = release.interactions(raw)
        layout, strict_ts = release.layout, True
    else:
        explicit = mp.check_mapping(mapping, raw.columns, source=src) if mapping else {}
        m = mp.merge_mapping(mp.guess_mapping(raw, header=header), explicit)
        orig_item, orig_user = m["item"], m["user"]
        layout, strict_ts = "generic", "timestamp" in explicit
        if m.get("timestamp") is None and "timestamp" not in explicit:
            looks = mp.find_column([c for c in raw.columns if c not in (m["user"], m["item"])], mp.TIME_NAMES)
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

    lines = table.line_header
    uid = vl.normalise_ids(raw[m["user"]], source=src, column=str(m["user"]), what="user", header=lines)
    iid = vl.normalise_ids(raw[m["item"]], source=src, column=str(m["item"]), what="item", header=lines)
    inter = pd.DataFrame({"user_id": uid.reset_index(drop=True), "item_id": iid.reset_index(drop=True)}).astype("str")
    used = {m["user"], m["item"]}
    ts = m.get("timestamp")
    if ts is not None:
        secs = vl.to_epoch_seconds(raw[ts], source=src, column=str(ts), header=lines, strict=strict_ts)
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
    dropped = mp.as_ignore(explicit.get("ignore")) if release is None else {}
    for c in raw.columns:
        if c in used or str(c) in dropped:  # what the user ignores is listed (Dataset.ignored), not carried
            continue
        target = c if c not in ("user_id", "item_id", "timestamp") else f"{c}_original"
        if target != c:
            notes.append(f"Column '{c}' was renamed '{target}' (the name is used for the mapped column).")
        inter[target] = vl.to_numeric_where_possible(raw[c]).reset_index(drop=True)
    _check_size(inter, src, notes)
    return _Mapped(inter, m, layout, [orig_item, "item_id"], [orig_user, "user_id"], moved, release)


def _check_size(inter: pd.DataFrame, src: str, notes: list[str]) -> None:
    """Too little data to do anything with is an error; repeated rows are worth a note."""
    n = len(inter)
    if n < MIN_INTERACTIONS:
        raise DataError(f"The file has only {n} interaction row(s); at least {MIN_INTERACTIONS} are needed.",
                        fix="use a larger file", source=src)
    for what in ("user", "item"):
        if inter[f"{what}_id"].nunique() < 2:
            raise DataError(f"Every row has the same {what} ('{short(inter[f'{what}_id'].iloc[0])}'): a recommender "
                            f"needs at least 2 {what}s.",
                            fix=f"check that the {what} column is the right one, or use more data", source=src)
    dups = vl.count_repeats(inter)
    if dups:
        notes.append(f"{counted(dups, 'row')} {'is an exact repeat' if dups == 1 else 'are exact repeats'} of earlier "
                     "rows; kept (remove them first if they are mistakes).")


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else ([] if x is None else [x])


def _load(interactions, items, users, mapping, name) -> tuple[Dataset, bool]:
    """(the Dataset, whether its split is given by train / val / test files)."""
    notes: list[str] = []
    if interactions is None:
        raise DataError("No interactions data was given.",
                        fix="choose the file with one row per user-item interaction (e.g. ratings.csv)")
    src_obj = interactions if gv.is_parts(interactions) else open_source(interactions, "interactions")
    if isinstance(src_obj, Blob):
        src_obj = unpack(src_obj)
    if isinstance(src_obj, Folder):  # MovieLens release, exported world or split files: the folder names the parts
        inter_src, f_items, f_users, folder_name = _resolve_folder(src_obj)
        items = f_items if items is None else items
        users = f_users if users is None else users
        name = name or folder_name
        src_obj = inter_src
    by_files = gv.is_parts(src_obj)
    if by_files:  # train / val / test files: one table with a split column naming each row's file
        raw = gv.read_parts(src_obj)
        mapping = {**(mapping or {}), "split": gv.split_column_of(raw)}
        if name is None:
            name = re.sub(r"[._-]*train[._-]*", "", re.sub(r"\.(csv|tsv|txt|dat|parquet|gz)$", "",
                                                           raw.source.split(" + ")[0], flags=re.I)) or "data"
    else:
        raw = read_one(src_obj, "interactions")
    src = raw.source
    release = ml.recognise(raw)
    notes += notes_on(raw, release)
    mapped = _map_interactions(raw, None if mapping else release, mapping, notes)  # a mapping overrides recognition
    inter, m, release = mapped.inter, mapped.mapping, mapped.release
    explicit = dict(mapping or {})

    used_items = pd.Index(pd.unique(inter["item_id"]), dtype="str")
    used_users = pd.Index(pd.unique(inter["user_id"]), dtype="str")
    item_side = combine([read_side(s, "item", used_items, mapped.item_cols, explicit, notes)
                         for s in _as_list(items)], "item")
    user_side = combine([read_side(s, "user", used_users, mapped.user_cols, explicit, notes)
                         for s in _as_list(users)], "user")
    item_noun, event = (release.item_noun, release.event) if release is not None else ("items", "interactions")
    items_df = catalogue(item_side, mapped.moved.get("item"), used_items, "item", item_noun, event, notes)
    users_df = catalogue(user_side, mapped.moved.get("user"), used_users, "user", "users", event, notes)

    kinds = {"item": dict(item_side.kinds) if item_side else {}, "user": dict(user_side.kinds) if user_side else {}}
    for what, df, side in (("item", items_df, item_side), ("user", users_df, user_side)):
        for c, k in (m.get(f"{what}_features") or {}).items():
            if c in df.columns:
                kinds[what][c] = k
            elif f"{what}_features" in explicit:
                raise DataError(f"The {what} feature '{c}' is not a column of the interactions"
                                f"{' or of ' + side.source if side else ''}.",
                                fix=f"choose {what} features among the existing columns")
    context, position, ignored = _context_of(m, inter, src, explicit)
    title = (item_side.title if item_side else None) or mp.guess_title(items_df, kinds["item"])
    if release is not None:  # its own mapping labels the ratings, so its own tasks fit
        suggested = list(release.suggested_tasks)
    else:
        suggested = mp.suggest_tasks(inter, [c for c in (m.get("labels") or []) if c in inter.columns
                                             and c not in context])
    if name is None:
        name = re.sub(r"\.(csv|tsv|txt|dat|data|parquet|gz|zip)$", "", src, flags=re.I) or "data"
    return Dataset(
        interactions=inter, items=items_df, users=users_df, layout=mapped.layout, name=name,
        item_features=kinds["item"], user_features=kinds["user"], title_column=title,
        text_columns=[c for c, k in kinds["item"].items() if k == "text"], suggested_tasks=suggested, notes=notes,
        context_features=context, position_column=position, ignored=ignored,
        reasons={str(k): v for k, v in (m.get("reasons") or {}).items()},
        mapping=gv.as_written(_effective(m, kinds, context, position, ignored), mapped),
    ), by_files


def _context_of(m: dict, inter: pd.DataFrame, src: str, explicit: dict) -> tuple[dict, str | None, dict]:
    """The context features (column -> kind) the interactions keep, the position column and the
    ignored columns (column -> why). A context column the user names must exist; a guessed one
    that is gone (renamed, moved) is left out."""
    given = m.get("context_features") or {}
    context = {c: given[c] for c in inter.columns if c in given and c not in ("user_id", "item_id", "timestamp")}
    for c in given:  # (in the table's column order, whatever order the mapping lists them in)
        if c not in context and "context_features" in explicit:
            raise DataError(f"The context feature '{c}' is not a column of the interactions.",
                            fix="choose context features among the interactions' columns: "
                                + ", ".join(str(x) for x in inter.columns[2:][:20]), source=src)
    position = m.get("position") if m.get("position") in context else None
    return context, position, mp.as_ignore(m.get("ignore"))


def _effective(m: dict, kinds: dict, context: dict, position, ignored: dict) -> dict:
    """The mapping as loading used it, as JSON (what `inspect --mapping-out` writes and a run records)."""
    out = {k: m.get(k) for k in ("user", "item", "timestamp", "item_table_id", "user_table_id", "split")
           if m.get(k) is not None}
    out.update(labels=list(m.get("labels") or []), item_features=dict(kinds["item"]),
               user_features=dict(kinds["user"]), context_features=dict(context),
               ignore=dict(ignored), reasons={str(k): v for k, v in (m.get("reasons") or {}).items()})
    if position is not None:
        out["position"] = position
    return {k: (str(v) if k in ("user", "item", "timestamp", "split") else v) for k, v in out.items()}
