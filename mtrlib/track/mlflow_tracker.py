"""MLflow tracking of training runs: `train --mlflow [URI]`, sweeps and lessons as parent + children.

Each recorded run becomes an MLflow run with
- params: the whole TrainConfig, flattened (`model.arch`, `lr`, `data.world.seed`, ...);
- metrics per epoch, named TASK/METRIC (`click/auc`, `like/train_loss`, `click/weight`), step =
  epoch; at the end the test metrics as TASK/test_METRIC and `samples_per_s`;
- tags: `mtr.group` (the run store's group key: repeats of one setup share it, so MLflow's UI
  groups them), `mtr.run_id`, the architecture and weighting;
- artifacts: the run folder (config, feature space, history journal, weights, metrics).

Only MlflowClient is used, never the fluent `mlflow.start_run` API: its active run is global
state, and the app trains several runs at once on threads. Logging happens at the start, once
per epoch and at the end, so steps pay nothing. A tracking problem (server down, bad URI at
run time) becomes a warning and the run is kept; a URI that cannot work at all is refused up
front (`TrackingError`).

`URI`: a local folder (default `mlruns/` in the working directory: an SQLite store `mlflow.db`
and `artifacts/` in it), or an `sqlite:`, `postgresql:` or `http(s)://` tracking URI (a
`mlflow server`).
"""
from __future__ import annotations

import contextlib
import sys
import time
import warnings
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from ..errors import UserError
from ..runs.naming import data_signature, group_key

EXPERIMENT = "MTR Studio"
MAX_PARAMS = 100  # MLflow's limit of params per log_batch call
MAX_PARAM_CHARS = 6000


class TrackingError(UserError):
    """MLflow is missing or the tracking URI cannot be used."""


def resolve_uri(uri: str | None) -> tuple[str, str | None]:
    """(tracking URI, artifact location) from what a user typed. None or a folder (default
    ./mlruns) -> an SQLite store in it, artifacts beside it: MLflow 3 refuses its plain file
    store (maintenance mode), and a folder is what a user without a server expects. A URI
    (http://host:port, sqlite:///..., postgresql://...) is used as it is, with the server's
    own artifact location."""
    if uri and ("://" in uri or uri.startswith(("sqlite:", "databricks"))):
        return uri, None
    folder = Path(uri or "mlruns").expanduser().resolve()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrackingError(f"Cannot create the MLflow folder {folder} ({e.strerror}).",
                            fix="give a folder you can write to: --mlflow DIR") from None
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def _client(uri: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
    except ImportError:
        raise TrackingError("MLflow tracking is on, but MLflow is not installed.",
                            fix="pip install '.[mlflow]' (or pip install mlflow), or leave out --mlflow") from None
    return MlflowClient(tracking_uri=uri)


def flat_params(d: dict, prefix: str = "") -> dict[str, str]:
    """{'model': {'arch': 'mmoe'}} -> {'model.arch': 'mmoe'} (values as text, cut to MLflow's limit)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_params(v, key + "."))
        else:
            out[key] = str(v)[:MAX_PARAM_CHARS]
    return out


def epoch_metrics(row: dict) -> dict[str, float]:
    """An epoch event's numbers as TASK/METRIC: val/click/auc -> click/auc, train_loss/click ->
    click/train_loss, weight/click -> click/weight; samples_per_s as it is."""
    out = {}
    for k, v in row.items():
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
            continue
        parts = k.split("/")
        if len(parts) == 3 and parts[0] == "val":
            out[f"{parts[1]}/{parts[2]}"] = float(v)
        elif len(parts) == 2 and parts[0] in ("train_loss", "weight"):
            out[f"{parts[1]}/{parts[0]}"] = float(v)
        elif k in ("samples_per_s", "epoch_samples_per_s"):
            out[k] = float(v)
    return out


def _warn(what: str, e: Exception) -> None:
    print(f"warning: MLflow {what} failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
          "the run itself is kept", file=sys.stderr)


class MlflowTracker:
    """A tracker for `mtrlib.track.hook`: every run recorded while it is on becomes an MLflow
    run (a child of `parent_id`, when set)."""

    def __init__(self, uri: str | None = None, experiment: str = EXPERIMENT, parent_id: str | None = None):
        self.uri, artifacts = resolve_uri(uri)
        self.client = _client(self.uri)
        self.experiment = experiment
        self.parent_id = parent_id
        try:
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = exp.experiment_id if exp is not None else self.client.create_experiment(
                experiment, artifact_location=artifacts)
        except Exception as e:
            raise TrackingError(f"Cannot reach the MLflow tracking store {self.uri} "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}).",
                                fix="start the server (mlflow server --port 5000) or give a folder: --mlflow mlruns") from None

    def start(self, cfg, prep, name: str) -> TrackedRun | None:
        tags = {"mlflow.runName": name, "mtr.group": group_key(cfg, data_signature(prep.dataset)),
                "mtr.arch": cfg.model.arch, "mtr.weighting": cfg.weighting.name, "mtr.seed": str(cfg.seed)}
        if self.parent_id:
            tags["mlflow.parentRunId"] = self.parent_id
        try:
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
            tracked = TrackedRun(self.client, run.info.run_id)
            tracked.log_params(flat_params(cfg.to_dict()))
            return tracked
        except Exception as e:
            _warn("start", e)
            return None

    @contextlib.contextmanager
    def parent(self, name: str, params: dict | None = None, tags: dict | None = None):
        """A parent MLflow run for a sweep or a lesson: yields a tracker whose runs are its children."""
        run = self.client.create_run(self.experiment_id, tags={"mlflow.runName": name, "mtr.kind": "sweep",
                                                               **(tags or {})}, run_name=name)
        parent = TrackedRun(self.client, run.info.run_id)
        if params:
            parent.log_params(flat_params(params))
        child = MlflowTracker.__new__(MlflowTracker)
        child.__dict__.update(self.__dict__, parent_id=run.info.run_id)
        status = "FAILED"
        try:
            yield child
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            parent.end(status)

    @property
    def parent_run_id(self) -> str | None:
        return self.parent_id


class TrackedRun:
    """One MLflow run fed by the trainer's events (a callback)."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self.ok = True

    def log_params(self, params: dict[str, str]) -> None:
        items = [Param(k, v) for k, v in params.items()]
        for lo in range(0, len(items), MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[lo:lo + MAX_PARAMS])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def __call__(self, event: dict) -> None:
        if not self.ok or event.get("type") != "epoch":
            return
        try:
            self.log_metrics(epoch_metrics(event), int(event.get("epoch", 0)))
        except Exception as e:  # never into training
            self.ok = False
            _warn("logging", e)

    def finish(self, result, folder: Path | None) -> None:
        try:
            final = {f"{t}/test_{k}": float(v) for t, ms in (result.metrics or {}).items() for k, v in ms.items()
                     if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and k != "n"}
            final["samples_per_s"] = float(result.samples_per_s)
            self.log_metrics(final, len(result.history.epochs))
            self.client.set_tag(self.run_id, "mtr.status", result.status)
            if folder is not None:
                self.client.set_tag(self.run_id, "mtr.run_id", Path(folder).name)
                self.client.log_artifacts(self.run_id, str(folder), artifact_path="run")
            self.end({"finished": "FINISHED", "stopped": "KILLED"}.get(result.status, "FAILED"))
        except Exception as e:
            _warn("finishing", e)

    def fail(self, message: str) -> None:
        try:
            self.client.set_tag(self.run_id, "mtr.reason", str(message)[:5000])
            self.end("FAILED")
        except Exception as e:
            _warn("finishing", e)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


__all__ = ["MlflowTracker", "TrackedRun", "TrackingError", "resolve_uri", "flat_params", "epoch_metrics", "EXPERIMENT"]
