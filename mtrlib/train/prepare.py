"""From a config to tensors: dataset -> labelled examples -> split -> feature space -> encoded
tensors (+ language-model text vectors). Built once per data + task choice; the trainer, the
run store and the evaluations all read the `Prepared` result."""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..config import TrainConfig, validate
from ..errors import DataError
from ..data import Dataset, Examples, Split, build_examples, load, make_world, split
from ..data.context import ContextSpace, usable_context
from ..data.encode import EncodedExamples, FeatureSpace, encode_examples
from ..data.history import with_history
from ..data.read.given import PARTS, plan_split
from ..data.text import item_text_vectors
from ..data.warnings import split_warnings
from ..data.tasks import TaskSpec, parse_tasks
from .device import text_device_for


@dataclass
class Prepared:
    """Everything between the raw dataset and the trainer, built once per data + task choice."""
    dataset: Dataset
    examples: Examples
    split: Split
    space: FeatureSpace
    train: EncodedExamples
    val: EncodedExamples
    test: EncodedExamples
    tasks: list[TaskSpec]
    # what the split leaves wrong, named (mtrlib.data.warnings): {"code", "subject", "message", "fix"}
    warnings: list[dict] = field(default_factory=list)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]


def load_dataset(cfg: TrainConfig) -> Dataset:
    d = cfg.data
    if d.source == "world":
        return make_world(**d.world.to_dict())
    f = d.files
    if "interactions" not in f and "train" not in f:
        raise DataError("No interactions file was given.", fix="pass --data FILE (or choose the built-in world)")
    mapping = d.mapping or None
    if "train" in f:  # a given split by files: train / val / test of one layout (mtrlib.data.read.given)
        return load({p: f[p] for p in PARTS if p in f}, f.get("items"), f.get("users"), mapping=mapping)
    return load(f["interactions"], f.get("items"), f.get("users"), mapping=mapping)


def prepare(cfg: TrainConfig, dataset: Dataset | None = None,
            text_progress: Callable[[int, int], None] | None = None) -> Prepared:
    """Dataset -> labelled examples -> split -> feature space -> tensors (+ text vectors)."""
    ds = dataset if dataset is not None else load_dataset(cfg)
    tasks = parse_tasks(cfg.data.tasks or ds.suggested_tasks)
    validate(cfg, [t.name for t in tasks])
    ex = build_examples(ds, tasks, negatives=cfg.data.negatives, seed=cfg.seed)
    cfg.data.split, given = plan_split(cfg.data.split, ds)  # train / val / test files: their own split
    sp = split(ex, cfg.data.split, cfg.data.val_frac, cfg.data.test_frac, seed=cfg.seed, given=given)
    space = FeatureSpace.fit(ds, seen_ids(ex.frame, sp.train), use_features=cfg.data.use_features)
    origin = ex.frame["origin"].to_numpy()
    context = usable_context(ds, tasks)
    for c in ds.context_features:
        if c not in context:
            ex.notes.append(f"Column '{c}' is a task's label here, so it is not read as a context feature.")
    if context and cfg.data.use_features and cfg.data.context:  # (mtrlib.data.context)
        space.context = ContextSpace.fit(ds.interactions, context, np.unique(origin[sp.train]),
                                         position=ds.position_column if ds.position_column in context else None)
    if cfg.model.text_features:
        space.item_text = item_text_vectors(ds, cfg.data.text_columns, device=text_device_for(cfg.device),
                                            progress=text_progress)
    enc = encode_examples(space, ex.frame, ex.labels)
    if space.context is not None:
        enc.context = space.context.rows(ds.interactions, origin)
    if cfg.model.history:  # each example's past interactions; sets space.history (mtrlib.data.history)
        enc = with_history(cfg.model, ex, sp, space, enc, ds, tasks)
    return Prepared(ds, ex, sp, space, enc.subset(sp.train), enc.subset(sp.val), enc.subset(sp.test), tasks,
                    split_warnings(ds, ex, sp, tasks))


def seen_ids(frame, rows) -> dict:
    """The distinct user and item ids of `rows` of the examples (what `FeatureSpace.fit` reads from
    the training rows), by integer code: not a copy of most of the table."""
    out = {}
    for c in ("user_id", "item_id"):
        codes, uniques = pd.factorize(frame[c])
        seen = np.zeros(len(uniques), bool)
        seen[codes[rows]] = True
        out[c] = uniques[seen]
    return out


__all__ = ["Prepared", "load_dataset", "prepare", "seen_ids"]
