"""`python -m mtrlib train`: train one multi-task model and save it as a run.

Data: `--data FILE|FOLDER [--items FILE] [--users FILE]`, or no `--data` for the built-in
synthetic world (then `--users N --items M --genres G --correlation R` are its knobs).
Settings come from `--config FILE` (a TrainConfig JSON) when given, then the flags override.
A progress bar with per-task numbers goes to stderr; the LAST line of stdout is one JSON
object: {"run_dir", "status", "metrics" (test split, per task), "samples_per_s", "warnings" (what the
split left wrong: {"code", "subject", "message", "fix"} each; [] when none), "experts" (the last
epoch's expert health, mtrlib.train.experts; {} without experts), ...}.
Ctrl-C (or SIGTERM) stops training cleanly after the current batch: status "stopped", run kept.
Exit status: 0 trained (finished / stopped / diverged: see "status"), 1 trained but the run
could not be saved, 2 bad input.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from mtrlib.cli.experiments import one_run_summary, train_repeats
from mtrlib.errors import ConfigError
from mtrlib.track.flags import mlflow_from_args


def _common():
    """mtrlib.cli.common, imported when a verb needs it: it imports the registries, so torch
    (heavy), which verbs like `runs list` should not pay for."""
    from mtrlib.cli import common  # deferred: heavy (torch, through the registries)
    return common


def build_config(args):
    """--config FILE (if any), then the flags (mtrlib.cli.common.build_config)."""
    return _common().build_config(args)


def register(subparsers, verb: str | None = None) -> None:
    p = subparsers.add_parser(
        "train", help="train a multi-task model and save it as a run",
        description="Train a multi-task model on a data file (or the built-in synthetic world) and save the run. "
                    "The last line of output is one JSON object with the run folder, status and test metrics.")
    p.set_defaults(func=cmd_train)
    if verb in (None, "train"):  # its flags come from the registries (which import torch): only when asked for
        _common().add_train_arguments(p)


# -- progress -----------------------------------------------------------------------------------------

class Progress:
    """tqdm bar on stderr: steps, per-task train loss, then per-task validation metrics per epoch."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.last = 0

    def __call__(self, e: dict) -> None:
        if self.quiet:
            return
        from tqdm import tqdm  # deferred: heavy: tqdm

        t = e.get("type")
        if t == "start":
            self.tasks = e["tasks"]
            self.bar = tqdm(total=e["epochs"] * e["steps_per_epoch"], file=sys.stderr, unit="step",
                            dynamic_ncols=True, mininterval=0.5, desc=f"train ({e['device']})")
            tqdm.write(f"{e['n_train']:,} training examples, {e['n_val']:,} validation, "
                       f"{e['parameters']:,} parameters, {e['epochs']} epochs", file=sys.stderr)
        elif t == "step" and self.bar is not None:
            self.bar.update(max(0, e["step"] - self.last))
            self.last = e["step"]
            post = {f"loss/{n}": f"{e.get(f'loss/{n}', float('nan')):.4f}" for n in self.tasks}
            post["samples/s"] = f"{e.get('samples_per_s', 0):,.0f}"
            self.bar.set_postfix(post, refresh=False)
        elif t == "epoch" and self.bar is not None:
            parts = []
            for n in self.tasks:
                for k in ("auc", "logloss", "rmse", "rmse_orig", "recall@10"):
                    v = e.get(f"val/{n}/{k}")
                    if v is not None:
                        parts.append(f"{n} {k} {v:.4f}")
            self.bar.write(f"epoch {e['epoch']}: val " + ", ".join(parts), file=sys.stderr)
        elif t == "end" and self.bar is not None:
            self.bar.close()
            self.bar = None


# -- the verb -------------------------------------------------------------------------------------------

def cli_world(cfg):
    """The built-in world without the app's size limit (the CLI builds big ones), or None for files."""
    if cfg.data.source != "world":
        return None
    from mtrlib.data.world import make_world  # deferred: heavy, this verb only
    return make_world(**cfg.data.world.to_dict(), max_impressions=None)


def cmd_train(args) -> int:
    from mtrlib.config import validate  # deferred: heavy, this verb only
    from mtrlib.train.distributed import fingerprint, lost_contact  # deferred: heavy, this verb only
    from mtrlib.train.distributed import finish as finish_processes  # deferred: heavy, this verb only
    from mtrlib.train.distributed import start_for as start_processes  # deferred: heavy, this verb only
    from mtrlib.train.loop import prepare  # deferred: heavy, this verb only

    cfg = build_config(args)
    validate(cfg)
    if args.save_config:
        try:
            Path(args.save_config).write_text(cfg.to_json() + "\n", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"Cannot write {args.save_config}: {e.strerror or e}.") from None
        print(json.dumps({"config": str(args.save_config)}))
        return 0
    if getattr(args, "seeds", None) is not None or getattr(args, "repeat", None) is not None:
        return train_repeats(args, cfg)
    if args.out:
        target = Path(args.out).expanduser()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ConfigError(f"The output folder {target} already exists and is not empty.",
                            fix="choose a new folder for --out, or delete the old one")
    procs = start_processes(cfg)  # one process, or this one's place among several (torchrun)
    try:
        prep = prepare(cfg, dataset=cli_world(cfg))
        procs.check_same(fingerprint(cfg, prep))
        return _train_and_report(args, cfg, prep, procs)
    except RuntimeError as e:  # a collective failed: another process stopped or failed
        if not procs.active:
            raise
        print(f"error: {lost_contact(procs, e)}", file=sys.stderr)
        return 1
    finally:
        finish_processes()


def _train_and_report(args, cfg, prep, procs) -> int:
    """Train (rank 0 records the run, prints progress and the JSON line; other ranks only train)."""
    from mtrlib.runs import recorded_training  # deferred: heavy, this verb only
    from mtrlib.safe import json_clean  # deferred: heavy, this verb only
    from mtrlib.train.loop import train  # deferred: heavy, this verb only

    progress = Progress(args.quiet or not procs.main)
    stop = threading.Event()

    def opened(writer):
        if writer.error:
            print(f"warning: {writer.error}", file=sys.stderr)

    def on_signal(signum, frame):
        if stop.is_set():  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        stop.set()
        if procs.main:
            print("\nstopping after this batch (Ctrl-C again to abort)...", file=sys.stderr)

    if procs.main:  # what the split left wrong, named before training starts (mtrlib.data.warnings)
        for w in prep.warnings:
            print(f"warning: {w['message']} Fix: {w['fix']}.", file=sys.stderr)
    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not procs.main:  # the other processes train alongside; rank 0 writes and prints
            train(cfg, prep, stop=stop)
            return 0
        with mlflow_from_args(args):  # --mlflow: the run goes to MLflow too
            result, writer = recorded_training(cfg, prep, store=args.store, path=args.out, name=args.name,
                                               callback=progress, stop=stop, opened=opened)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if progress.bar is not None:
            progress.bar.close()
    path = writer.path if writer.saved else None
    if result.reason:
        print(result.reason, file=sys.stderr)
    if writer.error:
        print(f"warning: {writer.error}", file=sys.stderr)
    out = {"run_dir": str(path) if path else None, "status": result.status,
           "metrics": {t: {k: v for k, v in ms.items()} for t, ms in result.metrics.items()},
           "samples_per_s": result.samples_per_s, "run_id": writer.id if path else None, "name": writer.name,
           "saved": path is not None, "reason": result.reason, "baseline": result.baseline,
           "elapsed": result.elapsed, "grad": result.grad, "experts": result.experts,
           "warnings": list(prep.warnings)}
    if writer.error:
        out["error"] = writer.error
    out.update(one_run_summary(cfg, prep, result))  # "group" and "summary" (n = 1), as repeats give them
    print(json.dumps(json_clean(out)), flush=True)
    return 0 if path is not None else 1
