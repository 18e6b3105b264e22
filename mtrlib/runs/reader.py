"""Reading a run back: `Run` (heavy parts load on first use), its history journal, its files."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import TrainConfig
from ..errors import UserError
from ..data.tasks import TaskSpec, parse_tasks
from .meta import RunInfo, read_meta
from .store import RunError, _load_arrays, _read_json
from .tables import _table_from_json


@dataclass
class RunHistory:
    steps: pd.DataFrame
    epochs: pd.DataFrame
    events: list[dict] = field(default_factory=list)  # the 'end' record(s)


def read_history(path: Path) -> RunHistory:
    """The journal at `path`; a line torn by a crash is skipped, a missing file is empty."""
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
        self.meta = read_meta(self.path)
        self.info = RunInfo.from_meta(self.path, self.meta)
        try:
            self.config = TrainConfig.from_json((self.path / "config.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunError(f"The run folder {self.path} has no config.json.", fix="delete it") from None
        except (UserError, TypeError, UnicodeDecodeError) as e:
            raise RunError(f"config.json of run {self.path.name} is not readable: {e}", fix="delete the run") from None
        try:
            self.tasks: list[TaskSpec] = parse_tasks(self.meta.tasks)
        except UserError as e:
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

    @property
    def retrieval_tasks(self) -> list[str]:
        """Its two-tower retrieval tasks (the cascade's first stage; mtrlib.serve.cascade)."""
        return [t.name for t in self.tasks if t.is_retrieval]

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
        return run_history(self.path)

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
        from ..data.encode import FeatureSpace

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

        from ..models import build_model

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


def run_history(folder: Path) -> RunHistory:
    """A run folder's history as it is now (re-read at each call: a run still training grows)."""
    return read_history(Path(folder) / "history.jsonl")


def run_config_text(folder: Path) -> str:
    """A run folder's config.json as text, for a download; '{}' when it has none."""
    try:
        return (Path(folder) / "config.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        return "{}"
