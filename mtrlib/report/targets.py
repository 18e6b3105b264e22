"""What `python -m mtrlib report TARGET` names, resolved to the objects a report is built from.

TARGET, tried in this order:
- `A..B` (or two targets): a comparison of two experiments, each side named as below;
- a `.json` file: what `python -m mtrlib sweep` or `lesson` printed as its last line (a sweep or
  Pareto result is rebuilt from the run store's finished runs of its groups; a lesson's JSON
  names the lesson);
- `lesson:NAME` or a lesson's name (`conflict`, `seesaw`, ...): the lesson's runs in the store;
- `g-...`: an experiment (group id, or a unique prefix of one);
- anything else: a run (id, unique id prefix, name or folder), as every run verb reads it.
A side of a comparison may be a run: it stands for its experiment.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import TrainConfig
from ..errors import DataError
from ..experiments import experiments, run_sweep
from ..experiments.groups import key_metrics
from ..experiments.lessons import LESSONS, get_lesson
from ..experiments.settings import Axis
from ..experiments.sweep import Cell, Config, Sweep, SweepResult
from ..runs import RunError, list_runs, load_run, read_info, resolve_run
from . import build as B

KINDS = ("run", "group", "compare", "sweep", "lesson")


@dataclass
class Target:
    kind: str  # one of KINDS
    items: list = field(default_factory=list)  # Run path | Experiment(s) | SweepResult | (Lesson, SweepResult)
    label: str = ""


def _experiments(store):
    return experiments(list_runs(store))


def experiment(text: str, store=None):
    """An experiment from a group id (or unique prefix), or from a run of it."""
    text = str(text).strip()
    exps = _experiments(store)
    if text.startswith("g-"):
        hits = [e for e in exps if e.group.startswith(text)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise DataError(f"'{text}' matches {len(hits)} experiments: {', '.join(e.group for e in hits[:5])}.",
                            fix="give more of the group id")
        raise DataError(f"No experiment '{text}' with a finished run in the run store.",
                        fix="list runs with `python -m mtrlib runs --json` (each has its \"group\")")
    info = read_info(resolve_run(text, store))
    hit = next((e for e in exps if e.group == info.group), None)
    if hit is None:
        raise DataError(f"Run '{info.name}' is {info.status}: its experiment has no finished run to report.",
                        fix="finish a run of that setup first (only finished runs count)")
    return hit


def sweep_from_json(d: dict, store=None):
    """The SweepResult of a sweep's JSON line, rebuilt from the store: each configuration's
    group, its newest finished run per seed (what `run_sweep` itself reuses), its metrics."""
    configs = [Config(dict(c.get("settings") or {}), "grid") for c in d["configs"]]
    configs += [Config(dict(c.get("settings") or {}), "corner") for c in d.get("corners") or []]
    groups = [c.get("group") for c in list(d["configs"]) + list(d.get("corners") or [])]
    by = {e.group: e for e in _experiments(store)}
    missing = [g for g in groups if g not in by]
    if len(missing) == len(groups):
        raise DataError("None of the sweep's runs is in the run store.",
                        fix="give the --store the sweep wrote to (or $MTR_RUN_STORE), or run the sweep again")
    seeds = sorted({s for g in groups if g in by for s in by[g].seeds})
    cells = []
    for s in seeds:
        for i, g in enumerate(groups):
            e = by.get(g)
            r = next((r for r in e.runs if r.seed == s), None) if e is not None else None
            cells.append(Cell(i, s, "finished", key_metrics(r.metrics), r.id, reused=True) if r is not None
                         else Cell(i, s))
    keys = list(dict.fromkeys(k for c in configs if c.role == "grid" for k in c.settings))
    axes = []
    for k in keys:
        vals = []
        for c in configs:
            if c.role == "grid" and k in c.settings and c.settings[k] not in vals:
                vals.append(c.settings[k])
        axes.append(Axis((k,), tuple((v,) for v in vals)))
    corners = [{k: v for k, v in c.settings.items() if k not in keys or k == "arch"} for c in configs
               if c.role == "corner"]
    first = next(by[g] for g in groups if g in by)
    base = load_run(first.runs[0].path).config if first.runs else TrainConfig()
    sweep = Sweep(base, axes, seeds, corners=list({json.dumps(c, sort_keys=True): c for c in corners}.values()))
    return SweepResult(sweep, configs, cells, groups, stopped=bool(missing))


def lesson_result(name: str, quick: bool = False, store=None):
    """(Lesson, SweepResult): what the Lessons page shows of the lesson's runs in the store."""
    lesson = get_lesson(name)
    res = run_sweep(lesson.sweep(quick=quick), store=store, train=False)
    if not any(c.status == "finished" for c in res.cells):
        raise DataError(f"The run store has no finished run of lesson '{lesson.name}'"
                        f"{' (quick)' if quick else ''}.",
                        fix=f"run it first: python -m mtrlib lesson {lesson.name}{' --quick' if quick else ''}"
                            + ("" if quick else " (or report the quick version with --quick)"))
    return lesson, res


def _json_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"Cannot read {path}: {e}.", fix="give the JSON file a sweep or lesson printed") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    try:
        d = json.loads(lines[-1] if lines else "")
    except json.JSONDecodeError:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} is not JSON ({e.msg}).",
                            fix="save the last line of `python -m mtrlib sweep ...` to a file") from None
    if not isinstance(d, dict) or not ("configs" in d or "lesson" in d):
        raise DataError(f"{path} is neither a sweep's nor a lesson's result.",
                        fix="report the last line that `python -m mtrlib sweep` or `lesson` printed")
    return d


def resolve(targets: list[str], store=None, quick: bool = False) -> Target:
    """The Target that `targets` (one, or two for a comparison) name; DataError with the fix otherwise."""
    targets = [str(t).strip() for t in targets if str(t).strip()]
    if not targets:
        raise DataError("No report target was named.",
                        fix="give a run, an experiment (g-...), A..B, a sweep's JSON file or a lesson name")
    if len(targets) > 2:
        raise DataError(f"A report takes one target, or two to compare (got {len(targets)}).", fix="e.g. A..B")
    if len(targets) == 1 and ".." in targets[0] and not Path(targets[0]).exists():
        targets = targets[0].split("..", 1)
        if not all(t.strip() for t in targets):
            raise DataError("A comparison needs both sides: A..B.", fix="e.g. g-1a2b3c..g-4d5e6f")
    if len(targets) == 2:
        a, b = (experiment(t, store) for t in targets)
        if a.group == b.group:
            raise DataError("Both sides of the comparison are the same experiment.",
                            fix="name two different setups (their runs differ by more than the seed)")
        return Target("compare", [a, b])
    text = targets[0]
    p = Path(text).expanduser()
    if p.suffix.lower() == ".json":
        if not p.is_file():
            raise DataError(f"There is no file {p}.", fix="give the path of a sweep's or lesson's JSON result")
        d = _json_file(p)
        if "lesson" in d:
            lesson, res = lesson_result(d["lesson"], bool(d.get("quick")), store)
            return Target("lesson", [lesson, res])
        return Target("sweep", [sweep_from_json(d, store)])
    name = text[len("lesson:"):] if text.lower().startswith("lesson:") else text
    if text.lower().startswith("lesson:") or name.lower() in LESSONS:
        lesson, res = lesson_result(name, quick, store)
        return Target("lesson", [lesson, res])
    if text.startswith("g-") and not p.exists():
        return Target("group", [experiment(text, store)])
    try:
        return Target("run", [resolve_run(text, store)])
    except RunError as e:
        raise DataError(e.problem, fix=(e.fix or "") + "; or name an experiment (g-...), A..B, a sweep's JSON file, "
                        "or a lesson (" + ", ".join(LESSONS) + ")") from None


def build(target: Target, store=None, title: str | None = None, x: str | None = None, y: str | None = None,
          app_url: str | None = None) -> str:
    """The report of a resolved target."""
    kw = {"store": store, **({"app_url": app_url} if app_url else {})}
    if target.kind == "run":
        return B.run_report(target.items[0], title=title, **kw)
    if target.kind == "group":
        return B.group_report(target.items[0], title=title, **kw)
    if target.kind == "compare":
        return B.compare_report(*target.items, title=title, **kw)
    if target.kind == "lesson":
        return B.lesson_report(*target.items, title=title, **kw)
    res = target.items[0]
    for p in (x, y):
        if p and p not in res.metrics():
            raise DataError(f"The sweep measured no metric '{p}'.", fix="measured: " + ", ".join(res.metrics()))
    return B.sweep_report(res, title=title or "Sweep report", x=x, y=y, **kw)


__all__ = ["Target", "resolve", "build", "experiment", "sweep_from_json", "lesson_result", "KINDS"]
