"""Gradient methods and the gradient-conflict telemetry (issue 16).

Each method's defining property on a tiny two-task problem whose gradients are known in closed
form; the telemetry against cosines computed by hand with autograd; which parameters count as
shared, for every architecture; and every method training every architecture for a step, on
the shared parameters and on the shared representation."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mtrlib.errors import UserError
from mtrlib.config import ARCHS, WEIGHTINGS
from mtrlib.train.gradients import RepCapture, SharedParameters, TaskGradients, group_of
from mtrlib.train.steps import Batch
from mtrlib.train.telemetry import GradientTelemetry, summary
from mtrlib.train.loop import build, train
from mtrlib.weighting import METHODS, StepContext, make_weighting
from mtrlib.weighting._torchjd import GradientMethod

from _mtr import tiny_cfg, tiny_prep

pytestmark = pytest.mark.usefixtures("one_thread")

GRADIENT_METHODS = [w for w in WEIGHTINGS if METHODS[w].needs_task_gradients]


# -- a two-task problem with known gradients --------------------------------------------------------------

class Toy(nn.Module):
    """L_k = exp(g_k . theta) * (1 + own_k^2): at theta = 0 task k's gradient on the shared
    theta is g_k * (1 + own_k^2), on its own parameter 2 own_k; nothing else."""

    def __init__(self, *g):
        super().__init__()
        self.g = torch.tensor(g, dtype=torch.float64)
        self.theta = nn.Parameter(torch.zeros(self.g.shape[1], dtype=torch.float64))
        self.own = nn.ParameterList([nn.Parameter(torch.tensor(1.0, dtype=torch.float64)) for _ in g])

    def losses(self):
        return torch.stack([torch.exp(self.g[k] @ self.theta) * (1 + self.own[k] ** 2) for k in range(len(self.g))])


def step(method: str, toy: Toy, **kw):
    """One backward of `method` on the toy: (shared theta's gradient, the method)."""
    shared = SharedParameters.from_losses(toy, toy.losses)
    assert shared.names == ["theta"]
    w = make_weighting(method, [f"t{k}" for k in range(len(toy.g))], kw.pop("user", {}), **kw)
    w.double()
    losses = toy.losses()
    ctx = StepContext([], 0, 1, TaskGradients(shared, losses))
    toy.zero_grad()
    w.backward(w.combine(losses, ctx), losses, ctx)
    return toy.theta.grad.detach().clone(), w


CONFLICT = ([1.0, 0.0], [-1.0, 1.0])  # inner product -1: a step along one hurts the other
AGREE = ([1.0, 0.5], [0.5, 1.0])
SCALE = 2.0  # 1 + own^2 at own = 1: the gradients are SCALE * g_k


def test_pcgrad_projected_gradients_do_not_conflict():
    g1, g2 = (SCALE * torch.tensor(g, dtype=torch.float64) for g in CONFLICT)
    d, _ = step("pcgrad", Toy(*CONFLICT))
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2  # each projected onto the normal plane of the other (Yu et al., Alg. 1)
    p2 = g2 - (g2 @ g1) / (g1 @ g1) * g1
    assert torch.allclose(d, p1 + p2, atol=1e-9)
    assert abs(float(p1 @ g2)) < 1e-12 and abs(float(p2 @ g1)) < 1e-12  # no conflict is left
    d, _ = step("pcgrad", Toy(*AGREE))  # no conflict: nothing is projected
    assert torch.allclose(d, SCALE * torch.tensor(AGREE, dtype=torch.float64).sum(0), atol=1e-9)


def test_mgda_is_the_min_norm_point_of_the_convex_hull():
    g1, g2 = (SCALE * torch.tensor(g, dtype=torch.float64) for g in CONFLICT)
    d, w = step("mgda", Toy(*CONFLICT))
    gamma = min(1.0, max(0.0, float(((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2)))))
    best = gamma * g1 + (1 - gamma) * g2  # closed form for two vectors
    assert torch.allclose(d, best, atol=2e-3 * float(best.norm()) + 1e-9)
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64)[:, None]
    assert float(d.norm()) <= float((grid * g1 + (1 - grid) * g2).norm(dim=1).min()) * 1.001
    assert float(w.effective().sum()) == pytest.approx(1.0, abs=1e-6)  # a point of the hull: weights on the simplex
    assert float(d @ g1) > 0 and float(d @ g2) > 0  # a common descent direction


def test_upgrad_update_has_a_non_negative_inner_product_with_every_task_gradient():
    tasks = ([1.0, 0.0, 0.0], [-0.9, 1.0, 0.0], [-0.5, -0.8, 0.3])
    G = SCALE * torch.tensor(tasks, dtype=torch.float64)
    assert float((G @ G.T).min()) < 0  # they conflict
    d, _ = step("upgrad", Toy(*tasks))
    assert float((G @ d).min()) >= -1e-9 and float(d.norm()) > 0
    d, _ = step("upgrad", Toy(*AGREE))  # no conflict: the mean gradient
    assert torch.allclose(d, SCALE * torch.tensor(AGREE, dtype=torch.float64).mean(0), atol=1e-6)


def test_gradient_methods_apply_user_weights_and_leave_task_parameters_their_own_gradient():
    toy = Toy(*CONFLICT)
    d, w = step("upgrad", toy, user={"t0": 2.0, "t1": 0.0})  # t1 left out: the plain (weighted) gradient
    assert torch.allclose(d, 2.0 * SCALE * torch.tensor(CONFLICT[0], dtype=torch.float64))
    assert float(toy.own[0].grad) == pytest.approx(2.0 * 2.0)
    assert toy.own[1].grad is None or float(toy.own[1].grad) == 0
    toy = Toy(*CONFLICT)
    d, w = step("mgda", toy, user={"t0": 3.0})
    assert float(toy.own[0].grad) == pytest.approx(3.0 * 2.0) and float(toy.own[1].grad) == pytest.approx(2.0)
    assert w.effective()[0] > 0


class FakeStep(StepContext):
    """A StepContext whose 'losses after the update' come from the toy (the trainer's come from the batch)."""

    def losses_again(self):
        with torch.no_grad():
            return self.model.losses()


def test_famo_weights_follow_its_update_rule():
    """Liu et al. 2023, Alg. 1: loss weights c z_i / L_i; logits xi step by Adam along
    J_softmax(xi)^T delta, delta_i = log L_i(before) - log L_i(after)."""
    toy = Toy([1.0, 0.2], [-0.5, 1.0])
    lr, decay = 0.025, 1e-3
    famo = make_weighting("famo", ["a", "b"], {}, logit_lr=lr, decay=decay).double()
    opt = torch.optim.SGD(toy.parameters(), lr=0.1)
    xi = torch.zeros(2, dtype=torch.float64, requires_grad=True)  # the reference logits, stepped by hand
    ref = torch.optim.Adam([xi], lr=lr, weight_decay=decay)
    for t in range(4):
        losses = toy.losses()
        ctx = FakeStep([], t, 1, None, toy, None)
        total = famo.combine(losses, ctx)
        z = torch.softmax(xi.detach(), 0)
        a = z / losses.detach() / (z / losses.detach()).sum()
        assert torch.allclose(famo.effective(), a, atol=1e-10)  # the loss weights c z_i / L_i
        assert torch.allclose(torch.autograd.grad(total, losses, retain_graph=True)[0], a, atol=1e-10)
        opt.zero_grad()
        total.backward()
        opt.step()
        famo.after_step(ctx)
        delta = losses.detach().log() - toy.losses().detach().log()
        J = torch.diag(z) - torch.outer(z, z)  # d softmax / d xi
        xi.grad = J.T @ delta
        ref.step()
        assert torch.allclose(famo.weights(), torch.softmax(xi.detach(), 0), atol=1e-7), t
    assert not torch.allclose(famo.weights(), torch.full((2,), 0.5, dtype=torch.float64))  # they moved


def test_rlw_draws_fresh_weights_on_the_simplex():
    r = make_weighting("rlw", ["a", "b", "c"], {})
    L = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    seen = []
    for _ in range(3):
        total = r.combine(L, StepContext([], 0, 1))
        w = torch.autograd.grad(total, L)[0]
        assert torch.allclose(w, r.effective()) and float(w.sum()) == pytest.approx(1.0) and bool((w > 0).all())
        seen.append(w)
    assert not torch.allclose(seen[0], seen[1])


def test_telemetry_cadence_keeps_its_cost_bounded():
    """Free for a gradient method (every log_every steps); T-1 extra backward passes otherwise, so
    measured every 2 (T-1) log_every steps (8.7% with 2 tasks and 20.9% with 3 every 10 steps)."""
    from mtrlib.train.telemetry import cadence
    names = ["a", "b", "c"]
    assert cadence(10, 3, make_weighting("upgrad", names, {})) == 10
    assert cadence(10, 3, make_weighting("fixed", names, {})) == 40
    assert cadence(10, 2, make_weighting("uncertainty", names[:2], {})) == 20
    assert cadence(1, 2, make_weighting("fixed", names[:2], {})) == 2


def test_every_method_says_whether_it_needs_per_task_gradients():
    """What data-parallel training decides by (issue 19): a class attribute on every method."""
    for name, cls in METHODS.items():
        assert isinstance(cls.needs_task_gradients, bool), name
    assert {"upgrad", "mgda", "pcgrad", "cagrad", "imtl-g", "aligned-mtl", "dualproj", "graddrop",
            "nash-mtl"} <= set(GRADIENT_METHODS)
    assert not {"fixed", "uncertainty", "gradnorm", "dwa", "rlw", "famo"} & set(GRADIENT_METHODS)
    assert all(issubclass(METHODS[m], GradientMethod) for m in GRADIENT_METHODS)


# -- the telemetry ----------------------------------------------------------------------------------------

def _batch(prep, n=200):
    tr = prep.train
    return Batch(tr.user[:n], tr.item[:n], tr.labels[:n], tr.mask[:n].float(), n, False)


def _by_hand(model, batch, names):
    """Cosines and norm ratios from autograd, with 'shared' and the groups worked out here."""
    losses = model.task_losses(model(batch.user, batch.item), batch.labels, batch.mask)
    named = [(n, p) for n, p in model.named_parameters()]
    grads = [torch.autograd.grad(losses[k], [p for _, p in named], retain_graph=True, allow_unused=True)
             for k in range(len(names))]
    reach = [[g[j] is not None and bool(g[j].abs().sum() > 0) for g in grads] for j in range(len(named))]
    # the probe marks a parameter shared by reach with every label observed; here the batch's own mask
    # is used, which on this batch reaches the same parameters
    shared = [j for j in range(len(named)) if sum(reach[j]) > 1]
    groups = {"": shared, "embeddings": [j for j in shared if named[j][0].startswith("input.")],
              "experts": [j for j in shared if named[j][0].startswith("experts.")]}
    out = {}
    for g, idx in groups.items():
        vec = [torch.cat([(grads[k][j] if grads[k][j] is not None else torch.zeros_like(named[j][1])).flatten()
                          for j in idx]).double() for k in range(len(names))]
        prefix = f"{g}/" if g else ""
        norms = [float(v.norm()) for v in vec]
        for a in range(len(names)):
            out[f"grad_norm/{prefix}{names[a]}"] = norms[a] / (sum(norms) / len(norms))
            for b in range(a + 1, len(names)):
                out[f"grad_cos/{prefix}{names[a]}~{names[b]}"] = float(vec[a] @ vec[b]) / (norms[a] * norms[b])
    return out, [named[j][0] for j in shared]


@pytest.mark.parametrize("method,space", [("fixed", "params"), ("uncertainty", "params"), ("upgrad", "params"),
                                          ("upgrad", "rep")])
def test_telemetry_equals_cosines_computed_by_hand(tiny_prepared, method, space):
    prep, names = tiny_prepared, tiny_prepared.task_names
    cfg = tiny_cfg("mmoe", grad_space=space)
    batch = _batch(prep)
    hand, hand_shared = _by_hand(build(cfg, prep), batch, names)

    model = build(cfg, prep)  # the same seed: the same weights
    shared = SharedParameters.find(model, prep.train)
    assert shared.names == hand_shared and list(shared.groups) == ["embeddings", "experts"]
    reps = RepCapture(shared, on=space == "rep")
    w = make_weighting(method, names, {})
    telemetry = GradientTelemetry(shared, names, 1, True, w)
    telemetry.every = 1  # measure this very step (a loss-weighting method is measured less often)
    losses = model.task_losses(model(batch.user, batch.item), batch.labels, batch.mask)
    ctx = StepContext([], 0, 1, TaskGradients(shared, losses, reps.take()), model, batch)
    total = w.combine(losses, ctx)
    with telemetry.measuring(ctx, total, losses, batch):
        w.backward(total, losses, ctx)
    reps.close()
    row = telemetry.row()
    assert set(hand) <= set(row)
    for key, v in hand.items():
        assert row[key] == pytest.approx(v, abs=2e-4), key
    assert any(v < 0 for k, v in row.items() if k.startswith("grad_cos/"))  # this batch has conflicts to show
    assert all(0 <= row["grad_conflict/" + k[len("grad_cos/"):]] <= 1 for k in hand if k.startswith("grad_cos/"))


class SumOfGradients(GradientMethod):
    """A gradient method that just sums the task gradients: it must equal plain backpropagation."""

    def make_aggregator(self, n_tasks):
        from torchjd.aggregation import Sum
        return Sum()


@pytest.mark.parametrize("arch", ["shared-bottom", "mmoe", "ple", "esmm"])
@pytest.mark.parametrize("space", ["params", "rep"])
def test_jacobian_and_representation_paths_reproduce_backpropagation(tiny_prepared, arch, space):
    """With a summing aggregator, both ways of taking the tasks' gradients give exactly the
    gradient of the summed loss: the split into shared / own parameters and the push back
    through the shared modules lose and double nothing."""
    prep = tiny_prepared
    cfg = tiny_cfg(arch, model={"levels": 2} if arch == "ple" else {})
    batch = _batch(prep)
    ref = build(cfg, prep)
    ref.task_losses(ref(batch.user, batch.item), batch.labels, batch.mask).sum().backward()

    model = build(cfg, prep)
    shared = SharedParameters.find(model, prep.train)
    reps = RepCapture(shared, on=space == "rep")
    assert reps.on == (space == "rep")
    w = SumOfGradients(prep.task_names, {})
    losses = model.task_losses(model(batch.user, batch.item), batch.labels, batch.mask)
    ctx = StepContext([], 0, 1, TaskGradients(shared, losses, reps.take()), model, batch)
    w.backward(w.combine(losses, ctx), losses, ctx)
    reps.close()
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        if q.grad is None or not bool(q.grad.abs().sum() > 0):
            assert p.grad is None or float(p.grad.abs().sum()) == 0, name
        else:
            assert p.grad is not None and torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), name


def test_shared_parameters_are_found_for_every_architecture(tiny_prepared):
    groups = {}
    for arch in ARCHS:
        model = build(tiny_cfg(arch), tiny_prepared)
        s = SharedParameters.find(model, tiny_prepared.train)
        groups[arch] = list(s.groups)
        assert len(s.params) == len(s.names) == len(s.users) and all(len(u) > 1 for u in s.users)
        assert sorted(i for idx in s.groups.values() for i in idx) == list(range(len(s.params)))
        ids = {id(p) for p in s.params}
        assert all(id(p) not in ids for p in s.other)
    assert groups["single"] == []  # nothing shared, not even the embeddings
    assert groups["shared-bottom"] == ["embeddings", "bottom"]
    assert groups["mmoe"] == ["embeddings", "experts"]  # its gates are one per task: not shared
    assert groups["ple"][0] == "embeddings" and "experts" in groups["ple"]
    assert groups["esmm"][0] == "embeddings"  # and the click tower, which like's chained loss reaches
    model = build(tiny_cfg("ple", model={"levels": 2}), tiny_prepared)
    assert "gates" in SharedParameters.find(model, tiny_prepared.train).groups  # the shared gate of level 1
    assert group_of(model, "levels.0.task_gates.1.weight") == "gates"
    assert group_of(model, "input.item.id.weight") == "embeddings"


def _layer(*modules: str) -> list[str]:
    return [f"{m}.{w}" for m in modules for w in ("weight", "bias")]


RETRIEVAL_TASKS = ["click=click", "like=like|click", "r=retrieval:click"]
# what each architecture's own `gradnorm_layer()` returned before GradNorm found W from the probe
# (issue 25): the last Linear of the shared MLP / each shared expert / each task's own MLP, plus a
# retrieval task's two towers' last layers
TODAYS_GRADNORM_LAYER = {
    ("single", ""): _layer("bottoms.0.2", "bottoms.1.2", "bottoms.2.2"),
    ("shared-bottom", ""): _layer("bottom.2"),
    ("shared-bottom", "dropout=0.1"): _layer("bottom.3"),  # Linear, ReLU, Dropout, Linear
    ("mmoe", ""): _layer(*(f"experts.{k}.2" for k in range(4))),
    ("mmoe", "task_emb=8"): _layer(*(f"experts.{k}.2" for k in range(4))),
    ("ple", ""): _layer("levels.0.shared.0.2", "levels.0.shared.1.2"),
    ("ple", "levels=2"): _layer("levels.1.shared.0.2", "levels.1.shared.1.2"),
    ("ple", "shared_experts=0"): _layer("levels.0.specific.0.0.2", "levels.0.specific.1.0.2", "levels.0.specific.2.0.2"),
    ("stem", ""): _layer("shared.0.2", "shared.1.2"),
    ("esmm", ""): _layer("nets.0.2", "nets.1.2", "nets.2.2"),  # like's loss chains through click's tower: not W
    ("shared-bottom", "retrieval"): _layer("bottom.2", "retrieval.0.user.1", "retrieval.0.item.1"),
    ("single", "retrieval"): _layer("bottoms.0.2", "bottoms.1.2", "retrieval.0.user.1", "retrieval.0.item.1"),
    ("mmoe", "retrieval"): _layer(*(f"experts.{k}.2" for k in range(4)), "retrieval.0.user.1", "retrieval.0.item.1"),
}


@pytest.mark.parametrize("arch,variant", list(TODAYS_GRADNORM_LAYER), ids=lambda v: v or "default")
def test_gradnorm_layer_from_the_probe_is_each_architectures_own_choice(arch, variant):
    """GradNorm's W (SharedParameters.last_layer) is what each architecture declared before."""
    if variant == "retrieval":
        cfg = tiny_cfg(arch, data={"tasks": RETRIEVAL_TASKS})
    else:
        key, _, value = variant.partition("=")
        cfg = tiny_cfg(arch, model={key: float(value) if "." in value else int(value)} if key else None)
    prep = tiny_prep(cfg)
    model = build(cfg, prep)
    s = SharedParameters.find(model, prep.train)
    assert sorted(s.last_layer_names) == sorted(TODAYS_GRADNORM_LAYER[arch, variant])
    named = dict(model.named_parameters())
    assert [id(p) for p in s.last_layer] == [id(named[n]) for n in s.last_layer_names]


def test_gradnorm_trains_on_the_probed_layer(tiny_prepared):
    """The trainer probes the model for a method that asks (`needs_shared_layer`) and hands GradNorm
    that layer: its weights move away from 1 (they would stay at 1 with no layer)."""
    res = train(tiny_cfg("mmoe", weighting="gradnorm", epochs=1), tiny_prepared)
    weights = [v for k, v in res.history.steps[-1].items() if k.startswith("weight/")]
    assert len(weights) == 3 and any(abs(w - 1.0) > 1e-4 for w in weights)


def test_summary_is_over_the_last_epoch():
    rows = [{"epoch": 0.5, "grad_cos/a~b": 0.5}, {"epoch": 1.0, "grad_cos/a~b": 0.3},
            {"epoch": 1.5, "grad_cos/a~b": -0.2, "grad_cos/experts/a~b": -0.4, "grad_norm/a": 1.2},
            {"epoch": 2.0, "grad_cos/a~b": 0.4, "grad_cos/experts/a~b": 0.2, "grad_norm/a": 0.8}, {"epoch": 2.0}]
    s = summary(rows)
    assert s["cos"]["a~b"] == pytest.approx(0.1) and s["conflict_share"]["a~b"] == 0.5
    assert s["norm"]["a"] == pytest.approx(1.0) and s["measurements"] == 2
    assert s["by_group"]["experts"]["cos"]["a~b"] == pytest.approx(-0.1)
    assert s["by_group"]["experts"]["conflict_share"]["a~b"] == 0.5
    assert summary([{"epoch": 1.0}]) == {"cos": {}, "conflict_share": {}, "norm": {}, "by_group": {}, "measurements": 0}


# -- training ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_gradient_method_trains_every_architecture(arch, method):
    # both spaces across the grid, each pair once
    space = ("params", "rep")[(ARCHS.index(arch) + GRADIENT_METHODS.index(method)) % 2]
    cfg = tiny_cfg(arch, epochs=1, batch_size=256, weighting=method, log_every=2, grad_space=space)
    res = train(cfg, tiny_prep(cfg))
    assert res.status == "finished", res.reason
    assert all(math.isfinite(res.metrics[t]["auc"]) for t in ("click", "like"))
    w = [[row[f"weight/{t}"] for t in ("click", "like", "dwell")] for row in res.history.steps]
    assert all(math.isfinite(x) and x >= 0 for row in w for x in row)
    if arch != "single":
        assert res.grad["measurements"] > 0 and "click~like" in res.grad["cos"]
        assert res.history.steps[-1]["weight/click"] != 1.0 or method in ("graddrop", "pcgrad")
    else:
        assert res.grad["cos"] == {}


@pytest.mark.parametrize("space", ["params", "rep"])
def test_training_is_identical_with_and_without_telemetry(space):
    """Telemetry measures; it never changes what is learned (for a gradient method in rep space
    neither: its per-task gradients are reused)."""
    out = []
    for on in (False, True):
        cfg = tiny_cfg("mmoe", epochs=1, batch_size=256, log_every=2, grad_telemetry=on,
                       weighting="fixed" if space == "params" else "upgrad", grad_space=space)
        res = train(cfg, tiny_prep(cfg))
        out.append((res.metrics["click"]["auc"], [r["loss"] for r in res.history.steps], res.grad["measurements"]))
    assert out[0][:2] == out[1][:2]
    assert out[0][2] == 0 and out[1][2] > 0


# -- CLI, charts, words -----------------------------------------------------------------------------------

def test_cli_train_json_carries_grad(tmp_path, capsys, monkeypatch):
    import json

    from mtrlib.__main__ import main
    from mtrlib.runs import list_runs, load_run
    monkeypatch.setenv("MTR_RUN_STORE", str(tmp_path))
    small = ["train", "--users", "80", "--items", "40", "--impressions", "20", "--epochs", "2", "--batch-size", "256",
             "--log-every", "2", "--quiet"]
    assert main(small + ["--weighting", "pcgrad", "--grad-space", "rep"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    grad = out["grad"]
    assert set(grad) >= {"cos", "conflict_share", "by_group"}
    assert set(grad["cos"]) == {"click~like", "click~dwell", "like~dwell"}
    assert all(-1 <= v <= 1 for v in grad["cos"].values()) and all(0 <= v <= 1 for v in grad["conflict_share"].values())
    assert list(grad["by_group"]) == ["embeddings", "experts"] and "click~like" in grad["by_group"]["experts"]["cos"]
    cfg = load_run(list_runs(tmp_path)[0].path).config
    assert cfg.grad_space == "rep" and cfg.weighting.name == "pcgrad"
    assert main(small + ["--no-grad-telemetry"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["grad"]["cos"] == {}


def test_conflict_chart_and_words():
    import pandas as pd

    from mtrlib.viz.charts import conflict
    from mtrlib.train.telemetry import describe
    rows = pd.DataFrame([{"epoch": e, "grad_cos/a~b": -0.1, "grad_cos/embeddings/a~b": -0.3,
                          "grad_cos/experts/a~b": 0.2, "grad_norm/a": 1.0} for e in (0.5, 1.0)])
    fig = conflict({"run": rows})
    assert sorted(t.name for t in fig.data) == ["embeddings · a~b", "experts · a~b"]
    assert list(fig.layout.yaxis.range) == [-1.05, 1.05]
    two = conflict({"r1": rows, "r2": rows}, pair="a~b")
    assert sorted(t.name for t in two.data) == ["r1 · embeddings", "r1 · experts", "r2 · embeddings", "r2 · experts"]
    text = describe(summary(rows.to_dict("records")))
    assert len(text) == 1 and "a vs b: cosine -0.10" in text[0] and "largest in the embeddings" in text[0]
    assert "below 0 in 100%" in text[0] and "they conflict" in text[0]


def test_gradient_settings_round_trip_through_urls_and_are_validated():
    from mtrlib.config import validate
    from mtrlib.share import from_params, to_params
    cfg = tiny_cfg(weighting="cagrad", grad_space="rep", grad_telemetry=False, cagrad_c=0.7)
    back, problems = from_params(to_params(cfg))
    assert not problems and (back.weighting.name, back.grad_space, back.grad_telemetry, back.cagrad_c) == ("cagrad", "rep",
                                                                                                       False, 0.7)
    with pytest.raises(UserError, match="gradient space"):
        validate(tiny_cfg(grad_space="weights"))
    with pytest.raises(UserError, match="CAGrad's c"):
        validate(tiny_cfg(weighting="cagrad", cagrad_c=-1.0))
    assert any("one task weighted" in w for w in validate(tiny_cfg(weighting="upgrad", weights={"like": 0, "dwell": 0}),
                                                          ["click", "like", "dwell"]))


def test_telemetry_reads_sparse_gradients_of_lazy_id_table_updates():
    """Lazy updates (mtrlib.train.optim: the default for LAZY_MIN_ROWS+ users or items on the CPU) give sparse
    id-table gradients; the conflict telemetry must read them (it crashed on them once)."""
    cfg = tiny_cfg("mmoe", epochs=1, log_every=2, embedding_updates="lazy")
    res = train(cfg, tiny_prep(cfg))
    assert res.status == "finished", res.reason
    assert res.grad and res.grad["cos"], res.grad  # measured, with the embeddings among the groups
    assert "embeddings" in res.grad["by_group"]
    cfg.weighting = "upgrad"  # a method on per-task gradients: refused with lazy updates, by name
    with pytest.raises(UserError, match="'upgrad' works on per-task gradients"):
        train(cfg, tiny_prep(cfg))
