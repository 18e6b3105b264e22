"""Experiments (mtrlib.experiments, mtrlib.experiments.pareto): seeds and CIs against scipy, settings keys,
groups in the run store, Pareto fronts and hypervolume, and sweeps (limiter, resume, stop)."""
from __future__ import annotations

import itertools
import json
import math
import threading

import numpy as np
import pytest
from scipy import stats as sps

from mtrlib.errors import ConfigError
from mtrlib.experiments import pareto
from mtrlib.errors import UserError
from mtrlib.experiments import Sweep, compare, experiments, parse_grid, run_sweep, summarise, summary_json
from mtrlib.experiments.settings import apply, flatten, parse_seeds, ratio_axis, resolve, with_overrides
from mtrlib.jobs import JobLimiter
from mtrlib.runs import list_runs, read_meta

from _mtr import tiny_cfg

pytestmark = pytest.mark.usefixtures("one_thread")


# -- the statistics ---------------------------------------------------------------------------------------

def test_summary_over_seeds_is_scipys_t_interval():
    per_seed = {0: {"click": {"auc": 0.71}}, 1: {"click": {"auc": 0.74}}, 2: {"click": {"auc": 0.69}},
                5: {"click": {"auc": 0.75}}}
    vals = [0.71, 0.74, 0.69, 0.75]
    lo, hi = sps.t.interval(0.95, len(vals) - 1, loc=np.mean(vals), scale=sps.sem(vals))
    e = summarise(per_seed)["click"]["auc"]
    assert e.n == 4 and e.mean == pytest.approx(np.mean(vals)) and e.ci95 == pytest.approx((hi - lo) / 2)
    j = summary_json(summarise(per_seed))
    assert set(j["click"]["auc"]) == {"mean", "ci95", "n"}


def test_paired_comparison_is_scipys_paired_t_interval():
    a = {s: {"click": {"auc": v, "logloss": 0.5 + v / 10}} for s, v in zip(range(5), [0.70, 0.72, 0.69, 0.74, 0.71])}
    b = {s: {"click": {"auc": v + d, "logloss": 0.5 + v / 10 - d}} for (s, v), d in
         zip(zip(range(5), [0.70, 0.72, 0.69, 0.74, 0.71]), [0.011, 0.008, 0.013, 0.009, 0.012])}
    diffs, common = compare(a, b)
    assert common == [0, 1, 2, 3, 4]
    auc = next(d for d in diffs if d.metric == "auc")
    xa, xb = [a[s]["click"]["auc"] for s in common], [b[s]["click"]["auc"] for s in common]
    ci = sps.ttest_rel(xb, xa).confidence_interval(0.95)
    assert auc.diff.low == pytest.approx(ci.low) and auc.diff.high == pytest.approx(ci.high)
    assert auc.verdict == "better"
    loss = next(d for d in diffs if d.metric == "logloss")
    assert loss.diff.mean < 0 and loss.verdict == "better"  # lower logloss is better


def test_comparison_without_common_seeds_claims_nothing():
    a = {0: {"click": {"auc": 0.7}}, 1: {"click": {"auc": 0.72}}}
    b = {2: {"click": {"auc": 0.8}}, 3: {"click": {"auc": 0.82}}}
    diffs, common = compare(a, b)
    assert common == [] and diffs[0].diff is None and "same" in diffs[0].verdict


# -- settings keys ----------------------------------------------------------------------------------------------

def test_keys_name_real_config_fields():
    assert resolve("arch").path == "model.arch" and resolve("rho").path == "data.world.correlation"
    assert resolve("correlation").path == "data.world.correlation" and resolve("lr").path == "lr"
    assert resolve("n-experts").path == "model.options.n_experts" and resolve("world.n_users").path == "data.world.n_users"
    assert resolve("weights.like").path == "weights.like"
    cfg = apply(tiny_cfg(), {"arch": "ple", "weights.like": "2", "rho": "-0.5", "experts": "32/16", "emb_dim": "8"})
    assert (cfg.model.arch, cfg.weights, cfg.data.world.correlation, cfg.model.experts, cfg.model.emb_dim) == (
        "ple", {"like": 2.0}, -0.5, [32, 16], 8)


@pytest.mark.parametrize("spec, says", [("color=red", "Unknown setting 'color'"), ("seed=1,2", "--seeds"),
                                        ("lr=fast", "not a valid value for lr"), ("lr", "KEY=V1,V2"),
                                        ("weights.click,weights.like=1:8,2", "one value per key"),
                                        ("epochs=2,2", "repeats a value")])
def test_bad_grids_are_refused_with_the_fix(spec, says):
    with pytest.raises(UserError, match=says):
        parse_grid(spec)


def test_a_lesson_setting_this_version_lacks_is_refused_not_ignored():
    with pytest.raises(UserError, match="no_such_knob.*WorldConfig") as e:
        flatten({"world": {"no_such_knob": "all"}}, "Lesson 'conflict'")
    assert "n_users" in str(e.value)  # the fix lists the fields that exist
    cfg = with_overrides(tiny_cfg(), {"world": {"correlation": 0.9}, "model": {"arch": "single"}, "epochs": 3,
                                      "weights": {"like": 2}})
    assert (cfg.data.world.correlation, cfg.model.arch, cfg.epochs, cfg.weights) == (0.9, "single", 3, {"like": 2.0})


def test_linked_ratio_grid_and_seeds():
    ax = ratio_axis("click", "like", 7)
    assert ax.keys == ("weights.click", "weights.like") and len(ax.values) == 7
    ratios = [a / b for a, b in ax.values]
    assert ratios[0] == pytest.approx(1 / 8) and ratios[-1] == pytest.approx(8) and ratios[3] == 1
    assert np.allclose(np.diff(np.log(ratios)), np.log(8) / 3)  # a log grid
    assert parse_grid("weights.click,weights.like=1:8,8:1").values == ((1.0, 8.0), (8.0, 1.0))
    assert parse_seeds("1,2,3") == [1, 2, 3] and parse_seeds("3", start=5) == [5, 6, 7] and parse_seeds(repeat=2) == [0, 1]
    with pytest.raises(UserError):
        parse_seeds("1,1")


# -- Pareto fronts ---------------------------------------------------------------------------------------------

def _brute_hypervolume(points, ref, step=1e-3):
    """Area dominated above ref by counting grid cells (maximising both)."""
    pts = np.asarray(points)
    xs = np.arange(ref[0] + step / 2, pts[:, 0].max(), step)
    ys = np.arange(ref[1] + step / 2, pts[:, 1].max(), step)
    X, Y = np.meshgrid(xs, ys)
    covered = np.zeros_like(X, bool)
    for x, y in pts:
        covered |= (X <= x) & (Y <= y)
    return covered.sum() * step * step


def test_front_and_dominance():
    pts = [(0.70, 0.80), (0.75, 0.75), (0.72, 0.74), (0.80, 0.70), (0.60, 0.60), (0.80, 0.70), (math.nan, 0.9)]
    assert pareto.front(pts) == [0, 1, 3, 5]  # (0.72, 0.74) is beaten by (0.75, 0.75); NaN is never on it
    assert pareto.dominates((0.75, 0.75), (0.72, 0.74)) and not pareto.dominates((0.8, 0.7), (0.8, 0.7))
    # minimising the second metric (a loss) turns the front around
    assert pareto.front([(0.7, 0.5), (0.8, 0.6), (0.75, 0.4)], maximise=(True, False)) == [2, 1]


def test_hypervolume_matches_a_brute_force_count():
    rng = np.random.default_rng(0)
    for _ in range(3):
        pts = rng.uniform(0.55, 0.8, size=(6, 2))
        hv = pareto.hypervolume(pts, (0.5, 0.5))
        assert hv == pytest.approx(_brute_hypervolume(pts, (0.5, 0.5)), rel=2e-2)
    assert pareto.hypervolume([(3, 1), (2, 2), (1, 3)], (0, 0)) == pytest.approx(6.0)
    assert pareto.relative_hypervolume([(0.7, 0.7)], (0.7, 0.7), (0.5, 0.5)) == pytest.approx(1.0)
    assert pareto.relative_hypervolume([(0.8, 0.7), (0.7, 0.8)], (0.7, 0.7), (0.5, 0.5)) == pytest.approx(0.08 / 0.04)  # 0.06 + 0.06 - 0.04 overlap
    assert pareto.reference(("click/auc", "dwell/rmse"), [(0.7, 2.0), (0.8, 3.0)], (True, False)) == (0.5, 3.0)


# -- runs grouped as experiments ------------------------------------------------------------------------------

def _tiny(**kw):
    return tiny_cfg("shared-bottom", epochs=1, batch_size=256, data={"tasks": ["click=click", "like=like|click"]}, **kw)


def test_sweep_trains_groups_resumes_and_prints_the_issue_json(store):
    sweep = Sweep(_tiny(), [parse_grid("weights.click,weights.like=1:4,4:1")], [0, 1], corners=[{"arch": "single"}])
    res = run_sweep(sweep, store=store)
    assert res.complete and len(res.cells) == 6 and not any(c.reused for c in res.cells)
    out = json.loads(json.dumps(res.to_json()))
    assert {"configs", "pareto", "x", "y", "hypervolume"} <= set(out) and (out["x"], out["y"]) == ("click/auc", "like/auc")
    assert [c["settings"] for c in out["configs"]] == [{"weights.click": 1.0, "weights.like": 4.0},
                                                       {"weights.click": 4.0, "weights.like": 1.0}]
    for c in out["configs"]:
        assert c["summary"]["click"]["auc"]["n"] == 2 and set(c["summary"]["like"]["auc"]) == {"mean", "ci95", "n"}
    assert out["pareto"] and set(out["pareto"]) <= {0, 1} and out["hypervolume"] > 0
    assert out["corners"][0]["settings"] == {"arch": "single"} and out["relative_hypervolume"] > 0
    # each run's meta holds its group; the two seeds of a setting share one, settings differ
    metas = [read_meta(store / c.run_id) for c in res.cells]
    by_config = {}
    for c, m in zip(res.cells, metas):
        by_config.setdefault(c.config, set()).add(m.group)
    assert all(len(g) == 1 for g in by_config.values()) and len({next(iter(g)) for g in by_config.values()}) == 3
    assert [m.group for m in metas] == [res.groups[c.config] for c in res.cells]
    exps = experiments(list_runs(store))
    assert sorted(e.n for e in exps) == [2, 2, 2] and all(e.seeds == [0, 1] for e in exps)
    # a rerun trains nothing: every run is found in the store
    again = run_sweep(sweep, store=store)
    assert all(c.reused for c in again.cells) and len(list_runs(store)) == 6
    assert again.to_json()["configs"] == res.to_json()["configs"]


def test_a_stopped_sweep_keeps_its_finished_runs_and_a_rerun_carries_on(store):
    sweep = Sweep(_tiny(), [parse_grid("lr=0.01,0.03")], [0, 1])
    stop = threading.Event()

    def after(progress, cell):
        if cell is not None and cell.status == "finished" and progress.done == 2:
            stop.set()  # after the second run

    res = run_sweep(sweep, store=store, stop=stop, on_progress=after)
    assert res.stopped and [c.status for c in res.cells] == ["finished", "finished", "pending", "pending"]
    assert len(list_runs(store)) == 2 and not res.complete
    assert res.summary(0)["click"]["auc"].n == 1  # seed-major: both settings have their first seed
    more = run_sweep(sweep, store=store)
    assert more.complete and [c.reused for c in more.cells] == [True, True, False, False]
    assert len(list_runs(store)) == 4


def test_sweeps_wait_for_the_job_limiter_and_hold_one_slot(store):
    limiter = JobLimiter(max_running=1, max_queued=0)
    limiter.enqueue("someone-else")  # the server's only slot is taken, and its queue is full
    seen = []

    def watch(progress, cell):
        seen.append((progress.state, limiter.counts()))
        if progress.state == "waiting" and len(seen) == 1:
            threading.Timer(0.5, limiter.release, args=("someone-else",)).start()

    res = run_sweep(Sweep(_tiny(), [], [0, 1]), store=store, limiter=limiter, on_progress=watch)
    assert res.complete and seen[0][0] == "waiting"
    assert all(running <= 1 for _, (running, _) in seen)
    assert limiter.counts() == (0, 0)  # every slot given back


def test_experiments_group_by_meta_and_old_runs_are_groups_of_one(store):
    run_sweep(Sweep(_tiny(), [], [0, 1]), store=store)
    run_sweep(Sweep(_tiny(), [], [1]), store=store, resume=False)  # seed 1 again: the same measurement
    folder = next(p for p in store.iterdir())
    meta = json.loads((folder / "meta.json").read_text())
    old = store / "old-run"
    old.mkdir()
    for f in folder.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    (old / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "group"} | {"id": "old-run"}))
    exps = experiments(list_runs(store))
    big = next(e for e in exps if e.n == 2)
    assert big.seeds == [0, 1] and big.left_out == 1  # the older run of seed 1 is not counted twice
    lone = next(e for e in exps if e.group == "old-run")
    assert lone.n == 1


def test_a_sweep_with_an_impossible_combination_fails_before_training(store):
    with pytest.raises(ConfigError, match="arch=nope"):
        run_sweep(Sweep(_tiny(), [parse_grid("arch=mmoe,nope")], [0]), store=store)
    assert list_runs(store) == []


def test_every_product_combination_once():
    sweep = Sweep(_tiny(), [parse_grid("arch=mmoe,ple"), parse_grid("lr=0.01,0.03,0.1")], [0, 1],
                  corners=[{"arch": "single"}])
    grid = [c.settings for c in sweep.configs() if c.role == "grid"]
    assert grid == [{"arch": a, "lr": lr} for a, lr in itertools.product(["mmoe", "ple"], [0.01, 0.03, 0.1])]
    corners = [c.settings for c in sweep.configs() if c.role == "corner"]
    assert corners == [{"lr": lr, "arch": "single"} for lr in [0.01, 0.03, 0.1]]  # one per value of a crossed axis
    assert sweep.total == 18


# -- the screenshot fixes (issue 15, section 5) ----------------------------------------------------------------

def test_test_metrics_table_cells_that_do_not_apply_are_empty_not_none():
    from mtrlib.viz.charts import metrics_table
    df = metrics_table([{"task": "click", "auc": 0.71234, "popularity auc": 0.5},
                        {"task": "dwell", "rmse": 2.0, "popularity rmse": None}])
    assert df.loc[1, "auc"] == "" and df.loc[1, "popularity rmse"] == "" and df.loc[0, "rmse"] == ""
    assert df.loc[0, "auc"] == "0.7123" and not df.isna().any().any()


def test_equal_task_weights_keep_every_line_visible_and_axes_fit_the_data():
    import pandas as pd
    from mtrlib.viz.charts import task_weights, tradeoff
    steps = pd.DataFrame({"epoch": [0.5, 1.0], **{f"weight/{t}": [1.0, 1.0] for t in ("click", "like", "dwell")}})
    fig = task_weights(steps, ["click", "like", "dwell"])
    assert len({tr.line.dash for tr in fig.data}) == 3 and len({tr.line.width for tr in fig.data}) == 3
    assert "overlap" in fig.layout.title.text
    apart = task_weights(steps.assign(**{"weight/like": [2.0, 2.0]}), ["click", "like", "dwell"])
    assert "overlap" in apart.layout.title.text and "like" not in apart.layout.title.text.split("overlap")[1]
    pts = pd.DataFrame({"run": ["a", "b"], "model": ["MMoE", "PLE"], "click auc": [0.74, 0.78], "like auc": [0.75, 0.77]})
    fig = tradeoff(pts, "click auc", "like auc")
    (x0, x1), (y0, y1) = fig.layout.xaxis.range, fig.layout.yaxis.range
    assert 0.7 < x0 < 0.74 and 0.78 < x1 < 0.8 and 0.7 < y0 < 0.75 and 0.77 < y1 < 0.8


def test_an_upload_is_named_by_its_layout_and_file():
    from mtrlib.data.dataset import upload_name
    assert upload_name("movielens-100k", "u.data") == "MovieLens 100K · u.data"
    assert upload_name("generic", "clicks.csv") == "Table · clicks.csv"


def test_overlaid_fronts_each_get_their_front_and_their_single_task_corner(store):
    sweep = Sweep(_tiny(), [ratio_axis("click", "like", 3), parse_grid("arch=shared-bottom,mmoe")], [0, 1],
                  corners=[{"arch": "single"}])
    res = run_sweep(sweep, store=store)
    groups = res.front_groups("click/auc", "like/auc", by=["arch"])
    assert [g["name"] for g in groups] == ["arch=shared-bottom", "arch=mmoe"]
    for g in groups:
        assert len(g["points"]) == 3 and g["front"] and set(g["front"]) <= {0, 1, 2}
        on = [g["points"][k] for k in g["front"]]
        off = [p for k, p in enumerate(g["points"]) if k not in g["front"]]
        for x, y, _ in off:  # each dominated point is beaten on both metrics by a front point
            assert any(fx.mean >= x.mean and fy.mean >= y.mean for fx, fy, _ in on)
        assert g["rhv"] == pytest.approx(pareto.relative_hypervolume(
            [(x.mean, y.mean) for x, y, _ in on], res.best_single("click/auc", "like/auc"), (0.5, 0.5)))


def test_a_world_setting_swept_on_your_own_files_is_refused(store, tmp_path):
    cfg = _tiny()
    cfg.data.source, cfg.data.files = "files", {"interactions": str(tmp_path / "never-read.csv")}
    with pytest.raises(ConfigError, match="changes the built-in world"):
        run_sweep(Sweep(cfg, [parse_grid("rho=0.9,0")], [0]), store=store)
