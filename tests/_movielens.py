"""ml-latest-small as a Dataset, for the quality tests and bench scripts.

Uses the project's own loader (`mtrlib.data.load`) once it exists; until then builds the
Dataset directly from ratings.csv + movies.csv (genres as a multi-valued item feature).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

ML_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-latest-small"
ML_TASKS = ["watched=implicit", "liked=rating>=4"]
ML_TASKS_CONDITIONAL = ["watched=implicit", "liked=rating>=4|watched"]


def available() -> bool:
    return (ML_DIR / "ratings.csv").exists() and (ML_DIR / "movies.csv").exists()


def load_ml(use_loader: bool = True, genres_only: bool = True):
    """The protocol's item features are the genres: `genres_only` drops the loader's other
    features (the release year, parsed from the title)."""
    if use_loader:
        try:
            from mtrlib.data import load  # the file loaders (data issue)
        except ImportError:
            load = None
        if load is not None:
            ds = load(str(ML_DIR / "ratings.csv"), str(ML_DIR / "movies.csv"), None)
            if genres_only:
                ds.item_features = {c: k for c, k in ds.item_features.items() if c == "genres" or k == "text"}
            return ds
    from mtrlib.data import Dataset
    r = pd.read_csv(ML_DIR / "ratings.csv")
    m = pd.read_csv(ML_DIR / "movies.csv")
    inter = pd.DataFrame({"user_id": r["userId"].astype(str), "item_id": r["movieId"].astype(str),
                          "timestamp": r["timestamp"].astype("int64"), "rating": r["rating"].astype(float)})
    items = pd.DataFrame({"title": m["title"].to_numpy(), "genres": m["genres"].to_numpy()},
                         index=pd.Index(m["movieId"].astype(str), name="item_id"))
    users = pd.DataFrame(index=pd.Index(sorted(inter["user_id"].unique()), name="user_id"))
    return Dataset(interactions=inter, items=items, users=users, layout="movielens-latest", name="ml-latest-small",
                   item_features={"genres": "multi", "title": "text"}, title_column="title",
                   text_columns=["title"], suggested_tasks=list(ML_TASKS))


def ml_config(arch: str = "mmoe", conditional: bool = False, **train_kw):
    """The protocol of the models issue: 4 negatives, per-user temporal split 70/10/20, genres."""
    from mtrlib.config import DataConfig, ModelConfig, TrainConfig
    data = DataConfig(source="files", tasks=list(ML_TASKS_CONDITIONAL if conditional else ML_TASKS), negatives=4,
                      split="temporal", val_frac=0.1, test_frac=0.2, use_features=True)
    return TrainConfig(data=data, model=ModelConfig(arch=arch), **train_kw)
