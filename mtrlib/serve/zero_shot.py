"""The language-model zero-shot baseline: what the pretrained text encoder knows alone.

A user's vector is the mean of the language-model vectors (all-MiniLM-L6-v2, `mtrlib.data.text`) of
the items the user met in training; items are ranked by cosine with it. No training at all:
set next to a trained model in `rank_eval` ("lm_zero_shot"), it shows how much of the ranking
the item texts explain, and what multi-task training adds on top. (A content-based
recommender in the style of Reimers & Gurevych's Sentence-BERT retrieval, EMNLP 2019.)

The vectors are the run's own where it was trained with text features (`space.item_text`);
otherwise they are encoded from the run's item table (title, then genres) and cached on disk.
"""
from __future__ import annotations

import numpy as np
import torch

from ..runs import Run, RunError
from ..data.text import TextEncoderUnavailable, encode_texts, is_available


def _item_texts(run: Run) -> list[str]:
    """'Title. genres: A, B' per item row, as `mtrlib.data.text.item_texts` writes a MovieLens title + genres."""
    items = run.items
    title = items["title"].astype(str).tolist() if "title" in items.columns else list(items.index.astype(str))
    gcol = "genres" if "genres" in items.columns else "genre" if "genre" in items.columns else None
    out = []
    for k, t in enumerate(title):
        g = items[gcol].iloc[k] if gcol else None
        parts = [p.strip() for p in str(g).split("|") if p.strip()] if isinstance(g, str) else []
        parts = [p for p in parts if p.lower() not in ("(no genres listed)", "nan", "none")]
        out.append(t + (f". {gcol}: {', '.join(parts)}" if parts else ""))
    return out


def lm_item_vectors(run: Run, device: str = "cpu") -> np.ndarray:
    """float32 [n_items, 384], L2-normalised: the run's text vectors, or encoded from its items."""
    V = getattr(run.space, "item_text", None)
    if V is None:
        ok, why = is_available()
        if not ok:
            raise RunError(f"The language-model baseline needs the text encoder: {why}",
                           fix="install the packages in requirements.txt, or leave out --lm-baseline")
        try:
            V = encode_texts(_item_texts(run), device=device)
        except TextEncoderUnavailable as e:
            raise RunError(f"The language-model baseline needs the text encoder: {e}",
                           fix="leave out --lm-baseline") from None
    V = np.asarray(V, np.float32)
    return V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)


def lm_user_vectors(run: Run, rows: np.ndarray, V: np.ndarray) -> np.ndarray:
    """float32 [len(rows), 384]: the mean of each user's training items' vectors, normalised
    (zero for a user with no training items: every item then ties)."""
    keys = run.seen_keys(("train",))
    n_i = run.n_items
    users, items = keys // n_i, keys % n_i
    sums = np.zeros((run.n_users, V.shape[1]), np.float64)
    np.add.at(sums, users, V[items])
    U = sums[np.asarray(rows, np.int64)]
    return (U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class ZeroShot:
    """The baseline's scores for chunks of users: `scores(rows)` -> torch [len(rows), n_items]."""

    def __init__(self, run: Run):
        V = lm_item_vectors(run)
        self.V = torch.as_tensor(V)
        self.U = torch.as_tensor(lm_user_vectors(run, np.arange(run.n_users), V))

    def scores(self, rows: np.ndarray) -> torch.Tensor:
        return self.U[torch.as_tensor(np.asarray(rows, np.int64))] @ self.V.T


__all__ = ["ZeroShot", "lm_item_vectors", "lm_user_vectors"]
