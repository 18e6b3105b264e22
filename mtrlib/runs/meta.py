"""meta.json, defined once: `RunMeta` is what the writer writes and what the store reads back,
and `RunInfo` (one row of the runs list) is derived from it."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..config import ARCH_LABELS, FORMAT_VERSION
from .liveness import effective_status
from .store import RunError, read_json

FORMAT = "mtr-run"
# 2: config.json nests the chosen plugins' options (model.options, model.history_options,
# weighting.{name, options}); a version-1 run's flat config.json is migrated when it is read
# (mtrlib.config.migrate), so every run folder ever written still opens
VERSION = FORMAT_VERSION
STATUSES = ("running", "finished", "stopped", "diverged", "failed", "interrupted")


class _Unset:
    """Marks a key the writer has not written yet: it is left out of meta.json (not null)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


@dataclass
class RunMeta:
    """The keys of meta.json, in the order they are written. Every field has a default, so a
    run written before a field existed still opens; keys this version does not know are kept
    in `extra` and written back. Adding a key is one line here."""
    format: str = FORMAT
    version: int = VERSION
    id: str = ""
    name: str = ""
    status: str = "unknown"
    reason: str = ""
    created: float = 0.0
    heartbeat: float | None = None
    updated: float | None = None
    pid: int | None = None
    pid_start: int | None = None
    host: str | None = None
    arch: str = "?"
    model: str | None = None  # model_summary; old runs without it show the arch
    tasks: list = field(default_factory=list)  # task specs as strings (TaskSpec.to_string)
    task_names: list = field(default_factory=list)
    task_types: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # naming.settings_of
    dataset: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)  # what the split left wrong (mtrlib.data.warnings)
    epochs_done: int = 0
    steps: int = 0
    last_val: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)  # {"test", "baseline", "samples_per_s", "elapsed"} once ended
    has_weights: bool = False
    checkpoint_epoch: int | None = None
    # written as training goes (absent before): the "start" event, then the end of the run
    start: dict | _Unset = UNSET
    finished: float | _Unset = UNSET
    best_epoch: int | None | _Unset = UNSET
    device: str | _Unset = UNSET
    # the experiment this run belongs to: runs of one setup that differ only by seed share it
    # (naming.group_key); a run written before it existed is a group of one (its own id)
    group: str | None = None
    # what tells this run's data from other data with the same shape (naming.data_fingerprint):
    # with the group and the seed it identifies a run, so an identical press reuses it
    fingerprint: str | None = None
    # the browser session that started it (runs.owner): only it or the teacher may change it
    owner: str | None = None
    extra: dict = field(default_factory=dict, repr=False)  # unknown keys, kept as read

    @classmethod
    def json_keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "extra")

    @classmethod
    def from_dict(cls, d: dict) -> RunMeta:
        """Values as they are in the file (no coercion), so `to_dict` gives the same JSON back."""
        known = cls.json_keys()
        return cls(**{k: d[k] for k in known if k in d}, extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self.json_keys() if getattr(self, k) is not UNSET}
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    def status_now(self, now: float | None = None) -> tuple[str, str]:
        """(status, reason), 'running' checked against the training process (`effective_status`)."""
        return effective_status(self.to_dict(), now)

    def update(self, **changes) -> None:
        """Set fields by name; an unknown name is a bug in the caller, not a new key."""
        known = self.json_keys()
        for k, v in changes.items():
            if k not in known:
                raise KeyError(f"meta.json has no key {k!r}; add it to RunMeta")
            setattr(self, k, v)


def read_meta(folder: Path) -> RunMeta:
    """meta.json of a run folder, with the user's name from name.json; RunError for a folder
    that is not one of our runs."""
    mp = folder / "meta.json"
    if not mp.is_file():
        raise RunError(f"{folder} is not a run folder (no meta.json).")
    try:
        meta = read_json(mp)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunError(f"{mp} is damaged ({e}).", fix="delete the folder") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RunError(f"{folder} holds a meta.json that is not from MTR Studio.")
    if not isinstance(meta.get("id"), str) or not isinstance(meta.get("tasks"), list):
        raise RunError(f"{mp} is missing required fields.", fix="delete the folder")
    try:
        nm = folder / "name.json"
        if nm.is_file():
            n = read_json(nm)
            if isinstance(n, dict) and isinstance(n.get("name"), str) and n["name"].strip():
                meta["name"] = n["name"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        pass
    return RunMeta.from_dict(meta)


def read_info(folder: Path) -> RunInfo:
    """The runs-list row of a run folder (RunError for a folder that is not a run)."""
    return RunInfo.from_meta(folder, read_meta(folder))


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
    group: str = ""  # the experiment (naming.group_key); an old run is a group of one: its id
    fingerprint: str | None = None  # the data's fingerprint (naming.data_fingerprint); None on old runs
    owner: str | None = None  # the session that started it (runs.owner); None: the CLI, or an old run

    @property
    def seed(self) -> int | None:
        s = self.settings.get("seed")
        return s if isinstance(s, int) and not isinstance(s, bool) else None

    @classmethod
    def from_meta(cls, folder: Path, meta: RunMeta) -> RunInfo:
        """The row, with 'running' checked against the process (see `effective_status`)."""
        status, reason = meta.status_now()
        summary = meta.summary or {}
        names = meta.task_names or [str(t).split("=")[0] for t in meta.tasks]
        return cls(
            id=folder.name, name=str(meta.name or folder.name), path=folder, arch=str(meta.arch),
            model=str(meta.arch if meta.model is None else meta.model), tasks=list(names),
            task_specs=list(meta.tasks), status=status, reason=reason, created=float(meta.created or 0.0),
            epochs_done=int(meta.epochs_done or 0), metrics=summary.get("test") or {},
            baseline=summary.get("baseline") or {}, last_val=meta.last_val or {},
            settings=meta.settings or {}, dataset=meta.dataset or {},
            has_weights=bool(meta.has_weights or meta.checkpoint_epoch),
            group=str(meta.group) if isinstance(meta.group, str) and meta.group else folder.name,
            fingerprint=meta.fingerprint if isinstance(meta.fingerprint, str) else None,
            owner=meta.owner if isinstance(meta.owner, str) else None,
        )

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
