"""What expert-health telemetry (mtrlib.train.experts) costs: MMoE on the built-in world's
defaults, trained with and without it, interleaved.

    python bench/expert_health_cost.py [--rounds 3] [--epochs 2] [--arch mmoe]

The data is prepared once; each round trains the same config twice, once with
`expert_health=True` and once with False, alternating which goes first (this machine is noisy:
numbers taken minutes apart differ more than the effect). Two numbers:

- `wall_ratio`: median wall time of a whole training call (epochs, validation, test) with the
  telemetry over without it (noisy: 1.00 +- a few percent is no effect);
- `direct_share`: the time spent inside the telemetry itself (`experts.measure`, timed around
  each call) over the wall time of the runs with it: the precise number.

Side by side per round on stdout; the last line is one JSON object with both ratios.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mtrlib  # noqa: E402,F401  (OMP_WAIT_POLICY=PASSIVE before torch)
from mtrlib.config import TrainConfig  # noqa: E402
from mtrlib.train import loop  # noqa: E402
from mtrlib.train.loop import prepare, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--arch", default="mmoe")
    a = ap.parse_args()
    cfg = TrainConfig.from_dict({"model": {"arch": a.arch}, "epochs": a.epochs, "device": "cpu", "seed": 0})
    prep = prepare(cfg)
    inside = [0.0]
    measure = loop.experts.measure

    def timed(model, sample):
        t = time.perf_counter()
        try:
            return measure(model, sample)
        finally:
            inside[0] += time.perf_counter() - t

    loop.experts.measure = timed
    cfg.epochs = 1
    train(cfg, prep)  # warm-up
    cfg.epochs = a.epochs
    walls = {True: [], False: []}
    spent = 0.0
    print(f"{a.arch}, {len(prep.train):,} training rows, {a.epochs} epochs per run; seconds per run", flush=True)
    print(f"{'round':>5} {'with':>8} {'without':>8} {'ratio':>6} {'in telemetry':>13}", flush=True)
    for r in range(a.rounds):
        times = {}
        for on in ((True, False) if r % 2 == 0 else (False, True)):
            cfg.expert_health = on
            before = inside[0]
            t = time.perf_counter()
            train(cfg, prep)
            times[on] = time.perf_counter() - t
            walls[on].append(times[on])
            if on:
                spent += inside[0] - before
                in_run = inside[0] - before
        print(f"{r + 1:>5} {times[True]:8.2f} {times[False]:8.2f} {times[True] / times[False]:6.3f} {in_run:12.3f}s",
              flush=True)
    wall_ratio = statistics.median(walls[True]) / statistics.median(walls[False])
    direct = spent / sum(walls[True])
    print(json.dumps({"arch": a.arch, "rows": len(prep.train), "epochs": a.epochs, "rounds": a.rounds,
                      "with_s": statistics.median(walls[True]), "without_s": statistics.median(walls[False]),
                      "wall_ratio": wall_ratio, "direct_share": direct}))


if __name__ == "__main__":
    main()
