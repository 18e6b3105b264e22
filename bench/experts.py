"""Issue 28's architectures against MMoE and PLE: test AUC over seeds, and training throughput.

    python bench/experts.py [--archs mmoe,ple,home,adatt,pepnet] [--seeds 5] [--epochs 6] [--ml]

Data: the built-in world at its defaults (tasks click, like, dwell), world seed = training seed;
with `--ml`, ml-latest-small with the README's protocol instead (watched=implicit,
liked=rating>=4, each user's last 20% of ratings by time as test, genres as features, 8 epochs).
Every architecture at its defaults (HoME: batch norm + Swish, one group per task; AdaTT: PLE's
expert knobs; PEPNet: gamma 2). Settings are the defaults, not chosen on test.

Throughput: the trainer's own samples/s of each run (`TrainResult.samples_per_s`), median over
the seeds; the runs of one seed go arch after arch, so every architecture meets the same
machine load, and each ratio is against MMoE's median.

The last line printed is one JSON object:
{"data", "seeds", "archs": {arch: {"auc": {task: {"mean", "ci95", "n"}}, "samples_per_s", "ratio_to_mmoe"}}}
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtrlib.config import TrainConfig  # noqa: E402
from mtrlib.eval.stats import mean_ci  # noqa: E402
from mtrlib.train.loop import train  # noqa: E402
from mtrlib.train.prepare import prepare  # noqa: E402

ML = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"


def config(arch: str, seed: int, epochs: int, ml: bool) -> TrainConfig:
    cfg = TrainConfig()
    cfg.model.arch, cfg.seed, cfg.epochs, cfg.device = arch, seed, epochs, "cpu"
    if ml:
        cfg.data.source = "files"
        cfg.data.files = {"interactions": str(ML / "ratings.csv"), "items": str(ML / "movies.csv")}
        cfg.data.tasks = ["watched=implicit", "liked=rating>=4"]
        cfg.data.split, cfg.data.test_frac, cfg.epochs = "temporal", 0.2, 8
    else:
        cfg.data.world.seed = seed
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--archs", default="mmoe,ple,home,adatt,pepnet")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--ml", action="store_true", help="ml-latest-small (README protocol) instead of the world")
    a = ap.parse_args()
    archs = a.archs.split(",")
    aucs: dict[str, dict[str, list[float]]] = {x: {} for x in archs}
    speed: dict[str, list[float]] = {x: [] for x in archs}
    for seed in range(a.seeds):
        prep = None
        for arch in archs:
            cfg = config(arch, seed, a.epochs, a.ml)
            prep = prepare(cfg, prep.dataset if prep is not None else None)
            res = train(cfg, prep)
            for t, ms in res.metrics.items():
                if "auc" in ms:
                    aucs[arch].setdefault(t, []).append(ms["auc"])
            speed[arch].append(res.samples_per_s)
            print(f"seed {seed} {arch}: " + ", ".join(f"{t} AUC {v[-1]:.4f}" for t, v in aucs[arch].items())
                  + f", {res.samples_per_s:,.0f} samples/s", flush=True)
    base = statistics.median(speed[archs[0]])
    out = {"data": "ml-latest-small" if a.ml else "world (defaults)", "seeds": a.seeds, "archs": {}}
    for arch in archs:
        sps = statistics.median(speed[arch])
        out["archs"][arch] = {"auc": {t: mean_ci(v).to_dict() for t, v in aucs[arch].items()},
                              "samples_per_s": round(sps), f"ratio_to_{archs[0]}": round(sps / base, 3)}
        print(f"{arch}: " + ", ".join(f"{t} {e['mean']:.4f} ± {e['ci95']:.4f}" for t, e in out["archs"][arch]["auc"].items())
              + f"; {sps:,.0f} samples/s ({sps / base:.2f}x {archs[0]})")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
