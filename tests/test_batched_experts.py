"""Batched experts, gates (issue 31): one [n, d_in, d_out] tensor per layer computed in one kernel
gives the same outputs and gradients as the n separate nn.Linear layers it replaces (the looped
form, written out here), initialises like them, and run folders saved before it still load."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from mtrlib.models.blocks import ExpertStack, StackedLinear
from mtrlib.train.loop import build

from _mtr import tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")
LEGACY = Path(__file__).parent / "fixtures" / "pre-batched"  # saved by the `int` code (generate.py)


def looped_layer(layer: StackedLinear, x: torch.Tensor, k: int) -> torch.Tensor:
    """Row k as the nn.Linear it replaces: x [B, d_in] -> [B, d_out]."""
    return F.linear(x, layer.weight[k].T, layer.bias[k])


def looped_experts(stack: ExpertStack, xs: list[torch.Tensor]) -> torch.Tensor:
    """Each expert its own MLP, one Linear at a time: xs n x [B, d_in] -> [n, B, d_out]."""
    outs = []
    for k, h in enumerate(xs):
        for layer in stack.layers:
            h = torch.relu(looped_layer(layer, h, k))
        outs.append(h)
    return torch.stack(outs, 0)


def _grads(out: torch.Tensor, params) -> list[torch.Tensor]:
    w = torch.linspace(-1, 1, out.numel()).reshape(out.shape)  # a loss that weighs every output differently
    return torch.autograd.grad((out * w).sum(), params)


@pytest.mark.parametrize("shared_input", [True, False], ids=["one-row", "row-per-expert"])
def test_expert_stack_equals_the_looped_experts_outputs_and_gradients(shared_input):
    torch.manual_seed(0)
    n, B, d_in = 5, 7, 11
    stack = ExpertStack(n, d_in, [9, 4])
    x = torch.randn(B, d_in, requires_grad=True) if shared_input else torch.randn(n, B, d_in, requires_grad=True)
    xs = [x] * n if shared_input else list(x)
    batched, looped = stack(x), looped_experts(stack, xs)
    assert batched.shape == (n, B, 4)
    torch.testing.assert_close(batched, looped, rtol=1e-6, atol=1e-6)
    params = [x, *stack.parameters()]
    for gb, gl in zip(_grads(batched, params), _grads(looped, params)):
        torch.testing.assert_close(gb, gl, rtol=1e-5, atol=1e-6)
    assert [p.shape for p in stack.layers[0].parameters()] == [(n, d_in, 9), (n, 9)]


def test_stacked_linear_initialises_like_nn_linear():
    """Per layer, nn.Linear's kaiming-uniform (a = sqrt 5): weight and bias ~ U(-1/sqrt(d_in), 1/sqrt(d_in))."""
    torch.manual_seed(0)
    d_in, d_out, n = 64, 32, 64
    s = StackedLinear(n, d_in, d_out)
    ref = torch.cat([nn.Linear(d_in, d_out).weight.flatten() for _ in range(n)])
    bound = 1 / math.sqrt(d_in)
    for w in (s.weight, s.bias):
        assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    # the same distribution: uniform of that bound, std bound / sqrt(3), as nn.Linear's
    assert s.weight.std().item() == pytest.approx(ref.std().item(), rel=0.03)
    assert s.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)
    assert abs(s.weight.mean().item()) < 0.1 * bound


def _model(prep, arch, **model):
    m = build(tiny_cfg(arch, model=model, epochs=1), prep)
    m.fit_targets(prep.train.labels, prep.train.mask)
    return m


def _mmoe_looped(m, x):
    """MMoE (Ma et al. KDD 2018) one expert and one gate at a time: f^k = sum_i softmax(W_gk x)_i f_i(x)."""
    e = looped_experts(m.experts, [x] * m.experts.n)  # [E, B, d]
    return [sum(torch.softmax(looped_layer(m.gates, x, t), -1)[:, i:i + 1] * e[i] for i in range(m.experts.n))
            for t in range(len(m.tasks))]


def _ple_looped(m, x):
    """PLE (Tang et al. RecSys 2020) level by level, expert by expert, gate by gate."""
    T = len(m.tasks)
    task_x, shared_x = [x] * T, x
    for lvl in m.levels:
        s, h = lvl.s, lvl.h
        e = [looped_experts(lvl.specific, [task_x[t] for t in range(T) for _ in range(s)])] if s else []
        e = torch.cat(e + ([looped_experts(lvl.shared, [shared_x] * h)] if h else []), 0)  # [T*s+h, B, d]
        outs = []
        for t in range(T):
            pool = [e[t * s + k] for k in range(s)] + [e[T * s + j] for j in range(h)]
            g = torch.softmax(looped_layer(lvl.task_gates, task_x[t], t), -1)
            outs.append(sum(g[:, k:k + 1] * p for k, p in enumerate(pool)))
        if lvl.shared_gate is not None:
            g = torch.softmax(lvl.shared_gate(shared_x), -1)
            shared_x = sum(g[:, k:k + 1] * e[k] for k in range(len(e)))
        task_x = outs
    return task_x


def _stem_looped(m, x):
    """STEM (Su et al. AAAI 2024): task k's gate over every expert, the other tasks' ones detached (AFTB)."""
    T, s, h = len(m.tasks), m.options.specific_experts, m.options.shared_experts
    e = looped_experts(m.specific, [x[1 + t] for t in range(T) for _ in range(s)])
    e = torch.cat([e, looped_experts(m.shared, [x[0]] * h)], 0) if h else e  # [T*s+h, B, d]
    outs = []
    for k in range(T):
        pool = [e[r] if (k * s <= r < (k + 1) * s or r >= T * s) else e[r].detach() for r in range(len(e))]
        g = torch.softmax(looped_layer(m.gates, x[1 + k] + x[0], k), -1)
        outs.append(sum(g[:, r:r + 1] * p for r, p in enumerate(pool)))
    return outs


@pytest.mark.parametrize("arch,model,looped", [
    ("mmoe", {"n_experts": 4}, _mmoe_looped),
    ("ple", {"levels": 1, "specific_experts": 1, "shared_experts": 2}, _ple_looped),
    ("ple", {"levels": 3, "specific_experts": 2, "shared_experts": 1}, _ple_looped),
    ("ple", {"levels": 2, "specific_experts": 0, "shared_experts": 2}, _ple_looped),
    ("stem", {"specific_experts": 2, "shared_experts": 1}, _stem_looped),
], ids=["mmoe", "cgc", "ple3", "ple-shared-only", "stem"])
def test_architecture_body_equals_its_looped_form(tiny_prepared, arch, model, looped):
    """Tower inputs and every parameter's gradient (per task: STEM's stop-gradient included)."""
    m = _model(tiny_prepared, arch, **model)
    d = tiny_prepared.train
    x = m.input_row(d.user[:9], d.item[:9]).detach()
    batched, ref = m.body(x).tower_inputs, looped(m, x)
    params = [p for n, p in m.named_parameters() if not n.startswith(("input", "towers"))]
    for t in range(len(m.tasks)):
        torch.testing.assert_close(batched[t], ref[t], rtol=1e-6, atol=1e-6)
        gb = torch.autograd.grad(batched[t].square().sum(), params, retain_graph=True, allow_unused=True)
        gl = torch.autograd.grad(ref[t].square().sum(), params, retain_graph=True, allow_unused=True)
        for p, a, b in zip(params, gb, gl):  # None: that task's output does not reach p (either form)
            torch.testing.assert_close(torch.zeros_like(p) if a is None else a, torch.zeros_like(p) if b is None else b,
                                       rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,arch,model", [
    ("mmoe", "mmoe", {"n_experts": 3, "experts": [16, 8], "dropout": 0.1}),
    ("ple2", "ple", {"levels": 2, "specific_experts": 2, "shared_experts": 1, "experts": [12, 8]}),
    ("stem", "stem", {"specific_experts": 1, "shared_experts": 2, "experts": [16, 8]}),
])
def test_weights_saved_before_batching_load_and_give_the_same_outputs_and_gates(tiny_prepared, name, arch, model):
    """A state dict with per-expert modules (`experts.0.0.weight`, `levels.0.specific.1.0.2.weight`,
    `gates.2.weight`: saved by the code before issue 31) loads strictly into the stacked tensors."""
    saved = load_file(LEGACY / f"{name}.safetensors")
    expected = {k[len("expected."):]: saved.pop(k) for k in list(saved) if k.startswith("expected.")}
    assert any(".0.0.weight" in k for k in saved)  # really the old layout
    m = _model(tiny_prepared, arch, **model).eval()
    m.load_state_dict(saved, strict=True)
    d = tiny_prepared.train
    with torch.no_grad():
        torch.testing.assert_close(m(d.user[:16], d.item[:16]), expected["raw"], rtol=1e-5, atol=1e-6)
        rep = m.inspect(d.user[:16], d.item[:16])
    for t in m.task_names:  # the gate heat-map's numbers
        torch.testing.assert_close(rep[f"gate:{t}"], expected[f"gate:{t}"], rtol=1e-5, atol=1e-6)
    m.load_state_dict(m.state_dict(), strict=True)  # and the new layout loads as itself


def test_a_run_folder_saved_before_batching_opens_with_stacked_experts(tmp_path):
    """tests/fixtures/run-format1 (a 2-level PLE run with history, saved by older code) opens
    through the run store: its per-expert weights land in the stacked tensors, row by row."""
    import shutil

    from safetensors.numpy import load_file as load_np

    from mtrlib.runs import load_run
    fixture = Path(__file__).parent / "fixtures" / "run-format1"
    shutil.copytree(fixture, tmp_path / "runs" / "run-format1")
    model = load_run("run-format1", store=tmp_path / "runs").model
    old = load_np(fixture / "weights.safetensors")
    lvl = model.levels[1]
    assert isinstance(lvl.specific, ExpertStack) and lvl.specific.n == 3 and lvl.shared.n == 2
    # task 2's specific expert (row 2) and shared expert 1 (row 1) of level 1, and task 1's gate
    torch.testing.assert_close(lvl.specific.layers[0].weight[2], torch.from_numpy(old["levels.1.specific.2.0.0.weight"]).T)
    torch.testing.assert_close(lvl.shared.layers[0].bias[1], torch.from_numpy(old["levels.1.shared.1.0.bias"]))
    torch.testing.assert_close(lvl.task_gates.weight[1], torch.from_numpy(old["levels.1.task_gates.1.weight"]).T)
    u, i = torch.arange(4), torch.arange(4)
    with torch.no_grad():
        assert torch.isfinite(model(u, i)).all()
