"""MovieLens, recognised without any mapping: ml-latest / ml-25m (CSV with headers), ml-100k
(`u.data` tab, `u.item` / `u.user` `|`, no headers, latin-1) and ml-1m (`::`, no headers).

Recognition is by columns and values, not by file name alone, so an upload renamed to
`upload.csv` is still recognised. Each recogniser returns the table with canonical column
names plus the kinds of its attributes (GroupLens, https://grouplens.org/datasets/movielens/).

The loader knows MovieLens only through two hooks: `recognise` (once per table: a `Release`
or None) and `folder_parts` (which files of a folder are which). Everything else it needs,
the canonical columns, kinds, title, layout, nouns and suggested tasks, comes from the
`Release`, so the generic reading path never tests for MovieLens itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import DataError
from .values import as_numeric, join_tags

if TYPE_CHECKING:
    from .read.parse import Table

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]
LAYOUTS = {"latest": "movielens-latest", "100k": "movielens-100k", "1m": "movielens-1m"}
SUGGESTED_TASKS = ["watched=implicit", "liked=rating>=4"]
ROLES = {  # what each recognised table is
    "ml-latest-ratings": "interactions", "ml-100k-data": "interactions", "ml-1m-ratings": "interactions",
    "ml-latest-movies": "items", "ml-latest-tags": "items", "ml-latest-links": "items",
    "ml-100k-item": "items", "ml-1m-movies": "items",
    "ml-100k-user": "users", "ml-1m-users": "users",
}
_YEAR = r"\((\d{4})\)\s*$"


def _ints(s: pd.Series) -> bool:
    num = as_numeric(s.head(2000))
    return num is not None and num.notna().all() and bool((num == np.floor(num)).all())


def _in(s: pd.Series, values) -> bool:
    v = s.head(2000).dropna().astype("str").str.strip()
    return len(v) > 0 and bool(v.isin(values).all())


def recognise(table: Table) -> Release | None:
    """The MovieLens file this table is, or None: the loader's one question about MovieLens."""
    file = _which_file(table.frame, table.header, table.delimiter)
    return None if file is None else Release(file, table.source)


def _which_file(df: pd.DataFrame, header: bool, delim: str | None) -> str | None:
    """Which MovieLens table this is ("ml-latest-ratings", "ml-100k-item", ...), or None.

    Headerless files (ml-100k, ml-1m) are told apart by their delimiter and their values."""
    cols = set(map(str, df.columns))
    if header:
        if {"userId", "movieId", "rating", "timestamp"} <= cols:
            return "ml-latest-ratings"
        if {"movieId", "title", "genres"} <= cols:
            return "ml-latest-movies"
        if {"userId", "movieId", "tag"} <= cols:
            return "ml-latest-tags"
        if {"movieId", "imdbId", "tmdbId"} <= cols:
            return "ml-latest-links"
        return None
    n = df.shape[1]
    c = list(df.columns)
    if delim == "::":
        if n == 4 and all(_ints(df[x]) for x in c):
            return "ml-1m-ratings"
        if n == 3 and _ints(df[c[0]]):
            return "ml-1m-movies"
        if n == 5 and _ints(df[c[0]]) and _in(df[c[1]], ["M", "F"]):
            return "ml-1m-users"
        return None
    if delim == "\t" and n == 4 and all(_ints(df[x]) for x in c):
        return "ml-100k-data"
    if delim == "|":
        if n == 24 and _ints(df[c[0]]) and all(_in(df[x], ["0", "1"]) for x in c[5:]):
            return "ml-100k-item"
        if n == 5 and _ints(df[c[0]]) and _ints(df[c[1]]) and _in(df[c[2]], ["M", "F"]):
            return "ml-100k-user"
    return None


def layout_of(file: str) -> str:
    return LAYOUTS[file.split("-")[1]]


def ratings(df: pd.DataFrame, file: str) -> tuple[pd.DataFrame, dict, str]:
    """Ratings table -> (table with user_id/item_id/rating/timestamp, mapping, original item column)."""
    if file == "ml-latest-ratings":
        df = df.rename(columns={"userId": "user_id", "movieId": "item_id"})
        orig = "movieId"
    else:
        df = df.copy()
        df.columns = ["user_id", "item_id", "rating", "timestamp"]
        orig = "item_id"
    m = {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "item_features": {},
         "user_features": {}, "labels": ["rating"]}
    return df, m, orig


def _year(title: pd.Series) -> pd.Series:
    return pd.to_numeric(title.astype("str").str.extract(_YEAR, expand=False), errors="coerce")


def items(df: pd.DataFrame, file: str) -> tuple[pd.DataFrame, str, dict, str | None]:
    """Items-side table -> (table, id column, kinds, title column)."""
    if file == "ml-latest-movies":
        out = df.rename(columns={"movieId": "item_id"}).copy()
        out["year"] = _year(out["title"])
        return out, "item_id", {"title": "text", "genres": "multi", "year": "numeric"}, "title"
    if file == "ml-latest-tags":
        return tags(df), "item_id", {"tags": "text"}, None
    if file == "ml-latest-links":
        return df.rename(columns={"movieId": "item_id"}), "item_id", {}, None
    if file == "ml-1m-movies":
        out = df.copy()
        out.columns = ["item_id", "title", "genres"]
        out["year"] = _year(out["title"])
        return out, "item_id", {"title": "text", "genres": "multi", "year": "numeric"}, "title"
    if file == "ml-100k-item":
        c = list(df.columns)
        out = pd.DataFrame({"item_id": df[c[0]], "title": df[c[1]], "release_date": df[c[2]], "imdb_url": df[c[4]]})
        flags = np.column_stack([pd.to_numeric(df[x], errors="coerce").fillna(0).to_numpy() for x in c[5:]])
        acc = np.full(len(df), "", dtype=object)
        for j, g in enumerate(ML100K_GENRES):
            if g != "unknown":
                acc = acc + np.where(flags[:, j] == 1, g + "|", "")
        out["genres"] = pd.Series(acc, index=df.index, dtype="str").str.rstrip("|")
        year = _year(out["title"])
        from_date = pd.to_numeric(out["release_date"].astype("str").str.extract(r"(\d{4})\s*$", expand=False),
                                  errors="coerce")
        out["year"] = year.fillna(from_date)
        return out, "item_id", {"title": "text", "genres": "multi", "year": "numeric"}, "title"
    raise ValueError(file)  # pragma: no cover - callers check ROLES first


def tags(df: pd.DataFrame) -> pd.DataFrame:
    """One row per movie: its distinct tags, comma-joined, as a text attribute."""
    return join_tags(df["movieId"], df["tag"])


def users(df: pd.DataFrame, file: str) -> tuple[pd.DataFrame, str, dict]:
    """Users-side table -> (table, id column, kinds)."""
    out = df.copy()
    if file == "ml-100k-user":
        out.columns = ["user_id", "age", "gender", "occupation", "zip_code"]
        return out, "user_id", {"age": "numeric", "gender": "categorical", "occupation": "categorical"}
    out.columns = ["user_id", "gender", "age", "occupation", "zip_code"]
    # ml-1m codes age in bands (1, 18, 25, ...) and occupation as 0..20: both are categories
    return out, "user_id", {"gender": "categorical", "age": "categorical", "occupation": "categorical"}


FOLDERS = [  # (interactions file, item files, users file): latest, 100k, 1m
    ("ratings.csv", ["movies.csv", "tags.csv"], None),
    ("u.data", ["u.item"], "u.user"),
    ("ratings.dat", ["movies.dat"], "users.dat"),
]


def folder_parts(files: dict) -> tuple | None:
    """(interactions, item files or None, users file or None) of a MovieLens release folder, or None.

    `files` maps lower-case file names to files (paths or zip members), as the loader lists them."""
    for inter, item_files, user_file in FOLDERS:
        if inter in files:
            items = [files[f] for f in item_files if f in files] or None
            users = files.get(user_file) if user_file else None
            return files[inter], items, users
    return None


@dataclass(frozen=True)
class Release:
    """A table recognised as one file of a MovieLens release, and how it becomes canonical."""
    file: str  # a key of ROLES
    source: str  # the file's name in messages

    item_noun = "movies"  # what notes call the items and the events of a MovieLens dataset
    event = "ratings"
    suggested_tasks = tuple(SUGGESTED_TASKS)

    @property
    def role(self) -> str:
        """"interactions", "items" or "users": where this file belongs in `load`."""
        return ROLES[self.file]

    @property
    def layout(self) -> str:
        return layout_of(self.file)

    def interactions(self, df: pd.DataFrame) -> tuple[pd.DataFrame, dict, str, str]:
        """The ratings -> (table, mapping, original item column, original user column).

        The original names are what the id column may be called in the side tables."""
        if self.role != "interactions":
            raise DataError(f"This looks like the MovieLens {self.role} table, not the ratings.",
                            fix=f"give the ratings file as the interactions, and this one as the {self.role}",
                            source=self.source)
        out, m, orig_item = ratings(df, self.file)
        return out, m, orig_item, "userId" if self.file == "ml-latest-ratings" else "user_id"

    def side(self, df: pd.DataFrame, role: str) -> tuple[pd.DataFrame, str, dict, str | None]:
        """An items or users file given as `role` -> (table, id column, kinds, title column)."""
        if self.role != role:
            raise DataError(f"This looks like the MovieLens {self.role} table, but it was given as the {role} "
                            "table.", fix=f"give it as the {self.role} file instead", source=self.source)
        if role == "items":
            return items(df, self.file)
        return (*users(df, self.file), None)
