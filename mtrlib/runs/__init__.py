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

The package: `store` (location, atomic files, safetensors arrays), `liveness` (/proc, the
heartbeat), `naming`, `meta` (`RunMeta`: meta.json defined once; `RunInfo`), `tables` (what a run
keeps of its data), `writer` (`RunWriter`, `recorded_training`), `reader` (`Run`, the history),
`listing` (list, resolve, load, rename, delete). Everything is importable from `mtrlib.runs`.
"""
from __future__ import annotations

from .listing import delete_run, list_runs, load_run, rename_run, resolve_run
from .liveness import STALE_S, effective_status, proc_start
from .meta import FORMAT, STATUSES, UNSET, VERSION, RunInfo, RunMeta, read_info, read_meta
from .owner import TOKEN_ENV, Visitor, check_may_change, is_teacher_token, may_change, teacher_token
from .naming import data_fingerprint, run_key, data_signature, default_name, group_key, model_summary, new_run_id, settings_of
from .reader import Run, RunHistory, read_history, run_config_text, run_history, weights_file
from .store import RunError, RunProblem, atomic_write, atomic_write_json, default_store, store_dir
from .tables import run_arrays
from .writer import HEARTBEAT_S, RunWriter, failure_reason, recorded_training, train_and_save

__all__ = ["default_store", "RunWriter", "RunError", "RunInfo", "RunProblem", "Run", "RunHistory",
           "list_runs", "load_run", "rename_run", "delete_run", "resolve_run", "default_name", "train_and_save",
           "effective_status", "atomic_write", "atomic_write_json",
           # named elsewhere too, or new with the package
           "RunMeta", "UNSET", "read_meta", "read_info", "recorded_training", "failure_reason", "read_history",
           "run_history", "run_config_text", "weights_file", "model_summary", "new_run_id", "settings_of",
           "run_arrays", "group_key", "data_signature", "FORMAT", "VERSION", "STATUSES", "STALE_S", "HEARTBEAT_S",
           "proc_start", "store_dir", "data_fingerprint", "run_key", "Visitor", "may_change", "check_may_change",
           "is_teacher_token", "teacher_token", "TOKEN_ENV"]
