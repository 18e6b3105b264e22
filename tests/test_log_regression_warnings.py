"""Issue 26: regression on log(1 + value) (`COL:reg:log`: grammar, labels, metrics in both units,
recommendations in original units) and the warnings computed after the split
(mtrlib.data.warnings: one class in validation / test, a constant context column, a categorical
column whose test values are mostly unseen)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtrlib.data import DataError, Dataset, build_examples, load, parse_task, parse_tasks, split
from mtrlib.data.split import Split
from mtrlib.data.tasks import task_from_fields
from mtrlib.data.warnings import split_warnings
from mtrlib.eval.pointwise import higher_is_better, popularity_baseline, task_metrics


# ---------------------------------------------------------------- the grammar


@pytest.mark.parametrize("text", ["dwell=dwell:reg:log", "d=dwell_time:reg:log|click", "d=dwell:reg"])
def test_log_regression_round_trips(text):
    t = parse_task(text)
    assert t.to_string() == text and parse_task(t.to_string()) == t
    assert t.type == "regression" and t.kind == "regression"
    assert t.transform == ("log" if text.split("|")[0].endswith(":log") else None)


def test_log_regression_describes_itself_and_comes_from_editor_fields():
    t = parse_task("dwell=dwell:reg:log")
    assert t.describe() == "dwell: regression on log(1 + dwell)"
    assert parse_task("d=dwell:reg|click").describe() == "d: regression on 'dwell'; observed only where 'click' is 1"
    assert task_from_fields("d", "regression", "dwell", "log", None, "click").to_string() == "d=dwell:reg:log|click"
    assert task_from_fields("d", "regression", "dwell", "", None, None).to_string() == "d=dwell:reg"


@pytest.mark.parametrize("text, message", [
    ("d=dwell:reg:sqrt", "unknown transform ':sqrt'"),
    ("d=dwell:reg:", "no transform after ':reg'"),
    ("d=:reg:log", "no column before ':reg'"),
])
def test_bad_log_regression_definitions_are_named(text, message):
    with pytest.raises(DataError, match=message):
        parse_task(text)


# ---------------------------------------------------------------- labels


def _frame(values) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({"user": [f"u{i % 7}" for i in range(n)], "item": [f"i{i % 11}" for i in range(n)],
                         "clicked": [i % 2 for i in range(n)], "secs": values})


def test_log_regression_labels_are_log1p_of_the_column():
    values = [0.0, 1.5, 9.0, 120.0, np.nan, 3.0] * 5
    ds = load(_frame(values))
    ex = build_examples(ds, ["click=clicked", "d=secs:reg:log"])
    y = ex.labels[: len(values), 1]
    np.testing.assert_allclose(y, np.log1p(np.asarray(values, np.float32)), rtol=1e-6)


@pytest.mark.parametrize("bad, row", [(-1.0, 3), (-5.0, 3)])
def test_log_regression_refuses_values_at_or_below_minus_one(bad, row):
    values = [1.0, 2.0, bad, 4.0] * 5
    with pytest.raises(DataError, match=rf"above -1, but row {row} has {bad:g}") as e:
        build_examples(load(_frame(values)), ["click=clicked", "d=secs:reg:log"])
    assert "d=secs:reg" in e.value.fix  # the way out: the plain regression
    build_examples(load(_frame([1.0, 2.0, -0.5, 4.0] * 5)), ["click=clicked", "d=secs:reg:log"])  # above -1 is fine


# ---------------------------------------------------------------- metrics


def test_metrics_of_a_log_task_in_both_units():
    tasks = parse_tasks(["click=click", "dwell=dwell:reg:log|click", "plain=dwell:reg"])
    rng = np.random.default_rng(0)
    n = 300
    click = (rng.random(n) < 0.5).astype(np.float32)
    raw = np.exp(rng.normal(1.0, 0.8, n))
    log_pred = np.log1p(raw) + rng.normal(0, 0.3, n)
    labels = np.stack([click, np.log1p(raw), raw], 1).astype(np.float32)
    mask = np.stack([np.ones(n, bool), click == 1, np.ones(n, bool)], 1)
    preds = np.stack([rng.random(n), log_pred, raw + 1.0], 1).astype(np.float32)
    out = task_metrics(tasks, labels, mask, preds)
    m = click == 1
    d = out["dwell"]
    assert d["rmse"] == pytest.approx(np.sqrt(np.mean((log_pred[m] - np.log1p(raw[m])) ** 2)), rel=1e-4)
    assert d["rmse_orig"] == pytest.approx(np.sqrt(np.mean((np.expm1(log_pred[m]) - raw[m]) ** 2)), rel=1e-4)
    assert d["mae_orig"] == pytest.approx(np.mean(np.abs(np.expm1(log_pred[m]) - raw[m])), rel=1e-4)
    assert "rmse_orig" not in out["plain"] and out["plain"]["rmse"] == pytest.approx(1.0, rel=1e-5)
    assert not higher_is_better("rmse_orig")
    base = popularity_baseline(tasks, np.arange(n) % 5, labels, mask, np.arange(n) % 5, labels, mask, 5)
    assert {"rmse", "rmse_orig"} <= set(base["dwell"]) and "rmse_orig" not in base["plain"]


def test_world_dwell_on_log_trains_and_recommends_in_original_units(tmp_path):
    from _mtr import tiny_cfg
    from mtrlib.runs import recorded_training
    from mtrlib.runs import load_run
    from mtrlib.serve.recommend import recommend
    from mtrlib.serve.scoring import score_matrix
    from mtrlib.train.loop import prepare
    cfg = tiny_cfg(epochs=1, data={"tasks": ["click=click", "like=like|click", "dwell=dwell:reg:log|click"]})
    prep = prepare(cfg)
    dwell = next(t for t in prep.tasks if t.name == "dwell")
    assert dwell.transform == "log"
    raw = prep.dataset.interactions["dwell"].to_numpy(dtype=float)
    y = prep.examples.labels[: len(raw), prep.task_names.index("dwell")]
    ok = ~np.isnan(raw)
    np.testing.assert_allclose(np.expm1(y[ok].astype(np.float64)), raw[ok], rtol=1e-4, atol=1e-4)
    res, writer = recorded_training(cfg, prep, path=tmp_path / "run")
    m = res.metrics["dwell"]
    assert m["rmse"] < 3 < m["rmse_orig"] or m["rmse_orig"] > m["rmse"]  # log units are small, dwell's are not
    user = prep.dataset.interactions["user_id"].iloc[0]
    rec = recommend(writer.path, user, k=5)
    run = load_run(writer.path)
    logs = score_matrix(run.model, run.space.user_rows([user]).astype(np.int64))[0, :, run.task_names.index("dwell")]
    rows = run.items.index.get_indexer(rec["item_id"])
    np.testing.assert_allclose(rec["dwell"], np.expm1(logs[rows].astype(np.float64)), rtol=1e-5)  # seconds, not logs


# ---------------------------------------------------------------- warnings


def _split(n: int, val, test) -> Split:
    val, test = np.asarray(val), np.asarray(test)
    train = np.setdiff1d(np.arange(n), np.concatenate([val, test]))
    return Split(train, val, test, "given")


def _hand_dataset(n=60) -> Dataset:
    """A Dataset built by hand with context features and a categorical item feature."""
    inter = pd.DataFrame({
        "user_id": [f"u{i % 6}" for i in range(n)], "item_id": [f"i{i % 10}" for i in range(n)],
        "click": [float(i % 2) for i in range(n)],
        "device": ["phone"] * n,  # one value: nothing to learn from
        "page": [f"p{i}" for i in range(n)],  # every row its own page: test pages are never seen
        "hour": [str(i % 3) for i in range(n)],  # fine
    })
    items = pd.DataFrame({"shelf": [f"s{k}" for k in range(10)]}, index=pd.Index([f"i{k}" for k in range(10)]))
    users = pd.DataFrame(index=pd.Index([f"u{k}" for k in range(6)]))
    return Dataset(inter, items, users, item_features={"shelf": "categorical"},
                   context_features={"device": "categorical", "page": "categorical", "hour": "categorical"})


def _codes(ws):
    return sorted((w["code"], w["subject"]) for w in ws)


def test_warnings_have_code_subject_message_fix_and_are_empty_when_all_is_well():
    ds = _hand_dataset()
    ds.context_features = {"hour": "categorical"}
    ds.item_features = {}
    ex = build_examples(ds, ["click=click"])
    sp = split(ex, "random", 0.2, 0.2, seed=0)
    assert not [w for w in split_warnings(ds, ex, sp, ex.tasks) if w["code"] == "unseen_codes"]


def test_constant_context_and_unseen_categorical_context_columns():
    ds = _hand_dataset()
    ex = build_examples(ds, ["click=click"])
    sp = split(ex, "random", 0.2, 0.2, seed=0)
    ws = split_warnings(ds, ex, sp, ex.tasks)
    assert ("constant_context", "device") in _codes(ws) and ("unseen_codes", "page") in _codes(ws)
    assert all(set(w) == {"code", "subject", "message", "fix"} for w in ws)
    dev = next(w for w in ws if w["subject"] == "device")
    assert "'device'" in dev["message"] and "'phone'" in dev["message"] and "every row" in dev["message"]
    page = next(w for w in ws if w["subject"] == "page")
    assert "100% of the test rows" in page["message"] and "context column" in page["message"]
    assert not any(w["subject"] == "hour" for w in ws)


def test_context_column_constant_only_in_training_rows():
    ds = _hand_dataset(40)
    ds.context_features = {"device": "categorical"}
    ds.item_features = {}
    ds.interactions["device"] = ["phone"] * 30 + ["tv"] * 10
    ex = build_examples(ds, ["click=click"])
    ws = split_warnings(ds, ex, _split(40, range(30, 35), range(35, 40)), ex.tasks)
    assert _codes(ws) == [("constant_context", "device"), ("unseen_codes", "device")]  # 'tv' only in test
    assert "in the training rows" in ws[0]["message"] and "random split" in ws[0]["fix"]


def test_item_feature_with_mostly_unseen_test_values():
    ds = _hand_dataset()
    ds.context_features = {}
    ex = build_examples(ds, ["click=click"])
    # items i8, i9 (shelves s8, s9) only in test; i7 in validation
    item = ex.frame["item_id"].to_numpy()
    test = np.flatnonzero(np.isin(item, ["i8", "i9"]))
    val = np.flatnonzero(item == "i7")
    ws = [w for w in split_warnings(ds, ex, _split(len(item), val, test), ex.tasks) if w["code"] == "unseen_codes"]
    assert _codes(ws) == [("unseen_codes", "shelf")]
    assert "item feature 'shelf'" in ws[0]["message"] and "2 distinct" in ws[0]["message"]
    # half the test rows unseen is not "mostly"
    test2 = np.concatenate([np.flatnonzero(item == "i9")[:3], np.flatnonzero(item == "i0")[:3]])  # i0 also in training
    rest = np.setdiff1d(np.arange(len(item)), np.concatenate([val, test2]))
    rest = rest[item[rest] != "i9"]
    sp = Split(rest, val, test2, "given")
    assert not [w for w in split_warnings(ds, ex, sp, ex.tasks) if w["code"] == "unseen_codes"]


def test_task_with_one_class_or_nothing_in_validation_or_test():
    n = 60
    ds = _hand_dataset(n)
    ds.context_features, ds.item_features = {}, {}
    ds.interactions["rare"] = [1.0 if i < 5 else 0.0 for i in range(n)]  # positives only in training
    ds.interactions["secs"] = [float(i) if i < 50 else np.nan for i in range(n)]
    ex = build_examples(ds, ["click=click", "rare=rare", "d=secs:reg:log"])
    ws = split_warnings(ds, ex, _split(n, range(40, 50), range(50, 60)), ex.tasks)
    assert _codes(ws) == [("no_observed", "d"), ("one_class", "rare"), ("one_class", "rare")]
    rare = [w for w in ws if w["subject"] == "rare"]
    assert "no positives in the validation split" in rare[0]["message"]
    assert "no positives in the test split" in rare[1]["message"] and "AUC" in rare[1]["message"]
    assert "test split" in next(w for w in ws if w["code"] == "no_observed")["message"]


def test_warnings_reach_prepared_and_meta(tmp_path):
    import json

    from _mtr import tiny_cfg
    from mtrlib.runs import recorded_training
    from mtrlib.train.loop import prepare
    cfg = tiny_cfg(epochs=1)
    cfg.data.tasks = ["click=click", "never=click>5", "dwell=dwell:reg:log|click"]
    with pytest.raises(DataError):  # a task with one class everywhere is refused before any split
        prepare(cfg)
    cfg.data.tasks = ["click=click", "dwell=dwell:reg:log|click"]
    prep = prepare(cfg)
    prep.warnings = [{"code": "one_class", "subject": "click", "message": "m", "fix": "f"}]
    res, writer = recorded_training(cfg, prep, path=tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["warnings"] == prep.warnings
    assert "rmse_orig" in res.metrics["dwell"] and "rmse_orig" in res.baseline["dwell"]


def test_cli_train_names_the_warnings_in_its_json_line_and_log(tmp_path, capsys, monkeypatch):
    import json

    from mtrlib.__main__ import main as entry
    rows = []
    for u in range(12):
        for k in range(10):
            rows.append((f"u{u}", f"i{(u + 3 * k) % 20}", 1000 * k + u, (k + u) % 2, 1 if k < 2 else 0, 2.0 * k))
    path = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["user", "item", "ts", "clicked", "early", "secs"]).to_csv(path, index=False)
    monkeypatch.setenv("MTR_RUN_STORE", str(tmp_path / "store"))
    rc = entry(["train", "--data", str(path), "--task", "click=clicked", "--task", "early=early",
                "--task", "d=secs:reg:log", "--split", "temporal", "--epochs", "1", "--quiet"])
    out = capsys.readouterr()
    assert rc == 0, out.err[-2000:]
    res = json.loads(out.out.strip().splitlines()[-1])
    assert [(w["code"], w["subject"]) for w in res["warnings"]] == [("one_class", "early"), ("one_class", "early")]
    assert "warning: Task 'early' has no positives in the test split" in out.err
    assert {"rmse", "rmse_orig"} <= set(res["metrics"]["d"])
    meta = json.loads((Path(res["run_dir"]) / "meta.json").read_text())
    assert meta["warnings"] == res["warnings"]


def test_train_page_shows_the_split_warnings_beside_their_controls(store):
    from _mtr import PAGES, app_test, shown, tiny_cfg, wait_job
    at = app_test(tiny_cfg(world=PAGES, epochs=1), "pages/train.py")
    at.button(key="t_train").click().run()
    job = wait_job(at)
    assert job.state == "finished", job.message
    job.prepared.warnings = [
        {"code": "one_class", "subject": "like", "message": "Task 'like' has no positives in the test split.",
         "fix": "use a larger test fraction"},
        {"code": "constant_context", "subject": "device", "message": "Context column 'device' holds one value.",
         "fix": "drop 'device'"}]
    at.run()
    assert not at.exception
    texts = [shown(w.value) for w in at.warning]
    assert "Task 'like' has no positives in the test split. Fix: use a larger test fraction." in texts
    assert "Context column 'device' holds one value. Fix: drop 'device'." in texts
    at.session_state["cfg"].data.split = "cold-items"  # another split: the last run's warnings no longer apply
    at.run()
    assert not any("Context column 'device'" in shown(w.value) for w in at.warning)
