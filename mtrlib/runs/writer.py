"""Writing a run while it trains: `RunWriter` (a trainer callback) and `recorded_training`,
the one place its life-cycle (create, train, finish or fail) is written."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import threading
import time
from pathlib import Path
from collections.abc import Callable

import numpy as np

from ..config import TrainConfig
from ..safe import json_clean
from . import store as disk
from .liveness import proc_start
from .meta import RunMeta
from .naming import data_fingerprint, data_signature, default_name, group_key, model_summary, new_run_id, settings_of
from .store import RunError, store_dir, store_message
from ..track.hook import current
from .tables import table_json, run_arrays
from ..train.loop import build, train

HEARTBEAT_S = 2.0  # at most one meta.json rewrite per this many seconds on step events


def _state_arrays(model) -> dict[str, np.ndarray]:
    return {k: v.detach().to("cpu").contiguous().numpy().copy() for k, v in model.state_dict().items()}


class RunWriter:
    """Records one training run in the store while it trains; a trainer callback.

        writer = RunWriter(cfg, prep, store=None, path=None, name=None)
        model = writer.new_model()          # optional: lets the writer checkpoint each epoch
        result = train(cfg, prep, callback=writer, stop=stop, model=model)
        writer.finish(result)

    (`recorded_training` does exactly this.) Store problems (permission denied, disk full) never
    raise out of the writer: `writer.error` holds a readable message, `writer.saved` is False, and
    training goes on in memory. Only a user mistake (an `--out` folder that already holds
    something) raises `RunError`.
    """

    def __init__(self, cfg: TrainConfig, prep, store=None, path=None, name: str | None = None, model=None,
                 owner: str | None = None):
        self.cfg, self.prep = cfg, prep
        self.owner = owner
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
        self._meta = RunMeta()
        self.store = store_dir(store) if path is None else Path(path).expanduser().resolve().parent
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
            self.error = store_message(e, Path(where))
        self.close()

    def _first_meta(self) -> RunMeta:
        prep, cfg, ds = self.prep, self.cfg, self.prep.dataset
        return RunMeta(
            id=self.id, name=self.name, status="running", reason="", created=self.created,
            heartbeat=self.created, updated=self.created, pid=os.getpid(), pid_start=proc_start(os.getpid()),
            host=socket.gethostname(), arch=cfg.model.arch, model=model_summary(cfg),
            tasks=[t.to_string() for t in prep.tasks], task_names=self.task_names,
            task_types=[t.type for t in prep.tasks], settings=settings_of(cfg),
            dataset={"name": ds.name, "layout": ds.layout, "users": int(prep.space.users.n),
                     "items": int(prep.space.items.n), "interactions": int(ds.n_interactions),
                     "context_features": dict(ds.context_features), "position": ds.position_column,
                     "ignored": dict(ds.ignored),
                     "split": prep.split.method, "rows": prep.split.report.get("rows", {}),
                     "ground_truth": bool(ds.ground_truth)},
            warnings=list(getattr(prep, "warnings", [])),
            epochs_done=0, steps=0, last_val={}, summary={}, has_weights=False, checkpoint_epoch=None,
            group=group_key(cfg, data_signature(ds)), fingerprint=data_fingerprint(ds), owner=self.owner,
        )

    def _create(self, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".creating-{target.name}-{secrets.token_hex(3)}"
        tmp.mkdir()
        try:
            prep = self.prep
            disk.atomic_write(tmp / "config.json", self.cfg.to_json().encode())
            disk.atomic_write_json(tmp / "space.json", prep.space.to_meta())
            disk.save_arrays(tmp / "space.safetensors", {k: v.numpy() for k, v in prep.space.tensors().items()})
            arrays, items, users = run_arrays(prep)
            disk.save_arrays(tmp / "data.safetensors", arrays)
            disk.atomic_write_json(tmp / "items.json", table_json(items))
            disk.atomic_write_json(tmp / "users.json", table_json(users))
            self._meta = self._first_meta()
            disk.atomic_write_json(tmp / "meta.json", self._meta.to_dict())
            os.rename(tmp, target)  # the run appears complete, or not at all
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._fd = os.open(target / "history.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _write_meta(self, **changes) -> None:
        now = time.time()
        self._meta.update(**changes, heartbeat=now, updated=now)
        self._last_beat = now
        disk.atomic_write_json(self.path / "meta.json", self._meta.to_dict())

    def _append(self, kind: str, row: dict) -> None:
        line = json.dumps(json_clean({"kind": kind, **row}), allow_nan=False) + "\n"
        os.write(self._fd, line.encode("utf-8"))  # one write(2): a crash tears at most this line

    def _close_history(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

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
                disk.save_arrays(self.path / "checkpoint.safetensors", _state_arrays(self.model))
                changes["checkpoint_epoch"] = self.epochs_done
            self._write_meta(**changes)
        elif t == "end":
            self._append("end", {k: v for k, v in row.items() if k != "metrics"})

    # -- model helpers ----------------------------------------------------------------------------
    def new_model(self):
        """Build the model `train` would build (same seed) and keep it for epoch checkpoints."""

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
                disk.save_arrays(self.path / "weights.safetensors", _state_arrays(result.model), fsync=True)
                hist = result.history
                metrics = {
                    "status": result.status, "reason": result.reason, "test": result.metrics,
                    "val": result.val_metrics, "baseline": result.baseline,
                    "samples_per_s": result.samples_per_s, "elapsed": result.elapsed,
                    "best_epoch": result.best_epoch, "device": result.device,
                    "epochs_done": len(hist.epochs), "steps": hist.steps[-1]["step"] if hist.steps else 0,
                }
                disk.atomic_write_json(self.path / "metrics.json", metrics, fsync=True)
                summary = {"test": _key_metrics(result.metrics), "baseline": _key_metrics(result.baseline),
                           "samples_per_s": result.samples_per_s, "elapsed": result.elapsed}
                self._close_history()
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
        """Mark the run failed (training raised); keeps what was written. Never raises."""
        self.status = "failed"
        if not self.saved:
            return
        try:
            with self._lock:
                self._close_history()
                self._write_meta(status="failed", reason=str(message), finished=time.time())
        except OSError as e:
            self._store_failed(e, self.path)
        except Exception as e:  # the training error is the one to report
            self.error = f"The run could not be saved: {type(e).__name__}: {e}"

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
        keep = {k: ms[k] for k in ("auc", "logloss", "rmse", "mae", "recall@10", "recall@100") if k in ms}
        if keep:
            out[t] = keep
    return out


def failure_reason(e: BaseException) -> str:
    """The reason a run that raised is marked failed with (unless the caller says otherwise)."""
    return f"Training failed: {type(e).__name__}: {e}"


def recorded_training(cfg: TrainConfig, prep, *, store=None, path=None, name: str | None = None,
                      callback: Callable[[dict], None] | None = None, stop: threading.Event | None = None,
                      opened: Callable[[RunWriter], None] | None = None,
                      reason: Callable[[BaseException], str] = failure_reason, owner: str | None = None):
    """Train `prep` and record it as a run: -> (TrainResult, RunWriter).

    Creates the writer (a store that cannot be written leaves `writer.error` set and trains in
    memory), then calls `opened(writer)` (where a caller says so, before training starts),
    builds the model so each epoch is checkpointed, trains with each event going to the writer
    and then to `callback`, and finishes the run. If building or training raises, the run is
    marked failed with `reason(exception)` and the exception propagates. Only an `--out` folder
    that is not empty raises before anything is written (`RunError`).
    """

    writer = RunWriter(cfg, prep, store=store, path=path, name=name, owner=owner)
    if opened is not None:
        opened(writer)
    tracker = current()  # an outside tracker (MLflow), when one is on (mtrlib.track.hook)
    tracked = tracker.start(cfg, prep, writer.name) if tracker is not None else None

    def both(e):
        writer(e)
        if tracked is not None:
            tracked(e)
        if callback is not None:
            callback(e)

    try:
        result = train(cfg, prep, callback=both, stop=stop, model=writer.new_model())
    except BaseException as e:
        writer.fail(reason(e))
        if tracked is not None:
            tracked.fail(reason(e))
        raise
    writer.finish(result)
    if tracked is not None:
        tracked.finish(result, writer.path if writer.saved else None)
    return result, writer


def train_and_save(cfg: TrainConfig, prep, store=None, path=None, name=None, callback=None, stop=None):
    """prepare'd data -> train with a RunWriter attached -> (TrainResult, writer)."""
    return recorded_training(cfg, prep, store=store, path=path, name=name, callback=callback, stop=stop)
