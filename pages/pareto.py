"""Pareto front of task weights: sweep the weight ratio of two tasks on a log grid with seeds,
plot test metric against test metric with error bars, join the non-dominated points, grey the
dominated ones, and score each front by its hypervolume relative to the best single-task pair.
Overlay architectures or weighting methods to compare whole fronts."""
import copy
import importlib.util

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from mtrlib.errors import UserError

from mtrlib.config import ARCH_LABELS, ARCHS, WEIGHTING_LABELS, WEIGHTINGS
from mtrlib.data import parse_tasks
from mtrlib.experiments import Axis, Sweep
from mtrlib.experiments.charts import front
from mtrlib.experiments.settings import ratio_axis, ratio_label
from mtrlib.report import sweep_report
from pages._experiments import busy, progress_panel, start, table
from pages._shared import boot, cfg, chart, current_dataset, explain, halt, plain, store, task_list

boot()
c = cfg()
st.title("Pareto front")
explain(
    "Task weights trade one task against another (the *seesaw*, Tang et al., RecSys 2020). Here the weight ratio "
    "of two tasks runs on a log grid from 1:8 to 8:1, each ratio trained with several seeds. Each point is one "
    "ratio: its test metrics with their 95% confidence intervals as error bars. The points no other ratio beats "
    "on both tasks form the **front** (joined); the others are **dominated** (grey). The star is the **best "
    "single-task pair**: each task trained on its own. The **hypervolume** (Zitzler & Thiele, 1999) is the area "
    "a front dominates above chance (AUC 0.5); relative to the star's, above 1 means the shared model offers "
    "more than training the tasks apart. Overlay architectures or weighting methods to compare whole fronts."
)
ds, err = current_dataset()
if err:
    st.error(plain(err))
    halt()
try:
    tasks = parse_tasks(task_list(ds))
except UserError as e:
    st.error(plain(e))
    halt()
binary = [t.name for t in tasks if t.is_binary]
if len(binary) < 2:
    st.info("A front needs two binary tasks (AUC against AUC): define them on the Data page.")
    halt()

a, b, n = st.columns(3)
tx = a.selectbox("Task on x", binary, index=0, key="p_tx")
ty = b.selectbox("Task on y", [t for t in binary if t != tx], index=0, key="p_ty")
points = n.select_slider("Ratios (log grid, 1:8 to 8:1)", [7, 9, 13], value=7, key="p_points")
s1, s2, s3 = st.columns([1, 2, 2])
seeds = s1.number_input("Seeds", 2, 10, 3, key="p_seeds")
archs = s2.multiselect("Architectures", [x for x in ARCHS if x != "single"], default=[c.model.arch]
                       if c.model.arch != "single" else ["shared-bottom"], format_func=lambda x: ARCH_LABELS[x],
                       key="p_archs")
methods = s3.multiselect("Weighting methods", list(WEIGHTINGS), default=[c.weighting.name],
                         format_func=lambda x: WEIGHTING_LABELS[x], key="p_methods")
if not archs or not methods:
    st.info("Choose at least one architecture and one weighting method.")
    halt()

axes = [ratio_axis(tx, ty, int(points))]
overlay = []
if len(archs) > 1:
    axes.append(Axis.of("arch", archs))
    overlay.append("arch")
if len(methods) > 1:
    axes.append(Axis.of("weighting", methods))
    overlay.append("weighting")
base = copy.deepcopy(c)
if len(archs) == 1:
    base.model.arch = archs[0]
if len(methods) == 1:
    base.weighting = methods[0]
sweep = Sweep(base, axes, list(range(c.seed, c.seed + int(seeds))), corners=[{"arch": "single"}], name="pareto")
try:
    configs = sweep.check([t.name for t in tasks])
    st.caption(f"{len(configs) - 1} weighted setups + 1 single-task reference × {len(sweep.seeds)} seeds = "
               f"**{sweep.total} runs**.")
    problem = None
except UserError as e:
    problem = str(e)
    st.error(plain(problem))
if st.button("Run the front", type="primary", key="p_run", disabled=busy() or problem is not None):
    if start(sweep, ds, title="Pareto front", purpose="pareto"):
        st.rerun()
job = progress_panel("pareto")



def optuna_beside(fig, x: str, y: str) -> None:
    """Draw a stored Optuna study's trials (`python -m mtrlib tune --objective X --objective Y`)
    beside the grid's front: the same axes, each trial's mean test AUCs."""
    if importlib.util.find_spec("optuna") is None:
        return
    from mtrlib.experiments.tune import study_front_points, stored_studies
    from mtrlib.experiments.pareto import front as front_of
    studies = {p.stem: p for p in stored_studies(store())}
    if not studies:
        return
    pick = st.selectbox("Beside it, the trials of an Optuna study", ["none", *studies], key="p_study",
                        help="Studies of the tune verb in the run store, tuned on these two AUCs.")
    pts = study_front_points(studies[pick], [x, y]) if pick != "none" else None
    if pick != "none" and not pts:
        st.caption("That study was tuned on other objectives (or has no finished trial yet).")
    if pts:
        on = sorted(front_of(pts), key=lambda k: pts[k][0])
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers",
                                 marker=dict(symbol="diamond", size=9), name=f"Optuna · {pick} (trials)"))
        fig.add_trace(go.Scatter(x=[pts[k][0] for k in on], y=[pts[k][1] for k in on], mode="lines",
                                 line=dict(dash="dash"), name=f"Optuna · {pick} (front)"))


res = job.result if job is not None else None
if res is not None and any(cell.status == "finished" for cell in res.cells):
    x, y = f"{tx}/auc", f"{ty}/auc"
    keys = [k for k in (f"weights.{tx}", f"weights.{ty}") if k in res.configs[0].settings]
    if len(keys) < 2:  # the sweep on screen is for other tasks than those chosen now
        st.info("The front below was run for other tasks; run it again for these.")
        halt()
    groups = res.front_groups(x, y, by=overlay)
    for g in groups:
        g["points"] = [(ex, ey, ratio_label(res.configs[i].settings, tx, ty))
                       for (ex, ey, _), i in zip(g["points"], g["indices"])]
        if overlay:
            g["name"] = " · ".join(ARCH_LABELS.get(v, WEIGHTING_LABELS.get(v, v)) for v in
                                   (res.configs[g["indices"][0]].settings[k] for k in overlay))
        else:
            g["name"] = f"{ARCH_LABELS.get(base.model.arch, base.model.arch)} · {WEIGHTING_LABELS[base.weighting.name]}"
    corner = res.best_single(x, y)
    fig = front(groups, x, y, f"Task-weight front: {ty} AUC against {tx} AUC ({tx}:{ty} weights)", corner=corner)
    optuna_beside(fig, x, y)
    chart(fig, key="p_front")
    rows = []
    for g in groups:
        on = [g["points"][k][2] for k in sorted(g["front"], key=lambda k: g["points"][k][0].mean)]
        rows.append({"front of": g["name"], "ratios on the front": ", ".join(on),
                     "hypervolume vs single-task": None if g["rhv"] is None else round(g["rhv"], 3)})
    table(pd.DataFrame(rows), key="p_table")
    if corner is not None:
        st.caption(f"Best single-task pair: {tx} AUC {corner[0]:.4f}, {ty} AUC {corner[1]:.4f}.")
    st.download_button("Download report",
                       lambda: sweep_report(res, store=store(), title="Pareto front", x=x, y=y, by=overlay),
                       file_name="pareto-report.html", mime="text/html", key="p_report",
                       help="This front as one HTML file that opens offline in any browser.")
