"""Speed that holds for a whole run (issue 12): denormal floats are flushed while training on
CPU and scrubbed from the weights, per thread and restored afterwards; live series stay bounded.
(No timed assertions: the speed itself is measured by bench/live_training.py and
bench/throughput.py; these tests check the mechanisms.)"""
from __future__ import annotations

import threading

import torch

from _mtr import tiny_cfg, tiny_prep
from mtrlib.viz.series import Downsampled, thin
from mtrlib.train.device import denormals_flushed, flush_denormals
from mtrlib.train.device import float_state, scrub_denormals
from mtrlib.train.loop import train

DENORMAL = 1e-39  # below float32's smallest normal (1.18e-38)


def test_flush_is_on_while_training_and_restored_after():
    cfg = tiny_cfg("mmoe", epochs=1, log_every=2)
    seen = []
    assert not denormals_flushed()
    res = train(cfg, tiny_prep(cfg), callback=lambda e: seen.append(denormals_flushed()))
    assert res.status == "finished"
    assert seen and all(seen), "denormals were not flushed on the training thread"
    assert not denormals_flushed(), "the caller's denormal setting was not restored"


def test_the_flag_is_per_thread_so_concurrent_jobs_do_not_disturb_the_caller():
    inside, after = [], []
    go, done = threading.Event(), threading.Event()

    def job():
        with flush_denormals():
            inside.append(denormals_flushed())
            go.set()
            done.wait(10)
        after.append(denormals_flushed())

    t = threading.Thread(target=job)
    t.start()
    assert go.wait(10)
    main_during = denormals_flushed()  # while the other thread is inside its flush block
    done.set()
    t.join(10)
    assert inside == [True] and after == [False] and main_during is False


def test_nested_flush_keeps_the_outer_state():
    with flush_denormals():
        with flush_denormals():
            assert denormals_flushed()
        assert denormals_flushed(), "the inner block switched off the outer block's flush"
    assert not denormals_flushed()


def test_scrub_zeroes_denormals_only():
    t = torch.tensor([DENORMAL, -DENORMAL, 0.0, 1e-30, -2.0, 1e-37])
    assert scrub_denormals([t]) == 2
    assert t.tolist() == [0.0, 0.0, 0.0, torch.tensor(1e-30).item(), -2.0, torch.tensor(1e-37).item()]
    assert scrub_denormals([torch.zeros(3, dtype=torch.long)]) == 0  # integer tensors are left alone


def test_training_leaves_no_denormal_weight_or_optimiser_moment():
    """Planted denormals in the weights (as weight decay makes them in dead units) are gone after
    an epoch: the scrub reaches parameters and Adam's moments."""
    cfg = tiny_cfg("mmoe", epochs=2)
    prep = tiny_prep(cfg)
    from mtrlib.train.loop import build
    model = build(cfg, prep)
    with torch.no_grad():
        w = model.experts[0][0].weight
        w[:, :4] = DENORMAL
    res = train(cfg, prep, model=model)
    tiny = torch.finfo(torch.float32).tiny
    for p in res.model.parameters():
        a = p.detach().abs()
        assert int(((a > 0) & (a < tiny)).sum()) == 0


def test_float_state_covers_parameters_and_adam_moments():
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(lin.parameters())
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    tensors = list(float_state(lin, opt))
    assert len(tensors) == 2 + 2 * 2  # weight, bias + exp_avg and exp_avg_sq of each


def test_downsampled_stays_bounded_keeps_order_and_the_newest_row():
    s = Downsampled(max_points=50)
    for k in range(100_000):
        s.append({"step": k})
        if k % 997 == 0:
            rows = s.rows()
            assert len(rows) <= 101 and rows[-1]["step"] == k
    rows = s.rows()
    steps = [r["step"] for r in rows]
    assert steps == sorted(steps) and steps[0] <= 2048 and steps[-1] == 99_999
    assert 50 <= len(rows) <= 101 and s.total == 100_000
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert max(gaps) <= 4 * min(gaps)  # thinned evenly, not a dense tail after a sparse head


def test_downsampled_keeps_everything_while_short():
    s = Downsampled(max_points=300)
    for k in range(250):
        s.append({"step": k})
    assert [r["step"] for r in s] == list(range(250)) and len(s) == 250 and bool(s)
    assert not Downsampled()


def test_thin_keeps_first_last_and_bounds_a_growing_history():
    import pandas as pd
    df = pd.DataFrame({"step": range(100_000)})
    t = thin(df, 600)
    assert len(t) <= 600 and t["step"].iloc[0] == 0 and t["step"].iloc[-1] == 99_999
    assert thin(df.head(50), 600) is not None and len(thin(df.head(50), 600)) == 50
    assert thin(list(range(10)), 4) == [0, 3, 6, 9]
