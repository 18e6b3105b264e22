"""Task weighting: every model x every method trains; learned weights move; the methods match
their papers' update rules; fixed weights shift the trade-off in the expected direction."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtrlib.config import ARCHS, WEIGHTINGS
from mtrlib.train.loop import train
from mtrlib.weighting import METHODS, StepContext, make_weighting

from _mtr import tiny_cfg, tiny_prep

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["click", "like", "dwell"]
LOSS_WEIGHTING = [w for w in WEIGHTINGS if not METHODS[w].needs_task_gradients]  # gradient methods: test_gradients


@pytest.mark.parametrize("method", LOSS_WEIGHTING)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_model_trains_with_every_weighting(arch, method):
    cfg = tiny_cfg(arch, epochs=3, batch_size=256, lr=0.01, weighting=method, log_every=2)
    res = train(cfg, tiny_prep(cfg))
    assert res.status == "finished", res.reason
    assert all(math.isfinite(res.metrics[t]["auc"]) for t in ("click", "like"))
    assert math.isfinite(res.metrics["dwell"]["rmse"])
    w = [[row[f"weight/{t}"] for t in NAMES] for row in res.history.steps]
    assert all(x > 0 and math.isfinite(x) for row in w for x in row)
    if method == "fixed":
        assert all(row == [1.0, 1.0, 1.0] for row in w)
        return
    moved = max(abs(x - 1.0) for x in w[-1])
    # DWA's weights follow the epoch-to-epoch loss ratios, close to 1 in a 3-epoch tiny run
    # (0.008-0.009 measured on world v2): they must move, by less
    assert moved > (1e-3 if method == "dwa" else 0.01), f"{method} weights did not move: {w[-1]}"
    if method in ("gradnorm", "dwa"):  # both keep the weights summing to the number of tasks
        assert sum(w[-1]) == pytest.approx(3.0, rel=1e-4)
    if method == "dwa":  # weights 1 for the first two epochs, then from the loss ratios
        spe = res.history.steps[-1]["step"] // 3
        assert all(row == [1.0, 1.0, 1.0] for row, s in zip(w, res.history.steps) if s["step"] <= 2 * spe)
        assert res.history.epochs[1]["weight/click"] == 1.0 and res.history.epochs[2]["weight/click"] != 1.0


def test_uncertainty_settles_where_variance_matches_the_loss():
    """Kendall et al.: minimising exp(-s) L + s over s gives exp(s) = L, i.e. weight 1/L."""
    u = make_weighting("uncertainty", ["a", "b"], {})
    opt = torch.optim.Adam(u.extra_parameters(), lr=0.05)
    L = torch.tensor([0.5, 2.0])
    for step in range(2000):
        opt.zero_grad()
        u.combine(L, StepContext([], step, 1)).backward()
        opt.step()
    assert torch.allclose(u.effective(), 1 / L, rtol=1e-2)
    assert torch.allclose(u.log_var.detach(), L.log(), atol=1e-2)


def test_uncertainty_respects_user_weights():
    u = make_weighting("uncertainty", ["a", "b"], {"a": 2.0, "b": 0.0})
    L = torch.tensor([1.0, 3.0])
    assert u.combine(L, StepContext([], 0, 1)).item() == pytest.approx(2.0)
    assert u.effective().tolist() == [2.0, 0.0]


def test_dwa_follows_the_loss_ratio_rule():
    d = make_weighting("dwa", ["a", "b", "c"], {}, temperature=2.0)
    d.end_epoch(torch.tensor([1.0, 1.0, 1.0]))
    assert d.effective().tolist() == [1.0, 1.0, 1.0]  # epoch 2 still uses 1s
    d.end_epoch(torch.tensor([0.5, 1.0, 0.9]))
    r = torch.tensor([0.5, 1.0, 0.9])
    assert torch.allclose(d.effective(), 3 * torch.softmax(r / 2.0, 0))
    assert d.effective()[1] > d.effective()[0]  # the task that learns slowest gets more weight


def _toy():
    torch.manual_seed(0)
    shared = nn.Linear(4, 8)
    heads = nn.ModuleList([nn.Linear(8, 1), nn.Linear(8, 1)])
    x = torch.randn(64, 4)
    return shared, heads, x


def _losses(shared, heads, x, scale):
    h = torch.relu(shared(x))
    return torch.stack([(heads[k](h) ** 2).mean() * scale[k] for k in range(2)])


def test_gradnorm_weight_gradient_matches_the_paper_by_autograd():
    """Our closed form dL_grad/dw equals autograd through G_i = ||grad_W w_i L_i|| (Chen et al.)."""
    shared, heads, x = _toy()
    g = make_weighting("gradnorm", ["a", "b"], {}, alpha=1.5, lr=0.01)
    g.initial.copy_(torch.tensor([2.0, 0.5]))
    with torch.no_grad():
        g.w.copy_(torch.tensor([1.3, 0.7]))
    losses = _losses(shared, heads, x, [1.0, 4.0])
    W = [shared.weight, shared.bias]
    # reference: the paper's L_grad with create_graph, differentiated by autograd
    w = g.w.detach().clone().requires_grad_()
    G = torch.stack([torch.sqrt(sum((t ** 2).sum() for t in torch.autograd.grad(w[i] * losses[i], W, retain_graph=True,
                                                                               create_graph=True))) for i in range(2)])
    ratio = losses.detach() / g.initial
    target = (G.mean() * (ratio / ratio.mean()) ** 1.5).detach()
    ref = torch.autograd.grad((G - target).abs().sum(), w)[0]
    # ours: capture the gradient handed to the weights' optimiser
    seen = {}
    g.opt.step = lambda: seen.setdefault("grad", g.w.grad.clone())
    g.combine(losses, StepContext(W, 0, 1))
    assert torch.allclose(seen["grad"], ref, rtol=1e-4, atol=1e-6)


def test_gradnorm_balances_gradient_norms():
    """A task whose loss is scaled up 10x dominates the shared layer; GradNorm turns it down."""
    shared, heads, x = _toy()
    g = make_weighting("gradnorm", ["big", "small"], {}, alpha=0.0, lr=0.02)
    opt = torch.optim.Adam(list(shared.parameters()) + list(heads.parameters()), lr=1e-3)
    for step in range(150):
        losses = _losses(shared, heads, x, [10.0, 1.0])
        total = g.combine(losses, StepContext([shared.weight, shared.bias], step, 1))
        opt.zero_grad()
        total.backward()
        opt.step()
    w = g.effective()
    assert w[0] < 0.5 < 1.5 < w[1]
    assert w.sum().item() == pytest.approx(2.0, rel=1e-5)


def test_gradnorm_leaves_zero_weight_tasks_out():
    shared, heads, x = _toy()
    g = make_weighting("gradnorm", ["a", "b"], {"b": 0.0}, lr=0.05)
    losses = _losses(shared, heads, x, [1.0, 1.0])
    total = g.combine(losses, StepContext([shared.weight], 0, 1))
    assert g.effective()[1] == 0
    assert total.item() == pytest.approx(losses[0].item())


def test_fixed_weights_scale_the_losses():
    f = make_weighting("fixed", ["a", "b"], {"b": 3.0})
    assert f.combine(torch.tensor([1.0, 2.0]), StepContext([], 0, 1)).item() == 7.0
    assert set(METHODS) == set(WEIGHTINGS)


def test_more_weight_on_a_task_does_not_lower_its_auc():
    """The what-if knob: click weight 5 vs 0.1 (like and dwell fixed). Measured on this world
    (shared-bottom, seeds 0-1): click AUC about 0.79 vs 0.69; asserted with a wide margin."""
    def click_auc(weight, seed):
        cfg = tiny_cfg("shared-bottom", world={"n_users": 400, "n_items": 150, "impressions_per_user": 40,
                                               "seed": seed}, epochs=6, lr=0.01, batch_size=512,
                       weights={"click": weight, "dwell": 0.1}, seed=seed)
        return train(cfg, tiny_prep(cfg)).metrics["click"]["auc"]

    low = sum(click_auc(0.1, s) for s in (0, 1)) / 2
    high = sum(click_auc(5.0, s) for s in (0, 1)) / 2
    assert high > low + 0.02, (low, high)
