"""The five lessons at their reduced size (`--quick`): each runs, prints its JSON line, and its
headline direction holds. Each is the lesson's own definition (mtrlib.experiments.lessons) at
the size `python -m mtrlib lesson NAME --quick` runs, not a setting chosen for the test."""
from __future__ import annotations

import json

import pytest

from mtrlib.errors import ConfigError
from mtrlib.experiments.lessons import LESSONS, figure, get_lesson, lesson_json
from mtrlib.experiments import run_sweep

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(name: str, store) -> tuple[dict, object]:
    lesson = get_lesson(name)
    res = run_sweep(lesson.sweep(quick=True), store=store)
    out = json.loads(json.dumps(lesson_json(lesson, res, quick=True)))  # what the CLI prints
    assert res.complete and out["lesson"] == name and isinstance(out["holds"], bool)
    for setting, ms in out["headline"].items():
        for m, e in ms.items():
            assert set(e) == {"mean", "ci95", "n"} and e["n"] >= 2, (setting, m, e)
    fig = figure(lesson, res)
    drawn = [tr for tr in fig.data if getattr(tr, "error_y", None) is not None and tr.error_y.array is not None]
    assert drawn and all(len(tr.error_y.array) == len(tr.y) for tr in drawn)  # every point has its interval
    return out, res


def test_conflict_sharing_pays_least_for_unrelated_tasks(tmp_path):
    out, _ = _run("conflict", tmp_path)
    mean = {k.rsplit(" · ", 1)[1]: v["gain"]["mean"] for k, v in out["headline"].items() if k.startswith("mean")}
    assert mean["ρ = 0"] < mean["ρ = 0.9"] and mean["ρ = 0"] < mean["ρ = -0.9"], mean
    assert out["holds"]


def test_seesaw_click_weight_buys_click_auc_and_some_ratios_are_dominated(tmp_path):
    out, res = _run("seesaw", tmp_path)
    h = out["headline"]
    assert h["8:1"]["click/auc"]["mean"] > h["1:8"]["click/auc"]["mean"], h
    assert len(out["pareto"]) < 7 and out["relative_hypervolume"] > 0
    assert out["holds"]


def test_funnel_esmm_is_better_calibrated_than_the_naive_cvr_model(tmp_path):
    out, _ = _run("funnel", tmp_path)
    d = next(v for k, v in out["headline"].items() if k.endswith("(paired)"))
    # better calibrated where like labels are sparse; ranking no worse beyond noise (world v2)
    assert d["like/logloss"]["mean"] < 0, d
    assert d["like/auc"]["mean"] + d["like/auc"]["ci95"] >= 0, d
    assert out["holds"]


def test_cold_items_need_more_than_their_id(tmp_path):
    out, _ = _run("cold-text", tmp_path)
    h = out["headline"]
    ids = h["ids only"]["click/auc"]["mean"]
    assert abs(ids - 0.5) < 0.1  # ids only: about chance on items never seen
    for k in ("+ side features", "+ text", "+ side features + text"):
        assert h[k]["click/auc"]["mean"] > ids + 0.05, (k, h[k], ids)
    assert out["holds"]


def test_position_as_a_feature_wins_the_auc_and_loses_the_ranking(tmp_path):
    out, res = _run("position", tmp_path)
    h = out["headline"]
    feature, tower = h["position as a feature"], h["bias tower (PAL)"]
    # each run was also ranked against the world's truth (the sweep's truth metrics)
    assert all("truth_overlap@10" in c.metrics["click"] for c in res.cells)
    assert feature["click/auc"]["mean"] > tower["click/auc"]["mean"]
    assert feature["click/truth_overlap@10"]["mean"] < tower["click/truth_overlap@10"]["mean"], h
    assert out["holds"]


def test_lessons_are_data_checked_against_the_real_config():
    assert set(LESSONS) == {"conflict", "seesaw", "funnel", "cold-text", "position"}
    for lesson in LESSONS.values():
        lesson.check()
        assert lesson.question.endswith("?") and "(" in lesson.explanation  # a question; the paper cited
    with pytest.raises(ConfigError, match="no lesson 'nope'"):
        get_lesson("nope")
