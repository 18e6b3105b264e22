"""`python -m mtrlib tune`: Optuna search over settings (TPE for one objective, NSGA-II for several).

    python -m mtrlib tune --objective click/auc --objective like/auc --trials 12 \\
        --space weights.click=0.125:8:log --seeds 2 [--storage sqlite:///tune.db] [--study NAME]

Takes every flag of `train` for the base setup. Several workers started with the same command
(same --storage, or the default journal file in the run store) share one study: `--trials` is
the study's total. The last line is one JSON object: the study, its trials and its best trials
(the Pareto front for several objectives). See mtrlib.experiments.tune.
"""
from __future__ import annotations

import sys

from mtrlib.cli.experiments import print_json, stoppable
from mtrlib.cli.train import build_config
from mtrlib.errors import DataError
from mtrlib.track.flags import mlflow_from_args


def register(subparsers, verb: str | None = None) -> None:
    p = subparsers.add_parser(
        "tune", help="tune settings with Optuna (TPE; NSGA-II for several objectives)",
        description="Search --space settings for the best validation --objective(s); each trial is the mean over "
                    "--seeds seeds. Workers with the same command share one study. The last line is one JSON object.")
    p.set_defaults(func=cmd_tune)
    if verb in (None, "tune"):
        from mtrlib.cli.common import add_train_arguments  # deferred: the config imports torch; this verb's flags only
        g = p.add_argument_group("tuning")
        g.add_argument("--objective", action="append", metavar="TASK/METRIC", required=verb == "tune",
                       help="a validation metric to optimise, repeatable (two or more: NSGA-II and a Pareto front)")
        g.add_argument("--space", action="append", metavar="KEY=LOW:HIGH[:log]", required=verb == "tune",
                       help="a number setting and its range, repeatable: lr=0.001:0.1:log, weights.click=0.125:8:log")
        g.add_argument("--trials", type=int, default=20, help="trials in the study, over every worker (default 20)")
        g.add_argument("--storage", metavar="URL|FILE",
                       help="Optuna storage: an RDB URL (sqlite:///tune.db, postgresql://...) or a journal file "
                            "(default: <store>/optuna/<study>.journal)")
        g.add_argument("--study", metavar="NAME", help="study name (default: from the setup, objectives and space)")
        g.add_argument("--sampler-seed", type=int, help="seed of the sampler (default: none, so workers differ)")
        g.add_argument("--population", type=int, help="NSGA-II population size (default 4)")
        g.add_argument("--no-prune", action="store_true", help="never stop an unpromising trial early")
        add_train_arguments(p)


def cmd_tune(args) -> int:
    from mtrlib.config import validate  # deferred: heavy (torch), this verb only
    from mtrlib.experiments.settings import parse_seeds  # deferred: heavy (torch), this verb only
    from mtrlib.experiments.tune import parse_space, tune  # deferred: heavy (optuna, torch), this verb only

    cfg = build_config(args)
    validate(cfg)
    if args.out:
        raise DataError("--out names one run's folder, and tuning trains many.", fix="give --store DIR instead")
    space = [parse_space(s) for s in args.space or []]
    seeds = parse_seeds(args.seeds, args.repeat, start=cfg.seed) if (args.seeds or args.repeat) else [cfg.seed]

    def report(t):
        if not args.quiet:
            vals = ", ".join(f"{o} {v:.4f}" for o, v in zip(args.objective, t["values"]))
            sets = ", ".join(f"{k}={v:.4g}" for k, v in t["settings"].items())
            print(f"trial {t['number']}: {vals} ({sets})", file=sys.stderr, flush=True)

    with stoppable() as stop, mlflow_from_args(args, parent="tune", params={"objectives": args.objective,
                                                                           "space": args.space}):
        res = tune(cfg, args.objective or [], space, args.trials, seeds=seeds, storage=args.storage,
                   name=args.study, store=args.store, sampler_seed=args.sampler_seed, population=args.population,
                   prune=not args.no_prune, stop=stop, on_trial=report)
    print_json(res.to_json())
    return 0
