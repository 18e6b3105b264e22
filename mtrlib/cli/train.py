"""`python -m mtrlib train`: train one multi-task model and save it as a run.

Data: `--data FILE|FOLDER [--items FILE] [--users FILE]`, or no `--data` for the built-in
synthetic world (then `--users N --items M --genres G --correlation R` are its knobs).
Settings come from `--config FILE` (a TrainConfig JSON) when given, then the flags override.
A progress bar with per-task numbers goes to stderr; the LAST line of stdout is one JSON
object: {"run_dir", "status", "metrics" (test split, per task), "samples_per_s", ...}.
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

from mtrlib.errors import DataError
from mtrlib.data.split import SPLITS
from mtrlib.data.tasks import parse_task_values


def register(subparsers, verb: str | None = None) -> None:
    p = subparsers.add_parser(
        "train", help="train a multi-task model and save it as a run",
        description="Train a multi-task model on a data file (or the built-in synthetic world) and save the run. "
                    "The last line of output is one JSON object with the run folder, status and test metrics.")
    p.set_defaults(func=cmd_train)
    if verb in (None, "train"):  # its flags come from the registries (which import torch): only when asked for
        add_train_arguments(p)


def add_train_arguments(p) -> None:
    """Every flag of `train` (also used by verbs that take train's settings)."""
    from mtrlib.config import (ARCHITECTURES, ARCHS, DEVICES, EMBEDDING_UPDATES, MODEL_KNOBS, OPTIMIZERS,
        WEIGHTING_KNOBS, WEIGHTINGS)
    from mtrlib.train.optim import LAZY_MIN_ROWS
    from mtrlib.weighting import WEIGHTINGS as WEIGHTING_CLASSES

    g = p.add_argument_group("data")
    g.add_argument("--data", help="interactions file or folder (MovieLens, or one written by `world`); "
                                  "omit for the built-in synthetic world")
    g.add_argument("--items", help="items table (with --data); else the world's number of items")
    g.add_argument("--users", help="users table (with --data); else the world's number of users")
    add_max_file_mb(g)
    g.add_argument("--genres", type=int, help="world: number of genres")
    g.add_argument("--correlation", type=float, help="world: task correlation rho in [-1, 1]")
    g.add_argument("--impressions", type=int, help="world: impressions per user")
    g.add_argument("--world-seed", type=int, help="world: seed of the generated data (default 0)")
    g.add_argument("--like-observed", choices=("all", "clicks"),
                   help="world: a like asked on every impression (all, default) or only after a click (clicks)")
    g.add_argument("--moods", type=int, help="world: moods named in the item text, 0-8 (default 6)")
    g.add_argument("--task", action="append", metavar="SPEC",
                   help="a task, repeatable: NAME=COL, NAME=COL>=X, NAME=COL:reg, NAME=implicit, ...|OTHER "
                        "(default: the data's suggested tasks)")
    g.add_argument("--negatives", type=int, help="sampled negatives per positive for an implicit task (default 4)")
    g.add_argument("--split", choices=SPLITS, help="random | temporal (each user's latest) | cold-items")
    g.add_argument("--test-frac", type=float, help="test fraction (default 0.1)")
    g.add_argument("--val-frac", type=float, help="validation fraction (default 0.1)")
    g.add_argument("--ids-only", action="store_true", default=None, help="ignore side features (ids only)")
    g.add_argument("--text-features", action="store_true", default=None,
                   help="add language-model item text vectors (all-MiniLM-L6-v2; cached after the first use)")
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=ARCHS, help="architecture (default mmoe): " + ", ".join(
        f"{a} = {c.label} ({c.paper})" for a, c in ARCHITECTURES.items()))
    add_knob_flags(m, MODEL_KNOBS)
    m.add_argument("--towers", metavar="SIZES", help="tower layer sizes, e.g. 32")
    m.add_argument("--emb-dim", type=int, help="embedding dimension (default 16)")
    m.add_argument("--dropout", type=float, help="dropout rate")
    add_history_arguments(p)
    t = p.add_argument_group("training")
    t.add_argument("--weighting", choices=WEIGHTINGS, help="task weighting method (default fixed): " + ", ".join(
        f"{w} = {c.label}" for w, c in WEIGHTING_CLASSES.items()))
    t.add_argument("--weights", metavar="T=W,...", help="fixed task weights, e.g. watched=1,liked=2")
    add_knob_flags(t, WEIGHTING_KNOBS)
    t.add_argument("--epochs", type=int, help="epochs (default 8)")
    t.add_argument("--batch-size", type=int, help="batch size (default 1024)")
    t.add_argument("--lr", type=float, help="learning rate (default 0.01)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, help="optimiser (default adam)")
    t.add_argument("--weight-decay", type=float, help="weight decay")
    t.add_argument("--early-stop", metavar="TASK", help="stop when this task's validation metric stops improving")
    t.add_argument("--patience", type=int, help="epochs without improvement before an early stop (default 2)")
    t.add_argument("--device", choices=DEVICES, help="auto (CUDA, then MPS, then CPU) or a device")
    t.add_argument("--embedding-updates", choices=EMBEDDING_UPDATES,
                   help="id tables: dense (every row, every step), lazy (only the batch's rows: sparse gradients, "
                        f"SparseAdam, lazy weight decay), or auto (default: lazy for tables of {LAZY_MIN_ROWS:,}+ rows on the CPU)")
    t.add_argument("--seed", type=int, help="random seed (default 0)")
    t.add_argument("--log-every", type=int, help="steps between progress events (default 10)")
    add_gradient_arguments(t)
    add_repeat_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--config", metavar="FILE", help="TrainConfig JSON; flags override its settings")
    o.add_argument("--save-config", metavar="FILE", help="write the resolved config to FILE and exit without training")
    o.add_argument("--out", metavar="RUN_DIR", help="folder for this run (default: a new folder in the run store)")
    o.add_argument("--store", metavar="DIR", help="run store folder (default $MTR_RUN_STORE or data/runs)")
    o.add_argument("--name", help="a name for the run (default: model + settings + time)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    from mtrlib.track import add_mlflow_argument
    add_mlflow_argument(o)


def add_gradient_arguments(group) -> None:
    """Where gradient methods take the tasks' gradients, and the gradient-conflict telemetry."""
    from mtrlib.config import GRAD_SPACES
    group.add_argument("--grad-space", choices=GRAD_SPACES,
                       help="gradient methods: per-task gradients on every parameter more than one task uses "
                            "(params, default) or on the shared representation (rep: cheaper)")
    group.add_argument("--no-grad-telemetry", dest="grad_telemetry", action="store_false", default=None,
                       help="do not measure the cosines between the tasks' gradients every --log-every steps")


def add_history_arguments(p) -> None:
    """The history block's flags (mtrlib.data.history, mtrlib.models.history)."""
    from mtrlib.data.history import MAX_HISTORY, ORDERS, POOLS
    from mtrlib.models.history import HISTORY_ENCODERS
    h = p.add_argument_group("user history (the user's last L interactions as a feature)")
    h.add_argument("--history", type=int, metavar="L",
                   help=f"read each user's last L interactions before each example (1..{MAX_HISTORY}; default: none)")
    h.add_argument("--history-encoder", choices=list(HISTORY_ENCODERS), help="how the history is read (default mean): "
                   + ", ".join(f"{n} = {c.label} ({c.paper})" for n, c in HISTORY_ENCODERS.items()))
    h.add_argument("--history-task", metavar="TASK", help="keep only past items where this binary task is 1 "
                                                           "(e.g. liked); default: every interaction")
    h.add_argument("--history-pool", choices=POOLS, help="what a test example's history holds: train (the "
                   "training interactions before it, default) or train+val (also the validation ones before it)")
    h.add_argument("--history-order", choices=ORDERS, help="what 'before' means: time (the timestamp, default) or "
                                                            "file (the row order of the file, for data without a timestamp)")


def history_settings(args, m) -> None:
    """--history* flags into the ModelConfig `m` (`--history 0` is refused: leave it out for none)."""
    from mtrlib.data.history import check_length
    if args.history is not None:
        if args.history < 1:
            raise DataError(f"--history {args.history}: a history needs at least 1 past interaction.",
                            fix="e.g. --history 50, or leave --history out to train without a history")
        check_length(args.history)
        m.history = args.history
    for attr, key in (("history_encoder", "history_encoder"), ("history_task", "history_task"),
                      ("history_order", "history_order"), ("history_pool", "history_pool")):
        val = getattr(args, attr, None)
        if val is not None:
            setattr(m, key, val)


def add_repeat_arguments(p) -> None:
    """--seeds / --repeat: the same setup with several model and split seeds, as one experiment."""
    r = p.add_argument_group("repeats")
    r.add_argument("--seeds", metavar="S1,S2,...|N", help="seeds to repeat the setup with, e.g. 1,2,3; or a "
                                                         "number N of seeds from --seed: one experiment, its "
                                                         "runs grouped, mean and 95%% CI in the last line")
    r.add_argument("--repeat", type=int, metavar="N", help="the same as --seeds N")


def add_max_file_mb(group) -> None:
    """--max-file-mb: the command line reads files of any size unless capped (the app's uploads keep 200 MB)."""
    group.add_argument("--max-file-mb", type=float, metavar="MB",
                       help="refuse a data file bigger than MB megabytes (default: no limit on the command line; "
                            "MTR_MAX_FILE_MB also sets it)")


def add_knob_flags(group, knobs) -> None:
    """One flag per knob that declares one (`knob(flag=...)`), its help naming who uses it."""
    from mtrlib.config import knob_owners
    for kf in knobs:
        k = kf.knob
        if not k.flag:
            continue
        by_help: dict[str, list[str]] = {}
        for cls, own in knob_owners(kf.name):
            by_help.setdefault(own.help or own.label, []).append(cls.label)
        text = "; ".join(f"{h} ({', '.join(who)})" for h, who in by_help.items()) + f"; default {_show(kf.default())}"
        if kf.base_type is list:
            group.add_argument(k.flag, dest=kf.name, metavar="SIZES", help=text + ", e.g. 64,32")
        else:
            group.add_argument(k.flag, dest=kf.name, type=kf.base_type, help=text)


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


# -- parsing helpers ------------------------------------------------------------------------------------

def parse_sizes(text: str, flag: str) -> list[int]:
    text = str(text).strip().strip("[]")
    if not text:
        return []
    sizes = [_int_or_none(s) for s in text.split(",") if s.strip()]
    if any(s is None for s in sizes):
        raise DataError(f"{flag} takes whole numbers separated by commas (got '{text}').", fix=f"e.g. {flag} 64,32")
    return sizes


def _int_or_none(text):
    try:
        f = float(text)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() else None


def build_config(args):
    """--config FILE (if any), then every flag that was given overrides it."""
    from mtrlib.config import MODEL_KNOBS, WEIGHTING_KNOBS, TrainConfig
    if args.config:
        try:
            text = Path(args.config).read_text(encoding="utf-8")
        except OSError as e:
            raise DataError(f"Cannot read the config file {args.config}: {e.strerror or e}.") from None
        except UnicodeDecodeError:
            raise DataError(f"The config file {args.config} is not UTF-8 text.", fix="give a JSON config file") from None
        try:
            cfg = TrainConfig.from_json(text)
        except TypeError as e:
            raise DataError(f"The config file {args.config} has a setting of the wrong kind ({e}).") from None
    else:
        cfg = TrainConfig()
    d, w, m = cfg.data, cfg.data.world, cfg.model
    if args.data:
        d.source = "files"
        d.files = {"interactions": args.data}
        if args.items:
            d.files["items"] = args.items
        if args.users:
            d.files["users"] = args.users
    else:
        for flag, val in (("--users", args.users), ("--items", args.items)):
            if val is not None and _int_or_none(val) is None:
                raise DataError(f"{flag} {val}: a table file needs --data (the interactions file) too; "
                                f"without --data, {flag} is the synthetic world's size (a whole number).",
                                fix="add --data FILE, or give a number")
        if args.users is not None:
            w.n_users = _int_or_none(args.users)
        if args.items is not None:
            w.n_items = _int_or_none(args.items)
            if args.impressions is None and w.impressions_per_user > w.n_items:
                w.impressions_per_user = w.n_items
    for attr, target, key in (("genres", w, "n_genres"), ("correlation", w, "correlation"),
                              ("impressions", w, "impressions_per_user"), ("world_seed", w, "seed"),
                              ("like_observed", w, "like_observed"), ("moods", w, "moods"),
                              ("negatives", d, "negatives"), ("split", d, "split"), ("test_frac", d, "test_frac"),
                              ("val_frac", d, "val_frac"), ("model", m, "arch"),
                              ("emb_dim", m, "emb_dim"), ("dropout", m, "dropout"), ("weighting", cfg, "weighting"),
                              ("epochs", cfg, "epochs"), ("batch_size", cfg, "batch_size"), ("lr", cfg, "lr"),
                              ("optimizer", cfg, "optimizer"), ("weight_decay", cfg, "weight_decay"),
                              ("early_stop", cfg, "early_stop_task"), ("patience", cfg, "patience"),
                              ("device", cfg, "device"), ("seed", cfg, "seed"), ("log_every", cfg, "log_every"),
                              ("name", cfg, "name"), ("grad_space", cfg, "grad_space"),
                              ("grad_telemetry", cfg, "grad_telemetry"),
                              ("embedding_updates", cfg, "embedding_updates")):
        val = getattr(args, attr, None)
        if val is not None:
            setattr(target, key, val)
    if args.task:
        d.tasks = list(args.task)
    if args.ids_only:
        d.use_features = False
    if args.text_features:
        m.text_features = True
    for target, knobs in ((m, MODEL_KNOBS), (cfg, WEIGHTING_KNOBS)):  # the registries' own knobs
        for kf in knobs:
            val = getattr(args, kf.name, None) if kf.knob.flag else None
            if val is not None:
                setattr(target, kf.name, parse_sizes(val, kf.knob.flag) if kf.base_type is list else val)
    if args.towers is not None:
        m.towers = parse_sizes(args.towers, "--towers")
    history_settings(args, m)
    if args.weights is not None:
        cfg.weights = parse_task_values(args.weights, "task weight")
    return cfg


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
        from tqdm import tqdm

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
                for k in ("auc", "logloss", "rmse", "recall@10"):
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
    from mtrlib.data.world import make_world
    return make_world(**cfg.data.world.to_dict(), max_impressions=None)


def cmd_train(args) -> int:
    from mtrlib.config import validate
    from mtrlib.train.distributed import fingerprint, lost_contact
    from mtrlib.train.distributed import finish as finish_processes
    from mtrlib.train.distributed import start_for as start_processes
    from mtrlib.train.loop import prepare

    cfg = build_config(args)
    validate(cfg)
    if args.save_config:
        try:
            Path(args.save_config).write_text(cfg.to_json() + "\n", encoding="utf-8")
        except OSError as e:
            raise DataError(f"Cannot write {args.save_config}: {e.strerror or e}.") from None
        print(json.dumps({"config": str(args.save_config)}))
        return 0
    if getattr(args, "seeds", None) is not None or getattr(args, "repeat", None) is not None:
        from mtrlib.cli.experiments import train_repeats
        return train_repeats(args, cfg)
    if args.out:
        target = Path(args.out).expanduser()
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise DataError(f"The output folder {target} already exists and is not empty.",
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
    from mtrlib.runs import recorded_training
    from mtrlib.safe import json_clean
    from mtrlib.train.loop import train

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

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not procs.main:  # the other processes train alongside; rank 0 writes and prints
            train(cfg, prep, stop=stop)
            return 0
        from mtrlib.track import mlflow_from_args
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
           "elapsed": result.elapsed, "grad": result.grad}
    if writer.error:
        out["error"] = writer.error
    from mtrlib.cli.experiments import one_run_summary
    out.update(one_run_summary(cfg, prep, result))  # "group" and "summary" (n = 1), as repeats give them
    print(json.dumps(json_clean(out)), flush=True)
    return 0 if path is not None else 1
