"""Your own log with context columns, in a real browser (issue 26): upload it, read the guessed
roles and why, change one in the mapping editor, train, then change the context on the Recommend
page and watch the top-K move."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .helpers import T_IDLE, go, grid_rows, main, no_traceback, open_app, poll, snap, wait_idle
from .test_journeys import train_button, upload, use_uploads, wait_finished

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_context import device_log  # noqa: E402  (the log whose clicks depend on device x item)

pytestmark = pytest.mark.e2e


def edit_cell(page: Page, grid, row: int, col_x: float, text: str) -> None:
    """Type `text` into a select cell of a data editor (glide grid: row height 35 px, a header row)
    and press Enter: what a person does with the keyboard after a double click."""
    grid.scroll_into_view_if_needed()
    wait_idle(page, settle=300)
    box = grid.bounding_box()
    x, y = box["x"] + col_x, box["y"] + 35 * (row + 1) + 17
    page.mouse.click(x, y)
    page.mouse.dblclick(x, y)
    editor = page.locator(".glide-select")  # the cell's overlay editor, open
    expect(editor.first).to_be_visible(timeout=T_IDLE)
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    expect(editor).to_have_count(0, timeout=T_IDLE)
    wait_idle(page)


def top_items(page: Page) -> list[int]:
    table = main(page).get_by_test_id("stDataFrame").filter(has=page.locator("th", has_text="held out")).first
    expect(table.locator("table[role='grid'] tbody tr").first).to_be_attached(timeout=T_IDLE)
    return [int(r.get("item_id") or r["title"]) for r in grid_rows(table)]  # (a log without titles: the id)


def test_context_log_roles_mapping_train_and_recommend_in_a_context(app_url, page, tmp_path):
    log = tmp_path / "impressions.csv"
    device_log(12000).to_csv(log, index=False)
    open_app(page, app_url, "/?epochs=4")
    use_uploads(page)
    upload(page, "Interactions", str(log))

    m = main(page)
    editor = m.get_by_test_id("stDataFrame").filter(has=page.locator("th", has_text="use as")).first
    expect(editor.locator("table[role='grid'] tbody tr").first).to_be_attached(timeout=T_IDLE)
    roles = {r["column"]: r for r in grid_rows(editor)}
    assert roles["device"]["use as"] == "context feature" and roles["device"]["kind"] == "categorical"
    assert roles["position"]["use as"] == "position (the slot)"
    assert roles["hour"]["use as"] == "context feature" and "24 distinct integer codes" in roles["hour"]["why"]
    assert roles["click"]["use as"] == "label (task source)" and roles["click"]["why"] == "0/1 values: a label"
    snap(page, "context-mapping")
    page.set_viewport_size({"width": 1400, "height": 1000})

    # the hour is noise here: ignore it, and apply
    edit_cell(page, editor, list(roles).index("hour"), 180, "ignore")
    assert {r["column"]: r["use as"] for r in grid_rows(editor)}["hour"] == "ignore"
    m.get_by_role("button", name="Apply mapping").click()
    wait_idle(page)
    columns = m.get_by_test_id("stExpander").filter(has_text="1 ignored")
    expect(columns).to_contain_text("2 context feature(s)", timeout=T_IDLE)
    no_traceback(page)

    go(page, "Train")
    expect(m.get_by_text("Context features", exact=False).first).to_be_visible(timeout=T_IDLE)
    train_button(page).click()
    wait_finished(page, timeout=240_000)

    go(page, "Recommend")
    search = m.get_by_label("Find a user (id)")
    search.fill("5")
    search.press("Enter")
    wait_idle(page)
    device = m.get_by_role("combobox", name="device")
    expect(device).to_be_visible(timeout=T_IDLE)
    tops = {}
    for value in ("mobile", "desktop"):
        device.click()
        page.get_by_role("option", name=value, exact=True).click()
        wait_idle(page)
        expect(m.get_by_text(f"device = {value}", exact=False).first).to_be_visible(timeout=T_IDLE)
        wait_idle(page)  # the caption comes before the table in the script: let the run end
        tops[value] = poll(lambda: (t := top_items(page)) and t != tops.get("mobile") and t, 30,
                           what=f"the top-10 in context device = {value}")
    # items 0-29 are clicked on mobile, 30-59 on desktop: the list follows the chosen device
    mobile_share = sum(i < 30 for i in tops["mobile"]) / len(tops["mobile"])
    desktop_share = sum(i < 30 for i in tops["desktop"]) / len(tops["desktop"])
    assert mobile_share > desktop_share + 0.5, tops
    no_traceback(page)
    snap(page, "context-recommend")
