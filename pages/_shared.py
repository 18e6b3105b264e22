"""Streamlit glue shared by the pages: session state, cached data, the run store, small widgets.

Pages stay thin: they read state from here, call mtrlib, and draw. The canonical setup lives
in `st.session_state["cfg"]` (a TrainConfig, a non-widget key) so it survives page switches;
widgets are initialised from it and write back to it.
"""
from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import streamlit as st

from mtrlib.errors import UserError

from mtrlib.config import TrainConfig
from mtrlib.data import Dataset, build_examples, make_world
from mtrlib import jobs
from mtrlib.runs.owner import Visitor, is_teacher_token, may_change as _may_change, teacher_token
from mtrlib.share import from_params, to_params

_APP = threading.local()  # set while app.py runs the page (each session's script has its own thread)


class PageDone(Exception):
    """A page has drawn all it can (e.g. no data yet); app.py still draws the sidebar and URL."""


def halt() -> None:
    """End the page here. Unlike st.stop(), the sidebar and the address bar are still updated
    when the page runs inside app.py; a page run on its own (AppTest) simply stops."""
    if getattr(_APP, "running", False):
        raise PageDone
    st.stop()


def run_page(nav) -> None:
    """Run the selected page inside app.py, turning PageDone into a normal end."""
    _APP.running = True
    try:
        nav.run()
    except PageDone:
        pass
    finally:
        _APP.running = False


# -- state -------------------------------------------------------------------------------------
def boot() -> None:
    """Start of every page. Streamlit treats a folder named pages/ as a legacy multipage app
    until app.py has called st.navigation once in this process, so the very first request
    that lands straight on a page URL runs the page without app.py (legacy sidebar listing
    every file, no page config): switch the legacy mode off and, on a session's first run
    (nothing to lose), rerun at once, which runs app.py and routes to this same page.
    AppTest turns legacy mode back on for every run, page switches and clicks included: there
    app.py has made the first run, and the page runs on its own as before (a rerun would drop
    the click)."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        if "job" not in st.session_state:  # init_state has not run: this session's first run
            st.rerun()
    init_state()
    st.session_state["page_params"] = {}  # what this page keeps in the address bar (keep_in_url)


def init_state() -> None:
    """First run of a session: defaults, or the setup encoded in the URL."""
    ss = st.session_state
    for key, value in (("uploads", {}), ("job", None), ("mapping", None), ("ticket", None)):
        if key not in ss:
            ss[key] = value
    if "visitor" not in ss:  # a random owner id for this browser session; the teacher by ?teacher=TOKEN
        ss.visitor = Visitor.new()
    asked = st.query_params.get(TEACHER_KEY)
    if asked and not ss.visitor.teacher and is_teacher_token(asked):
        ss.visitor = Visitor(ss.visitor.owner, teacher=True)
    if "cfg" in ss:
        return
    params = {k: st.query_params.get_all(k) for k in st.query_params.keys()}
    cfg, problems = from_params({k: v[-1] for k, v in params.items() if v})
    ss.classroom = (params.get(CLASSROOM_KEY) or ["0"])[-1] == "1"  # the toggle's key: set before it is drawn
    ss.cfg = cfg
    ss.share_problems = problems
    ss.restored_from_url = bool(params)


TEACHER_KEY = "teacher"  # ?teacher=TOKEN marks the teacher's browser (MTR_TEACHER_TOKEN)


def visitor() -> Visitor:
    """This browser session as the run store sees it (owner id, teacher or not)."""
    return st.session_state.visitor


def may_change(run_owner: str | None) -> bool:
    """Whether this session may stop, rename or delete a run owned by `run_owner`."""
    return _may_change(run_owner, visitor())


def cfg() -> TrainConfig:
    return st.session_state.cfg


def sync_url() -> None:
    """Keep the address bar equal to the current setup, so copying it shares the experiment."""
    want = {**to_params(cfg()), **st.session_state.get("page_params", {})}
    if classroom():
        want[CLASSROOM_KEY] = "1"
    have = {k: st.query_params.get(k) for k in st.query_params.keys()}
    if want != have:
        st.query_params.from_dict(want)


def widget(fn, label: str, key: str, get, put=None, **kw):
    """A widget whose value is seeded from the config and written back to it. A value that is
    not among a widget's options (a shared URL, a config file) is added to them, not refused."""
    if key not in st.session_state:
        st.session_state[key] = get()
    if "options" in kw and st.session_state[key] not in kw["options"]:
        opts = list(kw["options"]) + [st.session_state[key]]
        try:
            opts = sorted(opts)
        except TypeError:
            pass
        kw["options"] = opts
    value = fn(label, key=key, **kw)
    if put is not None:
        put(value)
    return value


@st.cache_resource(show_spinner=False)
def warm_up() -> bool:
    """Once per server: import what the first training needs (the fused optimiser pulls in
    torch._dynamo, about 1 s) on a background thread, so the first Train click is not slower."""
    def work():
        import torch._dynamo  # noqa: F401

    threading.Thread(target=work, name="mtr-warm-up", daemon=True).start()
    return True


# -- data --------------------------------------------------------------------------------------
@st.cache_resource(max_entries=8, show_spinner="Building the synthetic world…")
def world_dataset(world: tuple) -> Dataset:
    """`world`: the WorldConfig's (field, value) pairs, hashable, so they key the cache. Built once
    per server and shared read-only by every session (cache_data would hand each session its own
    copy: 30 students, 30 copies); nothing downstream writes to a Dataset."""
    return make_world(**dict(world))


class _Upload(io.BytesIO):
    """Uploaded bytes with a display name (used for format hints and messages, never as a path)."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name


@st.cache_resource(max_entries=4, show_spinner="Reading your files…")
def upload_dataset(files: tuple, mapping_key: str, _mapping) -> Dataset:
    """The same bytes with the same mapping are read once per server and shared read-only."""
    from mtrlib.data import load

    def src(role):
        entry = dict(files).get(role)
        if entry is None:
            return None
        if isinstance(entry, tuple) and len(entry) and isinstance(entry[0], tuple):
            return [_Upload(d, n) for n, d in entry]
        name, data = entry
        return _Upload(data, name)

    from mtrlib.data.dataset import upload_name

    ds = load(src("interactions"), src("items"), src("users"), mapping=_mapping)
    inter = dict(files).get("interactions")
    if isinstance(inter, tuple) and len(inter) == 2 and isinstance(inter[0], str):
        ds.name = upload_name(ds.layout, inter[0])  # "MovieLens 100K · u.data", not "u"
    return ds


@st.cache_data(max_entries=4, show_spinner=False)
def _raw_table(entry: tuple):
    from mtrlib.data import read_table_full
    name, data = entry
    return read_table_full(_Upload(data, name))


def raw_interactions():
    """The uploaded interactions file as read (a `Table` of strings, with its header flag), for the
    mapping form; or (None, problem)."""
    up = st.session_state.get("uploads", {}).get("interactions")
    if up is None:
        return None, None
    try:
        return _raw_table(up["file"]), None
    except UserError as e:
        return None, str(e)


def current_dataset() -> tuple[Dataset | None, str | None]:
    """The dataset the setup points at, or (None, readable problem)."""
    c = cfg()
    if c.data.source == "world":
        w = c.data.world
        fields = {**w.to_dict(), "correlation": float(w.correlation), "zipf": float(w.zipf)}
        try:
            return world_dataset(tuple(fields.items())), None
        except UserError as e:
            return None, str(e)
    ups = st.session_state.get("uploads", {})
    if "interactions" not in ups:
        return None, "No interactions file uploaded yet: upload one on the Data page, or switch to the built-in world."
    files = tuple(sorted((role, up["file"]) for role, up in ups.items()))
    mapping = st.session_state.get("mapping")
    try:
        return upload_dataset(files, repr(mapping), mapping), None
    except UserError as e:
        return None, str(e)


@st.cache_data(max_entries=8, show_spinner="Labelling examples…")
def examples_report(_ds: Dataset, ds_key: str, tasks: tuple, negatives: int, seed: int) -> dict:
    ex = build_examples(_ds, list(tasks), negatives=negatives, seed=seed)
    return {"rows": len(ex), "balance": ex.balance(), "notes": ex.notes}


def dataset_key(ds: Dataset) -> str:
    """Stable across reruns (cache_data hands out copies), different for different data."""
    import pandas as pd
    head = int(pd.util.hash_pandas_object(ds.interactions.head(2000), index=False).sum())
    return f"{ds.name}|{ds.n_interactions}|{ds.n_users}|{ds.n_items}|{ds.layout}|{head}"


def task_list(ds: Dataset | None) -> list[str]:
    c = cfg()
    return list(c.data.tasks or (ds.suggested_tasks if ds is not None else []))


def task_names(ds: Dataset | None) -> list[str]:
    from mtrlib.data import parse_tasks
    try:
        return [t.name for t in parse_tasks(task_list(ds))]
    except UserError:
        return []


def retrieval_task_names(ds: Dataset | None) -> list[str]:
    """The setup's retrieval tasks (their two towers are drawn and configured apart)."""
    from mtrlib.data import parse_tasks
    try:
        return [t.name for t in parse_tasks(task_list(ds)) if t.is_retrieval]
    except UserError:
        return []


# -- runs --------------------------------------------------------------------------------------
def store() -> Path:
    from mtrlib import runs
    return runs.default_store()  # reads MTR_RUN_STORE now, as the library does


def runs_list():
    from mtrlib import runs
    problems: list = []
    items = runs.list_runs(store(), problems=problems)
    return items, problems


@st.cache_resource(max_entries=16)
def _load_run_cached(path: str, stamp: float):
    from mtrlib import runs
    return runs.load_run(path)


def load_run(path) -> object:
    """A finished run loaded once per process (read-only: scoring, projections)."""
    p = Path(path)
    stamp = max((f.stat().st_mtime for f in p.glob("*") if f.is_file()), default=0.0)
    return _load_run_cached(str(p), stamp)


def trained_runs() -> list:
    """Runs that have weights to load; a page that needs one ends here with a pointer to Train."""
    runs = [r for r in runs_list()[0] if r.has_weights]
    if not runs:
        st.info("No trained run with saved weights yet. Train one first.")
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
        halt()
    return runs


def run_picker(label: str, key: str, runs, default_index: int = 0):
    """Select one run by its readable name; returns the RunInfo or None."""
    if not runs:
        return None
    opts = list(range(len(runs)))
    idx = st.selectbox(label, opts, index=min(default_index, len(opts) - 1), key=key,
                       format_func=lambda i: f"{runs[i].name} · {runs[i].status}")
    return runs[idx]


# -- classroom mode and the address bar ------------------------------------------------------------------
CLASSROOM_KEY = "class"  # ?class=1 opens the app in classroom mode


def classroom() -> bool:
    """Classroom mode (the sidebar toggle, or ?class=1): expert-only controls hidden, charts larger."""
    return bool(st.session_state.get("classroom", False))


def chart(fig, key: str, where=None, **kw) -> None:
    """st.plotly_chart, enlarged in classroom mode (taller, larger text and markers)."""
    from mtrlib.viz.charts import enlarged
    (where or st).plotly_chart(enlarged(fig) if classroom() else fig, key=key, **kw)


def keep_in_url(key: str, value) -> None:
    """A page's own query parameter (e.g. ?lesson=seesaw), kept in the address bar while it shows."""
    st.session_state.setdefault("page_params", {})[key] = str(value)


# -- small UI helpers ------------------------------------------------------------------------------
_MD = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&])")  # = (setext headings), & (entities)


def plain(text) -> str:
    """User-derived text (file and column names, cell values in messages, run names) for the
    markdown-rendering elements: every markdown character shown literally, never as a link,
    image or formatting. Streamlit never renders raw HTML here (no unsafe_allow_html anywhere)."""
    return _MD.sub(r"\\\1", str(text))


def explain(text: str) -> None:
    with st.expander("What am I looking at?"):
        st.markdown(text)


def sidebar() -> None:
    """Data source, job status and the share link, on every page."""
    ds, err = current_dataset()
    with st.sidebar:
        st.caption("Data")
        if ds is not None:
            st.write(f"**{plain(ds.name)}**")
            st.caption(f"{ds.n_interactions:,} interactions · {ds.n_users:,} users · {ds.n_items:,} items")
        else:
            st.warning(plain(err) if err else "No data yet.")
        job_status()
        if teacher_token() is not None and visitor().teacher:
            server_queue()
        st.toggle("Classroom mode", key="classroom",
                  help="Hides the expert-only controls and enlarges the charts, for a room watching one screen.")
        st.caption("Share this setup: the address bar always holds it. Settings that differ from the defaults:")
        params = to_params(cfg())
        st.code("\n".join(f"{k} = {v}" for k, v in params.items()) if params else "(all defaults)", language=None)


@st.fragment(run_every=2.0)
def job_status() -> None:
    """This session's training job, kept current on every page."""
    job = st.session_state.get("job")
    if job is None:
        return
    st.caption("Your training job")
    p = job.progress
    place = job.queue_position
    text = {"running": f"running · epoch {p.epoch:.1f}/{p.epochs}",
            "queued": f"queued at place {place}" if place else "starting",
            "preparing": "preparing data"}.get(job.state, job.state)
    st.write(f"**{text}**")


@st.fragment(run_every=3.0)
def server_queue() -> None:
    """The teacher's view of the server: who is training what, and who waits."""
    board = jobs.LIMITER.board()
    running, queued = jobs.LIMITER.counts()
    st.caption(f"Server queue (teacher): {running} training · {queued} waiting · "
               f"{len(jobs.SHARED.live())} shared setups live")
    if board:
        st.dataframe([{"state": r["state"], "place": r["place"], "who": r.get("who") or "a lesson or sweep",
                       "what": r.get("what", ""), "seed": r.get("seed")} for r in board],
                     hide_index=True, key="sb_queue")
