"""Encoding to tensors, done once with vectorised pandas/numpy.

Side features live in per-item and per-user tables (row = one item / user of the catalogue),
so an example is just (user row, item row) and the model gathers features by index. Id
embeddings use a separate slot per entity seen in training, and slot 0 (out of vocabulary)
for everything else: a held-out item keeps its side features but has no learned id vector.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from .context import ContextRows, ContextSpace
from .dataset import Dataset, index_positions, split_multi

MAX_VOCAB = 5000  # categorical levels kept per column (most frequent); the rest share "other"
MAX_MULTI = 12  # values kept per multi-valued cell


@dataclass
class SideTable:
    """Encoded side features of one entity kind (users or items)."""
    ids: list[str]
    slots: np.ndarray  # int64 [n]: id-embedding slot, 0 = not seen in training
    cat: dict[str, np.ndarray] = field(default_factory=dict)  # col -> int64 [n], 0 = missing/other
    cat_vocab: dict[str, list[str]] = field(default_factory=dict)
    multi: dict[str, np.ndarray] = field(default_factory=dict)  # col -> int64 [n, L], 0 = pad
    multi_vocab: dict[str, list[str]] = field(default_factory=dict)
    numeric: np.ndarray | None = None  # float32 [n, k], standardised, NaN -> 0
    numeric_cols: list[str] = field(default_factory=list)
    numeric_stats: dict[str, list[float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def n_slots(self) -> int:
        return int(self.slots.max()) + 1 if len(self.slots) else 1

    def describe(self) -> dict:
        """Sizes the model needs to build its embedding tables."""
        return {
            "n": self.n, "n_slots": self.n_slots,
            "cat": {c: len(v) + 1 for c, v in self.cat_vocab.items()},
            "multi": {c: len(v) + 1 for c, v in self.multi_vocab.items()},
            "numeric": len(self.numeric_cols),
        }

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {f"{prefix}.slots": torch.as_tensor(self.slots, dtype=torch.long)}
        for c, v in self.cat.items():
            out[f"{prefix}.cat.{c}"] = torch.as_tensor(v, dtype=torch.long)
        for c, v in self.multi.items():
            out[f"{prefix}.multi.{c}"] = torch.as_tensor(v, dtype=torch.long)
        if self.numeric is not None and self.numeric.shape[1]:
            out[f"{prefix}.numeric"] = torch.as_tensor(self.numeric, dtype=torch.float32)
        return out

    def to_meta(self) -> dict:
        """JSON-able vocabularies and stats (the arrays go to safetensors)."""
        return {"ids": self.ids, "cat_vocab": self.cat_vocab, "multi_vocab": self.multi_vocab,
                "numeric_cols": self.numeric_cols, "numeric_stats": self.numeric_stats}

    @classmethod
    def from_meta(cls, meta: dict, arrays: dict[str, np.ndarray], prefix: str) -> "SideTable":
        return cls(
            ids=list(meta["ids"]), slots=arrays[f"{prefix}.slots"],
            cat={c: arrays[f"{prefix}.cat.{c}"] for c in meta["cat_vocab"]},
            cat_vocab={c: list(v) for c, v in meta["cat_vocab"].items()},
            multi={c: arrays[f"{prefix}.multi.{c}"] for c in meta["multi_vocab"]},
            multi_vocab={c: list(v) for c, v in meta["multi_vocab"].items()},
            numeric=arrays.get(f"{prefix}.numeric"),
            numeric_cols=list(meta["numeric_cols"]), numeric_stats=dict(meta["numeric_stats"]),
        )


def _encode_table(table: pd.DataFrame, kinds: dict[str, str], seen_ids: set, use_features: bool) -> SideTable:
    ids = [str(x) for x in table.index]
    seen = np.fromiter((i in seen_ids for i in ids), bool, len(ids))
    slots = np.zeros(len(ids), np.int64)
    slots[seen] = np.arange(1, seen.sum() + 1)
    st = SideTable(ids=ids, slots=slots)
    if not use_features:
        return st
    num_cols = []
    for col, ftype in kinds.items():
        if col not in table.columns:
            continue
        s = table[col]
        if ftype == "categorical":
            vals = s.astype("string").fillna("").str.strip()
            counts = vals[vals != ""].value_counts()
            vocab = [str(v) for v in counts.index[:MAX_VOCAB]]
            pos = pd.Index(vocab).get_indexer(vals)
            st.cat[col] = (pos + 1).astype(np.int64)  # -1 (missing/other) -> 0
            st.cat_vocab[col] = vocab
        elif ftype == "multi":
            lists = s if s.map(lambda v: isinstance(v, list)).all() else split_multi(s)
            flat = pd.Series([v for lst in lists for v in lst], dtype="string")
            vocab = [str(v) for v in flat.value_counts().index[:MAX_VOCAB]]
            index = pd.Index(vocab)
            width = max(1, min(MAX_MULTI, int(lists.map(len).max() or 1)))
            codes = np.zeros((len(ids), width), np.int64)
            lens = lists.map(lambda x: min(len(x), width)).to_numpy()
            rows = np.repeat(np.arange(len(ids)), lens)
            colpos = np.concatenate([np.arange(n) for n in lens]) if len(lens) else np.zeros(0, np.int64)
            vals = [v for lst in lists for v in lst[:width]]
            if vals:
                codes[rows, colpos] = index.get_indexer(vals) + 1
            st.multi[col] = codes
            st.multi_vocab[col] = vocab
        elif ftype == "numeric":
            num_cols.append(col)
    if num_cols:
        block = np.column_stack([pd.to_numeric(table[c], errors="coerce").to_numpy(float) for c in num_cols])
        block[~np.isfinite(block)] = np.nan
        mean = np.nanmean(block, axis=0) if len(block) else np.zeros(len(num_cols))
        std = np.nanstd(block, axis=0) if len(block) else np.ones(len(num_cols))
        mean = np.nan_to_num(mean)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        z = np.nan_to_num((block - mean) / std).astype(np.float32)
        st.numeric, st.numeric_cols = z, num_cols
        st.numeric_stats = {c: [float(m), float(s)] for c, m, s in zip(num_cols, mean, std)}
    return st


@dataclass
class UserHistory:
    """Each user's latest training history (what recommending reads) and how it was built;
    saved with the run's feature space (arrays in safetensors, settings in space.json). It lives here,
    beside the feature space that holds it, so reloading a space needs no history builder."""
    items: np.ndarray  # int32 [n_users, L]: item rows, most recent first, 0 where padded
    lengths: np.ndarray  # int32 [n_users]
    task: str | None = None  # only past items where this binary task is 1 (None: every interaction)
    order: str = "time"
    pool: str = "train"  # mtrlib.data.history.POOLS

    @property
    def length(self) -> int:
        return int(self.items.shape[1])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"history.items": torch.as_tensor(self.items, dtype=torch.int32),
                "history.lengths": torch.as_tensor(self.lengths, dtype=torch.int32)}

    def to_meta(self) -> dict:
        return {"length": self.length, "task": self.task, "order": self.order, "pool": self.pool}

    @classmethod
    def from_meta(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "UserHistory":
        return cls(items=arrays["history.items"].astype(np.int32), lengths=arrays["history.lengths"].astype(np.int32),
                   task=meta.get("task"), order=meta.get("order", "time"), pool=meta.get("pool", "train"))


@dataclass
class FeatureSpace:
    """Everything needed to turn ids into model inputs; saved with a run so it reloads alone."""
    users: SideTable
    items: SideTable
    item_text: np.ndarray | None = None  # float32 [n_items, D] language-model vectors (optional)
    history: UserHistory | None = None  # UserHistory: each user's latest history (optional)
    context: ContextSpace | None = None  # how the impression's context columns are encoded (optional)

    @classmethod
    def fit(cls, ds: Dataset, train_frame: pd.DataFrame, use_features: bool = True) -> "FeatureSpace":
        """Vocabularies from the catalogue; id slots only for ids seen in `train_frame`."""
        users = _encode_table(ds.users, ds.user_features, set(pd.unique(train_frame["user_id"])), use_features)
        items = _encode_table(ds.items, ds.item_features, set(pd.unique(train_frame["item_id"])), use_features)
        return cls(users=users, items=items)

    def user_rows(self, ids) -> np.ndarray:
        """Row index per user id (-1 for ids not in the catalogue)."""
        return index_positions(self._index('users'), ids)

    def item_rows(self, ids) -> np.ndarray:
        return index_positions(self._index('items'), ids)

    def _index(self, kind: str) -> pd.Index:
        """The ids of users or items as an Index, built once (a lookup per call rebuilt its hash table)."""
        cache = self.__dict__.setdefault("_indexes", {})
        table = getattr(self, kind)
        if kind not in cache or cache[kind][0] is not table.ids:
            cache[kind] = (table.ids, pd.Index(table.ids, dtype="str"))
        return cache[kind][1]

    def describe(self) -> dict:
        out = {"users": self.users.describe(), "items": self.items.describe(),
               "text_dim": 0 if self.item_text is None else int(self.item_text.shape[1])}
        if self.history is not None:
            out["history"] = {"length": self.history.length}
        if self.context is not None:
            out["context"] = self.context.describe()
        return out

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tables the model keeps as buffers (context: only its default row; the logged rows'
        context travels with the examples)."""
        out = {**self.users.tensors("users"), **self.items.tensors("items")}
        if self.item_text is not None:
            out["items.text"] = torch.as_tensor(self.item_text, dtype=torch.float32)
        if self.history is not None:
            out.update(self.history.tensors())
        if self.context is not None:
            out.update(self.context.default_tensors())
        return out

    def to_meta(self) -> dict:
        out = {"users": self.users.to_meta(), "items": self.items.to_meta()}
        if self.history is not None:
            out["history"] = self.history.to_meta()
        if self.context is not None:
            out["context"] = self.context.to_meta()
        return out

    @classmethod
    def from_meta(cls, meta: dict, arrays: dict[str, np.ndarray]) -> "FeatureSpace":
        history = None
        if "history" in meta:  # runs trained with a history (older runs have none)
            history = UserHistory.from_meta(meta["history"], arrays)
        return cls(users=SideTable.from_meta(meta["users"], arrays, "users"),
                   items=SideTable.from_meta(meta["items"], arrays, "items"),
                   item_text=arrays.get("items.text"), history=history,
                   context=ContextSpace.from_meta(meta["context"]) if "context" in meta else None)


@dataclass
class EncodedExamples:
    """Pre-encoded tensors: the trainer batches these by indexing, never per sample."""
    user: torch.Tensor  # long [N] user row
    item: torch.Tensor  # long [N] item row
    labels: torch.Tensor  # float [N, T] (0 where unobserved)
    mask: torch.Tensor  # bool [N, T]
    context: ContextRows | None = None  # each example's impression context (mtrlib.data.context), if any

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def subset(self, idx) -> "EncodedExamples":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return EncodedExamples(self.user[idx], self.item[idx], self.labels[idx], self.mask[idx],
                               None if self.context is None else self.context.subset(idx))

    def to(self, device) -> "EncodedExamples":
        return EncodedExamples(self.user.to(device), self.item.to(device), self.labels.to(device), self.mask.to(device),
                               None if self.context is None else self.context.to(device))


def encode_examples(space: FeatureSpace, frame: pd.DataFrame, labels: np.ndarray) -> EncodedExamples:
    u = space.user_rows(frame["user_id"])
    i = space.item_rows(frame["item_id"])
    if (u < 0).any() or (i < 0).any():
        raise ValueError("examples reference users/items outside the feature space")  # a bug, not bad data
    mask = ~np.isnan(labels)
    return EncodedExamples(
        user=torch.as_tensor(u, dtype=torch.long), item=torch.as_tensor(i, dtype=torch.long),
        labels=torch.as_tensor(np.nan_to_num(labels, nan=0.0), dtype=torch.float32),
        mask=torch.as_tensor(mask, dtype=torch.bool),
    )
