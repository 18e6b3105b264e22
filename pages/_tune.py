"""The Sweep page's "Tune (Optuna)" mode: instead of every point of a grid, Optuna picks the next
setting to try (TPE for one objective, NSGA-II for two), each trial the mean over seeds of the
validation metric. The study is kept in the run store, so the Pareto page can draw it."""
from __future__ import annotations

import copy

import pandas as pd
import streamlit as st

from mtrlib.experiments.tune import Dimension, TuneJob
from pages._experiments import busy
from pages._shared import plain, store


def tune_panel(c, ds, names: list[str], keys: list[str]) -> None:
    objectives = st.multiselect("Objectives (validation metrics)", [f"{t}/auc" for t in names] + [f"{t}/rmse" for t in names],
                                default=[f"{t}/auc" for t in names[:2]], max_selections=2, key="t_obj",
                                help="One: TPE with pruning on the validation curve. Two: NSGA-II and a Pareto front.")
    numeric = [k for k in keys if k.startswith("weights.") or k in ("lr", "dropout", "weight_decay", "emb_dim")]
    a, b, d, e = st.columns([2, 1, 1, 1])
    key = a.selectbox("Setting to search", numeric or keys, key="t_key")
    low = b.number_input("from", value=0.125 if key.startswith("weights.") else 0.001, format="%g", key="t_low")
    high = d.number_input("to", value=8.0 if key.startswith("weights.") else 0.1, format="%g", key="t_high")
    log = e.toggle("log scale", value=True, key="t_log")
    f, g = st.columns(2)
    trials = f.number_input("Trials", 2, 100, 6, key="t_trials")
    seeds = g.number_input("Seeds per trial", 1, 10, 2, key="t_seeds")
    problem = None if objectives and low < high and (low > 0 or not log) else \
        "Pick an objective, and a range whose start is below its end (above 0 on a log scale)."
    if problem:
        st.error(problem)
    if st.button("Tune", type="primary", key="t_run", disabled=busy() or problem is not None):
        job = TuneJob(copy.deepcopy(c), list(objectives), [Dimension(key, float(low), float(high), bool(log))],
                      int(trials), list(range(c.seed, c.seed + int(seeds))), dataset=ds, store=store())
        st.session_state["tune_job"] = job.start()
    progress()


@st.fragment(run_every=2.0)
def progress() -> None:
    job = st.session_state.get("tune_job")
    if job is None:
        return
    if job.error:
        st.error(plain(job.error))
    st.caption(("tuning…" if job.active else "finished") + f" · {len(job.trials)} trials done")
    if job.trials:
        rows = [{"trial": t["number"], **{k: round(v, 4) for k, v in t["settings"].items()},
                 **{o: round(v, 4) for o, v in zip(job.args[1], t["values"])}} for t in job.trials]
        st.dataframe(pd.DataFrame(rows), hide_index=True, key="t_table")
    if job.result is not None and len(job.args[1]) == 2:
        st.caption(f"Study `{job.result.name}` is kept in the run store: the Pareto page draws it beside a grid's "
                   "front.")
