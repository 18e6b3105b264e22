"""`report`: one self-contained HTML file for a run, an experiment, a comparison, a sweep or a lesson.

    python -m mtrlib report RUN --out run.html
    python -m mtrlib report g-1a2b3c --out experiment.html
    python -m mtrlib report g-1a2b3c..g-4d5e6f --out comparison.html     (or two targets)
    python -m mtrlib report sweep.json --out sweep.html                  (the sweep's last line, saved)
    python -m mtrlib report seesaw [--quick] --out lesson.html

The file opens offline in any browser (mtrlib.report). The last line of stdout is one JSON
object: {"out", "bytes", "kind", "seconds"}. A target that cannot be found exits 2 with the fix.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from mtrlib.errors import DataError


def register(subparsers, verb: str | None = None) -> None:
    p = subparsers.add_parser(
        "report", help="a self-contained HTML report of a run, experiment, comparison, sweep or lesson",
        description="Write one HTML file (Plotly inlined, no network) with a plain-words summary, the data, the "
                    "setup, test metrics with 95% CIs, curves, the trade-off or front, gates, sample top-K, "
                    "paired differences for a comparison, and software versions. The last line is one JSON object.")
    p.add_argument("target", nargs="+", metavar="TARGET",
                   help="a run (id, name or folder), an experiment (g-...), A..B or two targets to compare, a "
                        "sweep's or lesson's JSON result file, or a lesson name (lesson:NAME)")
    p.add_argument("--out", required=True, metavar="FILE.html", help="the HTML file to write")
    p.add_argument("--title", help="the report's title (default: from the target)")
    p.add_argument("--quick", action="store_true", help="a lesson: its quick version's runs")
    p.add_argument("--x", metavar="TASK/METRIC", help="a sweep: first metric of the front (default: first task's)")
    p.add_argument("--y", metavar="TASK/METRIC", help="a sweep: second metric of the front")
    p.add_argument("--app-url", metavar="URL", help="the app's address for the share link "
                                                    "(default http://localhost:8501/)")
    p.add_argument("--store", metavar="DIR", help="run store folder (default $MTR_RUN_STORE or data/runs)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from mtrlib.report.targets import build, resolve  # deferred: heavy (torch, plotly), this verb only

    out = Path(args.out).expanduser()
    if out.suffix.lower() not in (".html", ".htm"):
        raise DataError(f"--out must name an .html file (got {args.out}).", fix="e.g. --out report.html")
    if not out.parent.is_dir():
        raise DataError(f"The folder {out.parent} does not exist.", fix="create it, or write the report elsewhere")
    t0 = time.time()
    target = resolve(args.target, args.store, quick=args.quick)
    text = build(target, args.store, title=args.title, x=args.x, y=args.y, app_url=args.app_url)
    data = text.encode("utf-8")
    try:
        out.write_bytes(data)
    except OSError as e:
        raise DataError(f"Cannot write {out}: {e.strerror or e}.", fix="choose a file you can write") from None
    print(json.dumps({"out": str(out), "bytes": len(data), "kind": target.kind, "seconds": round(time.time() - t0, 2)}))
    return 0
