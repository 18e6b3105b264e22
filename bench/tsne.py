"""t-SNE speed for the Embeddings page: openTSNE (what `mtrlib.viz.project` uses) against
scikit-learn's Barnes-Hut (what it used), side by side on the same points, in one process.

The points: 5,000 item-like vectors (16-d, 8 clusters; the page's default cap for t-SNE is
10,000, a typical world or MovieLens view is a few thousand). Both run with the page's t-SNE
threads (`mtrlib.viz.project.TSNE_THREADS`: the machine's cores, at most 4), alternately,
`--repeats` times each; the medians are compared. openTSNE runs through the page's own path
(`mtrlib.viz.project.reduce`); scikit-learn as the page used to call it (PCA init, automatic
learning rate, 500 iterations above 2,000 points). Also reported, so that speed is not bought
with a worse picture: each layout's KL divergence (lower is better; each library's own
estimate) and kNN purity by cluster (k = 10). Target: <= 8 s for 5,000 points.

    python bench/tsne.py [--n 5000] [--repeats 3]

The last line is one JSON object: {"n", "threads", "opentsne_s", "sklearn_s", "speedup",
"opentsne_kl", "sklearn_kl", "opentsne_purity", "sklearn_purity", "load", "target_s": 8, "met"}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import json_line, loadavg, machine, median  # noqa: E402

from mtrlib.train.device import cpu_compute  # noqa: E402
from mtrlib.viz.project import TSNE_THREADS, knn_purity, reduce  # noqa: E402


def points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = 2.5 * rng.normal(size=(8, 16))
    labels = rng.integers(0, 8, size=n)
    return centres[labels] + rng.normal(size=(n, 16)), labels


def sklearn_tsne(X: np.ndarray, seed: int = 0, threads: int = 1) -> tuple[np.ndarray, float]:
    from sklearn.manifold import TSNE
    n = len(X)
    with cpu_compute(threads, native=True):
        t = TSNE(n_components=2, perplexity=float(min(30.0, max(2.0, (n - 1) / 3))), init="pca",
                 learning_rate="auto", max_iter=500 if n > 2000 else 1000, random_state=seed, n_jobs=threads)
        return t.fit_transform(X), float(t.kl_divergence_)


def ours(X: np.ndarray, seed: int = 0) -> tuple[np.ndarray, float]:
    C, info = reduce(X, "tsne", 2, seed)
    return C, info["kl_divergence"]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(machine(), file=sys.stderr)
    X, labels = points(args.n)
    times = {"opentsne": [], "sklearn": []}
    layouts, kl = {}, {}
    ours(X[:200]), sklearn_tsne(X[:200], threads=TSNE_THREADS)  # imports, first-call set-up untimed
    loads = []
    for r in range(args.repeats):
        for name, fn in (("opentsne", lambda: ours(X, r)), ("sklearn", lambda: sklearn_tsne(X, r, TSNE_THREADS))):
            t0 = time.perf_counter()
            layouts[name], kl[name] = fn()
            times[name].append(time.perf_counter() - t0)
            loads.append(loadavg()[0])
            print(f"{name} run {r}: {times[name][-1]:.2f} s, KL {kl[name]:.3f} (load {loads[-1]:.1f})",
                  file=sys.stderr, flush=True)
    o, s = median(times["opentsne"]), median(times["sklearn"])
    out = {"n": args.n, "threads": TSNE_THREADS, "opentsne_s": round(o, 2), "sklearn_s": round(s, 2),
           "speedup": round(s / o, 2), "opentsne_kl": round(kl["opentsne"], 3), "sklearn_kl": round(kl["sklearn"], 3),
           "opentsne_purity": round(knn_purity(layouts["opentsne"], labels)["purity"], 3),
           "sklearn_purity": round(knn_purity(layouts["sklearn"], labels)["purity"], 3),
           "load": [round(min(loads), 1), round(max(loads), 1)], "target_s": 8, "met": bool(o <= 8)}
    print(f"t-SNE of {args.n:,} points, {TSNE_THREADS} threads, median of {args.repeats}: openTSNE {o:.2f} s, "
          f"scikit-learn {s:.2f} s ({s / o:.1f}x)", file=sys.stderr)
    print(json_line(out))
    return out


if __name__ == "__main__":
    main()
