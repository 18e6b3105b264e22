"""The validated dataset object every later stage consumes.

Canonical form: interactions have string ids in `user_id` / `item_id` (any size, any
original type), an optional numeric `timestamp`, and the user's other columns as they
came; the item and user side tables are indexed by the same string ids and hold
attributes whose kind (categorical, multi, numeric, text) is recorded in the schema.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .values import count_repeats  # by integer codes: drop_duplicates hashes every id as an object

FEATURE_KINDS = ("categorical", "multi", "numeric", "text")
# context features (columns of the interactions that describe the impression) may also be
# bucketised numbers: quantile buckets of the training rows, each bucket a category (hour, price)
CONTEXT_KINDS = FEATURE_KINDS + ("bucket",)
# every column's role in a mapping (mtrlib.data.mapping.ROLES explains each)
ROLES = ("user", "item", "time", "label", "context", "item_feature", "user_feature", "split", "ignored")
MULTI_SEP = "|"
LAYOUT_LABELS = {"world": "World", "movielens-latest": "MovieLens", "movielens-100k": "MovieLens 100K",
                 "movielens-1m": "MovieLens 1M", "generic": "Table"}


def upload_name(layout: str, file_name: str) -> str:
    """What an upload is called: its detected layout and its file ('MovieLens 100K · u.data'), not
    the file's stem alone ('u')."""
    return f"{LAYOUT_LABELS.get(layout, str(layout).title())} · {file_name}"


@dataclass
class Dataset:
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    layout: str = "generic"  # "world" | "movielens-latest" | "movielens-100k" | "generic"
    name: str = "data"
    item_features: dict[str, str] = field(default_factory=dict)
    user_features: dict[str, str] = field(default_factory=dict)
    title_column: str | None = None
    text_columns: list[str] = field(default_factory=list)
    suggested_tasks: list[str] = field(default_factory=list)
    ground_truth: dict | None = None
    notes: list[str] = field(default_factory=list)
    # columns of the interactions that describe the impression (device, hour, position): column -> kind
    context_features: dict[str, str] = field(default_factory=dict)
    # the context column that is the slot an item was shown in; fixed to a named slot when scoring
    position_column: str | None = None
    ignored: dict[str, str] = field(default_factory=dict)  # column -> why it is not used (never dropped silently)
    reasons: dict[str, str] = field(default_factory=dict)  # column -> why it got its role and kind
    mapping: dict = field(default_factory=dict)  # the effective mapping (mtrlib.data.mapping), as JSON

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def has_timestamp(self) -> bool:
        return "timestamp" in self.interactions.columns

    @property
    def density(self) -> float:
        n_pairs = self.n_interactions - count_repeats(self.interactions[["user_id", "item_id"]])
        return n_pairs / max(1, self.n_users * self.n_items)

    def label_columns(self) -> list[str]:
        """Interaction columns other than ids and time: candidates for task sources."""
        skip = {"user_id", "item_id", "timestamp", *self.context_features, *self.ignored}
        return [c for c in self.interactions.columns if c not in skip]

    def item_popularity(self) -> pd.Series:
        """Interactions per item (all items, zeros included), most popular first."""
        counts = self.interactions["item_id"].value_counts()
        return counts.reindex(self.items.index, fill_value=0).sort_values(ascending=False)

    def item_label(self, item_ids) -> list[str]:
        """Human-readable label per item id (title when there is one)."""
        ids = pd.Index(item_ids)
        if self.title_column and self.title_column in self.items.columns:
            t = self.items[self.title_column].reindex(ids)
            return [str(x) if isinstance(x, str) and x else str(i) for i, x in zip(ids, t)]
        return [str(i) for i in ids]

    def genre_column(self) -> str | None:
        """The item attribute most like a genre, for colouring and kNN purity."""
        for c in ("genre", "genres", "category"):
            if c in self.item_features:
                return c
        for c, k in self.item_features.items():
            if k in ("categorical", "multi"):
                return c
        return None

    def report(self) -> dict:
        """Counts for the `inspect` CLI and the data page."""
        inter = self.interactions
        rep = {
            "name": self.name,
            "layout": self.layout,
            "rows": int(len(inter)),
            "users": int(self.n_users),
            "items": int(self.n_items),
            "users_with_interactions": int(inter["user_id"].nunique()),
            "items_with_interactions": int(inter["item_id"].nunique()),
            "density": float(self.density),
            "has_timestamp": bool(self.has_timestamp),
            "columns": list(inter.columns),
            "item_features": dict(self.item_features),
            "user_features": dict(self.user_features),
            "context_features": dict(self.context_features),
            "position": self.position_column,
            "ignored": dict(self.ignored),
            "reasons": dict(self.reasons),
            "suggested_tasks": list(self.suggested_tasks),
            "notes": list(self.notes),
        }
        balance = {}
        for c in self.label_columns():
            s = inter[c]
            if pd.api.types.is_numeric_dtype(s):
                v = s.dropna()
                if len(v) and set(np.unique(v.to_numpy()[:100000])) <= {0, 1}:
                    balance[c] = {"positive_rate": float(v.mean()), "observed": int(len(v))}
                elif len(v):
                    balance[c] = {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
                                  "observed": int(len(v))}
        rep["label_balance"] = balance
        return rep


def index_positions(index, ids) -> np.ndarray:
    """Position of each id in `index` (-1 if absent). Ids repeat (one per example, tens of
    millions of them): each distinct id is looked up once (factorize) and the positions spread
    back by code, instead of one lookup (and, for text ids, a Python str) per example."""
    index = index if isinstance(index, pd.Index) else pd.Index(index)
    if isinstance(ids, (pd.Series, pd.Index)) and len(ids) > 10_000:
        codes, uniques = pd.factorize(ids)
        pos = index.get_indexer(pd.Index(uniques.astype(str), dtype="str"))
        return np.where(codes >= 0, pos[np.maximum(codes, 0)], -1)
    return index.get_indexer(pd.Index([str(i) for i in ids]))


def split_multi(series: pd.Series) -> pd.Series:
    """'A|B|C' -> ['A','B','C'] (empty list for missing); the separator of MovieLens genres."""
    return series.fillna("").astype(str).map(
        lambda s: [p.strip() for p in s.split(MULTI_SEP) if p.strip() and p.strip() != "(no genres listed)"]
    )
