"""Do context features pay? Test AUC with the impression's context on and off, over seeds.

    python bench/context_effect.py [--rows 300000] [--seeds 5] [--arch mmoe] [--epochs 8]

Data: the industry-layout log of `mtrlib.data.industry` (`mtr industry`): click and purchase
labels, 30 integer-coded fields (user, item and 15 per-impression fields, of which 301 device,
302 position, 303 hour, 304 page, 305 query category and 308 channel have known effects), read
with the generator's own mapping (`mapping_of`, what mapping.json holds) and its given split (first 80% of rows train, 10%
validation, 10% test). "on" reads the context fields; "off" is the same run with `--no-context`.
Each seed is both the log's seed and the model's, so a pair shares its data. Epochs: at most
`--epochs`, early-stopped on validation click AUC (patience 2, best epoch restored): nothing is chosen on test.

The last line printed is one JSON object:
{"rows", "seeds", "arch", "tasks": {task: {"on": {"mean", "ci95", "n"}, "off": ..., "gain": paired}}}
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtrlib.config import TrainConfig  # noqa: E402
from mtrlib.data import load  # noqa: E402
from mtrlib.data.industry import make_industry, mapping_of  # noqa: E402
from mtrlib.eval.stats import mean_ci, paired_difference  # noqa: E402
from mtrlib.train.loop import train  # noqa: E402
from mtrlib.train.prepare import prepare  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--arch", default="mmoe")
    ap.add_argument("--epochs", type=int, default=8)
    a = ap.parse_args()
    got: dict[str, dict[str, list[float]]] = {}
    if True:
        for seed in range(a.seeds):
            log = make_industry(a.rows, seed=seed, split=True)
            ds = load(log, mapping=mapping_of(log))
            for mode in ("on", "off"):
                cfg = TrainConfig()
                cfg.data.source = "files"
                cfg.data.split = "given"
                cfg.data.context = mode == "on"
                cfg.model.arch = a.arch
                cfg.epochs, cfg.seed, cfg.device = a.epochs, seed, "cpu"
                cfg.early_stop_task = "click"  # on validation; the best epoch is restored
                res = train(cfg, prepare(cfg, ds))
                for t, ms in res.metrics.items():
                    got.setdefault(t, {}).setdefault(mode, []).append(ms["auc"])
                print(f"seed {seed} context {mode}: " + ", ".join(f"{t} AUC {ms['auc']:.4f}"
                                                                for t, ms in res.metrics.items())
                      + f" (best epoch {res.best_epoch})", flush=True)
    tasks = {}
    for t, by in got.items():
        tasks[t] = {"on": mean_ci(by["on"]).to_dict(), "off": mean_ci(by["off"]).to_dict(),
                    "gain": paired_difference(by["off"], by["on"]).to_dict()}
        g = tasks[t]["gain"]
        print(f"{t}: AUC {tasks[t]['on']['mean']:.4f} with context, {tasks[t]['off']['mean']:.4f} without; "
              f"gain {g['mean']:+.4f} ± {g['ci95']:.4f} (95% CI, {g['n']} seeds)")
    print(json.dumps({"rows": a.rows, "seeds": a.seeds, "arch": a.arch, "tasks": tasks}))


if __name__ == "__main__":
    main()
