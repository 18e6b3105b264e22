"""Expert-health telemetry (mtrlib.train.experts): the numbers against a by-hand computation on
models with known weights, the rules of the flags, the epoch rows and the CLI's JSON line."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from _mtr import tiny_cfg, tiny_prep
from mtrlib.train import experts
from mtrlib.train.loop import build, train

BIG = 30.0  # a gate logit this far above the others: softmax puts 1 - ~1e-13 on it


def _last_linear(seq: nn.Module) -> nn.Linear:
    return [m for m in seq.modules() if isinstance(m, nn.Linear)][-1]


def _set_out(seq: nn.Module, bias: list[float]) -> None:
    """An expert whose output is exactly relu(bias), whatever the input: last layer's weight 0."""
    lin = _last_linear(seq)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.tensor(bias))


def _set_gate(g: nn.Linear, logits: list[float]) -> None:
    """A gate whose softmax is softmax(logits) for every input."""
    with torch.no_grad():
        g.weight.zero_()
        g.bias.copy_(torch.tensor(logits))


def _model(arch: str, **model):
    cfg = tiny_cfg(arch, model=model)
    prep = tiny_prep(cfg)
    return build(cfg, prep), prep


def test_mmoe_by_hand():
    m, prep = _model("mmoe", n_experts=4, experts=[16, 8])
    assert m.task_names == ["click", "like", "dwell"] and m.expert_names == [f"expert {k}" for k in (1, 2, 3, 4)]
    assert list(m.expert_modules()) == m.expert_names
    _set_out(m.experts[0], [-1.0] * 8)  # every unit dead: collapsed
    _set_out(m.experts[1], [1.0] * 4 + [-1.0] * 4)  # half the units dead; each output (1,1,1,1,0,0,0,0)
    _set_gate(m.gates[0], [BIG, 0, 0, 0])  # click: one expert
    _set_gate(m.gates[1], [0, 0, 0, 0])  # like: uniform
    _set_gate(m.gates[2], [0, BIG, 0, 0])  # dwell: one expert
    m.train()
    h = experts.expert_health(m, experts.fixed_sample(prep.val, 100))
    assert m.training  # left as it was
    assert h["sample"] == 100
    e = h["experts"]
    assert e["expert 1"]["dead_share"] == 1.0 and e["expert 1"]["mean_norm"] == 0.0
    assert e["expert 2"]["dead_share"] == 0.5 and e["expert 2"]["mean_norm"] == pytest.approx(2.0)  # sqrt(4)
    assert e["expert 1"]["flags"] == ["collapsed"] and "collapsed" not in e["expert 2"]["flags"]
    t = h["tasks"]
    for task in ("click", "dwell"):  # a gate forced to one expert: entropy 0, one effective expert
        assert t[task]["entropy"] == pytest.approx(0, abs=1e-9) and t[task]["eff_experts"] == pytest.approx(1)
        assert t[task]["example_entropy"] == pytest.approx(0, abs=1e-9)
    assert t["like"]["entropy"] == pytest.approx(math.log(4)) and t["like"]["eff_experts"] == pytest.approx(4)
    assert t["like"]["example_eff_experts"] == pytest.approx(4)
    # shares of each shared expert's gate weight (mean gates: click (1,0,0,0), like 1/4 each, dwell (0,1,0,0))
    assert e["expert 1"]["task_share"]["click"] == pytest.approx(1 / 1.25)
    assert e["expert 2"]["task_share"]["dwell"] == pytest.approx(1 / 1.25)
    assert e["expert 3"]["task_share"]["like"] == pytest.approx(1.0)  # only like uses it: degraded
    assert e["expert 3"]["flags"] == ["degraded"] and e["expert 4"]["flags"] == ["degraded"]
    assert "degraded" not in e["expert 1"]["flags"] and "degraded" not in e["expert 2"]["flags"]
    got = {(f["flag"], f["subject"]) for f in h["flags"]}
    assert got == {("collapsed", "expert 1"), ("degraded", "expert 3"), ("degraded", "expert 4")}
    assert all(f["rule"] == experts.RULES[f["flag"]] for f in h["flags"])
    assert json.loads(json.dumps(h)) == h  # JSON-able
    # the epoch-row columns give the same dict back (the pages read history.jsonl)
    assert experts.from_row(experts.row_of(h)) == {**h, "experts": {
        n: {**v, "units": None} for n, v in h["experts"].items()}}


def test_ple_underfitting_and_ownership():
    m, prep = _model("ple", specific_experts=1, shared_experts=2, experts=[8])
    assert list(m.expert_modules()) == m.expert_names == ["click 1", "like 1", "dwell 1", "shared 1", "shared 2"]
    lvl = m.levels[-1]
    _set_gate(lvl.task_gates[0], [-BIG, 0, 0])  # click: nothing on its own expert -> underfitted
    _set_gate(lvl.task_gates[1], [BIG, 0, 0])  # like: all on its own
    _set_gate(lvl.task_gates[2], [0, 0, 0])  # dwell: a third each
    h = experts.expert_health(m, experts.fixed_sample(prep.val, 64))
    t = h["tasks"]
    assert t["click"]["own_share"] == pytest.approx(0, abs=1e-9) and t["click"]["flags"] == ["underfitted"]
    assert t["click"]["eff_experts"] == pytest.approx(2)  # uniform over the two shared experts
    assert t["like"]["own_share"] == pytest.approx(1) and t["like"]["flags"] == []
    assert t["dwell"]["own_share"] == pytest.approx(1 / 3) and t["dwell"]["eff_experts"] == pytest.approx(3)
    e = h["experts"]
    assert e["click 1"]["owner"] == "click" and "task_share" not in e["click 1"]  # one task's own
    # shared 1: click 1/2, like 0, dwell 1/3 -> click 0.6, dwell 0.4 (like's ~1e-13 aside)
    assert e["shared 1"]["task_share"]["click"] == pytest.approx(0.6) and e["shared 1"]["flags"] == []
    assert [(f["flag"], f["subject"]) for f in h["flags"]] == [("underfitted", "click")]


def test_gate_stats_two_ways():
    """One expert per example, alternating: the mean uses both (entropy log 2), each example one (0)."""
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]] * 8)
    s = experts.gate_stats({"a": g}, ["e1", "e2"])["a"]
    assert s["entropy"] == pytest.approx(math.log(2)) and s["eff_experts"] == pytest.approx(2)
    assert s["example_entropy"] == 0 and s["example_eff_experts"] == 1


def test_no_experts_gives_nothing():
    m, prep = _model("shared-bottom")
    assert m.expert_modules() == {}
    assert experts.expert_health(m, experts.fixed_sample(prep.val)) == {}
    assert experts.from_row({"epoch": 1, "val/click/auc": 0.6}) == {}


def test_history_and_result_carry_it():
    cfg = tiny_cfg("mmoe", epochs=2)
    r = train(cfg, tiny_prep(cfg))
    assert set(r.experts["experts"]) == {"expert 1", "expert 2", "expert 3", "expert 4"}
    assert set(r.experts["tasks"]) == {"click", "like", "dwell"}
    for row in r.history.epochs:  # every epoch, names by expert and task
        assert "expert_dead/expert 1" in row and "gate_eff/like" in row and "gate_weight/click/expert 2" in row
    back = experts.from_row(r.history.epochs[-1])
    assert back["flags"] == r.experts["flags"] and back["tasks"] == r.experts["tasks"]
    off = tiny_cfg("mmoe", epochs=1, expert_health=False)
    r2 = train(off, tiny_prep(off))
    assert r2.experts == {} and not any(k.startswith("expert_") for k in r2.history.epochs[-1])
    sb = tiny_cfg("shared-bottom", epochs=1)
    assert train(sb, tiny_prep(sb)).experts == {}


def test_cli_json_and_history(tmp_path, monkeypatch, capsys):
    from mtrlib.__main__ import main
    from mtrlib.runs.reader import read_history

    monkeypatch.setenv("MTR_RUN_STORE", str(tmp_path / "store"))
    tiny = ["--users", "150", "--items", "50", "--impressions", "15", "--batch-size", "256", "--epochs", "1", "--quiet"]
    assert main(["train", "--model", "ple", "--out", str(tmp_path / "run"), *tiny]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(out["experts"]["experts"]) == {"click 1", "like 1", "dwell 1", "shared 1", "shared 2"}
    assert out["experts"]["tasks"]["click"]["own_share"] >= 0
    hist = read_history(tmp_path / "run" / "history.jsonl")
    assert "expert_dead/shared 1" in hist.epochs.columns
    assert set(experts.from_row(hist.epochs.iloc[-1].to_dict())["tasks"]) == {"click", "like", "dwell"}
    assert main(["train", "--model", "shared-bottom", "--out", str(tmp_path / "sb"), *tiny]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["experts"] == {}
    assert main(["train", "--model", "mmoe", "--no-expert-health", "--out", str(tmp_path / "off"), *tiny]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["experts"] == {}


# -- pages (streamlit.testing.v1.AppTest) ---------------------------------------------------------------
def test_train_page_shows_health_after_a_run(store):
    from _mtr import PAGES, app, shown, wait_job

    at = app(tiny_cfg("mmoe", world=PAGES, epochs=1), "pages/train.py")
    at.button(key="t_train").click().run()
    assert wait_job(at).state == "finished"
    at.run()
    assert not at.exception
    assert "Expert health" in [h.value for h in at.subheader]
    assert any("dead share" in df.value.columns for df in at.dataframe)
    assert any("effective experts (mean gate)" in df.value.columns for df in at.dataframe)
    assert any("collapsed: dead" in shown(c.value) and "underfitted" in shown(c.value) for c in at.caption)  # rules
    assert any("Dead-unit share per expert" in c.proto.spec for c in at.get("plotly_chart"))


def test_embeddings_tab_and_runs_overlay(store):
    from _mtr import PAGES, app
    from mtrlib.runs import train_and_save
    from mtrlib.train.loop import prepare

    cfg = tiny_cfg("ple", world=PAGES, epochs=2)
    _, writer = train_and_save(cfg, prepare(cfg), store=store)
    assert writer.saved
    at = app(page="pages/embeddings.py")
    assert not at.exception and not at.error
    assert [t.label for t in at.tabs][-2:] == ["Gate weights (task × expert)", "Expert health"]
    assert any("on its own experts" in df.value.columns for df in at.dataframe)
    at = app(page="pages/runs.py")
    at.radio(key="r_view").set_value("expert health").run()
    assert not at.exception
    assert any("Dead-unit share per expert" in c.proto.spec for c in at.get("plotly_chart"))
