"""The experiment CLI: `train --seeds` / `--repeat`, `sweep` (its JSON last line, resume, bad
grids) and `lesson` (bad names), run in this process (no interpreter start-up)."""
from __future__ import annotations

import json

import pytest

from mtrlib.runs import list_runs

TINY = ["--users", "80", "--items", "40", "--impressions", "20", "--batch-size", "256", "--epochs", "1",
        "--task", "click=click", "--task", "like=like|click", "--model", "shared-bottom"]


@pytest.fixture
def cli(capsys, monkeypatch, store):
    from mtrlib.__main__ import main as entry

    def call(*args, check: int | None = 0):
        capsys.readouterr()
        rc = entry([str(a) for a in args])
        o = capsys.readouterr()
        if check is not None:
            assert rc == check, (rc, o.out[-2000:], o.err[-3000:])
        return rc, o.out, o.err

    return call


def last(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_train_with_seeds_is_one_experiment_with_its_summary(cli, store):
    _, out, _ = cli("train", *TINY, "--quiet", "--seeds", "3,5")
    res = last(out)
    assert res["seeds"] == [3, 5] and res["status"] == "finished" and res["saved"] and len(res["runs"]) == 2
    auc = res["summary"]["click"]["auc"]
    assert set(auc) == {"mean", "ci95", "n"} and auc["n"] == 2 and auc["ci95"] > 0
    assert res["metrics"]["click"]["auc"] == pytest.approx(auc["mean"])
    runs = list_runs(store)
    assert sorted(r.seed for r in runs) == [3, 5] and {r.group for r in runs} == {res["group"]}
    _, listed, _ = cli("runs", "--json")
    assert {r["group"] for r in json.loads(listed)} == {res["group"]}
    _, out, _ = cli("train", *TINY, "--quiet", "--repeat", "2", "--seed", "7")
    assert last(out)["seeds"] == [7, 8]


def test_a_single_run_gives_its_group_and_a_summary_of_one(cli):
    _, out, _ = cli("train", *TINY, "--quiet")
    res = last(out)
    assert res["group"].startswith("g-") and res["summary"]["click"]["auc"]["n"] == 1
    assert res["summary"]["click"]["auc"]["ci95"] is None and "run_dir" in res  # the old keys are kept


def test_sweep_prints_the_issue_json_and_a_rerun_reuses_the_runs(cli, store):
    _, out, err = cli("sweep", *TINY, "--grid", "weights.click,weights.like=1:2,2:1", "--grid", "lr=0.01,0.03",
                      "--seeds", "2", "--x", "click/auc", "--y", "like/auc")
    res = last(out)
    assert set(res) == {"configs", "pareto", "x", "y", "hypervolume"}
    assert (res["x"], res["y"]) == ("click/auc", "like/auc") and len(res["configs"]) == 4
    assert res["configs"][0]["settings"] == {"weights.click": 1.0, "weights.like": 2.0, "lr": 0.01}
    assert all(c["summary"]["like"]["auc"]["n"] == 2 for c in res["configs"])
    assert res["pareto"] and all(0 <= i < 4 for i in res["pareto"]) and res["hypervolume"] >= 0
    assert "8 runs" in err and len(list_runs(store)) == 8
    _, out2, err2 = cli("sweep", *TINY, "--grid", "weights.click,weights.like=1:2,2:1", "--grid", "lr=0.01,0.03",
                        "--seeds", "2", "--x", "click/auc", "--y", "like/auc")
    assert err2.count("already in the store, reused") == 8 and "(8 reused)" in err2 and len(list_runs(store)) == 8
    assert last(out2)["configs"] == res["configs"]


@pytest.mark.parametrize("args, says", [
    (["sweep", "--grid", "color=red", "--seeds", "2"], "Unknown setting 'color'"),
    (["sweep", "--grid", "seed=1,2"], "--seeds"),
    (["sweep", "--grid", "arch=mmoe", "--out", "somewhere"], "--out"),
    (["train", "--seeds", "1,2", "--out", "somewhere"], "--out"),
    (["lesson", "nope"], "no lesson 'nope'"),
])
def test_bad_experiment_input_exits_2_with_a_message(cli, args, says):
    _, _, err = cli(*args, check=2)
    assert says in err and "Traceback" not in err
