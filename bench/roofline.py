"""A measured roofline for training (issue 31): each architecture's dense compute alone against
the trainer's samples/s.

    python bench/roofline.py [--archs mmoe,ple,stem] [--repeats 3] [--threads 1]

The bound: one training step (batch 1024, ml-latest-small protocol of bench/throughput.py: ids
only, emb 16, experts [64, 32], towers [32], two tasks) is run once forward and backward under a
`TorchDispatchMode` that records every matrix product the model issues (aten mm / addmm / bmm /
baddbmm, with their shapes, strides and scalars). Those exact GEMMs, on preallocated operands, are
then replayed in a tight loop: no Python modules, no embeddings, no elementwise ops, no optimizer.
`bound` = batch / (time of one replay): what this CPU reaches on this model's matrix work alone.

The trainer: `mtrlib.train.train` for one epoch, its own samples/s (the training loop only).
`fraction` = trainer / bound. Rounds are interleaved (every architecture's bound then trainer,
per round) and medians reported, since this machine is shared; the load average is recorded.

The bound is the model's own GEMMs, so it moves with the model: batched experts issue fewer,
larger products than one nn.Linear per expert (compare `gemms`, `gflop_per_s` across versions).

The last line printed is one JSON object: {"mmoe": {"bound": ..., "trainer": ..., "fraction": ...}, ...}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402  (private: a benchmark, not mtrlib)

from mtrlib.train.loop import build, prepare, train  # noqa: E402

BATCH = 1024
aten = torch.ops.aten
GEMMS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}


def config(arch: str, threads: int):
    """bench/throughput.py's protocol, the architecture changed (its expert knobs at [64, 32])."""
    cfg = C.ml_config(arch, use_features=False, epochs=1, seed=0, lr=0.01, weight_decay=1e-4, batch_size=BATCH)
    cfg.model.experts, cfg.model.n_experts, cfg.model.towers, cfg.model.emb_dim = [64, 32], 4, [32], 16
    cfg.cpu_threads = threads
    return cfg


class _Record(TorchDispatchMode):
    """Records each GEMM call: (op, args with tensors as (shape, stride), kwargs)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in GEMMS:
            spec = [("T", tuple(a.shape), tuple(a.stride())) if torch.is_tensor(a) else ("v", a) for a in args]
            self.calls.append((func, spec, dict(kwargs)))
        return func(*args, **kwargs)


def _flops(func, spec) -> int:
    shapes = [s[1] for s in spec if s[0] == "T"]
    a, b = shapes[-2], shapes[-1]  # the two factors (addmm / baddbmm: the bias comes first)
    if func in (aten.mm.default, aten.addmm.default):
        return 2 * a[0] * a[1] * b[1]
    return 2 * a[0] * a[1] * a[2] * b[2]


def capture(model, batch) -> list:
    """The GEMMs of one forward + backward of the summed task losses on `batch`."""
    u, i, y, m = batch
    rec = _Record()
    with rec:
        model.task_losses(model(u, i), y, m).sum().backward()
    model.zero_grad(set_to_none=True)
    return rec.calls


def replay_time(calls, min_time: float = 1.0) -> float:
    """Seconds per replay of `calls` on preallocated operands (median of 5 timed blocks)."""
    ops = []
    for func, spec, kw in calls:
        args = [torch.empty_strided(s[1], s[2]).uniform_(-1, 1) if s[0] == "T" else s[1] for s in spec]
        ops.append((func, args, kw))

    def once():
        for func, args, kw in ops:
            func(*args, **kw)

    once()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_time / 5:
        once()
        n += 1
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            once()
        times.append((time.perf_counter() - t) / n)
    return C.median(times)


def measure(arch: str, prep, threads: int, calls_cache: dict) -> dict:
    cfg = config(arch, threads)
    torch.set_num_threads(threads)
    if arch not in calls_cache:
        torch.manual_seed(0)
        model = build(cfg, prep)
        d = prep.train
        batch = (d.user[:BATCH], d.item[:BATCH], d.labels[:BATCH], d.mask[:BATCH].float())
        calls_cache[arch] = capture(model, batch)
    calls = calls_cache[arch]
    t = replay_time(calls)
    res = train(cfg, prep)
    return {"bound": BATCH / t, "trainer": res.samples_per_s, "gemms": len(calls),
            "gflop_per_s": sum(_flops(f, s) for f, s, _ in calls) / t / 1e9,
            "kflop_per_sample": sum(_flops(f, s) for f, s, _ in calls) / BATCH / 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default="mmoe,ple,stem")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if not C.ml_available():
        sys.exit(f"ml-latest-small not found in {C.ML_DIR}")
    archs = a.archs.split(",")
    load0 = C.loadavg()
    prep = prepare(config(archs[0], a.threads), C.load_ml(genres_only=True))
    rows: dict[str, list[dict]] = {k: [] for k in archs}
    calls: dict = {}
    for r in range(a.repeats):
        for arch in archs[r % len(archs):] + archs[:r % len(archs)]:  # rotate the order per round
            m = measure(arch, prep, a.threads, calls)
            rows[arch].append(m)
            print(f"round {r + 1} {arch:6s} bound {m['bound']:>9,.0f}/s  trainer {m['trainer']:>9,.0f}/s  "
                  f"fraction {m['trainer'] / m['bound']:.2f}  ({m['gemms']} GEMMs, {m['gflop_per_s']:.1f} GFLOP/s)",
                  flush=True)
    out = {}
    for arch, ms in rows.items():
        bound, trainer = C.median([m["bound"] for m in ms]), C.median([m["trainer"] for m in ms])
        out[arch] = {"bound": round(bound), "trainer": round(trainer), "fraction": round(trainer / bound, 3),
                     "fractions": [round(m["trainer"] / m["bound"], 3) for m in ms], "gemms": ms[0]["gemms"],
                     "kflop_per_sample": round(ms[0]["kflop_per_sample"], 1),
                     "gemm_gflop_per_s": round(C.median([m["gflop_per_s"] for m in ms]), 2)}
    out.update(threads=a.threads, batch=BATCH, repeats=a.repeats, load_before=load0, load_after=C.loadavg(),
               cpu=C.cpu_name())
    print(C.json_line(out))


if __name__ == "__main__":
    main()
