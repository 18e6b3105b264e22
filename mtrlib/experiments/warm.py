"""Before a class: pre-train every lesson's runs into the store (`python -m mtrlib lesson all --warm`),
so each student's Lessons page opens with its figure at once and nobody waits for a sweep."""
from __future__ import annotations

from .lessons import LESSONS, get_lesson, lesson_json
from .runner import run_sweep


def warm_lessons(names=None, *, quick: bool = False, store=None, stop=None, on_progress=None, limiter=None) -> dict:
    """Pre-train every run of the lessons `names` (default: all) into the store before a class,
    so each student's lesson opens with its figure at once (finished runs are reused, so running
    it twice trains nothing). -> {"warmed": {name: {"runs", "trained", "reused", "finished", "holds"}}}."""
    out = {}
    for name in names or list(LESSONS):
        lesson = get_lesson(name)
        res = run_sweep(lesson.sweep(quick), store=store, stop=stop, on_progress=on_progress, limiter=limiter)
        cells = res.cells
        out[lesson.name] = {"runs": len(cells), "trained": sum(not c.reused and c.status != "pending" for c in cells),
                            "reused": sum(c.reused for c in cells),
                            "finished": sum(c.status == "finished" for c in cells),
                            "holds": lesson_json(lesson, res, quick=quick)["holds"]}
        if res.stopped:
            break
    return {"warmed": out, "quick": quick}
