"""Measured scaling: load, prepare, one training epoch, evaluation and full ranking, from 1M to
25M interactions, with wall time and peak memory per stage.

    python bench/scaling.py [--sizes 1M,5M,25M,ml-latest-small] [--source world|synthetic]
                            [--no-fallback] [--negatives 4] [--rank-users 500] [--data-dir DIR]
                            [--until prepare] [--out scaling.json]

`--until prepare` stops each size after the prepare stage (a quick load + prepare check; no
targets), `--out` names the result file under bench/out/.

Sizes. "1M", "5M", "25M" (any "<N>M" / "<N>k") are worlds of ml-25m's shape scaled to N
interactions: 162,541 x N / 25M users and 59,047 x N / 25M items, about 154 impressions per user
(ml-25m: 25,000,095 ratings of 59,047 movies by 162,541 users). "ml-latest-small" is the README
protocol on the real file, for reference. Each size runs in a fresh process, so its peak RSS is
its own.

Data. `--source world` (default) generates each world through the public API
(`mtrlib.data.make_world`, written as `python -m mtrlib world` writes it: interactions.csv,
items.csv, users.csv) and keeps the files in --data-dir for the next run. Where the generator
refuses or fails (it is called as the CLI calls it, without the app's size cap), the stage and
the message are reported, and (unless --no-fallback) the size is measured on a synthetic log of the same shape
written by this script (numpy + pyarrow; latent user and item vectors, Zipf item popularity,
click / like | click / dwell labels), marked "source": "synthetic". `--source synthetic` uses
the synthetic log for every size. An interactions.parquet copy is written beside each CSV.

Stages, each timed (wall and CPU seconds) with its own peak RSS (VmHWM reset before it):

- load_parquet: `mtrlib.data.load` of the Parquet interactions (+ items and users), then freed;
- load: `mtrlib.data.load` of the CSV folder (the multi-threaded pyarrow reader, typing, ids);
- negatives: labelled examples with `--negatives` sampled negatives per logged row for an implicit
  task (`build_examples`, the vectorised sampler): (1 + K) x N examples, then freed;
- prepare: `mtrlib.train.prepare.prepare` with the world's tasks (click, like|click, dwell|click; no
  negatives): labels, random split 80/10/10, feature space, encoded tensors;
- epoch: one training epoch (MMoE 4x[64,32], batch 1024, Adam, one thread, default embedding
  updates: lazy for the big id tables; gradient telemetry off); `epoch_s` is the training loop alone, `samples_per_s`
  its throughput (`TrainResult.samples_per_s`);
- evaluate: test-split predictions and metrics (`mtrlib.train.predict.evaluate`);
- rank: full ranking of every item for --rank-users test users (the factorised scorer,
  `mtrlib.serve.scoring.iter_scores`, top 100 after masking nothing): seconds, ms per user, and the
  projected time for every user. (Cascade ranking is not on this branch.)

Targets (issue 19): per-row cost within 1.5x from 1M to 25M; 25M rows loaded and prepared in
<= 120 s; peak RSS <= 12 GB; training samples/s at 25M >= 0.8x that at 1M. The machine is a
shared 2-core box: the load average at each stage is recorded, and CPU seconds beside wall.

The last line is one JSON object: {"rows": {"1000000": {"load_s", "prepare_s", "epoch_s",
"samples_per_s", "peak_rss_mb", ...}, ...}, "targets": {...}, "machine": {...}}.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import _common as C  # noqa: E402  (puts the repo on sys.path)

ML25M = {"rows": 25_000_095, "users": 162_541, "items": 59_047}
DEFAULT_DIR = C.OUT / "scaling-data"
WORLD_TASKS = ["click=click", "like=like|click", "dwell=dwell:reg|click"]


# -- sizes and data ------------------------------------------------------------------------------------

def parse_size(text: str) -> int | str:
    t = text.strip().lower()
    if t in ("ml-latest-small", "ml", "ml-small"):
        return "ml-latest-small"
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([km]?)", t)
    if not m:
        raise SystemExit(f"unknown size {text!r}: use e.g. 1M, 500k, 25M or ml-latest-small")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2)])


def shape(rows: int) -> dict:
    """ml-25m's users and items, scaled to `rows` interactions."""
    f = rows / ML25M["rows"]
    users = max(10, round(ML25M["users"] * f))
    items = max(10, round(ML25M["items"] * f))
    return {"users": users, "items": items, "impressions": min(items, max(1, round(rows / users)))}


def hwm_reset() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Stage:
    """Times a block (wall, CPU of every thread) and its own peak RSS."""

    def __init__(self, out: dict, name: str):
        self.out, self.name = out, name

    def __enter__(self):
        gc.collect()
        hwm_reset()
        self.t, self.c, self.load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        return self

    def __exit__(self, *exc):
        self.out[f"{self.name}_s"] = time.perf_counter() - self.t
        self.out[f"{self.name}_cpu_s"] = time.process_time() - self.c
        self.out[f"{self.name}_peak_rss_mb"] = peak_mb()
        self.out[f"{self.name}_loadavg"] = round(self.load, 2)
        print(f"  {self.name}: {self.out[f'{self.name}_s']:.1f} s, peak {self.out[f'{self.name}_peak_rss_mb']:,.0f} MB",
              file=sys.stderr, flush=True)
        return False


def write_world(folder: Path, sh: dict, info: dict) -> None:
    """The world through the public API, written as `python -m mtrlib world` writes it."""
    from mtrlib.data import make_world
    with Stage(info, "generate"):
        ds = make_world(n_users=sh["users"], n_items=sh["items"], impressions_per_user=sh["impressions"], seed=0,
                        max_impressions=None)  # the CLI's setting: no cap
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    with Stage(info, "write"):
        ds.interactions.to_csv(tmp / "interactions.csv", index=False)
        ds.items.to_csv(tmp / "items.csv", index=True, index_label="item_id")
        ds.users.to_csv(tmp / "users.csv", index=True, index_label="user_id")
    os.replace(tmp, folder)


def write_synthetic(folder: Path, rows: int, sh: dict, seed: int = 0) -> None:
    """A log of the world's columns and shape, written in chunks by pyarrow: every user's
    impressions together, items by Zipf popularity, labels from latent user x item vectors."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv as pacsv

    rng = np.random.default_rng(seed)
    U, I, d = sh["users"], sh["items"], 8
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    genres = np.array(["space", "romance", "horror", "comedy", "nature", "crime", "sports", "cooking"])
    item_genre, user_genre = rng.integers(0, len(genres), I), rng.integers(0, len(genres), U)
    centroids = rng.normal(size=(len(genres), d))
    q = centroids[item_genre] + 0.6 * rng.normal(size=(I, d))
    t = centroids[user_genre] + 0.8 * rng.normal(size=(U, d))
    pop = 1.0 / np.arange(1, I + 1)
    cdf = np.cumsum(pop[rng.permutation(I)] / pop.sum())
    uid = pa.array([f"u{k:06d}" for k in range(U)])
    iid = pa.array([f"i{k:05d}" for k in range(I)])
    pacsv.write_csv(pa.table({"item_id": iid, "genre": pa.array(genres[item_genre]),
                              "price_band": pa.array(np.array(["budget", "standard", "premium"])[rng.integers(0, 3, I)])}),
                    tmp / "items.csv")
    pacsv.write_csv(pa.table({"user_id": uid, "region": pa.array(np.array(["north", "south", "east", "west"])[
        rng.integers(0, 4, U)])}), tmp / "users.csv")
    schema = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("timestamp", pa.int64()),
                        ("click", pa.float64()), ("like", pa.float64()), ("dwell", pa.float64())])
    chunk = 2_000_000
    with pacsv.CSVWriter(tmp / "interactions.csv", schema) as w:
        for lo in range(0, rows, chunk):
            r = np.arange(lo, min(rows, lo + chunk))
            u = (r * U) // rows
            i = np.minimum(np.searchsorted(cdf, rng.random(len(r))), I - 1)
            s = (t[u] * q[i]).sum(1) / math.sqrt(d)
            s = (s - s.mean()) / (s.std() + 1e-9)
            click = (rng.random(len(r)) < 1 / (1 + np.exp(-(1.6 * s - 1.2)))).astype(float)
            like_logit = 1.4 * s + 0.5 * rng.normal(size=len(r)) + 0.2
            like = np.where(click == 1, (rng.random(len(r)) < 1 / (1 + np.exp(-like_logit))).astype(float), np.nan)
            dwell = np.where(click == 1, np.round(np.exp(0.8 + 0.35 * like_logit + 0.25 * rng.normal(size=len(r))), 2),
                             np.nan)
            w.write_table(pa.table({
                "user_id": pc.take(uid, pa.array(u)), "item_id": pc.take(iid, pa.array(i)),
                "timestamp": pa.array(1_700_000_000 + rng.integers(0, 365 * 86400, len(r))),
                "click": pa.array(click), "like": pa.array(like, from_pandas=True),
                "dwell": pa.array(dwell, from_pandas=True)}, schema=schema))
    os.replace(tmp, folder)


def add_parquet(folder: Path) -> None:
    import pyarrow.parquet as pq
    from pyarrow import csv as pacsv
    target = folder / "interactions.parquet"
    if not target.exists():
        table = pacsv.read_csv(folder / "interactions.csv")
        pq.write_table(table, folder.with_name(folder.name + ".parquet.tmp"))
        os.replace(folder.with_name(folder.name + ".parquet.tmp"), target)


def data_for(size, args, info: dict) -> tuple[Path, str]:
    """(folder, source) of a size's files, generated on first use."""
    if size == "ml-latest-small":
        return C.ML_DIR, "ml-latest-small"
    sh = shape(size)
    info["shape"] = sh
    root = Path(args.data_dir)
    if args.source == "world":
        folder = root / f"world-{sh['users']}x{sh['items']}x{sh['impressions']}"
        if not (folder / "interactions.csv").exists():
            try:
                write_world(folder, sh, info)
            except Exception as e:  # the generator's own refusal (its cap) or failure: say which stage
                info["world_error"] = {"stage": "write" if "write_s" in info else "generate",
                                       "error": f"{type(e).__name__}: {e}"}
                print(f"  world: {info['world_error']}", file=sys.stderr, flush=True)
                if args.no_fallback:
                    raise
        if (folder / "interactions.csv").exists():
            add_parquet(folder)
            return folder, "world"
    folder = root / f"synthetic-{size}-{sh['users']}x{sh['items']}"
    if not (folder / "interactions.csv").exists():
        with Stage(info, "synthesise"):
            write_synthetic(folder, size, sh)
    add_parquet(folder)
    return folder, "synthetic"


# -- one size, in its own process ---------------------------------------------------------------------

def measure(size, args) -> dict:
    import numpy as np
    import torch

    from mtrlib.config import TrainConfig
    from mtrlib.data import build_examples, load
    from mtrlib.data.read import file_cap
    from mtrlib.serve.scoring import iter_scores
    from mtrlib.train.loop import prepare, train
    from mtrlib.train.predict import evaluate

    out: dict = {"size": size}
    folder, source = data_for(size, args, out)
    out["source"] = source
    out["file_mb"] = (folder / ("ratings.csv" if source == "ml-latest-small" else "interactions.csv")).stat().st_size / 2**20
    with file_cap("none"):  # the command line's setting: any size
        if source != "ml-latest-small":
            with Stage(out, "load_parquet"):
                ds = load(str(folder / "interactions.parquet"), str(folder / "items.csv"), str(folder / "users.csv"))
            del ds
            with Stage(out, "load"):
                ds = load(str(folder))
        else:
            with Stage(out, "load"):
                ds = C.load_ml()
    out["interactions"] = int(ds.n_interactions)
    if args.negatives > 0:
        with Stage(out, "negatives"):
            ex = build_examples(ds, ["seen=implicit"], negatives=args.negatives, seed=0)
            out["negatives_examples"] = len(ex)
        del ex
    if source == "ml-latest-small":
        cfg = C.ml_config(arch="mmoe", epochs=1, seed=0)
    else:
        cfg = TrainConfig(epochs=1, seed=0, device="cpu")
        cfg.data.source, cfg.data.tasks = "files", list(WORLD_TASKS)
    # gradient-conflict telemetry off at every size: it is a measurement, not training (DDP runs
    # skip it too), and with lazy id-table updates (the default from 20k rows) it fails on the
    # sparse gradients (mtrlib/telemetry.py gramians: reshape of a sparse tensor)
    cfg.grad_telemetry = False
    with Stage(out, "prepare"):
        prep = prepare(cfg, ds)
    out["train_rows"], out["test_rows"] = len(prep.train), len(prep.test)
    out["load_prepare_s"] = out["load_s"] + out["prepare_s"]
    if args.until == "prepare":
        out["peak_rss_mb"] = max(v for k, v in out.items() if k.endswith("_peak_rss_mb"))
        return out
    out["users"], out["items"] = prep.space.users.n, prep.space.items.n
    with Stage(out, "train"):
        res = train(cfg, prep)
    out["samples_per_s"] = res.samples_per_s
    out["epoch_s"] = len(prep.train) / res.samples_per_s if res.samples_per_s else float("nan")
    out["status"] = res.status
    out["test_auc"] = {t: m["auc"] for t, m in res.metrics.items() if "auc" in m}
    with Stage(out, "evaluate"):
        evaluate(res.model, prep.test, prep.tasks)
    out["evaluate_rows_per_s"] = len(prep.test) / out["evaluate_s"]
    test_users = np.unique(prep.test.user.numpy())
    pick = np.random.default_rng(0).choice(test_users, size=min(args.rank_users, len(test_users)), replace=False)
    with Stage(out, "rank"):
        for lo, hi, preds in iter_scores(res.model, np.sort(pick)):
            torch.topk(preds[..., 0], min(100, preds.shape[1]), dim=1)
    out["rank_users"] = int(len(pick))
    out["rank_ms_per_user"] = 1000 * out["rank_s"] / max(1, len(pick))
    out["rank_all_users_s"] = out["rank_ms_per_user"] * out["users"] / 1000
    stage_peaks = [v for k, v in out.items() if k.endswith("_peak_rss_mb")]
    out["peak_rss_mb"] = max(stage_peaks)
    out["load_prepare_s"] = out["load_s"] + out["prepare_s"]
    out["per_row_us"] = {k: 1e6 * out[f"{k}_s"] / out["interactions"] for k in ("load", "prepare", "epoch")}
    return out


# -- the whole run --------------------------------------------------------------------------------------

def targets(rows: dict) -> dict:
    small, big = rows.get("1000000"), rows.get("25000000")
    if not small or not big or "error" in small or "error" in big:
        return {"note": "needs the 1M and 25M sizes"}
    ratio = {k: big["per_row_us"][k] / small["per_row_us"][k] for k in small["per_row_us"]}
    total_small = sum(small["per_row_us"].values())
    total_big = sum(big["per_row_us"].values())
    t = {
        "per_row_cost_ratio_25M_vs_1M": {**ratio, "total": total_big / total_small},
        "per_row_cost_within_1.5x": total_big / total_small <= 1.5,
        "load_prepare_25M_s": big["load_prepare_s"], "load_prepare_25M_within_120s": big["load_prepare_s"] <= 120,
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in rows.values() if "peak_rss_mb" in r),
        "samples_per_s_ratio_25M_vs_1M": big["samples_per_s"] / small["samples_per_s"],
        "source_25M": big["source"],
    }
    t["peak_rss_within_12GB"] = t["peak_rss_mb_max"] <= 12 * 1024
    t["samples_per_s_within_0.8x"] = t["samples_per_s_ratio_25M_vs_1M"] >= 0.8
    return t


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1M,5M,25M,ml-latest-small")
    ap.add_argument("--source", choices=("world", "synthetic"), default="world")
    ap.add_argument("--no-fallback", action="store_true", help="do not measure a synthetic log where the world fails")
    ap.add_argument("--negatives", type=int, default=4, help="sampled negatives per row in the negatives stage (0: skip)")
    ap.add_argument("--rank-users", type=int, default=500)
    ap.add_argument("--data-dir", default=str(DEFAULT_DIR))
    ap.add_argument("--until", choices=("prepare",), help="stop each size after this stage (load + prepare only)")
    ap.add_argument("--out", default="scaling.json", help="file name under bench/out/ for the result")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a child process: measure one size, print its JSON
    args = ap.parse_args(argv)
    if args.one:
        from mtrlib.train.device import cpu_compute
        with cpu_compute(1, flush_denormal=True):
            print(json.dumps(C.clean(measure(parse_size(args.one), args))), flush=True)
        return {}
    result = {"machine": C.machine(), "rows": {}}
    for text in args.sizes.split(","):
        size = parse_size(text)
        key = str(size)
        print(f"size {text}:", file=sys.stderr, flush=True)
        cmd = [sys.executable, __file__, "--one", text, "--source", args.source, "--negatives", str(args.negatives),
               "--rank-users", str(args.rank_users), "--data-dir", args.data_dir] + (["--no-fallback"] if args.no_fallback else []) \
            + (["--until", args.until] if args.until else [])
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        lines = p.stdout.strip().splitlines()
        try:
            row = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            row = {"error": f"the measuring process exited with {p.returncode}", "stdout": p.stdout[-500:]}
        result["rows"][key] = row
        C.save_json(C.OUT / args.out, result)
    result["targets"] = targets(result["rows"]) if not args.until else {"note": f"stopped after {args.until}"}
    result["loadavg_end"] = list(C.loadavg())
    C.save_json(C.OUT / args.out, result)
    print(C.json_line(result))
    return result


if __name__ == "__main__":
    main()
