"""CUDA check: does training work, and learn the same, on a GPU? Run on a machine with CUDA.

CI has no GPU, so this is not part of the test suite (a skipped test must not count as passing);
it is run by hand on a GPU machine and its results are recorded in BENCHMARKS.md. Every check
compares the GPU with the CPU on the same data and seed, side by side in one run:

1. every architecture trains on CUDA (the synthetic world): finishes, beats popularity, and its
   test AUC is within 0.02 of the same run on the CPU; samples/s on both;
2. every task-weighting method (fixed, uncertainty, GradNorm, DWA) trains on CUDA;
3. a stop request ends a CUDA run within a batch; a far too high learning rate is reported as
   'diverged' (on an accelerator the NaN check runs per progress window, not per step);
4. a run trained on CUDA is saved, then loaded on the CPU by the CLI (`recommend`, `eval`);
5. the CLI's `train --device cuda` and `--device auto` (which must pick cuda) end with the JSON line;
6. ml-latest-small (if --ml is given), MMoE, the models issue's protocol: CUDA vs CPU test AUC
   per task and samples/s, at the default batch size and at 8192;
7. with --ml and the language model installed: item text encoded on CUDA matches the CPU's
   vectors (cosine), the speed of both, and an MMoE with text features trains on CUDA.

Exit status 0 only if every check passes; the last line is one JSON object with all numbers.

    python bench/cuda_check.py [--ml ../shared/data/ml-latest-small] [--out bench/out/cuda_check.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import _common as C  # noqa: E402  (puts the repo on sys.path)
import torch  # noqa: E402

from mtrlib.config import ARCHS, WEIGHTINGS, ModelConfig, TrainConfig  # noqa: E402
from mtrlib.data import WorldConfig  # noqa: E402
from mtrlib.runs import train_and_save  # noqa: E402
from mtrlib.train.loop import prepare, train  # noqa: E402

AUC_TOL = 0.02
DEV = "cuda"  # the device under test (--device cpu: a dry run of the script itself)
results: dict = {"checks": {}, "failed": []}


def check(name: str, ok: bool, detail: str = "") -> None:
    results["checks"][name] = {"ok": bool(ok), "detail": detail}
    if not ok:
        results["failed"].append(name)
    print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)


def aucs(metrics: dict) -> dict[str, float]:
    return {t: round(m["auc"], 4) for t, m in metrics.items() if "auc" in m}


def world_cfg(arch: str, device: str, **kw) -> TrainConfig:
    cfg = TrainConfig(model=ModelConfig(arch=arch), epochs=kw.pop("epochs", 4), seed=0, device=device, **kw)
    cfg.data.world = WorldConfig(n_users=2000, n_items=500, impressions_per_user=40, seed=0)
    return cfg


def cli(*args: str, store: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run `python -m mtrlib ARGS`; (the process, its last line as JSON or None)."""
    env = {**os.environ, "MTR_RUN_STORE": store, "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([sys.executable, "-m", "mtrlib", *args], cwd=C.REPO, env=env, capture_output=True, text=True,
                       timeout=300)
    try:
        return p, json.loads((p.stdout.strip().splitlines() or [""])[-1])
    except json.JSONDecodeError:
        return p, None


def said(p: subprocess.CompletedProcess, out) -> str:
    """What a failed CLI check shows: exit status, the JSON (or output) and the end of stderr."""
    return f"rc={p.returncode} {str(out if out is not None else p.stdout[-200:])[:300]} {p.stderr[-300:]}"


def archs(prep, store: str) -> None:
    results["archs"] = {}
    for arch in ARCHS:
        row = {}
        for dev in ("cpu", DEV):
            cfg = world_cfg(arch, dev)
            res, writer = train_and_save(cfg, prep, store=store, name=f"{arch}-{dev}")
            row[dev] = {"status": res.status, "device": res.device, "auc": aucs(res.metrics),
                        "samples_per_s": round(res.samples_per_s), "path": str(writer.path)}
        row["popularity"] = aucs(res.baseline)
        results["archs"][arch] = row
        c, g = row["cpu"], row[DEV]
        diff = max(abs(c["auc"][t] - g["auc"][t]) for t in c["auc"])
        beats = all(g["auc"][t] > row["popularity"][t] for t in g["auc"])
        check(f"{arch}: trains on cuda", g["status"] == "finished" and g["device"].startswith(DEV),
              f"status={g['status']} device={g['device']}")
        check(f"{arch}: cuda AUC within {AUC_TOL} of cpu", diff <= AUC_TOL,
              f"cpu={c['auc']} cuda={g['auc']} max|diff|={diff:.4f}")
        check(f"{arch}: cuda beats popularity", beats, f"popularity={row['popularity']}")
        print(f"      samples/s cpu {c['samples_per_s']:,}  cuda {g['samples_per_s']:,}", flush=True)


def weightings(prep) -> None:
    results["weightings"] = {}
    for w in WEIGHTINGS:
        res = train(world_cfg("mmoe", DEV, epochs=2, weighting=w), prep)
        results["weightings"][w] = {"status": res.status, "auc": aucs(res.metrics)}
        check(f"weighting {w}: trains on cuda", res.status == "finished" and all(v > 0.6 for v in aucs(res.metrics).values()),
              f"status={res.status} auc={aucs(res.metrics)}")


def stop_and_diverge(prep) -> None:
    stop, steps = threading.Event(), []

    def cb(e):
        if e["type"] == "step":
            steps.append(e["step"])
            stop.set()

    res = train(world_cfg("mmoe", DEV, epochs=50, log_every=1), prep, callback=cb, stop=stop)
    check("stop: a cuda run stops within one batch", res.status == "stopped" and res.history.steps[-1]["step"] == steps[0],
          f"status={res.status} steps={len(res.history.steps)} reason={res.reason!r}")
    res = train(world_cfg("mmoe", DEV, epochs=3, lr=5.0, optimizer="sgd", batch_size=64), prep)
    check("diverge: a far too high learning rate is reported on cuda",
          res.status == "diverged" and "learning rate" in res.reason, f"status={res.status} reason={res.reason!r}")
    finite = all(torch.isfinite(p).all().item() for p in res.model.parameters())
    check("diverge: the last finite weights are kept", finite, "")


def cli_checks(store: str) -> None:
    p, out = cli("train", "--device", DEV, "--epochs", "2", "--users", "800", "--items", "300", "--name", "cli-cuda",
                 "--quiet", store=store)
    results["cli_train_cuda"] = out
    check("cli: train --device cuda ends with the JSON line",
          p.returncode == 0 and (out or {}).get("status") == "finished", said(p, out))
    p, out = cli("train", "--device", "auto", "--epochs", "1", "--users", "800", "--items", "300", "--name", "cli-auto",
                 "--quiet", store=store)
    try:  # the device the trainer resolved 'auto' to, as the run store recorded it
        dev = json.loads((Path(out["run_dir"]) / "metrics.json").read_text())["device"]
    except (OSError, ValueError, TypeError, KeyError):
        dev = "?"
    check("cli: --device auto trains on cuda", p.returncode == 0 and dev.startswith(DEV), f"device={dev} {said(p, out)}")
    p, out = cli("recommend", "cli-cuda", "--user", "u00001", "--k", "5", "--json", store=store)
    check("cli: a cuda-trained run recommends on the cpu", p.returncode == 0 and '"source": "model"' in p.stdout,
          said(p, out))
    p, out = cli("eval", "cli-cuda", "--k", "10", store=store)
    check("cli: a cuda-trained run is evaluated on the cpu", p.returncode == 0 and out is not None, said(p, out))


def movielens(ds) -> None:
    prep = prepare(C.ml_config("mmoe"), ds)
    results["movielens"] = {"n_train": len(prep.train)}
    for bs in (1024, 8192):
        row = {}
        for dev in ("cpu", DEV):
            cfg = C.ml_config("mmoe", device=dev, batch_size=bs)
            t = time.perf_counter()
            res = train(cfg, prep)
            row[dev] = {"status": res.status, "auc": aucs(res.metrics), "samples_per_s": round(res.samples_per_s),
                        "wall_s": round(time.perf_counter() - t, 1)}
        row["cuda_vs_cpu_speed"] = round(row[DEV]["samples_per_s"] / max(row["cpu"]["samples_per_s"], 1), 2)
        results["movielens"][f"batch_{bs}"] = row
        diff = max(abs(row["cpu"]["auc"][t] - row[DEV]["auc"][t]) for t in row["cpu"]["auc"])
        check(f"ml-latest-small MMoE batch {bs}: cuda AUC within {AUC_TOL} of cpu",
              row[DEV]["status"] == "finished" and diff <= AUC_TOL,
              f"cpu={row['cpu']['auc']} cuda={row[DEV]['auc']} samples/s cpu {row['cpu']['samples_per_s']:,} "
              f"cuda {row[DEV]['samples_per_s']:,} ({row['cuda_vs_cpu_speed']}x)")


def text_features(ds) -> None:
    import numpy as np

    from mtrlib.data import text
    ok, why = text.is_available()
    if not ok:
        check("text: the language model is available", False, why)
        return
    texts = text.item_texts(ds)[:2000]
    row = {"texts": len(texts)}
    vecs = {}
    for dev in ("cpu", DEV):
        text.load_encoder(dev)  # loading is not encoding
        with tempfile.TemporaryDirectory() as cache:
            t = time.perf_counter()
            vecs[dev] = text.encode_texts(texts, device=dev, cache_dir=cache)
            row[f"{dev}_texts_per_s"] = round(len(texts) / (time.perf_counter() - t))
    cos = float((vecs["cpu"] * vecs[DEV]).sum(1).min())
    row["min_cosine_cpu_vs_cuda"] = round(cos, 6)
    results["text"] = row
    check("text: cuda vectors match the cpu's", cos > 0.999,
          f"min cosine {cos:.6f}; texts/s cpu {row['cpu_texts_per_s']:,} cuda {row[DEV + '_texts_per_s']:,}")
    cfg = C.ml_config("mmoe", device=DEV)
    cfg.model.text_features = True
    t = time.perf_counter()
    prep = prepare(cfg, ds)  # encodes every item's text on the device
    row["prepare_s"] = round(time.perf_counter() - t, 1)
    res = train(cfg, prep)
    row["mmoe_text_auc"] = aucs(res.metrics)
    check("text: MMoE with text features trains on cuda",
          res.status == "finished" and np.isfinite(prep.space.item_text).all() and min(aucs(res.metrics).values()) > 0.8,
          f"status={res.status} auc={aucs(res.metrics)} prepare {row['prepare_s']} s")


def guarded(name: str, fn, *args):
    """fn(*args); a crash is a failed check (traceback printed) and the other parts still run."""
    try:
        return fn(*args)
    except Exception as e:
        traceback.print_exc()
        check(f"crashed: {name}", False, f"{type(e).__name__}: {e}")
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ml", type=Path, help="ml-latest-small folder (ratings.csv, movies.csv)")
    ap.add_argument("--out", type=Path, help="also write the JSON results here")
    ap.add_argument("--device", default="cuda", help="device under test (cpu: dry-run this script)")
    a = ap.parse_args(argv)
    global DEV
    DEV = a.device
    if DEV == "cuda" and not torch.cuda.is_available():
        print(json.dumps({"error": "CUDA is not available on this machine: run this on a GPU machine."}))
        return 2
    results["machine"] = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if DEV == "cuda" else None,
                          "cpu_threads_default": 1, "cpus": os.cpu_count()}
    print(json.dumps(results["machine"]), flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as store:
        os.environ["MTR_CACHE_DIR"] = store  # the text cache starts empty
        world = guarded("world data", prepare, world_cfg("mmoe", "cpu"))  # one split + encoding for 3 parts
        if world is not None:
            guarded("archs", archs, world, store)
            guarded("weightings", weightings, world)
            guarded("stop and diverge", stop_and_diverge, world)
        guarded("cli", cli_checks, store)
        ml = guarded("movielens data", C.load_ml, True, a.ml) if a.ml else None
        if ml is not None:
            guarded("movielens", movielens, ml)
            guarded("text", text_features, ml)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results))
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
