"""Issue 28: HoME's expert fixes as knobs (norm, Swish, feature and self gates), and the architectures
HoME, AdaTT and PEPNet: their shapes, the papers' guarantees (AdaTT's fusion rows, HoME's hierarchy
mask, PEPNet's gate range) and the defaults of `blocks.mlp` left as they were."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mtrlib.config import ModelConfig
from mtrlib.errors import DataError
from mtrlib.models.blocks import BatchNorm, GatedExpert, InputLinear, mlp
from mtrlib.models.home import task_groups
from mtrlib.train.loop import build
from mtrlib.viz import charts

from _mtr import tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ["click", "like", "dwell"]


@pytest.fixture
def prep(tiny_prepared):
    return tiny_prepared  # tasks click, like|click, dwell:reg|click


def model_for(prep, arch, **options):
    m = build(tiny_cfg(arch, model=options, epochs=1), prep)
    m.fit_targets(prep.train.labels, prep.train.mask)
    return m


def rows(prep, b=7):
    return prep.train.user[:b], prep.train.item[:b]


# -- blocks.mlp: the defaults are exactly what they were; the knobs add norm and Swish -------------

def test_the_default_mlp_is_linear_relu_dropout_with_an_input_linear_first():
    plain = mlp(10, [8, 4])
    assert [type(m) for m in plain] == [InputLinear, nn.ReLU, nn.Linear, nn.ReLU]
    dropped = mlp(10, [8, 4], 0.1)
    assert [type(m) for m in dropped] == [InputLinear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout]


@pytest.mark.parametrize("norm,cls", [("batch", BatchNorm), ("layer", nn.LayerNorm)])
def test_norm_and_swish_come_after_each_linear(norm, cls):
    net = mlp(10, [8, 4], norm=norm, activation="swish")
    assert [type(m) for m in net] == [InputLinear, cls, nn.SiLU, nn.Linear, cls, nn.SiLU]
    assert net(torch.randn(1, 10)).shape == (1, 4)  # batch norm takes a one-row batch too


def test_the_gated_expert_gates_its_input_and_its_output():
    torch.manual_seed(0)
    ex = GatedExpert(6, [5], feature_gate=True, self_gate=True)
    x = torch.randn(3, 6)
    fg = 2 * torch.sigmoid(ex.feature_gate(x)) * x
    e = ex.body(fg)
    torch.testing.assert_close(ex(x), e + torch.sigmoid(ex.self_gate(e)) * e)


@pytest.mark.parametrize("arch", ["mmoe", "ple", "stem"])
def test_home_knobs_change_the_experts(prep, arch):
    plain = model_for(prep, arch)
    assert not any(isinstance(m, (BatchNorm, nn.SiLU, GatedExpert)) for m in plain.modules())
    home = model_for(prep, arch, expert_norm="batch", expert_activation="swish", feature_gate=True, self_gate=True)
    kinds = {type(m) for m in home.modules()}
    assert {BatchNorm, nn.SiLU, GatedExpert} <= kinds
    assert home.factorised_body is False  # the feature gate reads the row densely
    u, i = rows(prep)
    assert home(u, i).shape == (7, 3)
    if arch != "stem":  # one input row: scoring's parts still give the forward pass (densely)
        home.eval()
        inp = home.split_input()
        with torch.no_grad():
            got = home.score_parts(inp.user_part(torch.arange(3)), inp.item_part(torch.arange(4)))
            plain_rows = home.ranking_forward(torch.arange(3).repeat_interleave(4), torch.arange(4).repeat(3))
        torch.testing.assert_close(got, plain_rows, rtol=0, atol=1e-5)


# -- AdaTT ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shared,levels", [(2, 1), (0, 1), (1, 2)])
def test_adatt_fusion_rows_and_the_shared_weight_sum_to_one(prep, shared, levels):
    m = model_for(prep, "adatt", shared_experts=shared, levels=levels, specific_experts=2).eval()
    u, i = rows(prep)
    assert m(u, i).shape == (7, 3)
    x = m.input_row(u, i)
    F = m.fusion_matrix(x)
    assert F.shape == (3, 3) and (F >= 0).all()
    rep = m.inspect(u, i)
    assert m.expert_names == TASKS + (["shared"] if shared else [])
    shared_w = torch.stack([rep[f"gate:{t}"][:, 3:].sum(1).mean() for t in TASKS]) if shared else torch.zeros(3)
    torch.testing.assert_close(F.sum(1) + shared_w, torch.ones(3))
    assert set(m.expert_modules()) == set(m.expert_names)


def test_adatt_adds_the_residual_of_a_tasks_own_expert(prep):
    m = model_for(prep, "adatt", shared_experts=0, specific_experts=1).eval()
    lvl = m.levels[0]
    x = m.input_row(*rows(prep))
    with torch.no_grad():
        own = [grp(x) for grp in lvl.task_experts]  # T x [1, B, d]
        e = torch.cat(own, 0)
        g = torch.softmax(lvl.task_gates[1](x), -1)  # [B, T]
        want = (g.t().unsqueeze(-1) * e).sum(0) + own[1][0]
        torch.testing.assert_close(m.body(x).tower_inputs[1], want)


# -- HoME -------------------------------------------------------------------------------------------

def test_home_task_groups_parse_and_refuse():
    assert task_groups("", TASKS) == [["click"], ["like"], ["dwell"]]
    assert task_groups("click, like ; dwell", TASKS) == [["click", "like"], ["dwell"]]
    assert task_groups("like,dwell", TASKS) == [["like", "dwell"], ["click"]]
    with pytest.raises(DataError, match="not a ranking task"):
        task_groups("click,buy", TASKS)
    with pytest.raises(DataError, match="twice"):
        task_groups("click;click,like", TASKS)


def test_home_a_task_mixes_only_its_own_its_groups_and_the_shared_experts(prep):
    m = model_for(prep, "home", task_groups="click,like;dwell", specific_experts=1, group_experts=1, shared_experts=1)
    assert m.expert_names == ["click 1", "like 1", "dwell 1", "group click+like 1", "group dwell 1", "shared 1"]
    assert {BatchNorm, nn.SiLU} <= {type(x) for x in m.modules()}  # the paper's norm + Swish by default
    u, i = rows(prep)
    rep = m.inspect(u, i)
    allowed = {"click": {0, 3, 5}, "like": {1, 3, 5}, "dwell": {2, 4, 5}}
    for t, cols in allowed.items():
        g = rep[f"gate:{t}"]
        others = [k for k in range(6) if k not in cols]
        assert (g[:, others] == 0).all() and torch.allclose(g.sum(1), torch.ones(7))
    # gradients: click's output never reaches dwell's group experts nor another task's experts
    m.zero_grad()
    m(u, i)[:, 0].sum().backward()
    grads = {name: any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters())
             for name, mod in m.expert_modules().items()}
    assert grads == {"click 1": True, "like 1": False, "dwell 1": False, "group click+like 1": True,
                     "group dwell 1": False, "shared 1": True}


def test_home_refuses_groups_naming_no_task(prep):
    with pytest.raises(DataError, match="not a ranking task"):
        model_for(prep, "home", task_groups="click;buy")


# -- PEPNet -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("gamma", [2.0, 3.0])
def test_pepnet_gates_lie_in_zero_to_gamma_and_read_the_user_side_only(prep, gamma):
    m = model_for(prep, "pepnet", gamma=gamma)
    u, i = rows(prep)
    assert m(u, i).shape == (7, 3)
    x = m.input_row(u, i)
    ep, pp, xp = m.gate_values(x)
    assert ep.shape == x.shape and len(pp) == 3 and [g.shape[1] for g in pp[0]] == [64, 32]
    for g in [ep, *[g for task in pp for g in task]]:
        assert (g >= 0).all() and (g <= gamma).all()
    torch.testing.assert_close(xp, ep * x)
    # the EPNet gate reads the user's side: another item leaves it unchanged
    ep2, _, _ = m.gate_values(m.input_row(u, prep.train.item[7:14]))
    torch.testing.assert_close(ep, ep2)
    assert m.expert_names == [] and m.expert_modules() == {}


# -- the diagram --------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch,options", [("adatt", {}), ("adatt", {"levels": 2, "shared_experts": 0}), ("home", {}),
                                          ("home", {"task_groups": "click,like"}), ("home", {"task_groups": "buy"}),
                                          ("pepnet", {}), ("mmoe", {"expert_norm": "batch", "feature_gate": True})])
def test_each_new_architecture_draws_its_diagram(arch, options):
    m = ModelConfig(arch=arch)
    for k, v in options.items():
        setattr(m.options, k, v)
    fig = charts.network(m, TASKS)
    assert len(fig.layout.shapes) > 0
    if arch == "home" and options.get("task_groups") == "click,like":
        texts = " ".join(a.text for a in fig.layout.annotations)
        assert "G1.1" in texts and "G2.1" in texts  # the click+like group and dwell's own
