"""Issue 30: Optuna's NSGA-II front against the grid's front on the seesaw lesson's world.

    python bench/tuning.py [--full] [--seeds 3] [--trials 6] [--study-seeds 3]

The seesaw lesson's setup (Shared-Bottom, tasks click and like|click; `--full`: the lesson's own
world and epochs, default: its quick size) with one searched setting, the click:like weight
ratio (like's weight 1, click's from 1/8 to 8):

- the grid: 13 ratios on a log grid from 1:8 to 8:1, each trained with `--seeds` seeds (13 x
  seeds runs), through `run_sweep`;
- Optuna: for each of `--study-seeds` sampler seeds, a fresh NSGA-II study of `--trials` trials
  over weights.click = 0.125:8:log, each trial the mean over the same seeds (the `tune` verb's
  code), so a study trains trials x seeds runs: 6 x 3 = 18 <= 50% of the grid's 39.

Both fronts are measured on the same footing: each point is a setting's mean *test* AUC pair
over seeds (Optuna tuned on validation AUC, as the verb does), hypervolume above chance (0.5,
0.5), as the Pareto page computes it. Target: each study's hypervolume >= 95% of the grid's.
The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, json_line, loadavg, machine, save_json  # noqa: E402

X, Y = "click/auc", "like/auc"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="the lesson's own world and epochs (default: its quick size)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--study-seeds", type=int, default=3)
    ap.add_argument("--points", type=int, default=13)
    a = ap.parse_args()

    import numpy as np

    from mtrlib.experiments import Sweep, parse_grid, run_sweep
    from mtrlib.experiments.lessons import get_lesson
    from mtrlib.experiments.pareto import front, hypervolume, reference
    from mtrlib.experiments.tune import front_points, parse_space, tune

    store = Path(tempfile.mkdtemp()) / "runs"
    base = get_lesson("seesaw").setup(quick=not a.full)
    base.weights = {"click": 1.0, "like": 1.0}
    seeds = list(range(a.seeds))
    ratios = np.geomspace(1 / 8, 8, a.points)
    t0 = time.time()
    grid = run_sweep(Sweep(base, [parse_grid("weights.click=" + ",".join(f"{r:.4g}" for r in ratios))], seeds,
                             name="grid"), store=store, resume=False)
    grid_s = time.time() - t0
    pts = [(grid.summary(i)["click"]["auc"].mean, grid.summary(i)["like"]["auc"].mean) for i in grid.grid()]
    ref = reference((X, Y), pts)
    hv_grid = hypervolume(pts, ref)
    studies = []
    for s in range(a.study_seeds):
        t0 = time.time()
        res = tune(base, [X, Y], [parse_space("weights.click=0.125:8:log")], a.trials, seeds=seeds, store=store,
                   name=f"bench-nsga2-{s}", sampler_seed=s, prune=False)
        p = front_points(res.study, [X, Y])
        hv = hypervolume(p, ref)
        studies.append({"sampler_seed": s, "trials": len(p), "runs": len(p) * len(seeds), "hypervolume": hv,
                        "relative_to_grid": hv / hv_grid if hv_grid > 0 else None, "front": [p[i] for i in front(p)],
                        "seconds": round(time.time() - t0, 1)})
    rel = [s["relative_to_grid"] for s in studies]
    out = {"bench": "tuning", "world": "seesaw lesson, " + ("full" if a.full else "quick"),
           "grid": {"points": a.points, "runs": a.points * len(seeds), "hypervolume": hv_grid,
                    "front": [pts[i] for i in front(pts)], "seconds": round(grid_s, 1)},
           "reference": ref, "studies": studies,
           "relative_hypervolume": {"min": min(rel), "mean": sum(rel) / len(rel)},
           "runs_share": a.trials * len(seeds) / (a.points * len(seeds)),
           "target_met": min(rel) >= 0.95 and a.trials <= a.points / 2,
           "loadavg": loadavg(), "machine": machine()}
    save_json(OUT / "tuning.json", out)
    print(json_line(out))


if __name__ == "__main__":
    main()
