"""The built-in world's four lessons, measured over seeds (issue 14's targets).

1. Correlation: MTL gain = shared model test AUC - single-task test AUC, averaged over the two
   binary tasks (click, like; a like asked on every impression), per architecture and per
   task correlation rho in {1, 0.5, 0, -0.5}, on the correlation lesson's world (`LESSON`:
   300 users who each see 200 of the 400 items, so each user's own taste is learnable).
   Targets: Shared-Bottom's gain > 0 at rho >= 0.9 and < 0 at rho = -0.5 (CIs clear of 0); at
   rho = -0.5 STEM's gain and the better of MMoE / PLE's each above Shared-Bottom's by >= 0.02.
   MMoE with task-specific embeddings (`--task-emb 8`) is measured too (table only).
2. Text: cold-items split on the default world, MMoE click AUC with language-model text
   features minus without (ids + side features). Target >= 0.05.
3. Purity: ids-only default run (MMoE), kNN purity (k = 10) of the learned item id embedding
   by true genre. Target >= 0.5 (chance 0.125).
4. Truth: the default run, `eval --truth` (300 users, click ranking): favourite-genre share
   of the top 10 >= 0.75 and overlap with the true top 10 >= 0.5.
Plus `default_run_seconds`: the default run's training time (median over the seeds; <= 10 s).

Each claim: mean +- 95% t-interval over the seeds (mtrlib.eval.stats.mean_ci); seed s trains on
world seed s. Every finished run is appended to bench/out/world_lessons.runs.jsonl, so an
interrupted benchmark continues where it stopped (`--fresh` starts again). The last line is
one JSON object:

    {"gain": {ARCH: {RHO: [mean, ci95]}}, "cold_text_lift": [mean, ci95],
     "purity_ids_only": [mean, ci95], "truth": {"favourite_genre_share@10": [mean, ci95],
     "truth_overlap@10": [mean, ci95]}, "default_run_seconds": s}

    python bench/world_lessons.py [--seeds 5] [--parts correlation,text,purity,truth] [--fresh]
                                  [--rhos 1,0.5,0,-0.5] [--out world_lessons.json]

`--rhos` measures the correlation lesson at some rho values only (e.g. more seeds where the
tasks conflict); `--out` names the detail file under bench/out/ so such a run keeps the
headline one. `--longer 16,24` also trains the purity and text lessons' runs for that many
epochs (the default run trains 8): is a miss a matter of training length? The JSON line then
adds "purity_ids_only_by_epochs" and "cold_text_lift_by_epochs" ({EPOCHS: [mean, ci95]}) and
"seconds_by_epochs" (median training seconds of the ids-only purity runs).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, json_line, loadavg, machine, save_json  # noqa: E402

from mtrlib.config import TrainConfig  # noqa: E402
from mtrlib.eval.stats import mean_ci, paired_difference, verdict  # noqa: E402

ARCHS = ("shared-bottom", "mmoe", "ple", "stem")
EXTRA = {"mmoe+tse": ("mmoe", {"task_emb": 8})}
RHOS = ("1", "0.5", "0", "-0.5")
LESSON = dict(n_users=300, n_items=400, impressions_per_user=200, like_observed="all")  # the correlation lesson
TASKS = ["click=click", "like=like"]
RUNS = OUT / "world_lessons.runs.jsonl"


def lesson_config(rho: float, seed: int, arch: str, model: dict | None = None) -> TrainConfig:
    cfg = TrainConfig(seed=seed)
    for k, v in {**LESSON, "correlation": rho, "seed": seed}.items():
        setattr(cfg.data.world, k, v)
    cfg.data.tasks = list(TASKS)
    cfg.model.arch = arch
    for k, v in (model or {}).items():
        setattr(cfg.model, k, v)
    return cfg


class Cache:
    """Finished runs by key, appended as they finish (the benchmark resumes after a stop)."""

    def __init__(self, fresh: bool):
        RUNS.parent.mkdir(parents=True, exist_ok=True)
        if fresh and RUNS.exists():
            RUNS.unlink()
        self.done = {}
        if RUNS.exists():
            for line in RUNS.read_text().splitlines():
                try:
                    rec = json.loads(line)
                    self.done[rec["key"]] = rec["value"]
                except (json.JSONDecodeError, KeyError):
                    continue

    def get(self, key: str, work):
        if key not in self.done:
            value = work()
            self.done[key] = value
            with open(RUNS, "a") as f:
                f.write(json.dumps({"key": key, "value": value}) + "\n")
        return self.done[key]


def _aucs(cfg, prep) -> dict:
    from mtrlib.train.loop import train
    res = train(cfg, prep)
    return {t: res.metrics[t]["auc"] for t in ("click", "like") if t in res.metrics} | {"seconds": res.elapsed}


def correlation(seeds: list[int], cache: Cache, log, rhos=RHOS) -> dict:
    from mtrlib.train.loop import prepare
    auc: dict = {}
    for rho in rhos:
        for s in seeds:
            prep = None
            for name, (arch, model) in {"single": ("single", {}), **{a: (a, {}) for a in ARCHS}, **EXTRA}.items():
                def work():
                    nonlocal prep
                    cfg = lesson_config(float(rho), s, arch, model)
                    if prep is None:
                        prep = prepare(cfg)
                    return _aucs(cfg, prep)
                auc[rho, name, s] = cache.get(f"corr/{rho}/{name}/{s}", work)
            log(f"correlation rho={rho} seed={s}")
    gains = {}
    for name in (*ARCHS, *EXTRA):
        gains[name] = {}
        for rho in rhos:
            g = [sum(auc[rho, name, s][t] - auc[rho, "single", s][t] for t in ("click", "like")) / 2 for s in seeds]
            gains[name][rho] = {"per_seed": g, "estimate": mean_ci(g)}
    # gain minus Shared-Bottom's, paired by seed (the same world and split on both sides), per rho
    vs_sb = {name: {rho: paired_difference(gains["shared-bottom"][rho]["per_seed"], gains[name][rho]["per_seed"])
                    for rho in rhos} for name in ("stem", "mmoe", "ple", *EXTRA)}
    out = {"auc": {f"{r}/{n}/{s}": v for (r, n, s), v in auc.items()}, "gains": gains, "vs_shared_bottom": vs_sb}
    if "-0.5" in rhos:
        out["better_than_sb"] = {name: d["-0.5"] for name, d in vs_sb.items()}
        out["best_of_mmoe_ple"] = max(("mmoe", "ple"), key=lambda a: vs_sb[a]["-0.5"].mean)
    return out


def _default_cfg(seed: int, **data) -> TrainConfig:
    cfg = TrainConfig(seed=seed)
    cfg.data.world.seed = seed
    for k, v in data.items():
        setattr(cfg.data, k, v)
    return cfg


def _key(part: str, epochs: int | None) -> str:
    """Cache key prefix: the default run's (as before `--longer`), or that of a longer one."""
    return part if epochs is None else f"{part}/e{epochs}"


def text(seeds, cache, log, epochs: int | None = None) -> dict:
    from mtrlib.train.loop import prepare
    lift, click, seconds = [], {False: [], True: []}, {False: [], True: []}
    for s in seeds:
        got = {}
        for use_text in (False, True):
            def work():
                cfg = _default_cfg(s, split="cold-items")
                cfg.model.text_features = use_text
                if epochs is not None:
                    cfg.epochs = epochs
                return _aucs(cfg, prepare(cfg))
            got[use_text] = cache.get(f"{_key('text', epochs)}/{int(use_text)}/{s}", work)
        lift.append(got[True]["click"] - got[False]["click"])
        for use_text in (False, True):
            click[use_text].append(got[use_text]["click"])
            seconds[use_text].append(got[use_text]["seconds"])
        log(f"text seed={s}{'' if epochs is None else f' epochs={epochs}'}: click AUC "
            f"{got[False]['click']:.4f} -> {got[True]['click']:.4f}")
    return {"per_seed": lift, "estimate": mean_ci(lift), "click": click, "seconds": seconds}


def purity(seeds, cache, log, epochs: int | None = None) -> dict:
    from mtrlib.viz.project import purity as run_purity
    from mtrlib.runs import recorded_training
    from mtrlib.train.loop import prepare
    out = []
    with tempfile.TemporaryDirectory() as store:
        for s in seeds:
            def work():
                cfg = _default_cfg(s, use_features=False)
                if epochs is not None:
                    cfg.epochs = epochs
                res, writer = recorded_training(cfg, prepare(cfg), store=store)
                got = run_purity(writer.path, what="items", attribute="true_genre")
                return {**got, "seconds": res.elapsed, "auc": {t: m["auc"] for t, m in res.metrics.items() if "auc" in m}}
            out.append(cache.get(f"{_key('purity', epochs)}/{s}", work))
            log(f"purity seed={s}{'' if epochs is None else f' epochs={epochs}'}: {out[-1]['purity']:.3f} "
                f"(chance {out[-1]['chance']:.3f}, untrained {out[-1]['untrained']:.3f})")
    return {"per_seed": out, "estimate": mean_ci([o["purity"] for o in out])}


def truth(seeds, cache, log) -> dict:
    from mtrlib.runs import recorded_training
    from mtrlib.train.loop import prepare
    from mtrlib.eval.truth import truth_eval
    out = []
    with tempfile.TemporaryDirectory() as store:
        for s in seeds:
            def work():
                cfg = _default_cfg(s)
                res, writer = recorded_training(cfg, prepare(cfg), store=store)
                tr = truth_eval(writer.path, users=300, k=10)
                fused = truth_eval(writer.path, users=300, k=10, fusion={t: 1.0 for t in ("click", "like")})
                return {"truth": tr, "fused": fused, "seconds": res.elapsed,
                        "auc": {t: m["auc"] for t, m in res.metrics.items() if "auc" in m}}
            out.append(cache.get(f"truth/{s}", work))
            t = out[-1]["truth"]
            log(f"truth seed={s}: share {t['favourite_genre_share@10']['model']:.3f}, "
                f"overlap {t['truth_overlap@10']['model']:.3f}, {out[-1]['seconds']:.1f} s")
    share = [o["truth"]["favourite_genre_share@10"]["model"] for o in out]
    overlap = [o["truth"]["truth_overlap@10"]["model"] for o in out]
    secs = sorted(o["seconds"] for o in out)
    return {"per_seed": out, "share": mean_ci(share), "overlap": mean_ci(overlap),
            "default_run_seconds": secs[len(secs) // 2]}


def fmt(values, digits: int = 3) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def svg_gain_plot(gains: dict, path: Path, rhos=RHOS) -> None:
    """Gain against rho per architecture (the MMoE paper's figure), as a small SVG: no plotting library.
    Each point has its 95% interval as a bar; the bars of the architectures are set side by side
    around their rho so they do not hide each other, and the axis covers the bars."""
    W, H, L, B, R = 640, 360, 64, 44, 140  # R: the legend's margin on the right
    est = {(a, r): gains[a][r]["estimate"] for a in ARCHS for r in rhos}
    ci = lambda e: e.ci95 if e.ci95 == e.ci95 else 0.0  # noqa: E731  (nan for one seed)
    lo = min([e.mean - ci(e) for e in est.values()] + [0.0]) - 0.005
    hi = max([e.mean + ci(e) for e in est.values()] + [0.0]) + 0.005
    X = lambda r: L + 20 + (1 - (r + 0.5) / 1.5) * (W - L - R - 40)  # noqa: E731  (rho 1 left, -0.5 right)
    Y = lambda v: 20 + (hi - v) / (hi - lo) * (H - B - 20)  # noqa: E731
    colours = {"shared-bottom": "#d62728", "mmoe": "#1f77b4", "ple": "#2ca02c", "stem": "#9467bd"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
             f'font-size="12"><rect width="{W}" height="{H}" fill="white"/>',
             f'<line x1="{L}" y1="20" x2="{L}" y2="{H - B}" stroke="#444"/>',
             f'<line x1="{L}" y1="{Y(0):.1f}" x2="{W - R}" y2="{Y(0):.1f}" stroke="#888" stroke-dasharray="4"/>',
             f'<text x="{(L + W - R) / 2}" y="{H - 8}" text-anchor="middle">task correlation ρ</text>',
             f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">'
             'MTL gain (AUC), mean ± 95% CI</text>']
    for r in rhos:
        parts.append(f'<text x="{X(float(r)):.1f}" y="{H - B + 18}" text-anchor="middle">{float(r):g}</text>')
    step = 0.02 if hi - lo > 0.06 else 0.01
    v = step * (lo // step + 1)
    while v < hi:
        parts.append(f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:+.2f}</text>'
                     f'<line x1="{L - 3}" y1="{Y(v):.1f}" x2="{L}" y2="{Y(v):.1f}" stroke="#444"/>')
        v += step
    for k, a in enumerate(ARCHS):
        dx = (k - (len(ARCHS) - 1) / 2) * 7
        pts = [(X(float(r)) + dx, Y(est[a, r].mean), ci(est[a, r])) for r in rhos]
        parts.append(f'<polyline fill="none" stroke="{colours[a]}" stroke-width="2" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in pts) + '"/>')
        for x, y, c in pts:
            dy = c / (hi - lo) * (H - B - 20)
            parts.append(f'<line x1="{x:.1f}" y1="{y - dy:.1f}" x2="{x:.1f}" y2="{y + dy:.1f}" stroke="{colours[a]}"/>'
                         f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colours[a]}"/>')
        parts.append(f'<text x="{W - R + 14}" y="{40 + 18 * k}" fill="{colours[a]}">{a}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--parts", default="correlation,text,purity,truth")
    ap.add_argument("--fresh", action="store_true", help="forget the runs of an earlier (interrupted) benchmark")
    ap.add_argument("--rhos", default=",".join(RHOS), help="the correlation lesson's rho values (default: all four)")
    ap.add_argument("--out", default="world_lessons.json", help="detail file under bench/out/")
    ap.add_argument("--longer", default="", help="also train the purity and text runs for these epochs, e.g. 16,24")
    args = ap.parse_args(argv)
    longer = [int(e) for e in args.longer.split(",") if e.strip()]
    os.environ.setdefault("MTR_SCORING_THREADS", "1")
    seeds = list(range(args.seeds))
    parts = set(args.parts.split(","))
    rhos = tuple(r.strip() for r in args.rhos.split(","))
    if unknown := set(rhos) - set(RHOS):
        ap.error(f"unknown rho {sorted(unknown)}: choose from {', '.join(RHOS)}")
    cache = Cache(args.fresh)
    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:6.0f}s load {loadavg()[0]:.1f}] {msg}", file=sys.stderr, flush=True)

    res = {}
    if "truth" in parts:
        res["truth"] = truth(seeds, cache, log)
    if "purity" in parts:
        res["purity"] = purity(seeds, cache, log)
        res["purity_longer"] = {e: purity(seeds, cache, log, e) for e in longer}
    if "text" in parts:
        res["text"] = text(seeds, cache, log)
        res["text_longer"] = {e: text(seeds, cache, log, e) for e in longer}
    if "correlation" in parts:
        res["correlation"] = correlation(seeds, cache, log, rhos)

    print(f"\nBuilt-in world lessons, mean ± 95% CI over {len(seeds)} seeds\n")
    out: dict = {}
    if "correlation" in res:
        c = res["correlation"]
        print(f"MTL gain (test AUC, shared - single-task, mean of click and like), correlation lesson world {LESSON}")
        print("| architecture | " + " | ".join(f"ρ = {r}" for r in rhos) + " |")
        print("|---|" + "---|" * len(rhos))
        for a in (*ARCHS, *EXTRA):
            print(f"| {a} | " + " | ".join(str(c["gains"][a][r]["estimate"]) for r in rhos) + " |")
        print("\nGain minus Shared-Bottom's, paired over seeds (verdict: is the difference beyond seed noise)")
        print("| architecture | " + " | ".join(f"ρ = {r}" for r in rhos) + " |")
        print("|---|" + "---|" * len(rhos))
        for a, d in c["vs_shared_bottom"].items():
            print(f"| {a} | " + " | ".join(f"{d[r]} ({verdict(d[r])})" for r in rhos) + " |")
        print("\nSeeds with a negative gain (shared below single-task), of " + str(len(seeds)) + ":")
        for a in (*ARCHS, *EXTRA):
            print(f"  {a}: " + ", ".join(f"ρ = {r}: {sum(g < 0 for g in c['gains'][a][r]['per_seed'])}" for r in rhos))
        out["gain"] = {a: {r: c["gains"][a][r]["estimate"].pair() for r in rhos} for a in ARCHS}
        svg_gain_plot(c["gains"], OUT / ("world_gain_vs_rho.svg" if args.out == "world_lessons.json"
                                         else Path(args.out).stem + "_gain_vs_rho.svg"), rhos)
    if "text" in res:
        print(f"\nCold items, MMoE click AUC with text - without: {res['text']['estimate']}")
        for use_text in (False, True):
            print(f"  {'with' if use_text else 'without'} text: "
                  f"{mean_ci(res['text']['click'][use_text])} (per seed {fmt(res['text']['click'][use_text])}; "
                  f"training s {fmt(res['text']['seconds'][use_text], 1)})")
        out["cold_text_lift"] = res["text"]["estimate"].pair()
        if res["text_longer"]:
            for e, r in res["text_longer"].items():
                print(f"  trained {e} epochs: lift {r['estimate']} (without {mean_ci(r['click'][False])}, with "
                      f"{mean_ci(r['click'][True])}; per seed {fmt(r['per_seed'])})")
            out["cold_text_lift_by_epochs"] = {str(e): r["estimate"].pair() for e, r in res["text_longer"].items()}
    if "purity" in res:
        p = res["purity"]["per_seed"]
        print(f"Ids-only default run, item id embedding kNN purity by true genre: {res['purity']['estimate']} "
              f"(per seed {fmt(o['purity'] for o in p)}); chance {mean_ci(o['chance'] for o in p)}, untrained "
              f"{mean_ci(o['untrained'] for o in p)}; trained - untrained (paired) "
              f"{paired_difference([o['untrained'] for o in p], [o['purity'] for o in p])}")
        out["purity_ids_only"] = res["purity"]["estimate"].pair()
        if res["purity_longer"]:
            out["purity_ids_only_by_epochs"], out["seconds_by_epochs"] = {}, {}
            for e, r in res["purity_longer"].items():
                q = r["per_seed"]
                secs = sorted(o["seconds"] for o in q)
                print(f"  trained {e} epochs: purity {r['estimate']} (per seed {fmt(o['purity'] for o in q)}); "
                      f"click AUC {mean_ci(o['auc']['click'] for o in q)}, like AUC {mean_ci(o['auc']['like'] for o in q)}; "
                      f"training s {fmt(secs, 1)}")
                out["purity_ids_only_by_epochs"][str(e)] = r["estimate"].pair()
                out["seconds_by_epochs"][str(e)] = secs[len(secs) // 2]
    if "truth" in res:
        t = res["truth"]
        print(f"Default run vs the truth (300 users, top 10 by click): favourite-genre share {t['share']}, "
              f"overlap {t['overlap']}; default run {t['default_run_seconds']:.1f} s (median; per seed "
              f"{fmt((o['seconds'] for o in t['per_seed']), 1)})")
        for how in ("truth", "fused"):
            print(f"  ranked by {'click' if how == 'truth' else 'click + like fused'}:")
            for metric, who in (("favourite_genre_share@10", ("model", "truth", "popularity")),
                                ("truth_overlap@10", ("model", "popularity"))):
                print(f"    {metric}: " + ", ".join(f"{w} {mean_ci(o[how][metric][w] for o in t['per_seed'])}"
                                                     for w in who))
        print("  test AUC of the default run: " + ", ".join(
            f"{k} {mean_ci(o['auc'][k] for o in t['per_seed'])}" for k in t["per_seed"][0]["auc"]))
        out["truth"] = {"favourite_genre_share@10": t["share"].pair(), "truth_overlap@10": t["overlap"].pair()}
        out["default_run_seconds"] = t["default_run_seconds"]
    detail = {"machine": machine(), "seeds": seeds, "lesson_world": LESSON, "seconds": round(time.time() - t0, 1),
              "results": json.loads(json.dumps(res, default=lambda o: o.to_dict() if hasattr(o, "to_dict") else str(o)))}
    save_json(OUT / args.out, detail)
    print(json_line(out))
    return out


if __name__ == "__main__":
    main()
