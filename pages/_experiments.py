"""Streamlit glue for experiments, shared by the Train, Runs, Sweep, Pareto and Lessons pages:
the session's one background sweep (repeats, sweeps, fronts and lessons all run as one), its
progress with a Stop button, the summary tables, and the Runs page's experiments section."""
from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from mtrlib.errors import UserError

from mtrlib.experiments import Sweep, SweepJob, experiments
from mtrlib.experiments.groups import compare, sentence
from mtrlib.experiments.settings import label
from mtrlib.report import compare_report
from mtrlib.eval.stats import Estimate
from pages._shared import plain, store

KEY = "sweep_job"


def sweep_job() -> SweepJob | None:
    return st.session_state.get(KEY)


def busy() -> bool:
    j = sweep_job()
    return j is not None and j.active


def start(sweep: Sweep, dataset=None, title: str = "sweep", purpose: str = "", load=None) -> bool:
    """Start `sweep` as this session's background sweep; False (with the message shown) if refused."""

    if busy():
        st.warning("An experiment is already running in this session: stop it first, or wait for it.")
        return False
    job = SweepJob(sweep, dataset, store=store(), title=title, load=load)
    job.purpose = purpose
    try:
        job.start()
    except UserError as e:
        st.error(plain(e))
        return False
    st.session_state[KEY] = job
    return True


def progress_panel(purpose: str) -> SweepJob | None:
    """Progress of this session's sweep, when it is for `purpose` ('run 7 of 24, about 40 s left'),
    with a Stop button; redraws the page once the sweep ends. Returns the job (any state)."""
    job = sweep_job()
    if job is None or getattr(job, "purpose", "") != purpose:
        if busy():
            st.info(f"Another experiment of this session is running ({plain(job.title)}); this page waits for it.")
        return None
    _panel(purpose, job.active)
    return job


def _panel(purpose: str, active: bool) -> None:
    @st.fragment(run_every=1.0 if active else None)
    def panel():
        job = sweep_job()
        if job is None:
            return
        s = job.snapshot()
        p = s["progress"]
        frac = p.done / max(1, p.total)
        if s["state"] == "running":
            waiting = {"waiting": " · waiting for a free training slot",
                       "sharing": " · another session is training this very run: shared, not trained twice"
                       }.get(p.state, "")
            st.progress(min(1.0, frac), text=f"{plain(job.title)}: {s['text']}{waiting}")
            if st.button("Stop", key=f"x_stop_{purpose}", help="Ends the run in progress; every finished run is kept."):
                job.stop()
                job.join(timeout=5)
                st.rerun()
        elif s["state"] == "failed":
            st.error(plain(s["error"]))
        elif s["state"] == "stopped":
            st.warning(f"Stopped: {s['text']}. The finished runs are kept; run it again to carry on.")
        else:
            st.success(f"Finished: {s['text']}.")
        failed = [c for c in s["cells"] if c.status == "failed"]
        if failed:
            st.warning(f"{len(failed)} run(s) failed: {plain(failed[0].message.splitlines()[0])}")
        if active and s["state"] != "running":
            st.rerun()  # the page was drawn for a running sweep: redraw it with the results

    panel()


def table(df, key: str) -> None:
    """st.dataframe in a container keyed `key` (so a test can find it: a grid itself has no key class)."""
    with st.container(key=key):
        st.dataframe(df, hide_index=True)


def fmt(e: Estimate | None) -> str:
    if e is None or e.n == 0 or not math.isfinite(e.mean):
        return ""
    return f"{e.mean:.4f} ± {e.ci95:.4f}" if e.n > 1 and math.isfinite(e.ci95) else f"{e.mean:.4f}"


def summary_rows(result, names: dict[int, str] | None = None, headline: bool = False) -> pd.DataFrame:
    """One row per configuration of a SweepResult: its settings, then mean ± 95% CI per metric
    (with `headline`, AUC and RMSE only)."""
    rows = []
    for i, c in enumerate(result.configs):
        s = result.summary(i)
        row = {"setting": (names or {}).get(i, c.label) + (" (single-task reference)" if c.role == "corner" else "")}
        n = 0
        for path in result.metrics():
            if headline and not path.endswith(("/auc", "/rmse")):
                continue
            t, k = path.split("/")
            e = (s.get(t) or {}).get(k)
            row[f"{t} {k}"] = fmt(e)
            n = max(n, e.n if e is not None else 0)
        row["seeds"] = n
        rows.append(row)
    return pd.DataFrame(rows)


# -- the Runs page: experiments ------------------------------------------------------------------------

def experiments_section(runs) -> None:
    """Runs of one setup with different seeds, as experiments: mean ± 95% CI per task metric, and
    two experiments compared paired over their common seeds, with a verdict in words."""
    exps = experiments(runs)
    if not exps:
        return
    st.subheader("Experiments (runs grouped by setup, mean ± 95% CI over seeds)")
    st.caption("Runs of the same setup that differ only by their seed form one experiment (repeat a setup with "
               "**Repeat with N seeds** on the Train page, or a sweep). Only finished runs count, one per seed.")
    rows = []
    for e in exps:
        row = {"experiment": e.label, "model": e.runs[0].model, "seeds": e.n,
               "seed list": ",".join(map(str, e.seeds))}
        for t, ms in e.summary.items():
            for k, est in ms.items():
                if k in ("auc", "rmse", "logloss"):
                    row[f"{t} {k}"] = fmt(est)
        rows.append(row)
    table(pd.DataFrame(rows), key="x_exps")
    if len(exps) < 2:
        return
    st.markdown("**Compare two experiments** (B against A, paired over the seeds both ran)")
    names = [f"{e.label} · {e.n} seed{'s' if e.n != 1 else ''} · {e.group[-6:]}" for e in exps]
    a_col, b_col = st.columns(2)
    ia = a_col.selectbox("A", range(len(exps)), index=min(1, len(exps) - 1), format_func=lambda i: names[i],
                         key="x_cmp_a")
    ib = b_col.selectbox("B", range(len(exps)), index=0, format_func=lambda i: names[i], key="x_cmp_b")
    if ia == ib:
        st.caption("Choose two different experiments.")
        return
    diffs, common = compare(exps[ia].per_seed, exps[ib].per_seed)
    table(pd.DataFrame([{"task": d.task, "metric": d.metric, "A": fmt(d.a), "B": fmt(d.b),
                         "B - A (paired)": fmt(d.diff) if d.diff is not None else "",
                         "verdict for B": d.verdict} for d in diffs]), key="x_cmp")
    a_exp, b_exp = exps[ia], exps[ib]
    st.download_button("Download report", lambda: compare_report(a_exp, b_exp), file_name="comparison-report.html",
                       mime="text/html", key="x_cmp_report", help="This comparison as one HTML file (offline).")
    if len(common) >= 2:
        heads = [d for d in diffs if d.metric in ("auc", "rmse")]
        st.markdown("\n".join(f"- {plain(sentence(d))}" for d in heads))
    else:
        st.info("These experiments share fewer than two seeds, so no paired difference is claimed: repeat both "
                "with the same seeds (e.g. 0, 1, 2) to compare them.")


# -- the Train page: repeat with N seeds ---------------------------------------------------------------

def repeat_section(cfg, dataset, problem: str | None, job_busy: bool) -> None:
    """'Repeat with N seeds': the current setup as one experiment, in the background; then its
    mean ± 95% CI per task and metric."""
    import copy

    # open while this session has a repeat (running or ended): its progress and result are inside
    with st.expander("Repeat with N seeds (mean ± 95% CI)", expanded=getattr(sweep_job(), "purpose", "") == "repeat"):
        st.caption("One run against one run differs by about ±0.02 AUC from the seed alone. Repeat the setup "
                   "with several model and split seeds to see its mean and 95% confidence interval.")
        c1, c2 = st.columns([1, 1])
        n = c1.number_input("Repeat with N seeds", 2, 10, 3, key="t_repeat_n")
        go = c2.button(f"Train {n} seeds", key="t_repeat", disabled=busy() or problem is not None,
                       width="stretch")
        if go:
            c = copy.deepcopy(cfg)
            sweep = Sweep(c, seeds=list(range(c.seed, c.seed + int(n))))
            if start(sweep, dataset, title=f"{n} seeds", purpose="repeat"):
                st.rerun()
        job = progress_panel("repeat")
        if job is not None and job.result is not None:
            table(summary_rows(job.result, headline=True).drop(columns=["setting"]), key="t_repeat_table")
            st.page_link("pages/runs.py", label="Compare experiments on the Runs page →", icon=":material/monitoring:")


__all__ = ["sweep_job", "busy", "start", "progress_panel", "summary_rows", "experiments_section", "repeat_section",
           "fmt", "label"]
