"""Issue 27 in a real browser: four students on one server, the states bench/classroom.py counts.

Two students train the same setup (the second attaches to, or opens, the first one's run), one
trains their own seed, one opens a lesson. Every press is answered on the page; everyone who
trained sees a result; the run store proves the shared setup was trained once. No timing
assertion: states are read from the pages and from meta.json.
"""
from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import expect

from .helpers import T_IDLE, T_TRAIN, main, no_traceback, open_app, poll

SETUP = "users=300&items=60&imp=20&epochs=2"
SHARED_SEED, OWN_SEED = 5270, 5271  # seeds no other journey trains
ANSWERS = ("Training on", "Preparing data", "Your turn", "Queued: place", "epoch ", "Test metrics")
SHARED = ("The same setup is training for", "trained by someone else on this server")


def runs_with_seed(store: Path, seed: int) -> list[dict]:
    metas = [json.loads(p.read_text()) for p in store.glob("*/meta.json")]
    return [m for m in metas if m.get("settings", {}).get("seed") == seed]


def press(page) -> None:
    page.locator(".st-key-t_train button").click()


def test_four_students_one_server(app_url, new_page, run_store):
    a, b, c, lesson = new_page(), new_page(), new_page(), new_page()
    for p, seed in ((a, SHARED_SEED), (b, SHARED_SEED), (c, OWN_SEED)):
        open_app(p, app_url, f"/train?{SETUP}&seed={seed}")
    open_app(lesson, app_url, "/lessons?lesson=seesaw")

    press(a)
    poll(lambda: any(n in main(a).inner_text() for n in ANSWERS), 30, what="the first press answered")
    press(b)  # the same setup: shared, never trained again
    poll(lambda: any(n in main(b).inner_text() for n in SHARED), 30, what="the second press shared")
    press(c)
    poll(lambda: any(n in main(c).inner_text() for n in ANSWERS), 30, what="the own-seed press answered")

    for p in (a, b, c):  # everyone gets a result
        expect(p.locator(".st-key-t_metrics")).to_be_visible(timeout=T_TRAIN)
    expect(main(lesson)).to_contain_text("Lessons", timeout=T_IDLE)
    expect(main(lesson).get_by_test_id("stAlert").first).to_be_visible(timeout=T_IDLE)

    shared, own = runs_with_seed(run_store, SHARED_SEED), runs_with_seed(run_store, OWN_SEED)
    assert len(shared) == 1 and shared[0]["status"] == "finished", shared  # trained once for two students
    assert len(own) == 1 and own[0]["status"] == "finished", own
    assert shared[0]["owner"] and own[0]["owner"] and shared[0]["owner"] != own[0]["owner"], (shared, own)
    assert shared[0]["fingerprint"] == own[0]["fingerprint"], "the same data, so the same fingerprint"
    for p in (a, b, c, lesson):
        no_traceback(p)
