"""A small run store for the report tests: two setups (Shared-Bottom, MMoE) x two seeds, one
epoch each on the PAGES world, trained once per module as a sweep (so it is also a sweep result
and two experiments to compare). Plain helpers, imported by tests/test_report.py and
tests/e2e/test_report_offline.py."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from _mtr import PAGES, tiny_cfg

# payloads that would run script if any string reached the markup unescaped: each sets
# window.__pwned or calls alert (the browser test asserts neither happened)
PAYLOADS = [
    "<script>window.__pwned=1</script>",
    "<img src=x onerror=\"window.__pwned=1;alert(1)\">",
    "\"><svg onload=window.__pwned=1>",
    "</script><script>window.__pwned=1</script>",
    "' onmouseover='window.__pwned=1' x='",
    "<a href=\"javascript:window.__pwned=1\">click</a>",
    "<iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe>",
    "<b>bold</b> <i>plotly markup</i> <br> &lt;escaped&gt;",
]


def train_store(root) -> dict:
    """Train the store under `root`; returns {"store", "result" (SweepResult), "json" (its line)}."""
    from mtrlib.experiments import Sweep, parse_grid, run_sweep

    cfg = tiny_cfg(world=PAGES, epochs=1)
    res = run_sweep(Sweep(cfg, [parse_grid("arch=shared-bottom,mmoe")], [0, 1], name="sweep"), store=root)
    assert all(c.status == "finished" for c in res.cells), [c.message for c in res.cells]
    return {"store": root, "result": res, "json": res.to_json()}


def report_data(html: str) -> dict:
    """The exact numbers a report embeds (<script type="application/json" id="report-data">)."""
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert m, "no report-data block"
    return json.loads(m.group(1))


class _Tables(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._key = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and "data-table" in a:
            self._key = a["data-table"]
            self.tables[self._key] = []
        elif tag == "tr" and self._key is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._key].append(self._row)
            self._row = None
        elif tag == "table":
            self._key = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def tables(html: str) -> dict[str, list[list[str]]]:
    """Every keyed table of a report as rows of cell text (header row first), unescaped."""
    p = _Tables()
    p.feed(html)
    return p.tables


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._skip += tag in ("script", "style", "title")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style", "title") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def start_tags(html: str) -> list[tuple[str, dict]]:
    """Every element of the page as an HTML parser (a browser) reads it: (tag, attributes)."""
    p = _Tags()
    p.feed(html)
    return p.tags


def html_text(html: str) -> str:
    """The page's visible text outside scripts and styles, entities decoded."""
    p = _Tags()
    p.feed(html)
    return "".join(p.text)
