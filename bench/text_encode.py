"""Time all-MiniLM-L6-v2 on ml-latest-small's movies (title + genres): first encode, then cached load.

    python bench/text_encode.py [--movies ../shared/data/ml-latest-small/movies.csv]
                                [--cache-dir DIR] [--device cpu] [--batch-size 64] [--limit N]

Uses a fresh temp cache unless --cache-dir is given. The cached load is timed twice: in this
process, and in a fresh process (what a second CLI run or dashboard start sees), where it
must not import sentence-transformers. Last line: one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mtrlib.data import text  # noqa: E402
from mtrlib.data import Dataset  # noqa: E402

DEFAULT_MOVIES = REPO.parent / "shared" / "data" / "ml-latest-small" / "movies.csv"


def movies_dataset(path: Path, limit: int | None) -> Dataset:
    m = pd.read_csv(path, dtype={"movieId": str})
    if limit:
        m = m.head(limit)
    items = m.set_index("movieId")[["title", "genres"]]
    items.index.name = "item_id"
    inter = pd.DataFrame({"user_id": pd.Series(dtype=str), "item_id": pd.Series(dtype=str)})
    return Dataset(interactions=inter, items=items, users=pd.DataFrame(), layout="movielens-latest",
                   name="ml-latest-small movies", item_features={"title": "text", "genres": "multi"},
                   title_column="title", text_columns=["title"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--movies", type=Path, default=DEFAULT_MOVIES)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()

    ds = movies_dataset(a.movies, a.limit)
    cols = ["title", "genres"]
    tmp = None
    if a.cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mtr-text-bench-")
        cache = Path(tmp.name)
    else:
        cache = a.cache_dir
    print(f"{ds.n_items} movies, e.g. {text.item_texts(ds, cols)[0]!r}; cache {cache}", flush=True)

    t0 = time.perf_counter()
    text.load_encoder(a.device)
    t_load = time.perf_counter() - t0
    print(f"model import + load: {t_load:.1f}s", flush=True)

    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 15 or done == total:
            last[0] = now
            print(f"  {done}/{total}  {now - t1:.0f}s", flush=True)

    t1 = time.perf_counter()
    v1 = text.item_text_vectors(ds, cols, device=a.device, batch_size=a.batch_size, progress=progress,
                                cache_dir=cache)
    t_encode = time.perf_counter() - t1
    print(f"first encode: {t_encode:.1f}s ({ds.n_items / t_encode:.0f} items/s)", flush=True)

    t2 = time.perf_counter()
    v2 = text.item_text_vectors(ds, cols, cache_dir=cache)
    t_cached = time.perf_counter() - t2
    assert np.array_equal(v1, v2)
    print(f"cached load, same process: {t_cached:.3f}s", flush=True)

    code = (
        "import sys, time, json; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]);"
        "import text_encode as b; from mtrlib.data import text; from pathlib import Path;"
        "ds = b.movies_dataset(Path(sys.argv[3]), int(sys.argv[5]) or None); t = time.perf_counter();"
        "v = text.item_text_vectors(ds, ['title', 'genres'], cache_dir=sys.argv[4]);"
        "print(json.dumps({'s': time.perf_counter() - t, 'st': 'sentence_transformers' in sys.modules,"
        " 'sum': float(v.sum())}))"
    )
    r = subprocess.run([sys.executable, "-c", code, str(REPO), str(REPO / "bench"), str(a.movies), str(cache),
                        str(a.limit or 0)], capture_output=True, text=True, check=True)
    fresh = json.loads(r.stdout.strip().splitlines()[-1])
    assert abs(fresh["sum"] - float(v1.sum())) < 1e-2
    print(f"cached load, fresh process: {fresh['s']:.3f}s (sentence_transformers imported: {fresh['st']})",
          flush=True)
    size = sum(p.stat().st_size for p in (cache / text.MODEL_NAME).glob("*.npz"))

    print(json.dumps({
        "bench": "text_encode", "model": text.MODEL_NAME, "device": text.resolve_device(a.device),
        "items": ds.n_items, "columns": cols, "batch_size": a.batch_size, "cpu_count": os.cpu_count(),
        "torch_threads": __import__("torch").get_num_threads(),
        "model_load_s": round(t_load, 2), "encode_s": round(t_encode, 2),
        "items_per_s": round(ds.n_items / t_encode, 1), "cached_same_process_s": round(t_cached, 3),
        "cached_fresh_process_s": round(fresh["s"], 3), "fresh_imported_sentence_transformers": fresh["st"],
        "cache_bytes": size,
    }))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
