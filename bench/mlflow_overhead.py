"""Issue 30: training throughput with MLflow tracking on against off, side by side in one run.

    python bench/mlflow_overhead.py [--rounds 3] [--epochs 4]

The built-in world (quick lesson size: 600 users x 150 items x 30 impressions), Shared-Bottom,
trained `--rounds` times with tracking off and on, interleaved (off, on, off, on, ...), each a
recorded run in a scratch store; "on" logs to a scratch MLflow folder (SQLite + artifacts), the
`train --mlflow DIR` path. Compared: the trainer's samples/s (the training loop) and the whole
call's wall time (with MLflow's run creation, per-epoch logging and the artifact copy).
Target: samples/s ratio on / off >= 0.95. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, json_line, loadavg, machine, save_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    a = ap.parse_args()

    from mtrlib.config import TrainConfig
    from mtrlib.experiments.lessons import QUICK_WORLD
    from mtrlib.experiments.settings import with_overrides
    from mtrlib.runs import recorded_training
    from mtrlib.track import hook as tracking
    from mtrlib.track.mlflow_tracker import MlflowTracker
    from mtrlib.train.prepare import prepare

    tmp = Path(tempfile.mkdtemp())
    cfg = with_overrides(TrainConfig(), {"world": QUICK_WORLD, "epochs": a.epochs, "model": {"arch": "shared-bottom"}})
    prep = prepare(cfg)
    tracker = MlflowTracker(str(tmp / "mlruns"))
    sps = {"off": [], "on": []}
    wall = {"off": [], "on": []}
    for _ in range(a.rounds):
        for mode in ("off", "on"):
            t0 = time.perf_counter()
            with tracking.using(tracker if mode == "on" else None):
                res, _ = recorded_training(cfg, prep, store=tmp / "runs")
            wall[mode].append(time.perf_counter() - t0)
            sps[mode].append(res.samples_per_s)
    med = {m: statistics.median(v) for m, v in sps.items()}
    medw = {m: statistics.median(v) for m, v in wall.items()}
    out = {"bench": "mlflow_overhead", "world": QUICK_WORLD, "epochs": a.epochs, "rounds": a.rounds,
           "samples_per_s": {m: round(v) for m, v in med.items()}, "wall_s": {m: round(v, 2) for m, v in medw.items()},
           "ratio_on_over_off": {"samples_per_s": round(med["on"] / med["off"], 3),
                                 "wall": round(medw["off"] / medw["on"], 3)},
           "target_met": med["on"] / med["off"] >= 0.95, "loadavg": loadavg(), "machine": machine()}
    save_json(OUT / "mlflow_overhead.json", out)
    print(json_line(out))


if __name__ == "__main__":
    main()
