"""Per-task metrics, always keyed by task name: AUC / logloss / accuracy, RMSE / MAE.

A regression trained on log(1 + value) (`COL:reg:log`) is scored on that scale (`rmse`, `mae`,
the headline) and also in the column's own units (`rmse_orig`, `mae_orig`: expm1 of the
prediction against the raw value).

AUC is computed per task over that task's observed rows only (never over all tasks' outputs
concatenated, a mistake seen in peer libraries); conditional tasks are therefore evaluated
only where their parent task is positive.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the rank-sum formula, ties averaged; NaN when only one class is present."""
    y = np.asarray(y, dtype=bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def binary_metrics(y, p) -> dict:
    return {"auc": auc(y, p), "logloss": logloss(y, p),
            "accuracy": float(np.mean((np.asarray(p) >= 0.5) == np.asarray(y, dtype=bool))), "n": int(len(y))}


def regression_metrics(y, pred) -> dict:
    err = np.asarray(pred, np.float64) - np.asarray(y, np.float64)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "n": int(len(y))}


def regression_task_metrics(task, y, pred) -> dict:
    """RMSE / MAE on the task's training scale, plus `rmse_orig` / `mae_orig` in the column's
    units when the task trains on a transform of it (`TaskSpec.to_original`)."""
    out = regression_metrics(y, pred)
    if getattr(task, "transform", None):
        orig = regression_metrics(task.to_original(y), task.to_original(pred))
        out["rmse_orig"], out["mae_orig"] = orig["rmse"], orig["mae"]
    return out


def task_metrics(tasks, labels: np.ndarray, mask: np.ndarray, preds: np.ndarray) -> dict[str, dict]:
    """{task name: metrics} over each task's observed rows."""
    out = {}
    for j, t in enumerate(tasks):
        m = mask[:, j]
        if not m.any() or t.is_retrieval:  # a retrieval task's Recall@K needs the whole catalogue:
            out[t.name] = {"n": int(m.sum())}  # mtrlib.models.retrieval.sampled_recall adds it
            continue
        y, p = labels[m, j], preds[m, j]
        out[t.name] = binary_metrics(y, p) if t.is_binary else regression_task_metrics(t, y, p)
    return out


RETRIEVAL_HEADLINE = "recall@10"
HEADLINE_KEYS = ("auc", RETRIEVAL_HEADLINE, "rmse")  # each loss family's headline metric


def headline(task, metrics: dict) -> tuple[str, float]:
    """The one number to plot for a task: AUC or a retrieval task's Recall@10 (higher is
    better), or RMSE (lower is better)."""
    key = "auc" if task.is_binary else RETRIEVAL_HEADLINE if task.is_retrieval else "rmse"
    return key, metrics.get(key, float("nan"))


def higher_is_better(key: str) -> bool:
    return key not in ("rmse", "mae", "logloss", "rmse_orig", "mae_orig")


def headline_key(keys) -> str:
    """The headline metric among `keys` (a task's metric names): auc, recall@10 or rmse."""
    keys = set(keys)
    return next((k for k in HEADLINE_KEYS if k in keys), "rmse")


def popularity_baseline(tasks, train_items: np.ndarray, train_labels: np.ndarray, train_mask: np.ndarray,
                        test_items: np.ndarray, test_labels: np.ndarray, test_mask: np.ndarray,
                        n_items: int) -> dict[str, dict]:
    """Score = the item's count of positives for the task in training (mean label, for regression)."""
    out = {}
    for j, t in enumerate(tasks):
        if t.is_retrieval:  # no pointwise score to rank: `rank_eval` gives popularity's Recall@K for it
            continue
        m = train_mask[:, j]
        it, y = train_items[m], train_labels[m, j]
        score = np.bincount(it, weights=y, minlength=n_items)
        if not t.is_binary:
            c = np.bincount(it, minlength=n_items)
            score = np.where(c > 0, score / np.maximum(c, 1), y.mean() if len(y) else 0.0)
        tm = test_mask[:, j]
        if not tm.any():
            continue
        pred = score[test_items[tm]]
        if t.is_binary:
            out[t.name] = {"auc": auc(test_labels[tm, j], pred), "n": int(tm.sum())}
        else:
            out[t.name] = regression_task_metrics(t, test_labels[tm, j], pred)
    return out
