"""Data page: the built-in world (with its knobs) or your own files; tasks; a data report."""
import pandas as pd
import streamlit as st

from mtrlib.errors import UserError

from mtrlib.viz import charts
from mtrlib.data import Table, parse_task, parse_tasks, task_from_fields
from mtrlib.data.world import LIKE_OBSERVED, MAX_GENRES, MAX_MOODS
from pages._shared import (boot, cfg, chart, current_dataset, dataset_key, examples_report, explain, halt, plain,
                           raw_interactions, task_list, widget)

boot()
c = cfg()
st.title("Data")
explain(
    "Everything starts from a table of **interactions** (who met which item, and what happened). "
    "The **built-in world** is synthetic: users and items live near genre centres, so we know the truth. "
    "Its *task correlation ρ* sets how much the two preferences agree: at ρ = 0.9 a click usually means a "
    "like; at ρ = −0.5 the items people click are the ones they tend to dislike. That conflict is what "
    "multi-task models must cope with.\n\n"
    "A **task** is a label made from the data: `click`, `liked = rating ≥ 4`, or `watched` for logs that only "
    "hold positives (then we sample *negatives*: items the user never touched). A task can be *observed "
    "only where* another is positive, like a purchase that can only follow a click."
)

ROLE_LABELS = {"label": "label (task source)", "context": "context feature", "position": "position (the slot)",
               "item_feature": "item feature", "user_feature": "user feature", "split": "given split",
               "ignored": "ignore"}


def _guessed_role(g: dict, col: str) -> tuple[str, str]:
    """(role key, kind) of a column in mapping `g`."""
    if col == g.get("position"):
        return "position", "categorical"
    for key, role in (("context_features", "context"), ("item_features", "item_feature"),
                      ("user_features", "user_feature")):
        if col in (g.get(key) or {}):
            return role, g[key][col]
    if col == g.get("split"):
        return "split", ""
    if col in (g.get("ignore") or {}):
        return "ignored", ""
    return ("label", "") if col in (g.get("labels") or []) else ("ignored", "")


def mapping_form(raw: Table, problem: str | None) -> None:
    """Which column is the user, the item, the time; what the other columns are, and why we guessed so."""
    import json

    from mtrlib.data import guess_mapping
    from mtrlib.data.dataset import CONTEXT_KINDS
    from mtrlib.data.mapping import check_mapping

    st.subheader("Column mapping")
    st.caption("We guessed each column's role from its name and values; the last column says why. Context "
               "features describe the impression (device, hour, position) and vary from row to row. Change any "
               "guess and press Apply.")
    cols = [str(x) for x in raw.frame.columns]
    g = st.session_state.mapping or guess_mapping(raw.frame, header=raw.header)
    up = st.file_uploader("Load a mapping (JSON, as downloaded below or written by `inspect --mapping-out`)",
                          type=["json"], key="map_upload")
    if up is not None and st.session_state.get("map_loaded") != up.file_id:
        try:
            loaded = json.loads(up.getvalue().decode("utf-8"))
            st.session_state.mapping = check_mapping(loaded, cols, source="the mapping file")
            st.session_state.map_loaded = up.file_id
            c.data.tasks = []
            st.rerun()
        except (UnicodeDecodeError, ValueError) as e:  # json errors and DataError are ValueErrors
            st.error(plain(f"The mapping file could not be used: {e}"))
    def pick(key, opts):
        """The widget's index of the guessed column (the first one when the guess is not offered)."""
        return opts.index(g.get(key)) if g.get(key) in opts else 0

    a, b, t = st.columns(3)
    user = a.selectbox("User id column", cols, index=pick("user", cols), key="map_user")
    item = b.selectbox("Item id column", cols, index=pick("item", cols) if g.get("item") in cols else min(1, len(cols) - 1),
                       key="map_item")
    ts_opts = ["(none)"] + cols
    ts = t.selectbox("Timestamp (optional)", ts_opts, index=pick("timestamp", ts_opts), key="map_ts")
    reasons = g.get("reasons") or {}
    roles = []
    for col in cols:
        if col in (user, item, ts):
            continue
        role, kind = _guessed_role(g, col)
        why = reasons.get(col) or (g.get("ignore") or {}).get(col, "")
        roles.append({"column": col, "use as": ROLE_LABELS[role], "kind": kind, "why": why})
    edited = st.data_editor(pd.DataFrame(roles, columns=["column", "use as", "kind", "why"]), hide_index=True,
                            key="map_roles", disabled=["column", "why"], column_config={
                                "use as": st.column_config.SelectboxColumn(options=list(ROLE_LABELS.values())),
                                "kind": st.column_config.SelectboxColumn(options=[""] + list(CONTEXT_KINDS)),
                                "why": st.column_config.TextColumn(width="large")})
    if problem:
        st.caption("The file could not be used with the current mapping (see the message below).")
    by_label = {v: k for k, v in ROLE_LABELS.items()}
    m = {"user": user, "item": item, "timestamp": None if ts == "(none)" else ts, "labels": [],
         "item_features": {}, "user_features": {}, "context_features": {}, "position": None, "split": None,
         "ignore": {}}
    for _, r in edited.iterrows():
        role, col, kind = by_label.get(r["use as"], "ignored"), r["column"], r["kind"] or "categorical"
        if role in ("context", "position"):
            m["context_features"][col] = "categorical" if role == "position" else kind
            if role == "position":
                m["position"] = col
        elif role in ("item_feature", "user_feature"):
            m[f"{role}s"][col] = kind if kind != "bucket" else "numeric"
        elif role == "label":
            m["labels"].append(col)
        elif role == "split":
            m["split"] = col
        else:
            m["ignore"][col] = reasons.get(col, "").removeprefix("ignored: ") or "ignored by you"
    st.download_button("Download this mapping (JSON)", json.dumps(m, indent=2), file_name="mapping.json",
                       mime="application/json", key="map_download",
                       help="the same file `mtr train --mapping mapping.json` and `mtr inspect --mapping` read")
    if st.button("Apply mapping", key="map_apply", type="primary"):
        if user == item:
            st.error("The user and item columns must be different columns.")
            return
        st.session_state.mapping = m
        c.data.tasks = []
        st.rerun()


src = st.segmented_control("Data source", ["Built-in world", "Upload files"], key="d_source",
                           default="Built-in world" if c.data.source == "world" else "Upload files")
c.data.source = "files" if src == "Upload files" else "world"

if c.data.source == "world":
    w = c.data.world
    a, b, cc = st.columns(3)
    with a:
        widget(st.slider, "Users", "d_users", lambda: w.n_users, lambda v: setattr(w, "n_users", v),
               min_value=100, max_value=20000, step=100)
        widget(st.slider, "Items", "d_items", lambda: w.n_items, lambda v: setattr(w, "n_items", v),
               min_value=50, max_value=5000, step=50)
    with b:
        widget(st.slider, "Genres", "d_genres", lambda: w.n_genres, lambda v: setattr(w, "n_genres", v),
               min_value=2, max_value=MAX_GENRES)
        widget(st.slider, "Task correlation ρ (click vs like)", "d_rho", lambda: float(w.correlation),
               lambda v: setattr(w, "correlation", v), min_value=-1.0, max_value=1.0, step=0.1,
               help="Ma et al. (KDD 2018): the like direction is ρ·u1 + √(1−ρ²)·u2.")
    with cc:
        widget(st.number_input, "Impressions per user", "d_imp", lambda: w.impressions_per_user,
               lambda v: setattr(w, "impressions_per_user", int(v)), min_value=5, max_value=500, step=5)
        widget(st.number_input, "Seed", "d_wseed", lambda: w.seed, lambda v: setattr(w, "seed", int(v)),
               min_value=0, max_value=10**6, step=1)
    a2, b2 = st.columns(2)
    with a2:
        widget(st.radio, "A like is observed", "d_likeobs", lambda: w.like_observed,
               lambda v: setattr(w, "like_observed", v), options=list(LIKE_OBSERVED), horizontal=True,
               format_func=lambda v: {"all": "on every impression", "clicks": "only after a click"}.get(v, v),
               help="On every impression, both tasks have the same sample, so ρ alone sets how much they agree "
                    "(the correlation lesson). Only after a click: the click → like funnel, where ESMM's "
                    "whole-space training matters.")
        widget(st.toggle, "Impression context (slot and device)", "d_wctx", lambda: bool(w.context),
               lambda v: setattr(w, "context", bool(v)),
               help="Each impression gets a slot 1-10 (a user examines slot k with probability 1/k before clicking) "
                    "and a device that shifts dwell: context features, and the position-bias lesson's world.")
    with b2:
        widget(st.slider, "Moods in the item text", "d_moods", lambda: w.moods, lambda v: setattr(w, "moods", v),
               min_value=0, max_value=MAX_MOODS,
               help="Each mood shapes its items' latent vectors and is named in their title and description, so "
                    "the text says more than the genre (the language-model lesson). 0: the text repeats the genre.")
else:
    st.caption("CSV / TSV / other delimiters, Parquet, gzip or zip. MovieLens folders' files are recognised "
               "automatically (ratings.csv + movies.csv + tags.csv, or u.data + u.item + u.user).")
    ups = st.session_state.uploads
    kinds = ["csv", "tsv", "txt", "dat", "data", "gz", "zip", "parquet", "item", "user"]

    def _changed(role: str, multi: bool) -> None:
        """Keep our own copy of the bytes (uploader widgets forget them on a page switch)."""
        f = st.session_state.get(f"up_{role}")
        files = f if isinstance(f, list) else ([f] if f is not None else [])
        if not files:
            ups.pop(role, None)
        else:
            entry = tuple((x.name, x.getvalue()) for x in files)
            ups[role] = {"names": [x.name for x in files], "file": entry if multi else entry[0]}
        if role == "interactions":
            st.session_state.mapping = None
        c.data.tasks = []

    a, b, cc = st.columns(3)
    for col, role, label, multi in ((a, "interactions", "Interactions (required)", False),
                                    (b, "items", "Items (optional: titles, genres, tags)", True),
                                    (cc, "users", "Users (optional)", False)):
        with col:
            st.file_uploader(label, type=kinds, key=f"up_{role}", accept_multiple_files=multi,
                             on_change=_changed, args=(role, multi))
            if role in ups:
                st.caption("Using: " + plain(", ".join(ups[role]["names"])))
                if st.button("Remove", key=f"rm_{role}"):
                    ups.pop(role, None)
                    c.data.tasks = []
                    st.rerun()

ds, err = current_dataset()
if c.data.source == "files" and "interactions" in st.session_state.uploads:
    raw, raw_err = raw_interactions()
    if raw_err:
        st.error(plain(raw_err))
        halt()
    if err or ds.layout == "generic":
        mapping_form(raw, err)
if err:
    st.error(plain(err))
    halt()

st.subheader("What was loaded")
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Interactions", f"{ds.n_interactions:,}")
m2.metric("Users", f"{ds.n_users:,}")
m3.metric("Items", f"{ds.n_items:,}")
m4.metric("Density", f"{ds.density:.2%}")
m5.metric("Layout", {"world": "World", "movielens-latest": "MovieLens", "movielens-100k": "ML-100k",
                     "movielens-1m": "ML-1M"}.get(ds.layout, ds.layout.title()), help=f"detected layout: {ds.layout}")
for note in ds.notes:
    st.caption(plain(note))
if ds.context_features or ds.ignored:
    with st.expander(f"Columns: {len(ds.context_features)} context feature(s), {len(ds.ignored)} ignored",
                     expanded=bool(ds.ignored)):
        st.dataframe(pd.DataFrame(
            [{"column": col, "role": "context feature" + (" (the slot)" if col == ds.position_column else ""),
              "kind": kind, "why": ds.reasons.get(col, "")} for col, kind in ds.context_features.items()]
            + [{"column": col, "role": "ignored", "kind": "", "why": why} for col, why in ds.ignored.items()],
            columns=["column", "role", "kind", "why"]), hide_index=True)

with st.expander("Preview", expanded=False):
    st.dataframe(ds.interactions.head(20), hide_index=True)
    if len(ds.items.columns):
        st.dataframe(ds.items.head(10))

st.subheader("Tasks")
st.caption("One row per task. Kinds: binary column, threshold of a numeric column, regression, implicit "
           "(every logged row is 1; negatives are sampled), or retrieval (two towers that narrow the catalogue "
           "for the rankers; 'observed only where' = train on that task's positives only).")
rows = []
for text in task_list(ds):
    try:
        t = parse_task(text)
        rows.append({"name": t.name, "kind": t.kind, "column": "" if t.is_retrieval else t.column or "",
                     "op": t.op or t.transform or "", "threshold": t.threshold, "observed only where": t.parent or ""})
    except UserError:
        pass
cols = ds.label_columns()
edited = st.data_editor(
    pd.DataFrame(rows, columns=["name", "kind", "column", "op", "threshold", "observed only where"]),
    num_rows="dynamic", key=f"d_tasks_{abs(hash(dataset_key(ds))) % 10**8}", hide_index=True,
    column_config={
        "kind": st.column_config.SelectboxColumn(options=["binary", "threshold", "regression", "implicit", "retrieval"],
                                             required=True),
        "column": st.column_config.SelectboxColumn(options=[""] + cols),
        "op": st.column_config.SelectboxColumn(options=["", ">=", ">", "<=", "<", "==", "log"],
                                           help="a threshold's operator; 'log' for a regression on log(1 + value)"),
        "threshold": st.column_config.NumberColumn(),
        "observed only where": st.column_config.TextColumn(help="name of another (binary) task"),
    },
)


texts = [task_from_fields(r["name"], r["kind"], r["column"], r["op"], r["threshold"],
                          r["observed only where"]).to_string()
         for _, r in edited.iterrows() if str(r["name"] or "").strip()]
task_error = None
try:
    parse_tasks(texts)
except UserError as e:
    task_error = str(e)
if task_error:
    st.error(plain(task_error))
else:
    if texts != task_list(ds):
        c.data.tasks = texts if texts != ds.suggested_tasks else []
    st.code("  ".join(f"--task {t}" for t in texts), language="bash")

has_implicit = any(t.endswith("=implicit") or "=implicit|" in t for t in texts)
if has_implicit:
    widget(st.number_input, "Negatives per positive", "d_neg", lambda: c.data.negatives,
           lambda v: setattr(c.data, "negatives", int(v)), min_value=1, max_value=50,
           help="For each logged row, this many items the user never interacted with become 0-labelled examples.")

st.subheader("Data report")
left, right = st.columns(2)
with left:
    if not task_error:
        try:
            rep = examples_report(ds, dataset_key(ds), tuple(texts), c.data.negatives, c.seed)
            bal = pd.DataFrame(rep["balance"]).T
            st.caption(f"{rep['rows']:,} labelled examples")
            st.dataframe(bal, column_config={"positive_rate": st.column_config.ProgressColumn(
                "positive rate", min_value=0.0, max_value=1.0, format="%.2f")} if "positive_rate" in bal else None)
            for n in rep["notes"]:
                st.caption(plain(n))
        except UserError as e:
            st.error(plain(e))
with right:
    chart(charts.long_tail(ds.item_popularity()), key="d_tail")

st.page_link("pages/train.py", label="Next: configure and train a model →", icon=":material/model_training:")
