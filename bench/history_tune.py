"""Towards issue 18's AUC targets: training settings on top of the best history cell, chosen on
validation only, then the chosen setup over seeds on test, paired against the same seeds of the
plain cell (the grid of bench/history.py).

    python bench/history_tune.py --features text --select --seeds 0,1,2   # choose on seed 0, then seeds
    python bench/history_tune.py --features text --report-only

The base is bench/history.py's chosen history (mean pooling at its chosen L, MMoE, the README
protocol) with `--features` (genres: ids + genres; text: + the language-model vectors; the
grid's best cell on validation is mean pooling + text). A candidate changes one training setting that is already a flag of
`train` (weighting, embedding width, epochs, architecture, learning rate); none is a new model.
The choice is the best mean validation AUC of the two tasks; the test AUCs are recorded but never
read by it. The seeds are also scored with test examples reading the validation period before
them (`--pools train,train+val`, as bench/history.py). Written to
bench/out/history-tune[-text].json; the last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import history as H  # noqa: E402

from mtrlib.experiments.settings import apply  # noqa: E402
from mtrlib.eval.stats import mean_ci, paired_difference, verdict  # noqa: E402
from mtrlib.train.loop import prepare  # noqa: E402

CANDIDATES = {
    "uncertainty": {"weighting": "uncertainty"},
    "emb32": {"model.emb_dim": 32},
    "epochs12": {"epochs": 12},
    "ple": {"model.arch": "ple"},
    "lr0.005-epochs12": {"lr": 0.005, "epochs": 12},
    "dropout0.1": {"model.dropout": 0.1},
}


def _cfg(chosen: dict, over: dict, seed: int, features: str):
    return apply(H.config("mean", features, seed, chosen, 8), over)


def _path(features: str):
    return C.OUT / ("history-tune.json" if features == "genres" else f"history-tune-{features}.json")


def _val(r: dict) -> float:
    return statistics.mean(r["val"][t] for t in H.TASKS)


def select(chosen: dict, results: dict, ds, features: str) -> dict:
    PATH = _path(features)

    def run(name: str, over: dict) -> dict:
        if name not in results:
            cfg = _cfg(chosen, over, 0, features)
            r = H.one_run(cfg, prepare(cfg, ds))
            r["over"] = over
            results[name] = r
            C.save_json(PATH, {"results": results})
            H._log(f"  tune {name:28s} val {r['val']['watched']:.4f} / {r['val']['liked']:.4f} "
                   f"(mean {_val(r):.4f}, {r['seconds']:.0f}s)")
        return results[name]

    base = run("base", {})
    tried = {n: run(n, o) for n, o in CANDIDATES.items()}
    ranked = sorted(tried, key=lambda n: _val(tried[n]), reverse=True)
    best = ranked[0]
    if len(ranked) > 1 and _val(tried[ranked[1]]) > _val(base):
        both = f"{ranked[0]}+{ranked[1]}"
        tried[both] = run(both, {**CANDIDATES[ranked[0]], **CANDIDATES[ranked[1]]})
        best = max((best, both), key=lambda n: _val(tried[n]))
    if _val(tried[best]) <= _val(base):
        best = "base"
    results["chosen"] = {"name": best, "over": results[best]["over"]}
    C.save_json(PATH, {"results": results})
    return results["chosen"]


def seeds_run(chosen: dict, pick: dict, seeds: list[int], results: dict, ds, features: str, pools) -> None:
    """The plain cell is bench/history.py's grid cell mean|FEATURES|SEED (the same config): taken
    from its results file when it holds that run (with both pools when they are asked for)."""
    PATH = _path(features)
    grid = H._load(H.GRID_PATH)
    for s in seeds:
        for name, over in (("plain", {}), ("tuned", pick["over"])):
            key = f"{name}|{s}"
            if key in results or (name == "tuned" and not over):
                continue
            same = grid.get(f"mean|{features}|{s}") if name == "plain" else None
            if same is not None and ("train+val" not in pools or "test_trainval" in same):
                results[key] = {**same, "over": {}}
                C.save_json(PATH, {"results": results})
                continue
            cfg = _cfg(chosen, over, s, features)
            wide = prepare(H.cfg_wide(cfg), ds) if "train+val" in pools else None
            r = H.one_run(cfg, prepare(cfg, ds), wide, ndcg=True)
            r["over"] = over
            results[key] = r
            C.save_json(PATH, {"results": results})
            H._log(f"  {name} seed {s}: test {r['test']['watched']:.4f} / {r['test']['liked']:.4f} "
                   f"ndcg@10 {r['ndcg@10/watched']:.4f} / {r['ndcg@10/liked']:.4f} ({r['seconds']:.0f}s)")


def report(results: dict, features: str) -> dict:
    sel = {n: r for n, r in results.items() if "|" not in n and n != "chosen"}
    lines = ["| candidate (seed 0) | val watched | val liked | mean val | test watched | test liked |",
             "|---|---|---|---|---|---|"]
    for n, r in sel.items():
        lines.append(f"| {n} | {r['val']['watched']:.4f} | {r['val']['liked']:.4f} | {_val(r):.4f} | "
                     f"{r['test']['watched']:.4f} | {r['test']['liked']:.4f} |")
    out: dict = {"features": features, "chosen": results.get("chosen"), "select": {n: {"val": r["val"], "test": r["test"]} for n, r in sel.items()}}
    seeds = sorted({int(k.split("|")[1]) for k in results if k.startswith("tuned|")})
    common = [s for s in seeds if f"plain|{s}" in results]
    for pool in ("train", "train+val"):
        if not common or (pool != "train" and not all("test_trainval" in results[f"{n}|{s}"]
                                                      for n in ("plain", "tuned") for s in common)):
            continue
        auc_key, ndcg_key = H.POOLS[pool]
        metrics = [("test", t) for t in H.TASKS] + [("ndcg@10", t) for t in H.TASKS]

        def get(r, kind, t):
            return r[auc_key][t] if kind == "test" else r[f"{ndcg_key}/{t}"]

        cells = {}
        for name in ("plain", "tuned"):
            rs = [results[f"{name}|{s}"] for s in common]
            cells[name] = {f"{k}/{t}": mean_ci([get(r, k, t) for r in rs]) for k, t in metrics}
        diff = {f"{k}/{t}": paired_difference([get(results[f"plain|{s}"], k, t) for s in common],
                                              [get(results[f"tuned|{s}"], k, t) for s in common]) for k, t in metrics}
        lines += ["", f"pool {pool}, seeds {common}:", "| setup | watched AUC | liked AUC | NDCG@10 watched | NDCG@10 liked |",
                  "|---|---|---|---|---|"]
        for name, c in cells.items():
            lines.append(f"| {name} | " + " | ".join(str(c[f'{k}/{t}']) for k, t in metrics) + " |")
        lines.append("| tuned − plain (paired) | " + " | ".join(f"{diff[f'{k}/{t}']} ({verdict(diff[f'{k}/{t}'])})"
                                                             for k, t in metrics) + " |")
        out.setdefault("pools", {})[pool] = {
            "seeds": common, "cells": {n: {m: v.pair() for m, v in c.items()} for n, c in cells.items()},
            "tuned_minus_plain": {m: v.pair() for m, v in diff.items()},
            "targets_met": {t: cells["tuned"][f"test/{t}"].mean >= H.TARGET[t] for t in H.TASKS}}
    print("\n".join(lines), file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--select", action="store_true")
    ap.add_argument("--seeds", default="")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--features", default="genres", choices=H.FEATURES)
    ap.add_argument("--pools", default="train,train+val")
    args = ap.parse_args()
    if not C.ml_available():
        print(json.dumps({"error": f"ml-latest-small not found in {C.ML_DIR}"}))
        return
    chosen = H._load(H.SELECT_PATH).get("chosen")
    if chosen is None:
        print(json.dumps({"error": "run `python bench/history.py --select` first (it chooses the history cell)"}))
        return
    results = H._load(_path(args.features))
    if not args.report_only:
        ds = C.load_ml()
        pick = results.get("chosen") if not args.select else None
        if pick is None:
            pick = select(chosen, results, ds, args.features)
            H._log(f"chosen on validation: {json.dumps(pick)}")
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        seeds_run(chosen, pick, seeds, results, ds, args.features, [p for p in args.pools.split(",") if p])
    print(C.json_line(report(results, args.features)))


if __name__ == "__main__":
    main()
