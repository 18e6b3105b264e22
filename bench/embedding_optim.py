"""Embedding optimiser study: what dense Adam with weight decay costs on big id tables, and
whether lazy (row-wise) updates change what the model learns.

    python bench/embedding_optim.py [--shapes 610x9742,6502x2362,32508x11809,162541x59047] [--rounds 3]
                                    [--seeds 5] [--big-seeds 3] [--no-quality] [--no-cost]

1. Cost. A training step (MMoE 4x[64,32], towers [32], two binary tasks, batch 1024, ids +
   one categorical feature per side) on synthetic batches, for id tables of each users x items
   shape in --shapes (default: ml-latest-small's, and ml-25m's scaled to 1M, 5M and 25M rows,
   the sizes of bench/scaling.py):
   `dense` (torch.optim.Adam(fused=True), weight decay 1e-4, over every parameter: the
   behaviour before) against `lazy` (mtrlib.train.optim: sparse id-table gradients, SparseAdam on
   the rows of the batch with lazy weight decay, the fused Adam on the rest). Forward,
   backward and optimiser step are timed separately; --rounds rounds, each measuring every
   (size, mode) once in rotating order, medians reported. One CPU thread.
2. Quality. Test AUC per task, dense against lazy (forced with `embedding_updates`), with the
   same seeds: ml-latest-small on the README protocol (MMoE, 8 epochs; --seeds seeds), the
   default built-in world (--seeds seeds), and a world with many users (20,000 users x 2,000
   items, 40 impressions each: 800k rows; --big-seeds seeds), where "auto" picks lazy updates.
   Mean +- 95% CI (mtrlib.eval.stats.mean_ci) and the paired difference lazy - dense with its
   verdict, on the test split and (`val_diff`, what a default is chosen on) on validation.
   `--cases` picks cases by substring of their names.

The last line is one JSON object: {"cost": {"<users>x<items>": {"dense_total_ms", "lazy_total_ms", "speedup", ...}},
"quality": {"<data>": {"<task>": {"dense": [m, ci], "lazy": [m, ci], "diff": [m, ci], "verdict"}}}}.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import _common as C  # noqa: E402  (puts the repo on sys.path)
import torch  # noqa: E402

from mtrlib.config import ModelConfig, TrainConfig  # noqa: E402
from mtrlib.data import WorldConfig  # noqa: E402
from mtrlib.data.tasks import parse_tasks  # noqa: E402
from mtrlib.train.device import cpu_compute  # noqa: E402
from mtrlib.models import build_model  # noqa: E402
from mtrlib.train.optim import training_optimizer  # noqa: E402
from mtrlib.eval.stats import mean_ci, paired_difference, verdict  # noqa: E402
from mtrlib.weighting import make_weighting  # noqa: E402

TASKS = parse_tasks(["click=click", "like=like|click"])
BATCH = 1024


def synthetic_model(n_users: int, n_items: int):
    """MMoE over ids + one categorical feature per side, tables of the given sizes."""
    desc = {"users": {"n": n_users, "n_slots": n_users + 1, "cat": {"region": 6}, "multi": {}, "numeric": 0},
            "items": {"n": n_items, "n_slots": n_items + 1, "cat": {"genre": 13}, "multi": {}, "numeric": 0},
            "text_dim": 0}
    g = torch.Generator().manual_seed(0)
    tables = {"users.slots": torch.arange(1, n_users + 1), "items.slots": torch.arange(1, n_items + 1),
              "users.cat.region": torch.randint(0, 6, (n_users,), generator=g),
              "items.cat.genre": torch.randint(0, 13, (n_items,), generator=g)}
    torch.manual_seed(0)
    return build_model(ModelConfig(arch="mmoe"), desc, tables, TASKS)


def step_times(n_users: int, n_items: int, mode: str, steps: int = 150, warm: int = 20) -> dict:
    """Median forward / backward / step milliseconds of `steps` training steps after `warm`."""
    model = synthetic_model(n_users, n_items)
    cfg = TrainConfig(embedding_updates=mode)
    weighting = make_weighting("fixed", [t.name for t in TASKS], {})
    opt = training_optimizer(cfg, model, weighting, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    u = torch.randint(0, n_users, (steps + warm, BATCH), generator=g)
    i = torch.randint(0, n_items, (steps + warm, BATCH), generator=g)
    y = torch.randint(0, 2, (steps + warm, BATCH, 2), generator=g).float()
    m = torch.ones(BATCH, 2)
    parts = {"forward": [], "backward": [], "step": []}
    for k in range(steps + warm):
        t0 = time.perf_counter()
        losses = model.task_losses(model(u[k], i[k]), y[k], m)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if k >= warm:
            parts["forward"].append(t1 - t0)
            parts["backward"].append(t2 - t1)
            parts["step"].append(t3 - t2)
    out = {k: 1000 * sum(v) / len(v) for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out


def cost(shapes: list[tuple[int, int]], rounds: int) -> dict:
    got: dict = {(s, m): [] for s in shapes for m in ("dense", "lazy")}
    keys = list(got)
    for r in range(rounds):
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            (n_u, n_i), mode = key
            got[key].append(step_times(n_u, n_i, mode))
            print(f"round {r + 1} {n_u:,} users x {n_i:,} items {mode}: {got[key][-1]['total']:.2f} ms/step",
                  file=sys.stderr, flush=True)
    out = {}
    for s in shapes:
        row = {"users": s[0], "items": s[1]}
        for mode in ("dense", "lazy"):
            for part in ("forward", "backward", "step", "total"):
                row[f"{mode}_{part}_ms"] = statistics.median(x[part] for x in got[(s, mode)])
            row[f"{mode}_samples_per_s"] = BATCH / (row[f"{mode}_total_ms"] / 1000)
        row["speedup"] = row["dense_total_ms"] / row["lazy_total_ms"]
        row["rounds"] = rounds
        out[f"{s[0]}x{s[1]}"] = row
    return out


def quality_cases(seeds: int, big_seeds: int) -> list[tuple[str, object, list[int]]]:
    """(name, function seed -> (cfg, dataset or None), seeds)."""
    cases = []
    if C.ml_available():
        ds = C.load_ml()

        def ml(seed):
            return C.ml_config(arch="mmoe", epochs=8, seed=seed), ds
        cases.append(("ml-latest-small", ml, list(range(seeds))))

    def world(seed):
        cfg = TrainConfig(seed=seed, device="cpu")
        cfg.data.world = WorldConfig(seed=seed)
        return cfg, None
    cases.append(("world (1,500 users x 400 items)", world, list(range(seeds))))

    def big(seed):
        cfg = TrainConfig(seed=seed, device="cpu")
        cfg.data.world = WorldConfig(n_users=20000, n_items=2000, impressions_per_user=40, seed=seed)
        return cfg, None
    cases.append(("world (20,000 users x 2,000 items)", big, list(range(big_seeds))))
    return cases


def quality(seeds: int, big_seeds: int, cases: str | None = None) -> dict:
    from mtrlib.train.loop import prepare, train
    out = {}
    for name, make, seed_list in quality_cases(seeds, big_seeds):
        if cases and not any(c.strip() and c.strip() in name for c in cases.split(",")):
            continue
        aucs: dict = {"dense": {}, "lazy": {}}
        val: dict = {"dense": {}, "lazy": {}}
        sps: dict = {"dense": [], "lazy": []}
        for seed in seed_list:
            cfg, ds = make(seed)
            # telemetry off in both modes: it fails on lazy updates' sparse id-table gradients
            # (mtrlib/telemetry.py gramians), and it would cost both alike
            cfg.grad_telemetry = False
            prep = prepare(cfg, ds)
            for mode in ("dense", "lazy"):
                cfg.embedding_updates = mode
                res = train(cfg, prep)
                sps[mode].append(res.samples_per_s)
                for store, metrics in ((aucs, res.metrics), (val, res.val_metrics)):
                    for t, m in metrics.items():
                        if "auc" in m:
                            store[mode].setdefault(t, []).append(m["auc"])
                print(f"{name} seed {seed} {mode}: " + ", ".join(f"{t} {v[-1]:.4f}" for t, v in aucs[mode].items())
                      + f" ({res.samples_per_s:,.0f} samples/s)", file=sys.stderr, flush=True)
        row = {}
        for t in aucs["dense"]:
            d, lz = aucs["dense"][t], aucs["lazy"][t]
            diff = paired_difference(d, lz)
            vdiff = paired_difference(val["dense"][t], val["lazy"][t])
            row[t] = {"dense": mean_ci(d).pair(), "lazy": mean_ci(lz).pair(), "diff": diff.pair(),
                      "verdict": verdict(diff), "val_diff": vdiff.pair(), "val_verdict": verdict(vdiff)}
        row["samples_per_s"] = {m: statistics.median(v) for m, v in sps.items()}
        row["seeds"] = len(seed_list)
        out[name] = row
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="610x9742,6502x2362,32508x11809,162541x59047",
                    help="users x items id-table shapes for the cost study")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--big-seeds", type=int, default=3)
    ap.add_argument("--no-quality", action="store_true")
    ap.add_argument("--no-cost", action="store_true")
    ap.add_argument("--cases", help="quality cases by substring of their names (default: all), e.g. 20,000")
    ap.add_argument("--out", default="embedding_optim.json", help="result file under bench/out/")
    args = ap.parse_args(argv)
    result = {"machine": C.machine()}
    with cpu_compute(1, flush_denormal=True):
        if not args.no_cost:
            shapes = [tuple(int(v) for v in x.split("x")) for x in args.shapes.split(",")]
            result["cost"] = cost(shapes, args.rounds)
    if not args.no_quality:
        result["quality"] = quality(args.seeds, args.big_seeds, args.cases)
    result["loadavg_end"] = list(C.loadavg())
    C.save_json(C.OUT / args.out, result)
    print(C.json_line(result))
    return result


if __name__ == "__main__":
    main()
