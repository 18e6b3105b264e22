"""A trained model's predictions over encoded examples, and its metrics per task.

Shared by the training loop (validation each epoch, the test split at the end), the
distributed run (rank 0 evaluates) and cold-start experiments; here, below all three.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.encode import EncodedExamples
from ..data.context import context_of
from ..data.history import history_of
from ..eval.pointwise import task_metrics
from ..models import MultiTaskModel
from ..models.retrieval import sampled_recall
from .steps import forward as model_forward

EVAL_BATCH = 65536


@torch.inference_mode()
def predict(model: MultiTaskModel, data: EncodedExamples, batch: int = EVAL_BATCH) -> np.ndarray:
    """Predictions [N, T] (probabilities / values), in large batches."""
    was = model.training
    model.eval()
    out = [model.predict(model_forward(model, data.user[s:s + batch], data.item[s:s + batch],
                                       history_of(data, slice(s, s + batch)), context_of(data, slice(s, s + batch))))
           for s in range(0, len(data), batch)]
    model.train(was)
    if not out:
        return np.zeros((0, len(model.output_tasks)), np.float32)
    return torch.cat(out).float().cpu().numpy()


def evaluate(model: MultiTaskModel, data: EncodedExamples, tasks) -> dict[str, dict]:
    preds = predict(model, data)
    out = task_metrics(tasks, data.labels.cpu().numpy(), data.mask.cpu().numpy(), preds)
    for name, ms in sampled_recall(model, data, tasks).items():  # retrieval tasks: Recall@K on a sample
        out[name].update(ms)
    return out
