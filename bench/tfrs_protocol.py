"""The TensorFlow Recommenders multitask protocol on ml-latest-small (issue 17).

TFRS's multitask tutorial ("Multi-task recommenders", tensorflow.org/recommenders) trains a
rating regression task and a retrieval task on shared user and movie embeddings (dim 32) of
MovieLens 100k, with loss weights (rating, retrieval) = (1, 0), (0, 1) and (1, 1), and reports
test RMSE and top-100 accuracy (FactorizedTopK: for each test pair, is the movie in the user's
top 100 of all movies; seen movies not excluded). Here: the same on ml-latest-small, a random
80/20 split of the ratings (5% of the 80 kept for validation, on which the settings were
chosen: `--select`), ids only, `rating=rating:reg` + `r=retrieval`, a Shared-Bottom MLP
[256, 128] as the rating model (TFRS's), the retrieval towers as one linear map to 32
dimensions. Every number comes from the library's own paths: training metrics for RMSE,
`rank_eval(..., stage="retrieval", topk_accuracy=100)` (= `eval RUN --stage retrieval
--topk-accuracy 100`) for top-100 accuracy. Mean ± 95% CI over seeds (mtrlib.eval.stats).

    python bench/tfrs_protocol.py --seeds 5            # the table (about 15 min on 1 busy core)
    python bench/tfrs_protocol.py --select             # the validation grid that chose the settings

The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, load_ml, machine, ml_available, save_json  # noqa: E402

# TFRS's published ml-100k figures (the tutorial's output): (RMSE, top-100 accuracy)
TFRS_100K = {"rating specialist (1, 0)": (1.113, 0.060), "retrieval specialist (0, 1)": (3.688, 0.233),
             "joint (1, 1)": (1.110, 0.235)}
WEIGHTS = {"rating specialist (1, 0)": (1.0, 0.0), "retrieval specialist (0, 1)": (0.0, 1.0),
           "joint (1, 1)": (1.0, 1.0)}
SETTINGS = dict(epochs=3, batch_size=1024, retrieval_temperature=0.1)  # chosen on validation (--select)


def config(seed: int, w_rating: float, w_retrieval: float, epochs: int, batch_size: int, temperature: float):
    from mtrlib.config import DataConfig, ModelConfig, TrainConfig
    data = DataConfig(source="files", tasks=["rating=rating:reg", "r=retrieval"], split="random", val_frac=0.05,
                      test_frac=0.2, use_features=False)
    model = ModelConfig(arch="shared-bottom", emb_dim=32, towers=[], retrieval_dim=32,
                        retrieval_layers=[], retrieval_temperature=temperature)
    model.options.shared = [256, 128]  # Shared-Bottom's own option (mtrlib.config: model.options)
    return TrainConfig(data=data, model=model, epochs=epochs, batch_size=batch_size, seed=seed, device="cpu",
                       weights={"rating": w_rating, "r": w_retrieval})


def one(ds, store: Path, seed: int, weights: tuple[float, float], **settings) -> dict:
    from mtrlib.train.prepare import prepare
    from mtrlib.serve.recommend import rank_eval
    from mtrlib.runs import load_run, train_and_save

    cfg = config(seed, *weights, settings["epochs"], settings["batch_size"], settings["retrieval_temperature"])
    t0 = time.perf_counter()
    res, writer = train_and_save(cfg, prepare(cfg, ds), store=store)
    train_s = time.perf_counter() - t0
    ev = rank_eval(load_run(writer.path), task="r", stage="retrieval", topk_accuracy=100)
    val = res.history.epochs
    return {"seed": seed, "rmse": res.metrics["rating"]["rmse"], "top100": ev["model"]["topk_accuracy@100"],
            "popularity_top100": ev["popularity"]["topk_accuracy@100"], "train_s": train_s,
            "val_rmse": [e["val/rating/rmse"] for e in val], "val_recall@100": [e["val/r/recall@100"] for e in val]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--select", action="store_true", help="the validation grid (seed 0, joint model)")
    a = ap.parse_args()
    if not ml_available():
        print(json.dumps({"error": "ml-latest-small not found under ../shared/data"}))
        return 1
    from mtrlib.train.device import cpu_compute
    from mtrlib.eval.stats import mean_ci, paired_difference, verdict

    ds = load_ml(genres_only=True)
    store = Path(tempfile.mkdtemp(prefix="tfrs-store-"))
    out: dict = {"machine": machine(), "settings": SETTINGS}
    try:
        with cpu_compute(1):
            if a.select:
                grid = []
                for bs in (1024, 4096):
                    for temp in (0.05, 0.1, 0.2):
                        r = one(ds, store, 0, (1.0, 1.0), epochs=12, batch_size=bs, retrieval_temperature=temp)
                        best = max(range(len(r["val_recall@100"])), key=lambda e: r["val_recall@100"][e])
                        row = {"batch_size": bs, "temperature": temp, "best_epoch_recall": best + 1,
                               "val_recall@100": r["val_recall@100"], "val_rmse": r["val_rmse"]}
                        grid.append(row)
                        print(f"batch {bs} temp {temp}: val recall@100 by epoch "
                              + " ".join(f"{v:.3f}" for v in r["val_recall@100"]) + " | val rmse "
                              + " ".join(f"{v:.3f}" for v in r["val_rmse"]), flush=True)
                out["grid"] = grid
                print(json.dumps(out))
                return 0
            rows = {}
            for name, w in WEIGHTS.items():
                rows[name] = [one(ds, store, s, w, **SETTINGS) for s in range(a.seeds)]
                print(f"{name}: " + ", ".join(f"seed {r['seed']} rmse {r['rmse']:.4f} top100 {r['top100']:.4f}"
                                              for r in rows[name]), flush=True)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    table = {}
    print("\n| model (loss weights rating, retrieval) | RMSE, ml-latest-small (ours) | top-100 accuracy, "
          "ml-latest-small (ours) | RMSE, ml-100k (TFRS) | top-100, ml-100k (TFRS) |")
    print("|---|---|---|---|---|")
    for name, rs in rows.items():
        rmse, top = mean_ci([r["rmse"] for r in rs]), mean_ci([r["top100"] for r in rs])
        table[name] = {"rmse": rmse.pair(), "top100": top.pair(), "n": rmse.n,
                       "tfrs_ml100k": {"rmse": TFRS_100K[name][0], "top100": TFRS_100K[name][1]}}
        print(f"| {name} | {rmse} | {top} | {TFRS_100K[name][0]:.3f} | {TFRS_100K[name][1]:.3f} |")
    pop = mean_ci([r["popularity_top100"] for rs in rows.values() for r in rs])
    print(f"| popularity (top 100 most rated) | – | {pop} | – | – |")
    # the joint model against each specialist on its own metric, paired by seed (same split)
    rat, ret, joint = (rows[k] for k in WEIGHTS)
    d_rmse = paired_difference([r["rmse"] for r in rat], [r["rmse"] for r in joint])
    d_top = paired_difference([r["top100"] for r in ret], [r["top100"] for r in joint])
    verdicts = {"joint - rating specialist, RMSE": [*d_rmse.pair(), verdict(d_rmse, higher_is_better=False)],
                "joint - retrieval specialist, top-100": [*d_top.pair(), verdict(d_top)]}
    for k, (m, h, v) in verdicts.items():
        print(f"{k}: {m:+.4f} ± {h:.4f} ({v})")
    out.update(table=table, popularity_top100=pop.pair(), seeds=a.seeds, paired=verdicts, runs=rows)
    save_json(OUT / "tfrs_protocol.json", out)
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
