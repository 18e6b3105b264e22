"""Fusion: one ranking score from a run's per-task scores, with weights the user sets.

    fused = sum over binary tasks t of  w_t * log p_t  +  sum over regression tasks r of  w_r * z_r

(z_r: the regression output standardised with the training targets' mean and std; a retrieval
task enters as cos / temperature, only when given a weight.) The default weights are 1 for every
binary task and 0 for regression tasks: the product of the binary tasks' probabilities (pCTR *
pCVR, as in ESMM). Used by recommending, explaining and evaluating (mtrlib.serve.recommend) and by
the world's ground truth (mtrlib.eval.truth).
"""
from __future__ import annotations

import torch

from ..data.tasks import parse_task_values
from ..runs import Run, RunError, load_run


def parse_fusion(text: str | dict | None) -> dict[str, float] | None:
    """'watched=1,liked=2' -> {'watched': 1.0, 'liked': 2.0} (a dict passes through)."""
    if text is None or isinstance(text, dict):
        return text
    return parse_task_values(text, "fusion weight", error=RunError)


def fusion_weights(run: Run, fusion: dict | str | None = None) -> dict[str, float]:
    """Full weight per task: given ones, others default (1 binary / 0 regression when none given,
    0 when some are given)."""
    fusion = parse_fusion(fusion)
    names = run.task_names
    if not fusion:  # a retrieval task's score enters only when given a weight
        return {t.name: (1.0 if t.is_binary else 0.0) for t in run.tasks}
    unknown = sorted(set(fusion) - set(names))
    if unknown:
        raise RunError(f"Fusion names unknown task(s): {', '.join(unknown)}.", fix=f"tasks are: {', '.join(names)}")
    w = {n: float(fusion.get(n, 0.0)) for n in names}
    if fusion_is_zero(w):
        raise RunError("Every fusion weight is 0, so nothing would rank the items.",
                       fix="give at least one task a non-zero weight")
    return w


def fusion_is_zero(weights: dict[str, float]) -> bool:
    """True when every weight is 0 (or there is none): the fused score is then the same for every
    item, so nothing ranks them. `fusion_weights` refuses such weights; a page warns instead."""
    return all(v == 0 for v in weights.values())


def fusion_for(run, fusion: dict[str, float], store=None) -> dict[str, float] | None:
    """The weights of `fusion` (set for another run, e.g. the page's sliders) that apply to
    `run`: those of the tasks it has. None, i.e. the run's default fusion, when it shares no
    task with them or every shared weight is 0, so that comparing two runs never fails only
    because the second lacks the first one's weighted tasks."""
    names = set(load_run(run, store).task_names)
    w = {t: v for t, v in fusion.items() if t in names}
    return None if fusion_is_zero(w) else w


def fusion_transform(model, preds: torch.Tensor) -> torch.Tensor:
    """Per-task score on the fusion scale: log p for binary, standardised value for regression,
    cos / temperature for a retrieval task (`MultiTaskModel.fusion_scale`)."""
    return model.fusion_scale(preds)


def weights_tensor(run: Run, weights: dict[str, float], dev) -> torch.Tensor:
    return torch.tensor([weights[n] for n in run.task_names], dtype=torch.float32, device=dev)


__all__ = ["parse_fusion", "fusion_weights", "fusion_is_zero", "fusion_for", "fusion_transform", "weights_tensor"]
