"""Every architecture: shapes (batch size 1 included), masking, target scaling, the dashboard
accessors, and the papers' formulas (MMoE mixing, PLE gates, ESMM's entire-space loss)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mtrlib.config import ARCHS, ModelConfig, TrainConfig
from mtrlib.models import build_model
from mtrlib.models.blocks import gate, mix
from mtrlib.train.loop import build, prepare

from _mtr import tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")

EMB_DIM = 16  # ModelConfig's default emb_dim


@pytest.fixture
def prep(tiny_prepared):
    return tiny_prepared  # tasks click, like|click, dwell:reg|click (binary, binary, regression)


def model_for(prep, arch, **model):
    m = build(tiny_cfg(arch, model=model, epochs=1), prep)
    m.fit_targets(prep.train.labels, prep.train.mask)
    return m


@pytest.fixture(params=[1, 7], ids=lambda b: f"batch{b}")
def rows(request, prep):
    """The first `batch` training rows (user, item, labels, mask): batch size 1 included."""
    d, b = prep.train, request.param
    return d.user[:b], d.item[:b], d.labels[:b], d.mask[:b]


# -- shapes, losses, predictions and the dashboard accessors, per architecture -------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_forward_gives_one_raw_output_per_task(prep, arch, rows):
    u, i, _, _ = rows
    assert model_for(prep, arch)(u, i).shape == (len(u), 3)


@pytest.mark.parametrize("arch", ARCHS)
def test_task_losses_are_finite_and_reach_the_parameters(prep, arch, rows):
    m = model_for(prep, arch)
    u, i, y, mask = rows
    losses = m.task_losses(m(u, i), y, mask)
    assert losses.shape == (3,) and torch.isfinite(losses).all()
    losses.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_predictions_are_probabilities_for_binary_tasks(prep, arch, rows):
    m = model_for(prep, arch)
    u, i, _, _ = rows
    p = m.predict(m(u, i).detach())
    assert p.shape == (len(u), 3)
    assert ((p[:, :2] >= 0) & (p[:, :2] <= 1)).all()  # click and like are binary


@pytest.mark.parametrize("arch", ARCHS)
def test_inspect_gives_the_input_and_each_task_representation(prep, arch, rows):
    m = model_for(prep, arch)
    u, i, _, _ = rows
    rep = m.inspect(u, i)
    assert rep["input"].shape[0] == len(u)
    for t in m.task_names:
        assert rep[f"task:{t}"].shape[0] == len(u)


@pytest.mark.parametrize("arch", ARCHS)
def test_inspect_gives_the_shared_representation_when_tasks_share_inputs(prep, arch, rows):
    m = model_for(prep, arch)
    u, i, _, _ = rows
    rep = m.inspect(u, i)
    if m.arch == "single":  # one input layer per task (the single-task baseline): nothing shared
        assert "shared" not in rep
    else:
        assert rep["shared"].shape[0] == len(u)


@pytest.mark.parametrize("arch", ARCHS)
def test_gates_are_distributions_over_the_experts(prep, arch, rows):
    """A model with experts (MMoE, PLE) shows one gate per task; the others show none."""
    m = model_for(prep, arch)
    u, i, _, _ = rows
    rep = m.inspect(u, i)
    gates = {k.removeprefix("gate:"): g for k, g in rep.items() if k.startswith("gate:")}
    assert sorted(gates) == (sorted(m.task_names) if m.expert_names else [])
    for g in gates.values():
        assert g.shape == (len(u), len(m.expert_names))
        assert torch.allclose(g.sum(1), torch.ones(len(u)))


@pytest.mark.parametrize("arch", ARCHS)
def test_embedding_accessors_cover_every_user_and_item(prep, arch):
    m = model_for(prep, arch)
    assert m.item_embeddings().shape == (m.n_items, EMB_DIM)
    assert m.user_embeddings().shape == (m.n_users, EMB_DIM)
    assert m.item_embeddings(torch.tensor([2])).shape == (1, EMB_DIM)
    assert m.n_items == len(prep.space.items.ids) and m.n_users == len(prep.space.users.ids)


@pytest.mark.parametrize("arch", ARCHS)
def test_unobserved_labels_do_not_count(prep, arch):
    m = model_for(prep, arch)
    d = prep.train
    u, i, y, mask = d.user[:64], d.item[:64], d.labels[:64].clone(), d.mask[:64]
    raw = m(u, i)
    base = m.task_losses(raw, y, mask)
    y2 = torch.where(mask, y, torch.full_like(y, 1.0))  # change every unobserved label
    assert torch.allclose(m.task_losses(raw, y2, mask), base)
    none = torch.zeros_like(mask)
    assert (m.task_losses(raw, y, none) == 0).all()  # nothing observed: nothing to learn
    none[:, 0] = True
    only_click = m.task_losses(raw, y, none)
    assert only_click[2] == 0  # a task with nothing observed adds nothing...
    if arch != "esmm":  # ...except ESMM's CTCVR term, defined over the parent's (click's) rows
        assert only_click[1] == 0
    assert torch.allclose(m.task_losses(raw, y, mask.float()), base)  # float masks too


def test_regression_targets_are_standardised_and_unscaled(prep):
    m = model_for(prep, "shared-bottom")
    d = prep.train
    obs = d.labels[d.mask[:, 2], 2]
    assert m.target_mean[2] == pytest.approx(obs.mean().item(), rel=1e-5)
    assert m.target_std[2] == pytest.approx(obs.std(unbiased=False).item(), rel=1e-4)
    assert m.target_mean[0] == 0 and m.target_std[0] == 1  # binary tasks untouched
    raw = torch.zeros(4, 3)
    p = m.predict(raw)
    assert torch.allclose(p[:, 2], m.target_mean[2].expand(4))
    assert torch.allclose(p[:, 0], torch.full((4,), 0.5))
    # the loss on a regression task is the MSE in standard units
    y = d.labels[:8].clone()
    mask = torch.zeros(8, 3, dtype=torch.bool)
    mask[:, 2] = True
    raw = torch.randn(8, 3)
    z = (y[:, 2] - m.target_mean[2]) / m.target_std[2]
    assert m.task_losses(raw, y, mask)[2] == pytest.approx(((raw[:, 2] - z) ** 2).mean().item(), rel=1e-5)


def test_mmoe_mixes_experts_with_softmax_gates(prep):
    m = model_for(prep, "mmoe", n_experts=3)
    x = m.input_row(prep.train.user[:5], prep.train.item[:5])
    b = m.body(x)
    experts = [ex(x) for ex in m.experts]
    for k, gl in enumerate(m.gates):
        g = torch.softmax(gl(x), -1)
        expected = sum(g[:, e:e + 1] * experts[e] for e in range(3))
        assert torch.allclose(b.tower_inputs[k], expected, atol=1e-6)
        assert torch.allclose(b.gates[m.task_names[k]], g, atol=1e-6)
    assert m.expert_names == ["expert 1", "expert 2", "expert 3"]


def test_gate_and_mix_blocks():
    logits = torch.randn(6, 4)
    w = gate(logits)
    assert w.shape == (4, 6) and torch.allclose(w.t(), torch.softmax(logits, -1))
    e = torch.randn(4, 6, 3)
    assert torch.allclose(mix(w, e), torch.einsum("eb,ebd->bd", w, e), atol=1e-6)


@pytest.mark.parametrize("levels,spec,shared", [(1, 1, 2), (2, 1, 2), (2, 2, 1), (1, 0, 2), (2, 1, 0)])
def test_ple_levels_and_expert_layouts(prep, levels, spec, shared):
    m = model_for(prep, "ple", levels=levels, specific_experts=spec, shared_experts=shared)
    assert len(m.levels) == levels
    assert (m.levels[-1].shared_gate is None) and all(l.shared_gate is not None for l in m.levels[:-1])
    assert len(m.expert_names) == 3 * spec + shared
    u, i = prep.train.user[:1], prep.train.item[:1]
    rep = m.inspect(u, i)
    for t, name in enumerate(m.task_names):
        g = rep[f"gate:{name}"][0]
        assert torch.allclose(g.sum(), torch.tensor(1.0))
        # task t's gate only touches its own specific experts and the shared ones
        own = set(range(t * spec, (t + 1) * spec)) | set(range(3 * spec, 3 * spec + shared))
        assert all(g[k] == 0 for k in range(len(g)) if k not in own)
    m(prep.train.user[:3], prep.train.item[:3]).sum().backward()


def test_cgc_task_sees_own_and_shared_experts_only(prep):
    m = model_for(prep, "ple", levels=1, specific_experts=1, shared_experts=1)
    x = m.input_row(prep.train.user[:4], prep.train.item[:4])
    lvl = m.levels[0]
    b = m.body(x)
    sh = lvl.shared[0](x)
    for t in range(3):
        g = torch.softmax(lvl.task_gates[t](x), -1)
        expected = g[:, :1] * lvl.specific[t][0](x) + g[:, 1:] * sh
        assert torch.allclose(b.tower_inputs[t], expected, atol=1e-6)


def test_single_task_shares_nothing(prep):
    m = model_for(prep, "single")
    u, i, y, mask = prep.train.user[:32], prep.train.item[:32], prep.train.labels[:32], prep.train.mask[:32]
    m.task_losses(m(u, i), y, mask)[0].backward()
    grads = [inp.user.id.weight.grad for inp in m.inputs_]
    assert grads[0] is not None and grads[0].abs().sum() > 0
    assert all(g is None or g.abs().sum() == 0 for g in grads[1:])


# -- ESMM --------------------------------------------------------------------------------------

def test_esmm_conditional_task_learns_ctcvr_over_the_whole_space(prep):
    m = model_for(prep, "esmm")
    assert m.parent == [-1, 0, -1] and m.conditional == [False, True, False]
    d = prep.train
    u, i, y, mask = d.user[:200], d.item[:200], d.labels[:200], d.mask[:200]
    raw = m(u, i).detach()
    losses = m.task_losses(raw, y, mask)
    ctr, cvr = torch.sigmoid(raw[:, 0]), torch.sigmoid(raw[:, 1])
    ctcvr_label = y[:, 0] * torch.where(mask[:, 1], y[:, 1], torch.zeros_like(y[:, 1]))
    expected = F.binary_cross_entropy(ctr * cvr, ctcvr_label)  # over every impression
    assert losses[1] == pytest.approx(expected.item(), rel=1e-4)
    assert losses[0] == pytest.approx(F.binary_cross_entropy(ctr, y[:, 0]).item(), rel=1e-4)
    p = m.predict(raw)
    assert torch.allclose(p[:, 1], cvr)  # pCVR, evaluated where clicked


def test_esmm_whole_space_task_is_chained_to_the_implicit_root():
    import pandas as pd
    from mtrlib.data import Dataset
    rows = []
    for uid in range(30):
        for k in range(6):
            rows.append({"user_id": f"u{uid}", "item_id": f"i{(uid + 3 * k) % 25}", "timestamp": k,
                         "rating": float(1 + (uid * 7 + k) % 5)})
    inter = pd.DataFrame(rows)
    items = pd.DataFrame(index=pd.Index([f"i{k}" for k in range(25)], name="item_id"))
    users = pd.DataFrame(index=pd.Index([f"u{k}" for k in range(30)], name="user_id"))
    ds = Dataset(inter, items, users)
    cfg = TrainConfig(model=ModelConfig(arch="esmm"))
    cfg.data.tasks = ["watched=implicit", "liked=rating>=4"]
    p = prepare(cfg, ds)
    m = build(cfg, p)
    m.fit_targets(p.train.labels, p.train.mask)
    assert m.parent == [-1, 0] and m.conditional == [False, False]
    raw = m(p.train.user[:50], p.train.item[:50]).detach()
    pred = m.predict(raw)
    assert torch.allclose(pred[:, 1], torch.sigmoid(raw[:, 0]) * torch.sigmoid(raw[:, 1]), atol=1e-6)
    assert (pred[:, 1] <= pred[:, 0] + 1e-6).all()  # p(liked) <= p(watched)
    y, mask = p.train.labels[:50], p.train.mask[:50]
    expected = F.binary_cross_entropy(pred[:, 1], y[:, 1])
    assert m.task_losses(raw, y, mask)[1] == pytest.approx(expected.item(), rel=1e-4)
    # the chain is saved with the weights
    m2 = build(cfg, p)
    m2.parent_index.fill_(-1)
    m2._sync_parents()
    m2.load_state_dict(m.state_dict())
    assert m2.parent == [-1, 0]
    # a task that happens without the root must not be chained (here: liked=1 on an unwatched row)
    y_bad, mask_all = p.train.labels.clone(), p.train.mask.clone()
    neg = (y_bad[:, 0] == 0).nonzero()[0, 0]
    y_bad[neg, 1] = 1
    m.fit_targets(y_bad, mask_all)
    assert m.parent == [-1, -1]


def test_esmm_two_level_chain(prep):
    """a|b|c conditionals: the chain label is the product of every task on it."""
    cfg = tiny_cfg("esmm", epochs=1)
    tasks = prep.tasks
    from mtrlib.data.tasks import TaskSpec
    t3 = [tasks[0], tasks[1], TaskSpec("superlike", "binary", column="like", given="like")]
    m = build_model(cfg.model, prep.space.describe(), prep.space.tensors(), t3)
    assert m.parent == [-1, 0, 1] and m.conditional == [False, True, True]
    B = 50
    raw = torch.randn(B, 3)
    y = (torch.rand(B, 3) < 0.5).float()
    mask = torch.ones(B, 3, dtype=torch.bool)
    mask[:, 1] = y[:, 0] == 1
    mask[:, 2] = mask[:, 1] & (y[:, 1] == 1)
    y = y * mask
    losses = m.task_losses(raw, y, mask)
    p = torch.sigmoid(raw)
    expected = F.binary_cross_entropy(p[:, 0] * p[:, 1] * p[:, 2], y[:, 0] * y[:, 1] * y[:, 2])
    assert losses[2] == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("combine", [None, "sum", "concat", "gated"])
def test_input_row_is_user_part_plus_item_part(prep, combine):
    # the contract mtrlib.serve.scoring relies on: disjoint user and item columns, so the row of a
    # pair is the sum of the two parts (exactly: every other entry of each part is 0)
    space = dataclasses.replace(prep.space)
    cfg = tiny_cfg("mmoe")
    if combine is not None:
        space.item_text = torch.randn(space.items.n, 12, generator=torch.Generator().manual_seed(0)).numpy()
        cfg.model.text_features, cfg.model.text_combine, cfg.model.text_dim = True, combine, 5
    m = build_model(cfg.model, space.describe(), space.tensors(), prep.tasks)
    inp = m.split_input()
    assert inp is m.input and inp.use_text is (combine is not None)
    u, i = prep.train.user[:9], prep.train.item[:9]
    with torch.no_grad():
        xu, xi = inp.user_part(u), inp.item_part(i)
        assert xu.shape == xi.shape == (9, inp.out_dim)
        assert not ((xu != 0) & (xi != 0)).any()  # no column is both a user and an item column
        assert torch.equal(xu + xi, inp(u, i))


@pytest.mark.parametrize("arch", ARCHS)
def test_score_parts_is_the_forward_pass_of_the_summed_rows(prep, arch):
    # scoring's hook (issue 25): the ranking towers' raw outputs from the user and item parts of the
    # input row, with the first layers factorised where the body allows it, equal the forward pass
    m = model_for(prep, arch).eval()
    assert m.scores_from_parts() is (arch not in ("single", "stem"))
    if not m.scores_from_parts():
        return
    # every architecture with one input row reads it through InputLinear layers, but PEPNet (its gates
    # scale the row per user: score_parts builds the rows densely)
    assert m.factorised_body is (arch != "pepnet")
    inp, u, i = m.split_input(), torch.arange(5), torch.arange(7)
    with torch.no_grad():
        plain = m.ranking_forward(u.repeat_interleave(7), i.repeat(5))  # [35, T]
        xu, xi = inp.user_part(u), inp.item_part(i)
        torch.testing.assert_close(m.score_parts(xu, xi), plain, rtol=0, atol=1e-6)
        pairs = (torch.tensor([4, 0, 2, 2]), torch.tensor([6, 1, 0, 3]))  # chosen pairs, a cache kept across calls
        cache: dict = {}
        for _ in range(2):
            got = m.score_parts(xu, xi, cache, pairs)
            torch.testing.assert_close(got, plain[pairs[0] * 7 + pairs[1]], rtol=0, atol=1e-6)
        assert cache or not m.factorised_body  # the first layers' sides were kept (dense rows: none)


def test_split_input_is_none_where_the_input_is_not_one_row(prep):
    assert model_for(prep, "single").split_input() is None  # one stacked row per task
    assert model_for(prep, "stem").split_input() is None  # shared + one row per task, stacked
    for arch in ("shared-bottom", "mmoe", "ple", "esmm"):
        m = model_for(prep, arch)
        assert m.split_input() is m.input


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_is_a_description_and_a_network_reading_only_its_options(prep, arch):
    # issue 25: ARCHITECTURES maps to the description; its `Model` is the nn.Module, which reads its
    # own knobs from the typed options it is given, never from the flat ModelConfig fields
    from mtrlib.models import ARCHITECTURES, Architecture, MultiTaskModel
    from mtrlib.registry import options_of
    spec = ARCHITECTURES[arch]
    assert issubclass(spec, Architecture) and issubclass(spec.Model, MultiTaskModel) and spec.arch == arch
    m = ModelConfig(arch=arch)
    opts = options_of(spec, m)
    assert isinstance(opts, spec.Options) and spec.check(opts, m) == [] and spec.summary(opts, m).startswith(spec.label[:3])
    changed = dataclasses.replace(opts, **{f.name: [8] if isinstance(getattr(opts, f.name), list) else getattr(opts, f.name)
                                           for f in dataclasses.fields(opts)})  # every layer list -> [8]
    net = spec.Model(m, prep.space.describe(), prep.space.tensors(), prep.tasks, changed)
    assert net.options is changed and net.arch == arch
    widths = {mod.out_features for name, mod in net.named_modules()
              if isinstance(mod, torch.nn.Linear) and "towers" not in name and "gate" not in name}
    assert widths == {8}  # the options' layers, not ModelConfig's [64, 32]
    assert net.expert_names == spec.expert_names(changed, net.task_names)


@pytest.mark.parametrize("arch", ARCHS)
def test_model_config_defaults_validate(arch):
    from mtrlib.config import validate
    validate(dataclasses.replace(TrainConfig(), model=ModelConfig(arch=arch)))
