"""mtrlib.train.device: the device resolvers (training, text encoder, prepare) and the one CPU-thread
context shared by training, scoring and the projections."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info

from mtrlib.errors import TrainingError
from mtrlib.train import device, loop as train
from mtrlib import hardware
from mtrlib.data import text
from mtrlib.serve.scoring import iter_scores

from _mtr import tiny_cfg, tiny_prep


def test_cpu_compute_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with device.cpu_compute(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with device.cpu_compute(0):  # 0: leave the setting alone (an accelerator, MTR_SCORING_THREADS=0)
        assert torch.get_num_threads() == before


def test_cpu_compute_contexts_may_close_in_any_order():
    # training jobs and a page scoring open contexts on different threads; they close in any order
    before = torch.get_num_threads()
    a, b = device.cpu_compute(3), device.cpu_compute(1)
    a.__enter__()
    b.__enter__()
    assert torch.get_num_threads() == 1  # the newest open one applies
    a.__exit__(None, None, None)
    assert torch.get_num_threads() == 1  # b is still open
    b.__exit__(None, None, None)
    assert torch.get_num_threads() == before  # the last to close restores
    with device.cpu_compute(3):
        with device.cpu_compute(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3  # the outer one's count again, not the saved one
    assert torch.get_num_threads() == before


def test_cpu_compute_native_caps_numpy_and_sklearn_pools():
    with device.cpu_compute(1, native=True):
        pools = threadpool_info()
        assert pools and all(p["num_threads"] == 1 for p in pools)
        assert torch.get_num_threads() == 1


def test_cpu_compute_flushes_denormals_on_request_only():
    before = torch.get_num_threads()
    assert not device.denormals_flushed()
    with device.cpu_compute(1, flush_denormal=True):  # what CPU training asks for
        assert device.denormals_flushed() is device.DENORMAL_FIX and torch.get_num_threads() == 1
        with device.cpu_compute(1):  # scoring inside it leaves the flag as it is
            assert device.denormals_flushed() is device.DENORMAL_FIX
    assert not device.denormals_flushed() and torch.get_num_threads() == before


def test_scoring_runs_with_the_scoring_threads_and_restores():
    cfg = tiny_cfg("shared-bottom")
    prep = tiny_prep(cfg)
    model = train.build(cfg, prep)
    before = torch.get_num_threads()
    seen = [torch.get_num_threads() for _ in iter_scores(model, np.arange(5))]
    assert seen == [device.SCORING_THREADS or before]
    assert torch.get_num_threads() == before
    assert device.device_of(model) == torch.device("cpu")


def test_device_resolvers_share_one_view_of_the_machine():
    devs = device.available_devices()
    assert devs[-1] == "cpu"
    assert train.available_devices is device.available_devices and train.resolve_device is device.resolve_device
    assert device.resolve_device("auto").type == devs[0]
    assert text.resolve_device("auto") == devs[0]  # the encoder's auto prefers the same order
    assert device.text_device_for("cpu") == "cpu"
    with pytest.raises(ValueError, match="Unknown device"):
        hardware.encoder_device("tpu")
    if "cuda" in devs:
        assert device.text_device_for("auto") == "auto" and text.resolve_device("cuda:0") == "cuda:0"
    else:
        assert device.text_device_for("auto") == "cpu"  # auto without CUDA encodes on the CPU, even with MPS
        with pytest.raises(TrainingError, match="not available"):
            device.resolve_device("cuda")
        with pytest.raises(text.TextEncoderUnavailable, match="no CUDA GPU"):
            text.resolve_device("cuda")
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            hardware.encoder_device("cuda:1")
