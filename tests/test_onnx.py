"""Issue 30: ONNX export and the torch-free onnxruntime scorer.

The exported graphs must compute what the PyTorch model computes (within 1e-5) for every
architecture, with and without a history, with a regression task and a retrieval task, at any
batch size; ids with no learned vector score as in the model; the scorer runs with torch absent.
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import onnxruntime  # noqa: E402,F401  (locked: a missing package fails, never skips)

from mtrlib.__main__ import main
from mtrlib.data.history import History
from mtrlib.models import ARCHITECTURES
from mtrlib.serve.onnx_export import export_model
from mtrlib.serve.onnx_scorer import OnnxScorer, ScorerError
from mtrlib.config import TrainConfig
from mtrlib.train.loop import build, prepare

from _mtr import tiny_cfg, tiny_prep

pytestmark = pytest.mark.usefixtures("one_thread")

RETRIEVAL = ["click=click", "like=like|click", "r=retrieval:click"]
TOL = 1e-5


@functools.lru_cache(maxsize=4)
def _history_prep(key: str):
    return prepare(TrainConfig.from_json(key))


def _model(cfg):
    """An untrained model of cfg (random weights are as good as trained ones for equality), with
    regression targets scaled as after `fit_targets` so the regression column is not trivial."""
    prep = _history_prep(cfg.to_json()) if cfg.model.history else tiny_prep(cfg)  # tiny_prep's key has no history
    model = build(cfg, prep)
    model.fit_targets(prep.train.labels, prep.train.mask)
    return model.eval(), prep


def _export(model, prep, folder) -> OnnxScorer:
    from mtrlib.serve.recommend import fusion_weights  # noqa: F401  (the run-level default is tested via the CLI)
    export_model(model, folder, user_ids=prep.space.users.ids, item_ids=prep.space.items.ids,
                 fusion={t.name: 1.0 for t in model.output_tasks if t.is_binary})
    return OnnxScorer(folder)


def _pairs(model, n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.n_users, (n,), generator=g), torch.randint(0, model.n_items, (n,), generator=g)


def _assert_close(got: np.ndarray, want: torch.Tensor) -> None:
    want = want.detach().numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= TOL * max(1.0, float(np.abs(want).max())), np.abs(got - want).max()


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_ranking_graph_equals_torch_without_history(arch, tmp_path):
    model, prep = _model(tiny_cfg(arch))
    scorer = _export(model, prep, tmp_path)
    assert [i["name"] for i in scorer.signature["ranking"]["inputs"]] == ["user", "item"]
    assert scorer.tasks == ["click", "like", "dwell"]
    kinds = {t["task"]: t["kind"] for t in scorer.signature["tasks"]}
    assert kinds == {"click": "binary", "like": "binary", "dwell": "regression"}
    for n in (1, 7, 300):  # dynamic batch, the size-1 batch included
        u, i = _pairs(model, n, seed=n)
        with torch.no_grad():
            want = model.predict(model(u, i))
        _assert_close(scorer.predict_rows(u.numpy(), i.numpy()), want)


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_ranking_graph_equals_torch_with_history(arch, tmp_path):
    model, prep = _model(tiny_cfg(arch, model=dict(history=6, history_encoder="mean"), data=dict(split="temporal")))
    scorer = _export(model, prep, tmp_path)
    names = [i["name"] for i in scorer.signature["ranking"]["inputs"]]
    assert names == ["user", "item", "history_items", "history_lengths"]
    for n in (1, 50):
        u, i = _pairs(model, n, seed=n)
        g = torch.Generator().manual_seed(n)
        lengths = torch.randint(0, 7, (n,), generator=g)
        items = torch.randint(1, model.n_items, (n, 6), generator=g) * (torch.arange(6) < lengths[:, None])
        with torch.no_grad():
            want = model.predict(model(u, i, History(items, lengths)))
            latest = model.predict(model(u, i))  # no history given: each user's latest one
        _assert_close(scorer.predict_rows(u.numpy(), i.numpy(), (items.numpy(), lengths.numpy())), want)
        _assert_close(scorer.predict_rows(u.numpy(), i.numpy()), latest)


@pytest.mark.parametrize("encoder", ["din", "sasrec"])
def test_target_aware_and_attention_history_encoders_export(encoder, tmp_path):
    model, prep = _model(tiny_cfg("mmoe", model=dict(history=5, history_encoder=encoder), data=dict(split="temporal")))
    scorer = _export(model, prep, tmp_path)
    u, i = _pairs(model, 64, seed=1)
    with torch.no_grad():
        want = model.predict(model(u, i))
    _assert_close(scorer.predict_rows(u.numpy(), i.numpy()), want)


@pytest.mark.parametrize("arch", ["shared-bottom", "single"])
def test_retrieval_run_exports_both_towers(arch, tmp_path):
    model, prep = _model(tiny_cfg(arch, data={"tasks": RETRIEVAL}))
    scorer = _export(model, prep, tmp_path)
    assert {(t["task"], t["side"]) for t in scorer.signature["towers"]} == {("r", "user"), ("r", "item")}
    assert (tmp_path / "user_tower.onnx").is_file() and (tmp_path / "item_tower.onnx").is_file()
    u, i = _pairs(model, 40, seed=2)
    with torch.no_grad():
        want = model.predict(model(u, i))  # the ranking graph holds the retrieval column too
        uv, iv = model.retrieval_user_vectors(u), model.retrieval_item_vectors(i)
    _assert_close(scorer.predict_rows(u.numpy(), i.numpy()), want)
    _assert_close(scorer.user_vectors(u.numpy()), uv)
    _assert_close(scorer.item_vectors(i.numpy()), iv)
    # retrieval: the towers' top n are the torch towers' top n
    with torch.no_grad():
        s = (model.retrieval_user_vectors(torch.tensor([3])) @ model.retrieval_item_vectors().T)[0].numpy()
    got = scorer.retrieve(prep.space.users.ids[3], n=10)
    assert got == [prep.space.items.ids[j] for j in np.argsort(-s, kind="stable")[:10]]


def test_fused_scores_match_the_run_scorer_and_unknown_ids_are_refused(tmp_path, store):
    """A saved run through the CLI verb: the scorer's fused scores equal `run_scores`, cold ids
    (in the catalogue, no learned vector) score as the model scores them, unknown ids are refused."""
    from mtrlib.runs import list_runs, load_run
    from mtrlib.serve.recommend import run_scores

    cfg = tiny_cfg("mmoe", data=dict(split="cold-items"), epochs=1)
    out = tmp_path / "cfg.json"
    out.write_text(cfg.to_json())
    assert main(["train", "--config", str(out), "--quiet"]) == 0
    run = list_runs(store)[0]
    assert main(["export", run.id, "--onnx", str(tmp_path / "onnx"), "--fusion", "click=1,like=2"]) == 0
    scorer = OnnxScorer(tmp_path / "onnx")
    assert scorer.signature["fusion"] == {"click": 1.0, "like": 2.0, "dwell": 0.0}
    r = load_run(run.id)
    cold = [iid for iid, c in zip(r.items.index, r.items["cold"]) if c]
    assert cold, "the cold-items split leaves items without a learned vector"
    user = r.users.index[0]
    want = run_scores(r, users=[user], fusion={"click": 1, "like": 2})[0]
    np.testing.assert_allclose(scorer.score(user), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scorer.score(user, cold), want[r.space.item_rows(cold)], rtol=1e-5, atol=1e-5)
    top = scorer.recommend(user, k=5)
    assert [i for i, _ in top] == [r.items.index[j] for j in np.argsort(-want, kind="stable")[:5]]
    with pytest.raises(ScorerError, match="Unknown user id 'nobody'"):
        scorer.score("nobody")
    with pytest.raises(ScorerError, match="Unknown item id"):
        scorer.score(user, ["not-an-item"])
    with pytest.raises(ScorerError, match="no retrieval towers"):
        scorer.retrieve(user)


def test_scorer_runs_with_torch_absent(tmp_path):
    model, prep = _model(tiny_cfg("ple"))
    _export(model, prep, tmp_path)
    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
            "from mtrlib.serve.onnx_scorer import OnnxScorer\n"
            f"s = OnnxScorer({str(tmp_path)!r})\n"
            f"print(len(s.recommend({prep.space.users.ids[0]!r}, k=3)))\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"


def test_bad_export_folder_and_run_without_weights_are_user_errors(tmp_path, capsys):
    with pytest.raises(ScorerError, match="no signature.json"):
        OnnxScorer(tmp_path)
    (tmp_path / "signature.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ScorerError, match="not an MTR Studio ONNX signature"):
        OnnxScorer(tmp_path)
    assert main(["export", "no-such-run", "--onnx", str(tmp_path / "x"), "--store", str(tmp_path / "s")]) == 2
    assert "error:" in capsys.readouterr().err


def test_runs_page_offers_the_onnx_download_and_its_zip_holds_the_export(store):
    import zipfile
    import io

    from mtrlib.runs import list_runs, train_and_save
    from mtrlib.serve.onnx_export import export_zip
    from _mtr import PAGES, app_test

    cfg = tiny_cfg("mmoe", world=PAGES, epochs=1)
    train_and_save(cfg, prepare(cfg), store=store)
    at = app_test(page="pages/runs.py")
    assert "Download ONNX" in [b.proto.label for b in at.get("download_button")]
    names = zipfile.ZipFile(io.BytesIO(export_zip(list_runs(store)[0].path))).namelist()
    assert {"ranking.onnx", "signature.json"} <= set(names)
