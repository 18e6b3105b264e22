"""The report's sections about runs, each a small function from mtrlib objects to escaped HTML.

Every number comes from the same mtrlib call the app makes for it (RunInfo.metrics for the Runs
page's table, `Experiment.summary` for its experiments, `recommend` / `explain` for the Recommend
page, `gate_table` / `gate_matrix` for the Embeddings page), so a report never disagrees with
the screen it summarises. Sections return '' when they have nothing to show.
"""
from __future__ import annotations

import math
import platform
import time
from importlib import metadata
from urllib.parse import urlencode

import numpy as np
import pandas as pd

from .. import __version__
from ..config import TrainConfig
from ..eval.pointwise import HEADLINE_KEYS
from ..eval.stats import Estimate
from ..serve.recommend import explain, recommend
from ..share import to_params
from ..viz import charts
from ..viz.project import gate_matrix, gate_table, representations
from ..viz.series import thin
from .page import Page, bullets, esc, fig_text, num, para, table

DEFAULT_APP_URL = "http://localhost:8501/"
VERSION_PACKAGES = ("torch", "numpy", "pandas", "scipy", "plotly", "streamlit")
SAMPLE_USERS = 3
TOP_K = 5
SKIP_METRIC = ("n",)


def ci_text(e: Estimate | None) -> str:
    """'0.7123 ± 0.0040' (one seed: '0.7123'), the string the app's tables show for an estimate."""
    if e is None or e.n == 0 or not math.isfinite(e.mean):
        return ""
    return f"{e.mean:.4f} ± {e.ci95:.4f}" if e.n > 1 and math.isfinite(e.ci95) else f"{e.mean:.4f}"


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts)) if ts else "unknown"


# -- data and setup -------------------------------------------------------------------------------------------

def data_section(infos) -> tuple[str, list[dict]]:
    """One row per distinct dataset among the runs: source, rows per split, users, items, tasks."""
    seen, rows, facts = set(), [], []
    for r in infos:
        d = r.dataset or {}
        key = (d.get("name"), d.get("users"), d.get("items"), d.get("interactions"), tuple(r.task_specs))
        if key in seen:
            continue
        seen.add(key)
        split_rows = d.get("rows") or {}
        facts.append({"source": d.get("name"), "layout": d.get("layout"), "split": d.get("split"),
                      "rows": split_rows, "users": d.get("users"), "items": d.get("items"),
                      "interactions": d.get("interactions"), "tasks": list(r.task_specs)})
        rows.append([d.get("name", ""), d.get("split", ""),
                     " / ".join(f"{k} {v:,}" for k, v in split_rows.items() if isinstance(v, int)),
                     _count(d.get("users")), _count(d.get("items")), _count(d.get("interactions")),
                     ", ".join(r.task_specs)])
    if not rows:
        return "", facts
    html = table(["source", "split", "rows (train / val / test)", "users", "items", "interactions", "tasks"], rows,
                 key="data")
    return html + para("Tasks read as name=column; 'like=like|click' means like is learned on clicked "
                       "impressions only.", "note"), facts


def _count(v) -> str:
    return f"{v:,}" if isinstance(v, int) else ""


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k not in ("weights", "files"):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def setup_diff(cfg, skip=("name",)) -> list[tuple[str, object, object]]:
    """(setting, value, default) for every setting of `cfg` that differs from a fresh TrainConfig."""
    mine, base = _flat(cfg.to_dict()), _flat(TrainConfig().to_dict())
    return [(k, v, base.get(k)) for k, v in mine.items() if k not in skip and v != base.get(k)]


def share_url(cfg, app_url: str = DEFAULT_APP_URL) -> str:
    """The app's address with the setup as query parameters (`mtrlib.share.to_params`): opening it
    loads the same setup (it retrains there; this report keeps the results)."""
    params = to_params(cfg)
    return app_url + ("?" + urlencode(params) if params else "")


def setup_section(cfg, app_url: str = DEFAULT_APP_URL, skip=("name",), intro: str = "") -> tuple[str, dict]:
    diff = setup_diff(cfg, skip)
    url = share_url(cfg, app_url)
    rows = [[k, _show(v), _show(d)] for k, v, d in diff]
    html = (para(intro) if intro else "") + (
        table(["setting", "value", "default"], rows, key="setup") if rows else para("Every setting is the default."))
    html += (f'<p>Share URL (opens this setup in MTR Studio; it trains there again): <a href="{esc(url)}" '
             f'rel="noopener noreferrer">{esc(url)}</a></p>')
    return html, {"differs": {k: v for k, v, _ in diff}, "share_url": url}


def _show(v) -> str:
    if isinstance(v, list):
        return ",".join(map(str, v)) or "[]"
    if isinstance(v, dict):
        return ", ".join(f"{a}={b}" for a, b in v.items()) or "{}"
    return "" if v is None else str(v)


# -- metrics ---------------------------------------------------------------------------------------------------

def run_metrics_section(info) -> tuple[str, dict]:
    """One run's test metrics per task, next to the popularity baseline (one seed: no interval)."""
    rows = []
    for t, ms in (info.metrics or {}).items():
        base = (info.baseline or {}).get(t, {})
        for k, v in ms.items():
            if k in SKIP_METRIC or not isinstance(v, (int, float)):
                continue
            rows.append([t, k, num(v), num(base.get(k)), ms.get("n", "")])
    if not rows:
        return para("This run has no test metrics (it did not finish)."), {}
    html = table(["task", "metric", "test", "popularity", "test rows"], rows, key="metrics", numeric={2, 3, 4})
    html += para("One run, one seed: no confidence interval. Seed alone moves AUC by about ±0.02; repeat the setup "
                 "with several seeds for a 95% interval.", "note")
    return html, {"test": info.metrics, "baseline": info.baseline}


def estimates_section(summary: dict, key: str = "metrics", what: str = "") -> tuple[str, dict]:
    """Mean ± 95% CI per task and metric (`mtrlib.experiments.groups.summarise`)."""
    rows, data = [], {}
    for t, ms in summary.items():
        for k, e in ms.items():
            rows.append([t, k, ci_text(e), num(e.mean), num(e.ci95), e.n])
            data.setdefault(t, {})[k] = e.to_dict()
    if not rows:
        return "", {}
    html = (para(what) if what else "") + table(["task", "metric", "mean ± 95% CI", "mean", "95% CI half-width",
                                                 "seeds"], rows, key=key, numeric={3, 4, 5})
    return html, data


# -- figures ---------------------------------------------------------------------------------------------------

def curves_section(page: Page, runs: dict[str, object], tasks: list[str], loss: bool = True) -> str:
    """Validation curves per task (one line per run), and the training loss of each task of a single run."""
    hists = {fig_text(name): r.history if hasattr(r, "history") else r for name, r in runs.items()}
    out = []
    for t in tasks:
        cols = {k for h in hists.values() for k in HEADLINE_KEYS if f"val/{t}/{k}" in h.epochs.columns}
        metric = next((k for k in HEADLINE_KEYS if k in cols), None)
        if metric is None:
            continue
        data = {n: h.epochs for n, h in hists.items() if not h.epochs.empty}
        out.append(page.figure(charts.curves(data, [f"val/{t}/{metric}"], f"{fig_text(t)}: validation {metric.upper()}",
                                             x="epoch", colours=charts.task_colours(tasks))))
    if loss and len(hists) == 1:
        (name, h), = hists.items()
        cols = [f"loss/{t}" for t in tasks if f"loss/{t}" in h.steps.columns]
        if cols and "step" in h.steps.columns:
            out.append(page.figure(charts.curves({name: thin(h.steps)}, cols, "Training loss per task", x="step",
                                                 colours=charts.task_colours(tasks))))
    return "".join(out)


def tradeoff_section(page: Page, points: list[tuple[str, str, dict]]) -> str:
    """Headline test metric of the first two tasks, one point per run (label, group, metrics)."""
    heads = []
    for _, _, ms in points:
        for t, m in ms.items():
            k = next((k for k in ("auc", "rmse") if k in m), None)
            if k and f"{t} {k}" not in heads:
                heads.append(f"{t} {k}")
    if len(heads) < 2 or not points:
        return ""
    x, y = heads[0], heads[1]
    df = pd.DataFrame([{"run": fig_text(lab), "model": fig_text(grp),
                        **{f"{t} {k}": v for t, m in ms.items() for k, v in m.items()}} for lab, grp, ms in points])
    if x not in df.columns or y not in df.columns:
        return ""
    return page.figure(charts.tradeoff(df, x, y))


def gates_section(page: Page, run) -> str:
    """Task x expert gate weights (the Embeddings page's heat-map), for models with experts."""
    if not any(r.startswith("gate:") for r in representations(run)):
        return ""
    gt = gate_table(run)
    if gt.empty:
        return ""
    M, rows, experts = gate_matrix(gt, None, getattr(run.model, "expert_names", []))
    fig = charts.heatmap(M, [fig_text(r) for r in rows], [fig_text(e) for e in experts],
                         f"Average gate weight · {fig_text(run.name)}")
    return page.figure(fig) + para("How much each task listens to each expert, averaged over test pairs: tasks "
                                   "that share experts share what they learn.", "note")


def sample_users(run, n: int = SAMPLE_USERS) -> list[str]:
    """The users with the most held-out test rows (ties: data order): known, and worth a look."""

    rows = np.asarray(run.test["user"])
    if not len(rows):
        return list(map(str, run.users.index[:n]))
    counts = np.bincount(rows, minlength=run.n_users)
    order = np.lexsort((np.arange(len(counts)), -counts))[:n]
    return [str(run.users.index[i]) for i in order if counts[i] > 0]


def topk_section(run, users: list[str], k: int = TOP_K) -> tuple[str, dict]:
    """Each sample user's top-k as the Recommend page shows it (default fusion), with each task's
    part of the fused score (`explain`'s contrib:<task>, summing to the fused score)."""
    html, data = [], {}
    for u in users:
        df = recommend(run, u, k=k)
        contrib = None
        if not df.attrs.get("fallback") and len(df):
            contrib = explain(run, u, df["item_id"].tolist())
        label = "title" if "title" in df.columns else "item_id"
        parts = [c for c in (contrib.columns if contrib is not None else []) if c.startswith("contrib:")]
        header = ["#", "item"] + (["genre"] if "genre" in df.columns else []) + ["fused score"] + \
            [f"{t} score" for t in run.task_names] + [f"{c.split(':', 1)[1]} part" for c in parts]
        rows = []
        for j, (_, r) in enumerate(df.iterrows()):
            row = [int(r["rank"]), r[label]] + ([r["genre"]] if "genre" in df.columns else []) + [num(r["score"])]
            row += [num(r[t]) for t in run.task_names] + [num(contrib[c].iloc[j]) for c in parts]
            rows.append(row)
        weights = df.attrs.get("fusion", {})
        html.append(f"<h3>User {esc(u)}</h3>" + para("Fusion weights: " + ", ".join(f"{t}={w:g}" for t, w in
                                                                                       weights.items()), "note")
                    + "".join(para(n, "note") for n in df.attrs.get("notes", []))
                    + table(header, rows, key=f"topk:{u}", numeric=set(range(2, len(header)))))
        data[u] = {"items": df["item_id"].astype(str).tolist(), "score": df["score"].astype(float).tolist(),
                   "tasks": {t: df[t].astype(float).tolist() for t in run.task_names},
                   "parts": {c.split(":", 1)[1]: contrib[c].astype(float).tolist() for c in parts}}
    if not html:
        return "", {}
    intro = para(f"Top {k} unseen items for {len(users)} test users, ranked by the fused score (the sum of each "
                 "task's weight × its score, as on the Recommend page). A task's part is its share of that sum.")
    return intro + "".join(html), data


# -- provenance --------------------------------------------------------------------------------------------------

def versions() -> dict[str, str]:
    """Software versions (read from the installed distributions: nothing heavy is imported)."""
    out = {"mtrlib": __version__, "python": platform.python_version(), "platform": platform.platform(terse=True)}
    for p in VERSION_PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return out


def provenance_section(infos, generated: float) -> tuple[str, dict]:
    """Software versions, and when the runs were trained and the report made."""
    v = versions()
    dates = sorted(r.created for r in infos if r.created)
    trained = (when(dates[0]) if len(dates) <= 1 or dates[0] == dates[-1]
               else f"{when(dates[0])} to {when(dates[-1])}") if dates else "unknown"
    rows = [["trained", trained], ["report generated", when(generated)]] + [[k, val] for k, val in v.items()]
    return table(["", ""], rows, key="versions"), {"versions": v, "trained": [r.created for r in infos],
                                                   "generated": generated}


__all__ = ["ci_text", "data_section", "setup_section", "setup_diff", "share_url", "run_metrics_section",
           "estimates_section", "curves_section", "tradeoff_section", "gates_section", "sample_users",
           "topk_section", "versions", "provenance_section", "bullets"]
