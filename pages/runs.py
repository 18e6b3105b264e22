"""Runs & curves: every saved run, overlaid curves, a settings/metrics table that highlights
what differs, and the trade-off scatter (one task's metric against another's, one point per run)."""
import importlib.util
import json

import pandas as pd
import streamlit as st

from mtrlib.viz import charts
from mtrlib.train import telemetry
from mtrlib.eval.pointwise import HEADLINE_KEYS
from mtrlib.report import run_report
from mtrlib.runs import RunError, delete_run, rename_run, run_config_text, run_history, weights_file
from mtrlib.safe import safe_csv
from mtrlib.viz.series import thin
from pages._experts import dead_share_overlay
from pages._shared import boot, chart, explain, halt, may_change, plain, runs_list, visitor

boot()
st.title("Runs & curves")
explain(
    "Each training run is saved with its settings, its curves and its final test metrics. Overlay runs to "
    "compare them: *training loss* shows how fast each task's error falls; *validation AUC* (higher is "
    "better; 0.5 is a coin toss) or *RMSE* (lower is better) shows how well it generalises.\n\n"
    "The **trade-off scatter** puts one task's test metric against another's, one point per run. When tasks "
    "conflict, improving one often costs the other (the *seesaw*); a good multi-task model moves the point "
    "up *and* right. Columns that differ between runs are highlighted in the table."
)

runs, problems = runs_list()
for p in problems:
    st.warning(f"Skipped a folder in the run store: {plain(getattr(p, 'message', p))}")
if not runs:
    st.info("No runs yet. Train a model and it appears here.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    halt()

table = pd.DataFrame([{**r.to_row(), "data": r.dataset.get("name", "")} for r in runs])
first = ["id", "name", "arch", "status", "epochs", "tasks", "data", "created"]  # what tells runs apart, first
table = table[[c for c in first if c in table.columns] + [c for c in table.columns if c not in first]]
differs = [c for c in table.columns if c not in ("id", "name", "created") and table[c].astype(str).nunique() > 1]
shown = table.drop(columns=["id"])


def _highlight(col: pd.Series):
    return ["background-color: #fff3b0" if col.name in differs else "" for _ in col]


st.caption("Select runs in the table (click the left edge of a row) to overlay their curves. "
           "Highlighted columns differ between runs.")
sel = st.dataframe(shown.style.apply(_highlight, axis=0).format(precision=4), hide_index=True,
                   on_select="rerun", selection_mode="multi-row", key="r_table")
rows = list(sel.selection.rows) if sel and sel.selection else []
chosen = [runs[i] for i in rows] or runs[:1]

st.subheader("Curves")
a, b, c3, d = st.columns([1, 1, 1, 2])
view = a.radio("Show", ["validation", "training loss", "task weights", "gradient conflict", "expert health"],
               key="r_view")
xaxis = b.radio("x axis", ["epoch", "step", "time"], key="r_x")
smoothing = c3.slider("Smoothing", 0.0, 0.95, 0.0, 0.05, key="r_smooth")
tasks = list(dict.fromkeys(t for r in chosen for t in r.tasks))  # first-seen order
pick = d.multiselect("Tasks", tasks, default=tasks, key="r_tasks")
palette = charts.task_colours(tasks)

label = {"validation": "val", "training loss": "loss", "task weights": "weight", "gradient conflict": "grad",
         "expert health": "experts"}[view]
names = {r.id: (r.name if [x.name for x in chosen].count(r.name) == 1 else f"{r.name} ({r.id[-6:]})") for r in chosen}
live = any(r.status == "running" for r in chosen)


@st.fragment(run_every=2.0 if live else None)
def curve_grid() -> dict:
    """Re-read each run's history file, so a run still training (here or in another tab) grows.
    Returns the histories it read (by display name), so the full run does not read them twice."""
    histories = {names[r.id]: run_history(r.path) for r in chosen}
    running = {names[r.id] for r in chosen if r.status == "running"}  # live: a bounded number of points
    if live:
        st.caption("A selected run is still training: its curves refresh every 2 seconds.")
    grid = st.columns(2)
    if label == "grad":
        conflict_grid(histories, grid)
        return histories
    if label == "experts":  # dead-unit share per epoch, every selected run (mtrlib.train.experts)
        if not dead_share_overlay({n: h.epochs for n, h in histories.items()}, key="r_experts", x=xaxis):
            st.info("No expert-health measurements in the selected runs (architectures without experts, runs "
                    "trained before it existed, or with it off).")
        return histories
    for n_chart, t in enumerate(pick):
        data, cols, title = {}, [], ""
        for name, h in histories.items():
            if label == "val":
                df = h.epochs
                metric = next((k for k in HEADLINE_KEYS if f"val/{t}/{k}" in df.columns), "rmse")
                col, title = f"val/{t}/{metric}", f"{t}: validation {metric.upper()}"
            else:
                df = h.steps
                col, title = f"{label}/{t}", f"{t}: {'training loss' if label == 'loss' else 'effective weight'}"
            data[name] = thin(df) if name in running else df
            cols = [col]
        if data:
            chart(charts.curves(data, cols, title, x=xaxis, smoothing=smoothing, colours=palette),
                  key=f"r_curve_{t}", where=grid[n_chart % 2])
    return histories


def conflict_grid(histories: dict, grid) -> None:
    """One chart per task pair: the gradient cosine of every selected run, per parameter group."""
    steps = {name: h.steps for name, h in histories.items()}
    pairs = list(dict.fromkeys(c.split("/")[-1] for df in steps.values() for c in telemetry.columns(df.columns)))
    pairs = [p for p in pairs if set(p.split("~")) <= set(pick)]
    if not pairs:
        st.info("No gradient-conflict measurements in the selected runs for these tasks (runs trained before "
                "this chart existed, single-task models, or telemetry switched off).")
        return
    for n_chart, pair in enumerate(pairs):
        chart(charts.conflict(steps, x=xaxis, pair=pair, smoothing=smoothing,
                              title=f"{pair.replace('~', ' vs ')}: gradient cosine"),
              key=f"r_conflict_{pair}", where=grid[n_chart % 2])
    with grid[len(pairs) % 2]:
        explain(telemetry.explanation())
    st.caption("Over each run's last epoch: the mean cosine, and the share of measured steps below 0.")
    st.dataframe(pd.DataFrame(telemetry.table({n: df.to_dict("records") for n, df in steps.items()}, pairs)),
                 hide_index=True)


histories = curve_grid()

finished = [r for r in runs if r.metrics]
if len(finished) >= 1:
    st.subheader("Trade-off between tasks")
    pts = pd.DataFrame([{"run": f"{r.arch_label} · {r.created_str[-8:]}", "model": r.arch_label,
                         **{f"{t} {k}": v for t, ms in r.metrics.items() for k, v in ms.items()
                            if k in ("auc", "rmse", "logloss", "recall@10")}} for r in finished])
    metric_cols = [c for c in pts.columns if c not in ("run", "model")]
    headline = [c for c in metric_cols if c.endswith((" auc", " rmse", " recall@10"))]
    metric_cols = headline + [c for c in metric_cols if c not in headline]
    if len(metric_cols) >= 2:
        x1, y1 = st.columns(2)
        mx = x1.selectbox("x: test metric", metric_cols, index=0, key="r_tx")
        my = y1.selectbox("y: test metric", metric_cols, index=1, key="r_ty")
        chart(charts.tradeoff(pts, mx, my), key="r_trade")
    else:
        st.caption("The trade-off scatter needs runs with two or more tasks.")

from pages._experiments import experiments_section  # noqa: E402  (its own section: seeds as experiments)

experiments_section(runs)

if len(chosen) == 1:
    r = chosen[0]
    st.subheader(f"Manage: {plain(r.name)}")
    st.caption(f"Status: **{r.status}**" + (f" — {plain(r.reason)}" if r.reason else ""))
    if not may_change(r.owner):
        st.info("This run belongs to another session on this server: you can read it, but only whoever "
                "started it, or the teacher, can rename or delete it.")
    n1, n2 = st.columns([3, 1])
    new = n1.text_input("New name", value=r.name, key=f"r_name_{r.id}")
    if n2.button("Rename", key="r_rename"):
        try:
            rename_run(r.path, new, visitor=visitor())
            st.rerun()
        except RunError as e:
            st.error(plain(e))
    h = histories[names[r.id]]
    d1, d2, d3, d4, d5 = st.columns(5)
    d1.download_button("Config (JSON)", run_config_text(r.path), file_name=f"{r.id}-config.json",
                       mime="application/json", key="r_dl_cfg")
    d2.download_button("History (CSV)", safe_csv(pd.concat([h.steps.assign(kind="step"), h.epochs.assign(kind="epoch")],
                                                           ignore_index=True)) or "",
                       file_name=f"{r.id}-history.csv", mime="text/csv", key="r_dl_hist")
    wpath = weights_file(r.path)
    if wpath is not None:
        d3.download_button("Weights (safetensors)", wpath.read_bytes, file_name=f"{r.id}-{wpath.name}",
                           mime="application/octet-stream", key="r_dl_w")
    d4.download_button("Metrics (JSON)", json.dumps({"test": r.metrics, "popularity": r.baseline}, indent=2),
                       file_name=f"{r.id}-metrics.json", mime="application/json", key="r_dl_m")
    d5.download_button("Download report", lambda: run_report(r.path), file_name=f"{r.id}-report.html",
                       mime="text/html", key="r_dl_report", help="One HTML file that opens offline in any browser: "
                       "summary, data, setup, metrics, curves, gates and sample recommendations.")
    if wpath is not None and importlib.util.find_spec("onnxruntime") is not None:
        from mtrlib.serve.onnx_export import export_zip
        st.download_button("Download ONNX", lambda: export_zip(r.path), file_name=f"{r.id}-onnx.zip",
                           mime="application/zip", key="r_dl_onnx",
                           help="The model as ONNX (every task's head; the retrieval towers apart) with "
                                "signature.json: score it with onnxruntime alone (mtrlib/serve/onnx_scorer.py).")
    confirm = st.checkbox("I really want to delete this run", key=f"r_confirm_{r.id}")
    if st.button("Delete run", disabled=not confirm, key="r_delete"):
        try:
            delete_run(r.path, visitor=visitor())
            st.rerun()
        except RunError as e:
            st.error(plain(e))
