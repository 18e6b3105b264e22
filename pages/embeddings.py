"""Embeddings: projections of any representation (PCA / t-SNE / UMAP, 2-D or 3-D), colour by
any attribute, nearest neighbours, kNN purity, gate heat-maps, TensorBoard projector export."""
import io
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import streamlit as st

from mtrlib.viz import charts
from mtrlib.viz.project import (CAPS, export_projector, gate_matrix, gate_table, knn_purity, neighbours, project,
    representations, umap_available, vectors)
from mtrlib.runs import RunError
from pages._experts import last_health, show_health
from pages._shared import boot, explain, halt, load_run, plain, run_picker, trained_runs

boot()
st.title("Embeddings")
explain(
    "Every item (and user) gets a learned vector, its **embedding**. We squash those vectors to 2-D or 3-D "
    "so you can look at them: **PCA** keeps the directions of largest spread; **t-SNE** and **UMAP** keep "
    "neighbourhoods, so clusters show but distances between clusters mean little.\n\n"
    "The default view is each item **as the network reads it**: its id embedding next to the embeddings of "
    "its side features (genre, price band, ...) and its text, if used. The *id embedding only* view shows what "
    "training stored in the id vector alone: where the genre is also a feature, the id vector need not carry it; "
    "train with ids only to see behaviour alone sort items into genres.\n\n"
    "**kNN purity** asks: of each item's 10 nearest neighbours (in the full vector space), how many share "
    "its genre? Compare it with *chance* (picking neighbours at random) and with the *untrained* model: "
    "a big jump means training discovered the genres from behaviour alone.\n\n"
    "For MMoE and PLE, the **gate heat-map** shows how much each task listens to each expert. Tasks that "
    "agree share experts; tasks that conflict drift apart."
)

runs = trained_runs()

info = run_picker("Run", "e_run", runs)
run = load_run(info.path)
reps = representations(run)
with_text = " + text" if run.config.model.text_features else ""
LABELS = {"item-input": f"Items as the network reads them (id + side features{with_text})",
          "items": f"Item id embedding only{' (' + with_text[3:] + ' added)' if with_text else ''}",
          "users": "User embeddings", "text": "Language-model item vectors (raw)",
          "input": "Model input (user, item pairs)", "shared": "Shared representation"}


def fmt(w: str) -> str:
    """A representation's name in plain words (a tower's input or a gate names its task)."""
    return LABELS.get(w, f"Tower input: {w[5:]}" if w.startswith("task:") else f"Gate weights: {w[5:]}")


a, b, c, d = st.columns([2, 1, 1, 1])
what = a.selectbox("Representation", [r for r in reps if not r.startswith("gate:")], format_func=fmt, key="e_what")
umap_ok, umap_msg = umap_available()
method = b.selectbox("Method", ["pca", "tsne", "umap"] if umap_ok else ["pca", "tsne"], key="e_method",
                     format_func=lambda x: {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}[x],
                     help=None if umap_ok else umap_msg)
dims = c.radio("Dimensions", [2, 3], horizontal=True, key="e_dims")
seed = d.number_input("Seed", 0, 10**6, 0, key="e_seed")
if not umap_ok:
    st.caption(umap_msg)


@st.cache_data(max_entries=16, show_spinner="Projecting…")
def _project(_run, key: str, what: str, method: str, dims: int, seed: int) -> pd.DataFrame:
    return project(_run, what=what, method=method, dims=dims, seed=seed)


@st.cache_data(max_entries=16, show_spinner=False)
def _vectors(_run, key: str, what: str, seed: int, untrained: bool = False):
    model = _run.build_model(weights=False) if untrained else None
    return vectors(_run, what, seed=seed, model=model)


# The helpers below take what they work on unhashed (_V, _labels, _meta, _run); the other
# arguments name it: the run key, the representation and seed (as for _vectors), the label column.
@st.cache_data(max_entries=32, show_spinner=False)
def _purity(_V, _labels, key: str, what: str, seed: int, label_col: str, untrained: bool = False) -> dict:
    return knn_purity(_V, _labels, k=10)


@st.cache_data(max_entries=8, show_spinner=False)
def _projector_zip(_V, _meta, key: str, what: str, seed: int) -> bytes:
    """The TensorBoard projector files (vectors.tsv, metadata.tsv, ...) as a zip, in memory."""
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_projector(_V, _meta.drop(columns=[x for x in ("index",) if x in _meta.columns]), tmp)
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for p in paths.values():
                z.write(p, Path(p).name)
    return buf.getvalue()


@st.cache_data(max_entries=16, show_spinner=False)
def _gates(_run, key: str, by: str | None) -> pd.DataFrame:
    return gate_table(_run, by=by)


key = f"{info.path}|{info.status}|{info.epochs_done}"
try:
    df = _project(run, key, what, method, int(dims), int(seed))
except RunError as e:
    st.error(plain(e))
    halt()
meta_cols = [col for col in df.columns if col not in ("index", "x", "y", "z")]
prefer = [x for x in ("true_genre", "genre", "genres", "popularity") if x in meta_cols]
colour = st.selectbox("Colour by", prefer + [x for x in meta_cols if x not in prefer] + ["(none)"], key="e_colour")
colour = None if colour == "(none)" else colour
hover = [x for x in ("title", "item_id", "user_id", "genre", "genres", "true_genre", "popularity", "cold") if x in df.columns]

V, meta = _vectors(run, key, what, int(seed))
search_col = "title" if "title" in meta.columns else ("item_id" if "item_id" in meta.columns else None)
highlight, nb = None, None
if search_col:
    q = st.text_input(f"Search ({search_col})", key="e_search", placeholder="type part of a name")
    if q.strip():
        hits = meta.index[meta[search_col].astype(str).str.contains(q.strip(), case=False, regex=False)].tolist()[:200]
        if hits:
            pick = st.selectbox("Match", hits, format_func=lambda i: str(meta[search_col].iloc[i]), key="e_pick")
            nb = neighbours(V, pick, k=10, metadata=meta)
            shown = dict(zip(df["index"].tolist(), range(len(df))))
            highlight = [shown[i] for i in [pick] + nb["index"].tolist() if i in shown]
        else:
            st.caption("No match.")

left, right = st.columns([2, 1])
with left:
    fig = charts.scatter(df, colour, hover, f"{fmt(what)} · {method.upper()}", highlight=highlight)
    st.plotly_chart(fig, key="e_scatter")
    for n in df.attrs.get("notes", []):
        st.caption(plain(n))
    st.caption(f"{df.attrs.get('n_shown', len(df)):,} of {df.attrs.get('n_total', len(df)):,} points shown "
               f"(cap for {method.upper()}: {CAPS[method]:,}).")
with right:
    label_col = next((x for x in ("true_genre", "genre", "genres") if x in meta.columns), None)
    if colour and colour in meta.columns and not pd.api.types.is_numeric_dtype(meta[colour]):
        label_col = colour
    if label_col:
        labels = meta[label_col].astype(str).str.split("|").str[0]
        pur = _purity(V, labels, key, what, int(seed), label_col)
        st.metric(f"kNN purity by {plain(label_col)} (k=10)", f"{pur['purity']:.2f}",
                  delta=f"{pur['purity'] - pur['chance']:+.2f} vs chance {pur['chance']:.2f}")
        if what in ("item-input", "items", "users"):
            V0, _ = _vectors(run, key, what, int(seed), untrained=True)
            p0 = _purity(V0, labels, key, what, int(seed), label_col, untrained=True)
            st.metric("Same, untrained model", f"{p0['purity']:.2f}")
        st.caption("Share of each point's 10 nearest neighbours (cosine, full space) with the same "
                   f"{plain(label_col)}. Higher than chance = the representation learned that structure.")
    if nb is not None:
        st.markdown("**Nearest neighbours**")
        st.dataframe(nb[[x for x in ["rank", "similarity", search_col, "genre", "genres", "true_genre"]
                         if x in nb.columns]], hide_index=True)
    st.download_button("Download for TensorBoard Projector", _projector_zip(V, meta, key, what, int(seed)),
                       file_name=f"{info.id}-{what.replace(':', '-')}-projector.zip", mime="application/zip",
                       key="e_dl", help="vectors.tsv + metadata.tsv: load them at projector.tensorflow.org")

if "text" in reps and what in ("items", "item-input"):
    st.subheader("Before and after: what the language model knew vs what training learned")
    t1, t2 = st.columns(2)
    try:
        dt = _project(run, key, "text", method, int(dims), int(seed))
        t1.plotly_chart(charts.scatter(dt, colour, hover, "Raw language-model vectors"), key="e_text")
        t2.plotly_chart(charts.scatter(df, colour, hover, "Learned item embeddings"), key="e_items2")
    except RunError as e:
        st.error(plain(e))

gates = [r for r in reps if r.startswith("gate:")]
if gates:
    st.subheader("Gates and experts")
    tab_gates, tab_health = st.tabs(["Gate weights (task × expert)", "Expert health"])
    with tab_health:  # the last epoch's, from the run's history (mtrlib.train.experts)
        show_health(last_health(run.history.epochs), key="e_health")
    with tab_gates:
        split_opts = [x for x in run.items.columns if x not in ("title", "cold", "popularity", "description", "tags")
                      and run.items[x].astype(str).nunique() <= 50]
        if "true_genre" in run.users.columns:
            split_opts.append("user_true_genre")
        by = st.selectbox("Split by (item or user attribute)", ["(average over all)"] + split_opts, key="e_gate_by")
        try:
            gt = _gates(run, key, None if by.startswith("(") else by)
        except RunError as e:
            st.caption(plain(e))
            gt = _gates(run, key, None)
            by = "(average over all)"
        if not gt.empty:
            M, rows, experts = gate_matrix(gt, None if by.startswith("(") else by, getattr(run.model, "expert_names", []))
            st.plotly_chart(charts.heatmap(M, rows, experts, "Average gate weight"), key="e_gates")
