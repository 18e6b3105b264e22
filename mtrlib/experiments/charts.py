"""Figures of experiments, every number with its 95% CI drawn as an error bar (Plotly, no Streamlit).

- `front`: test metric against test metric, one point per configuration with error bars in
  both directions; the non-dominated points of each group joined as its front, dominated ones
  greyed, the best single-task pair as a star with the box it spans, the relative hypervolume
  of each front in the legend. Groups overlay architectures or weighting methods.
- `gain`: a gain (with its interval) against a swept value, one line per compared setting.
- `bars`: one bar per setting and metric, with error bars.

Axes are fitted to the data and its intervals (never 0..1.5 for AUCs).
"""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from ..viz.charts import LAYOUT, PALETTE, fitted_range
from ..eval.stats import Estimate

GREY = "#b8b8b8"


def _ci(e: Estimate) -> float:
    return float(e.ci95) if e.n > 1 and math.isfinite(e.ci95) else 0.0


def front(groups: list[dict], x: str, y: str, title: str, corner: tuple[float, float] | None = None,
          height: int = 480) -> go.Figure:
    """`groups`: [{"name", "points": [(Estimate x, Estimate y, label)], "front": [indices into points],
    "rhv": relative hypervolume or None}]. One trace of points per group (front points coloured,
    dominated grey), one line per group joining its front, and the single-task corner."""
    fig = go.Figure()
    xs, ys, hx, hy = [], [], [], []
    for g_i, g in enumerate(groups):
        colour = PALETTE[g_i % len(PALETTE)]
        pts, on = g["points"], set(g["front"])
        rank = {k: r for r, k in enumerate(sorted(range(len(pts)), key=lambda k: pts[k][0].mean))}
        where = {k: "top center" if rank[k] % 2 == 0 else "bottom center" for k in rank}  # neighbours' labels apart
        name = g["name"] + (f" · hypervolume {g['rhv']:.2f}× single-task" if g.get("rhv") is not None
                            and math.isfinite(g["rhv"]) else "")
        for which, keep in (("front", lambda k: k in on), ("dominated", lambda k: k not in on)):
            sel = [k for k in range(len(pts)) if keep(k)]
            if not sel:
                continue
            ex, ey = [pts[k][0] for k in sel], [pts[k][1] for k in sel]
            xs += [e.mean for e in ex]
            ys += [e.mean for e in ey]
            hx += [_ci(e) for e in ex]
            hy += [_ci(e) for e in ey]
            fig.add_trace(go.Scatter(
                x=[e.mean for e in ex], y=[e.mean for e in ey], mode="markers+text",
                text=[pts[k][2] for k in sel], textposition=[where[k] for k in sel], textfont=dict(size=11),
                name=f"{g['name']} · dominated (grey)" if which == "dominated" else name,
                legendgroup=g["name"], showlegend=True,
                error_x=dict(type="data", array=[_ci(e) for e in ex], visible=True, thickness=1,
                             color=colour if which == "front" else GREY),
                error_y=dict(type="data", array=[_ci(e) for e in ey], visible=True, thickness=1,
                             color=colour if which == "front" else GREY),
                marker=dict(size=11 if which == "front" else 8, color=colour if which == "front" else GREY,
                            line=dict(color="white", width=1)),
                customdata=[[pts[k][2], _ci(pts[k][0]), _ci(pts[k][1])] for k in sel],
                hovertemplate="%{customdata[0]}<br>" + x + " %{x:.4f} ± %{customdata[1]:.4f}<br>" + y
                              + " %{y:.4f} ± %{customdata[2]:.4f}<extra></extra>",
                meta={"role": which, "group": g["name"]}))
        line = sorted(g["front"], key=lambda k: pts[k][0].mean)
        if len(line) >= 2:
            fig.add_trace(go.Scatter(x=[pts[k][0].mean for k in line], y=[pts[k][1].mean for k in line],
                                     mode="lines", line=dict(color=colour, width=2), name=f"{g['name']} · front",
                                     legendgroup=g["name"], showlegend=False, hoverinfo="skip",
                                     meta={"role": "front-line", "group": g["name"]}))
    if corner is not None and all(math.isfinite(c) for c in corner):
        cx, cy = corner
        xs.append(cx)
        ys.append(cy)
        hx.append(0.0)
        hy.append(0.0)
        fig.add_trace(go.Scatter(x=[cx], y=[cy], mode="markers", name="best single-task pair",
                                 marker=dict(symbol="star", size=16, color="black"),
                                 hovertemplate=f"single-task models<br>{x} %{{x:.4f}}<br>{y} %{{y:.4f}}<extra></extra>",
                                 meta={"role": "corner"}))
    rx, ry = fitted_range(xs, hx), fitted_range(ys, hy)
    if corner is not None and rx and ry and all(math.isfinite(c) for c in corner):
        fig.add_shape(type="rect", x0=rx[0], y0=ry[0], x1=corner[0], y1=corner[1], line=dict(color="black", dash="dot"),
                      fillcolor="rgba(0,0,0,0.03)", layer="below")
    fig.update_layout(title=title, xaxis_title=f"test {x}", yaxis_title=f"test {y}",
                      **{**LAYOUT, "height": height, "legend": dict(orientation="h", y=-0.25)})
    if rx and ry:
        fig.update_xaxes(range=rx)
        fig.update_yaxes(range=ry)
    return fig


def gain(series: dict[str, list[tuple[float, Estimate]]], x_title: str, y_title: str, title: str,
         height: int = 420) -> go.Figure:
    """One line per setting: (swept value, gain Estimate) points with error bars, and y = 0."""
    fig = go.Figure()
    vals, halves, xs = [], [], []
    allx = sorted({p[0] for pts in series.values() for p in pts})
    step = min(np.diff(allx)) if len(allx) > 1 else 1.0
    for k, (name, pts) in enumerate(series.items()):
        pts = sorted(pts, key=lambda p: p[0])
        mean = name.startswith("mean")  # the average of the others: black and dashed
        dodge = (k - (len(series) - 1) / 2) * 0.04 * step  # side by side, so the error bars do not hide each other
        fig.add_trace(go.Scatter(
            x=[p[0] + dodge for p in pts], y=[p[1].mean for p in pts], mode="lines+markers", name=name,
            line=dict(color="black" if mean else PALETTE[k % len(PALETTE)], dash="dash" if mean else "solid",
                      width=3 if mean else 2), marker=dict(size=9),
            error_y=dict(type="data", array=[_ci(p[1]) for p in pts], visible=True, thickness=1.5),
            customdata=[[_ci(p[1]), p[1].n, p[0]] for p in pts],
            hovertemplate=name + "<br>" + x_title + " %{customdata[2]}<br>%{y:+.4f} ± %{customdata[0]:.4f} "
                          "(%{customdata[1]} seeds)<extra></extra>"))
        vals += [p[1].mean for p in pts] + [0.0]
        halves += [_ci(p[1]) for p in pts] + [0.0]
        xs += [p[0] for p in pts]
    fig.add_hline(y=0, line=dict(color="#666", dash="dot"))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, **{**LAYOUT, "height": height})
    r = fitted_range(vals, halves)
    if r:
        fig.update_yaxes(range=r)
    if xs:
        fig.update_xaxes(range=fitted_range(xs, pad=0.12), tickvals=sorted(set(xs)))
    return fig


def bars(settings: list[str], metrics: dict[str, list[Estimate]], title: str, y_title: str,
         floor: float | None = None, height: int = 420) -> go.Figure:
    """Grouped bars: one group per setting, one bar per metric, error bars = 95% CI. `floor`
    (e.g. 0.5 for AUC, chance) is drawn as a dotted line and the axis starts near the data."""
    fig = go.Figure()
    vals, halves = [], []
    for k, (m, ests) in enumerate(metrics.items()):
        fig.add_trace(go.Bar(
            x=settings, y=[e.mean for e in ests], name=m, marker_color=PALETTE[k % len(PALETTE)],
            error_y=dict(type="data", array=[_ci(e) for e in ests], visible=True, thickness=1.5),
            customdata=[[_ci(e), e.n] for e in ests],
            hovertemplate="%{x}<br>" + m + " %{y:.4f} ± %{customdata[0]:.4f} (%{customdata[1]} seeds)<extra></extra>"))
        vals += [e.mean for e in ests]
        halves += [_ci(e) for e in ests]
    if floor is not None:
        fig.add_hline(y=floor, line=dict(color="#666", dash="dot"), annotation_text="chance",
                      annotation_position="bottom left")
        vals.append(floor)
        halves.append(0.0)
    fig.update_layout(title=title, yaxis_title=y_title, barmode="group", **{**LAYOUT, "height": height})
    r = fitted_range(vals, halves)
    if r:
        fig.update_yaxes(range=r)
    return fig


def estimates_table(rows: list[tuple[str, dict[str, Estimate]]]) -> list[dict]:
    """Rows for a table: setting, then 'metric' = 'mean ± ci95' and 'metric n'."""
    out = []
    for name, ms in rows:
        row = {"setting": name}
        for m, e in ms.items():
            row[m] = str(e) if e.n else ""
            row["seeds"] = max(row.get("seeds", 0), e.n)
        out.append(row)
    return out


__all__ = ["front", "gain", "bars", "estimates_table"]
