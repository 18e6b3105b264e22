"""Reports (mtrlib.report, `python -m mtrlib report`): the numbers are the app's, user strings
are escaped, targets resolve (and bad ones say how to fix them), sizes stay small.

The browser half (offline, no script from the data runs, charts drawn) is
tests/e2e/test_report_offline.py."""
from __future__ import annotations

import json
import math

import pytest

from _reports import PAYLOADS, html_text, report_data, start_tags, tables, train_store
from mtrlib.experiments import experiments
from mtrlib.experiments.groups import compare
from mtrlib.report import compare_report, group_report, run_report, sweep_report
from mtrlib.report.page import Page, table
from mtrlib.report.targets import resolve, sweep_from_json
from mtrlib.runs import list_runs, load_run, rename_run
from mtrlib.safe import json_clean
from mtrlib.serve.recommend import explain, recommend

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_store(tmp_path_factory.mktemp("report-runs"))


def _fmt(e):
    from pages._experiments import fmt  # the string the app's experiment tables show
    return fmt(e)


def test_a_run_report_holds_the_apps_numbers(trained):
    store = trained["store"]
    info = next(r for r in list_runs(store) if r.arch == "mmoe")
    html = run_report(info.path)
    data = report_data(html)
    assert data["kind"] == "run" and data["run"]["id"] == info.id
    # the Runs page's metrics (RunInfo.metrics), exactly
    assert data["metrics"]["test"] == json_clean(info.metrics)
    assert data["metrics"]["baseline"] == json_clean(info.baseline)
    shown = tables(html)["metrics"]
    for task, metric, value, *_ in shown[1:]:
        assert value == f"{info.metrics[task][metric]:.4f}"
    # the experiment it belongs to: the Runs page's mean ± 95% CI over its two seeds
    exp = next(e for e in experiments(list_runs(store)) if e.group == info.group)
    assert exp.n == 2
    for t, ms in exp.summary.items():
        for k, e in ms.items():
            got = data["experiment"][t][k]
            assert (got["mean"], got["ci95"], got["n"]) == (e.mean, e.ci95, e.n)
    cells = {(r[0], r[1]): r[2] for r in tables(html)["experiment"][1:]}
    assert cells == {(t, k): _fmt(e) for t, ms in exp.summary.items() for k, e in ms.items()}
    # the Recommend page's top-K (default fusion) and "Why this item?" parts, for each sample user
    run = load_run(info.path)
    topk = data["topk"][info.id]
    assert len(topk) == 3
    for user, got in topk.items():
        df = recommend(run, user, k=5)
        assert got["items"] == df["item_id"].astype(str).tolist()
        assert got["score"] == df["score"].astype(float).tolist()
        for t in run.task_names:
            assert got["tasks"][t] == df[t].astype(float).tolist()
        why = explain(run, user, df["item_id"].tolist())
        for t in run.task_names:
            assert got["parts"][t] == why[f"contrib:{t}"].astype(float).tolist()
        assert all(math.isclose(sum(p[j] for p in got["parts"].values()), got["score"][j], abs_tol=1e-4)
                   for j in range(len(got["items"])))
    # gates for MMoE, the setup that differs from the defaults, versions and the run's date
    assert html.count('class="fig"') >= 4 and "Average gate weight" in html
    assert data["setup"]["differs"]["epochs"] == 1  # the defaults' 8 epochs, changed
    assert data["setup"]["share_url"].startswith("http://localhost:8501/?")
    assert data["provenance"]["versions"]["plotly"] and data["provenance"]["trained"] == [info.created]


def test_a_shared_bottom_report_has_no_gates(trained):
    info = next(r for r in list_runs(trained["store"]) if r.arch == "shared-bottom")
    html = run_report(info.path)
    assert "Average gate weight" not in html and "Gate weights" not in html


def test_a_comparison_report_holds_compares_differences_and_verdicts(trained):
    exps = {e.runs[0].arch: e for e in experiments(list_runs(trained["store"]))}
    a, b = exps["shared-bottom"], exps["mmoe"]
    html = compare_report(a, b)
    data = report_data(html)
    diffs, common = compare(a.per_seed, b.per_seed)
    assert common == [0, 1] and data["common_seeds"] == common
    assert data["differences"] == json_clean([d.to_dict() for d in diffs])
    rows = tables(html)["compare"][1:]
    assert [(r[0], r[1], r[4], r[5]) for r in rows] == [(d.task, d.metric, _fmt(d.diff), d.verdict) for d in diffs]
    summary = html.split('<p class="summary">', 1)[1].split("</p>", 1)[0]
    for t in ("click", "like", "dwell"):  # every task gets its plain-words verdict
        assert f"on {t}" in summary.lower()  # a verdict may open the sentence ("On click ...")
    assert ("within noise" in summary) or ("beyond seed noise" in summary)
    assert "Where B&#x27;s setup differs from A&#x27;s" in html and "model.arch" in html


def test_a_group_report_has_every_seed(trained):
    exp = experiments(list_runs(trained["store"]))[0]
    html = group_report(exp)
    t = tables(html)
    assert [r[0] for r in t["per-seed"][1:]] == [str(r.seed) for r in exp.runs]
    assert {(r[0], r[1]): r[2] for r in t["metrics"][1:]} == {(tk, k): _fmt(e) for tk, ms in exp.summary.items()
                                                             for k, e in ms.items()}


def test_a_sweep_json_is_rebuilt_from_the_store_as_the_sweep_made_it(trained):
    res = trained["result"]
    again = sweep_from_json(json.loads(json.dumps(trained["json"])), trained["store"])
    assert [c.settings for c in again.configs] == [c.settings for c in res.configs]
    for i in range(len(res.configs)):
        assert again.summary(i) == res.summary(i)
    x, y = res.default_axes()
    assert again.front(x, y) == res.front(x, y) and again.hypervolume(x, y) == res.hypervolume(x, y)
    html = sweep_report(again, store=trained["store"], x=x, y=y)
    rows = tables(html)["settings"]
    head = rows[0]
    for i, row in enumerate(rows[1:]):
        s = res.summary(i)
        for col, cell in zip(head[1:-1], row[1:-1]):
            t, k = col.split(" ")
            assert cell == _fmt(s[t][k])


def test_a_lesson_sized_report_stays_under_8_mb(trained):
    """36 runs' worth (12 settings x 3 seeds, each cell a real run of the store): Plotly's
    JavaScript is in the file once, so the size hardly grows with the runs."""
    from mtrlib.experiments.settings import Axis
    from mtrlib.experiments.sweep import Cell, Config, Sweep, SweepResult

    res = trained["result"]
    base = [c for c in res.cells if c.status == "finished"]
    configs = [Config({"weights.like": w, "weights.click": 1.0}) for w in
               (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 0.3, 0.6, 1.5, 3.0, 6.0)]
    cells = [Cell(i, s, "finished", {t: {k: v + 0.001 * i - 0.002 * s for k, v in ms.items()}
                                     for t, ms in base[(i + s) % len(base)].metrics.items()},
                  base[(i + s) % len(base)].run_id, reused=True) for s in range(3) for i in range(len(configs))]
    sweep = Sweep(res.sweep.base, [Axis(("weights.like",), tuple((c.settings["weights.like"],) for c in configs))],
                  [0, 1, 2])
    big = SweepResult(sweep, configs, cells, [f"g-{i}" for i in range(len(configs))])
    html = sweep_report(big, store=trained["store"], title="Lesson-sized")
    size = len(html.encode("utf-8"))
    figs = html.count('class="fig"')
    print(f"lesson-sized report (36 runs): {size / 1e6:.2f} MB, {figs} figures")
    assert size < 8_000_000
    assert html.count("Plotly.newPlot") == html.count('class="fig"') >= 4
    assert html.count("plotly.js v") <= 2  # the library's banner: inlined once


def test_user_strings_are_escaped_everywhere(trained, tmp_path):
    """Run names (they reach titles, summaries, tables and chart legends), a report title, and
    task / column names in a table: every payload shows as text, none as markup."""
    info = next(r for r in list_runs(trained["store"]) if r.arch == "mmoe")
    from test_safety import HOSTILE_TEXT

    for n, evil in enumerate(PAYLOADS + HOSTILE_TEXT[5:7]):
        rename_run(info.path, evil)
        html = run_report(info.path, title=f"{evil} report")
        body = html.split("</head>", 1)[1]
        head_title = html.split("<title>", 1)[1].split("</title>", 1)[0]
        assert "<" not in head_title
        for raw in ("<script>window", "<img src=x", "<svg", "<iframe", "<a href=\"javascript"):
            assert raw not in body, (evil, raw)
        # as the browser parses it: no element or attribute came from the data, and the only
        # scripts are ours (each with the page's one nonce) or the inert JSON block
        tags = start_tags(html)
        assert not {t for t, _ in tags} & {"img", "svg", "iframe", "object", "embed", "b", "i"}, (evil, tags)
        assert not [a for _, attrs in tags for a in attrs if a.startswith("on")], evil
        assert not [v for _, attrs in tags for k, v in attrs.items() if k == "href" and "javascript" in (v or "")]
        scripts = [attrs for t, attrs in tags if t == "script"]
        assert all("nonce" in a or a.get("type") == "application/json" for a in scripts), scripts
        assert len({a["nonce"] for a in scripts if "nonce" in a}) == 1
        assert evil in html_text(html), evil  # shown as the literal text
    page = Page("t")
    cell = table(["<th>col</th>", "task"], [["<b>x</b>", "\"quoted\" & 'single'"]])
    assert "<th>col</th>" not in cell and "&lt;th&gt;col&lt;/th&gt;" in cell and "&quot;quoted&quot;" in cell
    assert "Content-Security-Policy" in page.render() and "connect-src 'none'" in page.render()


def _cli(capsys, *args):
    from mtrlib.__main__ import main

    rc = main(["report", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_the_cli_writes_each_kind_and_prints_one_json_line(trained, tmp_path, capsys):
    store = trained["store"]
    exps = {e.runs[0].arch: e for e in experiments(list_runs(store))}
    run_id = exps["mmoe"].runs[0].id
    sweep_file = tmp_path / "sweep.json"
    sweep_file.write_text("progress line\n" + json.dumps(trained["json"]) + "\n")
    for target, kind in (([run_id], "run"), ([exps["mmoe"].group], "group"),
                         ([f"{exps['shared-bottom'].group}..{exps['mmoe'].group}"], "compare"),
                         ([exps["shared-bottom"].group, run_id], "compare"), ([sweep_file], "sweep")):
        out = tmp_path / f"{kind}.html"
        rc, text, err = _cli(capsys, *target, "--out", out, "--store", store)
        assert rc == 0, err
        last = json.loads(text.strip().splitlines()[-1])
        assert last["kind"] == kind and last["out"] == str(out) and last["bytes"] == out.stat().st_size
        assert out.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("args, words", [
    (["no-such-run"], "No run 'no-such-run'"),
    (["g-ffffffff"], "No experiment 'g-ffffffff'"),
    (["a..b"], "No run 'a'"),
    (["x", "y", "z"], "one target, or two"),
    (["missing.json"], "There is no file"),
    (["lesson:nope"], "There is no lesson 'nope'"),
])
def test_bad_targets_exit_2_with_the_fix(trained, tmp_path, capsys, args, words):
    rc, out, err = _cli(capsys, *args, "--out", tmp_path / "r.html", "--store", trained["store"])
    assert rc == 2 and words in err and "Fix:" in err and "Traceback" not in err, err
    assert not (tmp_path / "r.html").exists()


def test_bad_out_and_non_result_json_are_refused(trained, tmp_path, capsys):
    run_id = list_runs(trained["store"])[0].id
    rc, _, err = _cli(capsys, run_id, "--out", tmp_path / "r.pdf", "--store", trained["store"])
    assert rc == 2 and "--out must name an .html file" in err
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    rc, _, err = _cli(capsys, other, "--out", tmp_path / "r.html", "--store", trained["store"])
    assert rc == 2 and "neither a sweep's nor a lesson's result" in err
    assert resolve([run_id], trained["store"]).kind == "run"


def test_the_runs_page_offers_the_report_of_the_chosen_run_and_of_a_comparison(trained, monkeypatch):
    from _mtr import app_test

    monkeypatch.setenv("MTR_RUN_STORE", str(trained["store"]))
    at = app_test(page="pages/runs.py")
    labels = [(e.proto.label, e.proto.url) for e in at.get("download_button")]
    reports = [lab for lab, _ in labels if lab == "Download report"]
    assert len(reports) == 2, labels  # the chosen run's, and the two experiments' comparison


@pytest.fixture(scope="module")
def funnel(tmp_path_factory):
    """The quick funnel lesson (6 runs), trained once: what the Lessons page would show."""
    from mtrlib.experiments.lessons import get_lesson, run_lesson

    store = tmp_path_factory.mktemp("report-lesson")
    return {"store": store, "json": run_lesson(get_lesson("funnel"), quick=True, store=store)}


def test_a_lesson_report_holds_the_lessons_verdict_and_numbers(funnel, tmp_path, capsys):
    from html import escape

    from mtrlib.experiments import run_sweep
    from mtrlib.experiments.lessons import get_lesson, headline

    out = tmp_path / "lesson.html"
    rc, text, err = _cli(capsys, "lesson:funnel", "--quick", "--out", out, "--store", funnel["store"])
    assert rc == 0, err
    assert json.loads(text.strip().splitlines()[-1])["kind"] == "lesson"
    html = out.read_text()
    data = report_data(html)
    lj = funnel["json"]
    assert data["lesson"]["verdict"] == lj["verdict"] and escape(lj["verdict"]) in html
    assert data["lesson"]["headline"] == json_clean(lj["headline"])
    lesson = get_lesson("funnel")
    h = headline(lesson, run_sweep(lesson.sweep(quick=True), store=funnel["store"], train=False))
    rows = tables(html)["lesson"]
    for row in rows[1:]:
        assert row[1:] == [_fmt(e) for e in h[row[0]].values()]
    assert html.count('class="fig"') >= 2  # the lesson's figure and its curves
    # the same report from the JSON line `lesson` printed
    saved = tmp_path / "lesson.json"
    saved.write_text(json.dumps(lj))
    rc, text, err = _cli(capsys, saved, "--out", tmp_path / "again.html", "--store", funnel["store"])
    assert rc == 0 and json.loads(text.strip().splitlines()[-1])["kind"] == "lesson", err
    # the full-size lesson was never run in this store: the message says how to get it
    rc, _, err = _cli(capsys, "funnel", "--out", tmp_path / "full.html", "--store", funnel["store"])
    assert rc == 2 and "python -m mtrlib lesson funnel" in err and "--quick" in err
