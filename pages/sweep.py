"""Sweep: vary some settings of the current setup, each combination with several seeds, in the
background; then every combination's mean ± 95% CI and the front of two metrics."""
import copy
import importlib.util

import streamlit as st

from mtrlib.errors import UserError
from mtrlib.experiments import Sweep
from mtrlib.experiments.charts import front
from mtrlib.experiments.settings import parse_values, suggest, sweepable
from mtrlib.report import sweep_report
from pages._experiments import busy, progress_panel, start, summary_rows, table
from pages._shared import boot, cfg, chart, current_dataset, explain, halt, plain, store, task_names

boot()
c = cfg()
st.title("Sweep")
explain(
    "A **sweep** trains every combination of the settings you vary, each with several seeds, from the setup on "
    "the Train page. Each combination's test metrics are shown as a mean with its 95% confidence interval, so "
    "you can tell a real effect from seed noise. Runs go through the server's training slots one at a time, and "
    "are saved: stopping keeps every finished run, and running the same sweep again reuses them.\n\n"
    "The chart puts one task's metric against another's: the **front** joins the combinations no other beats on "
    "both (the best trade-offs on offer); the others are greyed."
)
ds, err = current_dataset()
if err:
    st.error(plain(err))
    halt()
names = task_names(ds)
st.caption(f"Starts from the Train page's setup · data **{plain(ds.name)}** · tasks " + plain(", ".join(names)))

keys = sweepable(names, world=c.data.source == "world")
if importlib.util.find_spec("optuna") is not None and st.radio(
        "Mode", ["Grid", "Tune (Optuna)"], horizontal=True, key="s_mode",
        help="Grid: every combination. Tune: Optuna chooses each next setting from the trials so far.") != "Grid":
    from pages._tune import tune_panel
    tune_panel(c, ds, names, keys)
    halt()
n_axes = st.number_input("Settings to vary", 1, 3, 1, key="s_n_axes")
axes, problem = [], None
for k in range(int(n_axes)):
    a, b = st.columns([1, 2])
    key = a.selectbox(f"Setting {k + 1}", keys, index=min(k, len(keys) - 1), key=f"s_key_{k}")
    text = b.text_input(f"Values of {key} (comma separated)", value=suggest(key), key=f"s_vals_{k}_{key}")
    try:
        axes.append(parse_values(key, text))
    except UserError as e:
        problem = str(e)
s1, s2 = st.columns(2)
seeds = s1.number_input("Seeds per combination", 1, 10, 3, key="s_seeds")
corners = s2.toggle("Also train single-task models (the reference corner)", value=False, key="s_corners")
sweep = Sweep(copy.deepcopy(c), axes, list(range(c.seed, c.seed + int(seeds))),
              corners=[{"arch": "single"}] if corners else [], name="sweep")
try:
    configs = sweep.check(names) if problem is None else []
except UserError as e:
    problem, configs = str(e), []
if problem:
    st.error(plain(problem))
else:
    st.caption(f"{len(configs)} combinations × {len(sweep.seeds)} seeds = **{sweep.total} runs**.")
if st.button("Run the sweep", type="primary", key="s_run", disabled=busy() or problem is not None):
    if start(sweep, ds, title="sweep", purpose="sweep"):
        st.rerun()
job = progress_panel("sweep")

res = job.result if job is not None else None
if res is None and job is not None and not job.active and job.cells:
    st.caption("The sweep ended before a summary could be made.")
if res is not None and any(cell.status == "finished" for cell in res.cells):
    st.subheader("Every combination: mean ± 95% CI over seeds")
    table(summary_rows(res), key="s_table")
    metrics = res.metrics()
    if len(metrics) >= 2:
        dx, dy = res.default_axes()
        a, b = st.columns(2)
        x = a.selectbox("x: test metric", metrics, index=metrics.index(dx) if dx in metrics else 0, key="s_x")
        y = b.selectbox("y: test metric", metrics, index=metrics.index(dy) if dy in metrics else 1, key="s_y")
        groups = res.front_groups(x, y)
        hv = res.hypervolume(x, y)
        chart(front(groups, x, y, f"Sweep: {y} against {x}", corner=res.best_single(x, y)), key="s_front")
        st.caption(f"Front: {', '.join(res.configs[i].label for i in res.front(x, y))} · hypervolume above the "
                   f"reference point {res.reference(x, y)}: {hv:.4f}")
    else:
        x = y = None
    st.download_button("Download report", lambda: sweep_report(res, store=store(), title="Sweep", x=x, y=y),
                       file_name="sweep-report.html", mime="text/html", key="s_report",
                       help="This sweep as one HTML file that opens offline in any browser.")
