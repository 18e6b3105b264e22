"""Cold-start items with and without language-model text features: the numbers in
docs/RESULTS-coldstart.md.

    python bench/coldstart.py [--data world,movielens] [--arch mmoe] [--epochs-world 10]
        [--epochs-movielens 5] [--seeds 0,1,2] [--movielens ../shared/data/ml-latest-small]
        [--archs] [--centering] [--out bench/out]

For each dataset: a cold-items split (10% of items held out with all their interactions,
`mtrlib.data.split(method="cold-items")`), then `mtrlib.eval.coldstart.cold_start_report` with eight
variants on that one split and seed:

    id_only       ids + side features               (world: genre, price band, age band, region;
    text_sum      ids + side features + text (sum)   MovieLens: genres, year)
    text_concat   ... + text (concat)
    text_gated    ... + text (gated)
    noside_id     ids only                          (DataConfig.use_features = False)
    noside_text   ids + text (sum), no side features
    noside_concat ids + text (concat)
    noside_gated  ids + text (gated)

Everything else is `TrainConfig()`'s default (MMoE 4 experts [64, 32], towers [32], emb 16,
Adam lr 0.003, batch 1024, fixed weights), device CPU. World tasks: click, like|click,
dwell:reg|click (its suggested ones); MovieLens: watched=implicit (4 sampled negatives),
liked=rating>=4.
`--archs` adds, on the world, ids-only vs ids+text for every architecture; `--centering` adds
the same text variants with the language-model vectors centred on the catalogue mean and
re-normalised (an ablation done here, outside the library). The last line printed is one JSON
object (means over seeds; the per-seed reports go to --out).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtrlib.eval import coldstart  # noqa: E402
from mtrlib.config import ARCHS, TrainConfig  # noqa: E402
from mtrlib.data import load  # noqa: E402
from mtrlib.train.loop import prepare, train  # noqa: E402

DEFAULT_ML = REPO.parent / "shared" / "data" / "ml-latest-small"
VARIANTS = {
    "id_only": {"text_features": False},
    "text_sum": {"text_features": True, "text_combine": "sum"},
    "text_concat": {"text_features": True, "text_combine": "concat"},
    "text_gated": {"text_features": True, "text_combine": "gated"},
    "noside_id": {"text_features": False, "use_features": False},
    "noside_text": {"text_features": True, "text_combine": "sum", "use_features": False},
    "noside_concat": {"text_features": True, "text_combine": "concat", "use_features": False},
    "noside_gated": {"text_features": True, "text_combine": "gated", "use_features": False},
}
KEYS = ("auc", "gauc", "recall@10", "ndcg@10", "warm_auc")


def base_config(data: str, arch: str, epochs: int, seed: int) -> TrainConfig:
    cfg = TrainConfig(device="cpu", epochs=epochs, seed=seed)
    cfg.model.arch = arch
    cfg.data.split = "cold-items"
    if data == "movielens":
        cfg.data.source = "files"
        cfg.data.tasks = ["watched=implicit", "liked=rating>=4"]
    return cfg


def centred_runs(cfg: TrainConfig, ds, names: dict[str, dict]) -> dict:
    """The text variants again, with item vectors centred on the catalogue mean and re-normalised."""
    out = {}
    for name, ov in names.items():
        c = coldstart.variant_config(cfg, ov)
        prep = prepare(c, ds)
        v = prep.space.item_text - prep.space.item_text.mean(0)
        prep.space.item_text = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        t0 = time.perf_counter()
        res = train(c, prep)
        per, _ = coldstart.evaluate_cold(res.model, prep, ks=coldstart.KS, seed=c.seed, warm=res.val_metrics)
        out[name + "_centred"] = per
        print(f"  {name}_centred: {time.perf_counter() - t0:.1f}s", flush=True)
    return out


def summarise(reports: list[dict]) -> dict:
    """{variant: {task: {metric: mean}}} plus '<metric>_sd' over seeds when there are several."""
    out = {}
    for name in [n for n in reports[0] if isinstance(reports[0][n], dict) and n not in
                 ("seconds", "config", "n_ranked_users")]:
        out[name] = {}
        for task, m in reports[0][name].items():
            row = {}
            for k in KEYS + ("rmse", "recall@5", "ndcg@5", "recall@20", "ndcg@20"):
                vals = [r[name][task].get(k) for r in reports if k in r.get(name, {}).get(task, {})]
                vals = [v for v in vals if v is not None and not math.isnan(v)]
                if vals:
                    row[k] = round(float(np.mean(vals)), 4)
                    if len(vals) > 1:
                        row[k + "_sd"] = round(float(np.std(vals, ddof=1)), 4)
            out[name][task] = row
    return out


def table(summary: dict, title: str) -> str:
    lines = [title, f"{'variant':<20} {'task':<8} {'AUC':>6} {'GAUC':>6} {'R@10':>6} {'N@10':>6} {'warm':>6}"]
    for name, tasks in summary.items():
        for task, m in tasks.items():
            if "auc" not in m and "recall@10" not in m:
                lines.append(f"{name:<20} {task:<8} RMSE {m.get('rmse', float('nan')):.3f}")
                continue
            cells = []
            for k in KEYS:
                v = m.get(k)
                cell = "-" if v is None else f"{v:.3f}"
                cells.append(f"{cell:>6}")
            sd = m.get("auc_sd")
            lines.append(f"{name:<20} {task:<8} {' '.join(cells)}" + (f"  (AUC sd {sd:.3f})" if sd else ""))
    return "\n".join(lines)


def run_data(data: str, ds, args) -> dict:
    epochs = args.epochs_world if data == "world" else args.epochs_movielens
    seeds = args.seeds if data == "world" else args.seeds[:1]
    reports = []
    for seed in seeds:
        cfg = base_config(data, args.arch, epochs, seed)
        t0 = time.perf_counter()
        r = coldstart.cold_start_report(cfg, ds, variants=VARIANTS)
        if args.centering:
            r.update(centred_runs(cfg, ds, {k: VARIANTS[k] for k in ("text_sum", "noside_text")}))
        print(f"{data} seed {seed}: {time.perf_counter() - t0:.0f}s {r['seconds']}", flush=True)
        print(coldstart.format_report(r), flush=True)
        reports.append(r)
    summary = summarise(reports)
    print(table(summary, f"\n== {data}: mean over seeds {seeds}, {args.arch}, {epochs} epochs =="), flush=True)
    return {"summary": summary, "reports": reports, "seeds": seeds, "epochs": epochs,
            "n_cold_items": reports[0]["n_cold_items"], "n_test_rows": reports[0]["n_test_rows"],
            "config": reports[0]["config"]}


def run_archs(args) -> dict:
    """World, no side features: ids only vs ids + text (sum) for every architecture."""
    out = {}
    for arch in ARCHS:
        cfg = base_config("world", arch, args.epochs_world, args.seeds[0])
        r = coldstart.cold_start_report(cfg, variants={k: VARIANTS[k] for k in ("noside_id", "noside_text")})
        out[arch] = {v: {t: {k: round(m[k], 4) for k in ("auc", "gauc", "recall@10") if k in m}
                         for t, m in r[v].items()} for v in ("noside_id", "noside_text")}
        print(arch, json.dumps(out[arch]), flush=True)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="world,movielens")
    ap.add_argument("--movielens", default=str(DEFAULT_ML))
    ap.add_argument("--arch", default="mmoe", choices=ARCHS)
    ap.add_argument("--epochs-world", type=int, default=10)
    ap.add_argument("--epochs-movielens", type=int, default=5)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--archs", action="store_true", help="every architecture, world, ids vs ids+text")
    ap.add_argument("--centering", action="store_true", help="ablation: centred text vectors")
    ap.add_argument("--out", default=str(REPO / "bench" / "out"))
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    t0 = time.perf_counter()
    result: dict = {"bench": "coldstart", "arch": args.arch}
    for data in [d.strip() for d in args.data.split(",") if d.strip()]:
        if data == "world":
            ds = None
        elif data == "movielens":
            ds = load(args.movielens)
        else:
            raise SystemExit(f"unknown --data {data!r}: use world and/or movielens")
        result[data] = run_data(data, ds, args)
    if args.archs:
        result["archs"] = run_archs(args)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"coldstart-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    final = {"bench": "coldstart", "arch": args.arch, "seconds": result["seconds"], "full": str(path)}
    for data in ("world", "movielens"):
        if data in result:
            s = result[data]["summary"]
            final[data] = {v: {t: {k: m[k] for k in ("auc", "gauc", "recall@10", "ndcg@10") if k in m}
                               for t, m in s[v].items() if "auc" in m} for v in s if v != "random"}
            final[data]["random"] = {t: {k: m[k] for k in ("recall@10", "ndcg@10") if k in m}
                                     for t, m in s.get("random", {}).items()}
            final[data]["epochs"] = result[data]["epochs"]
            final[data]["seeds"] = result[data]["seeds"]
    if "archs" in result:
        final["archs"] = {a: {v: {t: m["auc"] for t, m in r.items() if "auc" in m} for v, r in d.items()}
                          for a, d in result["archs"].items()}
    print(json.dumps(final, default=float))
    return result


if __name__ == "__main__":
    main()
