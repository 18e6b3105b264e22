"""ONNX export of a trained run, for serving without our code or torch (issue 30).

`export_onnx(run, folder)` writes:

    ranking.onnx       what `model.forward` + `model.predict` compute: one output per task
                       (probability for a binary task, value in original units for regression,
                       cosine for a retrieval task), inputs `user` and `item` (catalogue rows,
                       int64 [batch]) and, for a run with a history, `history_items` (int64
                       [batch, L], item rows, most recent first, 0 where padded) and
                       `history_lengths` (int64 [batch]); the batch axis is dynamic
    user_tower.onnx    runs with a retrieval task: `user` -> `vectors` [batch, d] (L2-normalised),
    item_tower.onnx    `item` -> `vectors`; their dot product is the retrieval score (one tower
                       pair per retrieval task, suffixed with the task when there are several)
    signature.json     inputs and outputs, the id vocabularies (catalogue row of every user and
                       item id), the fusion weights and how each task enters the fusion
    latest_history.safetensors  each user's latest training history (runs with a history): what
                       the model reads when a caller gives none

The side-feature tables are constants inside the graph (as they are buffers of the model), so a
caller passes only ids: an id that has no learned vector (not seen in training) is a catalogue row
whose id slot is 0, exactly as in the model; an id outside the catalogue has no row at all and is
refused by the scorer (mtrlib.serve.onnx_scorer), as `run_scores` refuses it.

Uses torch's TorchScript-based exporter (`dynamo=False`): it needs no extra package (the dynamo
exporter needs onnxscript) and traces every architecture here. Tracing bakes in Python branches
on shapes, so the example batch is chosen to take the branch that holds for every batch size
(`_example_batch`).
"""
from __future__ import annotations

import io
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from torch import nn

from ..data.history import History
from ..errors import UserError
from ..runs import load_run
from ..runs.store import atomic_write_json
from .recommend import fusion_weights

OPSET = 17
FORMAT = "mtr-onnx"
VERSION = 1


class ExportError(UserError):
    """A run that cannot be exported (no weights, an unwritable folder)."""


class _Ranking(nn.Module):
    """forward + predict of the run's model, one output per task (ONNX wants tensors, not a History)."""

    def __init__(self, model, history: bool):
        super().__init__()
        self.model, self.history = model, history

    def forward(self, user, item, history_items=None, history_lengths=None):
        if self.history:
            raw = self.model(user, item, History(history_items, history_lengths))
        else:
            raw = self.model(user, item)
        return tuple(self.model.predict(raw).unbind(-1))  # [B] per task


class _Tower(nn.Module):
    """One retrieval tower of one task: catalogue rows -> L2-normalised vectors [B, d]."""

    def __init__(self, model, side: str, task: str):
        super().__init__()
        self.model, self.side, self.task = model, side, task

    def forward(self, rows):
        if self.side == "user":
            return self.model.retrieval_user_vectors(rows, self.task)
        return self.model.retrieval_item_vectors(rows, self.task)


def _history_length(model) -> int:
    """L of the model's history block (0 without one)."""
    inp = model.input_layers()[0]
    return int(inp.latest_items.shape[1]) if hasattr(inp, "latest_items") else 0


def _example_batch(model, length: int) -> int:
    """An example batch size whose traced branches hold for any batch: with a history, at least
    as many history cells as catalogue items (the history block then computes every item's
    vector once, instead of `torch.unique`, whose output size would be baked in)."""
    return max(4, -(-model.n_items // max(length, 1)) + 1) if length else 4


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]]) -> None:
    with warnings.catch_warnings():  # the TorchScript exporter warns about its deprecation and traced branches
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)


def _disable_pooling(model) -> list:
    """Use the history block's gather path while exporting: the pooled path is a training-speed
    shortcut over `embedding_bag` with per-sample weights, which ONNX has no operator for; both
    compute the same sum (tests/test_history.py). Returns what to restore."""
    changed = []
    for inp in model.input_layers():
        if getattr(inp, "pooled", False):
            inp.pooled = False
            changed.append(inp)
    return changed


def fusion_entries(model) -> list[dict]:
    """How each output enters the fused score (the torch side: `MultiTaskModel.fusion_scale`):
    log p for binary tasks, (value - mean) / std for regression, cos / tau for retrieval."""
    out = []
    mean, std = model.target_mean.tolist(), model.target_std.tolist()
    ranking = [t.name for t in model.tasks]
    tau = float(getattr(model, "temperature", 1.0))
    for t in model.output_tasks:
        if t.is_retrieval:
            out.append({"task": t.name, "kind": "retrieval", "scale": "cos/tau", "temperature": tau})
        elif t.is_binary:
            out.append({"task": t.name, "kind": "binary", "scale": "log", "floor": 1e-7})
        else:
            k = ranking.index(t.name)
            out.append({"task": t.name, "kind": "regression", "scale": "standardise", "mean": mean[k], "std": std[k]})
    return out


@torch.no_grad()
def export_model(model, folder, *, user_ids: list[str], item_ids: list[str], fusion: dict[str, float],
                 latest_history: tuple[np.ndarray, np.ndarray] | None = None, run_id: str = "") -> dict:
    """Write the ONNX files and signature.json of `model` into `folder`; returns the signature."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"Cannot create the export folder {folder} ({e.strerror}).",
                          fix="choose a folder you can write to") from None
    model = model.to("cpu").eval()
    length = _history_length(model)
    restore = _disable_pooling(model)
    try:
        b = _example_batch(model, length)
        user = torch.arange(b) % model.n_users
        item = torch.arange(b) % model.n_items
        names = [t.name for t in model.output_tasks]
        inputs, args = ["user", "item"], [user, item]
        dynamic = {"user": {0: "batch"}, "item": {0: "batch"}, **{n: {0: "batch"} for n in names}}
        if length:
            lengths = torch.arange(b) % (length + 1)
            items = (torch.arange(b * length).reshape(b, length) % max(model.n_items - 1, 1)) + 1
            inputs += ["history_items", "history_lengths"]
            args += [items * (torch.arange(length) < lengths[:, None]), lengths]
            dynamic.update({"history_items": {0: "batch"}, "history_lengths": {0: "batch"}})
        # the wrappers in eval mode: the exporter puts the model back in its wrapper's mode afterwards
        # (a fresh wrapper's is training: batch norm would then read batch statistics)
        _export(_Ranking(model, bool(length)).eval(), tuple(args), folder / "ranking.onnx", inputs, names, dynamic)
        towers = []
        for t in model.retrieval_tasks:
            suffix = "" if len(model.retrieval_tasks) == 1 else f"_{t.name}"
            for side, n in (("user", model.n_users), ("item", model.n_items)):
                f = f"{side}_tower{suffix}.onnx"
                _export(_Tower(model, side, t.name).eval(), (torch.arange(4) % n,), folder / f, [side], ["vectors"],
                        {side: {0: "batch"}, "vectors": {0: "batch"}})
                towers.append({"task": t.name, "side": side, "file": f, "input": side, "output": "vectors"})
    finally:
        for inp in restore:
            inp.pooled = True
    sig = {
        "format": FORMAT, "version": VERSION, "run": run_id, "opset": OPSET,
        "ranking": {"file": "ranking.onnx",
                    "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", length] if n == "history_items"
                                else ["batch"]} for n in inputs],
                    "outputs": [{"name": n, "dtype": "float32", "shape": ["batch"]} for n in names]},
        "towers": towers,
        "tasks": fusion_entries(model),
        "fusion": {n: float(fusion.get(n, 0.0)) for n in names},
        "history": {"length": length, "file": "latest_history.safetensors" if length else None},
        "vocab": {"user": list(map(str, user_ids)), "item": list(map(str, item_ids))},
        "unknown_ids": "an id outside the catalogue has no row: refused (an id with no learned vector is a row "
                       "whose id slot is 0, as in the model)",
    }
    if length:
        items_h, lengths_h = latest_history if latest_history is not None else (
            model.input_layers()[0].latest_items.numpy(), model.input_layers()[0].latest_lengths.numpy())
        save_file({"items": np.ascontiguousarray(items_h, np.int64), "lengths": np.ascontiguousarray(lengths_h, np.int64)},
                  str(folder / "latest_history.safetensors"))
    atomic_write_json(folder / "signature.json", sig)
    return sig


def export_onnx(run, folder, store=None, fusion=None) -> dict:
    """Export a saved run (id, name, folder or `Run`) to `folder`; returns the signature.
    `fusion`: weights per task (default: the run's, `mtrlib.serve.recommend.fusion_weights`)."""

    run = load_run(run, store)
    if run.weights_path is None:
        raise ExportError(f"Run '{run.name}' has no saved weights to export.", fix="train it (at least one epoch) first")
    model = run.build_model()
    sig = export_model(model, folder, user_ids=run.space.users.ids, item_ids=run.space.items.ids,
                       fusion=fusion_weights(run, fusion), run_id=run.id)
    space = getattr(run.space, "context", None)
    if space is not None:  # the graph scores in the run's default context (its inputs are ids only)
        sig["context"] = {"fixed": space.resolve(), "note": "scored in this context (each column's most frequent "
                          "training value, the position's first slot); the ONNX inputs are ids only"}
        atomic_write_json(Path(folder) / "signature.json", sig)
    return sig


__all__ = ["export_onnx", "export_model", "export_zip", "fusion_entries", "ExportError", "OPSET"]


def export_zip(run, store=None) -> bytes:
    """The ONNX export of a run as one zip file (the Runs page's Download ONNX button)."""

    with tempfile.TemporaryDirectory(prefix="mtr-onnx-") as tmp:
        export_onnx(run, tmp, store=store)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(Path(tmp).iterdir()):
                z.write(f, f.name)
        return buf.getvalue()
