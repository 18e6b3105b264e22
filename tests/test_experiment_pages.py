"""Page tests (AppTest) of the experiment pages: Lessons (what the store holds is shown at once),
Sweep (a bad value is a message), Pareto (the run count), the Runs page's experiments and their
comparison, classroom mode on the Train page, and uploads named by layout and file."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mtrlib.experiments import Sweep, run_sweep
from mtrlib.experiments.lessons import get_lesson

from _mtr import PAGES, shown, tiny_cfg

ROOT = Path(__file__).resolve().parents[1]
ML = ROOT.parent / "shared" / "data" / "ml-latest-small"
pytestmark = pytest.mark.usefixtures("one_thread")


def app(cfg=None, page: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if cfg is not None:
        at.session_state["cfg"] = cfg
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _tiny(**kw):
    return tiny_cfg("shared-bottom", world=PAGES, epochs=1, batch_size=256,
                    data={"tasks": ["click=click", "like=like|click"]}, **kw)


def test_lessons_page_shows_what_the_store_holds_with_its_figure(store):
    lesson = get_lesson("funnel")
    run_sweep(lesson.sweep(quick=True), store=store)  # someone ran the quick funnel before
    at = app(page="pages/lessons.py")
    at.segmented_control(key="l_lesson").set_value("funnel").run()
    at.toggle(key="l_quick").set_value(True).run()
    assert not at.exception
    assert any("A like can only follow a click" in shown(m.value) for m in at.markdown)
    assert len(at.get("plotly_chart")) == 1  # the figure, without pressing the button
    verdict = [shown(x.value) for x in list(at.success) + list(at.info) + list(at.warning)]
    assert any(v.startswith(("It holds", "It did not hold")) for v in verdict), verdict
    assert any("ESMM" in shown(m.value) and "SIGIR 2018" in shown(m.value) for m in at.markdown)


def test_lessons_page_before_any_run_offers_the_button(store):
    at = app(page="pages/lessons.py")
    assert at.button(key="l_run").label == "Run this lesson" and not at.get("plotly_chart")
    assert any("Press" in shown(i.value) for i in at.info)


def test_sweep_page_counts_runs_and_refuses_a_bad_value(store):
    at = app(_tiny(), "pages/sweep.py")
    assert any("runs" in shown(c.value) and "×" in c.value for c in at.caption)
    key = at.selectbox(key="s_key_0").value
    at.text_input(key=f"s_vals_0_{key}").set_value("mmoe, nope").run()
    assert not at.exception
    assert any("nope" in shown(e.value) for e in at.error)
    assert at.button(key="s_run").disabled


def test_pareto_page_builds_the_ratio_grid_with_a_single_task_corner(store):
    at = app(_tiny(), "pages/pareto.py")
    assert any("7 weighted setups + 1 single-task reference × 3 seeds = 24 runs" in shown(c.value).replace("*", "") for c in at.caption)
    at.multiselect(key="p_archs").set_value(["shared-bottom", "mmoe"]).run()
    assert any("14 weighted setups + 1 single-task reference × 3 seeds = 45 runs" in shown(c.value).replace("*", "") for c in at.caption)


def test_runs_page_groups_seeds_and_compares_two_experiments(store):
    run_sweep(Sweep(_tiny(), [], [0, 1]), store=store)
    run_sweep(Sweep(_tiny(lr=0.03), [], [0, 1]), store=store)
    at = app(page="pages/runs.py")
    assert any("Experiments" in h.value for h in at.subheader)
    tables = [d.value for d in at.dataframe]
    exps = next(t for t in tables if "seed list" in t.columns)
    assert len(exps) == 2 and list(exps["seeds"]) == [2, 2] and all("±" in v for v in exps["click auc"])
    cmp = next(t for t in tables if "verdict for B" in t.columns)
    assert set(cmp["task"]) == {"click", "like"} and cmp["verdict for B"].isin(["better", "worse", "within noise"]).all()
    assert any("paired over 2 seeds" in shown(m.value) for m in at.markdown)


def test_classroom_mode_hides_the_expert_only_controls(store):
    expert = app(_tiny(), "pages/train.py")
    keys = {w.key for w in expert.selectbox} | {w.key for w in expert.select_slider}
    assert {"t_opt", "t_bs", "t_device", "t_lr"} <= keys
    room = app(_tiny(), "pages/train.py", classroom=True)
    keys = {w.key for w in room.selectbox} | {w.key for w in room.select_slider} | {w.key for w in room.number_input}
    assert not {"t_opt", "t_bs", "t_device", "t_lr", "t_wd", "t_seed", "t_emb"} & keys
    assert {"t_arch", "t_weighting", "t_epochs"} <= keys | {w.key for w in room.radio}
    assert room.session_state["cfg"].optimizer == "adam"  # hidden, not lost


@pytest.mark.skipif(not ML.exists(), reason="../shared/data/ml-latest-small is not beside the repo")
def test_an_upload_is_named_by_its_layout_and_file(store):
    at = app()
    at.segmented_control(key="d_source").set_value("Upload files").run()
    ratings = b"".join((ML / "ratings.csv").read_bytes().splitlines(keepends=True)[:2001])
    up = [u for u in at.get("file_uploader") if u.key == "up_interactions"][0]
    up.set_value(("ratings.csv", ratings, "text/csv"))
    at.run()
    at.switch_page("pages/train.py").run()
    assert any("MovieLens · ratings.csv" in shown(c.value).replace("*", "") for c in at.caption), [c.value for c in at.caption]
