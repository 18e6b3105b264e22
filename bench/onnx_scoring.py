"""Issue 30: onnxruntime against torch for candidate scoring, side by side in one run.

    python bench/onnx_scoring.py [--arch mmoe] [--epochs 1] [--repeats 15] [--threads 1]

Data: ml-latest-small (610 users x 9,742 items; the README protocol, mtrlib's loader) when it is
beside the checkout, else the built-in world. One run is trained, saved and exported with
`export RUN --onnx DIR`. Then, per round (interleaved, medians over `--repeats` rounds):

- one user's 200 candidates: torch `score_candidates` (the cascade's ranking stage, factorised
  first layer) against `OnnxScorer.predict_rows` (the plain graph over 200 pairs);
- the full catalogue for one user: torch `score_matrix` against `OnnxScorer.predict_rows` over
  every item.

Both on `--threads` intra-op threads. Target: onnxruntime at least as fast as torch for the
200 candidates (ratio torch / onnxruntime >= 1). Outputs are checked equal first (1e-5). The
last line is one JSON object.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT, json_line, load_ml, loadavg, machine, ml_available, ml_config, save_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="mmoe")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--candidates", type=int, default=200)
    a = ap.parse_args()

    import numpy as np
    import torch

    from mtrlib.config import TrainConfig
    from mtrlib.runs import load_run, recorded_training
    from mtrlib.serve.onnx_export import export_onnx
    from mtrlib.serve.onnx_scorer import OnnxScorer
    from mtrlib.serve.scoring import score_candidates, score_matrix
    from mtrlib.train.prepare import prepare

    tmp = Path(tempfile.mkdtemp())
    if ml_available():
        cfg, ds, data = ml_config(a.arch, epochs=a.epochs), load_ml(), "ml-latest-small"
    else:
        cfg, ds, data = TrainConfig(epochs=a.epochs), None, "world (default)"
        cfg.model.arch = a.arch
    cfg.cpu_threads = a.threads
    prep = prepare(cfg, ds)
    _, writer = recorded_training(cfg, prep, store=tmp / "runs")
    run = load_run(writer.path)
    t0 = time.perf_counter()
    export_onnx(run, tmp / "onnx")
    export_s = time.perf_counter() - t0
    scorer = OnnxScorer(tmp / "onnx", threads=a.threads)
    model = run.model
    rng = np.random.default_rng(0)
    n_items = run.n_items
    users = rng.integers(0, run.n_users, a.repeats)
    cands = [rng.choice(n_items, a.candidates, replace=False) for _ in users]
    torch.set_num_threads(a.threads)

    # equal first
    u, c = int(users[0]), cands[0]
    want = score_candidates(model, [u], c[None], threads=a.threads)[0].numpy()
    got = scorer.predict_rows(np.full(len(c), u), c)
    err_cand = float(np.abs(got - want).max())
    full_t = score_matrix(model, [u], threads=a.threads)[0]
    full_o = scorer.predict_rows(np.full(n_items, u), np.arange(n_items))
    err_full = float(np.abs(full_o - full_t).max())

    times = {"torch_candidates": [], "onnx_candidates": [], "torch_full": [], "onnx_full": []}
    all_items = np.arange(n_items)
    for u, c in zip(users, cands):
        u = int(u)
        t = time.perf_counter()
        score_candidates(model, [u], c[None], threads=a.threads)
        times["torch_candidates"].append(time.perf_counter() - t)
        t = time.perf_counter()
        scorer.predict_rows(np.full(len(c), u), c)
        times["onnx_candidates"].append(time.perf_counter() - t)
        t = time.perf_counter()
        score_matrix(model, [u], threads=a.threads)
        times["torch_full"].append(time.perf_counter() - t)
        t = time.perf_counter()
        scorer.predict_rows(np.full(n_items, u), all_items)
        times["onnx_full"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    out = {"bench": "onnx_scoring", "data": data, "arch": a.arch, "items": n_items, "candidates": a.candidates,
           "threads": a.threads, "repeats": a.repeats, "export_s": round(export_s, 2),
           "max_abs_diff": {"candidates": err_cand, "full": err_full},
           "median_ms": {k: round(v, 3) for k, v in med.items()},
           "ratio_torch_over_onnx": {"candidates": round(med["torch_candidates"] / med["onnx_candidates"], 2),
                                     "full": round(med["torch_full"] / med["onnx_full"], 2)},
           "target_candidates_ratio_ge_1": med["torch_candidates"] >= med["onnx_candidates"],
           "loadavg": loadavg(), "machine": machine()}
    save_json(OUT / "onnx_scoring.json", out)
    print(json_line(out))


if __name__ == "__main__":
    main()
