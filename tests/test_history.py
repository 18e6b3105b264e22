"""History features (issue 18): the user's last L interactions strictly before each example.

The leakage tests prove, by brute force over every row of small data sets with many tied
timestamps, that no history holds an interaction at or after its example's own time, or any
validation / test interaction; then the encoders (mean pooling, DIN, SASRec) with every
architecture, the fast pooled path against the plain one, scoring, the run store, the
Recommend page's attention weights and the bad-input messages.
"""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from _mtr import PAGES, tiny_cfg
from mtrlib.config import ARCHS, TrainConfig, validate
from mtrlib.data import DataError, Dataset
from mtrlib.errors import UserError
from mtrlib.data.history import HistoryExamples, history_events
from mtrlib.models.history import HISTORY_ENCODERS
from mtrlib.train.loop import prepare, train

pytestmark = pytest.mark.usefixtures("one_thread")
ENCODERS = list(HISTORY_ENCODERS)
TASKS = ["watched=implicit", "liked=rating>=4"]


def small_data(timestamps: bool = True, n_users: int = 30, n_items: int = 25, seed: int = 0) -> Dataset:
    """A MovieLens-like table: ratings with many tied timestamps, multi-valued genres, titles."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(6, 16)), replace=False)
        times = np.sort(rng.integers(0, 12, size=len(items)))  # ties on purpose
        rows += [(f"u{u}", f"i{i}", int(t), float(rng.integers(1, 6))) for i, t in zip(items, times)]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    inter = inter.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # the file is not in time order
    if not timestamps:
        inter = inter.drop(columns=["timestamp"])
    genres = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
    items = pd.DataFrame({"title": [f"Movie {i}" for i in range(n_items)],
                          "genres": ["|".join(rng.choice(genres, size=int(rng.integers(1, 4)), replace=False))
                                     for _ in range(n_items)]},
                         index=pd.Index([f"i{i}" for i in range(n_items)], name="item_id"))
    users = pd.DataFrame(index=pd.Index(sorted(inter["user_id"].unique()), name="user_id"))
    return Dataset(interactions=inter, items=items, users=users, name="small", item_features={"genres": "multi"},
                   title_column="title", suggested_tasks=list(TASKS))


def history_cfg(split="temporal", length=5, encoder="mean", task=None, order="time", arch="mmoe", **train_kw):
    cfg = tiny_cfg(arch, model=dict(history=length, history_encoder=encoder, history_task=task, history_order=order),
                   data=dict(source="files", tasks=list(TASKS), split=split, negatives=2), **train_kw)
    return cfg


def _when(prep, order="time") -> np.ndarray:
    f = prep.examples.frame
    return (f["timestamp"].to_numpy(dtype=float) if order == "time" else f["origin"].to_numpy(dtype=float))


def _brute_force(prep, length: int, order: str = "time", task: str | None = None):
    """Each logged row's expected history by a plain loop: the same user's training rows strictly
    earlier (ties by file order), the latest `length` of them, most recent first."""
    f = prep.examples.frame
    n_logged = int((~f["sampled"].to_numpy()).sum())
    user, item = prep.examples.frame["user_id"].to_numpy(), prep.examples.frame["item_id"].to_numpy()
    when = _when(prep, order)
    train = set(int(r) for r in prep.split.train if r < n_logged)
    if task is not None:
        j = prep.task_names.index(task)
        train = {r for r in train if prep.examples.labels[r, j] == 1}
    out = []
    for r in range(n_logged):
        past = sorted((when[p], p) for p in train if user[p] == user[r] and when[p] < when[r])
        out.append([item[p] for _, p in past[::-1][:length]])
    return out


def _table_items(prep, rows) -> list[list[str]]:
    ids = np.asarray(prep.space.items.ids)
    t = prep.train.table
    return [list(ids[t.items[r, :int(t.lengths[r])].numpy()]) for r in rows]


@pytest.mark.parametrize("split,order,task", [("temporal", "time", None), ("random", "time", None),
                                              ("temporal", "time", "liked"), ("random", "file", None)])
def test_no_history_holds_a_later_or_held_out_interaction(split, order, task):
    """The leakage test: brute force over every logged row, then the property on the events."""
    ds = small_data()
    prep = prepare(history_cfg(split, length=4, task=task, order=order), ds)
    assert prep.space.history.pool == "train"
    f = prep.examples.frame
    n_logged = int((~f["sampled"].to_numpy()).sum())
    assert _table_items(prep, range(n_logged)) == _brute_force(prep, 4, order, task)

    # the same search on its own: every event is a training row of the same user, strictly earlier
    users = prep.space.user_rows(f["user_id"])
    in_pool = np.zeros(n_logged, bool)
    in_pool[prep.split.train[prep.split.train < n_logged]] = True
    when = _when(prep, order)[:n_logged]
    events, lengths, latest, latest_len = history_events(users[:n_logged], when, in_pool, 4, prep.space.users.n)
    held_out = set(np.concatenate([prep.split.val, prep.split.test]).tolist())
    real = events >= 0
    rows = np.repeat(np.arange(n_logged)[:, None], 4, 1)[real]
    ev = events[real]
    assert in_pool[ev].all() and not (set(ev.tolist()) & held_out)
    assert (users[ev] == users[rows]).all() and (when[ev] < when[rows]).all()
    assert (real.sum(1) == lengths).all()
    lat = latest[latest >= 0]
    assert in_pool[lat].all() and not (set(lat.tolist()) & held_out)

    # what the trainer and the evaluation read: each example's history is its logged origin's
    for part, idx in (("train", prep.split.train), ("val", prep.split.val), ("test", prep.split.test)):
        enc = getattr(prep, part)
        assert isinstance(enc, HistoryExamples)
        h = enc.history_at(slice(None))
        origin = f["origin"].to_numpy()[idx]
        assert torch.equal(h.items, prep.train.table.items[origin].long())
        assert torch.equal(h.lengths, prep.train.table.lengths[origin].long())


@pytest.mark.parametrize("split", ["temporal", "random"])
def test_a_train_val_pool_adds_only_earlier_validation_rows_to_test_histories(split):
    """history_pool='train+val': a test row's history also holds the validation rows before it;
    training and validation rows keep the training pool; no test row is ever in a history."""
    ds = small_data(seed=2)
    cfg = history_cfg(split, length=6)
    cfg.model.history_pool = "train+val"
    prep = prepare(cfg, ds)
    f = prep.examples.frame
    n_logged = int((~f["sampled"].to_numpy()).sum())
    users, when = prep.space.user_rows(f["user_id"])[:n_logged], _when(prep)[:n_logged]
    train, val, test = (set(int(r) for r in idx if r < n_logged) for idx in (prep.split.train, prep.split.val,
                                                                             prep.split.test))
    item = f["item_id"].to_numpy()
    got = _table_items(prep, range(n_logged))
    for r in range(n_logged):
        pool = train | val if r in test else train
        past = sorted((when[p], p) for p in pool if users[p] == users[r] and when[p] < when[r])
        assert got[r] == [item[p] for _, p in past[::-1][:6]], r
    assert any(got[r] != _brute_force(prep, 6)[r] for r in test)  # the option changes something
    assert prep.space.history.pool == "train+val"


def test_sampled_negatives_share_their_positives_history(tiny_history):
    prep = tiny_history
    f = prep.examples.frame
    sampled = f["sampled"].to_numpy()[prep.split.train]
    assert sampled.any()
    origin = f["origin"].to_numpy()[prep.split.train]
    assert torch.equal(prep.train.rows, torch.as_tensor(origin))
    neg = np.flatnonzero(sampled)[:50]
    h = prep.train.history_at(torch.as_tensor(neg))
    ref = prep.train.table.batch(torch.as_tensor(origin[neg]))
    assert torch.equal(h.items, ref.items) and torch.equal(h.lengths, ref.lengths)


def test_latest_history_is_each_users_last_training_interactions():
    ds = small_data(seed=1)
    prep = prepare(history_cfg("temporal", length=3), ds)
    f = prep.examples.frame
    n_logged = int((~f["sampled"].to_numpy()).sum())
    when, user, item = f["timestamp"].to_numpy(float), f["user_id"].to_numpy(), f["item_id"].to_numpy()
    train = [int(r) for r in prep.split.train if r < n_logged]
    ids = np.asarray(prep.space.items.ids)
    h = prep.space.history
    for k, u in enumerate(prep.space.users.ids):
        past = sorted((when[p], p) for p in train if user[p] == u)
        want = [item[p] for _, p in past[::-1][:3]]
        assert list(ids[h.items[k, :h.lengths[k]]]) == want


def test_every_architecture_trains_with_every_encoder():
    ds = small_data()
    for arch in ARCHS:
        for enc in ENCODERS:
            cfg = history_cfg("temporal", length=5, encoder=enc, arch=arch, epochs=1, batch_size=64)
            res = train(cfg, prepare(cfg, ds))
            assert res.status == "finished", (arch, enc, res.reason)
            assert all(np.isfinite(m["auc"]) for m in res.metrics.values()), (arch, enc)


@pytest.fixture(scope="module")
def tiny_history():
    return prepare(history_cfg("temporal", length=5), small_data())


def _model(prep, encoder="mean", text=None, **model):
    from mtrlib.models import build_model
    cfg = history_cfg("temporal", length=prep.space.history.length, encoder=encoder)
    for k, v in model.items():
        setattr(cfg.model, k, v)
    space = copy.copy(prep.space)
    if text is not None:
        cfg.model.text_features, cfg.model.text_combine = True, text
        cfg.model.text_dim = cfg.model.emb_dim
        space.item_text = np.random.default_rng(0).normal(size=(space.items.n, 12)).astype(np.float32)
    torch.manual_seed(0)
    return build_model(cfg.model, space.describe(), space.tensors(), prep.tasks)


@pytest.mark.parametrize("text", [None, "sum", "concat"])
def test_pooled_mean_equals_the_plain_average_with_its_gradients(tiny_history, text):
    """Mean pooling straight from the embedding tables (multi-valued genres, text) is the plain
    average of the past items' input-row vectors, values and gradients."""
    from mtrlib.models.history._base import masked_mean_weights, pool
    model = _model(tiny_history, "mean", text)
    inp = model.input
    assert inp.pooled and inp.dense_multi == ["genres"]
    h = tiny_history.train.history_at(slice(0, 64))
    assert (h.lengths > 1).any() and (h.lengths == 0).any()
    fast = inp.encode(None, None, h)
    fast.square().sum().backward()
    g_fast = [p.grad.clone() for p in inp.parameters() if p.grad is not None]
    inp.zero_grad()
    past = inp.item_row_vectors(h.items.flatten()).view(*h.items.shape, -1)  # [B, L, d]: the plain way
    slow = pool(masked_mean_weights(h.mask()), past)
    slow.square().sum().backward()
    g_slow = [p.grad.clone() for p in inp.parameters() if p.grad is not None]
    assert torch.allclose(fast, slow, atol=1e-5)
    assert len(g_fast) == len(g_slow) >= 2 and all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_fast, g_slow))


def test_gather_path_matches_plain_vectors_and_the_torch_scatter(tiny_history, monkeypatch):
    from mtrlib.models.history import _pool
    model = _model(tiny_history, "din")
    inp = model.input
    h = tiny_history.train.history_at(slice(0, 64))
    past, mask = inp.past_vectors(h)
    assert torch.allclose(past, inp.item_row_vectors(h.items.flatten()).view(past.shape), atol=1e-5)
    past.sum().backward()
    g1 = inp.item.id.weight.grad.clone()
    inp.zero_grad()
    monkeypatch.setattr(_pool, "numba", None)  # torch's index_add_ instead of the compiled loop
    inp.past_vectors(h)[0].sum().backward()
    assert g1.abs().sum() > 0 and torch.allclose(g1, inp.item.id.weight.grad, atol=1e-5)


def test_training_without_a_history_is_refused_and_scoring_uses_the_latest(tiny_history):
    from mtrlib.serve.scoring import score_matrix
    for enc in ENCODERS:
        model = _model(tiny_history, enc)
        u, i = tiny_history.train.user[:8], tiny_history.train.item[:8]
        model.train()
        with pytest.raises(RuntimeError, match="own history"):
            model(u, i)
        model.eval()
        with torch.no_grad():
            latest = model(u, i)
            explicit = model(u, i, history=model.input.latest(u))
        assert torch.equal(latest, explicit)
        assert (model.split_input() is None) == HISTORY_ENCODERS[enc].Model.target_aware
        users = np.arange(5)
        fast = score_matrix(model, users)  # factorised where the encoder allows it
        plain = score_matrix(model, users, factorised=False)
        assert np.allclose(fast, plain, atol=1e-4), enc


def test_din_weights_depend_on_the_candidate_item(tiny_history):
    model = _model(tiny_history, "din").eval()
    inp = model.input
    u = torch.tensor([int(np.argmax(tiny_history.space.history.lengths))] * 2)
    h, w = inp.weights(u, torch.tensor([0, 1]), None)
    n = int(h.lengths[0])
    assert n >= 2 and (w[:, n:] == 0).all()
    assert not torch.allclose(w[0, :n], w[1, :n])
    hm, wm = _model(tiny_history, "mean").eval().input.weights(u, torch.tensor([0, 1]), None)
    assert torch.allclose(wm[0, :n], torch.full((n,), 1.0 / n))


def test_a_run_keeps_the_latest_histories_and_old_runs_still_open(store):
    from mtrlib.serve.behaviour import has_history, recent_history
    from mtrlib.serve.recommend import rank_eval, recommend
    from mtrlib.runs import load_run, train_and_save
    cfg = tiny_cfg("mmoe", world=PAGES, model=dict(history=8, history_encoder="din"), data=dict(split="temporal"),
                   epochs=1)
    prep = prepare(cfg)
    res, writer = train_and_save(cfg, prep, store=store)
    run = load_run(writer.path)
    assert has_history(run)
    assert np.array_equal(run.space.history.items, prep.space.history.items)
    meta = json.loads((writer.path / "space.json").read_text())
    assert meta["history"] == {"length": 8, "task": None, "order": "time", "pool": "train"}
    uid = run.users.index[int(np.argmax(prep.space.history.lengths))]
    with torch.no_grad():
        u = torch.tensor([run.space.user_rows([uid])[0]] * 3)
        i = torch.arange(3)
        assert torch.allclose(run.model(u, i), res.model.eval()(u, i), atol=1e-6)
    top = recommend(run, uid, k=3)
    past = recent_history(run, uid, top["item_id"].iloc[0])
    assert len(past) == run.space.history.lengths[run.space.user_rows([uid])[0]] > 0
    assert {"#", "item_id", "title", "weight"} <= set(past.columns) and past.attrs["encoder"] == "din"
    assert np.isfinite(rank_eval(run)["model"]["ndcg@10"])
    assert recent_history(run, "nobody").empty

    # a run without history (as every run before issue 18): no "history" in space.json, still opens
    plain = tiny_cfg("mmoe", world=PAGES, epochs=1)
    _, w2 = train_and_save(plain, prepare(plain), store=store)
    assert "history" not in json.loads((w2.path / "space.json").read_text())
    old = load_run(w2.path)
    assert not has_history(old) and old.space.history is None and len(recommend(old, uid, k=3)) == 3


# -- bad input -----------------------------------------------------------------------------------------

def test_history_without_timestamps_needs_the_file_order():
    ds = small_data(timestamps=False)
    with pytest.raises(DataError, match="timestamp") as e:
        prepare(history_cfg("random"), ds)
    assert "--history-order file" in str(e.value) and "--split random" in str(e.value)
    prep = prepare(history_cfg("random", order="file"), ds)  # the fix works
    assert prep.space.history.order == "file"


@pytest.mark.parametrize("setting,match", [
    (dict(history=-1), "negative"), (dict(history=100_000), "too long"), (dict(history=2.5), "whole number"),
    (dict(history=5, history_encoder="lstm"), "Unknown history encoder"),
    (dict(history=5, history_order="clock"), "Unknown history order"),
    (dict(history=5, history_pool="all"), "Unknown history pool"),
    (dict(history=5, history_task="nope"), "not one of the tasks"),
    (dict(history=5, history_encoder="din", history_attention=[]), "at least one hidden layer"),
    (dict(history=5, history_encoder="sasrec", history_heads=3), "divide the embedding"),
])
def test_bad_history_settings_are_refused_with_the_fix(setting, match):
    cfg = TrainConfig()
    for k, v in setting.items():
        setattr(cfg.model, k, v)
    with pytest.raises(UserError, match=match) as e:
        validate(cfg, ["click", "like"])
    assert "Fix:" in str(e.value)


def test_a_regression_history_task_is_refused():
    ds = small_data()
    cfg = history_cfg("temporal", task="stars")
    cfg.data.tasks = TASKS + ["stars=rating:reg"]
    with pytest.raises(DataError, match="regression task") as e:
        prepare(cfg, ds)
    assert "liked" in str(e.value)


def test_cli_refuses_bad_history_flags(capsys, tmp_path, monkeypatch):
    from mtrlib.__main__ import main
    monkeypatch.setenv("MTR_RUN_STORE", str(tmp_path))
    for flags, match in ((["--history", "0"], "at least 1 past interaction"),
                         (["--history", "-3"], "at least 1 past interaction"),
                         (["--history", "999999"], "too long"),
                         (["--history", "5", "--history-task", "dwell"], "regression task")):
        rc = main(["train", "--users", "60", "--items", "30", "--epochs", "1", *flags])
        err = capsys.readouterr().err
        assert rc == 2 and match in err and "Traceback" not in err, (flags, err[-500:])
    with pytest.raises(SystemExit) as e:  # argparse's own message for a choice it does not know
        main(["train", "--history", "5", "--history-encoder", "lstm"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_cli_trains_with_a_history_and_says_so(capsys, tmp_path, monkeypatch):
    from mtrlib.__main__ import main
    monkeypatch.setenv("MTR_RUN_STORE", str(tmp_path))
    rc = main(["train", "--users", "60", "--items", "30", "--impressions", "10", "--epochs", "1", "--split", "temporal",
               "--history", "6", "--history-encoder", "sasrec", "--history-task", "click", "--history-heads", "2",
               "--quiet"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and out["status"] == "finished"
    from mtrlib.runs import load_run
    run = load_run(out["run_dir"])
    m = run.config.model
    assert (m.history, m.history_encoder, m.history_task, m.history_heads) == (6, "sasrec", "click", 2)
    assert "+history sasrec 6" in run.name


def test_url_keeps_the_history_settings():
    from mtrlib.share import from_params, to_params
    cfg = TrainConfig()
    cfg.model.history, cfg.model.history_encoder, cfg.model.history_task = 20, "din", "like"
    cfg.model.history_attention = [16, 8]
    params = to_params(cfg)
    assert {"hist": "20", "henc": "din", "htask": "like", "hatt": "16,8"}.items() <= params.items()
    back, problems = from_params(params)
    assert not problems and back.model == cfg.model


def test_diagram_shows_the_history_block():
    from mtrlib.viz import charts
    m = TrainConfig().model
    texts = lambda fig: " ".join(a.text for a in fig.layout.annotations)  # noqa: E731
    assert "history" not in texts(charts.network(m, ["click", "like"]))
    m.history, m.history_encoder, m.history_task = 50, "din", "like"
    assert "history L=50 · DIN · like=1" in texts(charts.network(m, ["click", "like"]))


def test_din_scores_a_catalogue_grid_as_its_pairs(tiny_history):
    """Scoring users x items with DIN computes each user's history once (matrix products over the
    grid): the same outputs as the pairs one by one."""
    model = _model(tiny_history, "din", history_attention=[12, 6]).eval()
    inp = model.input
    users = torch.tensor([0, 3, 7]).repeat_interleave(10)
    items = torch.arange(10).repeat(3)
    with torch.no_grad():
        grid = inp.encode(users, items, None)
        pairs = inp.encode(users, items, inp.latest(users))  # an explicit history: the per-pair path
    assert torch.allclose(grid, pairs, atol=1e-5)
