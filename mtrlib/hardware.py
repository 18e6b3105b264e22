"""What accelerators this machine has, asked of torch only when a question is asked.

Below every package: the training devices (`mtrlib.train.device`) and the text encoder
(`mtrlib.data.text`) read the same answer, and the data layer may ask without paying torch's
import time when it only reads cached text vectors.
"""
from __future__ import annotations

ENCODER_DEVICES = ("cpu", "cuda", "mps", "auto")


def accelerators() -> dict[str, bool]:
    """{"cuda": visible, "mps": available}: what every device resolver asks torch."""
    # deferred: the data layer (reading cached text vectors, the `inspect` CLI) must not import torch
    import torch

    mps = getattr(torch.backends, "mps", None)
    return {"cuda": torch.cuda.is_available(), "mps": bool(mps is not None and mps.is_available())}


def encoder_device(device: str = "cpu", unavailable: type[Exception] = RuntimeError) -> str:
    """The text encoder's device string: 'auto' -> cuda, then mps, then cpu; an indexed name
    ('cuda:1') passes through. An unknown name is a ValueError; an absent accelerator raises
    `unavailable` (the text module passes its TextEncoderUnavailable), so a caller can tell a
    typo from a machine without the accelerator."""
    dev = str(device or "cpu").lower()
    base = dev.split(":")[0]
    if base not in ENCODER_DEVICES:
        raise ValueError(f"Unknown device {device!r}; use one of {', '.join(ENCODER_DEVICES)}.")
    if base == "cpu":
        return "cpu"
    acc = accelerators()
    if base == "auto":
        return "cuda" if acc["cuda"] else "mps" if acc["mps"] else "cpu"
    if base == "cuda" and not acc["cuda"]:
        raise unavailable(f"Device {device!r} was asked for, but no CUDA GPU is visible to torch.")
    if base == "mps" and not acc["mps"]:
        raise unavailable(f"Device {device!r} was asked for, but Apple MPS is not available.")
    return dev
