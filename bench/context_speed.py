"""Training speed with 20 context fields against none, measured side by side in one run.

    python bench/context_speed.py [--rows 200000] [--fields 20] [--archs mmoe,shared-bottom] [--rounds 3]

Issue 26's target: reading the impression's context must cost at most half the training speed
(ratio >= 0.5). The machine is noisy, so the two settings are timed *interleaved*: each round
trains each architecture once with the context and once without (alternating which goes
first), on the same prepared log, and the ratio of medians is reported.

Data: a log of `--rows` impressions (3,000 users, 1,000 items, click and purchase labels) with
`--fields` integer-coded context fields of 5 to 400 codes each; "none" is the same log with
`data.context` off (`--no-context`), so everything else is identical. What is timed: the
trainer's own samples/s over one epoch after a warm-up epoch (`TrainResult.samples_per_s`).

The last line printed is one JSON object:
{"rows", "fields", "archs": {arch: {"context": samples/s, "none": samples/s, "ratio": context/none}},
 "ratio_min": ...}
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtrlib.config import TrainConfig  # noqa: E402
from mtrlib.data import load  # noqa: E402
from mtrlib.train.loop import train  # noqa: E402
from mtrlib.train.prepare import prepare  # noqa: E402


def make_log(rows: int, fields: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"user_id": rng.integers(0, 3000, rows), "item_id": rng.integers(0, 1000, rows)})
    logit = np.full(rows, -1.0)
    for f in range(fields):
        codes = rng.integers(0, int(5 + 395 * f / max(1, fields - 1)), rows)
        df[f"c{f:02d}"] = codes
        if f < 4:  # a few fields with an effect, the rest noise
            logit += 0.8 * (codes % 2 == 0)
    click = rng.random(rows) < 1 / (1 + np.exp(-logit))
    df["click"] = click.astype(int)
    df["purchase"] = (click & (rng.random(rows) < 0.2)).astype(int)
    return df


def one(ds, arch: str, context: bool, cache: dict) -> float:
    cfg = TrainConfig()
    cfg.data.source = "files"
    cfg.data.context = context
    cfg.model.arch = arch
    cfg.device = "cpu"
    cfg.epochs = 1
    key = (arch, context)
    if key not in cache:
        cache[key] = prepare(cfg, ds)
        train(cfg, cache[key])  # warm-up
    return float(train(cfg, cache[key]).samples_per_s)


def main() -> None:
    ap = argparse.ArgumentParser(allow_abbrev=False)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--fields", type=int, default=20)
    ap.add_argument("--archs", default="mmoe,shared-bottom")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    ds = load(make_log(a.rows, a.fields))
    assert len(ds.context_features) == a.fields, ds.context_features
    out: dict = {"rows": a.rows, "fields": a.fields, "archs": {}}
    cache: dict = {}
    for arch in a.archs.split(","):
        got: dict[bool, list[float]] = {True: [], False: []}
        for r in range(a.rounds):
            for ctx in ((True, False) if r % 2 == 0 else (False, True)):
                got[ctx].append(one(ds, arch, ctx, cache))
        on, off = statistics.median(got[True]), statistics.median(got[False])
        out["archs"][arch] = {"context": round(on), "none": round(off), "ratio": round(on / off, 3)}
        print(f"{arch}: {on:,.0f} samples/s with {a.fields} context fields, {off:,.0f} without: "
              f"ratio {on / off:.2f}", flush=True)
    out["ratio_min"] = min(v["ratio"] for v in out["archs"].values())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
