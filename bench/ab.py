"""Training speed of this checkout against another commit, measured side by side in one run.

    python bench/ab.py [--base REV] [--archs mmoe,ple,shared-bottom] [--rounds 5] [--epochs 1]

A refactor must not cost speed, and this machine is noisy: two numbers taken minutes apart
differ by more than a refactor's effect. So the two trees are timed *interleaved*: each round
trains every architecture once in each tree (alternating which tree goes first), each in its
own fresh process (same imports, same thread setting, `device="cpu"`, one intra-op thread), and
the ratio of medians is reported per architecture. The other tree is a `git worktree` of REV
(default: the commit before the package restructure) in a temporary folder, removed after.

Data: ml-latest-small (../shared/data/ml-latest-small), tasks watched=implicit and liked=rating>=4,
4 negatives per rating, per-user temporal split, ids only: the throughput benchmark's protocol.
What is timed: the trainer's own samples/s over one epoch (the training loop only, validation
excluded), after one warm-up epoch in the same process.

The last line printed is one JSON object:
{"base": REV, "archs": {arch: {"this": median samples/s, "base": ..., "ratio": this/base}}, "ratio_median": ...}
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BEFORE_RESTRUCTURE = "55bf50e"  # main before issue 25 (packages, one declaration per setting)

# Runs inside one tree (cwd = that tree). Only names both layouts share: the loop moved from
# mtrlib.train (a module) to mtrlib.train.loop, and plugin options from flat fields to nested.
CHILD = r"""
import json, sys
sys.path.insert(0, ".")
import mtrlib  # noqa: F401  (OMP_WAIT_POLICY=PASSIVE before torch)
try:
    from mtrlib.train.loop import prepare, train
except ImportError:
    from mtrlib.train import prepare, train
from mtrlib.config import DataConfig, ModelConfig, TrainConfig
from mtrlib.data import load
arch, ml, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ds = load(ml + "/ratings.csv", ml + "/movies.csv", None)
data = DataConfig(source="files", tasks=["watched=implicit", "liked=rating>=4"], negatives=4, split="temporal",
                  val_frac=0.1, test_frac=0.2, use_features=False)
cfg = TrainConfig(data=data, model=ModelConfig(arch=arch), epochs=1, seed=0, device="cpu", cpu_threads=1,
                  grad_telemetry=False)
prep = prepare(cfg, ds)
train(cfg, prep)  # warm-up epoch
rates = []
for _ in range(epochs):
    res = train(cfg, prep)
    rates.append(res.samples_per_s)
print(json.dumps({"samples_per_s": sorted(rates)[len(rates) // 2]}))
"""


def child(tree: Path, arch: str, ml: Path, epochs: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD, arch, str(ml), str(epochs)], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{tree} {arch}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["samples_per_s"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default=BEFORE_RESTRUCTURE, help="the commit to compare with")
    ap.add_argument("--archs", default="mmoe,ple,shared-bottom")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs per process (the median is kept)")
    ap.add_argument("--ml", default=str(REPO.parent / "shared" / "data" / "ml-latest-small"))
    a = ap.parse_args(argv)
    archs = [x for x in a.archs.split(",") if x]
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base_tree), a.base], check=True)
        try:
            rates = {arch: {"this": [], "base": []} for arch in archs}
            for r in range(a.rounds):
                for arch in archs:
                    order = [("this", REPO), ("base", base_tree)]
                    for name, tree in (order if r % 2 == 0 else order[::-1]):
                        rates[arch][name].append(child(tree, arch, Path(a.ml), a.epochs))
                print(f"round {r + 1}/{a.rounds}: " + ", ".join(
                    f"{arch} {rates[arch]['this'][-1]:,.0f} vs {rates[arch]['base'][-1]:,.0f}" for arch in archs),
                    file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], check=False)
    out = {"base": a.base, "rounds": a.rounds, "archs": {}}
    for arch in archs:
        this, base = statistics.median(rates[arch]["this"]), statistics.median(rates[arch]["base"])
        out["archs"][arch] = {"this": round(this), "base": round(base), "ratio": round(this / base, 3),
                              "this_all": [round(x) for x in rates[arch]["this"]],
                              "base_all": [round(x) for x in rates[arch]["base"]]}
    out["ratio_median"] = round(statistics.median(v["ratio"] for v in out["archs"].values()), 3)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
