"""Small helpers for driving the Streamlit app in a real browser (Playwright, sync API).

Waiting is always on a condition (the app's script state, an element, a value) with a timeout;
the only loops are short polls of the page.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import Page, expect

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
RUNNING = "[data-testid='stApp'][data-test-script-state='running']"

# Timeouts (ms) sized for a 2-core machine shared with other work.
T_IDLE = 60_000
T_TRAIN = 120_000


def wait_idle(page: Page, timeout: float = T_IDLE, settle: float = 1_500) -> None:
    """Wait until the app's script run is over.

    Right after a click the browser may not have sent the rerun yet, so first give the run a
    short chance to start (`settle` ms; it ends as soon as the state flips), then wait for
    notRunning.
    """
    try:
        page.wait_for_selector(RUNNING, timeout=settle, state="attached")
    except Exception:
        pass  # the run was quick (or nothing reran): fall through to the idle wait
    page.wait_for_selector(IDLE, timeout=timeout, state="attached")


def open_app(page: Page, base: str, path: str = "/") -> None:
    page.goto(base + path, wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid='stApp']", timeout=T_IDLE)
    wait_idle(page)
    expect(page.get_by_role("heading", level=1).first).to_be_visible(timeout=T_IDLE)


def go(page: Page, title: str) -> None:
    """Switch page through the sidebar navigation (same browser session, no reload)."""
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True)
    link.click()
    expect(page.get_by_role("heading", level=1).first).to_have_text(re.compile(re.escape(title.split(' ')[0])),
                                                                    timeout=T_IDLE)
    wait_idle(page)


def main(page: Page):
    """The main area (not the sidebar)."""
    return page.get_by_test_id("stMain")


def no_traceback(page: Page) -> None:
    """No exception box and no Python traceback text anywhere on the page."""
    expect(page.get_by_test_id("stException")).to_have_count(0)
    body = page.locator("body").inner_text()
    for marker in ("Traceback (most recent call last)", 'File "/', "Error:\n"):
        assert marker not in body, f"traceback text on the page: {marker!r}"


def plot_points(page: Page, title: str) -> int:
    """Points drawn in the Plotly chart whose title contains `title`: the sum over its traces of
    their x values (0 when no such chart is drawn yet). Plotly keeps the decoded arrays in
    `_fullData` (`data` may hold base64-packed typed arrays). While a fragment redraws, an old
    copy of a chart can linger for a moment: the largest count wins."""
    return page.evaluate(
        """(title) => {
            let best = 0;
            for (const el of document.querySelectorAll('.js-plotly-plot')) {
                const t = el.layout && el.layout.title ? (el.layout.title.text || el.layout.title) : '';
                const traces = el._fullData || [];
                if (!String(t).includes(title)) continue;
                const n = traces.reduce((s, tr) => s + (tr.x && tr.x.length ? tr.x.length : 0), 0);
                best = Math.max(best, n);
            }
            return best;
        }""",
        title,
    )


def plot_titles(page: Page) -> list[str]:
    """Titles of the Plotly charts on the page, tags stripped."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el =>
              String(el.layout && el.layout.title ? (el.layout.title.text || el.layout.title) : '')
                .replace(/<[^>]*>/g, ''))"""
    )


def grid_rows(frame) -> list[dict]:
    """Rows of an st.dataframe / st.data_editor (glide grid) read from its accessible table:
    {column header: cell text} for the rows and columns currently rendered."""
    return frame.locator("table[role='grid']").first.evaluate(
        """(t) => {
            const heads = {};
            t.querySelectorAll('thead th').forEach(th => heads[th.getAttribute('aria-colindex')] = th.innerText.trim());
            return Array.from(t.querySelectorAll('tbody tr')).map(tr => {
                const row = {};
                tr.querySelectorAll('td').forEach(td => row[heads[td.getAttribute('aria-colindex')]] = td.innerText.trim());
                return row;
            });
        }"""
    )


def poll(fn, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Call fn until it returns a truthy value; fail after timeout seconds."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})")


def snap(page: Page, name: str) -> Path:
    """Save a screenshot of the current page (tall viewport) under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 2200})
    wait_idle(page, settle=300)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def plot_traces(page: Page, title: str) -> list[dict]:
    """The traces of the Plotly chart whose title contains `title`, as drawn (`_fullData`): name,
    type, x and y values, the error bars' half-widths (None when a trace has none), marker
    colour and the trace's `meta`. Empty when no such chart is drawn yet."""
    return page.evaluate(
        """(title) => {
            for (const el of document.querySelectorAll('.js-plotly-plot')) {
                const t = el.layout && el.layout.title ? (el.layout.title.text || el.layout.title) : '';
                if (!String(t).includes(title)) continue;
                const arr = (e) => (e && e.visible && e.array) ? Array.from(e.array) : null;
                return (el._fullData || []).map(tr => ({
                    name: tr.name, type: tr.type, mode: tr.mode || null,
                    x: tr.x ? Array.from(tr.x) : [], y: tr.y ? Array.from(tr.y) : [],
                    error_x: arr(tr.error_x), error_y: arr(tr.error_y),
                    colour: tr.marker ? String(tr.marker.color) : null, meta: tr.meta || null,
                    dash: tr.line ? tr.line.dash : null}));
            }
            return [];
        }""",
        title,
    )
