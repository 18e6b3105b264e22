"""Experiment verbs: `sweep` (a grid of settings x seeds) and `lesson` (a teaching preset), and
the repeats of `train --seeds 1,2,3` / `train --repeat N`.

    python -m mtrlib sweep --grid arch=shared-bottom,mmoe --grid rho=0.9,-0.5 --seeds 3 [train args]
    python -m mtrlib sweep --grid weights.click,weights.like=1:8,1:1,8:1 --seeds 3 --corners
    python -m mtrlib lesson seesaw [--quick]

Each run goes through the job limiter, one at a time, and is saved in the run store; a rerun
of the same sweep reuses the finished runs (`--no-resume` trains them again). One progress
line per run goes to stderr; the LAST line of stdout is one JSON object:

    sweep:  {"configs": [{"settings": {...}, "summary": {TASK: {METRIC: {"mean", "ci95", "n"}}}}],
             "pareto": [indices into configs], "x": "click/auc", "y": "like/auc", "hypervolume": ...}
    lesson: {"lesson": NAME, "headline": {SETTING: {"mean", "ci95", "n"}}, "holds": true|false, ...}
    train --seeds: {"group", "seeds", "runs": [...], "summary": {...}, "metrics": {TASK: {METRIC: mean}}, ...}

Ctrl-C stops after the current batch and keeps every finished run (status "stopped").
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from contextlib import contextmanager

from mtrlib.errors import DataError
from mtrlib.track.flags import add_mlflow_argument, mlflow_from_args


def register(subparsers, verb: str | None = None) -> None:
    p = subparsers.add_parser(
        "sweep", help="train every combination of some settings with several seeds",
        description="Train every combination of the --grid settings, each with --seeds seeds, through the job "
                    "limiter; finished runs are reused on a rerun. The last line is one JSON object with each "
                    "configuration's mean and 95%% CI per task and metric, the Pareto front of two metrics and "
                    "its hypervolume.")
    p.set_defaults(func=cmd_sweep)
    if verb in (None, "sweep"):
        from mtrlib.cli.common import add_train_arguments  # deferred: heavy (torch, through the registries)
        g = p.add_argument_group("sweep")
        g.add_argument("--grid", action="append", metavar="KEY=V1,V2,...", required=verb == "sweep",
                       help="a setting and its values, repeatable (every combination is trained): arch=mmoe,ple, "
                            "weights.like=0.5,1,2, rho=0.9,0,-0.5, lr=0.001,0.01, emb_dim=8,16, experts=64/32,32; "
                            "linked keys change together: weights.click,weights.like=1:8,1:1,8:1")
        g.add_argument("--x", metavar="TASK/METRIC", help="first metric of the Pareto front (default: the first "
                                                          "task's AUC, or RMSE)")
        g.add_argument("--y", metavar="TASK/METRIC", help="second metric of the front (default: the second task's)")
        g.add_argument("--corners", action="store_true",
                       help="also train single-task models (arch=single) with the same seeds: the best single-task "
                            "pair the front is measured against (adds corners and relative_hypervolume)")
        g.add_argument("--no-resume", action="store_true", help="train every run again, even those already finished")
        add_train_arguments(p)

    p = subparsers.add_parser(
        "lesson", help="run a teaching lesson (conflict, seesaw, funnel, cold-text) and say if it holds",
        description="Run one lesson's sweep (the same as its button in the app) and print its headline numbers. "
                    "The last line is one JSON object with mean and ci95 per compared setting and \"holds\".")
    p.set_defaults(func=cmd_lesson)
    p.add_argument("name", metavar="NAME", help="conflict | seesaw | funnel | cold-text | all")
    p.add_argument("--warm", action="store_true",
                   help="pre-train the lesson's runs into the store before a class (with NAME all: every lesson), "
                        "so students see the figures at once; prints what was trained and reused")
    p.add_argument("--quick", action="store_true", help="a reduced size (smaller world, fewer seeds): a quick check")
    p.add_argument("--seeds", type=int, help="seeds per setting (default: the lesson's own)")
    p.add_argument("--no-resume", action="store_true", help="train every run again, even those already finished")
    p.add_argument("--store", metavar="DIR", help="run store folder (default $MTR_RUN_STORE or data/runs)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_mlflow_argument(p)


# -- shared --------------------------------------------------------------------------------------------------

@contextmanager
def stoppable():
    """Ctrl-C / SIGTERM set the event (training stops after its batch); a second Ctrl-C aborts."""
    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this batch; finished runs are kept (Ctrl-C again to abort)...", file=sys.stderr)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _line_reporter(quiet: bool):
    """One stderr line per run: 'run 3 of 12 · arch=mmoe · seed 1: click auc 0.7612, like auc 0.7340 (4.1 s)'."""
    from mtrlib.experiments.settings import label  # deferred: heavy, this verb only

    def report(prog, cell, configs=None):
        if quiet or cell is None:
            return
        what = label(configs[cell.config].settings) if configs else ""
        if cell.reused:
            text = "already in the store, reused"
        elif cell.status == "finished":
            heads = [f"{t} {k} {v:.4f}" for t, ms in cell.metrics.items() for k, v in ms.items() if k in ("auc", "rmse")]
            text = ", ".join(heads) + f" ({cell.seconds:.1f} s)"
        else:
            text = f"{cell.status}: {cell.message.splitlines()[0] if cell.message else ''}"
        eta = prog.eta_s
        tail = f" · about {eta:.0f} s left" if eta is not None and prog.done < prog.total else ""
        print(f"run {prog.done} of {prog.total} · {what} · seed {cell.seed}: {text}{tail}", file=sys.stderr, flush=True)

    return report


def print_json(obj) -> None:
    from mtrlib.safe import json_clean  # deferred: heavy, this verb only
    print(json.dumps(json_clean(obj)), flush=True)


# -- train --seeds / --repeat ---------------------------------------------------------------------------------

def train_repeats(args, cfg) -> int:
    """`train` with several seeds: one experiment (one group id), the runs trained in turn."""
    from mtrlib.experiments import Sweep, run_sweep  # deferred: heavy, this verb only
    from mtrlib.experiments.groups import summary_json  # deferred: heavy, this verb only
    from mtrlib.experiments.settings import parse_seeds  # deferred: heavy, this verb only

    if args.out:
        raise DataError("--out names one run's folder, and --seeds trains several runs.",
                        fix="leave out --out (the runs go to the run store), or give --store DIR")
    seeds = parse_seeds(args.seeds, args.repeat, start=cfg.seed)
    sweep = Sweep(cfg, seeds=seeds, name=args.name)
    configs = sweep.configs()  # one: the base setup
    report = _line_reporter(args.quiet)
    t0 = time.time()
    with stoppable() as stop:
        with mlflow_from_args(args, parent=f"repeats · {sweep.name or cfg.model.arch}", params={"seeds": seeds}):
            res = run_sweep(sweep, store=args.store, stop=stop, resume=False,
                            on_progress=lambda p, c: report(p, c, configs))
    summary = res.summary(0)
    runs = [{"seed": c.seed, "run_id": c.run_id, "run_dir": _run_dir(args.store, c.run_id), "status": c.status,
             "metrics": c.metrics, **({"reason": c.message} if c.message else {})} for c in res.cells]
    statuses = {c.status for c in res.cells}
    status = "finished" if statuses == {"finished"} and len(res.cells) == len(seeds) else (
        "stopped" if res.stopped else "partial")
    out = {"group": res.groups[0], "seeds": seeds, "status": status, "runs": runs, "summary": summary_json(summary),
           "metrics": {t: {k: e.mean for k, e in ms.items()} for t, ms in summary.items()},
           "saved": all(c.run_id for c in res.cells), "elapsed": time.time() - t0}
    print_json(out)
    return 0 if out["saved"] else 1


def one_run_summary(cfg, prep, result) -> dict:
    """The "group" and "summary" keys of a single run's JSON line (a summary over one seed)."""
    from mtrlib.experiments.groups import key_metrics, summarise, summary_json  # deferred: heavy, this verb only
    from mtrlib.runs import data_signature, group_key  # deferred: heavy, this verb only

    per_seed = {cfg.seed: key_metrics(result.metrics)} if result.status == "finished" else {}
    return {"group": group_key(cfg, data_signature(prep.dataset)), "summary": summary_json(summarise(per_seed))}


def _run_dir(store, run_id):
    if not run_id:
        return None
    from mtrlib.runs import store_dir  # deferred: heavy, this verb only
    return str(store_dir(store) / run_id)


# -- sweep -------------------------------------------------------------------------------------------------------

def cmd_sweep(args) -> int:
    from mtrlib.cli.common import build_config  # deferred: heavy (torch, through the registries)
    from mtrlib.config import validate  # deferred: heavy, this verb only
    from mtrlib.experiments import Sweep, parse_grid, run_sweep  # deferred: heavy, this verb only
    from mtrlib.experiments.settings import parse_seeds  # deferred: heavy, this verb only

    cfg = build_config(args)
    validate(cfg)
    if args.out:
        raise DataError("--out names one run's folder, and a sweep trains many.", fix="give --store DIR instead")
    axes = [parse_grid(g) for g in args.grid or []]
    if not axes:
        raise DataError("A sweep needs at least one --grid KEY=V1,V2,...", fix="e.g. --grid arch=mmoe,ple")
    seeds = parse_seeds(args.seeds, args.repeat, start=cfg.seed)
    sweep = Sweep(cfg, axes, seeds, corners=[{"arch": "single"}] if args.corners else [], name=args.name or "sweep")
    configs = sweep.check()
    if not args.quiet:
        print(f"sweep: {len(configs)} configurations x {len(seeds)} seeds = {sweep.total} runs", file=sys.stderr)
    report = _line_reporter(args.quiet)
    with stoppable() as stop:
        with mlflow_from_args(args, parent=f"sweep · {sweep.name}", params={"grid": args.grid, "seeds": seeds}):
            res = run_sweep(sweep, store=args.store, stop=stop, resume=not args.no_resume,
                            on_progress=lambda p, c: report(p, c, configs))
    for p in (args.x, args.y):
        if p and p not in res.metrics():
            raise DataError(f"The sweep measured no metric '{p}'.", fix="measured: " + ", ".join(res.metrics()))
    out = res.to_json(args.x, args.y)
    if not args.quiet:
        print(f"sweep {'stopped' if res.stopped else 'finished'} in {res.seconds:.0f} s: "
              f"{sum(c.status == 'finished' for c in res.cells)} finished runs "
              f"({sum(c.reused for c in res.cells)} reused)", file=sys.stderr)
    print_json(out)
    return 0


# -- lesson ------------------------------------------------------------------------------------------------------

def cmd_lesson(args) -> int:
    from mtrlib.experiments.lessons import LESSONS, get_lesson, run_lesson  # deferred: heavy, this verb only
    from mtrlib.experiments.warm import warm_lessons  # deferred: heavy, this verb only

    names = list(LESSONS) if args.name.strip().lower() == "all" else [get_lesson(args.name).name]
    if args.warm or len(names) > 1:
        with stoppable() as stop:
            print_json(warm_lessons(names, quick=args.quick, store=args.store, stop=stop,
                                     on_progress=None if args.quiet else lambda p, c: print(p.text(), file=sys.stderr)))
        return 0
    lesson = get_lesson(args.name)
    report = _line_reporter(args.quiet)
    sweep = lesson.sweep(quick=args.quick, seeds=args.seeds)
    configs = sweep.configs()
    if not args.quiet:
        print(f"lesson {lesson.name}: {lesson.question}\n{len(configs)} settings x {len(sweep.seeds)} seeds = "
              f"{sweep.total} runs{' (quick)' if args.quick else ''}", file=sys.stderr)
    with stoppable() as stop:
        with mlflow_from_args(args, parent=f"lesson · {lesson.name}", params={"quick": args.quick}):
            out = run_lesson(lesson, quick=args.quick, seeds=args.seeds, store=args.store, stop=stop,
                             resume=not args.no_resume, on_progress=lambda p, c: report(p, c, configs))
    if not args.quiet:
        print(out["verdict"], file=sys.stderr)
    print_json(out)
    return 0
