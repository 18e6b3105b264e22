"""Real-browser journey (issue 18): train a model that reads the user's history (DIN target
attention) from a shared link, then on the Recommend page see the user's recent history and
each past item's weight in a chosen recommendation's score; another choice re-weighs them."""
from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .helpers import T_IDLE, go, grid_rows, main, no_traceback, open_app, poll, snap, wait_idle

pytestmark = pytest.mark.e2e

SETUP = "/train?users=300&items=60&imp=20&epochs=2&split=temporal&hist=10&henc=din"
CHART = "Past items behind"


def weights(page: Page) -> list[float]:
    """The bars of the history-weights chart (x = each past item's weight), [] before it is drawn."""
    return page.evaluate(
        """(title) => { for (const el of document.querySelectorAll('.js-plotly-plot')) {
                const t = String(el.layout && el.layout.title ? (el.layout.title.text || el.layout.title) : '');
                if (t.includes(title)) return ((el._fullData || [])[0] || {}).x || []; }
            return []; }""", CHART) or []


def test_recommend_page_shows_which_past_items_drove_a_score(app_url, page):
    open_app(page, app_url, SETUP)
    m = main(page)
    expect(m.get_by_role("switch", name="User history: the last L interactions")).to_be_checked()
    m.get_by_role("button", name="Train", exact=True).click()
    expect(m.get_by_test_id("stAlertContentSuccess")).to_contain_text("Finished", timeout=180_000)
    no_traceback(page)

    go(page, "Recommend")
    expect(m.get_by_role("heading", name="Recent history: what drove this score")).to_be_visible(timeout=T_IDLE)
    first = poll(lambda: list(weights(page)), T_IDLE / 1000, what="the history weights chart")
    assert 1 <= len(first) <= 10, first
    table = m.get_by_test_id("stDataFrame").filter(has=page.locator("th", has_text="weight")).first
    rows = grid_rows(table)
    assert rows and all(r.get("weight") for r in rows), rows  # each past item with its weight
    expect(m.get_by_text("DIN target attention")).to_be_visible()

    pick = m.get_by_role("combobox", name="Explain recommendation")
    wait_idle(page)
    pick.click()
    pick.press("ArrowDown")  # opens the list from the keyboard (the click alone only focuses it at this page's foot)
    page.get_by_role("option").nth(4).click()  # the fifth recommendation instead of the first
    wait_idle(page)
    second = poll(lambda: (w := list(weights(page))) != first and w, 30, what="the weights to change")
    assert len(second) == len(first)  # the same past items, weighed for another candidate
    no_traceback(page)
    snap(page, "recommend-history")
