"""Recommend: top-K for a user with per-task scores; fusion sliders re-rank instantly; the same
user under a second run; ranking metrics of the run vs popularity."""
import pandas as pd
import streamlit as st

from mtrlib.recommend import fusion_for, fusion_is_zero, held_out, rank_eval, recommend, user_history
from mtrlib.runs import RunError
from mtrlib.truth import truth_eval
from pages._shared import boot, explain, halt, load_run, plain, run_picker, trained_runs

boot()
st.title("Recommend")
explain(
    "A multi-task model gives every (user, item) pair one score per task, e.g. *will they watch it* and "
    "*will they like it*. To rank items we **fuse** the scores: the weighted sum of each binary task's "
    "log-probability (so equal weights = the product pWatch × pLike) plus scaled regression outputs. "
    "Move a slider and the list re-ranks at once, with no retraining: that is the business knob between, "
    "say, engagement and satisfaction. Items the user already met in training are left out. "
    "**Cold** items had no interactions in training: they are placed by their side features and text only."
)

runs = trained_runs()

info = run_picker("Run", "rc_run", runs)
run = load_run(info.path)
users = run.users.index.astype(str)
a, b = st.columns([2, 1])
query = a.text_input("Find a user (id)", value="", key="rc_q", placeholder="e.g. 1")
matches = [u for u in users if query.strip() in u][:500] if query.strip() else list(users[:500])
exact = query.strip() if query.strip() in set(users) else None
options = ([exact] if exact else []) + [u for u in matches if u != exact]
if not options:
    st.warning(f"No user id contains '{plain(query)}'. Unknown users get popular items (shown below).")
    options = [query.strip() or users[0]]
uid = b.selectbox("User", options, key=f"rc_user_{query}")
k = st.slider("How many items (K)", 5, 50, 10, key="rc_k")
if "true_genre" in run.users.columns and uid in run.users.index:
    st.caption(f"Ground truth (synthetic world): user {plain(uid)}'s favourite genre is "
               f"**{run.users.loc[uid, 'true_genre']}**.")

st.subheader("Fusion weights")
cols = st.columns(max(1, len(run.tasks)))
fusion = {}
for col, t in zip(cols, run.tasks):
    fusion[t.name] = col.slider(f"{t.name} ({'log p' if t.is_binary else 'scaled value'})", 0.0, 5.0,
                                1.0 if t.is_binary else 0.0, 0.1, key=f"rc_f_{t.name}")
if fusion_is_zero(fusion):
    st.warning("Every fusion weight is 0, so nothing ranks the items: raise at least one slider.")
    halt()


def _table(r, user, weights, held_r: pd.DataFrame) -> pd.DataFrame | None:
    """The top-K table of run `r` for `user`; `held_r` = held_out(r, user), marked in it."""
    try:
        df = recommend(r, user, k=k, fusion=weights)
    except RunError as e:
        st.error(plain(e))
        return None
    for n in df.attrs.get("notes", []):
        st.info(plain(n))
    held = set(held_r.get("item_id", pd.Series(dtype=str)))
    df["held out"] = df["item_id"].isin(held)
    show = [c for c in ["rank", "title", "genres", "genre", "score", *r.task_names, "cold", "held out"]
            if c in df.columns]
    if "title" not in show:
        show.insert(1, "item_id")
    return df[show]


def _config(r) -> dict:
    """Compact columns, so the fused and per-task scores stay in view next to the titles."""
    cfg = {"rank": st.column_config.NumberColumn("#", width="small"),
           "title": st.column_config.TextColumn(width="medium"),
           "genres": st.column_config.TextColumn(width="small"), "genre": st.column_config.TextColumn(width="small"),
           "score": st.column_config.NumberColumn("fused", format="%.3f", width="small"),
           "cold": st.column_config.CheckboxColumn("cold", width="small"),
           "held out": st.column_config.CheckboxColumn("held out", width="small",
                                                       help="the user really interacted with it in the test split")}
    cfg.update({t: st.column_config.NumberColumn(t, format="%.3f", width="small") for t in r.task_names})
    return cfg


held = held_out(run, uid)  # once per rerun: the top list and the expander below both show it
left, right = st.columns(2)
with left:
    st.markdown(f"**Top {k} for user {plain(uid)}** · {plain(info.name)}")
    top = _table(run, uid, fusion, held)
    if top is not None:
        st.dataframe(top, hide_index=True, key="rc_top", column_config=_config(run))
        if "true_genre" in run.users.columns and uid in run.users.index and "title" in top.columns:
            fav = run.users.loc[uid, "true_genre"]
            n_fav = int((run.items.set_index("title").loc[top["title"], "true_genre"] == fav).sum())
            st.caption(f"{n_fav} of these {len(top)} are in the user's favourite genre ({plain(fav)}): the "
                       "ranking follows the fused score, which the like task pulls too (see the truth below).")
with right:
    same = lambda r: all(r.dataset.get(k) == info.dataset.get(k) for k in ("name", "layout", "users", "items"))
    other = [r for r in runs if r.id != info.id and same(r)]  # same users and items, so the lists compare
    if other:
        info_b = run_picker("Compare with run", "rc_run_b", other)
        run_b = load_run(info_b.path)
        tb = _table(run_b, uid, fusion_for(run_b, fusion), held_out(run_b, uid))
        if tb is not None:
            st.dataframe(tb, hide_index=True, key="rc_top_b", column_config=_config(run_b))
    else:
        st.caption("Train a second run on the same data to compare two models side by side for this user.")

h1, h2 = st.columns(2)
with h1.expander(f"History of user {plain(uid)}: items met in training"):
    try:
        st.dataframe(user_history(run, uid), hide_index=True)
    except (RunError, KeyError):
        st.caption("This user has no history in the run.")
with h2.expander(f"Held out for testing: what user {plain(uid)} did next"):
    if held.empty:
        st.caption("No held-out interactions for this user.")
    else:
        st.caption("The model never saw these. Items marked *held out* in the top list above are hits.")
        st.dataframe(held, hide_index=True)

if info.dataset.get("layout") == "world" and run.config.data.source == "world":
    st.subheader("How close is this run to the world's truth?")
    st.caption("The built-in world knows every user's favourite genre and the true probability of a click and a "
               "like for every item. For 300 users, over the items they have not met: the share of the top "
               f"{k} in the user's favourite genre, and how much of the truth's own top {k} (ranked by the same "
               "fusion of the world's probabilities) this run recovers, next to ranking by popularity.")
    if st.button("Compare with the truth", key="rc_truth"):
        with st.spinner("Rebuilding the world and scoring 300 users…"):
            try:
                tr = truth_eval(run, users=300, k=k, fusion=fusion)
                share, overlap = tr[f"favourite_genre_share@{k}"], tr[f"truth_overlap@{k}"]
                st.dataframe(pd.DataFrame({
                    "this run": [share["model"], overlap["model"]], "the truth": [share["truth"], 1.0],
                    "popularity": [share["popularity"], overlap["popularity"]]},
                    index=[f"share of the top {k} in the favourite genre", f"overlap with the truth's top {k}"]
                ).style.format("{:.2f}"))
                for n in tr["notes"]:
                    st.caption(plain(n))
            except RunError as e:
                st.error(plain(e))

st.subheader("Ranking quality")
st.caption("Full ranking over every item the user has not met: Recall / NDCG / HitRate at K for the "
           "held-out positives of a task, next to ranking by popularity.")
task = st.selectbox("Task", run.binary_tasks or ["(none)"], key="rc_task")
if run.binary_tasks and st.button("Compute ranking metrics", key="rc_eval"):
    with st.spinner("Scoring every user against every item…"):
        try:
            res = rank_eval(run, task=task)
            tab = pd.DataFrame({"model": res["model"], "popularity": res["popularity"]})
            st.dataframe(tab.style.format("{:.4f}").highlight_max(axis=1, color="#d7f0d2"))
            st.caption(f"{res.get('users', '?')} users · {res.get('seconds', 0):.2f} s")
        except RunError as e:
            st.error(plain(e))
