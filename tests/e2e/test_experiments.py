"""Real-browser journeys of issue 15: the Pareto front, the four lessons (each from its shared
address, at its quick size), a sweep stopped half-way, repeats with seeds, classroom mode and the
screenshot fixes. Each checks what the chart really drew: its points and their error bars."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .helpers import T_IDLE, go, grid_rows, main, no_traceback, open_app, plot_traces, poll, snap, wait_idle

pytestmark = pytest.mark.e2e

TINY = "users=300&items=60&imp=20&epochs=2"
T_LESSON = 420  # s: a quick lesson on a busy 2-core machine


def button(page: Page, name: str):
    return main(page).get_by_role("button", name=name, exact=True)


def wait_done(page: Page, timeout: float = T_LESSON) -> str:
    """Wait for the experiment's end (its success / info / warning box); returns its text."""
    box = main(page).locator("[data-testid='stAlertContentSuccess'], [data-testid='stAlertContentInfo'], "
                             "[data-testid='stAlertContentWarning']").filter(
        has_text=re.compile(r"It holds|It did not hold|Finished:|Stopped:"))
    expect(box.first).to_be_visible(timeout=timeout * 1000)
    wait_idle(page)
    no_traceback(page)
    return box.first.inner_text()


def keyed_rows(page: Page, key: str) -> list[dict]:
    """The rows of the st.dataframe with this key (scrolled into view: the grid draws only what shows)."""
    frame = page.locator(f".st-key-{key} [data-testid='stDataFrame']").first
    frame.scroll_into_view_if_needed()
    expect(frame.locator("table[role='grid'] tbody tr").first).to_be_attached(timeout=T_IDLE)
    return grid_rows(frame)


def number(page: Page, label: str, value: int) -> None:
    box = main(page).get_by_test_id("stNumberInput").filter(has_text=label).locator("input")
    box.fill(str(value))
    box.press("Enter")
    wait_idle(page)


def toggle(page: Page, label: str) -> None:
    main(page).get_by_test_id("stCheckbox").filter(has_text=label).locator("label").first.click()
    wait_idle(page)


def with_intervals(traces: list[dict], *, both: bool = False) -> list[dict]:
    """Traces with a point per x and an error bar per point (in y, and in x too with `both`)."""
    out = []
    for tr in traces:
        if not tr["x"] or tr["error_y"] is None or (both and tr["error_x"] is None):
            continue
        for bars in (tr["error_y"], tr["error_x"]) if both else (tr["error_y"],):
            assert len(bars) == len(tr["x"]), tr
            assert all(math.isfinite(b) and b > 0 for b in bars), f"an error bar of {tr['name']} is not > 0: {bars}"
        out.append(tr)
    return out


def _lesson(page: Page, app_url: str, name: str) -> list[dict]:
    open_app(page, app_url, f"/lessons?lesson={name}")
    expect(main(page).get_by_role("heading", level=2).first).to_be_visible()
    toggle(page, "Quick version")
    button(page, "Run this lesson").click()
    wait_done(page)
    verdict = main(page).locator("[data-testid='stAlertContentSuccess'], [data-testid='stAlertContentInfo'], "
                                 "[data-testid='stAlertContentWarning']").filter(has_text=re.compile(r"It (holds|did not)"))
    expect(verdict.first).to_be_visible(timeout=T_IDLE)
    text = verdict.first.inner_text()
    assert f"lesson={name}" in page.url, page.url  # the address shares this lesson
    return text


# -- the Pareto page --------------------------------------------------------------------------------------------
def test_pareto_front_of_task_weights_with_error_bars(app_url, page):
    open_app(page, app_url, f"/pareto?{TINY}")
    number(page, "Seeds", 2)
    expect(main(page).get_by_text(re.compile(r"7 weighted setups \+ 1 single-task reference × 2 seeds = 16 runs"))
           ).to_be_visible()
    button(page, "Run the front").click()
    wait_done(page)
    traces = poll(lambda: plot_traces(page, "Task-weight front"), 30, what="the front chart")
    points = with_intervals([t for t in traces if (t["meta"] or {}).get("role") in ("front", "dominated")], both=True)
    assert sum(len(t["x"]) for t in points) == 7, traces  # one point per ratio, 1:8 ... 8:1
    front = [t for t in points if t["meta"]["role"] == "front"]
    dominated = [t for t in points if t["meta"]["role"] == "dominated"]
    assert front and all(t["colour"] == "#b8b8b8" for t in dominated)  # dominated ones greyed
    corner = [t for t in traces if (t["meta"] or {}).get("role") == "corner"]
    assert len(corner) == 1 and len(corner[0]["x"]) == 1  # the best single-task pair
    if sum(len(t["x"]) for t in front) >= 2:
        assert any((t["meta"] or {}).get("role") == "front-line" for t in traces)  # the front joined
    assert any("hypervolume" in (t["name"] or "") for t in front)
    rows = keyed_rows(page, "p_table")
    assert rows and re.match(r"^\d", rows[0]["ratios on the front"]), rows
    snap(page, "pareto")


# -- the four lessons -----------------------------------------------------------------------------------------------
def test_lesson_conflict_gain_against_rho(app_url, page):
    _lesson(page, app_url, "conflict")
    lines = poll(lambda: with_intervals(plot_traces(page, "When tasks conflict")), 30, what="the gain chart")
    assert len(lines) >= 3 and all(len(t["x"]) == 3 for t in lines), lines  # every model at ρ = 0.9, 0, -0.9
    assert any(t["name"].startswith("mean") for t in lines)
    table = keyed_rows(page, "l_table_conflict")
    assert any("±" in r["gain"] for r in table), table
    snap(page, "lesson-conflict")


def test_lesson_seesaw_front(app_url, page):
    _lesson(page, app_url, "seesaw")
    traces = poll(lambda: plot_traces(page, "The seesaw"), 30, what="the front chart")
    points = with_intervals([t for t in traces if (t["meta"] or {}).get("role") in ("front", "dominated")], both=True)
    assert sum(len(t["x"]) for t in points) == 7
    assert any((t["meta"] or {}).get("role") == "corner" for t in traces)
    expect(main(page).get_by_text(re.compile(r"relative to the best single-task pair: \d"))).to_be_visible()
    snap(page, "lesson-seesaw")


def test_lesson_funnel_bars(app_url, page):
    _lesson(page, app_url, "funnel")
    bars = poll(lambda: with_intervals([t for t in plot_traces(page, "Funnels") if t["type"] == "bar"]), 30,
                what="the bars")
    assert len(bars) == 2 and all(t["x"] == ["naive CVR (single-task)", "ESMM"] for t in bars), bars
    snap(page, "lesson-funnel")


def test_lesson_cold_text_bars(app_url, page):
    _lesson(page, app_url, "cold-text")
    bars = poll(lambda: with_intervals([t for t in plot_traces(page, "cold items") if t["type"] == "bar"]), 30,
                what="the bars")
    assert bars and all(len(t["x"]) == 4 and t["x"][0] == "ids only" for t in bars), bars
    snap(page, "lesson-cold-text")


# -- a sweep, stopped half-way -----------------------------------------------------------------------------------------
def _metas(run_store: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in run_store.glob("*/meta.json")]


def test_sweep_runs_in_the_background_and_a_stop_keeps_finished_runs(app_url, page, run_store):
    open_app(page, app_url, f"/sweep?{TINY}")
    m = main(page)
    m.get_by_role("combobox", name="Setting 1").click()
    page.get_by_role("option", name="lr", exact=True).click()
    wait_idle(page)
    values = m.get_by_test_id("stTextInput").filter(has_text="Values of lr").locator("input")
    values.fill("0.002, 0.005, 0.01, 0.02, 0.05")
    values.press("Enter")
    wait_idle(page)
    number(page, "Seeds per combination", 3)
    expect(m.get_by_text(re.compile(r"5 combinations × 3 seeds = 15 runs"))).to_be_visible()
    button(page, "Run the sweep").click()
    bar = m.get_by_test_id("stProgress")
    poll(lambda: bar.count() and re.search(r"run ([3-9]|1\d) of 15", bar.first.inner_text()), 240,
         what="the sweep to reach its third run")
    assert re.search(r"(about \d+ (s|min) left|estimating)", bar.first.inner_text()), bar.first.inner_text()
    button(page, "Stop").click()
    text = wait_done(page, 60)
    assert text.startswith("Stopped"), text
    mine = [x for x in _metas(run_store) if str(x.get("name", "")).startswith("sweep · lr=")]
    finished = [x for x in mine if x["status"] == "finished"]
    assert 2 <= len(finished) < 15, [(x["name"], x["status"]) for x in mine]  # kept, and the sweep did stop
    assert all(x.get("group") for x in finished)
    # the kept runs show: their combinations with mean ± CI (or one seed), and the front of two metrics
    points = poll(lambda: [t for t in plot_traces(page, "Sweep:") if (t["meta"] or {}).get("role") in
                           ("front", "dominated")], 30, what="the sweep's chart")
    assert sum(len(t["x"]) for t in points) >= 2  # every combination with a finished run
    snap(page, "sweep")


# -- repeats, classroom mode and the screenshot fixes ----------------------------------------------------------------------
def test_repeat_with_seeds_classroom_mode_and_the_train_page_fixes(app_url, page):
    open_app(page, app_url, f"/train?{TINY}&class=1")
    m = main(page)
    # classroom mode: expert-only controls hidden, charts enlarged
    expect(m.get_by_text("Architecture", exact=True)).to_be_visible()
    for label in ("Optimiser", "Batch size", "Weight decay (L2)", "Device"):
        expect(m.get_by_text(label, exact=True)).to_have_count(0)
    height = poll(lambda: page.evaluate("""() => { for (const el of document.querySelectorAll('.js-plotly-plot'))
        if (el.layout && String(el.layout.title.text || '').replace(/<[^>]*>/g, '').endsWith(' network'))
            return el.layout.height; return 0; }"""),
                  30, what="the network diagram")
    assert height > 400, height  # 340 px outside classroom mode
    m.get_by_role("button", name="Train", exact=True).click()
    expect(m.get_by_test_id("stAlertContentSuccess")).to_contain_text("Finished", timeout=120_000)
    wait_idle(page)
    rows = keyed_rows(page, "t_metrics")  # (its empty cells are checked in tests/test_experiments.py: the
    assert {r["task"] for r in rows} == {"click", "like", "dwell"}  # grid draws a missing number on a canvas)
    # equal task weights: every task's line stays visible (its own dash), and the title says why
    weights = plot_traces(page, "Effective task weights")
    assert len({t["dash"] for t in weights}) == len(weights) == 3, weights
    snap(page, "train-classroom")

    # repeat the setup with 2 seeds: one experiment, mean ± CI
    page.set_viewport_size({"width": 1400, "height": 1000})
    m.get_by_text("Repeat with N seeds (mean ± 95% CI)").click()
    number(page, "Repeat with N seeds", 2)
    button(page, "Train 2 seeds").click()
    wait_done(page, 240)
    cells = keyed_rows(page, "t_repeat_table")
    assert cells and "±" in cells[0].get("click auc", "") and cells[0].get("seeds") == "2", cells
    go(page, "Runs & curves")
    exps = keyed_rows(page, "x_exps")
    assert any(r.get("seeds") == "2" and "±" in r.get("click auc", "") for r in exps), exps

    # the Recommend page's top-K table has the room it needs: the page's full width
    go(page, "Recommend")
    widths = page.evaluate("""() => { const main = document.querySelector('[data-testid=stMain] [data-testid=stMainBlockContainer]');
        const cs = getComputedStyle(main), t = document.querySelector('[data-testid=stMain] [data-testid=stDataFrame]');
        return [main.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight), t.getBoundingClientRect().width]; }""")
    assert widths[1] > 0.95 * widths[0], widths  # side by side it had half of it
    no_traceback(page)
