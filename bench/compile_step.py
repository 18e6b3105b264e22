"""torch.compile on the CPU for the training step (issue 31), measured: eager vs `default` vs
`max-autotune-no-cudagraphs`, side by side.

    python bench/compile_step.py [--arch mmoe] [--steps 30] [--rounds 3] [--threads 1]

The step is the trainer's: forward, per-task losses (fixed weights: their sum), backward, and
the trainer's own optimizer (`training_optimizer`: fused Adam, LazyAdam on the id tables where
it picks them), on ml-latest-small batches of 1024 (bench/throughput.py's protocol: ids only,
emb 16, MMoE 4 x [64, 32], towers [32]). What is compiled is the model's forward + loss (its
backward follows through AOTAutograd); the optimizer stays eager.

Compile time: the wall time of the first two steps (tracing and code generation for forward
and backward) less two steady steps. Steady: `--rounds` blocks of `--steps` steps per variant,
interleaved and rotated round by round; medians. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402

from mtrlib.train.loop import build, prepare  # noqa: E402
from mtrlib.train.optim import training_optimizer  # noqa: E402
from mtrlib.weighting import make_weighting  # noqa: E402

BATCH = 1024
MODES = ("eager", "default", "max-autotune-no-cudagraphs")


def config(arch: str, threads: int):
    cfg = C.ml_config(arch, use_features=False, epochs=1, seed=0, lr=0.01, weight_decay=1e-4, batch_size=BATCH)
    cfg.model.experts, cfg.model.n_experts, cfg.model.towers, cfg.model.emb_dim = [64, 32], 4, [32], 16
    cfg.cpu_threads = threads
    return cfg


class Contender:
    """One model + optimizer + (compiled) loss function; `step(b)` is one training step on batch b."""

    def __init__(self, mode: str, cfg, prep):
        torch.manual_seed(0)
        self.model = build(cfg, prep)
        self.model.fit_targets(prep.train.labels, prep.train.mask)
        weighting = make_weighting("fixed", prep.task_names, {})
        self.opt = training_optimizer(cfg, self.model, weighting, torch.device("cpu"))
        m = self.model

        def losses(u, i, y, mask):
            return m.task_losses(m(u, i), y, mask)

        self.losses = losses if mode == "eager" else torch.compile(losses, mode=mode)
        self.mode, self.compile_s, self.error = mode, 0.0, None

    def step(self, b) -> None:
        total = self.losses(*b).sum()
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()


def batches(prep, n: int):
    d, out = prep.train, []
    for k in range(n):
        s = slice(k * BATCH, (k + 1) * BATCH)
        out.append((d.user[s], d.item[s], d.labels[s], d.mask[s].float()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="mmoe")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES))
    a = ap.parse_args()
    load0 = C.loadavg()
    torch.set_num_threads(a.threads)
    cfg = config(a.arch, a.threads)
    prep = prepare(cfg, C.load_ml(genres_only=True))
    bs = batches(prep, a.steps)
    cons = []
    for mode in a.modes.split(","):
        c = Contender(mode, cfg, prep)
        try:
            t = time.perf_counter()
            c.step(bs[0])
            c.step(bs[1])
            first2 = time.perf_counter() - t
            t = time.perf_counter()
            c.step(bs[2])
            c.step(bs[3])
            c.compile_s = max(0.0, first2 - (time.perf_counter() - t))
        except Exception as e:  # a mode that does not compile this step is reported, not hidden
            c.error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        print(f"{mode}: compile {c.compile_s:.1f} s" + (f"  FAILED {c.error}" if c.error else ""), flush=True)
        cons.append(c)
    cons = [c for c in cons if c.error is None]
    times: dict[str, list[float]] = {c.mode: [] for c in cons}
    for r in range(a.rounds):
        for c in cons[r % len(cons):] + cons[:r % len(cons)]:
            t = time.perf_counter()
            for b in bs:
                c.step(b)
            times[c.mode].append(BATCH * len(bs) / (time.perf_counter() - t))
        print(f"round {r + 1}: " + "  ".join(f"{m} {v[-1]:,.0f}/s" for m, v in times.items()), flush=True)
    eager = C.median(times["eager"]) if "eager" in times else None
    out = {m: {"samples_per_s": round(C.median(v)), "compile_s": round(next(c.compile_s for c in cons if c.mode == m), 1),
               "vs_eager": round(C.median(v) / eager, 3) if eager else None} for m, v in times.items()}
    out.update(arch=a.arch, threads=a.threads, steps=a.steps, rounds=a.rounds, torch=torch.__version__,
               load_before=load0, load_after=C.loadavg())
    print(C.json_line(out))


if __name__ == "__main__":
    main()
