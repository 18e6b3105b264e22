"""The on-disk run store: one folder per training run, written while it trains.

Layout of a run folder (every file but the history journal is written to a temp file in the
same folder and `os.replace`d into place, so a reader never sees half a file):

    meta.json            format marker, id, default name, status, reason, created, pid, host,
                         heartbeat, task specs, key settings, summary metrics
    name.json            the user's name for the run (written only by `rename_run`, so a
                         rename never races with the trainer's heartbeat)
    config.json          the TrainConfig (JSON round trip)
    space.json           FeatureSpace vocabularies and statistics (`FeatureSpace.to_meta`)
    space.safetensors    FeatureSpace arrays (id slots, categorical codes, numerics, text vectors)
    data.safetensors     what recommending and evaluating need without the original upload:
                         seen (user, item) pairs of the train / validation splits, the test
                         examples (rows, labels, mask, logged flag), per-item training counts
    items.json           item attributes for display (title, genre, genres, popularity, ...)
    users.json           user attributes (categorical ones, ground-truth genre for the world)
    history.jsonl        append-only journal, one JSON object per step / epoch event, each
                         written by a single write(2); a reader ignores a torn last line
    checkpoint.safetensors  weights at the last finished epoch (when the writer has the model)
    weights.safetensors  final weights
    metrics.json         test / validation metrics, popularity baseline, throughput

Nothing is ever pickled: arrays are safetensors, everything else JSON. A run folder appears
in the store only once its first files are complete (it is built under a hidden name and
renamed), and disappears at once on delete (renamed to a hidden name, then removed).

A run left "running" whose process is gone (same host: pid no longer alive, or alive with a
different start time) or whose heartbeat is older than `STALE_S` is reported "interrupted".

Store location: argument > env `MTR_RUN_STORE` > `data/runs/` under the repository.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from .config import ARCH_LABELS, TrainConfig
from .data.errors import DataError
from .data.tasks import TaskSpec, parse_tasks
from .safe import json_clean

FORMAT = "mtr-run"
VERSION = 1
STALE_S = 600.0  # a "running" run without a heartbeat for this long is interrupted
HEARTBEAT_S = 2.0  # at most one meta.json rewrite per this many seconds on step events
STATUSES = ("running", "finished", "stopped", "diverged", "failed", "interrupted")
_REPO_ROOT = Path(__file__).resolve().parents[1]


class RunError(DataError):
    """A run cannot be found, read or written; the message says which and what to do."""


# -- the store ------------------------------------------------------------------------------------

def default_store() -> Path:
    """`$MTR_RUN_STORE` if set, else `data/runs/` under the repository (git-ignored)."""
    env = os.environ.get("MTR_RUN_STORE", "").strip()
    return Path(env).expanduser() if env else _REPO_ROOT / "data" / "runs"


def _store(store) -> Path:
    return Path(store).expanduser() if store is not None else default_store()


def _json_bytes(obj) -> bytes:
    return json.dumps(json_clean(obj), indent=1, allow_nan=False).encode("utf-8")


def atomic_write(path: Path, data: bytes, fsync: bool = False) -> None:
    """Write `data` to a temp file next to `path`, then `os.replace` it into place."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def atomic_write_json(path: Path, obj, fsync: bool = False) -> None:
    atomic_write(path, _json_bytes(obj), fsync)


def _save_arrays(path: Path, arrays: dict[str, np.ndarray], fsync: bool = False) -> None:
    from safetensors.numpy import save

    clean = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    atomic_write(path, save(clean), fsync)


def _load_arrays(path: Path, what: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    try:
        return load(Path(path).read_bytes())
    except FileNotFoundError:
        raise RunError(f"The run folder {path.parent} has no {path.name} ({what}).",
                       fix="the run was probably not saved completely; delete it and train again") from None
    except Exception as e:  # SafetensorError, bad header, truncated file
        raise RunError(f"{path.name} in {path.parent} is damaged or not a safetensors file ({what}): {e}.",
                       fix="refusing to load it; delete the run and train again") from None


def _store_message(e: OSError, where: Path) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied"
    elif e.errno == errno.ENOTDIR or (e.errno == errno.EEXIST and where.exists() and not where.is_dir()):
        why = "a part of the path is a file, not a folder"
    else:
        why = e.strerror or str(e)
    return (f"The run store {where} is not writable ({why}); this run is kept in memory only and is NOT saved. "
            f"Set MTR_RUN_STORE or pass another store folder.")


# -- naming -----------------------------------------------------------------------------------------

def model_summary(cfg: TrainConfig) -> str:
    """'MMoE 4x[64,32]', 'Shared-Bottom [128,64]', 'PLE 1+2x[64,32]'... (each architecture's own summary)."""
    from .config import ARCHITECTURES
    cls = ARCHITECTURES.get(cfg.model.arch)
    s = cls.summary(cfg.model) if cls is not None else cfg.model.arch
    if cfg.model.text_features:
        s += " +text"
    return s


def default_name(cfg: TrainConfig, task_names, when: float | None = None) -> str:
    """Readable default: 'MMoE 4x[64,32] · click,like · 14:05:12' (+ weighting when not fixed)."""
    parts = [model_summary(cfg), ",".join(task_names)]
    if cfg.weighting != "fixed":
        parts.append(cfg.weighting)
    parts.append(time.strftime("%H:%M:%S", time.localtime(when if when is not None else time.time())))
    return " · ".join(parts)


def new_run_id(cfg: TrainConfig, when: float | None = None) -> str:
    """Unique, sortable folder name: 20240101-140512-mmoe-3f9a1c."""
    t = when if when is not None else time.time()
    return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(t))}-{cfg.model.arch}-{secrets.token_hex(3)}"


def settings_of(cfg: TrainConfig) -> dict:
    """The settings a runs table compares (flat, JSON-able)."""
    m, d = cfg.model, cfg.data
    return {
        "arch": m.arch, "emb_dim": m.emb_dim, "shared": list(m.shared), "experts": list(m.experts),
        "n_experts": m.n_experts, "specific_experts": m.specific_experts, "shared_experts": m.shared_experts,
        "levels": m.levels, "towers": list(m.towers), "dropout": m.dropout, "text_features": m.text_features,
        "weighting": cfg.weighting, "weights": dict(cfg.weights), "optimizer": cfg.optimizer, "lr": cfg.lr,
        "batch_size": cfg.batch_size, "epochs": cfg.epochs, "seed": cfg.seed, "split": d.split,
        "negatives": d.negatives, "source": d.source, "use_features": d.use_features,
    }


# -- process liveness -------------------------------------------------------------------------------

def _proc_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (Linux), read once; None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


def _start_of(fields: list[str] | None) -> int | None:
    try:
        return int(fields[19]) if fields is not None else None
    except (ValueError, IndexError):
        return None


def _proc_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a reused pid apart."""
    return _start_of(_proc_fields(pid))


def _alive(pid: int, start: int | None) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    fields = _proc_fields(pid)
    if fields and fields[0] in ("Z", "X"):
        return False
    if start is not None:
        now = _start_of(fields)
        if now is not None and now != start:
            return False
    return True


def effective_status(meta: dict, now: float | None = None) -> tuple[str, str]:
    """(status, reason) with 'running' turned into 'interrupted' when its process is gone."""
    status, reason = meta.get("status", "unknown"), meta.get("reason") or ""
    if status != "running":
        return status, reason
    now = time.time() if now is None else now
    beat = float(meta.get("heartbeat") or meta.get("created") or 0)
    pid = meta.get("pid")
    if meta.get("host") == socket.gethostname() and not _alive(pid, meta.get("pid_start")):
        return "interrupted", (f"The training process (pid {pid}) ended without finishing the run; "
                               "its history up to the last logged step is kept.")
    if now - beat > STALE_S:
        return "interrupted", f"No sign of life from the training process for {int((now - beat) // 60)} minutes."
    return status, reason


# -- writing a run ------------------------------------------------------------------------------------

def _table_json(df: pd.DataFrame) -> dict:
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


def _table_from_json(d: dict) -> pd.DataFrame:
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
    for c, kind in ds.item_features.items():
        if kind == "categorical" and c != gcol and c in items.columns and c not in out.columns:
            out[c] = items[c].map(_cell_text)
    out["popularity"] = train_counts.astype(np.int64)
    _add_true_genre(out, ds, "item_genre", ids)
    return out


def _user_table(prep, train_counts: np.ndarray) -> pd.DataFrame:
    ds, ids = prep.dataset, prep.space.users.ids
    users = _by_str_id(ds.users, ids)
    out = pd.DataFrame(index=pd.Index(ids, name="user_id"))
    for c, kind in ds.user_features.items():
        if kind in ("categorical", "multi") and c in users.columns:
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


def _state_arrays(model) -> dict[str, np.ndarray]:
    return {k: v.detach().to("cpu").contiguous().numpy().copy() for k, v in model.state_dict().items()}


class RunWriter:
    """Records one training run in the store while it trains; a trainer callback.

        writer = RunWriter(cfg, prep, store=None, path=None, name=None)
        model = writer.new_model()          # optional: lets the writer checkpoint each epoch
        result = train(cfg, prep, callback=writer, stop=stop, model=model)
        writer.finish(result)

    Store problems (permission denied, disk full) never raise out of the writer: `writer.error`
    holds a readable message, `writer.saved` is False, and training goes on in memory. Only a
    user mistake (an `--out` folder that already holds something) raises `RunError`.
    """

    def __init__(self, cfg: TrainConfig, prep, store=None, path=None, name: str | None = None, model=None):
        self.cfg, self.prep = cfg, prep
        self.created = time.time()
        self.task_names = list(prep.task_names)
        self.name = name or cfg.name or default_name(cfg, self.task_names, self.created)
        self.error: str | None = None
        self.status = "running"
        self.model = model
        self.epochs_done = 0
        self.last_step = 0
        self._lock = threading.Lock()
        self._last_beat = 0.0
        self._fd: int | None = None
        self._meta: dict = {}
        self.store = _store(store) if path is None else Path(path).expanduser().resolve().parent
        if path is not None:
            target = Path(path).expanduser().resolve()
            if target.exists() and (not target.is_dir() or any(target.iterdir())):
                raise RunError(f"The output folder {target} already exists and is not empty.",
                               fix="choose a new folder for --out, or delete the old one")
            self.id = target.name
        else:
            self.id = new_run_id(cfg, self.created)
            target = self.store / self.id
        self.path: Path | None = target
        try:
            self._create(target)
        except OSError as e:
            self._store_failed(e, self.store)
        except Exception as e:  # never let a writer bug stop training
            self.error = f"The run could not be saved: {type(e).__name__}: {e}"
            self.path = None

    # -- state ------------------------------------------------------------------------------------
    @property
    def saved(self) -> bool:
        """True while everything so far is on disk."""
        return self.error is None and self.path is not None

    def _store_failed(self, e: OSError, where) -> None:
        if self.error is None:
            self.error = _store_message(e, Path(where))
        self.close()

    def _create(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".creating-{target.name}-{secrets.token_hex(3)}"
        tmp.mkdir()
        try:
            prep, cfg = self.prep, self.cfg
            atomic_write(tmp / "config.json", cfg.to_json().encode())
            atomic_write_json(tmp / "space.json", prep.space.to_meta())
            _save_arrays(tmp / "space.safetensors",
                         {k: v.numpy() for k, v in prep.space.tensors().items()})
            arrays, items, users = run_arrays(prep)
            _save_arrays(tmp / "data.safetensors", arrays)
            atomic_write_json(tmp / "items.json", _table_json(items))
            atomic_write_json(tmp / "users.json", _table_json(users))
            ds = prep.dataset
            self._meta = {
                "format": FORMAT, "version": VERSION, "id": self.id, "name": self.name,
                "status": "running", "reason": "", "created": self.created, "heartbeat": self.created,
                "updated": self.created, "pid": os.getpid(), "pid_start": _proc_start(os.getpid()),
                "host": socket.gethostname(), "arch": cfg.model.arch, "model": model_summary(cfg),
                "tasks": [t.to_string() for t in prep.tasks], "task_names": self.task_names,
                "task_types": [t.type for t in prep.tasks], "settings": settings_of(cfg),
                "dataset": {"name": ds.name, "layout": ds.layout, "users": int(prep.space.users.n),
                            "items": int(prep.space.items.n), "interactions": int(ds.n_interactions),
                            "split": prep.split.method, "rows": prep.split.report.get("rows", {}),
                            "ground_truth": bool(ds.ground_truth)},
                "epochs_done": 0, "steps": 0, "last_val": {}, "summary": {}, "has_weights": False,
                "checkpoint_epoch": None,
            }
            atomic_write_json(tmp / "meta.json", self._meta)
            os.rename(tmp, target)  # the run appears complete, or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._fd = os.open(target / "history.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _write_meta(self, **changes) -> None:
        self._meta.update(changes)
        now = time.time()
        self._meta["heartbeat"] = now
        self._meta["updated"] = now
        self._last_beat = now
        atomic_write_json(self.path / "meta.json", self._meta)

    def _append(self, kind: str, row: dict) -> None:
        line = json.dumps(json_clean({"kind": kind, **row}), allow_nan=False) + "\n"
        os.write(self._fd, line.encode("utf-8"))  # one write(2): a crash tears at most this line

    # -- the callback -----------------------------------------------------------------------------
    def __call__(self, event: dict) -> None:
        if not self.saved:
            return
        try:
            with self._lock:
                self._handle(event)
        except OSError as e:
            self._store_failed(e, self.path)
        except Exception as e:  # never break training because of the store
            self.error = f"The run could not be saved: {type(e).__name__}: {e}"

    def _handle(self, e: dict) -> None:
        t = e.get("type")
        row = {k: v for k, v in e.items() if k not in ("type", "model")}
        if t == "start":
            if self.model is None and e.get("model") is not None:
                self.model = e["model"]
            self._write_meta(start=json_clean({k: v for k, v in row.items() if not hasattr(v, "state_dict")}))
        elif t == "step":
            self._append("step", row)
            self.last_step = int(row.get("step", self.last_step))
            if time.time() - self._last_beat >= HEARTBEAT_S:
                self._write_meta(steps=self.last_step)
        elif t == "epoch":
            self._append("epoch", row)
            self.epochs_done = int(row.get("epoch", self.epochs_done + 1))
            changes = {"epochs_done": self.epochs_done, "steps": int(row.get("step", self.last_step)),
                       "last_val": {k: v for k, v in row.items() if k.startswith("val/")}}
            if self.model is not None:
                _save_arrays(self.path / "checkpoint.safetensors", _state_arrays(self.model))
                changes["checkpoint_epoch"] = self.epochs_done
            self._write_meta(**changes)
        elif t == "end":
            self._append("end", {k: v for k, v in row.items() if k != "metrics"})

    # -- model helpers ----------------------------------------------------------------------------
    def new_model(self):
        """Build the model `train` would build (same seed) and keep it for epoch checkpoints."""
        from .train import build

        self.model = build(self.cfg, self.prep)
        return self.model

    # -- the end ----------------------------------------------------------------------------------
    def finish(self, result) -> Path | None:
        """Final weights, metrics and status. Returns the run folder, or None when not saved."""
        self.status = result.status
        if not self.saved:
            return None
        try:
            with self._lock:
                _save_arrays(self.path / "weights.safetensors", _state_arrays(result.model), fsync=True)
                hist = result.history
                metrics = {
                    "status": result.status, "reason": result.reason, "test": result.metrics,
                    "val": result.val_metrics, "baseline": result.baseline,
                    "samples_per_s": result.samples_per_s, "elapsed": result.elapsed,
                    "best_epoch": result.best_epoch, "device": result.device,
                    "epochs_done": len(hist.epochs), "steps": hist.steps[-1]["step"] if hist.steps else 0,
                }
                atomic_write_json(self.path / "metrics.json", metrics, fsync=True)
                summary = {"test": _key_metrics(result.metrics), "baseline": _key_metrics(result.baseline),
                           "samples_per_s": result.samples_per_s, "elapsed": result.elapsed}
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                self._write_meta(status=result.status, reason=result.reason, finished=time.time(),
                                 summary=summary, has_weights=True, epochs_done=len(hist.epochs),
                                 steps=metrics["steps"], best_epoch=result.best_epoch, device=result.device)
        except OSError as e:
            self._store_failed(e, self.path)
            return None
        except Exception as e:
            self.error = f"The run could not be saved: {type(e).__name__}: {e}"
            return None
        return self.path

    def fail(self, message: str) -> None:
        """Mark the run failed (an unexpected error in the job); keeps what was written."""
        self.status = "failed"
        if not self.saved:
            return
        try:
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                self._write_meta(status="failed", reason=str(message), finished=time.time())
        except OSError as e:
            self._store_failed(e, self.path)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def __del__(self):
        self.close()


def _key_metrics(metrics: dict) -> dict:
    out = {}
    for t, ms in (metrics or {}).items():
        if not isinstance(ms, dict):
            continue
        keep = {k: ms[k] for k in ("auc", "logloss", "rmse", "mae") if k in ms}
        if keep:
            out[t] = keep
    return out


def train_and_save(cfg: TrainConfig, prep, store=None, path=None, name=None, callback=None, stop=None):
    """prepare'd data -> train with a RunWriter attached -> (TrainResult, writer)."""
    from .train import train

    writer = RunWriter(cfg, prep, store=store, path=path, name=name)
    model = writer.new_model()

    def both(e):
        writer(e)
        if callback is not None:
            callback(e)

    try:
        result = train(cfg, prep, callback=both, stop=stop, model=model)
    except BaseException as e:
        writer.fail(f"Training failed: {type(e).__name__}: {e}")
        raise
    writer.finish(result)
    return result, writer


# -- reading runs -------------------------------------------------------------------------------------

@dataclass
class RunProblem:
    """A folder in the store that is not a readable run (reported by `list_runs`, never raised)."""
    path: Path
    message: str


@dataclass
class RunInfo:
    """One row of the runs list (read from meta.json only: cheap)."""
    id: str
    name: str
    path: Path
    arch: str
    model: str
    tasks: list[str]
    task_specs: list[str]
    status: str
    reason: str
    created: float
    epochs_done: int
    metrics: dict  # test: {task: {auc, logloss} | {rmse, mae}} (empty until finished)
    baseline: dict
    last_val: dict
    settings: dict
    dataset: dict
    has_weights: bool

    @property
    def arch_label(self) -> str:
        return ARCH_LABELS.get(self.arch, self.arch)

    @property
    def created_str(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created))

    def to_row(self) -> dict:
        """Flat dict for a table: settings and key metrics as columns."""
        row = {"id": self.id, "name": self.name, "model": self.model, "arch": self.arch_label,
               "tasks": ",".join(self.tasks), "status": self.status, "created": self.created_str,
               "epochs": self.epochs_done}
        for t, ms in self.metrics.items():
            for k, v in ms.items():
                row[f"{t} {k}"] = v
        for k, v in self.settings.items():
            if k in row:
                continue
            row[k] = ",".join(map(str, v)) if isinstance(v, list) else (
                ",".join(f"{a}={b:g}" for a, b in v.items()) if isinstance(v, dict) else v)
        return row


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _read_meta(folder: Path) -> dict:
    mp = folder / "meta.json"
    if not mp.is_file():
        raise RunError(f"{folder} is not a run folder (no meta.json).")
    try:
        meta = _read_json(mp)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{mp} is damaged ({e}).", fix="delete the folder") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RunError(f"{folder} holds a meta.json that is not from MTR Studio.")
    if not isinstance(meta.get("id"), str) or not isinstance(meta.get("tasks"), list):
        raise RunError(f"{mp} is missing required fields.", fix="delete the folder")
    try:
        nm = folder / "name.json"
        if nm.is_file():
            n = _read_json(nm)
            if isinstance(n, dict) and isinstance(n.get("name"), str) and n["name"].strip():
                meta["name"] = n["name"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    return meta


def _info(folder: Path, meta: dict) -> RunInfo:
    status, reason = effective_status(meta)
    summary = meta.get("summary") or {}
    names = meta.get("task_names") or [str(t).split("=")[0] for t in meta["tasks"]]
    return RunInfo(
        id=folder.name, name=str(meta.get("name") or folder.name), path=folder, arch=str(meta.get("arch", "?")),
        model=str(meta.get("model", meta.get("arch", "?"))), tasks=list(names), task_specs=list(meta["tasks"]),
        status=status, reason=reason, created=float(meta.get("created") or 0.0),
        epochs_done=int(meta.get("epochs_done") or 0), metrics=summary.get("test") or {},
        baseline=summary.get("baseline") or {}, last_val=meta.get("last_val") or {},
        settings=meta.get("settings") or {}, dataset=meta.get("dataset") or {},
        has_weights=bool(meta.get("has_weights") or meta.get("checkpoint_epoch")),
    )


def list_runs(store=None, problems: list | None = None) -> list[RunInfo]:
    """Runs in the store, newest first. Folders that are not readable runs are skipped; when
    `problems` (a list) is given, a `RunProblem(path, message)` is appended for each of them.
    Hidden entries (temp / being created / being deleted) are ignored silently."""
    root = _store(store)
    out: list[RunInfo] = []
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    except OSError as e:
        if problems is not None:
            problems.append(RunProblem(root, f"The run store {root} cannot be read: {e.strerror or e}."))
        return []
    for ent in entries:
        if ent.name.startswith("."):
            continue
        p = Path(ent.path)
        try:
            if not ent.is_dir():
                if problems is not None:
                    problems.append(RunProblem(p, f"{p.name} is a file, not a run folder; skipped."))
                continue
            out.append(_info(p, _read_meta(p)))
        except RunError as e:
            if problems is not None:
                problems.append(RunProblem(p, str(e)))
        except Exception as e:  # anything odd in a foreign folder: report, never break the listing
            if problems is not None:
                problems.append(RunProblem(p, f"{p.name} could not be read ({type(e).__name__}: {e}); skipped."))
    out.sort(key=lambda r: (r.created, r.id), reverse=True)
    return out


def resolve_run(id_or_path, store=None) -> Path:
    """A run folder from a path, an id (folder name), a unique id prefix or a unique name."""
    if isinstance(id_or_path, (Run, RunInfo)):
        return id_or_path.path
    text = str(id_or_path).strip()
    if not text:
        raise RunError("No run was named.", fix="give a run id, name or folder (see `python -m mtrlib runs`)")
    p = Path(text).expanduser()
    if p.is_dir() and (p / "meta.json").exists():
        return p.resolve()
    root = _store(store)
    if "/" not in text and "\\" not in text and text not in (".", ".."):
        direct = root / text
        if direct.is_dir() and (direct / "meta.json").exists():
            return direct
        runs = list_runs(root)
        for pred in (lambda r: r.name == text, lambda r: r.id.startswith(text)):
            hits = [r for r in runs if pred(r)]
            if len(hits) == 1:
                return hits[0].path
            if len(hits) > 1:
                raise RunError(f"'{text}' matches {len(hits)} runs: {', '.join(r.id for r in hits[:5])}.",
                               fix="use the run id (first column of `python -m mtrlib runs`)")
    if p.is_dir():
        raise RunError(f"{p} is not a run folder (no meta.json).")
    raise RunError(f"No run '{text}' in the run store {root}.",
                   fix="list runs with `python -m mtrlib runs`, or give the run folder's path")


@dataclass
class RunHistory:
    steps: pd.DataFrame
    epochs: pd.DataFrame
    events: list[dict] = field(default_factory=list)  # the 'end' record(s)


def read_history(path: Path) -> RunHistory:
    steps, epochs, other = [], [], []
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raw = b""
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a line torn by a crash
        if not isinstance(rec, dict):
            continue
        kind = rec.pop("kind", None)
        (steps if kind == "step" else epochs if kind == "epoch" else other).append(rec)
    return RunHistory(pd.DataFrame(steps), pd.DataFrame(epochs), other)


class Run:
    """A run loaded from the store; heavy parts (space, arrays, model) load on first use."""

    def __init__(self, path: Path, device: str = "cpu"):
        self.path = Path(path)
        self.device = device
        self.meta = _read_meta(self.path)
        self.info = _info(self.path, self.meta)
        try:
            self.config = TrainConfig.from_json((self.path / "config.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"The run folder {self.path} has no config.json.", fix="delete it") from None
        except (DataError, TypeError, UnicodeDecodeError) as e:
            raise RunError(f"config.json of run {self.path.name} is not readable: {e}", fix="delete the run") from None
        try:
            self.tasks: list[TaskSpec] = parse_tasks(self.meta["tasks"])
        except DataError as e:
            raise RunError(f"Run {self.path.name} lists tasks that cannot be read: {e}") from None
        self._lock = threading.RLock()

    # -- identity ---------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.path.name

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def status(self) -> str:
        return self.info.status

    @property
    def reason(self) -> str:
        return self.info.reason

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def binary_tasks(self) -> list[str]:
        return [t.name for t in self.tasks if t.is_binary]

    def task(self, name: str | None) -> TaskSpec:
        if name is None:
            return self.tasks[0]
        for t in self.tasks:
            if t.name == name:
                return t
        raise RunError(f"Run '{self.name}' has no task '{name}'.", fix=f"its tasks are: {', '.join(self.task_names)}")

    def __repr__(self) -> str:
        return f"Run({self.id!r}, name={self.name!r}, status={self.status!r})"

    # -- records ----------------------------------------------------------------------------------
    @cached_property
    def history(self) -> RunHistory:
        return read_history(self.path / "history.jsonl")

    def reload_history(self) -> RunHistory:
        self.__dict__.pop("history", None)
        return self.history

    @cached_property
    def metrics_record(self) -> dict:
        p = self.path / "metrics.json"
        if not p.is_file():
            return {}
        try:
            d = _read_json(p)
            return d if isinstance(d, dict) else {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}

    @property
    def metrics(self) -> dict:
        """Test metrics per task (empty for an unfinished run)."""
        return self.metrics_record.get("test") or {}

    @property
    def val_metrics(self) -> dict:
        return self.metrics_record.get("val") or {}

    @property
    def baseline(self) -> dict:
        return self.metrics_record.get("baseline") or {}

    @property
    def samples_per_s(self) -> float | None:
        return self.metrics_record.get("samples_per_s")

    # -- data ---------------------------------------------------------------------------------------
    @cached_property
    def space(self):
        from .data.encode import FeatureSpace

        try:
            meta = _read_json(self.path / "space.json")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunError(f"space.json of run {self.id} is missing or damaged ({e}).", fix="delete the run") from None
        arrays = _load_arrays(self.path / "space.safetensors", "feature encoders")
        try:
            return FeatureSpace.from_meta(meta, arrays)
        except (KeyError, TypeError) as e:
            raise RunError(f"The feature encoders of run {self.id} are incomplete ({e}).", fix="delete the run") from None

    @cached_property
    def arrays(self) -> dict[str, np.ndarray]:
        return _load_arrays(self.path / "data.safetensors", "seen items and test examples")

    def _table(self, fname: str) -> pd.DataFrame:
        try:
            return _table_from_json(_read_json(self.path / fname))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, ValueError) as e:
            raise RunError(f"{fname} of run {self.id} is missing or damaged ({e}).", fix="delete the run") from None

    @cached_property
    def items(self) -> pd.DataFrame:
        """Item attributes indexed by item id, in model row order (+ `cold`: no id embedding)."""
        df = self._table("items.json")
        df.index.name = "item_id"
        df["cold"] = self.space.items.slots == 0
        return df

    @cached_property
    def users(self) -> pd.DataFrame:
        df = self._table("users.json")
        df.index.name = "user_id"
        df["cold"] = self.space.users.slots == 0
        return df

    @property
    def n_items(self) -> int:
        return self.space.items.n

    @property
    def n_users(self) -> int:
        return self.space.users.n

    def seen_keys(self, parts=("train", "val")) -> np.ndarray:
        """Sorted unique keys user_row * n_items + item_row of logged interactions in `parts`."""
        ks = [self.arrays[f"seen.{p}"] for p in parts]
        return np.unique(np.concatenate(ks)) if len(ks) > 1 else ks[0]

    def seen_items(self, user_id, parts=("train", "val")) -> pd.Index:
        """Item ids the user interacted with in training (and validation, by default)."""
        r = int(self.space.user_rows([user_id])[0])
        if r < 0:
            return pd.Index([], name="item_id")
        keys = self.seen_keys(parts)
        lo, hi = np.searchsorted(keys, [r * self.n_items, (r + 1) * self.n_items])
        return self.items.index[keys[lo:hi] - r * self.n_items]

    @property
    def test(self) -> dict[str, np.ndarray]:
        a = self.arrays
        return {"user": a["test.user"], "item": a["test.item"], "labels": a["test.labels"],
                "mask": a["test.mask"].astype(bool), "logged": a["test.logged"].astype(bool)}

    @property
    def has_ground_truth(self) -> bool:
        return "true_genre" in self.items.columns

    # -- the model ------------------------------------------------------------------------------------
    @property
    def weights_path(self) -> Path | None:
        return weights_file(self.path)

    @property
    def from_checkpoint(self) -> bool:
        w = self.weights_path
        return w is not None and w.name == "checkpoint.safetensors"

    def build_model(self, weights: bool = True):
        """A fresh model of this run's architecture (weights loaded unless `weights=False`)."""
        import torch

        from .models import build_model

        space = self.space
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            model = build_model(self.config.model, space.describe(), space.tensors(), self.tasks)
        if weights:
            wp = self.weights_path
            if wp is None:
                raise RunError(f"Run '{self.name}' has no saved weights (it ended before its first epoch finished).",
                               fix="its history can still be viewed; train again for a model")
            state = _load_arrays(wp, "model weights")
            try:
                model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)
            except (RuntimeError, KeyError) as e:
                raise RunError(f"The weights of run '{self.name}' do not fit its model ({str(e)[:300]}).",
                               fix="the file was changed or is from another run; refusing to use it") from None
        model.eval()
        return model.to(self.device)

    @cached_property
    def model(self):
        with self._lock:
            return self.build_model()


def weights_file(path: Path) -> Path | None:
    """A run folder's weights: the final file, else the last epoch's checkpoint (a run still
    training or interrupted); None when it has neither."""
    for f in ("weights.safetensors", "checkpoint.safetensors"):
        if (path / f).is_file():
            return path / f
    return None


def load_run(id_or_path, store=None, device: str = "cpu") -> Run:
    """Load a run by id, name, unique id prefix or folder path (see `resolve_run`)."""
    if isinstance(id_or_path, Run):
        return id_or_path
    return Run(resolve_run(id_or_path, store), device=device)


def rename_run(id_or_path, new_name: str, store=None) -> RunInfo:
    name = " ".join(str(new_name).split())
    if not name:
        raise RunError("A run name cannot be empty.", fix="type a name")
    if len(name) > 200:
        raise RunError("A run name can be at most 200 characters.", fix="use a shorter name")
    path = resolve_run(id_or_path, store)
    try:
        atomic_write_json(path / "name.json", {"name": name})
    except OSError as e:
        raise RunError(f"Could not rename run {path.name}: {e.strerror or e}.") from None
    return _info(path, _read_meta(path))


def delete_run(id_or_path, store=None, force: bool = False) -> None:
    """Remove a run folder (only a real run folder; a running run only with `force`)."""
    path = resolve_run(id_or_path, store)
    meta = _read_meta(path)  # refuses foreign folders
    status, _ = effective_status(meta)
    if status == "running" and not force:
        raise RunError(f"Run '{meta.get('name')}' is still training.", fix="stop it first")
    gone = path.parent / f".deleting-{path.name}-{secrets.token_hex(3)}"
    try:
        os.rename(path, gone)
    except OSError as e:
        raise RunError(f"Could not delete run {path.name}: {e.strerror or e}.") from None
    shutil.rmtree(gone, ignore_errors=True)


__all__ = ["default_store", "RunWriter", "RunError", "RunInfo", "RunProblem", "Run", "RunHistory",
           "list_runs", "load_run", "rename_run", "delete_run", "resolve_run", "default_name", "train_and_save",
           "effective_status", "atomic_write", "atomic_write_json"]
