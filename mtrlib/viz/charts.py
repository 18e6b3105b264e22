"""Plotly figures for the dashboard (no Streamlit here, so they are testable alone)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..config import ModelConfig, arch_class
from ..train.telemetry import columns, groups_in
from ..models.diagram import Canvas, sizes
from ..models.history import draw_input  # the embeddings, and the history block beside them
from ..registry import options_of

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=320, legend=dict(orientation="h", y=-0.2))


def smooth(values: pd.Series, weight: float) -> pd.Series:
    """TensorBoard-style exponential moving average (0 = raw)."""
    if weight <= 0 or len(values) == 0:
        return values
    return values.ewm(alpha=1 - weight, adjust=True).mean()


def series_name(col: str) -> str:
    """'loss/click' -> 'click'; 'val/click/auc' -> 'click'; anything else unchanged."""
    parts = col.split("/")
    return parts[1] if len(parts) >= 2 else col


def task_colours(tasks: list[str]) -> dict[str, str]:
    """One colour per task, the same on every chart of a page."""
    return {t: PALETTE[k % len(PALETTE)] for k, t in enumerate(tasks)}


def curves(runs: dict[str, pd.DataFrame], columns: list[str], title: str, x: str = "step",
           smoothing: float = 0.0, y_title: str = "", colours: dict[str, str] | None = None) -> go.Figure:
    """One line per (run, column). `runs` maps a run label to its history rows; a single run is
    coloured per task (`colours`), several runs are coloured per run and dashed per column."""
    fig = go.Figure()
    for r, (label, df) in enumerate(runs.items()):
        if df is None or df.empty or x not in df.columns:
            continue
        for c, col in enumerate(columns):
            if col not in df.columns:
                continue
            d = df[[x, col]].dropna()
            name = series_name(col) if len(runs) == 1 else f"{label} · {series_name(col)}"
            color = ((colours or {}).get(series_name(col)) or PALETTE[c % len(PALETTE)]) if len(runs) == 1 \
                else PALETTE[r % len(PALETTE)]
            fig.add_trace(go.Scatter(
                x=d[x], y=smooth(d[col], smoothing), mode="lines+markers" if len(d) < 30 else "lines",
                name=name, line=dict(color=color, dash=["solid", "dash", "dot", "dashdot"][c % 4] if len(runs) > 1 else "solid"),
            ))
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y_title, **LAYOUT)
    return fig


def tradeoff(points: pd.DataFrame, x: str, y: str, label: str = "run", color: str | None = "model") -> go.Figure:
    """One point per run: task A's metric vs task B's — the seesaw picture."""
    fig = go.Figure()
    groups = points.groupby(color) if color and color in points.columns else [("runs", points)]
    labelled = len(points) <= 6  # beyond that the labels overlap: names on hover only
    for k, (g, d) in enumerate(groups):
        fig.add_trace(go.Scatter(x=d[x], y=d[y], mode="markers+text" if labelled else "markers", text=d[label],
                                 textposition="top center", name=str(g), hovertemplate="%{text}<br>%{x:.4f}, %{y:.4f}"
                                 "<extra></extra>", marker=dict(size=12, color=PALETTE[k % len(PALETTE)])))
    fig.update_layout(title=f"Trade-off: {y} vs {x}", xaxis_title=x, yaxis_title=y, **LAYOUT)
    rx = fitted_range(pd.to_numeric(points[x], errors="coerce")) if x in points.columns else None
    ry = fitted_range(pd.to_numeric(points[y], errors="coerce"), pad=0.15) if y in points.columns else None
    if rx:
        fig.update_xaxes(range=rx)
    if ry:  # room above the points for their labels
        fig.update_yaxes(range=ry)
    return fig


def fitted_range(values, intervals=None, pad: float = 0.08) -> list[float] | None:
    """[lo, hi] around the values (and their +- intervals) with a little room, so an axis fits
    the data (AUCs of 0.74..0.78 are not drawn on 0..1.5); None when there is no finite value.
    Intervals widen the range by at most the values' own spread (and 0.01) on each side: a
    two-seed interval of ±0.5 runs off the chart instead of squashing the points into a corner."""
    v = np.asarray(values, dtype=float)
    h = np.zeros_like(v) if intervals is None else np.nan_to_num(np.asarray(intervals, dtype=float))
    ok = np.isfinite(v)
    if not ok.any():
        return None
    vlo, vhi = float(v[ok].min()), float(v[ok].max())
    room = max(vhi - vlo, 0.01)
    lo = max(float((v - h)[ok].min()), vlo - room)
    hi = min(float((v + h)[ok].max()), vhi + room)
    span = hi - lo if hi > lo else max(abs(hi) * 0.02, 1e-3)
    return [lo - pad * span, hi + pad * span]


def long_tail(popularity: pd.Series) -> go.Figure:
    """Interactions per item, most popular first (log scale): the long tail."""
    y = popularity.to_numpy()
    fig = go.Figure(go.Scatter(x=np.arange(1, len(y) + 1), y=np.maximum(y, 0.5), mode="lines", fill="tozeroy"))
    fig.update_layout(title="Item popularity (long tail)", xaxis_title="item rank", yaxis_title="interactions",
                      yaxis_type="log", **LAYOUT)
    return fig


def heatmap(matrix: np.ndarray, rows: list[str], cols: list[str], title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=matrix, x=cols, y=rows, colorscale="Blues", zmin=0,
                               text=np.round(matrix, 2), texttemplate="%{text}"))
    fig.update_layout(title=title, **{**LAYOUT, "height": 120 + 40 * len(rows)})
    return fig


def _hover_data(d: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Cell text for hover labels; '<' and '>' escaped because Plotly renders a subset of HTML."""
    return d[cols].astype(str).apply(lambda c: c.str.replace("<", "&lt;").str.replace(">", "&gt;")).to_numpy()


def scatter(df: pd.DataFrame, color: str | None, hover: list[str], title: str, highlight: list[int] | None = None
            ) -> go.Figure:
    """2-D or 3-D projection coloured by any column; hover shows the given columns."""
    three = "z" in df.columns
    fig = go.Figure()
    hover = [h for h in hover if h in df.columns]
    tmpl = "<br>".join(f"{h}: %{{customdata[{i}]}}" for i, h in enumerate(hover)) + "<extra></extra>"
    trace = go.Scatter3d if three else go.Scattergl
    coords = (lambda d: dict(x=d["x"], y=d["y"], z=d["z"])) if three else (lambda d: dict(x=d["x"], y=d["y"]))
    size = 3 if three else 6
    if color and color in df.columns and not pd.api.types.is_numeric_dtype(df[color]):
        top = df[color].astype(str).value_counts().index[:20]
        col = df[color].astype(str).where(df[color].astype(str).isin(top), "other")
        for k, g in enumerate(sorted(col.unique())):
            d = df[col == g]
            fig.add_trace(trace(**coords(d), mode="markers", name=g, customdata=_hover_data(d, hover),
                               hovertemplate=tmpl, marker=dict(size=size, color=PALETTE[k % len(PALETTE)], opacity=0.8)))
    else:
        marker = dict(size=size, opacity=0.8)
        if color and color in df.columns:
            marker.update(color=df[color], colorscale="Viridis", showscale=True, colorbar=dict(title=color))
        fig.add_trace(trace(**coords(df), mode="markers", name="points", customdata=_hover_data(df, hover),
                           hovertemplate=tmpl, marker=marker))
    if highlight:
        d = df.iloc[highlight]
        fig.add_trace(trace(**coords(d), mode="markers", name="selected & neighbours",
                           customdata=_hover_data(d, hover), hovertemplate=tmpl,
                           marker=dict(size=size * 2.5, color="rgba(0,0,0,0)", line=dict(color="black", width=2))))
    fig.update_layout(title=title, **{**LAYOUT, "height": 560})
    return fig


RETRIEVAL_WIDTH = 1.6  # diagram width of one retrieval task's two towers


def network(cfg: ModelConfig, tasks: list[str], retrieval: list[str] | tuple = ()) -> go.Figure:
    """A small diagram of the configured network: inputs -> the architecture's own part (each
    architecture draws it: `draw` in its file) -> towers -> task heads. A retrieval task (its
    name in `retrieval`) gets its own user and item towers beside them, on the same embeddings
    (mtrlib.models.retrieval); the architecture draws only the ranking tasks."""
    ranking = [t for t in tasks if t not in set(retrieval)] or ["task"]
    retrieval = [t for t in tasks if t in set(retrieval)]
    cls = arch_class(cfg)
    opts = options_of(cls, cfg)  # the architecture's own knobs
    c = Canvas(width=cls.diagram_width(opts, cfg, ranking), tasks=list(ranking))
    total = c.width + RETRIEVAL_WIDTH * len(retrieval)
    draw_input(c, cfg, f"embeddings (dim {cfg.emb_dim})" + (" + text" if cfg.text_features else ""), width=total)
    cls.draw(c, opts, cfg)
    T = len(ranking)
    for x, t in zip(c.task_x, ranking):
        c.box(x, 3.2, c.width / T * 0.7, 0.6, f"tower {sizes(cfg.towers)}", "tower")
        c.box(x, 4.3, c.width / T * 0.7, 0.4, t, "head")
        c.arrow((x, 3.5), (x, 4.1))
    for q, t in enumerate(retrieval):
        _retrieval_towers(c, cfg, c.width + RETRIEVAL_WIDTH * (q + 0.5), t)
    c.width = total
    fig = go.Figure()
    for (x0, y0), (x1, y1) in c.arrows:
        fig.add_shape(type="line", x0=x0, y0=y0, x1=x1, y1=y1, line=dict(color="#999", width=1), layer="below")
    for x0, y0, x1, y1, label, colour in c.boxes:
        fig.add_shape(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, fillcolor=colour, line=dict(color="#555", width=1))
        fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=label, showarrow=False, font=dict(size=11))
    for x, y, text, size in c.notes:
        fig.add_annotation(x=x, y=y, showarrow=False, font=dict(size=size), text=text)
    fig.update_xaxes(visible=False, range=[-0.1, c.width + 0.1])
    fig.update_yaxes(visible=False, range=[0, 5])
    fig.update_layout(title=f"{cls.label} network" + (" + retrieval towers" if retrieval else ""), height=340,
                      margin=dict(l=5, r=5, t=40, b=5), plot_bgcolor="white", showlegend=False)
    return fig


def _retrieval_towers(c, cfg: ModelConfig, x: float, task: str) -> None:
    """One retrieval task: a user tower and an item tower from the embeddings to a scaled
    cosine, its head (Yi et al., RecSys 2019's in-batch softmax with logQ correction)."""
    layers = (sizes(cfg.retrieval_layers) + "→" if cfg.retrieval_layers else "") + str(cfg.retrieval_dim)
    w = RETRIEVAL_WIDTH * 0.42
    for dx, side in ((-0.25, "user"), (0.25, "item")):  # two towers side by side inside the column
        bottom, top = c.box(x + dx * RETRIEVAL_WIDTH, 1.5, w, 0.7, f"{side} tower<br>{layers}", "extra")
        c.arrow(c.from_input(x + dx * RETRIEVAL_WIDTH), bottom)
        c.arrow(top, (x, 2.95))
    c.box(x, 3.2, RETRIEVAL_WIDTH * 0.8, 0.5, f"cos / τ={cfg.retrieval_temperature:g}", "extra")
    c.box(x, 4.3, RETRIEVAL_WIDTH * 0.8, 0.4, f"{task} (retrieval)", "head")
    c.arrow((x, 3.45), (x, 4.1))


def contributions(why: pd.DataFrame, labels: list[str], tasks: list[str], colours: dict[str, str] | None = None
                  ) -> go.Figure:
    """Each task's part of the fused score per recommended item (`mtrlib.serve.recommend.explain`'s
    contrib:<task> columns): one horizontal bar per item, one segment per task; the parts sum
    to the fused score (log-probabilities are negative: a longer bar to the left costs more)."""
    fig = go.Figure()
    colours = colours or task_colours(tasks)
    y = [f"{k + 1}. {str(t)[:40]}" for k, t in enumerate(labels)]
    for t in tasks:
        col = f"contrib:{t}"
        if col not in why.columns or not np.any(why[col].to_numpy() != 0):
            continue
        fig.add_trace(go.Bar(x=why[col], y=y, orientation="h", name=t, marker_color=colours.get(t),
                             hovertemplate=f"{t}: %{{x:.3f}}<extra></extra>"))
    fig.update_layout(title="Each task's part of the fused score", barmode="relative", xaxis_title="weight × score",
                      yaxis=dict(autorange="reversed"), **{**LAYOUT, "height": 120 + 26 * len(labels)})
    return fig


DASHES = ["solid", "dash", "dot", "dashdot"]


def conflict(runs: dict[str, pd.DataFrame], x: str = "epoch", pair: str | None = None, smoothing: float = 0.0,
             title: str = "Gradient conflict (cosine between task gradients)") -> go.Figure:
    """The cosine between two tasks' gradients on the shared parameters, one line per parameter
    group and task pair (one run), or per run and group for one `pair` (several runs). Below 0
    (shaded) a step that helps one task hurts the other."""
    fig = go.Figure()
    fig.add_hrect(y0=-1, y1=0, fillcolor="#d62728", opacity=0.06, line_width=0, layer="below")
    fig.add_hline(y=0, line=dict(color="#999", width=1, dash="dot"))
    multi = len(runs) > 1
    for r, (label, df) in enumerate(runs.items()):
        if df is None or df.empty or x not in df.columns:
            continue
        groups = groups_in(df.columns) or [None]
        for g_i, g in enumerate(groups):
            for p_i, col in enumerate(columns(df.columns, g)):
                name = col.split("/")[-1]
                if pair is not None and name != pair:
                    continue
                d = df[[x, col]].dropna()
                where = g or "shared"
                fig.add_trace(go.Scatter(
                    x=d[x], y=smooth(d[col], smoothing), mode="lines+markers" if len(d) < 30 else "lines",
                    name=f"{label} · {where}" if multi else (where if pair else f"{where} · {name}"),
                    line=dict(color=PALETTE[(r if multi else g_i) % len(PALETTE)],
                              dash=DASHES[(g_i if multi else 0 if pair else p_i) % len(DASHES)])))
    fig.update_layout(title=title, xaxis_title=x, yaxis_title="cosine", **LAYOUT)
    fig.update_yaxes(range=[-1.05, 1.05])
    return fig


def history_weights(df: pd.DataFrame, title: str) -> go.Figure:
    """Horizontal bars: each past item's weight in one item's score (mtrlib.serve.behaviour.recent_history),
    most recent at the top; positive weights pull the score up, negative ones (DIN) push it down."""
    label = df["title"] if "title" in df.columns else df["item_id"]
    names = [f"{n}. {str(t)[:40]}" for n, t in zip(df["#"], label)]
    w = df["weight"].to_numpy(dtype=float) if "weight" in df.columns else np.zeros(len(df))
    fig = go.Figure(go.Bar(x=w, y=names, orientation="h", marker_color=np.where(w >= 0, PALETTE[0], PALETTE[3]),
                           hovertemplate="%{y}<br>weight %{x:.3f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=max(220, 40 + 22 * len(df)), margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="weight in this item's score", showlegend=False)
    return fig
    return fig


def enlarged(fig: go.Figure, scale: float = 1.45) -> go.Figure:
    """A copy of `fig` for a room watching one screen (classroom mode): taller, larger text and
    markers, thicker lines."""
    out = go.Figure(fig)
    h = out.layout.height or LAYOUT["height"]
    out.update_layout(height=int(h * scale), font=dict(size=17), title_font=dict(size=22))
    for tr in out.data:
        if getattr(tr, "type", "") in ("scatter", "scattergl"):
            size = tr.marker.size if isinstance(tr.marker.size, (int, float)) else 8
            tr.update(marker=dict(size=size * 1.4), line=dict(width=(tr.line.width or 2) * 1.6))
    return out


def task_weights(steps: pd.DataFrame, tasks: list[str], colours: dict[str, str] | None = None) -> go.Figure:
    """The effective task weights over training. Tasks whose weights coincide (all 1 with fixed
    weighting) would hide behind one another: each of them is drawn with its own dash and a
    narrower line on top of a wider one, so every task stays visible, and the title says so."""
    fig = curves({"run": steps}, [f"weight/{t}" for t in tasks], "Effective task weights", x="epoch",
                 colours=colours)
    cols = [f"weight/{t}" for t in tasks if f"weight/{t}" in steps.columns]
    if len(cols) < 2:
        return fig
    same: dict[tuple, list[str]] = {}
    for col in cols:
        key = tuple(np.round(steps[col].to_numpy(dtype=float), 6))
        same.setdefault(key, []).append(series_name(col))
    overlap = [names for names in same.values() if len(names) > 1]
    if not overlap:
        return fig
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    for names in overlap:
        for k, tr in enumerate([tr for tr in fig.data if tr.name in names]):
            tr.line.dash = dashes[k % len(dashes)]
            tr.line.width = max(1.5, 6 - 1.8 * k)
    note = "; ".join(", ".join(n) for n in overlap)
    fig.update_layout(title=f"Effective task weights<br><sup>lines overlap (same weight): {note}</sup>")
    return fig


def metrics_table(rows: list[dict]) -> pd.DataFrame:
    """A test-metrics table whose cells that do not apply (an AUC of a regression task) are empty:
    numbers as text to 4 decimals, "" where a task has no such metric (a grid draws a missing
    number as a grey 'None')."""
    df = pd.DataFrame(rows)
    for c in df.columns:
        if c != "task":
            df[c] = [f"{v:.4f}" if isinstance(v, (int, float)) and np.isfinite(v) else "" for v in df[c]]
    return df
