"""Scoring a user's candidates from an ONNX export with onnxruntime and numpy alone (no torch).

A serving process loads the folder `mtrlib.serve.onnx_export` wrote (`python -m mtrlib export RUN
--onnx DIR`) and needs neither our model code nor torch: this module imports only numpy,
onnxruntime, safetensors' numpy reader and `mtrlib.errors` (tests/test_onnx.py checks that torch
stays out of `sys.modules`).

    scorer = OnnxScorer("export/")
    scorer.predict("u1", ["i1", "i2"])      # {task: [N]} each task's prediction
    scorer.score("u1", ["i1", "i2"])        # [N] fused score (the export's fusion weights)
    scorer.recommend("u1", k=10)            # top k of the catalogue (or of `candidates`)
    scorer.retrieve("u1", n=200)            # runs with a retrieval task: the towers' top n

The fused score is the same as `mtrlib.serve.recommend`'s: sum_t w_t s_t with s_t = log p for
binary tasks, the standardised value for regression, cos / tau for a retrieval task.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file

from ..errors import UserError


class ScorerError(UserError):
    """A bad export folder or an id the export does not know."""


def _session(path: Path, threads: int | None):

    opts = ort.SessionOptions()
    n = threads if threads is not None else int(os.environ.get("MTR_SCORING_THREADS", "1") or 1)
    opts.intra_op_num_threads = max(1, n)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only (it warns about unused constants)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxScorer:
    """The exported run's ranking model (and retrieval towers), with its id vocabularies."""

    def __init__(self, folder, threads: int | None = None):
        self.folder = Path(folder)
        try:
            self.signature = json.loads((self.folder / "signature.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ScorerError(f"{self.folder} holds no signature.json: it is not an ONNX export.",
                              fix="export a run with `python -m mtrlib export RUN --onnx DIR`") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ScorerError(f"signature.json in {self.folder} is not readable ({e}).", fix="export the run again") from None
        sig = self.signature
        if sig.get("format") != "mtr-onnx":
            raise ScorerError(f"{self.folder}/signature.json is not an MTR Studio ONNX signature.",
                              fix="export the run again")
        self.tasks = [t["task"] for t in sig["tasks"]]
        self.users = {u: k for k, u in enumerate(sig["vocab"]["user"])}
        self.items = {i: k for k, i in enumerate(sig["vocab"]["item"])}
        self.item_ids = np.asarray(sig["vocab"]["item"], dtype=object)
        self.ranking = _session(self.folder / sig["ranking"]["file"], threads)
        self.history_length = int(sig["history"]["length"])
        self.latest = None
        if self.history_length:
            a = load_file(str(self.folder / sig["history"]["file"]))
            self.latest = (a["items"].astype(np.int64), a["lengths"].astype(np.int64))
        self.towers = {(t["task"], t["side"]): _session(self.folder / t["file"], threads) for t in sig["towers"]}
        self._item_vectors: dict[str, np.ndarray] = {}

    # -- ids -> catalogue rows ---------------------------------------------------------------------
    def user_row(self, user_id) -> int:
        r = self.users.get(str(user_id))
        if r is None:
            raise ScorerError(f"Unknown user id {user_id!r}: it is not in the exported catalogue.",
                              fix="pick a user of the run's data (signature.json's vocab.user)")
        return r

    def item_rows(self, item_ids) -> np.ndarray:
        rows = np.fromiter((self.items.get(str(i), -1) for i in item_ids), np.int64)
        if (rows < 0).any():
            bad = [str(i) for i, r in zip(item_ids, rows) if r < 0][:5]
            raise ScorerError(f"Unknown item id(s): {', '.join(bad)}: not in the exported catalogue.",
                              fix="pick items of the run's catalogue (signature.json's vocab.item)")
        return rows

    # -- scores ----------------------------------------------------------------------------------
    def predict_rows(self, user_rows, item_rows, history=None) -> np.ndarray:
        """[N, T] predictions for pairs of catalogue rows. `history`: (items [N, L], lengths [N]) of
        item rows; None reads each user's latest training history (what the model does)."""
        user_rows = np.ascontiguousarray(user_rows, np.int64)
        feed = {"user": user_rows, "item": np.ascontiguousarray(item_rows, np.int64)}
        if self.history_length:
            items, lengths = history if history is not None else (self.latest[0][user_rows], self.latest[1][user_rows])
            feed["history_items"] = np.ascontiguousarray(items, np.int64)
            feed["history_lengths"] = np.ascontiguousarray(lengths, np.int64)
        return np.stack(self.ranking.run(self.tasks, feed), -1)

    def predict(self, user_id, item_ids=None) -> dict[str, np.ndarray]:
        """{task: [N]} for one user against `item_ids` (None: the whole catalogue)."""
        rows = np.arange(len(self.items)) if item_ids is None else self.item_rows(item_ids)
        out = self.predict_rows(np.full(len(rows), self.user_row(user_id)), rows)
        return {t: out[:, k] for k, t in enumerate(self.tasks)}

    def fusion_scale(self, preds: np.ndarray) -> np.ndarray:
        """[N, T] predictions -> each task's score on the fusion scale (see the module docstring)."""
        cols = []
        for k, t in enumerate(self.signature["tasks"]):
            p = preds[:, k].astype(np.float32)
            if t["kind"] == "binary":
                cols.append(np.log(np.maximum(p, np.float32(t["floor"]))))
            elif t["kind"] == "regression":
                cols.append((p - np.float32(t["mean"])) / np.float32(t["std"]))
            else:
                cols.append(p / np.float32(t["temperature"]))
        return np.stack(cols, -1)

    def weights(self, fusion: dict[str, float] | None = None) -> np.ndarray:
        w = dict(self.signature["fusion"]) if not fusion else {t: float(fusion.get(t, 0.0)) for t in self.tasks}
        unknown = sorted(set(fusion or {}) - set(self.tasks))
        if unknown:
            raise ScorerError(f"Fusion names unknown task(s): {', '.join(unknown)}.",
                              fix=f"tasks are: {', '.join(self.tasks)}")
        return np.asarray([w[t] for t in self.tasks], np.float32)

    def score(self, user_id, item_ids=None, fusion: dict[str, float] | None = None) -> np.ndarray:
        """[N] the fused score of each candidate (None: every catalogue item, in vocab order)."""
        rows = np.arange(len(self.items)) if item_ids is None else self.item_rows(item_ids)
        preds = self.predict_rows(np.full(len(rows), self.user_row(user_id)), rows)
        return self.fusion_scale(preds) @ self.weights(fusion)

    def recommend(self, user_id, k: int = 10, candidates=None, fusion=None) -> list[tuple[str, float]]:
        """The top k (item id, fused score) among `candidates` (None: the whole catalogue)."""
        ids = self.item_ids if candidates is None else np.asarray([str(c) for c in candidates], dtype=object)
        s = self.score(user_id, None if candidates is None else ids, fusion)
        top = np.argsort(-s, kind="stable")[:k]
        return [(str(ids[j]), float(s[j])) for j in top]

    # -- retrieval -------------------------------------------------------------------------------
    def _retrieval_task(self, task: str | None) -> str:
        names = sorted({t for t, _ in self.towers}, key=self.tasks.index)
        if not names:
            raise ScorerError("This export has no retrieval towers (the run has no retrieval task).",
                              fix="use score() / recommend(), or export a run with a retrieval task")
        if task is not None and task not in names:
            raise ScorerError(f"No retrieval task '{task}' in this export.", fix=f"retrieval tasks: {', '.join(names)}")
        return task or names[0]

    def user_vectors(self, user_rows, task: str | None = None) -> np.ndarray:
        t = self._retrieval_task(task)
        return self.towers[(t, "user")].run(["vectors"], {"user": np.ascontiguousarray(user_rows, np.int64)})[0]

    def item_vectors(self, item_rows=None, task: str | None = None) -> np.ndarray:
        """[N, d] item tower vectors (None: every item, computed once and kept)."""
        t = self._retrieval_task(task)
        if item_rows is None:
            if t not in self._item_vectors:
                self._item_vectors[t] = self.item_vectors(np.arange(len(self.items)), t)
            return self._item_vectors[t]
        return self.towers[(t, "item")].run(["vectors"], {"item": np.ascontiguousarray(item_rows, np.int64)})[0]

    def retrieve(self, user_id, n: int = 200, task: str | None = None) -> list[str]:
        """The n catalogue items whose tower vectors score highest for the user (the cascade's
        first stage, mtrlib.serve.cascade)."""
        u = self.user_vectors(np.asarray([self.user_row(user_id)]), task)[0]
        s = self.item_vectors(None, task) @ u
        n = min(n, len(s))
        top = np.argpartition(-s, n - 1)[:n]
        return [str(self.item_ids[j]) for j in top[np.argsort(-s[top], kind="stable")]]


__all__ = ["OnnxScorer", "ScorerError"]
