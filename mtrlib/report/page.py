"""The HTML page of a report: one self-contained string, safe to open from an e-mail attachment.

Why each rule holds:
- Plotly's JavaScript is inlined once (`plotly.offline.get_plotlyjs()`) and every figure is a
  `div` plus a small script, so the file opens anywhere, offline, in any browser.
- Every string that came from data (run names, titles, task and column names) goes through
  `esc` (html.escape, quotes included) before it reaches the markup, and through `fig_text`
  before it reaches a figure (Plotly renders a subset of HTML in its labels).
- A Content-Security-Policy allows only the scripts this module wrote (a fresh random nonce per
  page) and no connection at all, so even a string that slipped through could neither run nor
  call out. Plotly's figure JSON escapes '<' itself, so data cannot close a script tag.
"""
from __future__ import annotations

import html
import json
import math
import secrets
from dataclasses import dataclass, field

import plotly.offline

from ..safe import json_clean

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:24px;
color:#1f2328;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
.sub{color:#57606a;margin-top:0}.summary{font-size:1.1em;background:#f6f8fa;border-left:4px solid #1f77b4;
padding:12px 16px}table{border-collapse:collapse;margin:.6em 0 1em;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}.note{color:#57606a;font-size:.9em}
.better{color:#1a7f37;font-weight:600}.worse{color:#cf222e;font-weight:600}.fig{margin:.5em 0 1em}
code{background:#f6f8fa;padding:1px 4px;border-radius:3px;word-break:break-all}
"""


def esc(value) -> str:
    """Text for HTML (element content and attribute values alike): every <, >, & and quote escaped."""
    return html.escape("" if value is None else str(value), quote=True)


def fig_text(value) -> str:
    """Text for a Plotly label: Plotly renders <b>, <a href> and friends in labels, so the angle
    brackets of a user's string are turned into entities (Plotly shows them as the characters)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def num(v, digits: int = 4) -> str:
    """A metric as the app prints it (4 decimals); '' for a missing or non-finite value."""
    if v is None or isinstance(v, bool):
        return ""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{f:.{digits}f}" if math.isfinite(f) else ""


def table(header: list[str], rows: list[list], key: str = "", numeric: set[int] | None = None) -> str:
    """An escaped HTML table; `key` becomes data-table (tests and readers find the table by it)."""
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td{' class=num' if i in numeric else ''}>{esc(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    attr = f' data-table="{esc(key)}"' if key else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def para(text: str, cls: str = "") -> str:
    return f"<p{f' class={esc(cls)}' if cls else ''}>{esc(text)}</p>"


def bullets(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>" if items else ""


@dataclass
class Page:
    """A report being assembled: sections in reading order, figures, and the numbers as JSON.

    `data` is embedded as <script type="application/json" id="report-data"> (never executed,
    '<' escaped): the exact numbers behind the tables, for a reader's own tools and the tests."""
    title: str
    subtitle: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    n_figures: int = 0
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    def add(self, heading: str, body: str) -> None:
        if body:
            self.sections.append((heading, body))

    def figure(self, fig) -> str:
        """A Plotly figure as a div and its script (the script carries this page's nonce)."""
        fig.update_layout(template="plotly_white")
        out = fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})
        if out.count("<script") != 1 or "<script>" not in out:
            raise RuntimeError("Plotly's figure HTML changed shape: expected one bare <script>")  # guard the rewrite
        self.n_figures += 1
        return '<div class="fig">' + out.replace("<script>", f'<script nonce="{self.nonce}">') + "</div>"

    def render(self) -> str:
        """The whole page: CSP, style, sections, the data block, and Plotly's JavaScript once."""

        csp = ("default-src 'none'; "
               f"script-src 'nonce-{self.nonce}'; "
               "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; "
               "connect-src 'none'; base-uri 'none'; form-action 'none'; frame-src 'none'; object-src 'none'")

        data = json.dumps(json_clean(self.data), allow_nan=False, default=str)
        data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        body = "".join(f"<section><h2>{esc(h)}</h2>{b}</section>" for h, b in self.sections)
        js = plotly.offline.get_plotlyjs() if self.n_figures else ""
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
                '<meta name="referrer" content="no-referrer">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{esc(self.title)}</title><style>{STYLE}</style>"
                + (f'<script nonce="{self.nonce}">{js}</script>' if js else "")
                + f"</head><body><h1>{esc(self.title)}</h1>"
                + (f'<p class="sub">{esc(self.subtitle)}</p>' if self.subtitle else "")
                + body
                + f'<script type="application/json" id="report-data">{data}</script>'
                + "</body></html>\n")


__all__ = ["Page", "esc", "fig_text", "num", "table", "para", "bullets"]
