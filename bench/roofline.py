"""A measured roofline for training (issue 31): each architecture's dense compute alone against
the trainer's samples/s.

    python bench/roofline.py [--archs mmoe,ple,stem] [--repeats 3] [--threads 1] [--before DIR]

`--before DIR`: also measure the mtrlib of another checkout (e.g. a `git worktree add` of the
commit before a change), imported beside this one as `mtrlib_before`, in the same process,
interleaved with this one measurement by measurement: before/after side by side under the
same load. Its JSON then holds `before` and `after_vs_before` (trainer samples/s ratios).

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
import importlib
import importlib.util
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402  (private: a benchmark, not mtrlib)

BATCH = 1024
aten = torch.ops.aten
GEMMS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}


class Version:
    """One mtrlib (this checkout's, or another's imported under another name): what the benchmark calls."""

    def __init__(self, label: str, package: str):
        self.label = label
        self.loop = importlib.import_module(f"{package}.train.loop")
        self.cfgmod = importlib.import_module(f"{package}.config")
        self.datamod = importlib.import_module(f"{package}.data")

    def config(self, arch: str, threads: int):
        """bench/throughput.py's protocol (C.ml_config), the architecture changed (experts [64, 32])."""
        c = self.cfgmod
        data = c.DataConfig(source="files", tasks=list(C.ML_TASKS), negatives=4, split="temporal", val_frac=0.1,
                            test_frac=0.2, use_features=False)
        cfg = c.TrainConfig(data=data, model=c.ModelConfig(arch=arch), epochs=1, seed=0, device="cpu", lr=0.01,
                            weight_decay=1e-4, batch_size=BATCH)
        cfg.model.experts, cfg.model.n_experts, cfg.model.towers, cfg.model.emb_dim = [64, 32], 4, [32], 16
        cfg.cpu_threads = threads
        return cfg

    def prepare(self, arch: str, threads: int):
        ds = self.datamod.load(str(C.ML_DIR / "ratings.csv"), str(C.ML_DIR / "movies.csv"), None)
        ds.item_features = {c: k for c, k in ds.item_features.items() if c == "genres" or k == "text"}
        return self.loop.prepare(self.config(arch, threads), ds)


def import_before(checkout: Path) -> str:
    """Import `checkout`/mtrlib as the package `mtrlib_before` (its imports are relative)."""
    root = checkout / "mtrlib"
    spec = importlib.util.spec_from_file_location("mtrlib_before", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mtrlib_before"] = mod
    spec.loader.exec_module(mod)
    return "mtrlib_before"


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


def measure(v: Version, arch: str, prep, threads: int, calls_cache: dict) -> dict:
    cfg = v.config(arch, threads)
    torch.set_num_threads(threads)
    if arch not in calls_cache:
        torch.manual_seed(0)
        model = v.loop.build(cfg, prep)
        d = prep.train
        batch = (d.user[:BATCH], d.item[:BATCH], d.labels[:BATCH], d.mask[:BATCH].float())
        calls_cache[arch] = capture(model, batch)
    calls = calls_cache[arch]
    t = replay_time(calls)
    res = v.loop.train(cfg, prep)
    return {"bound": BATCH / t, "trainer": res.samples_per_s, "gemms": len(calls),
            "gflop_per_s": sum(_flops(f, s) for f, s, _ in calls) / t / 1e9,
            "kflop_per_sample": sum(_flops(f, s) for f, s, _ in calls) / BATCH / 1e3}


def summarise(ms: list[dict]) -> dict:
    bound, trainer = C.median([m["bound"] for m in ms]), C.median([m["trainer"] for m in ms])
    return {"bound": round(bound), "trainer": round(trainer), "fraction": round(trainer / bound, 3),
            "fractions": [round(m["trainer"] / m["bound"], 3) for m in ms], "gemms": ms[0]["gemms"],
            "kflop_per_sample": round(ms[0]["kflop_per_sample"], 1),
            "gemm_gflop_per_s": round(C.median([m["gflop_per_s"] for m in ms]), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", default="mmoe,ple,stem")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--before", type=Path, default=None, help="another checkout whose mtrlib to measure beside this one")
    a = ap.parse_args()
    if not C.ml_available():
        sys.exit(f"ml-latest-small not found in {C.ML_DIR}")
    archs = a.archs.split(",")
    load0 = C.loadavg()
    versions = [Version("after", "mtrlib")] + ([Version("before", import_before(a.before))] if a.before else [])
    preps = {v.label: v.prepare(archs[0], a.threads) for v in versions}
    rows: dict[tuple[str, str], list[dict]] = {(v.label, k): [] for v in versions for k in archs}
    calls: dict = {v.label: {} for v in versions}
    for r in range(a.repeats):
        for arch in archs[r % len(archs):] + archs[:r % len(archs)]:  # rotate the order per round
            for v in (versions if r % 2 == 0 else versions[::-1]):
                m = measure(v, arch, preps[v.label], a.threads, calls[v.label])
                rows[v.label, arch].append(m)
                print(f"round {r + 1} {arch:6s} {v.label:6s} bound {m['bound']:>9,.0f}/s  trainer {m['trainer']:>9,.0f}/s  "
                      f"fraction {m['trainer'] / m['bound']:.2f}  ({m['gemms']} GEMMs, {m['gflop_per_s']:.1f} GFLOP/s)  "
                      f"load {C.loadavg()[0]:.1f}", flush=True)
    out: dict = {arch: summarise(rows["after", arch]) for arch in archs}
    if a.before:
        out["before"] = {arch: summarise(rows["before", arch]) for arch in archs}
        out["after_vs_before"] = {arch: [round(x["trainer"] / y["trainer"], 3)
                                         for x, y in zip(rows["after", arch], rows["before", arch])] for arch in archs}
    out.update(threads=a.threads, batch=BATCH, repeats=a.repeats, load_before=load0, load_after=C.loadavg(),
               cpu=C.cpu_name())
    print(C.json_line(out))


if __name__ == "__main__":
    main()
