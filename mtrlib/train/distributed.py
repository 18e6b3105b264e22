"""Training one model on several processes or machines: PyTorch's DistributedDataParallel (DDP),
started by torchrun.

    torchrun --standalone --nproc-per-node 2 -m mtrlib train ...            # one machine
    torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 \\
             --rdzv-backend c10d --rdzv-endpoint HOST:29400 -m mtrlib train ...   # each machine

What one process does here (Li et al., "PyTorch Distributed: Experiences on Accelerating Data
Parallel Training", VLDB 2020, describe DDP itself):

- every process prepares the same data (same files or world, same seed), builds the same model
  (DDP copies rank 0's weights to all at the start) and joins a process group: `gloo` on the
  CPU, NCCL on CUDA (one GPU per process, by LOCAL_RANK);
- each epoch's shuffled order is the one a single process would use, cut into the same global
  batches of `batch_size` rows; process r trains the r-th slice of each batch, so a global
  batch is the same rows at any number of processes, and DDP averages the gradients;
- one small all-reduce per step shares the per-task losses and any stop request, so every
  process sees the same losses (the divergence guard, logging and DWA read them) and all stop at
  the same step: a stop request (Ctrl-C / SIGTERM on any process), a divergence or an early
  stop ends every process together;
- validation and test rows are split among the processes and the predictions gathered, so the
  metrics are over the whole split, identical on every process;
- only rank 0 writes the run folder and prints progress and the JSON last line; the others print
  nothing but errors.

Weighting methods. A method that trains on one scalar loss with plain backpropagation works as
it is; its learnable weights (uncertainty's log-variances) are inside the module DDP wraps, so
their gradients are averaged too. GradNorm takes per-task gradients on the shared layer and
averages them across processes (`StepContext.mean`) before comparing norms. A method that fills
the gradients itself (it overrides `Weighting.backward`; per-task gradient methods) runs its
forward and backward inside DDP's `no_sync()` and its gradients are averaged afterwards. A method
that sets `distributed = False` is refused before training with a message naming it.

Bad set-ups end with a message, never a hang: a missing or half-set environment (RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT), a rendezvous nobody else joins (`MTR_DIST_JOIN_TIMEOUT`,
default 60 s, when started without torchrun), processes started for different world sizes, or
with different data or settings, and a collective that waits longer than `MTR_DIST_TIMEOUT`
(default 600 s).
"""
from __future__ import annotations

import datetime
import hashlib
import inspect
import os
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..data.context import context_of
from ..errors import DistributedError
from ..eval.pointwise import task_metrics
from ..weighting import WEIGHTINGS
from ..weighting.base import Weighting
from .device import resolve_device
from .predict import evaluate, predict
from .steps import forward as model_forward, shuffled_batches

ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
JOIN_TIMEOUT_S = float(os.environ.get("MTR_DIST_JOIN_TIMEOUT", "60") or 60)
TIMEOUT_S = float(os.environ.get("MTR_DIST_TIMEOUT", "600") or 600)


def launched() -> bool:
    """Whether this process was started as one of several (torchrun sets WORLD_SIZE)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
    except ValueError:
        return True  # a WORLD_SIZE that is not a number: `start` says so


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """[lo, hi) of rank's share of n rows: contiguous, sizes differ by at most one."""
    return n * rank // world, n * (rank + 1) // world


def _mean_of(world: int):
    """An all-reduce mean for tensors (identity for one process): what GradNorm averages with."""
    if world == 1:
        return _identity

    def mean(t: torch.Tensor) -> torch.Tensor:
        t = t.detach().clone()
        dist.all_reduce(t)
        return t / world
    return mean


def _identity(t):
    return t


@dataclass
class Processes:
    """This process's place among the training processes; with one process (`world == 1`) every
    method below is the plain single-process thing, so the training loop reads the same."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run and prints."""
        return self.rank == 0

    @property
    def mean(self):
        return _mean_of(self.world)

    # -- the training loop's pieces --------------------------------------------------------------
    def wrap(self, model: nn.Module, weighting, device: torch.device) -> Forward:
        """Batch -> per-task losses, through DDP when there are several processes."""
        return Forward(model, weighting, self if self.active else None, device)

    def batches(self, data, perm: torch.Tensor, mask: torch.Tensor, batch_size: int):
        """One epoch's batches: the single-process ones, or this rank's slice of each global batch
        (`Batch.size` stays the global batch's, so samples/s counts every process's rows)."""
        if not self.active:
            yield from shuffled_batches(data, perm, mask, batch_size)
            return
        n = len(perm)
        for b in range(0, n, batch_size):
            rows = perm[b:b + batch_size]
            lo, hi = shard(len(rows), self.rank, self.world)
            idx = rows[lo:hi]
            hist = data.table.batch(data.rows[idx]) if getattr(data, "table", None) is not None else None
            yield ShardBatch(data.user[idx], data.item[idx], data.labels[idx], mask[idx], len(rows),
                             b + batch_size >= n, whole_mask=mask[rows], world=self.world, history=hist,
                             context=context_of(data, idx))

    def agree(self, losses: torch.Tensor, total: torch.Tensor, stop) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(mean losses, mean total, whether any process was asked to stop) over the processes:
        one all-reduce per step, so every process takes the same decisions. One process: as given."""
        if not self.active:
            return losses, total, False
        flag = 1.0 if stop is not None and stop.is_set() else 0.0
        buf = torch.cat([losses.detach().float().reshape(-1), total.detach().float().reshape(1),
                         torch.tensor([flag], device=losses.device)])
        dist.all_reduce(buf)
        k = losses.numel()
        return (buf[:k] / self.world).to(losses.dtype), buf[k] / self.world, bool(buf[k + 1] > 0)

    def stop_requested(self, stop, agreed: bool) -> bool:
        """Whether to end the run after this step: the agreed flag under DDP, else `stop` itself."""
        if self.active:
            return agreed
        return stop is not None and stop.is_set()

    def backward(self, forward: Forward, weighting, total, losses, ctx) -> None:
        """The weighting's backward; a method that fills the gradients itself gets them averaged."""
        weighting.backward(total, losses, ctx)
        if self.active and forward.own_gradients:
            for p in forward.objective.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world

    def evaluate(self, model, data, tasks) -> dict:
        """Metrics per task over the whole split: each process predicts its share of the rows, the
        predictions are gathered, and every process computes the same metrics."""
        if not self.active:
            return evaluate(model, data, tasks)
        n = len(data)
        lo, hi = shard(n, self.rank, self.world)
        part = data.subset(torch.arange(lo, hi))  # (with the examples' histories, when the run has them)
        preds = self.gather_rows(torch.as_tensor(predict(model, part), device=data.user.device), n)
        return task_metrics(tasks, data.labels.cpu().numpy(), data.mask.cpu().numpy(), preds.cpu().numpy())

    def gather_rows(self, part: torch.Tensor, n: int) -> torch.Tensor:
        """Every rank's share (rows `shard(n, r, world)`) concatenated in rank order."""
        sizes = [shard(n, r, self.world) for r in range(self.world)]
        width = max(hi - lo for lo, hi in sizes)
        pad = torch.zeros((width, *part.shape[1:]), dtype=part.dtype, device=part.device)
        pad[:len(part)] = part
        out = [torch.empty_like(pad) for _ in range(self.world)]
        dist.all_gather(out, pad)
        return torch.cat([o[:hi - lo] for o, (lo, hi) in zip(out, sizes)])

    # -- checks ------------------------------------------------------------------------------------
    def check_same(self, facts: dict[str, int]) -> None:
        """Every process must train the same thing: compare `facts` (numbers) with every process's,
        and name the first that differs."""
        if not self.active:
            return
        keys = sorted(facts)
        mine = torch.tensor([int(facts[k]) for k in keys], dtype=torch.int64, device=self.device)
        every = [torch.empty_like(mine) for _ in range(self.world)]
        dist.all_gather(every, mine)
        for r, theirs in enumerate(every):
            bad = [k for k, a, b in zip(keys, every[0].tolist(), theirs.tolist()) if a != b]
            if bad:
                k = bad[0]
                raise DistributedError(
                    f"The processes do not train the same thing: process {r} has {k} = "
                    f"{theirs[keys.index(k)].item():,}, process 0 has {every[0][keys.index(k)].item():,}.",
                    fix="start every process with the same command, settings and data files", everywhere=True)

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


@dataclass
class ShardBatch:
    """This process's slice of a global batch (the fields of `mtrlib.train.steps.Batch`, `size` being the
    global batch's), plus the whole batch's label mask, for weighting the slice's losses."""
    user: torch.Tensor
    item: torch.Tensor
    labels: torch.Tensor
    mask: torch.Tensor
    size: int
    last: bool
    whole_mask: torch.Tensor = None
    world: int = 1
    history: object | None = None  # the slice's past items (mtrlib.data.history), if the run has them
    context: object | None = None  # the slice's impression context (mtrlib.data.context), if any


class Objective(nn.Module):
    """What DDP wraps: the model and the weighting method's learnable parameters (uncertainty's
    log-variances), so that the gradients of both are averaged across processes. Its forward
    gives the per-task losses [T] of a batch."""

    def __init__(self, model: nn.Module, weighting):
        super().__init__()
        self.model = model
        self.extras = nn.ParameterList(list(weighting.extra_parameters()))

    def forward(self, user, item, labels, mask, history=None, context=None):
        return self.model.task_losses(model_forward(self.model, user, item, history, context), labels, mask)


class Forward:
    """Batch -> per-task losses, through DDP when there are several processes. A weighting method
    that fills the gradients itself runs inside `no_sync()` (its gradients are averaged after)."""

    def __init__(self, model: nn.Module, weighting, procs: Processes | None, device: torch.device):
        self.objective = Objective(model, weighting)
        self.own_gradients = gradients_of(weighting) == "own"
        self.ddp = None
        if procs is not None:
            ids = [device.index if device.index is not None else torch.cuda.current_device()] \
                if device.type == "cuda" else None
            # the buffers (side-feature tables) are built from the same data everywhere: not sent
            # again before each forward (the newer name of the setting where this PyTorch has it)
            quiet = "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
            self.ddp = DDP(self.objective, device_ids=ids,
                           **({"forward_sync_buffers": False} if quiet else {"broadcast_buffers": False}))

    def __call__(self, batch) -> torch.Tensor:
        if self.ddp is None:
            return self.objective(batch.user, batch.item, batch.labels, batch.mask, batch.history, batch.context)
        with self.ddp.no_sync() if self.own_gradients else nullcontext():
            losses = self.ddp(batch.user, batch.item, batch.labels, batch.mask, batch.history, batch.context)
        # each task's loss is a mean over this slice's observed rows; weighted by the slice's share
        # of the whole batch's, the average over processes (what DDP does to the gradients) is the
        # whole batch's mean: the same step one process takes on the same global batch
        model = self.objective.model
        share = model.loss_counts(batch.mask) * batch.world / model.loss_counts(batch.whole_mask)
        return losses * share.to(losses.dtype)


def gradients_of(weighting) -> str:
    """How a weighting method's gradients arise: "loss" (plain backpropagation of one scalar: DDP
    averages them), "own" (it fills them itself) or "refused" (`distributed = False`)."""
    if getattr(weighting, "distributed", True) is False:
        return "refused"
    return "own" if type(weighting).backward is not Weighting.backward else "loss"


def check_weighting(name: str) -> None:
    """Refuse, before training, a weighting method that cannot run under DDP, naming it."""
    cls = WEIGHTINGS.get(name)
    if cls is not None and getattr(cls, "distributed", True) is False:
        raise DistributedError(
            f"The weighting method '{name}' ({cls.label}) cannot train on several processes.",
            fix="train it in one process (plain `python -m mtrlib train`), or choose another method, e.g. "
                "--weighting uncertainty", everywhere=True)


# -- joining and leaving the process group ---------------------------------------------------------------

_current = Processes()


def current() -> Processes:
    """This process's place (one process unless `start` joined a group)."""
    return _current


def _env_int(name: str) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"The environment variable {name} must be a whole number (got '{raw}').",
                               fix="start the processes with torchrun, which sets it") from None


def read_env() -> tuple[int, int, int, str, int]:
    """(rank, world size, local rank, master address, master port) from torchrun's variables,
    checked: a half-set environment is a message, not a hang."""
    missing = [k for k in ENV if not os.environ.get(k)]
    if missing:
        raise DistributedError(
            f"WORLD_SIZE says this is one of several processes, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set.",
            fix="start the processes with torchrun (e.g. torchrun --standalone --nproc-per-node 2 -m mtrlib "
                "train ...), or unset WORLD_SIZE to train in one process")
    rank, world, port = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("MASTER_PORT")
    local = _env_int("LOCAL_RANK") if os.environ.get("LOCAL_RANK") else rank
    if world < 1 or not 0 <= rank < world:
        raise DistributedError(f"RANK {rank} does not fit WORLD_SIZE {world} (ranks go from 0 to WORLD_SIZE - 1).",
                               fix="give each process its own RANK below WORLD_SIZE; torchrun does this for you")
    if not 0 < port < 65536:
        raise DistributedError(f"MASTER_PORT {port} is not a port number.", fix="use a free port, e.g. 29500")
    return rank, world, local, os.environ["MASTER_ADDR"], port


def start(device_name: str = "auto") -> Processes:
    """Join the process group (when started as one of several; else one process). NCCL with one
    GPU per process when training on CUDA, gloo otherwise. Raises DistributedError with the fix."""
    global _current
    if not launched():
        _current = Processes()
        return _current
    rank, world, local, addr, port = read_env()
    dev = resolve_device(device_name)
    if dev.type == "mps":
        raise DistributedError("Training on several processes works on the CPU or on CUDA GPUs, not on Apple MPS.",
                               fix="add --device cpu", everywhere=True)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl":
        if local >= torch.cuda.device_count():
            raise DistributedError(f"Process {rank} wants GPU {local}, but this machine has "
                                   f"{torch.cuda.device_count()}.",
                                   fix="start at most one process per GPU (--nproc-per-node), or add --device cpu")
        torch.cuda.set_device(local)
    timeout = datetime.timedelta(seconds=TIMEOUT_S)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":  # torchrun: its agent holds the store
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world, timeout=timeout)
    else:
        store = _join(addr, port, rank, world)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=timeout)
    _current = Processes(rank, world, local, backend)
    return _current


def _join(addr: str, port: int, rank: int, world: int):
    """The rendezvous when started by hand (no torchrun): a TCP store on rank 0, every process
    given `JOIN_TIMEOUT_S` to join, and every process's idea of the world size compared."""
    wait = datetime.timedelta(seconds=JOIN_TIMEOUT_S)
    try:
        store = dist.TCPStore(addr, port, world, is_master=rank == 0, timeout=wait, wait_for_workers=True)
    except (RuntimeError, OSError, dist.DistError) as e:
        if rank == 0:
            raise DistributedError(
                f"Only some of the {world} processes joined the rendezvous at {addr}:{port} within "
                f"{JOIN_TIMEOUT_S:g} s ({_first_line(e)}).",
                fix=f"start all {world} processes (ranks 0 to {world - 1}) with the same MASTER_ADDR and "
                    "MASTER_PORT, or use torchrun; MTR_DIST_JOIN_TIMEOUT sets the wait") from None
        raise DistributedError(
            f"Process {rank} could not reach the rendezvous at {addr}:{port} within {JOIN_TIMEOUT_S:g} s "
            f"({_first_line(e)}).",
            fix="start rank 0 too, and check MASTER_ADDR / MASTER_PORT and the network between the machines") from None
    store.set(f"mtr/world/{rank}", str(world))
    try:
        theirs = {r: int(store.get(f"mtr/world/{r}")) for r in ([0] if rank else range(world))}
    except (RuntimeError, dist.DistError) as e:
        raise DistributedError(
            f"Not every process of the {world} joined within {JOIN_TIMEOUT_S:g} s ({_first_line(e)}).",
            fix=f"start ranks 0 to {world - 1}, each once, with the same WORLD_SIZE") from None
    store.set(f"mtr/read/{rank}", "1")
    if rank == 0:  # rank 0 holds the store: it stays until every process has read what it needs
        try:
            store.wait([f"mtr/read/{r}" for r in range(world)], wait)
        except (RuntimeError, dist.DistError):
            pass
    other = {r: w for r, w in theirs.items() if w != world}
    if other:
        r, w = next(iter(other.items()))
        raise DistributedError(
            f"The processes disagree on how many there are: process {r} was started with WORLD_SIZE={w}, "
            f"process {rank} with WORLD_SIZE={world}.",
            fix="give every process the same WORLD_SIZE (torchrun does this for you)")
    return store


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def finish() -> None:
    """Leave the process group (if joined)."""
    global _current
    if _current.active:
        if dist.is_initialized():
            dist.destroy_process_group()
    _current = Processes()


def check_grad_space(cfg) -> None:
    """A gradient method on the shared representation (--grad-space rep) needs each process's own
    representations, which differ by rows: refused on several processes (the default space,
    every shared parameter, averages each task's gradient over the processes instead)."""
    cls = WEIGHTINGS.get(cfg.weighting.name)
    if cfg.grad_space == "rep" and cls is not None and cls.needs_task_gradients:
        raise DistributedError(
            f"The weighting method '{cfg.weighting.name}' ({cls.label}) cannot take its gradients on the shared "
            "representation (--grad-space rep) on several processes.",
            fix="leave out --grad-space rep (the default, every shared parameter, trains on several processes)",
            everywhere=True)


def start_for(cfg) -> Processes:
    """`start` for a training config, refusing first (before anything is prepared or trained) a
    weighting method that cannot run on several processes; other ranks then print nothing but
    errors (Python's warnings are theirs to drop)."""
    if not launched():
        return start(cfg.device)
    check_weighting(cfg.weighting.name)
    check_grad_space(cfg)
    procs = start(cfg.device)
    if not procs.main:
        warnings.filterwarnings("ignore")
    return procs


def lost_contact(procs: Processes, e: BaseException) -> str:
    """The message when a collective fails: another process stopped or failed (its own message
    says why), or the network between them broke."""
    return (f"process {procs.rank} of {procs.world} lost contact with the other training processes "
            f"({_first_line(e)}); another process stopped or failed: its message above says why.")


@contextmanager
def joined(device_name: str = "auto"):
    """`start` ... `finish` as a context."""
    procs = start(device_name)
    try:
        yield procs
    finally:
        finish()


def fingerprint(cfg, prep) -> dict[str, int]:
    """What every process must agree on before training: the data's shape and the settings."""
    digest = hashlib.sha256(cfg.to_json().encode()).digest()
    return {"training rows": len(prep.train), "validation rows": len(prep.val), "test rows": len(prep.test),
            "users": prep.space.users.n, "items": prep.space.items.n, "tasks": len(prep.tasks),
            "settings (hash)": int.from_bytes(digest[:7], "big")}


__all__ = ["Processes", "Objective", "Forward", "DistributedError", "current", "start", "start_for", "finish", "joined",
           "launched", "lost_contact",
           "shard", "check_weighting", "gradients_of", "fingerprint", "read_env"]
