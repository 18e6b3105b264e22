"""Gradient-level multi-task methods and the gradient-conflict telemetry (issue 16): quality,
cost, and the teaching check.

    python bench/gradient_methods.py [--part quality,cost,teaching] [--seeds 5] [--ml-seeds 3]
                                     [--repeats 3] [--methods a,b] [--world key=value ...]
                                     [--settings rho=-0.5,rho=0.9,ml] [--cached-only]

Quality: every weighting method, old and new, with its documented defaults (the same settings
for every method, no per-method tuning), MMoE (the default architecture) on
- the world's correlation lesson at rho = -0.5 and rho = 0.9: the lesson's world of
  bench/world_lessons.py (`LESSON`: 300 users who each see 200 of the 400 items, a like asked
  on every impression; world seed = the run's seed), its two binary tasks click=click and
  like=like, the default training settings (8 epochs);
- ml-latest-small with the README protocol (bench/_common.ml_config: watched=implicit,
  liked=rating>=4, 4 negatives, per-user temporal split 70/10/20, 5 epochs);
per-task test AUC and the last epoch's gradient cosine (all shared parameters and per group),
mean +- 95% t-interval over the seeds, and each method's paired difference (by seed) to fixed
weights and to uncertainty weighting. Runs are cached in bench/out/gradient_methods_runs.json:
a rerun resumes. Each cached run carries a fingerprint of its configuration; a run whose
configuration changed since is trained again, never reused. (A change in the code, e.g. in how
the world is generated, is not in the fingerprint: move the cache aside after one.)
`--settings` picks the quality settings by substring (`rho=-0.5`, `rho=0.9`, `ml`; the cost
part measures ml-latest-small only when an ml setting is picked); `--cached-only` trains
nothing and summarises the cache (a cell with fewer runs than seeds is left out).

Cost: training throughput relative to fixed weights, for every method (gradient methods on
the shared parameters and on the shared representation) and for the telemetry alone (fixed
weights with and without it), on the default world (its three default tasks) and on
ml-latest-small (one epoch each). Measured as training CPU time of the one training thread
(validation excluded: per epoch, from its start to its last step event), which the other
processes on this shared machine disturb far less than wall time; rounds interleaved, medians.

`--cost-lesson` measures the cost on the correlation lesson's world (click, like) instead;
`--methods fixed` leaves only the telemetry's own cost.

Teaching: with fixed weights, the mean click~like cosine on the shared parameters at rho =
-0.5 minus at rho = 0.9, paired by seed, with its 95% CI; and per parameter group, where the
conflict is largest (embeddings vs experts).

`--world key=value` sets a WorldConfig field for the lesson worlds (e.g. an option that
observes both tasks on every impression, once the world has one). The last line printed is one
JSON object: {"quality": ..., "cost": ..., "teaching": ...}.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from mtrlib.config import TrainConfig  # noqa: E402
from mtrlib.eval.stats import mean_ci, paired_difference, verdict  # noqa: E402
from mtrlib.train.telemetry import summary as grad_summary  # noqa: E402
from mtrlib.train.loop import prepare, train  # noqa: E402
from mtrlib.weighting import WEIGHTINGS  # noqa: E402
from world_lessons import LESSON, TASKS as LESSON_TASKS  # noqa: E402  (the correlation lesson's world)

CACHE = C.OUT / "gradient_methods_runs.json"
RHOS = (-0.5, 0.9)
ML = "ml-latest-small"


def world_config(rho: float, seed: int, overrides: dict, lesson: bool = True) -> TrainConfig:
    """The correlation lesson's world and tasks (lesson=True), else the default world and its
    suggested tasks."""
    cfg = TrainConfig(seed=seed)
    for k, v in {**(LESSON if lesson else {}), "correlation": rho, "seed": seed, **overrides}.items():
        setattr(cfg.data.world, k, v)
    if lesson:
        cfg.data.tasks = list(LESSON_TASKS)
    return cfg


def settings(args) -> dict[str, callable]:
    """setting name -> (seed -> base TrainConfig), the ones --settings picks."""
    out = {f"world rho={rho:g}": (lambda seed, rho=rho: world_config(rho, seed, args.world)) for rho in RHOS}
    if C.ml_available():
        out[ML] = lambda seed: C.ml_config("mmoe", seed=seed)
    return {k: v for k, v in out.items() if any(p in k for p in args.settings)}


def _fingerprint(base: TrainConfig, method: str) -> str:
    cfg = TrainConfig.from_dict(base.to_dict())
    cfg.weighting = method
    return hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_cache(args) -> dict:
    """The cached runs whose configuration is still the one this run would train."""
    try:
        cache = json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return {}
    makers = {**settings(argparse.Namespace(**{**vars(args), "settings": [""]}))}
    keep = {}
    for key, run in cache.items():
        name, m, seed = key.split("|")
        if name in makers and run.get("fingerprint") == _fingerprint(makers[name](int(seed)), m):
            keep[key] = run
    return keep


def run_one(base: TrainConfig, method: str, prep) -> dict:
    cfg = TrainConfig.from_dict(base.to_dict())
    cfg.weighting = method
    res = train(cfg, prep)
    return {"fingerprint": _fingerprint(base, method), "status": res.status, "auc": {t: m.get("auc") for t, m in res.metrics.items()}, "grad": res.grad,
            "grad_all": grad_summary(res.history.steps, "all"), "grad_first": grad_summary(res.history.steps, "first"),
            "samples_per_s": res.samples_per_s, "elapsed": res.elapsed}


def quality(args, methods) -> dict:
    cache = _load_cache(args)
    t0 = time.time()
    for name, make in ({} if args.cached_only else settings(args)).items():
        seeds = range(args.ml_seeds if name.startswith("ml") else args.seeds)
        for seed in seeds:
            todo = [m for m in methods if f"{name}|{m}|{seed}" not in cache]
            if not todo:
                continue
            base = make(seed)
            ds = C.load_ml() if name.startswith("ml") else None
            prep = prepare(base, ds)
            for m in todo:
                run = run_one(base, m, prep)
                full = {**_load_raw(), f"{name}|{m}|{seed}": run}  # keep what other settings cached
                C.save_json(CACHE, full)
                cache[f"{name}|{m}|{seed}"] = run
                print(f"{name} seed {seed} {m}: {cache[f'{name}|{m}|{seed}']['auc']} ({time.time() - t0:.0f}s)",
                      file=sys.stderr, flush=True)
    return summarise(cache, methods, args)


def _load_raw() -> dict:
    try:
        return json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return {}


def _runs(cache, name, method, n):
    return [cache.get(f"{name}|{method}|{s}") for s in range(n)]


def summarise(cache: dict, methods, args) -> dict:
    out = {}
    for name in settings(args):
        n = args.ml_seeds if name.startswith("ml") else args.seeds
        refs = {r: _runs(cache, name, r, n) for r in ("fixed", "uncertainty")}
        table = {}
        for m in methods:
            runs = _runs(cache, name, m, n)
            if not runs or any(r is None for r in runs):
                continue
            tasks = list(runs[0]["auc"])
            pair = "~".join(tasks[:2])
            row = {t: mean_ci([r["auc"][t] for r in runs]).pair() for t in tasks}
            row["cos"] = mean_ci([r["grad"]["cos"].get(pair) for r in runs]).pair()
            row["conflict_share"] = mean_ci([r["grad"]["conflict_share"].get(pair) for r in runs]).pair()
            row["cos_by_group"] = {g: mean_ci([r["grad"]["by_group"].get(g, {}).get("cos", {}).get(pair)
                                               for r in runs]).pair() for g in runs[0]["grad"]["by_group"]}
            row["n"] = len(runs)
            for rname, ref in refs.items():
                if m != rname and ref and all(r is not None for r in ref):
                    row[f"vs_{rname}"] = {}
                    for t in tasks:
                        d = paired_difference([r["auc"][t] for r in ref], [r["auc"][t] for r in runs])
                        row[f"vs_{rname}"][t] = {"diff": d.pair(), "verdict": verdict(d)}
            table[m] = row
        out[name] = table
    return out


NOT_TASKS = ("cos", "conflict_share", "cos_by_group", "vs_fixed", "vs_uncertainty", "n")


def print_quality(q: dict) -> None:
    for name, table in q.items():
        if not table:
            continue
        tasks = [k for k in next(iter(table.values())) if k not in NOT_TASKS]
        groups = list(next(iter(table.values()))["cos_by_group"])
        print(f"\n### {name}: test AUC (mean ± 95% CI over seeds; differences paired by seed)\n")
        head = ["n"] + [f"{t} AUC" for t in tasks] + [f"{t} vs fixed" for t in tasks] + \
               [f"{t} vs uncertainty" for t in tasks]
        print("| method | " + " | ".join(head) + " |")
        print("|---|" + "---|" * len(head))
        for m, row in table.items():
            cells = [str(row["n"])] + [_pm(row[t]) for t in tasks]
            for ref in ("vs_fixed", "vs_uncertainty"):
                vs = row.get(ref)
                cells += [f"{vs[t]['diff'][0]:+.4f} ± {vs[t]['diff'][1]:.4f} ({vs[t]['verdict']})" if vs else "–"
                          for t in tasks]
            print(f"| {m} | " + " | ".join(cells) + " |")
        print(f"\n### {name}: gradient cosine {'~'.join(tasks[:2])}, last epoch (mean ± 95% CI over seeds)\n")
        head = ["cosine (shared)"] + [f"cosine ({g})" for g in groups] + ["share below 0"]
        print("| method | " + " | ".join(head) + " |")
        print("|---|" + "---|" * len(head))
        for m, row in table.items():
            cells = [_pm(row["cos"], 3)] + [_pm(row["cos_by_group"][g], 3) for g in groups]
            cells.append(_pm(row["conflict_share"], 2))
            print(f"| {m} | " + " | ".join(cells) + " |")


def _pm(pair, digits: int = 4) -> str:
    m, ci = pair
    if m is None or m != m:
        return "–"
    return f"{m:.{digits}f} ± {ci:.{digits}f}" if ci == ci else f"{m:.{digits}f}"


# -- cost ---------------------------------------------------------------------------------------------------

class TrainCPU:
    """Training CPU seconds of the calling thread, per epoch from its start to its last step event."""

    def __init__(self):
        self.total, self.t_start, self.t_last = 0.0, None, None

    def __call__(self, e: dict) -> None:
        now = time.thread_time()
        t = e.get("type")
        if t == "start":
            self.t_start = now
        elif t == "step":
            self.t_last = now
        elif t == "epoch" and self.t_start is not None and self.t_last is not None:
            self.total += self.t_last - self.t_start
            self.t_start = now


def cost(args, methods) -> dict:
    setups = {"world (3 tasks)": (world_config(0.5, 0, {}, lesson=False), None, 2)}
    if args.cost_lesson:  # the correlation lesson's world and its two tasks instead (rho 0.9)
        setups = {"lesson world (2 tasks)": (world_config(0.9, 0, args.world), None, 2)}
    if C.ml_available() and any(p in ML for p in args.settings):
        setups["ml-latest-small (2 tasks)"] = (C.ml_config("mmoe", seed=0, epochs=1), C.load_ml(), 1)
    out = {}
    for name, (base, ds, epochs) in setups.items():
        base.epochs = epochs
        prep = prepare(base, ds)
        variants = [("fixed, no telemetry", "fixed", "params", False)]
        for m in methods:
            cls = WEIGHTINGS[m]
            variants.append((m, m, "params", True))
            if cls.needs_task_gradients:
                variants.append((f"{m} (rep)", m, "rep", True))
        times = {v[0]: [] for v in variants}
        samples = {}
        for r in range(args.repeats):
            order = variants[r % len(variants):] + variants[:r % len(variants)]  # rotate: load hits all alike
            for label, m, space, tel in order:
                cfg = TrainConfig.from_dict(base.to_dict())
                cfg.weighting, cfg.grad_space, cfg.grad_telemetry = m, space, tel
                clock = TrainCPU()
                res = train(cfg, prep, callback=clock)
                times[label].append(clock.total)
                samples[label] = res.history.steps[-1]["samples"] if res.history.steps else 0
            print(f"cost {name}: round {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
        pairs = []  # the telemetry's own cost: more rounds of just the two fixed-weight variants, paired
        for r in range(args.telemetry_repeats):
            got = {}
            for tel in ((False, True) if r % 2 else (True, False)):
                cfg = TrainConfig.from_dict(base.to_dict())
                cfg.grad_telemetry = tel
                clock = TrainCPU()
                train(cfg, prep, callback=clock)
                got[tel] = clock.total
            times["fixed"].append(got[True])
            times["fixed, no telemetry"].append(got[False])
            pairs.append(got[False] / got[True])
        ref = statistics.median(times["fixed"])
        bare = statistics.median(times["fixed, no telemetry"])
        rows = {}
        for label, ts in times.items():
            med = statistics.median(ts)
            rows[label] = {"cpu_s": med, "samples_per_cpu_s": samples[label] / med,
                           "vs_fixed": ref / med, "vs_fixed_no_telemetry": bare / med}
        paired = statistics.median(pairs) if pairs else bare / ref
        rows["telemetry alone"] = {"vs_fixed": paired, "overhead": 1 / paired - 1, "pairs": pairs,
                                   "unpaired_vs_fixed": bare / ref}
        out[name] = rows
    return out


def print_cost(c: dict) -> None:
    for name, rows in c.items():
        print(f"\n### Cost, {name}: training throughput relative to fixed weights (median of the rounds)\n")
        print("| method | samples per training CPU-second | relative to fixed (with telemetry) | relative to fixed without telemetry |")
        print("|---|---|---|---|")
        for label, r in rows.items():
            if label == "telemetry alone":
                continue
            print(f"| {label} | {r['samples_per_cpu_s']:,.0f} | {r['vs_fixed']:.2f} | {r['vs_fixed_no_telemetry']:.2f} |")
        t = rows["telemetry alone"]
        print(f"\nTelemetry alone (fixed weights, log_every 10, median of {len(t['pairs'])} paired rounds): throughput "
              f"x{t['vs_fixed']:.3f}, i.e. {100 * t['overhead']:.1f}% more training time (target <= 10%); "
              f"pairs {', '.join(f'{x:.3f}' for x in t['pairs'])}.")


# -- teaching ---------------------------------------------------------------------------------------------

WINDOWS = {"grad_all": "whole run", "grad": "last epoch", "grad_first": "first epoch"}


def teaching(args) -> dict:
    """Fixed weights: click~like cosine at rho -0.5 minus at rho 0.9, paired by seed, over the
    whole run's measurements (the check), and over the last and the first epoch."""
    cache = _load_cache(args)
    names = [f"world rho={rho:g}" for rho in RHOS]
    runs = {n: _runs(cache, n, "fixed", args.seeds) for n in names}
    if any(r is None for rs in runs.values() for r in rs):
        return {"error": "run --part quality first (it trains the fixed-weight world runs)"}
    lo, hi = names  # rho = -0.5, rho = 0.9
    groups = list(runs[lo][0]["grad"]["by_group"])
    out = {}
    for key, window in WINDOWS.items():
        def cos(n, group=None):
            g = [r[key] if group is None else r[key]["by_group"].get(group, {}) for r in runs[n]]
            return [x.get("cos", {}).get("click~like") for x in g]

        diff = paired_difference(cos(hi), cos(lo))  # (rho -0.5) - (rho 0.9)
        w = {"cos": {n: mean_ci(cos(n)).pair() for n in names}, "difference": diff.pair(),
             "holds": bool(diff.high < 0),
             "by_group": {g: {n: mean_ci(cos(n, g)).pair() for n in names} for g in groups},
             "group_difference": {g: paired_difference(cos(hi, g), cos(lo, g)).pair() for g in groups}}
        if len(groups) >= 2:
            a, b = groups[:2]
            w["largest_conflict"] = {n: paired_difference(cos(n, b), cos(n, a)).pair() for n in names}
            w["largest_conflict_note"] = f"{a} minus {b} (negative: more conflict in the {a})"
        out[window] = w
    out["holds"] = out["whole run"]["holds"]
    return out


def print_teaching(t: dict) -> None:
    if "error" in t:
        print("\nTeaching check: " + t["error"])
        return
    for window in WINDOWS.values():
        w = t[window]
        print(f"\n### Teaching check ({window}): click~like cosine on the shared parameters, fixed weights, MMoE\n")
        print("| | " + " | ".join(w["cos"]) + " | (rho -0.5) - (rho 0.9), paired |")
        print("|---|" + "---|" * (len(w["cos"]) + 1))
        print("| all shared parameters | " + " | ".join(_pm(v, 3) for v in w["cos"].values())
              + f" | {_pm(w['difference'], 3)} |")
        for g, by in w["by_group"].items():
            print(f"| {g} | " + " | ".join(_pm(v, 3) for v in by.values()) + f" | {_pm(w['group_difference'][g], 3)} |")
        print(f"\nLower at rho = -0.5, the CI of the difference below 0: {'yes' if w['holds'] else 'no'}.")
        if "largest_conflict" in w:
            print(f"Where the conflict is largest ({w['largest_conflict_note']}): " +
                  ", ".join(f"{n}: {_pm(v, 3)}" for n, v in w["largest_conflict"].items()))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", default="quality,teaching,cost")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per world setting")
    ap.add_argument("--ml-seeds", type=int, default=3, help="seeds on ml-latest-small")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds of the cost measurement")
    ap.add_argument("--telemetry-repeats", type=int, default=6,
                    help="extra paired rounds of fixed weights with and without telemetry")
    ap.add_argument("--methods", default=",".join(WEIGHTINGS))
    ap.add_argument("--world", nargs="*", default=[], metavar="KEY=VALUE",
                    help="WorldConfig fields for the lesson worlds")
    ap.add_argument("--settings", default="rho=-0.5,rho=0.9,ml",
                    help="quality settings, by substring of their names (ml: also the cost on ml-latest-small)")
    ap.add_argument("--cached-only", action="store_true", help="train nothing: summarise the cached runs")
    ap.add_argument("--cost-lesson", action="store_true",
                    help="cost on the correlation lesson's world (2 tasks) instead of the default world (3 tasks)")
    args = ap.parse_args(argv)
    args.settings = [s for s in args.settings.split(",") if s]
    args.world = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in args.world)}
    methods = [m for m in args.methods.split(",") if m]
    parts = args.part.split(",")
    out: dict = {"machine": C.machine(), "seeds": args.seeds, "ml_seeds": args.ml_seeds, "world": args.world,
                 "settings": args.settings, "argv": sys.argv[1:] if argv is None else list(argv)}
    if "quality" in parts:
        out["quality"] = quality(args, methods)
        print_quality(out["quality"])
    if "teaching" in parts:
        out["teaching"] = teaching(args)
        print_teaching(out["teaching"])
    if "cost" in parts:
        out["cost"] = cost(args, methods)
        print_cost(out["cost"])
    out["machine"]["loadavg_end"] = [round(x, 2) for x in C.loadavg()]
    print(C.json_line(out))
    return out


if __name__ == "__main__":
    main()
