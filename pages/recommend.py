"""Recommend: top-K for a user with per-task scores; fusion sliders re-rank instantly; the same
user under a second run; ranking metrics of the run vs popularity."""
import pandas as pd
import streamlit as st

from mtrlib.viz import charts
from mtrlib.serve.behaviour import has_history, recent_history
from mtrlib.serve.recommend import explain as explain_items
from mtrlib.serve.fusion import fusion_for, fusion_is_zero
from mtrlib.serve.recommend import held_out, rank_eval, recommend, user_history
from mtrlib.runs import RunError
from mtrlib.eval.truth import truth_eval
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


def _stage_choice(r) -> tuple[str | None, int | None]:
    """Two-stage recommender (mtrlib.serve.cascade): which stage ranks, and how many candidates the
    retrieval stage passes on. Only for a run with a retrieval task."""
    if not r.retrieval_tasks:
        return None, None
    a, b = st.columns([2, 1])
    stage = a.radio("Stage", ["cascade", "full", "retrieval"], horizontal=True, key="rc_stage",
                    format_func={"cascade": "cascade: retrieve, then rank", "full": "full ranking (every item)",
                                 "retrieval": "retrieval only"}.get,
                    help="The cascade retrieves the top N items by the two towers' dot product (one matrix "
                         "product over the catalogue), then ranks only those with the fused score.")
    n = b.slider("Candidates N", min(k, r.n_items), r.n_items, min(200, r.n_items), key="rc_n",
                 disabled=stage != "cascade", help="items retrieved per user before ranking")
    return stage, n


stage, n_cand = _stage_choice(run)


def _context_choice(r) -> dict:
    """For a run with context features: the context the list is scored in (device, hour, the
    slot), each column's most frequent training value by default (mtrlib.data.context)."""
    space = getattr(r.space, "context", None)
    if space is None:
        return {}
    st.subheader("Context")
    st.caption("This run reads the impression's context. Choose the one to score in: the list below is what "
               "the model would show then. The position is fixed to one slot for every item, so it does not "
               "favour any item by where it happened to be shown.")
    chosen = {}
    cols = st.columns(min(4, len(space.kinds)))
    for j, (col, kind) in enumerate(space.kinds.items()):
        box = cols[j % len(cols)]
        label = f"{col} (the slot)" if col == space.position else col
        opts = space.choices(col)
        default = space.defaults.get(col, "")
        if kind == "categorical" and opts:
            chosen[col] = box.selectbox(label, opts, index=opts.index(default) if default in opts else 0,
                                        key=f"rc_ctx_{col}")
        elif kind in ("numeric", "bucket"):
            try:
                start = float(default)
            except ValueError:
                start = 0.0
            chosen[col] = f"{box.number_input(label, value=start, key=f'rc_ctx_{col}'):g}"
        else:
            chosen[col] = box.text_input(label, value=default, key=f"rc_ctx_{col}")
    return chosen


context = _context_choice(run)
if "true_genre" in run.users.columns and uid in run.users.index:
    st.caption(f"Ground truth (synthetic world): user {plain(uid)}'s favourite genre is "
               f"**{run.users.loc[uid, 'true_genre']}**.")

st.subheader("Fusion weights")
cols = st.columns(max(1, len(run.tasks)))
fusion = {}
for col, t in zip(cols, run.tasks):
    scale = "log p" if t.is_binary else "retrieval logit" if t.is_retrieval else "scaled value"
    fusion[t.name] = col.slider(f"{t.name} ({scale})", 0.0, 5.0,
                                1.0 if t.is_binary else 0.0, 0.1, key=f"rc_f_{t.name}")
if fusion_is_zero(fusion):
    st.warning("Every fusion weight is 0, so nothing ranks the items: raise at least one slider.")
    halt()


def _table(r, user, weights, held_r: pd.DataFrame, stage=None, candidates=None, ctx=None) -> pd.DataFrame | None:
    """The top-K table of run `r` for `user`; `held_r` = held_out(r, user), marked in it. For a run
    with a retrieval task: the stage that placed each item and its rank in the retrieved list.
    `ctx`: the context to score in (a run with context features)."""
    try:
        df = recommend(r, user, k=k, fusion=weights, stage=stage, candidates=candidates, context=ctx or None)
    except RunError as e:
        st.error(plain(e))
        return None
    for n in df.attrs.get("notes", []):
        st.info(plain(n))
    held = set(held_r.get("item_id", pd.Series(dtype=str)))
    df["held out"] = df["item_id"].isin(held)
    if r.retrieval_tasks:  # what placed each item, and by which score
        df["placed by"] = _placed_by(df)
    show = [c for c in ["rank", "title", "placed by", "genres", "genre", "score", *r.task_names, "cold", "held out"]
            if c in df.columns]
    if "title" not in show:
        show.insert(1, "item_id")
    out = df[show]
    out.attrs.update(df.attrs, item_ids=df["item_id"].tolist())
    return out


def _placed_by(df: pd.DataFrame) -> list[str]:
    """Per item: the stage and the score that put it in the list (mtrlib.serve.cascade)."""
    rank = df["retrieval rank"] if "retrieval rank" in df.columns else [None] * len(df)
    text = {"cascade": "#{r} → ranked", "retrieval": "#{r} retrieved", "full": "full ranking",
            "popularity": "popularity"}
    return [text.get(s, s).format(r=int(x) if x == x and x is not None else "?") for s, x in zip(df["stage"], rank)]


def _config(r) -> dict:
    """Compact columns, so the fused and per-task scores stay in view next to the titles."""
    cfg = {"rank": st.column_config.NumberColumn("#", width="small"),
           "title": st.column_config.TextColumn(width="medium"),
           "genres": st.column_config.TextColumn(width="small"), "genre": st.column_config.TextColumn(width="small"),
           "score": st.column_config.NumberColumn("fused", format="%.3f", width="small"),
           "cold": st.column_config.CheckboxColumn("cold", width="small"),
           "held out": st.column_config.CheckboxColumn("held out", width="small",
                                                       help="the user really interacted with it in the test split"),
           "placed by": st.column_config.TextColumn("placed by",
                                                    help="the stage and score that put the item here: '#37 → ranked' = "
                                                         "37th of the two towers' candidates, then placed by the fused "
                                                         "score; 'full ranking' = the fused score over every item; "
                                                         "'#3 retrieved' = the towers' score alone")}
    cfg.update({t: st.column_config.NumberColumn(t, format="%.3f", width="small") for t in r.task_names})
    return cfg


held = held_out(run, uid)  # once per rerun: the top list and the expander below both show it
# one above the other, each the page's full width: side by side, the score columns were cut off
left, right = st.container(), st.container()
with left:
    st.markdown(f"**Top {k} for user {plain(uid)}** · {plain(info.name)}")
    top = _table(run, uid, fusion, held, stage, n_cand, context)
    if top is not None:
        if top.attrs.get("context"):
            st.caption("Scored in context: " + plain(", ".join(f"{c} = {v}" for c, v in top.attrs["context"].items())))
        if top.attrs.get("stage") == "cascade":
            st.caption(f"Cascade: the two towers retrieved {top.attrs.get('candidates')} of {run.n_items:,} items, "
                       "then the rankers ordered them by the fused score.")
        conf = _config(run)
        if top.attrs.get("stage") == "retrieval":  # the score column is then the towers' cosine
            conf["score"] = st.column_config.NumberColumn("retrieval", format="%.3f", width="small")
        st.dataframe(top, hide_index=True, key="rc_top", column_config=conf)
        if "true_genre" in run.users.columns and uid in run.users.index and "title" in top.columns:
            fav = run.users.loc[uid, "true_genre"]
            n_fav = int((run.items.set_index("title").loc[top["title"], "true_genre"] == fav).sum())
            st.caption(f"{n_fav} of these {len(top)} are in the user's favourite genre ({plain(fav)}): the "
                       "ranking follows the fused score, which the like task pulls too (see the truth below).")
with right:
    def same(r) -> bool:
        """Trained on the same users and items, so the two lists compare."""
        return all(r.dataset.get(k) == info.dataset.get(k) for k in ("name", "layout", "users", "items"))

    other = [r for r in runs if r.id != info.id and same(r)]  # same users and items, so the lists compare
    if other:
        st.markdown("**The same user under another run**")
        info_b = run_picker("Compare with run", "rc_run_b", other)
        run_b = load_run(info_b.path)
        tb = _table(run_b, uid, fusion_for(run_b, fusion), held_out(run_b, uid))
        if tb is not None:
            st.dataframe(tb, hide_index=True, key="rc_top_b", column_config=_config(run_b))
    else:
        st.caption("Train a second run on the same data to compare two models side by side for this user.")



def why_this_item(r, user, top_df: pd.DataFrame | None, weights) -> None:
    """"Why this item?": the history items closest to each recommended item in the retrieval (or
    item) space, and each task's part of the fused score (mtrlib.serve.recommend.explain)."""
    if top_df is None or top_df.empty or top_df.attrs.get("fallback"):
        return  # nothing to explain for a user the run does not know (popular items)
    st.subheader("Why this item?")
    try:
        why = explain_items(r, user, top_df.attrs["item_ids"], fusion=weights)
    except RunError as e:
        st.error(plain(e))
        return
    hist = why.attrs["history"]
    st.caption(f"For each item, the {'items you liked (' + plain(hist) + ')' if hist != 'interactions' else 'items you met'} "
               f"in training that are closest to it in the {why.attrs['space']} space, and how much each task adds "
               "to its fused score.")
    labels = top_df["title"].tolist() if "title" in top_df.columns else top_df.attrs["item_ids"]
    left, right = st.columns([1.2, 1])
    with left:
        table = pd.DataFrame({"#": range(1, len(why) + 1), "item": labels,
                              "because you liked": why["because_text"]})
        st.dataframe(table, hide_index=True, key="rc_why",
                     column_config={"#": st.column_config.NumberColumn(width="small"),
                                    "because you liked": st.column_config.TextColumn(width="large")})
    with right:
        st.plotly_chart(charts.contributions(why, labels, r.task_names, charts.task_colours(r.task_names)),
                        key="rc_contrib")


def history_section(r, user: str, top_df: pd.DataFrame | None) -> None:
    """The user's recent history as the model reads it, and each past item's weight in the score of
    a chosen recommendation (DIN: target attention, "these past items drove this score")."""
    st.subheader("Recent history: what drove this score")
    if not has_history(r):
        st.caption("This run reads no user history. Switch on *User history* on the Train page (or "
                   "`--history 50 --history-encoder din`) to see which past items drive a score.")
        return
    if top_df is None or top_df.empty:
        st.caption("No recommendation to explain for this user.")
        return
    ids = top_df.attrs.get("item_ids", [])
    label = top_df["title"] if "title" in top_df.columns else ids
    picks = {f"{rk}. {t}": i for rk, t, i in zip(top_df["rank"], label, ids)}
    choice = st.selectbox("Explain recommendation", list(picks), key="rc_hist_pick")
    try:
        past = recent_history(r, user, picks[choice])
    except RunError as e:
        st.error(plain(e))
        return
    if past.empty:
        st.caption(f"User {plain(user)} has no training history, so only their id and features score items.")
        return
    meaning = past.attrs.get("meaning", "")
    keeps = f" (only items where {past.attrs['task']} = 1)" if past.attrs.get("task") else ""
    st.caption(f"The last {len(past)} of at most {past.attrs.get('length')} training interactions{keeps}, "
               f"most recent first. Weights: {meaning}.")
    a, b = st.columns([1, 1])
    a.plotly_chart(charts.history_weights(past, f"Past items behind: {choice[:50]}"), key="rc_hist_chart")
    b.dataframe(past, hide_index=True, key="rc_hist_table",
                column_config={"#": st.column_config.NumberColumn("#", width="small"),
                               "weight": st.column_config.NumberColumn("weight", format="%.3f")})


why_this_item(run, uid, top, fusion)
history_section(run, uid, top)

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
st.caption("Ranking over every item the user has not met: Recall / NDCG / HitRate at K for the "
           "held-out positives of a task, next to ranking by popularity"
           + (" (through the stage chosen above)." if run.retrieval_tasks else "."))
tasks_eval = run.binary_tasks + run.retrieval_tasks
q1, q2 = st.columns([1, 1])
task = q1.selectbox("Task", tasks_eval or ["(none)"], key="rc_task")
lm = q2.checkbox("Language-model zero-shot baseline", value=bool(run.config.model.text_features), key="rc_lm",
                 help="A user is the mean of the language-model vectors of the items they met in training; "
                      "items ranked by cosine, with no training: what the pretrained model knows alone.")
if tasks_eval and st.button("Compute ranking metrics", key="rc_eval"):
    with st.spinner("Scoring every user…"):
        try:
            res = rank_eval(run, task=task, stage=stage, candidates=n_cand, lm_baseline=lm)
            tab = pd.DataFrame({c: res[c] for c in ("model", "popularity", "lm_zero_shot") if c in res})
            st.dataframe(tab.style.format("{:.4f}").highlight_max(axis=1, color="#d7f0d2"), key="rc_quality")
            st.caption(f"{res.get('users', '?')} users · stage {res['stage']} · {res.get('seconds', 0):.2f} s of scoring"
                       + (" · lm_zero_shot: no training, the language model's vectors alone" if "lm_zero_shot" in res
                          else ""))
        except RunError as e:
            st.error(plain(e))
