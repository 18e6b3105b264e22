"""Look inside a run's representations: 2-D / 3-D projections, nearest neighbours, kNN purity,
and export to the TensorBoard Embedding Projector.

Representations (`what`):
    "item-input"   what the network reads for an item: its id vector (combined with text, if
                   used) and its side-feature embeddings, as fed in (the Embeddings page's default)
    "items"        learned item vectors (id embedding, combined with text features if used)
    "users"        learned user id embeddings
    "text"         the raw language-model item vectors (runs trained with text features)
    "input"        the model's input row for (user, item) pairs
    "shared"       what all tasks share (bottom output, or the experts' outputs side by side)
    "task:<name>"  that task's tower input
    "gate:<name>"  that task's gate weights over the experts (MMoE / PLE)
The pair representations are computed for a seeded sample of (user, item) pairs of the run's
held-out test split (logged interactions and sampled negatives alike); the metadata says which.

Projection methods: PCA (exact, scikit-learn), t-SNE (scikit-learn, Barnes-Hut), UMAP (only when
`umap-learn` imports; otherwise a clear error). As in TensorBoard's projector, large sets are
sampled to a cap (PCA 50,000, t-SNE 10,000, UMAP 5,000), and the cap used is reported in
`df.attrs`.

kNN purity: for every point, the fraction of its k nearest neighbours (cosine, original space)
that share its label, averaged. Reported next to the chance level (the probability that a
random other point shares the label), so "0.62 vs chance 0.13" reads as learned structure.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..train.device import SCORING_THREADS, cpu_compute, device_of
from ..runs import Run, RunError, load_run
from ..safe import tsv_cell

CAPS = {"pca": 50_000, "tsne": 10_000, "umap": 5_000}
METHODS = ("pca", "tsne", "umap")
DEFAULT_PAIRS = 2000


def umap_available() -> tuple[bool, str]:
    """(True, '') when umap-learn can be imported, else (False, a message saying how to get it)."""
    if importlib.util.find_spec("umap") is None:
        return False, "UMAP needs the package umap-learn, which is not installed (pip install umap-learn)."
    return True, ""


def representations(run, store=None) -> list[str]:
    """The `what` values this run offers."""
    run = load_run(run, store)
    out = ["item-input", "items", "users"]
    if run.space.item_text is not None:
        out.append("text")
    keys = _inspect_keys(run)
    out += [k for k in keys if k in ("input", "shared")]
    out += [k for k in keys if k.startswith("task:")]
    out += [k for k in keys if k.startswith("gate:")]
    return out


def _inspect_keys(run: Run) -> list[str]:
    m = run.model
    z = torch.zeros(1, dtype=torch.long, device=device_of(m))
    with torch.inference_mode():
        return list(m.inspect(z, z).keys())


def _pair_sample(run: Run, max_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, str]:
    te = run.test
    n = len(te["user"])
    if n == 0:
        raise RunError(f"Run '{run.name}' has no test examples to sample pairs from.")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(n, int(max_pairs)), replace=False))
    u, i = te["user"][idx], te["item"][idx]
    items, users = run.items, run.users
    meta = pd.DataFrame({"user_id": users.index.to_numpy()[u], "item_id": items.index.to_numpy()[i]})
    for c in items.columns:
        if c != "cold":
            meta[c] = items[c].to_numpy()[i]
    if "true_genre" in users.columns:
        meta["user_true_genre"] = users["true_genre"].to_numpy()[u]
    for j, name in enumerate(run.task_names):
        lab = te["labels"][idx, j].astype(float)
        lab[~te["mask"][idx, j]] = np.nan
        meta[f"label:{name}"] = lab
    meta["logged"] = te["logged"][idx]
    meta["cold"] = items["cold"].to_numpy()[i]
    note = (f"{len(idx):,} (user, item) pairs sampled (seed {seed}) from the {n:,} test-split examples "
            f"({int(te['logged'][idx].sum()):,} logged interactions, {int((~te['logged'][idx]).sum()):,} sampled negatives); "
            f"{len(np.unique(u)):,} users, {len(np.unique(i)):,} items.")
    return u, i, meta, note


def vectors(run, what: str = "items", max_pairs: int = DEFAULT_PAIRS, seed: int = 0, model=None,
            store=None) -> tuple[np.ndarray, pd.DataFrame]:
    """Raw vectors [n, d] (float32) of a representation, with aligned metadata (one row each).
    `meta.attrs['notes']` says what was sampled. `model` overrides the run's trained model
    (e.g. `run.build_model(weights=False)` for an untrained comparison)."""
    run = load_run(run, store)
    m = model if model is not None else run.model
    dev = device_of(m)
    notes: list[str] = []
    if what in ("items", "item-input"):
        V = (m.item_embeddings() if what == "items" else m.item_inputs()).float().cpu().numpy()
        meta = run.items.reset_index()
        n_cold = int(meta["cold"].sum())
        if n_cold:
            notes.append(f"{n_cold:,} items were never seen in training (cold): they have no learned id vector"
                         + (" and are placed by their text." if run.config.model.text_features else "."))
    elif what == "users":
        V = m.user_embeddings().float().cpu().numpy()
        meta = run.users.reset_index()
    elif what == "text":
        if run.space.item_text is None:
            raise RunError(f"Run '{run.name}' was trained without text features, so it has no language-model vectors.",
                           fix="train with --text-features")
        V = np.asarray(run.space.item_text, np.float32)
        meta = run.items.reset_index()
        notes.append("Raw language-model vectors (before training).")
    elif what in ("input", "shared") or what.startswith(("task:", "gate:")):
        u, i, meta, note = _pair_sample(run, max_pairs, seed)
        notes.append(note)
        out = []
        with torch.inference_mode():
            for s in range(0, len(u), 65536):
                rep = m.inspect(torch.as_tensor(u[s:s + 65536], device=dev), torch.as_tensor(i[s:s + 65536], device=dev))
                if what not in rep:
                    avail = [k for k in rep if k in ("input", "shared") or k.startswith(("task:", "gate:"))]
                    raise RunError(f"Run '{run.name}' ({run.info.arch_label}) has no representation '{what}'.",
                                   fix=f"choose one of: items, users, {', '.join(avail)}")
                out.append(rep[what].float().cpu())
        V = torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)
    else:
        raise RunError(f"Unknown representation '{what}'.",
                       fix="use item-input, items, users, text, input, shared, task:NAME or gate:NAME")
    meta.attrs["notes"] = notes
    meta.attrs["what"] = what
    return np.ascontiguousarray(V, dtype=np.float32), meta


def reduce(V: np.ndarray, method: str = "pca", dims: int = 2, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Coordinates [n, dims] of V by PCA / t-SNE / UMAP; info holds e.g. explained variance."""
    if method not in METHODS:
        raise RunError(f"Unknown projection method '{method}'.", fix="use pca, tsne or umap")
    if dims not in (2, 3):
        raise RunError(f"Projections are 2-D or 3-D (got {dims}).", fix="use 2 or 3")
    n = V.shape[0]
    if n < 3:
        raise RunError(f"At least 3 points are needed for a projection (got {n}).")
    X = np.nan_to_num(np.asarray(V, np.float64))
    if X.shape[1] < dims:
        X = np.hstack([X, np.zeros((n, dims - X.shape[1]))])
    info: dict = {}
    with _native_threads(TSNE_THREADS if method == "tsne" else SCORING_THREADS):
        C = _reduce(X, method, dims, seed, n, info)
    return np.asarray(C, np.float64), info


def _native_threads(threads: int = SCORING_THREADS):
    """OpenMP / BLAS threads for the reducers and the neighbour search: MTR_SCORING_THREADS (1 by
    default) for the small, frequent ones, because on a shared 2-core box OpenMP spin-waiting
    makes them many times slower when the cores are busy; t-SNE passes its own TSNE_THREADS."""
    return cpu_compute(threads, native=True)


def _reduce(X: np.ndarray, method: str, dims: int, seed: int, n: int, info: dict) -> np.ndarray:
    if method == "pca":
        # deferred: scikit-learn's import costs about a second; only a PCA projection needs it
        from sklearn.decomposition import PCA

        p = PCA(n_components=dims, random_state=seed)
        C = p.fit_transform(X)
        info["explained_variance"] = [float(v) for v in p.explained_variance_ratio_]
    elif method == "tsne":
        C = tsne(X, dims, seed, info)
    else:
        ok, msg = umap_available()
        if not ok:
            raise RunError(msg, fix="or choose PCA or t-SNE")
        import umap  # noqa: PLC0415  (slow import: only when asked)

        nn_ = int(min(15, n - 1))
        C = umap.UMAP(n_components=dims, n_neighbors=nn_, random_state=seed).fit_transform(X)
        info["n_neighbors"] = nn_
    return C


# Threads for t-SNE alone: a one-off computation the user waits for on the Embeddings page, so it
# takes the machine's cores (OMP_WAIT_POLICY=PASSIVE, set in mtrlib/__init__.py, keeps OpenMP from
# spin-waiting when a training job holds a core). MTR_TSNE_THREADS overrides it.
TSNE_THREADS = int(os.environ.get("MTR_TSNE_THREADS", "0") or 0) or min(4, os.cpu_count() or 1)
# Above this many points the schedule is shortened (see `tsne`); at or below it openTSNE's defaults.
TSNE_SHORT_ABOVE = 2000


def tsne(X: np.ndarray, dims: int = 2, seed: int = 0, info: dict | None = None) -> np.ndarray:
    """t-SNE by openTSNE (Policar, Strazar, Zupan, "openTSNE: a modular Python library for t-SNE
    dimensionality reduction and embedding", JSS 2024) with Barnes-Hut gradients (van der Maaten,
    JMLR 2014), PCA initialisation and the learning rate n / exaggeration (Belkina et al., Nature
    Communications 2019), exact neighbours (a brute-force search is faster than Annoy at the
    page's 10,000-point cap: 0.3 s against 2.3 s for 5,000 points).

    Why these settings: the Embeddings page must lay out 5,000 points in a few seconds on a
    2-core CPU. Up to 2,000 points openTSNE's defaults (250 exaggerated + 500 iterations, theta
    0.5) already take ~3 s. Above that the schedule is 125 + 250 iterations with theta 1.0: with
    the n / 12 learning rate the early-exaggeration phase has separated the clusters well before
    250 iterations (Belkina et al.), and theta 1.0 costs little accuracy (van der Maaten 2014, Fig.
    6). bench/tsne.py measures time, KL divergence and kNN purity of the layout side by side with
    scikit-learn's, so that the speed is not bought with a worse picture. The perplexity stays
    below a third of the points."""
    # deferred: openTSNE (numba-compiled) loads only when a t-SNE projection is asked for
    from openTSNE import TSNE

    n = len(X)
    info = {} if info is None else info
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    short = n > TSNE_SHORT_ABOVE
    ee_iter, n_iter, theta = (125, 250, 1.0) if short else (250, 500, 0.5)
    model = TSNE(n_components=dims, perplexity=perplexity, initialization="pca", learning_rate="auto",
                 negative_gradient_method="bh", theta=theta, early_exaggeration_iter=ee_iter, n_iter=n_iter,
                 neighbors="exact", n_jobs=max(1, TSNE_THREADS), random_state=seed, verbose=False)
    E = model.fit(np.asarray(X, np.float32))
    info.update({"perplexity": perplexity, "iterations": ee_iter + n_iter, "theta": theta, "tsne": "openTSNE",
                 "kl_divergence": float(E.kl_divergence)})
    return np.asarray(E)


def project(run, what: str = "items", method: str = "pca", dims: int = 2, cap: int | None = None, seed: int = 0,
            max_pairs: int = DEFAULT_PAIRS, model=None, store=None) -> pd.DataFrame:
    """Coordinates x, y (, z) + metadata (+ `index`: row in `vectors(run, what)`).

    `df.attrs`: what, method, dims, cap (the sample cap used), n_total, n_shown, sampled,
    notes (which pairs / items, cold items, ...), and method info (explained variance...)."""
    if method not in METHODS:
        raise RunError(f"Unknown projection method '{method}'.", fix="use pca, tsne or umap")
    if method == "umap":
        ok, msg = umap_available()
        if not ok:
            raise RunError(msg, fix="or choose PCA or t-SNE")
    V, meta = vectors(run, what, max_pairs=max_pairs, seed=seed, model=model, store=store)
    cap = int(cap or CAPS[method])
    n = len(V)
    notes = list(meta.attrs.get("notes", []))
    idx = np.arange(n)
    if n > cap:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))
        notes.append(f"Showing a random sample of {cap:,} of {n:,} points (the {method.upper()} cap, seed {seed}).")
    C, info = reduce(V[idx], method, dims, seed)
    df = pd.DataFrame(C, columns=["x", "y", "z"][:dims])
    df.insert(0, "index", idx)
    md = meta.iloc[idx].reset_index(drop=True)
    df = pd.concat([df, md], axis=1)
    df.attrs.update({"what": what, "method": method, "dims": dims, "cap": cap, "n_total": int(n),
                     "n_shown": int(len(idx)), "sampled": bool(n > cap), "notes": notes, **info})
    return df


def _normalise(V: np.ndarray) -> np.ndarray:
    V = np.asarray(V, np.float32)
    norm = np.linalg.norm(V, axis=1, keepdims=True)
    return V / np.maximum(norm, 1e-12)


def neighbours(vectors: np.ndarray, index: int, k: int = 10, metadata: pd.DataFrame | None = None) -> pd.DataFrame:
    """The k nearest neighbours (cosine similarity, original space) of row `index`:
    rank, index, similarity (+ the neighbours' metadata rows when given). Excludes itself."""
    V = _normalise(vectors)
    n = len(V)
    if not 0 <= int(index) < n:
        raise RunError(f"Point {index} is out of range (there are {n} points).")
    k = int(max(0, min(k, n - 1)))
    sims = V @ V[int(index)]
    sims[int(index)] = -np.inf
    top = np.argpartition(-sims, k - 1)[:k] if k else np.zeros(0, np.int64)
    top = top[np.lexsort((top, -sims[top]))]
    out = pd.DataFrame({"rank": np.arange(1, len(top) + 1), "index": top, "similarity": sims[top].astype(float)})
    if metadata is not None:
        out = pd.concat([out, metadata.iloc[top].reset_index(drop=True)], axis=1)
    return out


def knn_purity(vectors: np.ndarray, labels, k: int = 10, max_points: int | None = 20_000, seed: int = 0) -> dict:
    """Mean fraction of each point's k nearest neighbours (cosine) sharing its label.

    Points without a label (None / NaN / "") are left out. Returns purity, chance (probability
    that a random other point shares the label), lift (purity / chance), k, n, n_labels."""
    lab = pd.Series(list(labels) if not isinstance(labels, pd.Series) else labels.to_list(), dtype="object")
    ok = lab.notna().to_numpy() & (lab.astype(str).str.strip() != "").to_numpy()
    V = np.asarray(vectors, np.float32)[ok]
    codes, uniq = pd.factorize(lab[ok].astype(str))
    n = len(codes)
    if max_points is not None and n > max_points:
        sel = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        V, codes, n = V[sel], codes[sel], max_points
    if n < 2:
        return {"purity": float("nan"), "chance": float("nan"), "lift": float("nan"), "k": int(k), "n": int(n),
                "n_labels": int(len(uniq))}
    k = int(max(1, min(k, n - 1)))
    X = _normalise(V)
    hits = 0.0
    step = max(1, (1 << 22) // n)
    with _native_threads():
        for s in range(0, n, step):
            sims = X[s:s + step] @ X.T
            sims[np.arange(sims.shape[0]), np.arange(s, s + sims.shape[0])] = -np.inf
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            hits += float((codes[top] == codes[s:s + step, None]).sum())
    purity = hits / (n * k)
    counts = np.bincount(codes).astype(float)
    chance = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    return {"purity": purity, "chance": chance, "lift": purity / chance if chance > 0 else float("nan"),
            "k": k, "n": int(n), "n_labels": int(len(uniq))}


def purity(run, what: str = "items", attribute: str = "true_genre", k: int = 10, max_pairs: int = DEFAULT_PAIRS,
           seed: int = 0, store=None) -> dict:
    """kNN purity of a representation by an attribute of its points (the first value of a
    multi-valued one), for the trained model and for the same architecture untrained (its
    initial weights): {"purity", "chance", "untrained", "attribute", "k"}."""
    run = load_run(run, store)
    V, meta = vectors(run, what, max_pairs=max_pairs, seed=seed)
    if attribute not in meta.columns:
        cols = [c for c in meta.columns if c not in ("index",) and not pd.api.types.is_float_dtype(meta[c])]
        raise RunError(f"The points of '{what}' have no attribute '{attribute}'.", fix=f"use one of: {', '.join(cols)}")
    labels = meta[attribute].astype("string").str.split("|").str[0]
    trained = knn_purity(V, labels, k=k, seed=seed)
    V0, _ = vectors(run, what, max_pairs=max_pairs, seed=seed, model=run.build_model(weights=False))
    untrained = knn_purity(V0, labels, k=k, seed=seed)
    return {"purity": trained["purity"], "chance": trained["chance"], "untrained": untrained["purity"],
            "attribute": attribute, "k": trained["k"]}


def export_projector(vectors: np.ndarray, metadata, out_dir, tensor_name: str = "embedding") -> dict[str, Path]:
    """Write TensorBoard Embedding Projector files into `out_dir`:
    vectors.tsv (tab-separated floats, no header), metadata.tsv (one row per vector; a header
    row only when there is more than one column, as the projector expects), and
    projector_config.pbtxt pointing at both. Tabs / newlines in cells become spaces;
    formula-looking cells are escaped."""
    V = np.asarray(vectors, np.float32)
    if V.ndim != 2:
        raise RunError("Vectors must be a 2-D array (one row per point).")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"Cannot create the folder {out}: {e.strerror or e}.", fix="choose a folder you can write to") from None
    if metadata is not None and not isinstance(metadata, pd.DataFrame):
        metadata = pd.DataFrame({"label": list(metadata)})
    if metadata is not None and len(metadata) != len(V):
        raise RunError(f"{len(metadata)} metadata rows for {len(V)} vectors.", fix="give one metadata row per vector")
    paths = {"vectors": out / "vectors.tsv"}
    try:
        with open(paths["vectors"], "w", encoding="utf-8", newline="\n") as f:
            for row in V:
                f.write("\t".join(f"{x:.6g}" for x in row) + "\n")
        if metadata is not None:
            paths["metadata"] = out / "metadata.tsv"
            cols = list(metadata.columns)
            with open(paths["metadata"], "w", encoding="utf-8", newline="\n") as f:
                if len(cols) > 1:
                    f.write("\t".join(tsv_cell(str(c)) for c in cols) + "\n")
                for row in metadata.itertuples(index=False, name=None):
                    f.write("\t".join(tsv_cell(v) for v in row) + "\n")
        paths["config"] = out / "projector_config.pbtxt"
        cfg = f'embeddings {{\n  tensor_name: "{tensor_name.replace(chr(34), "")}"\n  tensor_path: "vectors.tsv"\n'
        if metadata is not None:
            cfg += '  metadata_path: "metadata.tsv"\n'
        paths["config"].write_text(cfg + "}\n", encoding="utf-8")
    except OSError as e:
        raise RunError(f"Cannot write into {out}: {e.strerror or e}.", fix="choose a folder you can write to") from None
    return paths


def gate_table(run, by: str | None = None, max_pairs: int = DEFAULT_PAIRS, seed: int = 0, store=None) -> pd.DataFrame:
    """Average gate weight per (task, expert[, group of `by`]) over a sample of test pairs,
    long format: task, expert, [by], weight. Empty for models without gates."""
    run = load_run(run, store)
    m = run.model
    u, i, meta, _ = _pair_sample(run, max_pairs, seed)
    dev = device_of(m)
    with torch.inference_mode():
        rep = m.inspect(torch.as_tensor(u, device=dev), torch.as_tensor(i, device=dev))
    names = list(getattr(m, "expert_names", []))
    rows = []
    for key, g in rep.items():
        if not key.startswith("gate:"):
            continue
        G = g.float().cpu().numpy()
        experts = names if len(names) == G.shape[1] else [f"expert {k + 1}" for k in range(G.shape[1])]
        frame = pd.DataFrame(G, columns=experts)
        if by is not None:
            if by not in meta.columns:
                raise RunError(f"Cannot split gates by '{by}'.", fix=f"use one of: {', '.join(meta.columns)}")
            frame[by] = meta[by].to_numpy()
            mean = frame.groupby(by, dropna=True).mean()
            for grp, r in mean.iterrows():
                rows += [{"task": key[5:], "expert": e, by: grp, "weight": float(r[e])} for e in experts]
        else:
            rows += [{"task": key[5:], "expert": e, "weight": float(frame[e].mean())} for e in experts]
    return pd.DataFrame(rows)


def gate_matrix(table: pd.DataFrame, by: str | None = None, expert_names=(),
                max_groups: int = 8) -> tuple[np.ndarray, list[str], list[str]]:
    """The task x expert heat-map of a `gate_table` (long format): (weights [rows, experts],
    row labels, expert names). Rows are the tasks, or with `by` one row per (task, group) for
    the `max_groups` most frequent groups, labelled "task · group". Experts are in the model's
    order (`expert_names`, those the table has), else the table's. Here so that a page only draws."""
    if by is None:
        piv = table.pivot(index="task", columns="expert", values="weight")
        rows = list(piv.index)
    else:
        top = table[by].astype(str).value_counts().index[:max_groups]
        sub = table[table[by].astype(str).isin(top)]
        piv = sub.pivot_table(index=["task", by], columns="expert", values="weight")
        rows = [f"{t} · {g}" for t, g in piv.index]
    experts = [e for e in expert_names if e in piv.columns] or list(piv.columns)
    return piv[experts].to_numpy(), rows, experts


__all__ = ["project", "vectors", "reduce", "tsne", "neighbours", "knn_purity", "purity", "export_projector", "gate_table",
           "gate_matrix", "representations", "umap_available", "CAPS", "METHODS"]
