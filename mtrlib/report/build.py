"""The five reports: a run, an experiment (repeats over seeds), two experiments compared, a sweep
(or Pareto front) and a lesson. Each returns one self-contained HTML string (`page.Page`), its
sections in the order a stakeholder reads: summary, data, setup, metrics with 95% CIs, curves,
trade-off or front, gates, sample top-K, (comparison: paired differences), versions and dates.
"""
from __future__ import annotations

import time

from ..config import TrainConfig
from ..experiments import experiments
from ..experiments.charts import front
from ..experiments.groups import compare, sentence
from ..experiments.lessons import figure, headline, lesson_json
from ..experiments.settings import resolve
from ..runs import list_runs, load_run, read_info, store_dir
from . import sections as S
from .page import Page, bullets, esc, fig_text, num, para, table
from .summary import compare_summary, group_summary, run_summary, sweep_summary

MAX_CURVE_RUNS = 12  # a sweep's curves: one line per setting, at most this many (the file stays small)


def _experiment_of(info, store=None):
    """The experiment (group over seeds) a run belongs to, as the Runs page groups them."""
    mates = [r for r in list_runs(store) if r.group == info.group]
    return next((e for e in experiments(mates) if e.group == info.group), None)


def run_report(run, *, store=None, title: str | None = None, app_url: str = S.DEFAULT_APP_URL) -> str:
    """One run: its numbers against popularity, curves, gates, sample users' top-K."""
    t0 = time.time()
    run = load_run(run, store)
    info = run.info
    exp = _experiment_of(info, store if store is not None else run.path.parent)
    page = Page(title or f"Run report: {info.name}", f"{info.model} · run {info.id}")
    page.data = {"kind": "run", "run": {"id": info.id, "name": info.name, "status": info.status}}
    page.add("Summary", f'<p class="summary">{esc(run_summary(info, exp))}</p>')
    html, page.data["data"] = S.data_section([info])
    page.add("Data", html)
    html, page.data["setup"] = S.setup_section(run.config, app_url)
    page.add("Setup (what differs from the defaults)", html)
    html, page.data["metrics"] = S.run_metrics_section(info)
    if exp is not None and exp.n >= 2:
        more, page.data["experiment"] = S.estimates_section(
            exp.summary, "experiment", f"The same setup over {exp.n} seeds ({', '.join(map(str, exp.seeds))}):")
        html += more
    page.add("Test metrics per task", html)
    page.add("Curves", S.curves_section(page, {info.name: run}, run.task_names))
    if exp is not None and exp.n >= 2:
        page.add("Trade-off between tasks (one point per seed)",
                 S.tradeoff_section(page, [(r.name, info.model, r.metrics) for r in exp.runs]))
    _model_sections(page, run)
    html, page.data["provenance"] = S.provenance_section([info], t0)
    page.add("Software and dates", html)
    return page.render()


def _model_sections(page: Page, run, users: list[str] | None = None, suffix: str = "") -> list[str]:
    """Gates and sample users' top-K of one trained run (nothing for a run without weights)."""
    if run.weights_path is None:
        page.add("Model", para("This run saved no weights, so its gates and recommendations cannot be shown."))
        return []
    page.add(f"Gate weights{suffix}", S.gates_section(page, run))
    users = users if users is not None else S.sample_users(run)
    html, data = S.topk_section(run, users)
    page.data.setdefault("topk", {})[run.id] = data
    page.add(f"Sample users' top {S.TOP_K}{suffix}", html)
    return users


def _find_experiment(group: str, store=None):

    return next((e for e in experiments(list_runs(store)) if e.group == group), None)


def group_report(exp, *, store=None, title: str | None = None, app_url: str = S.DEFAULT_APP_URL) -> str:
    """An experiment: mean ± 95% CI per task over its seeds, every seed's curves and point."""
    t0 = time.time()
    newest = load_run(exp.runs[0].path)
    page = Page(title or f"Experiment report: {exp.label}", f"{exp.n} seeds · experiment {exp.group}")
    page.data = {"kind": "group", "group": exp.group, "runs": [r.id for r in exp.runs], "seeds": exp.seeds}
    page.add("Summary", f'<p class="summary">{esc(group_summary(exp))}</p>')
    html, page.data["data"] = S.data_section(exp.runs)
    page.add("Data", html)
    html, page.data["setup"] = S.setup_section(newest.config, app_url, skip=("name", "seed"))
    page.add("Setup (what differs from the defaults)", html + para(f"Seeds: {', '.join(map(str, exp.seeds))}."))
    html, page.data["metrics"] = S.estimates_section(exp.summary)
    page.add("Test metrics per task (mean ± 95% CI over seeds)", html + _per_seed_table(exp))
    page.add("Curves (one line per seed)", S.curves_section(page, {r.name: load_run(r.path) for r in exp.runs},
                                                            newest.task_names, loss=False))
    page.add("Trade-off between tasks (one point per seed)",
             S.tradeoff_section(page, [(r.name, exp.label, r.metrics) for r in exp.runs]))
    _model_sections(page, newest, suffix=f" (newest seed: {newest.name})")
    html, page.data["provenance"] = S.provenance_section(exp.runs, t0)
    page.add("Software and dates", html)
    return page.render()


def _per_seed_table(exp) -> str:
    paths = [(t, k) for t, ms in exp.summary.items() for k in ms]
    rows = [[r.seed, r.name] + [num((r.metrics.get(t) or {}).get(k)) for t, k in paths] for r in exp.runs]
    return table(["seed", "run"] + [f"{t} {k}" for t, k in paths], rows, key="per-seed",
                 numeric=set(range(2, 2 + len(paths))))


def compare_report(a, b, *, store=None, title: str | None = None, app_url: str = S.DEFAULT_APP_URL) -> str:
    """B against A, paired over their common seeds (`experiments.groups.compare`), with verdicts."""
    t0 = time.time()
    a_name, b_name = a.label, b.label
    if a_name == b_name:
        a_name, b_name = f"{a_name} (A)", f"{b_name} (B)"
    diffs, common = compare(a.per_seed, b.per_seed)
    ra, rb = load_run(a.runs[0].path), load_run(b.runs[0].path)
    page = Page(title or f"Comparison: {b_name} against {a_name}",
                f"A = {a.group} ({a.n} seeds) · B = {b.group} ({b.n} seeds) · common seeds: "
                + (", ".join(map(str, common)) or "none"))
    page.data = {"kind": "compare", "a": a.group, "b": b.group, "common_seeds": common,
                 "differences": [d.to_dict() for d in diffs]}
    page.add("Summary", f'<p class="summary">{esc(compare_summary(diffs, common, a_name, b_name))}</p>')
    html, page.data["data"] = S.data_section(a.runs + b.runs)
    page.add("Data", html)
    sa, sa_data = S.setup_section(ra.config, app_url, skip=("name", "seed"), intro=f"A: {a_name}")
    sb, sb_data = S.setup_section(rb.config, app_url, skip=("name", "seed"), intro=f"B: {b_name}")
    page.data["setup"] = {"a": sa_data, "b": sb_data}
    page.add("Setup (what differs from the defaults)", _between(ra.config, rb.config) + sa + sb)
    html_a, ma = S.estimates_section(a.summary, "metrics-a", f"A: {a_name}")
    html_b, mb = S.estimates_section(b.summary, "metrics-b", f"B: {b_name}")
    page.data["metrics"] = {"a": ma, "b": mb}
    page.add("Test metrics per task (mean ± 95% CI over seeds)", html_a + html_b)
    rows = [[d.task, d.metric, S.ci_text(d.a), S.ci_text(d.b),
             S.ci_text(d.diff) if d.diff is not None else "", d.verdict] for d in diffs]
    words = [sentence(d, a_name, b_name) for d in diffs if d.metric in ("auc", "rmse")] if len(common) >= 2 else []
    page.add("Paired differences and verdicts (B − A over common seeds)",
             table(["task", "metric", "A", "B", "B − A (paired)", "verdict for B"], rows, key="compare")
             + bullets(words) + para("Each difference is B − A per common seed, with the 95% t-interval of its "
                                     "mean: 'better' or 'worse' when the interval excludes 0, else 'within noise'.",
                                     "note"))
    page.add("Curves (newest seed of each)", S.curves_section(page, {f"A: {a_name}": ra, f"B: {b_name}": rb},
                                                             list(dict.fromkeys(ra.task_names + rb.task_names)),
                                                             loss=False))
    page.add("Trade-off between tasks (one point per seed)",
             S.tradeoff_section(page, [(r.name, f"A: {a_name}", r.metrics) for r in a.runs]
                                + [(r.name, f"B: {b_name}", r.metrics) for r in b.runs]))
    users = _model_sections(page, ra, suffix=f" · A: {a_name}")
    same = ra.info.dataset.get("name") == rb.info.dataset.get("name")
    _model_sections(page, rb, users if same else None, suffix=f" · B: {b_name}")
    html, page.data["provenance"] = S.provenance_section(a.runs + b.runs, t0)
    page.add("Software and dates", html)
    return page.render()


def _between(ca, cb) -> str:
    """The settings in which B's setup differs from A's (seed and name aside)."""
    fa, fb = {k: v for k, v, _ in S.setup_diff(ca, ())}, {k: v for k, v, _ in S.setup_diff(cb, ())}
    keys = [k for k in dict.fromkeys(list(fa) + list(fb)) if k not in ("seed", "name") and fa.get(k) != fb.get(k)]
    if not keys:
        return para("A and B have the same setup.")
    base = S._flat(TrainConfig().to_dict())
    rows = [[k, S._show(fa.get(k, base.get(k))), S._show(fb.get(k, base.get(k)))] for k in keys]
    return para("Where B's setup differs from A's:") + table(["setting", "A", "B"], rows, key="between")


def sweep_report(res, *, store=None, title: str = "Sweep", x: str | None = None, y: str | None = None,
                 by: list[str] | None = None, app_url: str = S.DEFAULT_APP_URL, lesson=None) -> str:
    """A sweep or a Pareto front (a SweepResult): every setting's mean ± CI, the front, curves."""
    t0 = time.time()
    dx, dy = res.default_axes()
    x, y = x or dx, y or dy
    infos = _infos(res, store)
    page = Page(title, f"{len(res.configs)} settings × {len(res.sweep.seeds)} seeds · {len(res.cells)} runs")
    page.data = {"kind": "lesson" if lesson is not None else "sweep", "sweep": res.to_json(x, y)}
    if lesson is not None:

        out = lesson_json(lesson, res)
        page.data["lesson"] = out
        page.add("Summary", f'<p class="summary">{esc(lesson.question)} {esc(out["verdict"])}</p>'
                 + para(sweep_summary(res, x, y, front=lesson.kind == "front", best=lesson.kind != "gain"), "note"))
    else:
        page.add("Summary", f'<p class="summary">{esc(sweep_summary(res, x, y))}</p>')
    html, page.data["data"] = S.data_section(list(infos.values()))
    page.add("Data", html)
    html, page.data["setup"] = S.setup_section(res.sweep.base, app_url, skip=("name", "seed", *_swept(res.sweep)),
                                               intro="The base setup, the swept settings aside:")
    axes = [f"{' + '.join(a.keys)}: {', '.join(':'.join(map(str, v)) for v in a.values)}" for a in res.sweep.axes]
    corners = [f"reference: {c}" for c in res.sweep.corners]
    page.add("Setup (what differs from the defaults)", html + para("Swept:") + bullets(axes + corners)
             + para(f"Seeds: {', '.join(map(str, res.sweep.seeds))}."))
    if lesson is not None:
        h = headline(lesson, res)
        rows = [[s] + [S.ci_text(e) for e in ms.values()] for s, ms in h.items()]
        heads = list(dict.fromkeys(m for ms in h.values() for m in ms))
        page.add("The lesson's numbers (mean ± 95% CI over seeds)",
                 table(["setting"] + heads, rows, key="lesson") + page.figure(_lesson_figure(lesson, res, h)))
    page.add("Test metrics per setting (mean ± 95% CI over seeds)", _settings_table(res))
    if x and y and (lesson is None or lesson.kind == "front"):  # a gain lesson's settings differ in data
        groups = res.front_groups(x, y, by=by)
        for g in groups:  # labels are drawn by Plotly, which renders a subset of HTML
            g["name"] = fig_text(g["name"])
            g["points"] = [(ex, ey, fig_text(lab)) for ex, ey, lab in g["points"]]
        fig = front(groups, x, y, f"{title}: {y} against {x}", corner=res.best_single(x, y))
        hv = res.hypervolume(x, y)
        page.add("Trade-off: the Pareto front", page.figure(fig) + para(
            f"Front: {', '.join(res.configs[i].label for i in res.front(x, y))} · hypervolume above the reference "
            f"point {tuple(round(v, 4) for v in res.reference(x, y))}: {hv:.4f}", "note"))
    page.add("Curves (first seed of each setting)", _sweep_curves(page, res, infos))
    html, page.data["provenance"] = S.provenance_section(list(infos.values()), t0)
    page.add("Software and dates", html + para("Gates and sample recommendations are per model: make a run "
                                               "report of any of these runs for them.", "note"))
    return page.render()


def _swept(sweep) -> set[str]:
    """Config paths the sweep varies (a weight is one entry of the flattened 'weights')."""
    paths = {resolve(k).path for a in sweep.axes for k in a.keys}
    return paths | {"weights" for p in paths if p.startswith("weights.")}


def _lesson_figure(lesson, res, h):
    return figure(lesson, res, h)


def _infos(res, store) -> dict:
    out = {}
    root = store_dir(store)
    for c in res.cells:
        if c.run_id and c.run_id not in out and (root / c.run_id).is_dir():
            out[c.run_id] = read_info(root / c.run_id)
    return out


def _settings_table(res) -> str:
    """The Sweep page's table: one row per setting, mean ± 95% CI per metric."""
    paths = res.metrics()
    rows = []
    for i, c in enumerate(res.configs):
        s = res.summary(i)
        ests = [(s.get(p.split("/")[0]) or {}).get(p.split("/")[1]) for p in paths]
        rows.append([c.label + (" (single-task reference)" if c.role == "corner" else "")]
                    + [S.ci_text(e) for e in ests] + [max((e.n for e in ests if e is not None), default=0)])
    return table(["setting"] + [p.replace("/", " ") for p in paths] + ["seeds"], rows, key="settings")


def _sweep_curves(page: Page, res, infos: dict) -> str:
    runs = {}
    for i, c in enumerate(res.configs[:MAX_CURVE_RUNS]):
        cell = next((x for x in res.cells if x.config == i and x.run_id in infos), None)
        if cell is not None:
            runs[c.label] = load_run(infos[cell.run_id].path)
    if not runs:
        return ""
    tasks = list(dict.fromkeys(t for r in runs.values() for t in r.task_names))
    html = S.curves_section(page, runs, tasks, loss=False)
    if len(res.configs) > MAX_CURVE_RUNS:
        html += para(f"The first {MAX_CURVE_RUNS} of {len(res.configs)} settings are drawn.", "note")
    return html


def lesson_report(lesson, res, *, store=None, title: str | None = None, app_url: str = S.DEFAULT_APP_URL) -> str:
    """A lesson's result: its question, verdict, figure and numbers, then the sweep behind it."""
    x, y = (lesson.metrics + (None, None))[:2] if lesson.kind == "front" else (None, None)
    return sweep_report(res, store=store, title=title or f"Lesson: {lesson.title}", x=x, y=y, app_url=app_url,
                        lesson=lesson)


__all__ = ["run_report", "group_report", "compare_report", "sweep_report", "lesson_report"]
