"""Issue 30: Optuna tuning (`tune`): TPE / NSGA-II, repeats per trial, pruning on the validation
curve, and two worker processes sharing one study through the run store's journal file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import optuna  # noqa: E402  (locked in requirements.lock: a missing package fails, never skips)

from mtrlib.experiments.tune import TuneError, parse_objective, parse_space, tune
from mtrlib.runs import list_runs, load_run

from _mtr import tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]


def test_space_and_objective_parsing_and_their_errors():
    d = parse_space("lr=0.001:0.1:log")
    assert (d.key, d.low, d.high, d.log) == ("lr", 0.001, 0.1, True)
    assert parse_objective("click/auc") == ("click/auc", "maximize")
    assert parse_objective("dwell/rmse") == ("dwell/rmse", "minimize")
    for bad, words in [("lr=0.1", "KEY=LOW:HIGH"), ("lr=1:0.1", "below HIGH"), ("lr=0:1:log", "above 0"),
                       ("lr=a:b", "numbers"), ("arch=1:2", "not a number setting")]:
        with pytest.raises(TuneError, match=words):
            parse_space(bad)
    with pytest.raises(Exception, match="Unknown setting 'nonsense'"):
        parse_space("nonsense=1:2")
    with pytest.raises(TuneError, match="TASK/METRIC"):
        parse_objective("auc")


def test_two_objectives_use_nsga2_and_each_trial_is_a_mean_over_seeds(store):
    cfg = tiny_cfg("shared-bottom", epochs=1, data={"tasks": ["click=click", "like=like|click"]})
    res = tune(cfg, ["click/auc", "like/auc"], [parse_space("weights.click=0.25:4:log")], 2, seeds=[0, 1],
               store=store, sampler_seed=0)
    study = res.study
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and len(done[0].values) == 2
    assert len(list_runs(store)) == 4
    for t in done:
        assert len(t.user_attrs["runs"]) == 2  # one run per seed, in the store
        vals = [load_run(r, store).val_metrics["click"]["auc"] for r in t.user_attrs["runs"]]
        assert t.values[0] == pytest.approx(sum(vals) / 2)
        assert load_run(t.user_attrs["runs"][0], store).config.weights["click"] == pytest.approx(t.params["weights.click"])
    assert res.storage.endswith(".journal") and str(store) in res.storage  # the run store holds the study


def test_single_objective_uses_tpe_and_prunes_on_the_validation_curve(store):
    cfg = tiny_cfg("shared-bottom", epochs=3)
    res = tune(cfg, ["click/auc"], [parse_space("lr=0.0001:0.03:log")], 6, seeds=[0], store=store, sampler_seed=1)
    assert isinstance(res.study.sampler, optuna.samplers.TPESampler)
    states = [t.state for t in res.study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) + states.count(optuna.trial.TrialState.PRUNED) == 6
    counted = [t for t in res.study.trials if t.state != optuna.trial.TrialState.FAIL]  # FAIL: a diverged lr
    assert all(len(t.intermediate_values) >= 1 for t in counted)  # each reported its validation curve per epoch
    for t in res.study.trials:
        if t.state == optuna.trial.TrialState.PRUNED:
            assert max(t.intermediate_values) < 3  # stopped before its last epoch


def test_two_worker_processes_share_one_study(tmp_path, store):
    cfgf = tmp_path / "cfg.json"
    cfgf.write_text(tiny_cfg("shared-bottom", epochs=1).to_json())
    cmd = [sys.executable, "-m", "mtrlib", "tune", "--config", str(cfgf), "--objective", "click/auc",
           "--objective", "like/auc", "--space", "weights.click=0.25:4:log", "--trials", "6", "--store", str(store),
           "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outs = [w.communicate(timeout=600) for w in workers]
    for w, (out, err) in zip(workers, outs):
        assert w.returncode == 0, err
    res = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert res[0]["study"] == res[1]["study"] and res[0]["storage"] == res[1]["storage"]
    study = optuna.load_study(study_name=res[0]["study"],
                              storage=optuna.storages.JournalStorage(
                                  optuna.storages.journal.JournalFileBackend(res[0]["storage"])))
    n = len(study.trials)
    assert 6 <= n <= 7  # both may ask for the sixth at once
    assert res[0]["trials_here"] + res[1]["trials_here"] == n
    assert min(r["trials_here"] for r in res) >= 1  # both workers ran trials of the one study
    assert len({t.number for t in study.trials}) == n


def test_bad_tune_input_is_a_message_not_a_traceback(tmp_path, store, capsys):
    from mtrlib.__main__ import main
    rc = main(["tune", "--objective", "click/auc", "--space", "lr=0.1:0.01", "--trials", "2", "--store", str(store)])
    err = capsys.readouterr().err
    assert rc == 2 and "LOW must be below HIGH" in err and "Traceback" not in err


def test_a_stored_study_gives_its_points_for_matching_axes_only(store):
    from mtrlib.experiments.tune import stored_studies, study_front_points

    cfg = tiny_cfg("shared-bottom", epochs=1, data={"tasks": ["click=click", "like=like|click"]})
    res = tune(cfg, ["click/auc", "like/auc"], [parse_space("weights.click=0.25:4:log")], 2, seeds=[0], store=store,
               sampler_seed=0)
    (journal,) = stored_studies(store)
    pts = study_front_points(journal, ["click/auc", "like/auc"])
    assert pts == [tuple(t.user_attrs["test"]) for t in res.study.trials]
    assert study_front_points(journal, ["like/auc", "click/auc"]) is None


def test_sweep_page_tune_mode_runs_a_study_in_the_background(store):
    from _mtr import PAGES, app_test

    at = app_test(tiny_cfg("shared-bottom", world=PAGES, epochs=1), "pages/sweep.py")
    at.radio(key="s_mode").set_value("Tune (Optuna)").run()
    assert not at.exception
    at.number_input(key="t_trials").set_value(2)
    at.number_input(key="t_seeds").set_value(1)
    at.button(key="t_run").click().run()
    job = at.session_state["tune_job"]
    assert job.join(600) and job.error is None, job.error
    assert len(job.trials) == 2 and len(job.result.study.trials) == 2
    at.run()
    assert not at.exception
    assert len(at.dataframe[-1].value) == 2  # one row per trial: setting and both objectives
