"""Run by tests/test_distributed.py under `torchrun --standalone --nproc-per-node 2` (not a test
module). Each process trains the same tiny world through the library, in phases, and rank 0
prints one JSON line with what every phase gave:

- "uncertainty", "gradnorm": test AUCs per task (the single-process runs are in the test);
- "own-gradients": a method with its own `backward` (one backward pass per task: the same
  gradient as fixed weights, through DDP's no_sync() and the averaging after it);
- "upgrad": a gradient method (torchjd's UPGrad): each task's gradient on the shared parameters
  averaged over the processes, then aggregated, the same step on every process;
- "history": fixed weights with a DIN history block (each slice's histories travel with it);
- "stop": rank 1 alone is asked to stop at its third step; every process must end "stopped"
  at the same step;
- "diverge": a far too high learning rate; every process must report "diverged" at one step;
- "mismatch": the processes claim different data; every process must refuse with one message.

    torchrun --standalone --nproc-per-node 2 tests/_ddp_worker.py WORLD_JSON
"""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch.distributed as dist  # noqa: E402

import mtrlib.config as config_module  # noqa: E402
from mtrlib.train import distributed  # noqa: E402
from mtrlib.config import TrainConfig  # noqa: E402
from mtrlib.train.loop import prepare, train  # noqa: E402
from mtrlib.weighting import WEIGHTINGS  # noqa: E402
from mtrlib.weighting.fixed import Fixed  # noqa: E402


def config(world: dict, **kw) -> TrainConfig:
    cfg = TrainConfig(device="cpu", **kw)
    for k, v in world.items():
        setattr(cfg.data.world, k, v)
    return cfg


def gathered(value) -> list:
    out = [None] * distributed.current().world
    dist.all_gather_object(out, value)
    return out


class OwnGradients(Fixed):
    """Fixed weights, backpropagated one task at a time: a stand-in for the per-task gradient methods."""
    name = "own-gradients"

    def backward(self, total, losses, ctx):
        for k in range(len(losses)):
            losses[k].backward(retain_graph=k < len(losses) - 1)


def main() -> None:
    world, settings = json.loads(sys.argv[1]), json.loads(sys.argv[2])
    WEIGHTINGS[OwnGradients.name] = OwnGradients
    config_module.WEIGHTINGS = (*config_module.WEIGHTINGS, OwnGradients.name)
    procs = distributed.start("cpu")
    report = {"world": procs.world}
    for method in ("uncertainty", "gradnorm", OwnGradients.name, "upgrad", "history"):
        cfg = config(world, weighting="fixed" if method == "history" else method, **settings)
        if method == "history":  # the users' past items as a feature (mtrlib.data.history), DIN
            cfg.model.history, cfg.model.history_encoder = 5, "din"
        res = train(cfg, prepare(cfg))
        report[method] = {"status": res.status, "auc": {t: m["auc"] for t, m in res.metrics.items() if "auc" in m},
                          "every_rank_same": len(set(json.dumps(x) for x in gathered(res.metrics))) == 1}

    cfg = config(world, **settings)
    stop = threading.Event()

    def stop_on_rank_1(e):
        if procs.rank == 1 and e.get("type") == "step" and e["step"] >= 3:
            stop.set()
    cfg.log_every = 1
    res = train(cfg, prepare(cfg), callback=stop_on_rank_1, stop=stop)
    report["stop"] = gathered([res.status, res.history.steps[-1]["step"] if res.history.steps else 0])

    cfg = config(world, lr=5.0, **settings)
    res = train(cfg, prepare(cfg))
    report["diverge"] = gathered([res.status, res.reason])

    try:
        procs.check_same({"training rows": 100 + procs.rank})
        report["mismatch"] = gathered("accepted")
    except distributed.DistributedError as e:
        report["mismatch"] = gathered(str(e))
    distributed.finish()
    if procs.main:
        print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
