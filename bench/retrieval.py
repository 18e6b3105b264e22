"""Issue 17's speed and quality targets for the two-stage recommender, side by side in one run.

    python bench/retrieval.py [--seeds 3] [--repeats 5] [--epochs 5]
    python bench/retrieval.py --speed-only --repeats 7     # the timing rounds alone (1-epoch models)

Data and model: the README's ml-latest-small protocol (`watched=implicit`, `liked=rating>=4`,
4 negatives per rating, per-user temporal split 70/10/20, genres; MMoE 4 experts [64, 32],
defaults) plus a retrieval task `r=retrieval` (every rating a positive), trained jointly with
fixed weights 1. Everything goes through the library's own paths: `rank_eval(run, task, stage)`
(= `eval RUN --task T --stage S`), whose "seconds" is the stage's scoring time for all 610
users (model work, seen-item masking, top-K; not loading the run).

- Speed: on seed 0's run, `--repeats` rounds of (full, cascade, retrieval) for task watched,
  interleaved, medians; plus full ranking of the same MMoE trained without the retrieval task
  (today's model: the 4.8 s of BENCHMARKS.md). Target: cascade <= 0.3 s; the ratio is printed.
- Quality: per seed, NDCG@10 and Recall@10 of full ranking and of the cascade (N = 200) for
  watched and liked, the paired difference cascade - full over seeds (mean ± 95% CI,
  mtrlib.eval.stats). Target: cascade NDCG@10 within 0.005 of full ranking, or better. Also
  recall_of_full@10 (seed 0) and the test AUCs with and without the retrieval task (does
  training it jointly cost the rankers anything?).

The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, load_ml, loadavg, machine, ml_available, ml_config, save_json  # noqa: E402

TARGET_S, TARGET_NDCG = 0.3, 0.005


def train_run(ds, store: Path, seed: int, epochs: int, retrieval: bool):
    from mtrlib.train.prepare import prepare
    from mtrlib.runs import load_run, train_and_save

    cfg = ml_config("mmoe", epochs=epochs, seed=seed)
    if retrieval:
        cfg.data.tasks = cfg.data.tasks + ["r=retrieval"]
    t0 = time.perf_counter()
    res, writer = train_and_save(cfg, prepare(cfg, ds), store=store)
    run = load_run(writer.path)
    _ = run.model  # loaded before any timing
    return run, res, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--speed-only", action="store_true",
                    help="only the timing rounds, on a retrieval run and a plain run trained for 1 epoch each "
                         "(the scoring time does not depend on how long the model trained)")
    a = ap.parse_args()
    if not ml_available():
        print(json.dumps({"error": "ml-latest-small not found under ../shared/data"}))
        return 1
    from mtrlib.train.device import cpu_compute
    from mtrlib.serve.recommend import rank_eval
    from mtrlib.eval.stats import mean_ci, paired_difference, verdict

    ds = load_ml()
    store = Path(tempfile.mkdtemp(prefix="retrieval-bench-"))
    out: dict = {"machine": machine(), "seeds": a.seeds, "epochs": a.epochs, "candidates": a.candidates}
    quality = {t: {"full": {"ndcg@10": [], "recall@10": []}, "cascade": {"ndcg@10": [], "recall@10": []}}
               for t in ("watched", "liked")}
    auc = {"with retrieval": {"watched": [], "liked": []}, "without": {"watched": [], "liked": []}}
    try:
        with cpu_compute(1):
            runs = []
            if a.speed_only:
                runs.append(train_run(ds, store, 0, 1, retrieval=True)[0])
                plain_run = train_run(ds, store, 0, 1, retrieval=False)[0]
            for seed in range(0 if a.speed_only else a.seeds):
                run, res, secs = train_run(ds, store, seed, a.epochs, retrieval=True)
                runs.append(run)
                plain, res_plain, _ = train_run(ds, store, seed, a.epochs, retrieval=False)
                for t in ("watched", "liked"):
                    auc["with retrieval"][t].append(res.metrics[t]["auc"])
                    auc["without"][t].append(res_plain.metrics[t]["auc"])
                    for stage in ("full", "cascade"):
                        r = rank_eval(run, task=t, stage=stage, candidates=a.candidates,
                                      compare_full=stage == "cascade" and seed == 0)
                        for m in ("ndcg@10", "recall@10"):
                            quality[t][stage][m].append(r["model"][m])
                        if "recall_of_full@10" in r:
                            quality[t]["recall_of_full@10"] = r["recall_of_full@10"]
                print(f"seed {seed}: trained in {secs:.0f} s; " + "; ".join(
                    f"{t} NDCG@10 full {quality[t]['full']['ndcg@10'][-1]:.4f} cascade "
                    f"{quality[t]['cascade']['ndcg@10'][-1]:.4f}" for t in quality), flush=True)
                if seed == 0:
                    plain_run = plain
            # speed: interleaved rounds on seed 0's runs
            times = {"full": [], "cascade": [], "retrieval": [], "full, without retrieval task": []}
            cpu = {k: [] for k in times}
            loads = []
            for rep in range(a.repeats):
                for stage in ("full", "cascade", "retrieval", "full, without retrieval task"):
                    r = (rank_eval(plain_run, task="watched") if stage.startswith("full,") else
                         rank_eval(runs[0], task="watched", stage=stage, candidates=a.candidates))
                    times[stage].append(r["seconds"])
                    cpu[stage].append(r["cpu_seconds"])
                loads.append(loadavg()[0])
                print(f"round {rep + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s (CPU {cpu[k][-1]:.3f})"
                                                        for k, v in times.items()), flush=True)
    finally:
        shutil.rmtree(store, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    ratios = [f / c for f, c in zip(times["full"], times["cascade"])]
    speed = {"median_s": med, "median_cpu_s": med_cpu, "times_s": times, "cpu_s": cpu,
             "ratio_full_over_cascade": statistics.median(ratios),
             "ratio_today_over_cascade": med["full, without retrieval task"] / med["cascade"],
             "target_s": TARGET_S, "met": med["cascade"] <= TARGET_S, "met_cpu": med_cpu["cascade"] <= TARGET_S,
             "loadavg": loads}
    print("\n| stage (ml-latest-small, 610 users x 9,742 items, MMoE, 1 thread) | scoring time, median (s) "
          "| CPU time, median (s) |")
    print("|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} | {med_cpu[k]:.3f} |")
    print(f"cascade vs full: {speed['ratio_full_over_cascade']:.1f}x faster (target cascade <= {TARGET_S} s: "
          f"{'met' if speed['met'] else 'missed'} in wall time, {'met' if speed['met_cpu'] else 'missed'} in CPU time); "
          f"load average {min(loads):.1f}-{max(loads):.1f}")

    out["speed"] = speed
    if a.speed_only:
        save_json(OUT / "retrieval_speed.json", out)
        print(json.dumps(out))
        return 0
    q_out = {}
    print("\n| task | full NDCG@10 | cascade NDCG@10 | cascade - full (paired) | full Recall@10 | cascade Recall@10 |")
    print("|---|---|---|---|---|---|")
    for t, q in quality.items():
        d = paired_difference(q["full"]["ndcg@10"], q["cascade"]["ndcg@10"])
        dr = paired_difference(q["full"]["recall@10"], q["cascade"]["recall@10"])
        q_out[t] = {"full_ndcg@10": mean_ci(q["full"]["ndcg@10"]).pair(),
                    "cascade_ndcg@10": mean_ci(q["cascade"]["ndcg@10"]).pair(), "diff_ndcg@10": d.pair(),
                    "full_recall@10": mean_ci(q["full"]["recall@10"]).pair(),
                    "cascade_recall@10": mean_ci(q["cascade"]["recall@10"]).pair(), "diff_recall@10": dr.pair(),
                    "recall_of_full@10_seed0": q.get("recall_of_full@10"),
                    "within_0.005": bool(d.mean >= -TARGET_NDCG), "verdict": verdict(d)}
        print(f"| {t} | {mean_ci(q['full']['ndcg@10'])} | {mean_ci(q['cascade']['ndcg@10'])} | {d.mean:+.4f} ± "
              f"{d.ci95:.4f} ({verdict(d)}) | {mean_ci(q['full']['recall@10'])} | {mean_ci(q['cascade']['recall@10'])} |")
    auc_out = {}
    for t in ("watched", "liked"):
        d = paired_difference(auc["without"][t], auc["with retrieval"][t])
        auc_out[t] = {"without": mean_ci(auc["without"][t]).pair(), "with": mean_ci(auc["with retrieval"][t]).pair(),
                      "diff": d.pair(), "verdict": verdict(d)}
        print(f"test AUC {t}: without retrieval task {mean_ci(auc['without'][t])}, with "
              f"{mean_ci(auc['with retrieval'][t])} (paired {d.mean:+.4f} ± {d.ci95:.4f}: {verdict(d)})")
    out.update(speed=speed, quality=q_out, auc=auc_out)
    save_json(OUT / "retrieval.json", out)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
