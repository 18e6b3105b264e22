"""History features on ml-latest-small (issue 18): every encoder x {ids + genres, + text},
against the same model without a history, over seeds; settings chosen on validation only.

    python bench/history.py --select              # 1. settings on validation (seed 0, ids + genres)
    python bench/history.py --seeds 0,1,2,3,4     # 2. the grid at the chosen settings (resumable)
    python bench/history.py --speed               # 3. training samples/s side by side vs no history
    python bench/history.py --report-only         # the tables from what is recorded

Training settings on top of the best cell (weighting, width, epochs, ...): bench/history_tune.py.

Sizing on a busy box: `--lengths 20,50 --variants 1` (select), `--encoders`, `--features genres`,
`--pools train` (grid; several grid processes may run at once, on different seeds/encoders:
they share one results file), `--speed --encoders none,mean --no-scoring`.

Protocol: the README's (watched=implicit, liked=rating>=4 over the whole space, 4 sampled
negatives per rating, per-user temporal split 70/10/20, genres as the item feature; the
default settings: MMoE 4 experts [64, 32], towers [32], emb 16, Adam lr 0.01, weight decay 1e-4,
batch 1024, 8 epochs). "+ text" adds the language-model vectors of titles and tags
(all-MiniLM-L6-v2, `--text-features`). A history is the user's last L *training*
interactions strictly before each example (mtrlib.data.history); at test time, the user's
latest training history.

1. `--select` trains, on seed 0 and ids + genres, mean pooling at each L of `--lengths` with
   every interaction and with only liked items, then each encoder's own variants at the best of
   those; the choice is the best mean validation AUC (watched, liked). Test metrics are
   recorded but never read by the choice. Written to bench/out/history-select.json.
2. The grid: {none, mean, din, sasrec} x {ids + genres, + text} x seeds at the chosen settings:
   validation and test AUC per task, and NDCG@10 of each task's full ranking of the test
   positives (`mtrlib.serve.recommend.rank_eval`, every item the user has not met in training or
   validation is a candidate). Written to bench/out/history.json as each run ends.
3. `--speed`: one epoch of the trainer per contender (no history, mean, DIN, SASRec; ids +
   genres, the chosen L), interleaved round by round (the machine is shared), medians of
   `--repeats` after a warm-up; samples/s is the trainer's own (the training loop only). After
   each epoch, the seconds of one full scoring pass (`iter_scores`: every user x every item,
   the model work of a full ranking) of the model just trained.

The last line printed is one JSON object: the per-cell means and 95% intervals, the paired
differences against no history, the speed ratios and whether the issue's targets are met.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mtrlib.eval.ranking import in_sorted, topk_metrics  # noqa: E402
from mtrlib.serve.cascade import mask_seen, seen_csr  # noqa: E402
from mtrlib.serve.fusion import fusion_transform  # noqa: E402
from mtrlib.serve.recommend import rank_eval, task_index  # noqa: E402
from mtrlib.runs import RunWriter, load_run, train_and_save  # noqa: E402
from mtrlib.serve.scoring import iter_scores  # noqa: E402
from mtrlib.eval.stats import mean_ci, paired_difference, verdict  # noqa: E402
from mtrlib.train.loop import prepare, train  # noqa: E402
from mtrlib.train.predict import evaluate  # noqa: E402

TASKS = ("watched", "liked")
ENCODERS = ("none", "mean", "din", "sasrec")
FEATURES = ("genres", "text")  # ids + genres; ids + genres + language-model text
TARGET = {"watched": 0.86, "liked": 0.87}  # the issue's, MMoE or better
SELECT_PATH = C.OUT / "history-select.json"
GRID_PATH = C.OUT / "history.json"


def config(enc: str, features: str, seed: int, settings: dict, epochs: int):
    cfg = C.ml_config("mmoe", use_features=True, epochs=epochs, seed=seed)
    cfg.model.text_features = features == "text"
    if enc != "none":
        cfg.model.history = int(settings["history"])
        cfg.model.history_encoder = enc
        cfg.model.history_task = settings.get("history_task")
        for k, v in settings.get(enc, {}).items():
            setattr(cfg.model, k, v)
    return cfg


def ndcg10(run_path) -> dict[str, float]:
    """NDCG@10 of each task's full ranking of its test positives, from ONE scoring pass: what
    `mtrlib.serve.recommend.rank_eval(run, task=t)` computes task by task (candidates: every item the
    user met in neither training nor validation; averaged over users with a test positive).
    DIN scores every (user, item) pair with its own attention, so one pass instead of two
    halves the cost; `check_ndcg10` compares it with rank_eval once per benchmark run."""
    run = load_run(run_path)
    te, n_i = run.test, run.n_items
    seen = run.seen_keys()
    indptr, seen_items = seen_csr(run, keys=seen)
    per = {}
    for t in TASKS:
        j = task_index(run, t)
        pos = te["mask"][:, j] & (te["labels"][:, j] == 1)
        keys = np.unique(te["user"][pos].astype(np.int64) * n_i + te["item"][pos].astype(np.int64))
        keys = keys[~in_sorted(keys, seen)]
        per[t] = (j, keys, np.bincount(keys // n_i, minlength=run.n_users))
    users = np.unique(np.concatenate([k // n_i for _, k, _ in per.values()]))
    sums = dict.fromkeys(TASKS, 0.0)
    for lo, hi, preds in iter_scores(run.model, users, None):
        rows = users[lo:hi]
        tr = fusion_transform(run.model, preds)
        for t, (j, keys, n_pos) in per.items():
            has = n_pos[rows] > 0
            if not has.any():
                continue
            S = tr[..., j][torch.as_tensor(has)]
            mask_seen(S, rows[has], indptr, seen_items)
            top = torch.topk(S, 10, dim=1).indices.cpu().numpy()
            sums[t] += float(topk_metrics(top, rows[has], keys, n_pos[rows[has]], n_i, (10,))["ndcg@10"].sum())
    return {t: sums[t] / max(1, int((per[t][2] > 0).sum())) for t in TASKS}


def check_ndcg10(run_path, got: dict) -> None:
    """`ndcg10` must agree with the library's rank_eval (run once, on the first saved run)."""
    for t in TASKS:
        ref = rank_eval(run_path, task=t)["model"]["ndcg@10"]
        assert abs(ref - got[t]) < 1e-6, (t, ref, got[t])


def one_run(cfg, prep, prep_wide=None, ndcg: bool = False, check: bool = False) -> dict:
    """Train; with `prep_wide` (the same data with history_pool='train+val') also the test metrics
    when test examples read the validation period too (the same trained model); with `ndcg` the
    NDCG@10 of each task under each pool (saved to a temporary store: a ranking reads a run)."""
    t0 = time.perf_counter()
    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        if ndcg:
            res, writer = train_and_save(cfg, prep, store=d)
        else:
            res = train(cfg, prep)
        t1 = time.perf_counter()
        if ndcg:
            got = ndcg10(writer.path)
            if check:
                check_ndcg10(writer.path, got)
            out.update({f"ndcg@10/{t}": v for t, v in got.items()})
        if prep_wide is not None:
            wide = evaluate(res.model, prep_wide.test, prep_wide.tasks)
            out["test_trainval"] = {t: wide[t]["auc"] for t in TASKS}
            if ndcg:  # the same weights, with the latest histories of the wider pool
                w2 = RunWriter(cfg_wide(cfg), prep_wide, store=d)
                w2.finish(res)
                out.update({f"ndcg@10_trainval/{t}": v for t, v in ndcg10(w2.path).items()})
        out["rank_seconds"] = time.perf_counter() - t1
    out.update({"status": res.status, "seconds": time.perf_counter() - t0, "samples_per_s": res.samples_per_s,
                "val": {t: res.val_metrics[t]["auc"] for t in TASKS},
                "test": {t: res.metrics[t]["auc"] for t in TASKS}})
    return out


def cfg_wide(cfg):
    """The same config with test examples also reading the validation period (history_pool)."""
    from mtrlib.config import TrainConfig
    wide = TrainConfig.from_dict(cfg.to_dict())
    if wide.model.history:
        wide.model.history_pool = "train+val"
    return wide


def _load(path: Path) -> dict:
    return json.loads(path.read_text())["results"] if path.exists() else {}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- 1. selection on validation ---------------------------------------------------------------------

def _val(r: dict) -> float:
    return statistics.mean(r["val"][t] for t in TASKS)


def select(args) -> dict:
    results = _load(SELECT_PATH)
    ds = C.load_ml()
    preps: dict = {}

    def run(name: str, enc: str, settings: dict) -> dict:
        if name not in results:
            cfg = config(enc, "genres", 0, settings, args.epochs)
            key = (cfg.model.history, cfg.model.history_task)
            if key not in preps:
                preps.clear()
                preps[key] = prepare(cfg, ds)
            r = one_run(cfg, preps[key])
            r["settings"] = settings
            results[name] = r
            C.save_json(SELECT_PATH, {"results": results})
            _log(f"  select {name:34s} val {r['val']['watched']:.4f} / {r['val']['liked']:.4f} ({r['seconds']:.0f}s)")
        return results[name]

    run("none", "none", {"history": 0})
    base = []
    for L in args.lengths:
        for task in (None, "liked"):
            s = {"history": L, "history_task": task}
            base.append((run(f"mean|L{L}|{task or 'all'}", "mean", s), s))
    best_r, best = max(base, key=lambda rs: _val(rs[0]))
    chosen = {"history": best["history"], "history_task": best["history_task"]}
    for enc, variants in (("din", [{"history_attention": [36]}, {"history_attention": [16]}]),
                          ("sasrec", [{"history_blocks": 1, "history_heads": 1}, {"history_blocks": 2, "history_heads": 2}])):
        tried = [(run(f"{enc}|{json.dumps(v, sort_keys=True)}", enc, {**chosen, enc: v}), v)
                 for v in variants[:args.variants]]
        chosen[enc] = max(tried, key=lambda rv: _val(rv[0]))[1]
    results["chosen"] = chosen
    C.save_json(SELECT_PATH, {"results": results})
    return chosen


# -- 2. the grid ----------------------------------------------------------------------------------------

def grid(args, chosen: dict) -> dict:
    results = _load(GRID_PATH)
    ds = C.load_ml()
    for seed in args.seeds:
        for features in args.features:
            todo = [e for e in args.encoders if f"{e}|{features}|{seed}" not in results]
            prep_for: dict = {}
            for enc in todo:
                cfg = config(enc, features, seed, chosen, args.epochs)
                key = (cfg.model.history, cfg.model.history_task)
                if key not in prep_for:
                    prep_for.clear()
                    wide = enc != "none" and "train+val" in args.pools
                    prep_for[key] = (prepare(cfg, ds), prepare(cfg_wide(cfg), ds) if wide else None)
                prep, wide = prep_for[key]
                r = one_run(cfg, prep, wide, ndcg=True, check=not results)
                if enc == "none" and "train+val" in args.pools:  # no history: both pools are the same
                    r["test_trainval"] = dict(r["test"])
                    r.update({f"ndcg@10_trainval/{t}": r[f"ndcg@10/{t}"] for t in TASKS})
                r.update({"encoder": enc, "features": features, "seed": seed, "settings": chosen})
                results[f"{enc}|{features}|{seed}"] = r
                results = {**_load(GRID_PATH), **results}  # keep what a parallel run (other seeds) saved
                C.save_json(GRID_PATH, {"results": results})
                tv = r.get("test_trainval")
                _log(f"  {enc:6s} {features:6s} seed {seed}: test {r['test']['watched']:.4f} / {r['test']['liked']:.4f}"
                     f"  ndcg@10 {r['ndcg@10/watched']:.4f} / {r['ndcg@10/liked']:.4f}"
                     + (f"  (train+val: {tv['watched']:.4f} / {tv['liked']:.4f})" if tv else "")
                     + f"  ({r['seconds']:.0f}s, ranking {r['rank_seconds']:.0f}s)")
    return results


# -- 3. speed ---------------------------------------------------------------------------------------------

def speed(args, chosen: dict) -> dict:
    ds = C.load_ml()
    contenders = {}
    for enc in [e for e in ENCODERS if e in args.encoders]:
        cfg = config(enc, "genres", 0, chosen, 1)
        contenders[enc] = (cfg, prepare(cfg, ds))
    rates: dict = {e: [] for e in contenders}
    score_s: dict = {e: [] for e in contenders}
    order = list(contenders)
    users = None
    for rnd in range(args.repeats + 1):  # round 0 warms up
        for enc in order[rnd % len(order):] + order[:rnd % len(order)]:
            cfg, prep = contenders[enc]
            res = train(cfg, prep)
            users = np.arange(res.model.n_users) if users is None else users
            t0 = time.perf_counter()  # the full ranking's model work: every user x every item
            for _ in (iter_scores(res.model, users, None) if args.scoring else ()):
                pass
            dt = time.perf_counter() - t0 if args.scoring else float("nan")
            if rnd:
                rates[enc].append(res.samples_per_s)
                score_s[enc].append(dt)
            _log(f"  speed round {rnd} {enc:6s} {res.samples_per_s:,.0f} samples/s, scoring {dt:.2f}s")
    med = {e: statistics.median(v) for e, v in rates.items()}
    smed = {e: statistics.median(v) for e, v in score_s.items()}
    out = {"samples_per_s": med, "runs": rates, "ratio": {e: med[e] / med["none"] for e in med},
           "scoring_s": smed, "scoring_runs": score_s, "scoring_ratio": {e: smed[e] / smed["none"] for e in smed},
           "pairs": int(len(users)) * int(res.model.n_items), "loadavg": C.loadavg(), "history": chosen["history"]}
    C.save_json(C.OUT / "history-speed.json", out)
    return out


# -- report -------------------------------------------------------------------------------------------------

POOLS = {"train": ("test", "ndcg@10"), "train+val": ("test_trainval", "ndcg@10_trainval")}


def _metric(r: dict, pool: str, kind: str, t: str) -> float:
    auc_key, ndcg_key = POOLS[pool]
    return r["val"][t] if kind == "val" else r[auc_key][t] if kind == "auc" else r[f"{ndcg_key}/{t}"]


def report(results: dict, chosen: dict, spd: dict | None) -> dict:
    """Per pool (train: the issue's protocol; train+val: test examples also read the validation
    period), per encoder x features: mean and 95% interval over seeds, the paired difference to
    no history. The cell held against the targets is the one with the best validation AUC."""
    metrics = [("auc", t) for t in TASKS] + [("ndcg", t) for t in TASKS]
    runs = [r for r in results.values() if isinstance(r, dict) and "encoder" in r]

    def series(enc, feat):
        return sorted((r for r in runs if r["encoder"] == enc and r["features"] == feat), key=lambda r: r["seed"])

    out: dict = {"chosen": chosen, "targets": TARGET,
                 "speed": spd and {"ratio": spd["ratio"], "samples_per_s": spd["samples_per_s"],
                                   "scoring_s": spd.get("scoring_s"), "scoring_ratio": spd.get("scoring_ratio")},
                 "pools": {}}
    for pool in POOLS:
        if pool != "train" and not any("test_trainval" in r for r in runs):
            continue  # the grid was run with --pools train
        cells, lines = {}, [f"pool {pool}:", "| history | features | watched AUC | liked AUC | NDCG@10 watched | "
                            "NDCG@10 liked | val AUC (mean) | samples/s vs none |", "|---|---|---|---|---|---|---|---|"]
        for feat in FEATURES:
            base = {r["seed"]: r for r in series("none", feat)}
            for enc in ENCODERS:
                rs = [r for r in series(enc, feat) if pool == "train" or "test_trainval" in r]
                if not rs:
                    continue
                cell = {f"{k}/{t}": mean_ci([_metric(r, pool, k, t) for r in rs]) for k, t in metrics}
                cell["val"] = mean_ci([statistics.mean(r["val"][t] for t in TASKS) for r in rs])
                common = [r for r in rs if r["seed"] in base]
                if enc != "none" and len(common) >= 2:
                    for k, t in metrics:
                        d = paired_difference([_metric(base[r["seed"]], pool, k, t) for r in common],
                                              [_metric(r, pool, k, t) for r in common])
                        cell[f"diff/{k}/{t}"], cell[f"verdict/{k}/{t}"] = d, verdict(d)
                ratio = spd["ratio"].get(enc) if spd and feat == "genres" else None
                cells[f"{enc}|{feat}"] = cell
                lines.append(f"| {enc} | {'ids + genres' if feat == 'genres' else '+ text'} | "
                             + " | ".join(str(cell[f"{k}/{t}"]) for k, t in metrics)
                             + f" | {cell['val']} | {f'{ratio:.2f}x' if ratio else '-'} |")
        print("\n".join(lines), file=sys.stderr)
        hist = {k: c for k, c in cells.items() if not k.startswith("none|")}
        met = None
        if hist:
            key = max(hist, key=lambda k: hist[k]["val"].mean)  # chosen on validation, never on test
            c, b = hist[key], cells.get("none|" + key.split("|")[1], {})
            met = {"cell": key, "watched": c["auc/watched"].mean >= TARGET["watched"],
                   "liked": c["auc/liked"].mean >= TARGET["liked"],
                   "ndcg_above_no_history": bool(b) and all(c[f"ndcg/{t}"].mean > b[f"ndcg/{t}"].mean for t in TASKS)}
        out["pools"][pool] = {"cells": {k: {m: (v.pair() if hasattr(v, "pair") else v) for m, v in c.items()}
                                        for k, c in cells.items()}, "best_on_validation": met}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--select", action="store_true", help="choose the settings on validation (seed 0)")
    ap.add_argument("--speed", action="store_true", help="training samples/s side by side")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--encoders", default=",".join(ENCODERS))
    ap.add_argument("--features", default=",".join(FEATURES))
    ap.add_argument("--lengths", default="20,50,100")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-scoring", dest="scoring", action="store_false",
                    help="--speed: training samples/s only, without the full-scoring pass")
    ap.add_argument("--variants", type=int, default=2, help="--select: how many of each encoder's variants "
                    "to try (1: only its defaults; DIN attention [36], SASRec 1 block 1 head)")
    ap.add_argument("--pools", default="train,train+val", help="the grid's test-time history pools; "
                    "'train' alone skips the train+val re-evaluation (about half the ranking time)")
    args = ap.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.encoders = [e for e in args.encoders.split(",") if e]
    args.features = [f for f in args.features.split(",") if f]
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    args.pools = [p for p in args.pools.split(",") if p]
    if not C.ml_available():
        print(json.dumps({"error": f"ml-latest-small not found in {C.ML_DIR}"}))
        return
    chosen = _load(SELECT_PATH).get("chosen")
    if args.select or (chosen is None and not args.report_only):
        _log("selecting settings on validation ...")
        chosen = select(args)
        _log(f"chosen: {json.dumps(chosen)}")
    spd_path = C.OUT / "history-speed.json"
    if args.speed:
        speed(args, chosen)
    elif not args.report_only and not args.select:
        grid(args, chosen)
    spd = json.loads(spd_path.read_text()) if spd_path.exists() else None
    print(C.json_line(report(_load(GRID_PATH), chosen, spd)))


if __name__ == "__main__":
    main()
