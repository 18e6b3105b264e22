"""Expert health on the pages (mtrlib.train.experts): the Train page's live view, the Embeddings
page's tab beside the gate heat-map, the Runs page's overlay of dead-unit shares."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mtrlib.train import experts
from mtrlib.viz import charts
from pages._shared import chart, plain


def health_of(row) -> dict:
    """The health in an epoch row (a dict or a DataFrame row of history); {} when it has none."""
    if isinstance(row, pd.Series):
        row = row.to_dict()
    return experts.from_row(row) if row else {}


def last_health(epochs: pd.DataFrame) -> dict:
    """The last epoch's health in a history's epoch rows (its "epoch" added); {} when none carries it."""
    if epochs is None or epochs.empty or "expert_sample" not in epochs.columns:
        return {}
    rows = epochs.dropna(subset=["expert_sample"])
    if rows.empty:
        return {}
    health = health_of(rows.iloc[-1])
    if health and "epoch" in rows.columns:
        health["epoch"] = int(rows["epoch"].iloc[-1])
    return health


def show_health(health: dict, key: str) -> None:
    """Dead-unit share per expert (a bar chart), the experts' and the tasks' numbers (tables), and
    the flags raised, each with its rule."""
    if not health:
        st.caption("No expert health for this run: its architecture has no experts, it was trained with "
                   "the measurement off, or before it existed.")
        return
    ex, tasks = health["experts"], health["tasks"]
    where = f" (epoch {health['epoch']})" if health.get("epoch") is not None else ""
    fig = go.Figure(go.Bar(x=list(ex), y=[e["dead_share"] for e in ex.values()], marker_color="#d62728"))
    fig.update_layout(title=f"Dead-unit share per expert{where}", yaxis=dict(range=[0, 1], title="share"),
                      height=300, margin=dict(l=40, r=10, t=40, b=40))
    a, b = st.columns(2)
    chart(fig, key=f"{key}_dead", where=a)
    b.dataframe(pd.DataFrame([{
        "task": t, "effective experts (mean gate)": s["eff_experts"],
        "effective experts (per example)": s["example_eff_experts"], "gate entropy": s["entropy"],
        "on its own experts": s.get("own_share"), "flags": ", ".join(s["flags"])} for t, s in tasks.items()]),
        hide_index=True, key=f"{key}_tasks")
    st.dataframe(pd.DataFrame([{
        "expert": n, "dead share": e["dead_share"], "mean output norm": e["mean_norm"],
        "belongs to": e["owner"] or ("its task group" if n.startswith("group ") else "shared"),  # (HoME's group experts)
        "top task's share": max(e["task_share"].values()) if e.get("task_share") else None,
        "flags": ", ".join(e["flags"])} for n, e in ex.items()]), hide_index=True, key=f"{key}_experts")
    lines = [f"{f['flag']}: {f['subject']} ({f['value']:.0%})" for f in health["flags"]]
    st.caption("  \n".join([plain(x) for x in lines] or ["No expert flagged."]))
    st.caption("  \n".join(plain(f"{k}: {rule}") for k, rule in experts.RULES.items())
               + plain(f"  \nMeasured on {health['sample']:,} validation examples (the same ones every epoch)."))


def dead_share_overlay(runs: dict[str, pd.DataFrame], key: str, x: str = "epoch") -> bool:
    """Dead-unit share per epoch, one line per (run, expert); False when no run measured it."""
    cols = sorted({c for df in runs.values() if df is not None for c in df.columns if c.startswith("expert_dead/")})
    if not cols:
        return False
    chart(charts.curves(runs, cols, "Dead-unit share per expert (expert health)", x=x), key=key)
    return True
