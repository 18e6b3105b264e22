"""Real-browser journeys (issue 6): the app as a new user meets it, in headless Chromium.

Each journey is its own test and opens its own browser context (a new user with a new
Streamlit session) against one live server with a temporary run store. Worlds are small and
epochs few so the suite stays within a few minutes on 2 cores; journey 1 keeps the defaults
because "click Train with defaults" is the point. Screenshots of every page are written to
test-artifacts/ along the way (data, train, runs, embeddings, recommend, plus the error state).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Page, expect

from .helpers import (T_IDLE, T_TRAIN, go, grid_rows, main, no_traceback, open_app, plot_points, plot_titles, poll,
                      snap, wait_idle)

pytestmark = pytest.mark.e2e

ML = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-latest-small"
SMALL = "users=300&items=60&imp=20"  # a world that trains in a second or two per epoch


# -- small page-level helpers --------------------------------------------------------------------------
def train_button(page: Page):
    return main(page).get_by_role("button", name="Train", exact=True)


def stop_button(page: Page):
    return main(page).get_by_role("button", name="Stop", exact=True)


def progress_text(page: Page) -> str:
    bars = main(page).get_by_test_id("stProgress")
    return bars.first.inner_text() if bars.count() else ""


def wait_finished(page: Page, timeout: float = T_TRAIN) -> None:
    expect(main(page).get_by_test_id("stAlertContentSuccess")).to_contain_text("Finished", timeout=timeout)
    expect(train_button(page)).to_be_enabled(timeout=T_IDLE)  # the live timer was switched off
    no_traceback(page)


def runs_table(page: Page) -> list[dict]:
    """The rows of the runs table, read on the Runs page (newest first)."""
    go(page, "Runs & curves")
    frame = main(page).get_by_test_id("stDataFrame").first
    expect(frame.locator("table[role='grid'] tbody tr").first).to_be_attached(timeout=T_IDLE)
    return grid_rows(frame)


def slider(page: Page, label: str):
    return main(page).get_by_test_id("stSlider").filter(has_text=label)


def slider_value(page: Page, label: str) -> float:
    return float(slider(page, label).get_by_role("slider").input_value())


def network_title(page: Page) -> str:
    """Title of the network diagram on the Train page, e.g. 'PLE / CGC network'."""
    return poll(lambda: next((t for t in plot_titles(page) if t.endswith(" network")), ""), T_IDLE / 1000,
                what="the network diagram")


def upload(page: Page, label: str, files) -> None:
    main(page).get_by_test_id("stFileUploader").filter(has_text=label).locator("input[type=file]").set_input_files(files)
    wait_idle(page)


def use_uploads(page: Page) -> None:
    main(page).get_by_role("radio", name="Upload files").click()
    expect(main(page).get_by_test_id("stFileUploader")).to_have_count(3, timeout=T_IDLE)
    wait_idle(page)


def top_titles(page: Page) -> list[str]:
    """Titles in the left-hand top-K table of the Recommend page, in rank order."""
    table = main(page).get_by_test_id("stDataFrame").first
    expect(table.locator("table[role='grid'] tbody tr").first).to_be_attached(timeout=T_IDLE)
    return [r.get("title", "") for r in grid_rows(table)]


# -- 0 ---------------------------------------------------------------------------------------------------
def test_first_visit_of_a_fresh_server_by_page_link_gets_the_whole_app(first_visit):
    """A bookmarked or shared page link must not land in Streamlit's legacy pages/ mode: the app's
    own navigation (titles, not file names such as the helper module _shared) and its sidebar."""
    assert first_visit["url"].endswith("/runs"), first_visit
    assert first_visit["heading"] == "Runs & curves", first_visit
    nav = first_visit["nav"].splitlines()
    assert "Runs & curves" in nav and "Data" in nav, nav
    assert not {"app", "shared", "runs", "data"} & set(nav), f"legacy file-name navigation: {nav}"


# -- 1 ---------------------------------------------------------------------------------------------------
def test_journey1_cold_start_train_defaults_live_curves(app_url, page):
    open_app(page, app_url, "/")
    # the built-in world is shown at once
    expect(main(page).get_by_role("heading", name="Data", level=1)).to_be_visible()
    # (the world is generated on the first visit: its metrics follow the heading)
    expect(main(page).get_by_test_id("stMetric").filter(has_text="Layout")).to_contain_text("World", timeout=T_IDLE)
    expect(main(page).get_by_test_id("stMetric").filter(has_text="Interactions")).to_contain_text("60,000")
    expect(main(page).get_by_role("radio", name="Built-in world")).to_be_checked()

    go(page, "Train")
    expect(main(page).get_by_text("Press Train to start")).to_be_visible()
    t0 = time.monotonic()
    train_button(page).click()
    expect(stop_button(page)).to_be_enabled(timeout=T_IDLE)

    # live curves appear, then grow between two looks, both taken while the job still runs
    def look() -> tuple[int, bool]:
        return plot_points(page, "Training loss per task"), bool(progress_text(page))

    first, _ = poll(lambda: (lk := look())[0] > 0 and lk[1] and lk, 90,
                    what="the loss chart's first points while training")
    grown, _ = poll(lambda: (lk := look())[0] > first and lk[1] and lk, 60,
                    what=f"the loss chart to grow beyond {first} points while training")
    assert grown > first
    # the gradient-conflict chart is live too: its cosines appear while the job still runs
    poll(lambda: plot_points(page, "Gradient conflict") > 0 and progress_text(page), 90,
         what="the gradient-conflict chart's first points while training")

    wait_finished(page)
    # 8 epochs x 47 steps; fixed weights with 3 tasks are measured every 2 (T-1) x 10 = 40 steps and
    # at least once an epoch (mtrlib.train.telemetry.cadence): 8+ cosines per (group, task pair), 2 groups x 3 pairs
    assert plot_points(page, "Gradient conflict") >= 6 * 8
    elapsed = time.monotonic() - t0
    titles = plot_titles(page)
    assert any("Validation AUC per task" in t for t in titles), titles
    expect(main(page).get_by_text("Test metrics")).to_be_visible()
    print(f"default world: Train click -> finished in {elapsed:.1f} s")
    snap(page, "train")

    rows = runs_table(page)
    assert rows and rows[0]["arch"] == "MMoE" and rows[0]["status"] == "finished", rows
    assert rows[0]["tasks"] == "click,like,dwell"
    no_traceback(page)


# -- 2 ---------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not (ML / "ratings.csv").exists(), reason=f"MovieLens not found at {ML}")
def test_journey2_movielens_upload_train_embeddings_recommend(app_url, page):
    open_app(page, app_url, "/?epochs=1")
    use_uploads(page)
    upload(page, "Interactions", str(ML / "ratings.csv"))
    upload(page, "Items", str(ML / "movies.csv"))

    m = main(page)
    expect(m.get_by_test_id("stMetric").filter(has_text="Layout")).to_contain_text("MovieLens", timeout=T_IDLE)
    expect(m.get_by_test_id("stMetric").filter(has_text="Interactions")).to_contain_text("100,836")
    # the tasks watched=implicit and liked=rating>=4 are defined (editor rows + the CLI line)
    editor = m.get_by_test_id("stDataFrame").filter(has=page.locator("th", has_text="observed only where")).first
    rows = grid_rows(editor)
    assert {(r["name"], r["kind"], r["column"], r["op"], r["threshold"]) for r in rows} == {
        ("watched", "implicit", "", "", ""), ("liked", "threshold", "rating", ">=", "4")}, rows
    expect(m.get_by_test_id("stCode").filter(has_text="--task watched=implicit")).to_contain_text(
        "--task liked=rating>=4")
    no_traceback(page)
    snap(page, "data")
    page.set_viewport_size({"width": 1400, "height": 1000})

    go(page, "Train")
    expect(m.get_by_text(re.compile(r"tasks: .*watched=implicit.*liked=rating>=4"))).to_be_visible()
    expect(m.get_by_role("radio", name="MMoE")).to_be_checked()
    epochs = m.get_by_test_id("stNumberInput").filter(has_text="Epochs").locator("input")
    expect(epochs).to_have_value("1")
    train_button(page).click()
    wait_finished(page, timeout=240_000)

    go(page, "Embeddings")  # its default view: each item as the network reads it (id + side features)
    expect(m.get_by_role("combobox", name="Colour by")).to_have_value(re.compile("genre"), timeout=T_IDLE)
    traces = poll(lambda: page.evaluate(
        """() => { for (const el of document.querySelectorAll('.js-plotly-plot')) {
                     const t = String(el.layout && el.layout.title ? el.layout.title.text : '');
                     if (t.includes('Items as the network reads them')) return (el._fullData || []).map(d => d.name); }
                   return null; }"""), T_IDLE / 1000, what="the item projection")
    assert {"Drama", "Comedy", "Action"} <= set(traces) and len(traces) >= 10, traces  # one colour per genre
    expect(m.get_by_test_id("stMetric").filter(has_text="kNN purity by genre")).to_be_visible()
    no_traceback(page)
    snap(page, "embeddings")
    page.set_viewport_size({"width": 1400, "height": 1000})

    go(page, "Recommend")
    search = m.get_by_label("Find a user (id)")
    search.fill("1")
    search.press("Enter")
    wait_idle(page)
    expect(m.get_by_role("combobox", name="User", exact=True)).to_have_value("1", timeout=T_IDLE)
    expect(m.get_by_text(re.compile(r"Top 10 for user\s*1\b"))).to_be_visible(timeout=T_IDLE)
    before = top_titles(page)
    titles = set(pd.read_csv(ML / "movies.csv")["title"].str.strip())
    assert len(before) == 10 and set(before) <= titles, before  # ten movie titles, not ids

    # move the 'liked' fusion slider to its maximum with the keyboard: the list re-ranks
    thumb = slider(page, "liked (log p)").get_by_role("slider")
    thumb.focus()
    thumb.press("End")
    expect(thumb).to_have_value("5", timeout=T_IDLE)
    wait_idle(page)
    after = poll(lambda: (t := top_titles(page)) != before and t, 30, what="the top-10 order to change")
    assert len(after) == 10 and set(after) <= titles, after
    no_traceback(page)
    snap(page, "recommend")


# -- 3 ---------------------------------------------------------------------------------------------------
def test_journey3_stop_a_long_training_keeps_the_partial_run(app_url, page):
    open_app(page, app_url, f"/?{SMALL}&arch=single&epochs=300")
    go(page, "Train")
    train_button(page).click()
    # wait until it really trains (progress with steps), then stop
    poll(lambda: "step" in progress_text(page) and plot_points(page, "Training loss per task") >= 2, 90,
         what="the long run to be training")
    t0 = time.monotonic()
    stop_button(page).click()
    expect(main(page).get_by_test_id("stAlertContentWarning")).to_contain_text("Stopped", timeout=15_000)
    print(f"Stop click -> 'stopped' shown in {time.monotonic() - t0:.1f} s")  # reported, not asserted
    expect(train_button(page)).to_be_enabled(timeout=T_IDLE)
    expect(stop_button(page)).to_be_disabled()
    no_traceback(page)

    rows = runs_table(page)
    stopped = [r for r in rows if r["arch"] == "Single-task" and r["status"] == "stopped"]
    assert stopped, rows
    assert int(stopped[0]["epochs"] or 0) < 300
    # the partial run is usable: its weights were kept (it is offered on the Embeddings page)
    go(page, "Embeddings")
    expect(main(page).get_by_role("combobox", name="Run", exact=True)).to_have_value(re.compile(r"Single-task.*stopped"),
                                                                                    timeout=T_IDLE)
    no_traceback(page)


# -- 4 ---------------------------------------------------------------------------------------------------
def test_journey4_broken_uploads_give_readable_errors(app_url, page, tmp_path):
    html = tmp_path / "ratings.csv"
    html.write_text("<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
                    "<body><h1>Please sign in</h1><p>Your session expired.</p></body></html>\n")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")

    # an earlier run, so we can see it survive the bad uploads
    open_app(page, app_url, "/?users=100&items=50&imp=10&arch=shared-bottom&epochs=1")
    go(page, "Train")
    train_button(page).click()
    wait_finished(page)
    earlier = runs_table(page)
    assert earlier

    go(page, "Data")
    use_uploads(page)
    m = main(page)
    for f, says in ((html, re.compile(r"web page|HTML", re.I)), (empty, re.compile(r"empty", re.I))):
        upload(page, "Interactions", str(f))
        err = m.get_by_test_id("stAlertContentError").first
        expect(err).to_contain_text(says, timeout=T_IDLE)  # this file's message, not the previous one
        text = err.inner_text()
        assert f.name in text and len(text.split()) >= 5, text  # names the file, in words
        assert "Traceback" not in text and 'File "' not in text
        no_traceback(page)
        if f is html:
            snap(page, "data-error")
            page.set_viewport_size({"width": 1400, "height": 1000})

    # the app keeps working: Train explains what is missing, the world comes back, runs are all there
    go(page, "Train")
    expect(m.get_by_test_id("stAlertContentError").first).to_be_visible()
    no_traceback(page)
    go(page, "Data")
    m.get_by_role("radio", name="Built-in world").click()
    expect(m.get_by_test_id("stMetric").filter(has_text="Layout")).to_contain_text("World", timeout=T_IDLE)
    after = runs_table(page)
    assert [r["name"] for r in after] == [r["name"] for r in earlier], (earlier, after)
    no_traceback(page)


# -- 5 ---------------------------------------------------------------------------------------------------
def _run_meta(run_store: Path) -> dict[str, dict]:
    """meta.json of every run in the store, by run id."""
    import json
    return {p.parent.name: json.loads(p.read_text()) for p in run_store.glob("*/meta.json")}


def test_journey5_two_users_train_at_once_each_sees_only_their_own_job(app_url, new_page, run_store):
    """Two sessions train at once. Both jobs are far too long to finish during the test (hundreds of
    epochs), so both are still training when the second one is seen training; then each user stops
    their own. That they overlapped is proven afterwards from what the run store recorded (each
    run's start and end times), never from a lucky moment on screen."""
    a, b = new_page(), new_page()
    # different architectures, world sizes and epoch counts, so each page can be told apart
    setups = {a: ("ple", "PLE / CGC", 300, "users=1000"), b: ("shared-bottom", "Shared-Bottom", 400, "users=1100")}
    before = set(_run_meta(run_store))
    for p, (arch, label, epochs, world) in setups.items():
        open_app(p, app_url, f"/?{world}&arch={arch}&epochs={epochs}")
        go(p, "Train")
        assert network_title(p) == f"{label} network"

    train_button(a).click()
    expect(stop_button(a)).to_be_enabled(timeout=T_IDLE)
    # user B sees nothing of A's job
    expect(main(b).get_by_text("Press Train to start")).to_be_visible()
    expect(stop_button(b)).to_be_disabled()
    expect(b.get_by_test_id("stSidebar")).not_to_contain_text("Your training job")
    train_button(b).click()

    # each page shows its own job training (its own epoch count), and only its own
    for p, (_, label, epochs, world) in setups.items():
        poll(lambda p=p, epochs=epochs: f"/ {epochs} " in progress_text(p), 90,
             what=f"the page's own job training (epoch x / {epochs})")
        assert network_title(p) == f"{label} network"
        expect(main(p).get_by_text(re.compile(rf"users={world.split('=')[1]}\b"))).to_be_visible()
        poll(lambda p=p: plot_points(p, "Training loss per task"), 60, what="the page's own loss curve")
    assert "/ 400 " not in progress_text(a) and "/ 300 " not in progress_text(b)  # not the other's job
    for p in (a, b):
        stop_button(p).click()
    for p in (a, b):
        expect(main(p).get_by_test_id("stAlertContentWarning")).to_contain_text("Stopped", timeout=30_000)
        expect(train_button(p)).to_be_enabled(timeout=T_IDLE)
        expect(p.get_by_test_id("stSidebar")).to_contain_text("stopped")

    # the run store's record: two new runs, each stopped early, whose training times overlap
    new = {k: m for k, m in _run_meta(run_store).items() if k not in before}
    assert sorted((m["arch"], m["status"]) for m in new.values()) == [("ple", "stopped"), ("shared-bottom", "stopped")], new
    ra, rb = (next(m for m in new.values() if m["arch"] == arch) for arch in ("ple", "shared-bottom"))
    for m, epochs in ((ra, 300), (rb, 400)):
        assert m["settings"]["epochs"] == epochs and m["epochs_done"] < epochs, m
        assert m["created"] < m["finished"], m
    assert ra["created"] < rb["finished"] and rb["created"] < ra["finished"], (
        f"the two runs did not overlap: A {ra['created']}..{ra['finished']}, B {rb['created']}..{rb['finished']}")
    rows = runs_table(a)
    mine = {(r["arch"], r["status"]) for r in rows[:2]}
    assert mine == {("PLE / CGC", "stopped"), ("Shared-Bottom", "stopped")}, rows
    no_traceback(a)
    snap(a, "runs")


# -- 6 ---------------------------------------------------------------------------------------------------
def test_journey6_shared_setup_url_is_restored(app_url, page):
    open_app(page, app_url, "/train?arch=ple&rho=-0.5&w.like=2")
    m = main(page)
    expect(m.get_by_role("heading", name="Train", level=1)).to_be_visible()
    expect(m.get_by_role("radio", name="PLE / CGC")).to_be_checked()
    assert network_title(page) == "PLE / CGC network"
    expect(slider(page, "weight: like").get_by_test_id("stSliderThumbValue")).to_have_text("2.00")
    assert slider_value(page, "weight: like") == 2.0
    assert slider_value(page, "weight: click") == 1.0
    expect(m.get_by_text(re.compile(r"rho=-0\.5"))).to_be_visible()
    # the address bar still holds the setup, so it can be passed on again
    for part in ("arch=ple", "rho=-0.5", "w.like=2"):
        assert part in page.url, page.url

    go(page, "Data")
    expect(slider(page, "Task correlation").get_by_test_id("stSliderThumbValue")).to_have_text("-0.50")
    assert slider_value(page, "Task correlation") == -0.5
    no_traceback(page)


# -- 7 (issue 17) -------------------------------------------------------------------------------------------
RETRIEVAL_TASKS = "click%3Dclick%3Blike%3Dlike%7Cclick%3Br%3Dretrieval%3Aclick"  # click, like|click, r=retrieval:click


def test_journey7_retrieval_cascade_why_this_item_and_the_lm_baseline(app_url, page):
    """A run with a retrieval task and text features: the Train page draws the two towers, the
    Recommend page ranks through the cascade (each item says what placed it), explains each item
    ("because you liked", each task's part of the fused score), and its ranking-quality table has
    the language-model zero-shot column."""
    open_app(page, app_url, f"/train?{SMALL}&epochs=2&text=1&tasks={RETRIEVAL_TASKS}")
    m = main(page)
    title = poll(lambda: next((t for t in plot_titles(page) if "network" in t), ""), T_IDLE / 1000,
                 what="the network diagram")
    assert title == "MMoE network + retrieval towers", title
    expect(m.get_by_text("Retrieval towers", exact=True)).to_be_visible()
    train_button(page).click()
    wait_finished(page, timeout=240_000)  # the first text features load the language model

    go(page, "Recommend")
    expect(m.get_by_role("radio", name="cascade: retrieve, then rank")).to_be_checked(timeout=T_IDLE)
    table = m.get_by_test_id("stDataFrame").first
    expect(table.locator("table[role='grid'] tbody tr").first).to_be_attached(timeout=T_IDLE)
    rows = grid_rows(table)
    assert len(rows) == 10 and all(r.get("placed by", "").endswith("→ ranked") for r in rows), rows
    expect(m.get_by_role("heading", name="Why this item?")).to_be_visible()
    why = m.get_by_test_id("stDataFrame").filter(has=page.locator("th", has_text="because you liked")).first
    expect(why.locator("table[role='grid'] tbody tr").first).to_be_attached(timeout=T_IDLE)
    reasons = grid_rows(why)
    assert len(reasons) == 10 and all(r["because you liked"] for r in reasons), reasons
    assert poll(lambda: plot_points(page, "part of the fused score"), 30, what="the contributions chart") >= 10

    lm = m.get_by_test_id("stCheckbox").filter(has_text="Language-model zero-shot baseline")
    expect(lm.get_by_role("checkbox")).to_be_checked()  # on by default for a run with text features
    m.get_by_role("button", name="Compute ranking metrics").click()
    wait_idle(page, timeout=T_TRAIN)
    quality = m.get_by_test_id("stDataFrame").filter(has=page.locator("th", has_text="lm_zero_shot")).first
    expect(quality.locator("table[role='grid'] tbody tr").first).to_be_attached(timeout=T_IDLE)
    got = {r[""] if "" in r else next(iter(r.values())): r for r in grid_rows(quality)}
    assert "ndcg@10" in got and float(got["ndcg@10"]["lm_zero_shot"]) >= 0, got
    no_traceback(page)
    snap(page, "recommend-retrieval")
