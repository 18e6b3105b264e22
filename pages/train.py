"""Train page: configure the network (with a live diagram), start / stop a background job,
watch per-task curves, task weights and throughput update about once a second."""
import copy

import pandas as pd
import streamlit as st

from mtrlib.config import (ARCH_LABELS, GRAD_SPACES, WEIGHTING_LABELS, get_value, section, set_value, setting_of,
                           settings_of, validate, weighting_class)
from mtrlib.data.history import check_history
from mtrlib.data.tasks import parse_tasks
from mtrlib.data.warnings import describe as describe_warning
from mtrlib.errors import UserError
from mtrlib.jobs import SHARED, finished_run
from mtrlib.models.history import HISTORY_ENCODERS
from mtrlib.train import telemetry
from mtrlib.train.loop import available_devices
from mtrlib.viz import charts
from pages._experiments import repeat_section
from pages._experts import last_health, show_health
from pages._shared import (boot, cfg, chart, classroom, current_dataset, explain, halt, may_change, plain,
                           retrieval_task_names, store, task_list, task_names, visitor, widget)

boot()
c = cfg()
m = c.model
st.title("Train")
explain(
    "**Shared-Bottom** shares one network between all tasks, then gives each task a small *tower*. "
    "**MMoE** has several *experts*; each task has a *gate* that learns how much to listen to each expert, "
    "so tasks that disagree can lean on different experts. **PLE** also gives each task experts of its own. "
    "**ESMM** predicts a conditional task (like given click) as pCTR × pCVR over every impression. "
    "**Single-task** trains a separate network per task: the baseline multi-task learning must beat.\n\n"
    "**Task weights** say how much each task's loss counts. *Uncertainty*, *GradNorm* and *DWA* learn them "
    "as training goes; the *effective weights* chart shows what they chose."
)

ds, err = current_dataset()
if err:
    st.error(plain(err))
    st.page_link("pages/data.py", label="Go to the Data page", icon=":material/table_chart:")
    halt()
names = task_names(ds)
retrieval = retrieval_task_names(ds)
st.caption(f"Data: **{plain(ds.name)}** · tasks: " + plain(", ".join(task_list(ds))))

job = st.session_state.get("job")


def split_warnings_of(j) -> list[dict]:
    """The warnings of the last run's split (mtrlib.data.warnings), while its tasks and split
    are still the ones set here (they are computed once the data is split, when a run starts)."""
    prep = getattr(j, "prepared", None)
    if prep is None or j.cfg.data.split != c.data.split or [t.to_string() for t in prep.tasks] != task_list(ds):
        return []
    return list(prep.warnings)


TASK_WARNINGS = ("no_observed", "one_class")  # about a task; the other codes are about a column
shown_warnings = split_warnings_of(job)
for w in shown_warnings:  # beside the task list they concern
    if w["code"] in TASK_WARNINGS:
        st.warning(plain(describe_warning(w)))
busy = job is not None and job.active
expert = not classroom()  # classroom mode hides the expert-only controls (the config keeps their values)
knobs, view = st.columns([1, 1.35], gap="large")


def sizes_editor(label: str, key: str, values: list[int], max_layers: int = 4) -> list[int]:
    """Add/remove layers and set each layer's width."""
    n = st.number_input(f"{label}: layers", 0 if key in ("t_towers", "t_rlayers") else 1, max_layers, len(values),
                        key=f"{key}_n")
    vals = (values + [values[-1] if values else 32] * max_layers)[:n]
    cols = st.columns(max(1, n))
    out = []
    for i in range(n):
        with cols[i]:
            out.append(int(st.number_input(f"width {i + 1}", 1, 1024, int(vals[i]), step=8, key=f"{key}_{i}")))
    return out


placed: set[str] = set()  # the settings this page has drawn (or chosen not to draw) so far
ELSEWHERE = {"data.negatives", "model.position"}  # placed by the Data page / only for data with a position


def setting(path: str, **over):
    """The widget a setting declares (its `knob(...)` in mtrlib.config / a plugin's Options), by
    dotted path: seeded from the config and written back to it. `over` replaces the declared
    label, widget, options or help, or adds format_func and the like, where the page knows better."""
    kf = setting_of(c, path)
    k, t = kf.knob, kf.base_type
    placed.add(path)
    key = "t_" + (k.url or path)
    label = over.pop("label", k.label)
    over.setdefault("help", k.help or None)
    get = lambda: get_value(c, path)  # noqa: E731
    cast = (lambda v: None if v in ("", None) else v) if "None" in str(kf.type) else \
        (t if t in (int, float, bool) else (lambda v: v))
    put = lambda v: set_value(c, path, cast(v))  # noqa: E731
    kind = over.pop("widget", k.widget)
    if kind == "sizes":
        value = sizes_editor(label, key, list(get()))
        put(value)
        return value
    if kind in ("radio", "select"):
        over.setdefault("options", list(k.options or k.choices))
        return widget(st.radio if kind == "radio" else st.selectbox, label, key, get, put, **over)
    if kind == "select_slider":
        over.setdefault("options", list(k.options or k.choices))
        return widget(st.select_slider, label, key, get, put, **over)
    if kind == "toggle" or t is bool:
        return widget(st.toggle, label, key, lambda: bool(get()), put, **over)
    if kind == "text" or t is str:
        return widget(st.text_input, label, key, lambda: get() or "", put, **over)
    bounds = {"min_value": t(k.lo) if k.lo is not None else None, "max_value": t(k.hi) if k.hi is not None else None}
    if kind == "slider":
        step = k.step if k.step is not None else (1 if t is int else None)
        return widget(st.slider, label, key, get, put, **bounds, step=step, **over)
    if k.step is not None:
        bounds["step"] = t(k.step)
    return widget(st.number_input, label, key, get, put, **bounds, **over)


def settings_row(paths: list[str]) -> None:
    """Plugin knobs: numbers side by side (up to three), then the other widgets (layer sizes)."""
    numbers = [p for p in paths if setting_of(c, p).knob.widget == "number"]
    for i in range(0, len(numbers), 3):
        for col, p in zip(st.columns(3), numbers[i:i + 3]):
            with col:
                setting(p)
    for p in paths:
        if p not in numbers:
            setting(p)


def plugin_settings(place: str) -> list[str]:
    """The paths of the chosen plugin's knobs (`model.options`, `weighting.options`, ...)."""
    return [kf.name for kf in settings_of(c) if kf.name.startswith(place + ".")]


def more_settings(sections: tuple[str, ...]) -> None:
    """Every setting of these sections that no widget above placed, generically: a new field of
    the config shows up here with nothing else edited."""
    rest = [kf.name for kf in settings_of(c) if section(kf.name) in sections and kf.name not in placed
            and kf.name not in ELSEWHERE and kf.knob.widget != "none"]
    if rest:
        with st.expander("More settings"):
            for p in rest:
                setting(p)


HISTORY_LENGTHS = [5, 10, 20, 50, 100, 200]


def history_controls(m, ds, tasks) -> None:
    """The history block (mtrlib.data.history): the user's last L interactions, read by an
    encoder whose output joins the input row of every architecture. Off by default."""
    placed.update({"model.history", "model.history_encoder", "model.history_task", "model.history_order",
                   "model.history_pool"})
    on = widget(st.toggle, "User history: the last L interactions", "t_hist_on", lambda: m.history > 0,
                help="Each example also reads what the user did just before it (only training interactions, "
                     "never a held-out one). At recommendation time: the user's latest training history.")
    if not on:
        m.history = 0
        placed.update(plugin_settings("model.history_options"))
        return
    if not m.history:
        m.history = 50
    widget(st.select_slider, "History length L", "t_hist", lambda: m.history, lambda v: setattr(m, "history", int(v)),
           options=HISTORY_LENGTHS)
    setting("model.history_encoder", widget="select", options=list(HISTORY_ENCODERS), help=None,
            format_func=lambda n: f"{HISTORY_ENCODERS[n].label} ({HISTORY_ENCODERS[n].paper})"
            if n in HISTORY_ENCODERS else n)
    settings_row(plugin_settings("model.history_options"))
    binary = [None] + [t.name for t in tasks if t.is_binary]
    if m.history_task not in binary:
        m.history_task = None
    widget(st.selectbox, "History keeps", "t_htask", lambda: m.history_task, lambda v: setattr(m, "history_task", v),
           options=binary, format_func=lambda t: "every interaction" if t is None else f"only items where {t} = 1")
    orders = ["time", "file"] if ds.has_timestamp else ["file"]
    if m.history_order not in orders:
        m.history_order = orders[0]
    widget(st.radio, "Before means", "t_horder", lambda: m.history_order, lambda v: setattr(m, "history_order", v),
           options=orders, horizontal=True,
           format_func=lambda o: "earlier timestamp" if o == "time" else "earlier row of the file",
           help=None if ds.has_timestamp else "This data has no timestamp: the file's row order stands for time.")


with knobs:
    st.subheader("Network")
    setting("model.arch", format_func=lambda a: ARCH_LABELS.get(a, a), horizontal=True, help=None)
    if expert:
        setting("model.emb_dim", help=None)
        settings_row(plugin_settings("model.options"))
        setting("model.towers")
        setting("model.text_features",
                help="all-MiniLM-L6-v2 reads each item's text; a learned projection adds it to the item embedding. "
                     "The first use encodes every item once (cached afterwards). The projection learns "
                     "slowly: give it about 10 epochs, and try the cold-items split to see what it buys.")
    retrieval_knobs = ["model.retrieval_dim", "model.retrieval_layers", "model.retrieval_temperature"]
    if retrieval:  # the retrieval task's own towers (mtrlib.models.retrieval), whatever the architecture
        st.caption(f"**Retrieval towers** for {plain(', '.join(retrieval))}: a user tower and an item tower on the "
                   "same embeddings, trained with an in-batch softmax (Yi et al., RecSys 2019). Their dot product "
                   "picks the candidates the rankers then score.")
        settings_row(retrieval_knobs)
    placed.update(retrieval_knobs)  # without a retrieval task they do nothing
    try:
        specs = parse_tasks(task_list(ds))
    except UserError:
        specs = []
    history_controls(m, ds, specs)
    if expert:
        more_settings(("model", "history"))

    st.subheader("Task weights")
    setting("weighting.name", label="Weighting method", format_func=lambda x: WEIGHTING_LABELS.get(x, x),
                 help=None)
    method = weighting_class(c)
    if expert:
        settings_row(plugin_settings("weighting.options"))
    placed.update(plugin_settings("weighting.options"))
    if method.needs_task_gradients:
        setting("grad_space", options=list(GRAD_SPACES), horizontal=True,
                format_func={"params": "every shared parameter", "rep": "the shared representation"}.get,
                help="A gradient method takes one gradient per task: on every parameter more than one task uses "
                     "(one backward pass per task), or on the output of the shared layers (LibMTL's rep_grad: "
                     "cheaper, the tasks' own layers only).")
    placed.add("grad_space")  # only a gradient method reads it
    for t in names:
        widget(st.slider, f"weight: {t}", f"t_w_{t}", lambda t=t: float(c.weights.get(t, 1.0)),
               lambda v, t=t: c.weights.__setitem__(t, float(v)), min_value=0.0, max_value=5.0, step=0.1)
    c.weights = {t: w for t, w in c.weights.items() if t in names}
    if expert:
        more_settings(("weighting",))

    st.subheader("Training")
    a, b = st.columns(2)
    with a:
        if expert:
            setting("optimizer", help=None)
            setting("lr", help=None)
            setting("weight_decay", format_func=lambda v: "off" if v == 0 else f"{v:g}")
        setting("epochs", help=None)
    with b:
        if expert:
            setting("batch_size", help=None)
        split_opts = ["random", "temporal", "cold-items"] if ds.has_timestamp else ["random", "cold-items"]
        if (ds.mapping or {}).get("split"):  # the data's own train / val / test (a split column, or part files)
            split_opts.append("given")
        if c.data.split not in split_opts:
            c.data.split = "random"
        setting("data.split", options=split_opts, help="temporal: each user's last interactions are the test set; "
                                                       "cold-items: 10% of items never appear in training; given: the data's own "
                                                       "train / val / test")
        for w in shown_warnings:  # a column's values, as this split divides them
            if w["code"] not in TASK_WARNINGS:
                st.warning(plain(describe_warning(w)))
        if ds.context_features:
            setting("data.context", help="The impression's context columns as features: "
                    + ", ".join(ds.context_features) + ". Off: the model sees users, items and their features only.")
        if ds.position_column and c.data.context:
            setting("model.position", horizontal=True, format_func={
                "feature": "as a feature", "tower": "bias tower (dropped at serving)", "none": "left out"}.get,
                help=f"'{ds.position_column}' is the slot each item was shown in. Users click higher slots more "
                     "whatever the item: as a feature the model can confuse slot with quality; a bias tower "
                     "(PAL, Guo et al. RecSys 2019) learns the slot's effect beside the model and is dropped when "
                     "recommending.")
        devs = ["auto"] + available_devices()
        if c.device not in devs:
            c.device = "auto"
        if expert:
            setting("device", options=devs, help=None)
    if expert:
        setting("seed", help=None)
    setting("grad_telemetry",
            help="Every 10 steps, compare the tasks' gradients on the shared parameters (the Gradient conflict "
                 "chart). Costs a few percent of training speed.")
    if expert:
        more_settings(("training", "data"))

def press(fresh: bool = False) -> None:
    """The Train button's on_click. A callback runs before the page script, and it stores the
    answer (running, queued at place N, attached, an identical run opened, or refused with its
    reason) in the session in one step: a later rerun can no longer wipe the only trace of the
    press, which is how a press used to go unanswered (see mtrlib.jobs.SharedRuns)."""
    ss = st.session_state
    data, _ = current_dataset()
    if data is None:
        return
    who = visitor()
    job_cfg = copy.deepcopy(cfg())
    if job_cfg.data.source == "files" and data.mapping:  # the run's config.json records how the files were read
        job_cfg.data.mapping = {k: v for k, v in data.mapping.items() if k != "reasons"}
    t = SHARED.submit(job_cfg, data, store=store(), owner=who.owner, who=who.label, fresh=fresh)
    t.setup = cfg().to_json()  # an answer about this setup: dropped once the setup changes
    ss.ticket = t
    if t.job is not None:
        ss.job = t.job


problem = None
try:
    for w in validate(copy.deepcopy(c), names):
        st.warning(w)
    if m.history:  # what the data must hold for a history (a timestamp, a binary history task)
        check_history(ds, specs, m.history, m.history_task, m.history_order)
except UserError as e:
    problem = str(e)

with view:
    chart(charts.network(m, names, retrieval=retrieval), key="t_net")
    if problem:
        st.error(plain(problem))
    b1, b2, b3 = st.columns([1, 1, 2])
    ticket = st.session_state.get("ticket")
    if ticket is not None and ticket.job is None and ticket.setup != c.to_json():
        ticket = st.session_state.ticket = None  # a refusal or an opened run of another setup
    b1.button("Train", type="primary", disabled=busy or problem is not None, key="t_train", width="stretch",
              on_click=press)
    mine = job is None or may_change(job.owner)
    stop = b2.button("Stop" if mine else "Leave", disabled=not busy, key="t_stop", width="stretch",
                     help=None if mine else "Stop watching: this run belongs to another session and goes on.")
    if ticket is not None and ticket.kind == "done" and not busy:
        b3.button("Train again", key="t_again", on_click=press, kwargs={"fresh": True},
                  help="A fresh run of this setup, even though an identical one has finished.")
    if stop and job is not None:
        if mine:
            job.stop()
            job.join(timeout=3)
        else:
            st.session_state.job = st.session_state.ticket = None
        st.rerun()


def answer(t) -> bool:
    """The press's answer when it has no job of its own to draw: True if it drew everything."""
    if t.kind == "attached" and t.job is None:  # a lesson trains this exact run: it opens when done
        done = finished_run(t.key, store())
        if done is None:
            st.info(plain(t.message))
            return True
        t.kind, t.run, t.message = "done", done, "A lesson on this server trained this setup: shown here."
        st.rerun()  # the page was drawn for a wait (timer on, Train again hidden): redraw it
    if t.kind == "refused":
        st.warning(plain(t.message))
        return True
    if t.kind == "done":
        r = t.run
        st.success(plain(t.message))
        st.caption(f"Run: {plain(r.name)}")
        with st.container(key="t_metrics"):
            st.dataframe(charts.metrics_table([{"task": k, **{m: v for m, v in ms.items() if m != "n"}}
                                               for k, ms in r.metrics.items()]), hide_index=True)
        st.page_link("pages/runs.py", label="Compare runs →", icon=":material/monitoring:")
        return True
    return False


waiting_lesson = ticket is not None and ticket.kind == "attached" and ticket.job is None


@st.fragment(run_every=1.0 if (job is not None and job.active) or waiting_lesson else None)
def live() -> None:
    t = st.session_state.get("ticket")
    if t is not None and t.job is None and answer(t):
        return
    j = st.session_state.get("job")
    if j is None:
        st.info("Press **Train** to start. Curves appear here while the model learns.")
        return
    if t is not None and t.kind == "attached" and t.job is j:
        st.caption(plain(t.message))
    s = j.snapshot()
    p = s["progress"]
    state = s["state"]
    if state == "queued":
        place, eta = s["queue_position"], s["eta_s"]
        if place is None:
            st.info("Your turn: starting…")
        else:
            st.info(f"Queued: place {place} of the server's queue"
                    + (f" · estimated wait about {max(1, round(eta))} s." if eta is not None else "."))
    elif state == "preparing":
        st.info(plain(s["message"]))
    elif state == "running":
        frac = min(1.0, p.epoch / max(1, p.epochs))
        st.progress(frac, text=f"epoch {p.epoch:.2f} / {p.epochs} · step {p.step} · {p.samples_per_s:,.0f} samples/s")
    elif state == "failed":
        st.error(plain(s["error"]))
    elif state == "diverged":
        st.error(plain(s["message"]))
    elif state == "stopped":
        st.warning(plain(s["message"]) or "Stopped; the partial run was kept.")
    else:
        st.success(plain(s["message"]) or "Finished.")
    if s["save_error"]:
        st.warning(plain(s["save_error"]))
    if j.prepared is not None and j.active:  # the split's warnings while it trains (beside the controls after)
        for w in j.prepared.warnings:
            st.warning(plain(describe_warning(w)))
    steps = pd.DataFrame(s["steps"])
    epochs = pd.DataFrame(s["epochs"])
    tnames = j.prepared.task_names if j.prepared is not None else names
    palette = charts.task_colours(tnames)
    if not steps.empty:
        a, b = st.columns(2)
        chart(charts.curves({"run": steps}, [f"loss/{t}" for t in tnames], "Training loss per task",
                            x="epoch", colours=palette), key="t_loss", where=a)
        chart(charts.task_weights(steps, tnames, palette), key="t_weights", where=b)
    if not epochs.empty:
        cols = [col for col in epochs.columns if col.startswith("val/") and col.endswith(("/auc", "/rmse", "/rmse_orig"))]
        a, b = st.columns(2)
        chart(charts.curves({"run": epochs}, [x for x in cols if x.endswith("/auc")],
                            "Validation AUC per task", x="epoch", colours=palette), key="t_auc", where=a)
        # in the column's units: a ':reg:log' task's rmse_orig, not its RMSE of logs
        reg = [x for x in cols if x.endswith("/rmse_orig") or (x.endswith("/rmse") and x + "_orig" not in cols)]
        if reg:
            chart(charts.curves({"run": epochs}, reg, "Validation RMSE", x="epoch", colours=palette), key="t_rmse", where=b)
        elif not steps.empty:
            chart(charts.curves({"run": steps}, ["samples_per_s"], "Throughput (samples/s)", x="epoch", colours=palette),
                  key="t_sps", where=b)
        recall = [col for col in epochs.columns if col.startswith("val/") and col.endswith("/recall@10")]
        if recall:  # retrieval tasks: the share of sampled validation positives in the top 10 of all items
            chart(charts.curves({"run": epochs}, recall, "Validation Recall@10 (retrieval, on a sample)",
                                x="epoch", colours=palette), key="t_recall")
    elif not steps.empty:
        chart(charts.curves({"run": steps}, ["samples_per_s"], "Throughput (samples/s)", x="epoch", colours=palette),
              key="t_sps2")
    if not steps.empty and telemetry.columns(steps.columns):
        chart(charts.conflict({"run": steps}), key="t_conflict")
        grad = j.result.grad if j.result is not None else telemetry.summary(s["steps"])
        st.caption("  \n".join(["Last epoch:"] + [plain(line) for line in telemetry.describe(grad)]))
        explain(telemetry.explanation())
    health = last_health(epochs)  # mtrlib.train.experts, once per epoch
    if health:
        st.subheader("Expert health")
        show_health(health, key="t_health")
    if j.result is not None and not j.active:
        r = j.result
        rows = []
        for t, ms in r.metrics.items():
            base = r.baseline.get(t, {})
            row = {"task": t}
            row.update({k: v for k, v in ms.items() if k != "n"})
            if base:
                row["popularity auc" if "auc" in ms else "popularity rmse"] = base.get("auc", base.get("rmse"))
            rows.append(row)
        st.caption(f"Test metrics · {r.samples_per_s:,.0f} samples/s · {r.elapsed:.1f} s")
        with st.container(key="t_metrics"):
            st.dataframe(charts.metrics_table(rows), hide_index=True)
        st.page_link("pages/runs.py", label="Compare runs →", icon=":material/monitoring:")
    if busy and state not in ("queued", "preparing", "running"):
        # The page around this fragment was drawn for an active job (Train disabled, timer on) and the
        # job has ended since: redraw the whole page to switch the timer off and re-enable Train.
        # (`busy` is from the full run that drew the page, so a job ending at any moment is caught.)
        st.rerun()


with view:
    live()

with view:  # the same setup with several seeds, as one experiment (pages/_experiments.py)
    repeat_section(c, ds, problem, busy)
