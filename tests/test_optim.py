"""Lazy embedding updates (mtrlib.train.optim): LazyAdam is Adam on the rows a batch touches (with
Adam's L2 or AdamW's decoupled weight decay), untouched rows stay as they are, and "auto" picks
big id tables on the CPU only, for methods that backpropagate one loss."""
from __future__ import annotations

import pytest
import torch
from _mtr import tiny_cfg, tiny_prep

from mtrlib.errors import TrainingError
from mtrlib.train.optim import LAZY_MIN_ROWS, LazyAdam, id_tables, lazy_tables, training_optimizer
from mtrlib.train.loop import build, train
from mtrlib.weighting import make_weighting

pytestmark = pytest.mark.usefixtures("one_thread")


def _steps(opt_for, rows_per_step, decoupled=False, wd=0.01, n=12, d=3):
    """Run a few steps on one embedding table; returns its weights."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(n, d, sparse=opt_for == "lazy")
    opt = (LazyAdam([emb.weight], lr=0.05, weight_decay=wd, decoupled=decoupled) if opt_for == "lazy" else
           (torch.optim.AdamW if decoupled else torch.optim.Adam)([emb.weight], lr=0.05, weight_decay=wd))
    g = torch.Generator().manual_seed(1)
    for rows in rows_per_step:
        opt.zero_grad()
        idx = torch.as_tensor(rows)
        (emb(idx) * torch.randn(len(rows), d, generator=g)).sum().backward()
        opt.step()
    return emb.weight.detach()


@pytest.mark.parametrize("decoupled", [False, True])
def test_lazy_adam_is_adam_when_every_row_is_in_every_batch(decoupled):
    every = [list(range(12))] * 5
    torch.testing.assert_close(_steps("lazy", every, decoupled), _steps("dense", every, decoupled))


def test_rows_outside_the_batch_are_left_alone():
    start = _steps("lazy", [], wd=0.1)
    after = _steps("lazy", [[0, 1, 2]] * 4, wd=0.1)
    assert torch.equal(after[3:], start[3:])  # never in a batch: no decay, no momentum
    assert not torch.equal(after[:3], start[:3])
    dense = _steps("dense", [[0, 1, 2]] * 4, wd=0.1)
    assert not torch.equal(dense[3:], start[3:])  # dense Adam's weight decay moves every row


def test_auto_picks_big_tables_on_the_cpu_for_plain_backprop():
    cfg = tiny_cfg(epochs=1)
    model = build(cfg, tiny_prep(cfg))
    fixed = make_weighting("fixed", ["click", "like", "dwell"], {})
    cpu = torch.device("cpu")
    assert lazy_tables(cfg, model, fixed, cpu) == []  # tiny tables: dense is cheaper
    for t in id_tables(model):
        t.num_embeddings = LAZY_MIN_ROWS  # what "auto" reads
    assert len(lazy_tables(cfg, model, fixed, cpu)) == 2
    assert lazy_tables(cfg, model, fixed, torch.device("cuda")) == []  # a dense update is cheap on a GPU
    cfg.embedding_updates = "dense"
    assert lazy_tables(cfg, model, fixed, cpu) == []


def test_lazy_is_refused_where_it_cannot_apply():
    cfg = tiny_cfg(epochs=1, embedding_updates="lazy", optimizer="sgd")
    model = build(cfg, tiny_prep(cfg))
    fixed = make_weighting("fixed", ["click", "like", "dwell"], {})
    with pytest.raises(TrainingError, match="need Adam or AdamW, not 'sgd'"):
        lazy_tables(cfg, model, fixed, torch.device("cpu"))

    class OwnGradients(type(fixed)):
        name = "own-test"

        def backward(self, total, losses, ctx):
            total.backward()
    cfg.optimizer = "adam"
    with pytest.raises(TrainingError, match="'own-test' works on per-task gradients"):
        lazy_tables(cfg, model, OwnGradients(["click", "like", "dwell"], {}), torch.device("cpu"))
    cfg.embedding_updates = "auto"
    assert lazy_tables(cfg, model, OwnGradients(["click", "like", "dwell"], {}), torch.device("cpu")) == []


def test_training_with_lazy_updates_learns_and_keeps_the_state_scrubbable():
    cfg = tiny_cfg(epochs=3, embedding_updates="lazy", world={"n_users": 300, "n_items": 60})
    prep = tiny_prep(cfg)
    res = train(cfg, prep)  # each epoch ends by scrubbing denormals from the (sparse) optimiser state
    assert res.status == "finished"
    first = res.history.steps[0]
    last = res.history.epochs[-1]
    assert all(last[f"train_loss/{t}"] < first[f"loss/{t}"] for t in prep.task_names), (first, last)
    model = build(cfg, prep)
    opt = training_optimizer(cfg, model, make_weighting("fixed", prep.task_names, {}), torch.device("cpu"))
    assert all(t.sparse for t in id_tables(model)) and len(opt.param_groups) >= 2
