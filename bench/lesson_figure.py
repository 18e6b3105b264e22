"""Run a lesson (resumable) and save its figure as a PNG, for the README.

    python bench/lesson_figure.py seesaw --seeds 5 --out docs/img/lesson-seesaw.png [--store DIR]

The figure is the one the Lessons page draws (mtrlib.experiments.lessons.figure), rendered by
headless Chromium from Plotly's own HTML (no image-export package needed). The last line is the
lesson's JSON (headline numbers with mean and ci95, "holds"), as `python -m mtrlib lesson` prints.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtrlib.experiments import run_sweep  # noqa: E402
from mtrlib.experiments.lessons import figure, get_lesson, lesson_json  # noqa: E402
from mtrlib.safe import json_clean  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def render(fig, out: Path, width: int = 1000, height: int = 560) -> None:
    from playwright.sync_api import sync_playwright

    fig = fig.update_layout(width=width, height=height, template="plotly_white")
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(tmp) / "figure.html"
        html.write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                   args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                                         "--disable-component-update"])
            page = b.new_page(viewport={"width": width + 40, "height": height + 40})
            page.goto(html.as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
            page.locator(".js-plotly-plot").first.screenshot(path=str(out))
            b.close()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("name")
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--out", required=True)
    ap.add_argument("--store", help="run store (default $MTR_RUN_STORE or data/runs): finished runs are reused")
    args = ap.parse_args(argv)
    lesson = get_lesson(args.name)
    t0 = time.time()
    res = run_sweep(lesson.sweep(seeds=args.seeds), store=args.store)
    out = lesson_json(lesson, res, seconds=time.time() - t0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    title = f"{lesson.title}: {len(res.sweep.seeds)} seeds, 95% CIs"
    render(figure(lesson, res).update_layout(title=title), Path(args.out))
    out["figure"] = args.out
    print(json.dumps(json_clean(out)))
    return out


if __name__ == "__main__":
    main()
