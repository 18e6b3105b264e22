"""Issue 17: the retrieval task kind, its two towers on every architecture, the in-batch softmax
with the logQ correction, the two-stage cascade (retrieve, then rank), eval's stage / top-K
accuracy / recall_of_full / LM zero-shot numbers, "Why this item?", and the bad-spec messages."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from mtrlib.viz import charts
from mtrlib.config import ARCHS, WEIGHTINGS, ModelConfig, validate
from mtrlib.data import DataError, Dataset, build_examples, parse_task, parse_tasks
from mtrlib.data.tasks import task_from_fields
from mtrlib.errors import UserError
from mtrlib.models import build_model
from mtrlib.models.retrieval import in_batch_softmax
from mtrlib.eval.ranking import topk_metrics
from mtrlib.serve.recommend import explain, rank_eval, recommend
from mtrlib.runs import RunError, load_run, train_and_save
from mtrlib.serve.scoring import iter_scores, retrieval_scores, score_candidates
from mtrlib.share import from_params, to_params
from mtrlib.train.loop import prepare, run as train_run

from _mtr import PAGES, app_test, tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = ["click=click", "like=like|click", "r=retrieval:click"]


# -- the task grammar -----------------------------------------------------------------------------

def test_grammar_reads_and_writes_retrieval_tasks():
    a, b = parse_task("r=retrieval"), parse_task(" q = retrieval : liked ")
    assert (a.kind, a.type, a.column, a.parent) == ("retrieval", "retrieval", None, None)
    assert (b.kind, b.column, b.parent) == ("retrieval", "liked", "liked")
    assert a.is_retrieval and not a.is_binary
    for t in (a, b):
        assert parse_task(t.to_string()) == t
    assert b.to_string() == "q=retrieval:liked" and "positives of 'liked'" in b.describe()
    # the Data page's editor row: 'observed only where' names OTHER
    assert task_from_fields("q", "retrieval", "", None, None, "liked").to_string() == "q=retrieval:liked"


@pytest.mark.parametrize("tasks,fragment", [
    (["r=retrieval"], "add a ranking task"),
    (["d=x:reg", "r=retrieval:d"], "regression task: it has no positives"),
    (["a=x", "r=retrieval:b"], "there is no task 'b'"),
    (["a=x", "r=retrieval|a"], "'retrieval:a', not '|a'"),
    (["a=x", "r=retrieval:"], "no task named after 'retrieval:'"),
    (["a=x", "r=retrieval", "q=retrieval:r"], "another retrieval task"),
])
def test_bad_retrieval_specs_are_refused_with_the_fix(tasks, fragment):
    with pytest.raises(DataError, match="Fix:|fix") as e:
        parse_tasks(tasks)
    assert fragment in str(e.value)


def _dataset(n_rows: int) -> Dataset:
    rng = np.random.default_rng(0)
    inter = pd.DataFrame({"user_id": [f"u{k % 7}" for k in range(n_rows)],
                          "item_id": [f"i{(k * 3) % 11}" for k in range(n_rows)],
                          "rating": rng.integers(1, 6, n_rows)})
    return Dataset(interactions=inter, items=pd.DataFrame(index=pd.Index(sorted(set(inter["item_id"])), name="item_id")),
                   users=pd.DataFrame(index=pd.Index(sorted(set(inter["user_id"])), name="user_id")), name="tiny")


def test_retrieval_without_enough_positives_is_refused():
    with pytest.raises(DataError, match="needs at least 20 positives") as e:
        build_examples(_dataset(12), ["seen=implicit", "r=retrieval"])
    assert "12 interaction" in str(e.value)
    with pytest.raises(DataError, match="task 'top' has only"):
        build_examples(_dataset(60), ["top=rating>=5", "r=retrieval:top"])


def test_labels_positives_of_other_and_no_sampled_negative():
    ds = _dataset(60)
    ex = build_examples(ds, ["seen=implicit", "liked=rating>=4", "r=retrieval", "q=retrieval:liked"], negatives=2)
    y = pd.DataFrame(ex.labels, columns=ex.task_names)
    sampled = ex.frame["sampled"].to_numpy()
    assert sampled.sum() > 0
    assert y.loc[sampled, ["r", "q"]].isna().all().all()  # a sampled negative is no retrieval positive
    assert (y.loc[~sampled, "r"] == 1).all()  # every logged row is one of r's positives
    liked = y.loc[~sampled, "liked"] == 1
    assert (y.loc[~sampled, "q"][liked] == 1).all() and y.loc[~sampled, "q"][~liked].isna().all()
    assert ex.balance()["r"] == {"observed": int((~sampled).sum())}


# -- the model ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prep():
    return prepare(tiny_cfg(data={"tasks": ["click=click", "r=retrieval:click", "like=like|click"]}))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_gets_the_towers_and_the_loss(prep, arch):
    torch.manual_seed(0)
    m = build_model(ModelConfig(arch=arch), prep.space.describe(), prep.space.tensors(), prep.tasks)
    assert m.arch == arch and [t.name for t in m.output_tasks] == ["click", "r", "like"]
    assert m.task_names == ["click", "like"]  # the architecture was built on the ranking tasks only
    tr = prep.train
    u, i, y, mk = tr.user[:64], tr.item[:64], tr.labels[:64], tr.mask[:64]
    raw = m(u, i)
    assert raw.shape == (64, 3)
    cos = (m.retrieval_user_vectors(u) * m.retrieval_item_vectors(i)).sum(-1)
    torch.testing.assert_close(raw[:, 1], cos)  # the retrieval column is the towers' cosine
    losses = m.task_losses(raw, y, mk)
    assert losses.shape == (3,) and torch.isfinite(losses).all()
    ranking_only = build_model(ModelConfig(arch=arch), prep.space.describe(), prep.space.tensors(),
                               [t for t in prep.tasks if not t.is_retrieval])
    assert set(ranking_only.state_dict()) < set(m.state_dict())  # the towers are added, nothing else changes
    losses[1].backward()
    towers = [p.grad for p in m.retrieval.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in towers)
    emb = m.retrieval_layer().item.id.weight.grad
    assert emb is not None and emb.abs().sum() > 0  # it trains the embeddings the towers read
    if arch == "single":  # nothing shared: the retrieval task has an input layer of its own
        assert m.retrieval_layer() is m.retrieval_input
        assert all(g is None or g.abs().sum() == 0 for g in (inp.item.id.weight.grad for inp in m.input_layers()))
    else:  # the shared input layer (STEM: its shared embeddings, not a task's own)
        assert m.retrieval_layer() is m.input_layers()[0]


def test_in_batch_softmax_is_the_logq_corrected_cross_entropy():
    g = torch.Generator().manual_seed(0)
    u = F.normalize(torch.randn(5, 4, generator=g), dim=-1)
    v = F.normalize(torch.randn(5, 4, generator=g), dim=-1)
    items = torch.tensor([3, 7, 3, 1, 9])  # rows 0 and 2 share a positive: an accidental hit
    log_q = torch.log(torch.tensor([0.4, 0.1, 0.4, 0.05, 0.05]))
    tau = 0.2
    got = in_batch_softmax(u, v, items, log_q, tau)
    total = 0.0
    for b in range(5):
        logits = [float(u[b] @ v[c]) / tau - float(log_q[c]) for c in range(5)
                  if c == b or int(items[c]) != int(items[b])]
        pos = [c for c in range(5) if c == b or int(items[c]) != int(items[b])].index(b)
        total += -(logits[pos] - math.log(sum(math.exp(x) for x in logits)))
    assert float(got) == pytest.approx(total / 5, rel=1e-5)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_trains_under_every_weighting_with_its_own_curves(weighting):
    cfg = tiny_cfg("shared-bottom", data={"tasks": TASKS}, epochs=2, weighting=weighting)
    res, _ = train_run(cfg)
    assert res.status == "finished", res.reason
    step, epoch = res.history.steps[-1], res.history.epochs[-1]
    assert math.isfinite(step["loss/r"]) and step["loss/r"] > 0 and "weight/r" in step
    assert 0 <= epoch["val/r/recall@10"] <= 1 and "val/r/recall@100" in epoch
    assert set(res.metrics["r"]) >= {"recall@10", "recall@100", "n"}


def test_retrieval_learns_above_chance():
    cfg = tiny_cfg("mmoe", world=PAGES, data={"tasks": TASKS}, epochs=6)
    res, prep = train_run(cfg)
    n_items = prep.space.items.n
    assert res.metrics["r"]["recall@10"] > 1.5 * 10 / n_items, (res.metrics["r"], n_items)
    # and the ranking tasks still learn beside it: above popularity (world v2, seeds 0-1: click AUC
    # 0.583 / 0.610 with the retrieval task, 0.588 / 0.622 without; popularity 0.516 / 0.552)
    assert res.metrics["click"]["auc"] > res.baseline["click"]["auc"] + 0.04


# -- scoring: every column, the candidates, the retrieval stage ----------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cfg = tiny_cfg("mmoe", world=PAGES, data={"tasks": TASKS}, epochs=3)
    res, writer = train_and_save(cfg, prepare(cfg), store=tmp_path_factory.mktemp("runs"))
    return load_run(writer.path)


def test_scoring_paths_agree_with_the_plain_forward_pass(world):
    m = world.model
    users = np.arange(6)
    with torch.inference_mode():
        plain = m.predict(m(torch.arange(6).repeat_interleave(m.n_items), torch.arange(m.n_items).repeat(6)))
    plain = plain.view(6, m.n_items, -1)
    fast = torch.cat([p for _, _, p in iter_scores(m, users, block_pairs=53)])
    assert m.scores_from_parts() is True
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)
    cand = np.stack([np.random.default_rng(u).choice(m.n_items, 9, replace=False) for u in users])
    got = score_candidates(m, users, cand, block_pairs=7)
    torch.testing.assert_close(got, plain[torch.arange(6)[:, None], torch.as_tensor(cand)], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(retrieval_scores(m, users), plain[..., world.task_names.index("r")], rtol=1e-5, atol=1e-6)


def test_cascade_over_the_whole_catalogue_is_full_ranking(world):
    n = world.n_items
    full = rank_eval(world, task="like", stage="full")
    every = rank_eval(world, task="like", stage="cascade", candidates=n, compare_full=True)
    assert every["stage"] == "cascade" and every["candidates"] == n
    assert every["model"] == pytest.approx(full["model"], abs=1e-9)
    assert every["recall_of_full@10"] == pytest.approx(1.0)
    small = rank_eval(world, task="like", candidates=25, compare_full=True)  # the default stage: cascade
    assert small["stage"] == "cascade" and 0 < small["recall_of_full@10"] < 1
    assert set(small) >= {"task", "model", "popularity", "users", "items", "positives", "seconds", "ranked_by"}


def test_default_stage_and_the_stage_columns_of_recommendations(world):
    uid = world.users.index[3]
    df = recommend(world, uid, k=5, candidates=20)
    assert df.attrs["stage"] == "cascade" and (df["stage"] == "cascade").all()
    assert df["retrieval rank"].between(1, 20).all()
    full = recommend(world, uid, k=5, stage="full")
    assert "retrieval rank" not in full.columns and (full["stage"] == "full").all()
    r = recommend(world, uid, k=5, stage="retrieval")
    assert list(r["retrieval rank"]) == [1, 2, 3, 4, 5]
    assert np.all(np.diff(r["r"].to_numpy()) <= 1e-7)  # ordered by the towers' score
    assert r["score"].to_numpy() == pytest.approx(r["r"].to_numpy(), rel=1e-6)
    seen = set(world.seen_items(uid))
    assert not seen & set(df["item_id"]) and not seen & set(r["item_id"])


def test_topk_accuracy_counts_every_test_pair_with_seen_items_included(world):
    res = rank_eval(world, task="r", stage="retrieval", topk_accuracy=10)
    te = world.test
    j = world.task_names.index("r")
    pos = te["mask"][:, j] & (te["labels"][:, j] == 1)
    u, i = te["user"][pos], te["item"][pos]
    S = retrieval_scores(world.model, np.arange(world.n_users)).numpy()
    top = np.argsort(-S, axis=1, kind="stable")[:, :10]
    want = np.mean([i[k] in top[u[k]] for k in range(len(u))])
    assert res["model"]["topk_accuracy@10"] == pytest.approx(want, abs=1e-9)
    pop = world.arrays["train.item_pos"][:, j]
    pop_top = np.lexsort((np.arange(world.n_items), -pop))[:10]
    assert res["popularity"]["topk_accuracy@10"] == pytest.approx(np.isin(i, pop_top).mean(), abs=1e-9)


def test_lm_zero_shot_is_the_cosine_of_mean_history_vectors(world, monkeypatch):
    rng = np.random.default_rng(1)
    V = rng.normal(size=(world.n_items, 8)).astype(np.float32)
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    monkeypatch.setattr("mtrlib.serve.zero_shot.lm_item_vectors", lambda run: V)
    res = rank_eval(world, task="like", stage="full", lm_baseline=True, ks=(5, 10))
    assert set(res["lm_zero_shot"]) == set(res["popularity"])
    # brute force: mean of the training items' vectors, cosine, seen items out
    n_i = world.n_items
    keys = world.seen_keys(("train",))
    U = np.zeros((world.n_users, 8))
    np.add.at(U, keys // n_i, V[keys % n_i])
    S = U @ V.T
    seen = world.seen_keys()
    S[seen // n_i, seen % n_i] = -np.inf
    j = world.task_names.index("like")
    te = world.test
    pos = te["mask"][:, j] & (te["labels"][:, j] == 1)
    rel = np.unique(te["user"][pos] * n_i + te["item"][pos])
    rel = rel[~np.isin(rel, seen)]
    users = np.unique(rel // n_i)
    top = np.argsort(-S[users], axis=1, kind="stable")[:, :10]
    want = topk_metrics(top, users, rel, np.bincount(rel // n_i, minlength=world.n_users)[users], n_i, (5, 10))
    assert res["lm_zero_shot"]["ndcg@10"] == pytest.approx(want["ndcg@10"].mean(), abs=1e-6)


def test_why_this_item(world):
    uid = world.users.index[5]
    top = recommend(world, uid, k=4, candidates=15)
    why = explain(world, uid, top["item_id"], n=2)
    assert why.attrs["space"] == "retrieval" and why.attrs["history"] == "click"
    parts = why[[f"contrib:{t}" for t in world.task_names]].sum(axis=1).to_numpy()
    assert parts == pytest.approx(top["score"].to_numpy(), abs=1e-4)  # the parts sum to the fused score
    assert (why["contrib:r"] == 0).all()  # the retrieval score has fusion weight 0 by default
    liked = set(world.items.index[world.arrays[f"seen.positive.{world.task_names.index('click')}"]
                                  [(world.arrays[f"seen.positive.{world.task_names.index('click')}"] // world.n_items)
                                   == int(world.space.user_rows([uid])[0])] % world.n_items])
    V = F.normalize(world.model.retrieval_item_vectors(None, "r"), dim=-1).detach()
    rows = world.space.item_rows
    for _, w in why.iterrows():
        assert len(w["because"]) == 2 and {b["item_id"] for b in w["because"]} <= liked
        sims = [b["similarity"] for b in w["because"]]
        assert sims == sorted(sims, reverse=True)
        ref = float(V[rows([w["item_id"]])[0]] @ V[rows([w["because"][0]["item_id"]])[0]])
        assert sims[0] == pytest.approx(ref, abs=1e-5)
        best_other = max(float(V[rows([w["item_id"]])[0]] @ V[rows([x])[0]]) for x in liked)
        assert sims[0] == pytest.approx(best_other, abs=1e-5)


# -- bad specs at run level -------------------------------------------------------------------------------

def test_bad_stage_specs_are_refused(world, tmp_path):
    with pytest.raises(RunError, match="more than the catalogue's"):
        rank_eval(world, candidates=world.n_items + 1)
    with pytest.raises(RunError, match="fewer than the 20 asked for"):
        recommend(world, world.users.index[0], k=20, candidates=10)
    with pytest.raises(RunError, match="Unknown stage"):
        rank_eval(world, stage="fast")
    cfg = tiny_cfg("shared-bottom", epochs=1)
    _, writer = train_and_save(cfg, prepare(cfg), store=tmp_path)
    plain = load_run(writer.path)
    assert rank_eval(plain)["stage"] == "full"  # no retrieval task: full ranking by default
    with pytest.raises(RunError, match="has no retrieval task"):
        rank_eval(plain, stage="cascade")


def test_cli_eval_and_recommend(world, capsys):
    from mtrlib.__main__ import main
    assert main(["eval", str(world.path), "--task", "like", "--candidates", "15", "--compare-full",
                 "--topk-accuracy", "10", "--k", "5,10"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["stage"] == "cascade" and "recall_of_full@10" in res and res["seconds"] > 0
    assert "topk_accuracy@10" in res["model"] and "topk_accuracy@10" in res["popularity"]
    assert main(["eval", str(world.path), "--candidates", str(world.n_items + 5)]) == 2
    assert "more than the catalogue" in capsys.readouterr().err
    uid = world.users.index[2]
    assert main(["recommend", str(world.path), "--user", uid, "--k", "3", "--explain", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["stage"] == "cascade" and len(out["items"]) == 3
    assert out["items"][0]["because"] and set(out["items"][0]["contributions"]) == set(world.task_names)
    assert main(["recommend", str(world.path), "--user", uid, "--k", "3", "--explain"]) == 0
    assert "because" in capsys.readouterr().out


# -- config, URL, diagram -------------------------------------------------------------------------------

def test_knobs_in_config_url_and_validation():
    cfg = tiny_cfg(data={"tasks": TASKS}, model={"retrieval_dim": 24, "retrieval_temperature": 0.2,
                                                  "retrieval_layers": []})
    params = to_params(cfg)
    assert params["rdim"] == "24" and params["rtemp"] == "0.2" and "r=retrieval:click" in params["tasks"]
    back, problems = from_params(params)
    assert not problems and back.model.retrieval_dim == 24 and back.data.tasks == TASKS
    cfg.model.retrieval_temperature = 0.0
    with pytest.raises(UserError, match="retrieval temperature"):
        validate(cfg)


def test_the_network_diagram_draws_the_retrieval_towers():
    fig = charts.network(ModelConfig(arch="ple"), ["click", "r", "like"], retrieval=["r"])
    texts = [a.text for a in fig.layout.annotations]
    assert "r (retrieval)" in texts and any(t.startswith("user tower") for t in texts)
    assert any(t.startswith("item tower") for t in texts) and fig.layout.title.text.endswith("retrieval towers")
    assert "r" not in texts  # no ranking tower for it


# -- the pages (AppTest) ---------------------------------------------------------------------------------

def test_train_page_configures_and_draws_the_retrieval_towers(store):
    at = app_test(tiny_cfg(world=PAGES, data={"tasks": TASKS}, epochs=1), "pages/train.py")
    assert at.number_input(key="t_rdim").value == 32 and at.number_input(key="t_rtemp").value == 0.05
    at.number_input(key="t_rdim").set_value(16).run()
    assert not at.exception and at.session_state["cfg"].model.retrieval_dim == 16
    chart = at.get("plotly_chart")[0].proto.spec
    assert "retrieval towers" in chart and "r (retrieval)" in chart


def test_recommend_page_shows_the_stage_the_reasons_and_the_lm_baseline(store, monkeypatch):
    cfg = tiny_cfg(world=PAGES, data={"tasks": TASKS}, epochs=2)
    train_and_save(cfg, prepare(cfg), store=store)
    monkeypatch.setattr("mtrlib.serve.zero_shot.lm_item_vectors",
                        lambda run: np.eye(run.n_items, 16, dtype=np.float32) + 0.01)
    at = app_test(page="pages/recommend.py")
    top = at.dataframe[0].value
    assert len(top) == 10 and top["placed by"].str.endswith("→ ranked").all()
    assert "Why this item?" in [h.value for h in at.subheader]
    why = [d.value for d in at.dataframe if "because you liked" in d.value.columns][0]
    assert len(why) == 10 and why["because you liked"].str.len().gt(0).all()
    at.radio(key="rc_stage").set_value("retrieval").run()
    assert at.dataframe[0].value["placed by"].str.endswith("retrieved").all()
    at.checkbox(key="rc_lm").check().run()
    at.button(key="rc_eval").click().run()
    assert not at.exception
    quality = [d.value for d in at.dataframe if "lm_zero_shot" in getattr(d.value, "columns", [])]
    assert quality and {"model", "popularity"} <= set(quality[0].columns) and "ndcg@10" in quality[0].index
