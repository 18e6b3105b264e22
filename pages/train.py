"""Train page: configure the network (with a live diagram), start / stop a background job,
watch per-task curves, task weights and throughput update about once a second."""
import copy

import pandas as pd
import streamlit as st

from mtrlib.viz import charts
from mtrlib.train import telemetry
from mtrlib.config import (ARCH_LABELS, ARCHS, GRAD_SPACES, OPTIMIZERS, WEIGHTING_LABELS, WEIGHTINGS, arch_class,
    validate, weighting_class)
from mtrlib.data.history import check_history
from mtrlib.data.tasks import parse_tasks
from mtrlib.models.history import HISTORY_ENCODERS, PREFIX as HISTORY_PREFIX
from mtrlib.registry import knob_fields
from mtrlib.data import DataError
from mtrlib.jobs import SHARED, finished_run
from mtrlib.train.loop import available_devices
from mtrlib.models.retrieval import RetrievalOptions
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


def knob_widget(obj, kf, key: str) -> None:
    """The widget a knob declares (mtrlib.registry.knob), seeded from and written back to `obj`."""
    k, name = kf.knob, kf.name
    get, put = (lambda: getattr(obj, name)), (lambda v: setattr(obj, name, kf.base_type(v)))
    if k.widget == "sizes":
        setattr(obj, name, sizes_editor(k.label, key, getattr(obj, name)))
    elif k.widget == "slider":
        step = k.step if k.step is not None else (1 if kf.base_type is int else None)
        lo, hi = kf.base_type(k.lo), kf.base_type(k.hi)
        widget(st.slider, k.label, key, get, put, min_value=lo, max_value=hi, step=step, help=k.help or None)
    else:
        widget(st.number_input, k.label, key, get, put, min_value=kf.base_type(k.lo) if k.lo is not None else None,
               max_value=kf.base_type(k.hi) if k.hi is not None else None, help=k.help or None)


def knob_widgets(obj, knobs: list, prefix: str = "t_") -> None:
    """An architecture's or a method's own knobs: numbers side by side (up to three), then layer sizes."""
    keyed = [(kf, prefix + (kf.knob.url or kf.name)) for kf in knobs]
    numbers = [(kf, key) for kf, key in keyed if kf.knob.widget == "number"]
    for i in range(0, len(numbers), 3):
        for col, (kf, key) in zip(st.columns(3), numbers[i:i + 3]):
            with col:
                knob_widget(obj, kf, key)
    for kf, key in keyed:
        if kf.knob.widget != "number":
            knob_widget(obj, kf, key)


HISTORY_LENGTHS = [5, 10, 20, 50, 100, 200]


def history_controls(m, ds, tasks) -> None:
    """The history block (mtrlib.data.history): the user's last L interactions, read by an
    encoder whose output joins the input row of every architecture. Off by default."""
    on = widget(st.toggle, "User history: the last L interactions", "t_hist_on", lambda: m.history > 0,
                help="Each example also reads what the user did just before it (only training interactions, "
                     "never a held-out one). At recommendation time: the user's latest training history.")
    if not on:
        m.history = 0
        return
    if not m.history:
        m.history = 50
    widget(st.select_slider, "History length L", "t_hist", lambda: m.history, lambda v: setattr(m, "history", int(v)),
           options=HISTORY_LENGTHS)
    enc = widget(st.selectbox, "History encoder", "t_henc", lambda: m.history_encoder,
                 lambda v: setattr(m, "history_encoder", v), options=list(HISTORY_ENCODERS),
                 format_func=lambda n: f"{HISTORY_ENCODERS[n].label} ({HISTORY_ENCODERS[n].paper})" if n in HISTORY_ENCODERS
                 else n)
    if enc in HISTORY_ENCODERS:
        knob_widgets(m, knob_fields(HISTORY_ENCODERS[enc].Options, HISTORY_PREFIX))
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
    widget(st.radio, "Architecture", "t_arch", lambda: m.arch, lambda v: setattr(m, "arch", v), options=list(ARCHS),
           format_func=lambda a: ARCH_LABELS[a], horizontal=True)
    if expert:
        widget(st.select_slider, "Embedding dimension", "t_emb", lambda: m.emb_dim, lambda v: setattr(m, "emb_dim", v),
               options=[4, 8, 16, 32, 64, 128])
        knob_widgets(m, knob_fields(arch_class(m).Options))
        m.towers = sizes_editor("Tower", "t_towers", m.towers)
        widget(st.toggle, "Language-model item text features", "t_text", lambda: m.text_features,
               lambda v: setattr(m, "text_features", v),
               help="all-MiniLM-L6-v2 reads each item's text; a learned projection adds it to the item embedding. "
                    "The first use encodes every item once (cached afterwards). The projection learns "
                    "slowly: give it about 10 epochs, and try the cold-items split to see what it buys.")
    if retrieval:  # the retrieval task's own towers (mtrlib.models.retrieval), whatever the architecture
        st.caption(f"**Retrieval towers** for {plain(', '.join(retrieval))}: a user tower and an item tower on the "
                   "same embeddings, trained with an in-batch softmax (Yi et al., RecSys 2019). Their dot product "
                   "picks the candidates the rankers then score.")
        knob_widgets(m, knob_fields(RetrievalOptions))
    try:
        specs = parse_tasks(task_list(ds))
    except DataError:
        specs = []
    history_controls(m, ds, specs)

    st.subheader("Task weights")
    wm = widget(st.selectbox, "Weighting method", "t_weighting", lambda: c.weighting,
                lambda v: setattr(c, "weighting", v), options=list(WEIGHTINGS),
                format_func=lambda x: WEIGHTING_LABELS[x])
    method = weighting_class(wm)
    if expert:
        knob_widgets(c, knob_fields(method.Options, method.name.replace("-", "_") + "_"))
    if method.needs_task_gradients:
        widget(st.radio, "Gradients taken on", "t_gspace", lambda: c.grad_space, lambda v: setattr(c, "grad_space", v),
               options=list(GRAD_SPACES), horizontal=True,
               format_func={"params": "every shared parameter", "rep": "the shared representation"}.get,
               help="A gradient method takes one gradient per task: on every parameter more than one task uses "
                    "(one backward pass per task), or on the output of the shared layers (LibMTL's rep_grad: "
                    "cheaper, the tasks' own layers only).")
    for t in names:
        widget(st.slider, f"weight: {t}", f"t_w_{t}", lambda t=t: float(c.weights.get(t, 1.0)),
               lambda v, t=t: c.weights.__setitem__(t, float(v)), min_value=0.0, max_value=5.0, step=0.1)
    c.weights = {t: w for t, w in c.weights.items() if t in names}

    st.subheader("Training")
    a, b = st.columns(2)
    with a:
        if expert:
            widget(st.selectbox, "Optimiser", "t_opt", lambda: c.optimizer, lambda v: setattr(c, "optimizer", v),
                   options=list(OPTIMIZERS))
            widget(st.select_slider, "Learning rate", "t_lr", lambda: c.lr, lambda v: setattr(c, "lr", v),
                   options=[0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0])
            widget(st.select_slider, "Weight decay (L2)", "t_wd", lambda: c.weight_decay,
                   lambda v: setattr(c, "weight_decay", v), options=[0.0, 1e-5, 1e-4, 3e-4, 1e-3, 1e-2],
                   format_func=lambda v: "off" if v == 0 else f"{v:g}",
                   help="Shrinks rarely-seen embeddings; the main guard against overfitting here.")
        widget(st.number_input, "Epochs", "t_epochs", lambda: c.epochs, lambda v: setattr(c, "epochs", int(v)),
               min_value=1, max_value=1000)
    with b:
        if expert:
            widget(st.select_slider, "Batch size", "t_bs", lambda: c.batch_size, lambda v: setattr(c, "batch_size", v),
                   options=[1, 32, 128, 256, 512, 1024, 2048, 4096, 8192])
        split_opts = ["random", "temporal", "cold-items"] if ds.has_timestamp else ["random", "cold-items"]
        if c.data.split not in split_opts:
            c.data.split = "random"
        widget(st.selectbox, "Split", "t_split", lambda: c.data.split, lambda v: setattr(c.data, "split", v),
               options=split_opts, help="temporal: each user's last interactions are the test set; "
                                        "cold-items: 10% of items never appear in training")
        devs = ["auto"] + available_devices()
        if c.device not in devs:
            c.device = "auto"
        if expert:
            widget(st.selectbox, "Device", "t_device", lambda: c.device, lambda v: setattr(c, "device", v), options=devs)
    if expert:
        widget(st.number_input, "Seed", "t_seed", lambda: c.seed, lambda v: setattr(c, "seed", int(v)),
               min_value=0, max_value=10**6)
    widget(st.toggle, "Measure gradient conflict", "t_gtel", lambda: c.grad_telemetry,
           lambda v: setattr(c, "grad_telemetry", bool(v)),
           help="Every 10 steps, compare the tasks' gradients on the shared parameters (the Gradient conflict "
                "chart). Costs a few percent of training speed.")

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
    t = SHARED.submit(copy.deepcopy(cfg()), data, store=store(), owner=who.owner, who=who.label, fresh=fresh)
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
except DataError as e:
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
        cols = [col for col in epochs.columns if col.startswith("val/") and col.endswith(("/auc", "/rmse"))]
        a, b = st.columns(2)
        chart(charts.curves({"run": epochs}, [x for x in cols if x.endswith("/auc")],
                            "Validation AUC per task", x="epoch", colours=palette), key="t_auc", where=a)
        reg = [x for x in cols if x.endswith("/rmse")]
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
    from pages._experiments import repeat_section
    repeat_section(c, ds, problem, busy)
