"""Does the gap between Shared-Bottom and MMoE / PLE grow when tasks conflict?

The MMoE paper (Ma et al., KDD 2018, section 4) shows on synthetic data that Shared-Bottom
degrades faster than MMoE as the correlation between tasks drops. Our world builds its click
and like preferences the same way, with correlation rho. This trains Shared-Bottom, MMoE and
PLE (default settings) on the default world at rho = 0.9 and rho = -0.5 over several seeds,
and prints per-task test AUC (mean +- std) and the gap to Shared-Bottom (mean over the binary
tasks). The last line is one JSON object with the numbers and whether the effect appeared.

    python bench/rho_effect.py [--seeds 5] [--rhos 0.9,-0.5] [--epochs N] [--width W]

--width W gives the shared bottom and each expert one layer of W units (default: the
defaults, [64, 32]): the paper's effect needs sharing to be a real constraint.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtrlib.config import TrainConfig  # noqa: E402
from mtrlib.train.loop import prepare, train  # noqa: E402

ARCHS = ("shared-bottom", "mmoe", "ple")
TASKS = ("click", "like")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rhos", default="0.9,-0.5")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--width", type=int, default=None)
    args = ap.parse_args(argv)
    rhos = [float(r) for r in args.rhos.split(",")]
    auc: dict = {}
    t0 = time.time()
    for rho in rhos:
        for seed in range(args.seeds):
            base = TrainConfig(seed=seed)
            base.data.world.correlation = rho
            base.data.world.seed = seed
            if args.epochs:
                base.epochs = args.epochs
            prep = prepare(base)
            for arch in ARCHS:
                cfg = TrainConfig.from_dict(base.to_dict())
                cfg.model.arch = arch
                if args.width:  # the chosen architecture's own options (those it has)
                    cfg.model.shared = [args.width]
                    cfg.model.experts = [args.width]
                res = train(cfg, prep)
                for t in TASKS:
                    auc.setdefault((rho, arch, t), []).append(res.metrics[t]["auc"])
            print(f"rho={rho:+.1f} seed={seed} done ({time.time() - t0:.0f}s)", file=sys.stderr, flush=True)

    what = f"shared/experts [{args.width}]" if args.width else "default settings"
    print(f"\nTest AUC, mean +- std over {args.seeds} seeds (default world, {what})\n")
    print(f"| rho | {' | '.join(f'{a} {t}' for a in ARCHS for t in TASKS)} | MMoE - SB | PLE - SB |")
    print("|---|" + "---|" * (len(ARCHS) * len(TASKS) + 2))
    gaps = {}
    for rho in rhos:
        cells = [f"{np.mean(auc[rho, a, t]):.4f} +- {np.std(auc[rho, a, t]):.4f}" for a in ARCHS for t in TASKS]
        g = {}
        for a in ("mmoe", "ple"):
            diff = np.mean([np.array(auc[rho, a, t]) - np.array(auc[rho, "shared-bottom", t]) for t in TASKS], 0)
            g[a] = (float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0)
        gaps[rho] = g
        print(f"| {rho:+.1f} | {' | '.join(cells)} | {g['mmoe'][0]:+.4f} +- {g['mmoe'][1]:.4f} "
              f"| {g['ple'][0]:+.4f} +- {g['ple'][1]:.4f} |")
    hi, lo = max(rhos), min(rhos)
    effect = {a: gaps[lo][a][0] - gaps[hi][a][0] for a in ("mmoe", "ple")}
    appeared = {a: bool(effect[a] > 2 * np.hypot(gaps[lo][a][1], gaps[hi][a][1])) for a in effect}
    print(f"\nGap growth from rho={hi:+.1f} to rho={lo:+.1f}: "
          + ", ".join(f"{a}: {effect[a]:+.4f} ({'appears' if appeared[a] else 'not significant'})" for a in effect))
    out = {"seeds": args.seeds, "width": args.width, "auc": {f"{r}/{a}/{t}": float(np.mean(v)) for (r, a, t), v in auc.items()},
           "gap": {str(r): {a: g[a][0] for a in g} for r, g in gaps.items()},
           "gap_growth": effect, "effect_appeared": appeared, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
