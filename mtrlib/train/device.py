"""Where torch work runs and with how many CPU threads: the one place for both.

Devices. Training takes a device name from `TrainConfig.device` ("auto" or one of
`available_devices()`, an absent one is a `TrainingError`); the text encoder takes a free-form name
("cuda:1" passes through) and says a missing accelerator with its own exceptions, so a page can
offer the text features or not; `prepare` picks the encoder's device from the training setting.
All three read the same `mtrlib.hardware.accelerators()`.

Threads. `cpu_compute(n)` is the one context for the CPU settings of a block of work, used by
training (`TrainConfig.cpu_threads`, 0 = auto = 1, and the denormal flush), scoring and the
projections (`MTR_SCORING_THREADS`, default 1; 0 leaves torch's setting). PyTorch's thread
count is process-wide and the app runs several of these at once (training jobs on their own
threads, a page scoring on another), and they do not close in the order they opened: the
first context to open saves the old setting, while any is open the most recently opened one
still open applies, and the last to close restores the saved setting. The denormal flag, by
contrast, lives in each thread's MXCSR register: `flush_denormals` saves and restores it on the
calling thread only.
"""
from __future__ import annotations

import os
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch

from ..errors import TrainingError
from ..hardware import accelerators

# Intra-op threads while scoring on CPU and for the projections' native code (0 = leave the
# setting). One thread by default: on a shared 2-core box, OpenMP's spin-waiting makes 2 threads
# 10-40x slower for these small ops whenever the cores are busy (a training job, another user);
# one thread is never far off.
SCORING_THREADS = int(os.environ.get("MTR_SCORING_THREADS", "1") or 0)
# MTR_DENORMAL_FIX=0 turns the flush (and training's per-epoch scrub) off: only for measuring
# what they buy (bench/live_training.py --before); training is 4-5x slower by the end of a long
# run without them.
DENORMAL_FIX = os.environ.get("MTR_DENORMAL_FIX", "1").strip() != "0"


# -- devices -----------------------------------------------------------------------------------------

def available_devices() -> list[str]:
    """Devices that exist on this machine, in the order `auto` prefers them (cpu last)."""
    acc = accelerators()
    return [d for d in ("cuda", "mps") if acc[d]] + ["cpu"]


def resolve_device(name: str) -> torch.device:
    """The training device for `TrainConfig.device`: "auto" is the first of `available_devices()`;
    an absent device is a TrainingError naming the choices (the config is the user's)."""
    devs = available_devices()
    if name == "auto":
        return torch.device(devs[0])
    if name not in devs:
        raise TrainingError(f"Device '{name}' is not available on this machine.",
                            fix=f"use one of: auto, {', '.join(devs)}")
    return torch.device(name)


def text_device_for(train_device: str) -> str:
    """The device `prepare` encodes item texts on for a training device setting: the setting
    itself, except that "auto" without CUDA encodes on the CPU (training's auto may pick MPS;
    the encoder does not follow it there)."""
    return "cpu" if train_device == "auto" and not accelerators()["cuda"] else train_device


def device_of(model: torch.nn.Module) -> torch.device:
    """The device a model lives on (every model has buffers: the side-feature tables)."""
    return next(iter(model.buffers())).device


# -- CPU threads ---------------------------------------------------------------------------------------

@dataclass(eq=False)  # identity, not value: two requests for the same count are two requests
class _Request:
    threads: int


_lock = threading.Lock()
_open: list[_Request] = []  # the contexts now open, oldest first
_saved: dict = {}  # the settings before the first of them opened


def _apply() -> None:
    """Set torch to what the open requests ask for (the newest wins), or back to the saved
    settings when none is open. Called with `_lock` held."""
    n = _open[-1].threads if _open else _saved["threads"]
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@contextmanager
def _intra_op_threads(n: int):
    req = _Request(int(n))
    with _lock:
        if not _open:
            _saved["threads"] = torch.get_num_threads()
        _open.append(req)
        _apply()
    try:
        yield
    finally:
        with _lock:
            _open.remove(req)
            _apply()


def denormals_flushed() -> bool:
    """Whether this thread flushes denormal floats to zero (the CPU flag is per thread)."""
    return float(torch.full((1,), 1e-39) * 1.0) == 0.0


@contextmanager
def flush_denormals():
    """Treat denormal floats as zero on this thread for a block, then restore the old state.

    Weight decay shrinks the weights of ReLU units that stopped firing (and Adam's moments for
    them) towards zero; after about 1,600 steps thousands of them are denormal, and every matrix
    product touching them runs 5-10x slower on x86 (ml-latest-small, 8 epochs: 160k -> 36k
    samples/s by the last epoch; BENCHMARKS.md). The flag lives in each thread's MXCSR register,
    so concurrent jobs on their own threads cannot disturb each other or the caller.
    """
    if not DENORMAL_FIX:
        yield
        return
    was = denormals_flushed()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not was:
            torch.set_flush_denormal(False)


_TINY = torch.finfo(torch.float32).tiny


@torch.no_grad()
def scrub_denormals(tensors) -> int:
    """Set denormal values to exact zeros; returns how many there were. The thread flag
    (`flush_denormals`) does not reach PyTorch's extra intra-op threads (cpu_threads > 1), so
    once an epoch the trainer removes the source as well: parameters and optimiser moments."""
    n = 0
    for t in tensors:
        if t.is_floating_point() and t.device.type == "cpu" and t.numel():
            tiny = (t != 0) & (t.abs() < _TINY)
            k = int(tiny.sum())
            if k:
                t.masked_fill_(tiny, 0.0)
                n += k
    return n


def float_state(model: torch.nn.Module, opt: torch.optim.Optimizer):
    """Every tensor a training step updates: the parameters and the optimiser's moments."""
    yield from model.parameters()
    for st in opt.state.values():
        for v in st.values():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                yield v


@contextmanager
def cpu_compute(threads: int = 0, native: bool = False, flush_denormal: bool = False):
    """Run a block with `threads` intra-op CPU threads (<= 0: leave the setting alone).

    `native=True` also caps the OpenMP / BLAS pools of numpy and scikit-learn (threadpoolctl),
    for the projections, whose work is not torch's. `flush_denormal=True` (CPU training) flushes
    denormal floats on this thread (`flush_denormals`). See the module docstring for why the
    thread count's save / restore is shared by every open context."""
    with ExitStack() as stack:
        if threads > 0:
            stack.enter_context(_intra_op_threads(threads))
            if native:
                # deferred: threadpoolctl comes with scikit-learn and only the projections ask for it
                from threadpoolctl import threadpool_limits

                stack.enter_context(threadpool_limits(limits=int(threads)))
        if flush_denormal:
            stack.enter_context(flush_denormals())
        yield


__all__ = ["available_devices", "resolve_device", "text_device_for", "device_of",
           "cpu_compute", "flush_denormals", "denormals_flushed", "scrub_denormals", "float_state", "SCORING_THREADS",
           "DENORMAL_FIX"]
