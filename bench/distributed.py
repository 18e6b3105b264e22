"""One process against two: the same training from the CLI, plain and under torchrun.

    python bench/distributed.py [--users 20000] [--items 2000] [--impressions 40] [--epochs 1]
                                [--batch-sizes 1024,4096] [--rounds 3]

Both train the same world (default 20,000 users x 2,000 items x 40 impressions: 800k rows),
the same model (MMoE 4x[64,32]) with the same seed and the same global batch, on the CPU:

- 1 process:   python -m mtrlib train ... --device cpu --no-grad-telemetry
- 2 processes: torchrun --standalone --nproc-per-node 2 -m mtrlib train ... --device cpu
               (DDP over gloo; each process trains half of every global batch, one thread each)

Samples/s is each run's own training-loop throughput from its JSON last line (all processes'
rows together); wall time is the whole command (start-up, data, training, evaluation). Rounds
alternate which goes first so that load changes on this shared machine hit both alike;
medians are reported, with the test AUCs of both (they should agree: same global batches).
On a machine with 2 cores, two processes share the cores with each other (and here with other
work), so they are not expected to be faster; with a free core per process and batches big
enough to amortise the all-reduce they should approach 2x.

The last line is one JSON object: {"<batch size>": {"one": {...}, "two": {...}, "speedup": .}}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C  # noqa: E402

TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))


def run_cli(two: bool, args, batch: int, store: str) -> dict:
    world = ["--users", str(args.users), "--items", str(args.items), "--impressions", str(args.impressions),
             "--epochs", str(args.epochs), "--batch-size", str(batch), "--device", "cpu", "--quiet", "--seed", "0",
             # telemetry runs in one process only (DDP skips it): off in both for equal work; it
             # also fails on the sparse id-table gradients of lazy updates (mtrlib/telemetry.py)
             "--no-grad-telemetry"]
    cmd = ([TORCHRUN, "--standalone", "--nproc-per-node", "2", "-m", "mtrlib", "train"] if two else
           [sys.executable, "-m", "mtrlib", "train"]) + world
    env = dict(os.environ, PYTHONPATH=str(C.REPO), MTR_RUN_STORE=store, OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=C.REPO, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{'torchrun' if two else 'train'} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    return {"samples_per_s": out["samples_per_s"], "wall_s": wall,
            "auc": {t: m["auc"] for t, m in out["metrics"].items() if "auc" in m}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--impressions", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-sizes", default="1024,4096")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    result: dict = {"machine": C.machine(), "world": {"users": args.users, "items": args.items,
                                                      "impressions": args.impressions, "epochs": args.epochs}}
    with tempfile.TemporaryDirectory(prefix="mtr-ddp-bench-") as store:
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            got: dict = {"one": [], "two": []}
            for r in range(args.rounds):
                for who in (("one", "two") if r % 2 == 0 else ("two", "one")):
                    got[who].append(run_cli(who == "two", args, batch, store))
                    print(f"batch {batch} round {r + 1} {who}: {got[who][-1]['samples_per_s']:,.0f} samples/s, "
                          f"{got[who][-1]['wall_s']:.1f} s wall", file=sys.stderr, flush=True)
            row = {}
            for who, runs in got.items():
                row[who] = {"samples_per_s": statistics.median(x["samples_per_s"] for x in runs),
                            "wall_s": statistics.median(x["wall_s"] for x in runs),
                            "all_samples_per_s": [x["samples_per_s"] for x in runs], "auc": runs[0]["auc"]}
            row["speedup"] = row["two"]["samples_per_s"] / row["one"]["samples_per_s"]
            row["wall_ratio"] = row["one"]["wall_s"] / row["two"]["wall_s"]
            row["auc_diff"] = {t: row["two"]["auc"][t] - row["one"]["auc"][t] for t in row["one"]["auc"]}
            result[str(batch)] = row
    result["loadavg_end"] = list(C.loadavg())
    C.save_json(C.OUT / "distributed.json", result)
    print(C.json_line(result))
    return result


if __name__ == "__main__":
    main()
