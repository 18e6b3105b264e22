"""Context features: columns of the interactions that describe the impression (device, hour,
page, position), encoded per logged row.

Side features live in per-item and per-user tables; a context feature varies per impression, so
it is encoded once per *logged row* (int32 codes, float32 numbers) and every example reads its
logged row's context by its `origin` (a sampled negative shares its positive's impression: same
request, same device, same slot). Vocabularies, bucket edges and standardisation come from the
training rows only, so a code first seen in validation or test is 'other' (slot 0), as it
would be in production.

Kinds: categorical (one embedding per code), bucket (numbers cut at the training quantiles,
each bucket a code: hour, price), multi ('|'-lists, the mean of their codes' embeddings), text
(read as a bag of its lower-cased words, like multi: a language model per impression would cost
more than the rest of the model) and numeric (standardised).

When scoring for a recommendation there is no logged impression: the context is chosen
(`ContextSpace.encode_values`), by default each column's most frequent training value, with the
position fixed to a named slot (`DEFAULT_SLOT`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from .dataset import MULTI_SEP

MAX_VOCAB = 5000  # codes kept per column (most frequent in training); the rest share 'other'
MAX_TOKENS = 12  # values kept per multi-valued or text cell
BUCKETS = 10  # quantile buckets of a bucketised number
DEFAULT_SLOT = "1"  # the slot a recommendation is scored in, when the data has a position


class Context(NamedTuple):
    """A batch of contexts, as the model reads them (any part may have zero columns)."""
    cat: torch.Tensor  # long [B, Cc]: codes of categorical and bucket columns, 0 = missing / other
    multi: torch.Tensor  # long [B, Cm, L]: codes of multi and text columns, 0 = pad
    num: torch.Tensor  # float [B, Cn]: standardised numbers

    def __len__(self) -> int:
        return int(self.cat.shape[0])

    def expand(self, n: int) -> "Context":
        """One context (B = 1) repeated for n rows (a request's context for each candidate)."""
        return Context(self.cat.expand(n, -1), self.multi.expand(n, -1, -1), self.num.expand(n, -1))

    def to(self, device) -> "Context":
        return Context(self.cat.to(device), self.multi.to(device), self.num.to(device))


@dataclass
class ContextRows:
    """Encoded context of the logged rows (the table, shared by every subset) and each example's row."""
    cat: torch.Tensor  # int32 [R, Cc]
    multi: torch.Tensor  # int32 [R, Cm, L]
    num: torch.Tensor  # float32 [R, Cn]
    rows: torch.Tensor  # long [N]: each example's logged row

    def subset(self, idx) -> "ContextRows":
        return ContextRows(self.cat, self.multi, self.num, self.rows[torch.as_tensor(idx, dtype=torch.long)])

    def to(self, device) -> "ContextRows":
        return ContextRows(self.cat.to(device), self.multi.to(device), self.num.to(device), self.rows.to(device))

    def batch(self, idx) -> Context:
        """The contexts of examples `idx` (a slice, index tensor or array) as long / float tensors."""
        r = self.rows[idx]
        return Context(self.cat[r].long(), self.multi[r].long(), self.num[r])


def _strings(s: pd.Series) -> pd.Series:
    """Values as the text a vocabulary holds: '206' for 206 and 206.0, '' for missing."""
    if pd.api.types.is_float_dtype(s):
        arr = s.to_numpy(dtype=float, na_value=np.nan)
        whole = np.isfinite(arr) & (np.floor(arr) == arr)
        out = s.astype("string")
        out[whole] = pd.array(arr[whole].astype(np.int64).astype(str), dtype="string")
        return out.fillna("")
    return s.astype("string").fillna("").str.strip()


def _tokens(s: pd.Series, kind: str) -> pd.Series:
    """Each cell as its list of values: '|'-separated (multi) or lower-cased words (text)."""
    t = s.astype("string").fillna("")
    if kind == "text":
        return t.str.lower().str.findall(r"[a-z0-9]+")
    return t.str.split(MULTI_SEP, regex=False).map(lambda xs: [x.strip() for x in xs if x.strip()])


def _numbers(s: pd.Series) -> np.ndarray:
    arr = np.array(pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan))  # (a copy)
    arr[~np.isfinite(arr)] = np.nan
    return arr


@dataclass
class ContextSpace:
    """How each context column is encoded (fitted on the training rows); saved with a run."""
    kinds: dict[str, str]  # column -> kind, in the order the model reads them
    vocab: dict[str, list[str]] = field(default_factory=dict)  # categorical / multi / text columns
    edges: dict[str, list[float]] = field(default_factory=dict)  # bucket columns: the cut points
    stats: dict[str, list[float]] = field(default_factory=dict)  # numeric columns: mean, std
    defaults: dict[str, str] = field(default_factory=dict)  # column -> the value scored with by default
    position: str | None = None  # the column that is the slot

    @property
    def cat_cols(self) -> list[str]:
        return [c for c, k in self.kinds.items() if k in ("categorical", "bucket")]

    @property
    def multi_cols(self) -> list[str]:
        return [c for c, k in self.kinds.items() if k in ("multi", "text")]

    @property
    def width(self) -> int:
        """Values kept per multi / text cell (1 when there is no such column)."""
        return MAX_TOKENS if self.multi_cols else 1

    @property
    def num_cols(self) -> list[str]:
        return [c for c, k in self.kinds.items() if k == "numeric"]

    @classmethod
    def fit(cls, frame: pd.DataFrame, kinds: dict[str, str], train_rows: np.ndarray,
            position: str | None = None) -> "ContextSpace":
        """Vocabularies, cut points and statistics from the logged rows `train_rows` of `frame`."""
        # in the table's column order, whatever order the mapping listed them in (a config.json
        # written with sorted keys must build the same model)
        sp = cls(kinds={c: kinds[c] for c in frame.columns if c in kinds}, position=position)
        tr = frame.iloc[train_rows]
        for c, k in sp.kinds.items():
            s = tr[c]
            if k == "categorical":
                counts = _strings(s).value_counts()
                counts = counts[counts.index != ""]
                sp.vocab[c] = [str(v) for v in counts.index[:MAX_VOCAB]]
                sp.defaults[c] = sp.vocab[c][0] if sp.vocab[c] else ""
            elif k in ("multi", "text"):
                flat = pd.Series([v for lst in _tokens(s, k) for v in lst], dtype="string")
                sp.vocab[c] = [str(v) for v in flat.value_counts().index[:MAX_VOCAB]]
                top = _strings(s).value_counts()
                sp.defaults[c] = str(top.index[0]) if len(top) else ""
            else:
                arr = _numbers(s)
                ok = arr[np.isfinite(arr)]
                if k == "bucket":
                    qs = np.quantile(ok, np.linspace(0, 1, BUCKETS + 1)[1:-1]) if len(ok) else np.zeros(0)
                    sp.edges[c] = [float(x) for x in np.unique(qs)]
                else:
                    mean, std = (float(ok.mean()), float(ok.std())) if len(ok) else (0.0, 1.0)
                    sp.stats[c] = [mean, std if std > 0 else 1.0]
                sp.defaults[c] = f"{float(np.median(ok)):g}" if len(ok) else "0"
        if position is not None and position in sp.vocab:
            slot = DEFAULT_SLOT if DEFAULT_SLOT in sp.vocab[position] else sp.defaults.get(position, "")
            sp.defaults[position] = slot
        return sp

    # -- encoding --------------------------------------------------------------------------------
    def encode(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cat int32 [R, Cc], multi int32 [R, Cm, L], num float32 [R, Cn]) for every row of `frame`."""
        n = len(frame)
        cat = np.zeros((n, len(self.cat_cols)), np.int32)
        for j, c in enumerate(self.cat_cols):
            if self.kinds[c] == "bucket":
                arr = _numbers(frame[c])
                code = np.searchsorted(np.asarray(self.edges[c]), arr, side="right") + 1
                cat[:, j] = np.where(np.isfinite(arr), code, 0)
            else:
                cat[:, j] = pd.Index(self.vocab[c]).get_indexer(_strings(frame[c])) + 1  # unseen -> 0
        width = self.width
        multi = np.zeros((n, len(self.multi_cols), width), np.int32)
        for j, c in enumerate(self.multi_cols):
            lists = _tokens(frame[c], self.kinds[c])
            lens = lists.map(lambda x: min(len(x), width)).to_numpy()
            vals = [v for lst in lists for v in lst[:width]]
            if vals:
                rows = np.repeat(np.arange(n), lens)
                pos = np.concatenate([np.arange(k) for k in lens])
                multi[rows, j, pos] = pd.Index(self.vocab[c]).get_indexer(vals) + 1  # unseen -> 0 (pad)
        num = np.zeros((n, len(self.num_cols)), np.float32)
        for j, c in enumerate(self.num_cols):
            mean, std = self.stats[c]
            num[:, j] = np.nan_to_num((_numbers(frame[c]) - mean) / std)
        return cat, multi, num

    def rows(self, frame: pd.DataFrame, origin: np.ndarray) -> ContextRows:
        """The logged rows' encoded context and each example's row of it (`origin`)."""
        cat, multi, num = self.encode(frame)
        return ContextRows(torch.from_numpy(cat), torch.from_numpy(multi), torch.from_numpy(num),
                           torch.tensor(np.asarray(origin), dtype=torch.long))

    def resolve(self, values: dict | None = None) -> dict[str, str]:
        """The context to score with: the defaults, overridden by `values` (column -> value)."""
        out = dict(self.defaults)
        for c, v in (values or {}).items():
            if c not in self.kinds:
                raise DataError(f"'{c}' is not a context feature of this run.",
                                fix="choose among: " + (", ".join(self.kinds) or "(this run has none)"))
            out[c] = str(v)
        return out

    def encode_values(self, values: dict | None = None) -> Context:
        """One context (B = 1) from column -> value (the defaults where a column is not given)."""
        chosen = self.resolve(values)
        frame = pd.DataFrame({c: pd.Series([chosen[c]], dtype="string") for c in self.kinds})
        cat, multi, num = self.encode(frame)
        return Context(torch.from_numpy(cat).long(), torch.from_numpy(multi).long(), torch.from_numpy(num))

    def choices(self, column: str) -> list[str]:
        """Values a page offers for a column (its vocabulary, or the bucket cut points)."""
        if column in self.vocab and self.kinds[column] == "categorical":
            return list(self.vocab[column])
        if column in self.edges:
            return [f"{e:g}" for e in self.edges[column]]
        return []

    def describe(self) -> dict:
        """Sizes the model needs (embedding tables per column, numeric width), and which columns
        a user tower may read: every one but the position (it describes the item's slot)."""
        width = self.width
        return {"cat": {c: (len(self.vocab[c]) if c in self.vocab else len(self.edges[c]) + 1) + 1
                        for c in self.cat_cols},
                "multi": {c: len(self.vocab[c]) + 1 for c in self.multi_cols}, "numeric": len(self.num_cols),
                "width": width, "position": self.position}

    def default_tensors(self) -> dict[str, torch.Tensor]:
        d = self.encode_values()
        return {"context.default.cat": d.cat, "context.default.multi": d.multi, "context.default.num": d.num}

    def to_meta(self) -> dict:
        return {"kinds": self.kinds, "vocab": self.vocab, "edges": self.edges, "stats": self.stats,
                "defaults": self.defaults, "position": self.position}

    @classmethod
    def from_meta(cls, meta: dict) -> "ContextSpace":
        return cls(kinds=dict(meta["kinds"]), vocab={k: list(v) for k, v in meta["vocab"].items()},
                   edges={k: list(v) for k, v in meta["edges"].items()},
                   stats={k: list(v) for k, v in meta["stats"].items()}, defaults=dict(meta["defaults"]),
                   position=meta.get("position"))


def usable_context(ds, tasks) -> dict[str, str]:
    """The dataset's context features a model may read with these tasks: a column a task is made
    from is its label, never a feature as well (that would leak the answer into the input)."""
    labels = {t.column for t in tasks if getattr(t, "column", None)}
    return {c: k for c, k in ds.context_features.items() if c not in labels}


def context_of(data, idx) -> Context | None:
    """The contexts of examples `idx` of `data`, or None when the data has none."""
    ctx = getattr(data, "context", None)
    return None if ctx is None else ctx.batch(idx)
