"""What a run keeps of its data besides the model: seen pairs, test examples and per-item
counts (safetensors), and the item / user display tables (JSON, column-wise), so recommending
and evaluating need no original upload."""
from __future__ import annotations

import numpy as np
import pandas as pd


def table_json(df: pd.DataFrame) -> dict:
    cols = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_bool_dtype(s):
            cols[str(c)] = [bool(v) for v in s]
        elif pd.api.types.is_numeric_dtype(s):
            cols[str(c)] = [None if pd.isna(v) else (int(v) if float(v).is_integer() and abs(v) < 2**53 else float(v))
                            for v in s.to_numpy(dtype=float)]
        else:
            cols[str(c)] = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v) for v in s]
    return {"index_name": df.index.name or "id", "index": [str(i) for i in df.index], "columns": cols}


def table_from_json(d: dict) -> pd.DataFrame:
    df = pd.DataFrame(d["columns"], index=pd.Index(d["index"], name=d.get("index_name") or "id"))
    return df


def _cell_text(v) -> str | None:
    if isinstance(v, (list, tuple, np.ndarray)):
        return "|".join(str(x) for x in v)
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return str(v)


def _by_str_id(obj, ids):
    """A copy of a frame / series with its index as strings, reindexed to `ids` (row order)."""
    obj = obj.copy()
    obj.index = obj.index.map(str)
    return obj.reindex(ids)


def _add_true_genre(out: pd.DataFrame, ds, key: str, ids) -> None:
    """out["true_genre"] from the dataset's ground truth `key` (item_genre / user_genre), if it has one."""
    gt = ds.ground_truth or {}
    if isinstance(gt.get(key), pd.Series):
        out["true_genre"] = _by_str_id(gt[key], ids).map(_cell_text).to_numpy()


def _item_table(prep, train_counts: np.ndarray) -> pd.DataFrame:
    """Display attributes per item row: title, genre (first when multi-valued), genres, popularity, ..."""
    ds, ids = prep.dataset, prep.space.items.ids
    items = _by_str_id(ds.items, ids)
    out = pd.DataFrame(index=pd.Index(ids, name="item_id"))
    out["title"] = ds.item_label(items.index) if ds.title_column else list(ids)
    gcol = ds.genre_column()
    if gcol is not None and gcol in items.columns:
        raw = items[gcol].map(_cell_text)
        if ds.item_features.get(gcol) == "multi":
            out["genres"] = raw
            out["genre"] = raw.map(lambda s: s.split("|")[0].strip() if isinstance(s, str) and s else None)
        else:
            out["genre"] = raw
    for c, ftype in ds.item_features.items():
        if ftype == "categorical" and c != gcol and c in items.columns and c not in out.columns:
            out[c] = items[c].map(_cell_text)
    out["popularity"] = train_counts.astype(np.int64)
    _add_true_genre(out, ds, "item_genre", ids)
    return out


def _user_table(prep, train_counts: np.ndarray) -> pd.DataFrame:
    ds, ids = prep.dataset, prep.space.users.ids
    users = _by_str_id(ds.users, ids)
    out = pd.DataFrame(index=pd.Index(ids, name="user_id"))
    for c, ftype in ds.user_features.items():
        if ftype in ("categorical", "multi") and c in users.columns:
            out[c] = users[c].map(_cell_text)
    out["n_train"] = train_counts.astype(np.int64)
    _add_true_genre(out, ds, "user_genre", ids)
    return out


def run_arrays(prep) -> tuple[dict[str, np.ndarray], pd.DataFrame, pd.DataFrame]:
    """What a run keeps of its data: seen pairs, test examples, per-item counts, display tables."""
    n_items, n_users = prep.space.items.n, prep.space.users.n
    sampled = prep.examples.frame["sampled"].to_numpy()
    arrays: dict[str, np.ndarray] = {}
    logged_tr = ~sampled[prep.split.train]
    for part, enc, idx in (("train", prep.train, prep.split.train), ("val", prep.val, prep.split.val)):
        logged = ~sampled[idx]
        keys = enc.user.numpy()[logged].astype(np.int64) * n_items + enc.item.numpy()[logged].astype(np.int64)
        arrays[f"seen.{part}"] = np.unique(keys)
    for j, t in enumerate(prep.tasks):  # per binary task, the seen pairs it is positive on ("because you liked")
        if t.is_binary:
            pos = [enc.user.numpy()[m].astype(np.int64) * n_items + enc.item.numpy()[m].astype(np.int64)
                   for enc, idx in ((prep.train, prep.split.train), (prep.val, prep.split.val))
                   for m in [~sampled[idx] & enc.mask.numpy()[:, j] & (enc.labels.numpy()[:, j] == 1)]]
            arrays[f"seen.positive.{j}"] = np.unique(np.concatenate(pos))
    te = prep.test
    arrays["test.user"] = te.user.numpy().astype(np.int64)
    arrays["test.item"] = te.item.numpy().astype(np.int64)
    arrays["test.labels"] = te.labels.numpy().astype(np.float32)
    arrays["test.mask"] = te.mask.numpy().astype(np.uint8)
    arrays["test.logged"] = (~sampled[prep.split.test]).astype(np.uint8)
    tr_items, tr_users = prep.train.item.numpy(), prep.train.user.numpy()
    lab, msk = prep.train.labels.numpy(), prep.train.mask.numpy()
    arrays["train.item_count"] = np.bincount(tr_items[logged_tr], minlength=n_items).astype(np.int64)
    arrays["train.user_count"] = np.bincount(tr_users[logged_tr], minlength=n_users).astype(np.int64)
    arrays["train.item_pos"] = np.stack(
        [np.bincount(tr_items, weights=lab[:, j] * msk[:, j], minlength=n_items) for j in range(lab.shape[1])], 1
    ).astype(np.float64) if lab.shape[1] else np.zeros((n_items, 0))
    arrays["train.item_obs"] = np.stack(
        [np.bincount(tr_items, weights=msk[:, j].astype(float), minlength=n_items) for j in range(lab.shape[1])], 1
    ).astype(np.float64) if lab.shape[1] else np.zeros((n_items, 0))
    items = _item_table(prep, arrays["train.item_count"])
    users = _user_table(prep, arrays["train.user_count"])
    return arrays, items, users

