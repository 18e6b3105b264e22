"""STEM (Su et al., AAAI 2024) and the task-specific embeddings option: the all-forward
task-specific-backward gate, what each task's loss trains, the registry pick-up (CLI, URL,
diagram, gates), and that scoring stays exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mtrlib.viz.charts import network
from mtrlib.config import ARCHS, ModelConfig
from mtrlib.serve.scoring import score_matrix
from mtrlib.share import from_params, to_params
from mtrlib.train.loop import build

from _mtr import tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(prep, arch="stem", **model):
    m = build(tiny_cfg(arch, model=model, epochs=1), prep)
    m.fit_targets(prep.train.labels, prep.train.mask)
    return m


def _grads(m, prep, task: int) -> dict[str, float]:
    """|grad| per parameter name from one task's loss alone."""
    m.zero_grad()
    d = prep.train
    u, i, y, mask = d.user[:128], d.item[:128], d.labels[:128], d.mask[:128]
    m.task_losses(m(u, i), y, mask)[task].backward()
    return {n: float(p.grad.abs().sum()) if p.grad is not None else 0.0 for n, p in m.named_parameters()}


def test_stem_is_registered_everywhere():
    assert "stem" in ARCHS
    cfg = tiny_cfg("stem", model={"specific_experts": 2, "shared_experts": 1})
    back, problems = from_params(to_params(cfg))
    assert not problems and back.model.arch == "stem" and back.model.specific_experts == 2
    fig = network(cfg.model, ["click", "like"])
    labels = [a.text for a in fig.layout.annotations]
    assert {"click1", "click2", "like1", "like2", "S1", "gate click", "gate like"} <= set(labels)
    assert any("stop-gradient" in t for t in labels)


def test_stem_each_task_trains_its_own_embeddings_and_experts_only(tiny_prepared):
    """AFTB: task k's loss reaches the shared embeddings and experts and its own, never another's,
    although every task's gate mixes every task's experts in the forward pass."""
    m = _model(tiny_prepared)
    T = len(m.tasks)
    for k in range(T):
        g = _grads(m, tiny_prepared, k)
        own = lambda prefix: sum(v for n, v in g.items() if n.startswith(prefix))  # noqa: E731
        assert own("inputs_.0.") > 0 and own("shared.") > 0  # shared embeddings and experts
        assert own(f"inputs_.{1 + k}.") > 0 and own(f"specific.{k}.") > 0 and own(f"gates.{k}.") > 0
        for j in range(T):
            if j != k:
                assert own(f"inputs_.{1 + j}.") == 0 and own(f"specific.{j}.") == 0 and own(f"gates.{j}.") == 0


def test_stem_gates_mix_every_expert_forward(tiny_prepared):
    m = _model(tiny_prepared)
    d = tiny_prepared.train
    rep = m.inspect(d.user[:32], d.item[:32])
    assert m.expert_names == ["click 1", "like 1", "dwell 1", "shared 1", "shared 2"]
    for t in m.task_names:
        g = rep[f"gate:{t}"]
        assert g.shape == (32, 5) and torch.allclose(g.sum(1), torch.ones(32))
        assert (g > 0).all()  # another task's expert is in every task's mixture (forward)
    # the other tasks' experts change task k's output: forward really uses them
    with torch.no_grad():
        base = m(d.user[:32], d.item[:32])
        for p in m.specific[1].parameters():
            p.add_(0.5)
        moved = m(d.user[:32], d.item[:32])
    assert not torch.allclose(base[:, 0], moved[:, 0])


def test_stem_refuses_no_task_specific_expert():
    from mtrlib.config import validate
    from mtrlib.data import DataError
    with pytest.raises(DataError, match="task-specific expert"):
        validate(tiny_cfg("stem", model={"specific_experts": 0}))


@pytest.mark.parametrize("arch", ["shared-bottom", "mmoe", "ple"])
def test_task_specific_embeddings_option(tiny_prepared, arch):
    """--task-emb W: each tower also reads its task's own embeddings, trained by that task alone;
    scores over users x items equal the forward pass (the factorised path steps aside)."""
    m = _model(tiny_prepared, arch, task_emb=4)
    assert len(m.task_inputs) == len(m.tasks) and m.task_inputs[0].user.id.embedding_dim == 4
    assert m.split_input() is None
    g = _grads(m, tiny_prepared, 0)
    assert sum(v for n, v in g.items() if n.startswith("task_inputs.0.")) > 0
    assert sum(v for n, v in g.items() if n.startswith("task_inputs.1.")) == 0
    assert sum(v for n, v in g.items() if n.startswith("input.")) > 0  # the shared embeddings still learn
    users, items = np.arange(5), np.arange(m.n_items)
    S = score_matrix(m, users, items)
    with torch.no_grad():
        ref = m.predict(m(torch.as_tensor(users).repeat_interleave(len(items)), torch.as_tensor(items).repeat(5)))
    np.testing.assert_allclose(S.reshape(-1, len(m.tasks)), ref.numpy(), rtol=1e-5, atol=1e-6)
    assert _model(tiny_prepared, arch).split_input() is not None  # off by default: nothing changes


def test_task_emb_is_one_flag_and_url_key():
    from mtrlib.cli.train import build_config
    from mtrlib.__main__ import build_parser
    args = build_parser("train").parse_args(["train", "--model", "mmoe", "--task-emb", "8"])
    cfg = build_config(args)
    assert cfg.model.task_emb == 8
    assert to_params(cfg)["temb"] == "8"
    assert ModelConfig().task_emb == 0
