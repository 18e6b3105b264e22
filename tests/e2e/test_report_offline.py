"""Reports (a run, a comparison, a sweep, a lesson) in a real browser (headless Chromium), network
off: every chart is drawn, nothing is requested outside the file, and no script from the data
runs (run names carry XSS payloads that would set window.__pwned or call alert).

Chromium opens each report with `offline=True` and a route that aborts (and counts) every
request that is not the file itself; a dialog would be recorded, never accepted."""
from __future__ import annotations

import pytest

from _reports import PAYLOADS, train_store

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict:
    """A run, a comparison and a sweep report of a store whose runs are named with payloads."""
    from mtrlib.experiments import experiments
    from mtrlib.report import compare_report, run_report, sweep_report
    from mtrlib.runs import list_runs, rename_run
    from test_safety import HOSTILE_TEXT

    root = tmp_path_factory.mktemp("report-e2e")
    trained = train_store(root / "runs")
    names = PAYLOADS + HOSTILE_TEXT[5:7]
    for k, r in enumerate(list_runs(trained["store"])):
        rename_run(r.path, names[k % len(names)] + f" #{k}")
    exps = {e.runs[0].arch: e for e in experiments(list_runs(trained["store"]))}
    mmoe = exps["mmoe"].runs[0]
    texts = {"run": run_report(mmoe.path, title=PAYLOADS[1]),
             "compare": compare_report(exps["shared-bottom"], exps["mmoe"]),
             "sweep": sweep_report(trained["result"], store=trained["store"], title=PAYLOADS[0]),
             "lesson": _lesson(root / "lesson")}
    out = {}
    for kind, text in texts.items():
        p = root / f"{kind}.html"
        p.write_text(text, encoding="utf-8")
        out[kind] = {"path": p, "figures": text.count('class="fig"'), "names": [mmoe.name]}
    return out


def _lesson(store) -> str:
    """The quick funnel lesson (6 runs) trained into `store`, and its report."""
    from mtrlib.experiments import run_sweep
    from mtrlib.experiments.lessons import get_lesson, run_lesson
    from mtrlib.report import lesson_report

    lesson = get_lesson("funnel")
    run_lesson(lesson, quick=True, store=store)
    return lesson_report(lesson, run_sweep(lesson.sweep(quick=True), store=store, train=False), store=store)


def _open(browser, path, want: int) -> dict:
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
    outside, dialogs, console = [], [], []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    try:
        ctx.route("**/*", route)
        page = ctx.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.goto(path.as_uri())
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {want}",
                               timeout=60_000)
        page.wait_for_timeout(300)  # an onload/onerror payload would have fired by now
        return {"outside": outside, "dialogs": dialogs, "console": console,
                "plots": page.locator(".js-plotly-plot").count(),
                "pwned": page.evaluate("() => window.__pwned === undefined ? null : String(window.__pwned)"),
                "text": page.inner_text("body")}
    finally:
        ctx.close()


@pytest.mark.parametrize("kind", ["run", "compare", "sweep", "lesson"])
def test_a_report_opens_offline_draws_every_chart_and_runs_no_data_script(browser, reports, kind):
    rep = reports[kind]
    assert rep["figures"] >= 2
    seen = _open(browser, rep["path"], rep["figures"])
    assert seen["outside"] == []  # not one request left the file
    assert seen["plots"] == rep["figures"]  # every Plotly chart rendered (an SVG in each)
    assert seen["dialogs"] == [] and seen["pwned"] is None, seen
    assert not [c for c in seen["console"] if "error" in c.split(":", 1)[0] or "Content Security Policy" in c], \
        seen["console"]
    if kind == "run":  # the payload run name is shown, as text
        assert rep["names"][0] in seen["text"]


def test_the_detector_sees_a_payload_that_runs_and_the_csp_alone_stops_it(browser, tmp_path):
    """Controls: the same payload pasted raw into a page does set window.__pwned (so the test
    above would see an escape that failed), and under the report's CSP it does not (a second
    line of defence behind the escaping)."""
    from mtrlib.report.page import Page

    raw = tmp_path / "raw.html"
    raw.write_text(f"<!DOCTYPE html><html><body>{PAYLOADS[1]}{PAYLOADS[0]}</body></html>")
    assert _open(browser, raw, 0)["pwned"] == "1"
    page = Page("control")
    page.add("raw", PAYLOADS[1] + PAYLOADS[0])  # bypasses the escaping on purpose
    guarded = tmp_path / "guarded.html"
    guarded.write_text(page.render())
    seen = _open(browser, guarded, 0)
    assert seen["pwned"] is None and seen["dialogs"] == [] and seen["outside"] == []
