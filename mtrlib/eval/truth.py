"""How close a run's recommendations are to the built-in world's truth.

A run trained on the synthetic world (`mtrlib.data.world`) can be compared with what the
world knows: every user's favourite genre and the noiseless probability of a click and a like
for *every* (user, item) pair. For a seeded sample of users, over the items each has not met
in training / validation (the same candidates as `mtrlib.serve.recommend`):

- the run's top-K by its fused score (the Recommend page's ranking);
- the truth's top-K by the same fusion of the world's own probabilities: the sum over the
  run's binary tasks on the world's `click` / `like` columns of w_t * log p_t;
- popularity's top-K (training positives of the first binary task).

`favourite_genre_share@K`: the share of a top-K in the user's favourite (true) genre, for the
model, the truth and popularity; `truth_overlap@K`: the share of the truth's top-K that the
model's (or popularity's) top-K recovers. The world is rebuilt from the run's config (it is
deterministic by seed) and checked against the run's item table, so a run made by an older
version of the world is refused rather than compared with the wrong truth.
"""
from __future__ import annotations

import numpy as np

from ..data.world import make_world, true_logits
from ..serve.recommend import fusion_weights, popularity, run_scores
from .ranking import top_k
from ..runs import Run, RunError, load_run

TRUTH_COLUMNS = ("click", "like")  # world columns with a known probability


def world_of(run: Run):
    """The world a run was trained on, rebuilt from its config (no size limit: it was built once)."""
    cfg = run.config
    if cfg.data.source != "world":
        raise RunError(f"Run '{run.name}' was not trained on the built-in world, so there is no truth to compare with.",
                       fix="train a run on the built-in world (no --data)")
    ds = make_world(**cfg.data.world.to_dict(), max_impressions=None)
    titles = ds.items["title"].reindex(run.items.index)
    if titles.isna().any() or not (titles.to_numpy() == run.items["title"].to_numpy()).all():
        raise RunError(f"Run '{run.name}' was trained on an earlier version of the built-in world, whose truth "
                       "this version cannot rebuild.", fix="train the run again")
    return ds


def truth_weights(run: Run, task: str | None = None, fusion=None) -> tuple[dict[str, float], dict[str, str], list[str]]:
    """(weights, task -> world column, notes): with `fusion`, its weights; else 1 on `task` (default:
    the first binary task, as `eval` ranks). Only tasks on the world's click / like have a truth."""
    if fusion is not None:
        weights = fusion_weights(run, fusion)
    else:
        t = run.task(task) if task is not None else (run.task(run.binary_tasks[0]) if run.binary_tasks else None)
        if t is None or not t.is_binary:
            raise RunError("Comparing with the truth needs a binary task.",
                           fix=f"choose one of: {', '.join(run.binary_tasks) or '(none)'}")
        weights = {n: float(n == t.name) for n in run.task_names}
    columns, notes = {}, []
    for t in run.tasks:
        if weights.get(t.name, 0) == 0:
            continue
        if t.is_binary and t.kind == "binary" and t.column in TRUTH_COLUMNS:
            columns[t.name] = t.column
        else:
            notes.append(f"Task '{t.name}' has no known truth in the world: the truth ranking leaves it out.")
    if not columns:
        raise RunError("None of the weighted tasks is the world's click or like, so the truth cannot rank.",
                       fix="weight a task defined as click=click or like=like")
    return weights, columns, notes


def truth_eval(run, users: int = 300, k: int = 10, task: str | None = None, fusion=None, seed: int = 0,
               store=None) -> dict:
    """The run's top-K against the world's truth for `users` sampled known users (seeded), both
    ranked by `task` (default: the first binary task) or, given `fusion`, by that fusion.

    Returns {"favourite_genre_share@K": {"model", "truth", "popularity"},
    "truth_overlap@K": {"model", "popularity"}, "users": N, "k": K, "notes": [...]}."""
    run = load_run(run, store)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise RunError(f"K must be a whole number of at least 1 (got {k}).", fix="e.g. 10")
    if not isinstance(users, (int, np.integer)) or users < 1:
        raise RunError(f"The number of users must be at least 1 (got {users}).", fix="e.g. 300")
    ds = world_of(run)
    gt = ds.ground_truth
    weights, columns, notes = truth_weights(run, task, fusion)
    known = np.flatnonzero(~run.users["cold"].to_numpy())
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(known, size=min(int(users), len(known)), replace=False))
    ids = run.users.index.to_numpy()[rows]
    u_w = gt["user_genre"].index.get_indexer(ids)
    i_w = gt["item_genre"].index.get_indexer(run.items.index)
    scores = {"model": run_scores(run, users=ids, fusion=weights, exclude_seen=True)}
    seen = ~np.isfinite(scores["model"])
    logit = dict(zip(TRUTH_COLUMNS, true_logits(gt, u_w[:, None], i_w[None, :])))
    truth = sum(weights[t] * -np.logaddexp(0, -logit[c]) for t, c in columns.items())  # w * log sigmoid
    scores["truth"] = np.where(seen, -np.inf, truth)
    pop = popularity(run)
    scores["popularity"] = np.where(seen, -np.inf, pop[None, :] - 1e-9 * np.arange(len(pop))[None, :])
    kk = int(min(k, run.n_items))
    top = {name: top_k(S, kk)[1] for name, S in scores.items()}
    fav = gt["user_genre"].to_numpy()[u_w]
    item_genre = gt["item_genre"].to_numpy()[i_w]
    ok = np.isfinite(np.take_along_axis(scores["truth"], top["truth"], 1))  # users with fewer candidates than K
    share = {n: float(((item_genre[t] == fav[:, None]) & ok).sum() / max(1, ok.sum())) for n, t in top.items()}
    overlap = {n: float(np.mean([len(set(a[o]) & set(b[o])) / max(1, o.sum())
                                 for a, b, o in zip(top[n], top["truth"], ok)])) for n in ("model", "popularity")}
    ranked = "fused score" if fusion is not None else f"{next(iter(columns))} score"
    return {f"favourite_genre_share@{kk}": share, f"truth_overlap@{kk}": overlap, "users": int(len(rows)),
            "k": kk, "ranked_by": ranked, "notes": notes}


def truth_metrics(run, task: str = "click", k: int = 10, users: int = 300, store=None) -> dict[str, float]:
    """{"truth_overlap@K", "truth_genre_share@K"}: the model's side of `truth_eval` ranked by `task`,
    as metrics of that task (what a sweep adds to each run of a lesson that is judged by the truth)."""
    res = truth_eval(run, users=users, k=k, task=task, store=store)
    kk = res["k"]
    return {f"truth_overlap@{kk}": res[f"truth_overlap@{kk}"]["model"],
            f"truth_genre_share@{kk}": res[f"favourite_genre_share@{kk}"]["model"]}


__all__ = ["truth_eval", "world_of", "truth_weights", "truth_metrics"]
