"""Quality: architectures x task-weighting methods, per-task test AUC (mean +- std over seeds),
on ml-latest-small and on the synthetic world at several task correlations, beside
torch-rechub 0.9.0's Shared-Bottom / MMoE / PLE on the same ml-latest-small split.

    python bench/quality.py                # the full grid (long: see --budget-min), resumable
    python bench/quality.py --quick        # a small subset, a few minutes
    python bench/quality.py --report-only  # print the tables from what is already recorded

ml-latest-small (../shared/data/ml-latest-small): the models issue's protocol
(watched=implicit, liked=rating>=4 over the whole space, 4 sampled negatives per rating,
per-user temporal split 70/10/20), genres as item features, default settings otherwise
(TrainConfig(): emb 16, shared/experts [64, 32], towers [32], Adam lr 0.01, wd 1e-4, batch
1024), `--epochs-ml` epochs (5). Also: ours with ids only (no genres) for Shared-Bottom /
MMoE / PLE, like for like with torch-rechub, which trains on ids only (its SparseFeatures, its
MTLTrainer, Adam lr 1e-3 / weight decay 1e-4 as in its multi-task examples, same widths,
`--epochs-ml` epochs, test AUC by its own evaluate).

World: the built-in synthetic world (1,500 users x 400 items, tasks click, like|click,
dwell:reg|click) at rho in `--rhos`, world seed = training seed, default settings (8 epochs).
torch-rechub is not run on the world: its trainer has no label mask, so it cannot train the
conditional tasks (like|click, dwell|click) as defined.

Every run is recorded as it finishes in `--out` (default bench/out/quality-full.json or
quality-quick.json); a second invocation skips what is already there, so the grid can be run
in pieces. `--budget-min M` stops starting new groups after M minutes. The last line printed
is one JSON object with the summary (the rho effect, ml means).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402

from mtrlib.config import ARCHS, WEIGHTINGS, TrainConfig  # noqa: E402
from mtrlib.eval.pointwise import auc as auc_fn  # noqa: E402
from mtrlib.train.loop import prepare, train  # noqa: E402

RECHUB_ARCHS = ("shared-bottom", "mmoe", "ple")
RECHUB_REF = {"shared-bottom": (0.838, 0.846), "mmoe": (0.830, 0.842), "ple": (0.834, 0.841)}  # the models issue
POP_REF = (0.786, 0.795)
ML_T = ("watched", "liked")
WORLD_T = ("click", "like")


def key(*parts) -> str:
    return "|".join(str(p) for p in parts)


def metrics_of(res) -> dict:
    out = {}
    for t, ms in res.metrics.items():
        out[t] = {k: float(v) for k, v in ms.items() if k in ("auc", "logloss", "rmse")}
    return out


def run_ours(cfg: TrainConfig, prep) -> dict:
    t0 = time.perf_counter()
    res = train(cfg, prep)
    return {"status": res.status, "metrics": metrics_of(res), "seconds": time.perf_counter() - t0,
            "samples_per_s": res.samples_per_s,
            "baseline": {t: {k: float(v) for k, v in ms.items() if k in ("auc", "rmse")} for t, ms in res.baseline.items()}}


def run_rechub(kind: str, prep, epochs: int, seed: int, lr: float, wd: float) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    m = prep.space.describe()
    model = C.rechub_model(kind, m["users"]["n"], m["items"]["n"], 16, len(prep.tasks))
    tr, va, te = C.rechub_loaders(prep, 1024)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d, C.quiet():
        trainer = C.rechub_trainer(model, len(prep.tasks), lr, wd, epochs, d)
        trainer.fit(tr, va)
        model.eval()
        preds, ys = [], []
        with torch.no_grad():
            for x, y in te:
                preds.append(model(x).numpy())
                ys.append(y.numpy())
    P, Y = np.concatenate(preds), np.concatenate(ys)
    names = prep.task_names
    return {"status": "finished", "seconds": time.perf_counter() - t0,
            "metrics": {t: {"auc": float(auc_fn(Y[:, k], P[:, k]))} for k, t in enumerate(names)}}


def groups(args) -> list[dict]:
    """Work in priority order: each group shares one prepared dataset."""
    out = []
    ml_seeds, w_seeds = args.seeds_ml, args.seeds_world
    if "ml" in args.data and C.ml_available():
        out.append({"data": "ml", "seed": ml_seeds[0]})
    if "world" in args.data:
        for s in w_seeds:
            for rho in args.rhos:
                out.append({"data": "world", "rho": rho, "seed": s})
    if "ml" in args.data and C.ml_available():
        out += [{"data": "ml", "seed": s} for s in ml_seeds[1:]]
    return out


def do_group(g: dict, args, results: dict, path: Path, t_start: float) -> None:
    seed = g["seed"]
    todo = []
    if g["data"] == "ml":
        for a in args.archs:
            for w in args.weightings:
                todo.append(("ours", a, w))
        if not args.no_ids_only:
            todo += [("ours-ids", a, "fixed") for a in RECHUB_ARCHS if a in args.archs]
        if not args.no_rechub and C.rechub_version():
            todo += [("rechub", a, "fixed") for a in args.rechub_archs]
        prefix = ("ml", "-", seed)
    else:
        todo = [("ours", a, w) for a in args.archs for w in args.weightings]
        prefix = ("world", g["rho"], seed)
    todo = [t for t in todo if key(*prefix, *t) not in results]
    if not todo:
        return
    tp = time.perf_counter()
    if g["data"] == "ml":
        ds = C.load_ml()
        base = C.ml_config("mmoe", True, args.epochs_ml, seed)
        prep = prepare(base, ds)
        prep_ids = None
        if any(t[0] in ("ours-ids", "rechub") for t in todo):
            base_ids = C.ml_config("mmoe", False, args.epochs_ml, seed)
            prep_ids = prepare(base_ids, ds)
    else:
        base = TrainConfig(seed=seed, device="cpu")
        base.data.world.correlation = g["rho"]
        base.data.world.seed = seed
        if args.epochs_world:
            base.epochs = args.epochs_world
        prep = prepare(base)
    base.cpu_threads = args.threads
    print(f"[{time.time() - t_start:6.0f}s] {'/'.join(map(str, prefix))}: prepared in {time.perf_counter() - tp:.1f}s, "
          f"{len(todo)} runs", file=sys.stderr, flush=True)
    for who, arch, w in todo:
        k = key(*prefix, who, arch, w)
        if who == "rechub":
            r = run_rechub(arch, prep_ids, args.epochs_ml, seed, args.rechub_lr, args.rechub_wd)
        else:
            cfg = TrainConfig.from_dict(base.to_dict())
            cfg.model.arch = arch
            cfg.weighting = w
            if who == "ours-ids":
                cfg.data.use_features = False
            r = run_ours(cfg, prep_ids if who == "ours-ids" else prep)
        r.update({"data": g["data"], "rho": g.get("rho"), "seed": seed, "who": who, "arch": arch, "weighting": w})
        results[k] = r
        C.save_json(path, {"results": results})
        aucs = " ".join(f"{t}={v['auc']:.4f}" for t, v in r["metrics"].items() if "auc" in v)
        print(f"[{time.time() - t_start:6.0f}s]   {who:8s} {arch:13s} {w:11s} {aucs}  ({r['seconds']:.1f}s)",
              file=sys.stderr, flush=True)


# -- report ---------------------------------------------------------------------------------------------------

def _cell(vals) -> str:
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.4f}"
    return f"{np.mean(vals):.4f} ± {np.std(vals, ddof=1):.4f}"


def _aucs(rs, t):
    return [r["metrics"].get(t, {}).get("auc") for r in rs]


def per_seed(world: list, w: str, rho: float, arch: str) -> dict:
    """{seed: AUC of arch}, mean over click and like (and over weightings for w = 'all')."""
    d: dict = {}
    for r in world:
        if r["rho"] == rho and r["arch"] == arch and (w == "all" or r["weighting"] == w):
            d.setdefault(r["seed"], []).append(np.mean([r["metrics"][t]["auc"] for t in WORLD_T]))
    return {s: float(np.mean(v)) for s, v in d.items()}


def seed_gaps(world: list, w: str, rho: float, name: str) -> dict:
    """{seed: AUC(name) - AUC(shared-bottom)}, mean over click and like (and over weightings for 'all')."""
    sb, other = per_seed(world, w, rho, "shared-bottom"), per_seed(world, w, rho, name)
    return {s: other[s] - sb[s] for s in sorted(set(sb) & set(other))}


def report(results: dict) -> dict:
    R = list(results.values())
    summary: dict = {}
    ml = [r for r in R if r["data"] == "ml"]
    if ml:
        seeds = sorted({r["seed"] for r in ml})
        print(f"\n## ml-latest-small: test AUC, mean ± std over seeds {seeds} (std only where n > 1)\n")
        print("| model | weighting | features | n | watched | liked |")
        print("|---|---|---|---|---|---|")
        ml_sum = {}
        for who, feat in (("ours", "ids + genres"), ("ours-ids", "ids only"), ("rechub", "ids only")):
            for a in ARCHS:
                for w in WEIGHTINGS:
                    rs = [r for r in ml if r["who"] == who and r["arch"] == a and r["weighting"] == w]
                    if not rs:
                        continue
                    name = ("torch-rechub " if who == "rechub" else "") + a
                    print(f"| {name} | {w if who != 'rechub' else 'equal (its default)'} | {feat} | {len(rs)} | "
                          f"{_cell(_aucs(rs, 'watched'))} | {_cell(_aucs(rs, 'liked'))} |")
                    ml_sum[f"{who}/{a}/{w}"] = [float(np.mean([v for v in _aucs(rs, t) if v is not None])) for t in ML_T]
        pops = list({r["seed"]: r["baseline"] for r in ml if r.get("baseline") and r["who"] == "ours"}.values())
        if pops:
            print(f"| popularity | - | - | {len(pops)} | {_cell([p['watched']['auc'] for p in pops])} | "
                  f"{_cell([p['liked']['auc'] for p in pops])} |")
        for a, (w_, l_) in RECHUB_REF.items():
            print(f"| torch-rechub {a} (issue's reference) | - | ids only | - | {w_:.3f} | {l_:.3f} |")
        print(f"| popularity (issue's reference) | - | - | - | {POP_REF[0]:.3f} | {POP_REF[1]:.3f} |")
        summary["ml"] = ml_sum
    world = [r for r in R if r["data"] == "world"]
    if world:
        rhos = sorted({r["rho"] for r in world}, reverse=True)
        seeds = sorted({r["seed"] for r in world})
        print(f"\n## Synthetic world: test AUC, mean ± std over seeds {seeds}\n")
        print("| rho | model | weighting | n | click | like (given click) |")
        print("|---|---|---|---|---|---|")
        for rho in rhos:
            for a in ARCHS:
                for w in WEIGHTINGS:
                    rs = [r for r in world if r["rho"] == rho and r["arch"] == a and r["weighting"] == w]
                    if rs:
                        print(f"| {rho:+.1f} | {a} | {w} | {len(rs)} | {_cell(_aucs(rs, 'click'))} | "
                              f"{_cell(_aucs(rs, 'like'))} |")
        # the MMoE paper's effect: gap (MMoE/PLE - Shared-Bottom), mean over click and like, paired by seed
        print("\n## Gap to Shared-Bottom (mean AUC over click and like, paired by seed; ± standard error)\n")
        print("| rho | weighting | SB | MMoE | PLE | single | MMoE - SB | PLE - SB | n seeds |")
        print("|---|---|---|---|---|---|---|---|---|")
        gaps: dict = {}
        for w in list(WEIGHTINGS) + ["all"]:
            for rho in rhos:
                sb, mm, pl, si = (per_seed(world, w, rho, a) for a in ("shared-bottom", "mmoe", "ple", "single"))
                row = {}
                for name, other in (("mmoe", mm), ("ple", pl)):
                    common = sorted(set(sb) & set(other))
                    if common:
                        d = np.array([other[s] - sb[s] for s in common])
                        se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
                        row[name] = (float(d.mean()), se, len(d))
                if not row:
                    continue
                gaps.setdefault(w, {})[rho] = row

                def m(x):
                    return f"{np.mean(list(x.values())):.4f}" if x else "-"

                def g(n):
                    return f"{row[n][0]:+.4f} ± {row[n][1]:.4f}" if n in row else "-"

                n_s = max(v[2] for v in row.values())
                print(f"| {rho:+.1f} | {w} | {m(sb)} | {m(mm)} | {m(pl)} | {m(si)} | {g('mmoe')} | {g('ple')} | {n_s} |")
        effect = {}
        for w, by_rho in gaps.items():
            if len(by_rho) < 2:
                continue
            hi, lo = max(by_rho), min(by_rho)
            for name in ("mmoe", "ple"):
                if not (name in by_rho[hi] and name in by_rho[lo]):
                    continue
                # paired by seed: growth_s = gap(lo rho, seed s) - gap(hi rho, seed s)
                g_lo, g_hi = seed_gaps(world, w, lo, name), seed_gaps(world, w, hi, name)
                common = sorted(set(g_lo) & set(g_hi))
                d = np.array([g_lo[s_] - g_hi[s_] for s_ in common])
                grow = float(d.mean())
                se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("nan")
                rs = sorted(by_rho)
                slope = float(np.polyfit(rs, [by_rho[r][name][0] for r in rs], 1)[0]) \
                    if all(name in by_rho[r] for r in rs) else float("nan")
                effect[f"{w}/{name}"] = {"gap_hi_rho": by_rho[hi][name][0], "gap_lo_rho": by_rho[lo][name][0],
                                         "growth": grow, "se": se, "n_seeds": len(d), "slope_per_rho": slope,
                                         "significant": bool(se == se and grow > 2 * se)}
        if effect:
            print("\n## Does the gap grow as rho drops? (growth = gap at lowest rho - gap at highest rho, paired by "
                  "seed; ± standard error over seeds; significant = growth > 2 SE)\n")
            for k, e in effect.items():
                print(f"- {k}: gap {e['gap_hi_rho']:+.4f} -> {e['gap_lo_rho']:+.4f}, growth {e['growth']:+.4f} "
                      f"± {e['se']:.4f}, slope {e['slope_per_rho']:+.4f} per unit rho -> "
                      f"{'yes' if e['significant'] else 'not significant'}")
        summary["world_gaps"] = {w: {str(r): {n: v[0] for n, v in row.items()} for r, row in br.items()}
                                 for w, br in gaps.items()}
        summary["rho_effect"] = effect
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small subset (2 archs x 2 weightings, few epochs)")
    ap.add_argument("--data", default="ml,world")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--weightings", default=",".join(WEIGHTINGS))
    ap.add_argument("--rechub-archs", default=",".join(RECHUB_ARCHS))
    ap.add_argument("--rhos", default="0.9,0.5,0,-0.5")
    ap.add_argument("--seeds-ml", default="0,1,2")
    ap.add_argument("--seeds-world", default="0,1,2")
    ap.add_argument("--epochs-ml", type=int, default=5)
    ap.add_argument("--epochs-world", type=int, default=None, help="default: TrainConfig's (8)")
    ap.add_argument("--rechub-lr", type=float, default=1e-3)
    ap.add_argument("--rechub-wd", type=float, default=1e-4)
    ap.add_argument("--no-rechub", action="store_true")
    ap.add_argument("--no-ids-only", action="store_true")
    ap.add_argument("--threads", type=int, default=1, help="intra-op CPU threads (ours: cpu_threads; rechub: torch)")
    ap.add_argument("--budget-min", type=float, default=None, help="start no new group after this many minutes")
    ap.add_argument("--out", default=None)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.archs, args.weightings, args.rechub_archs = "shared-bottom,mmoe", "fixed,uncertainty", "mmoe"
        args.rhos, args.seeds_ml, args.seeds_world = "0.9,-0.5", "0", "0"
        args.epochs_ml, args.epochs_world = 1, 3
    args.archs = [a for a in args.archs.split(",") if a]
    args.weightings = [w for w in args.weightings.split(",") if w]
    args.rechub_archs = [a for a in args.rechub_archs.split(",") if a]
    args.rhos = [float(r) for r in args.rhos.split(",")]
    args.seeds_ml = [int(s) for s in args.seeds_ml.split(",")]
    args.seeds_world = [int(s) for s in args.seeds_world.split(",")]
    args.data = args.data.split(",")
    path = Path(args.out) if args.out else C.OUT / f"quality-{'quick' if args.quick else 'full'}.json"
    results = json.loads(path.read_text())["results"] if path.exists() else {}
    torch.set_num_threads(args.threads)
    t_start = time.time()
    info = C.machine()
    if not args.report_only:
        print(f"recording to {path} ({len(results)} runs already there); load {info['loadavg_start']}",
              file=sys.stderr, flush=True)
        if "ml" in args.data and not C.ml_available():
            print(f"ml-latest-small not found at {C.ML_DIR}: skipping it", file=sys.stderr)
        for g in groups(args):
            if args.budget_min is not None and time.time() - t_start > 60 * args.budget_min:
                print(f"budget of {args.budget_min} min spent: stopping (run again to continue)", file=sys.stderr)
                break
            do_group(g, args, results, path, t_start)
    summary = report(results)
    summary.update({"runs": len(results), "file": str(path), "machine": info, "threads": args.threads,
                    "loadavg_end": [round(x, 2) for x in C.loadavg()], "seconds": round(time.time() - t_start, 1)})
    print(C.json_line(summary))


if __name__ == "__main__":
    main()
