"""Context features (issue 26): each column's role and kind with its reason on several log layouts,
the impression's context read by every architecture, and scoring in a chosen context."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mtrlib.config import TrainConfig
from mtrlib.data import guess_mapping, load
from mtrlib.data.context import ContextSpace
from mtrlib.data.roles import kind_with_reason
from mtrlib.models import ARCHITECTURES
from mtrlib.train.loop import train
from mtrlib.train.prepare import prepare


def device_log(n: int = 12000, seed: int = 0) -> pd.DataFrame:
    """A log whose clicks depend on the context: items 0-29 are clicked on mobile, 30-59 on
    desktop; the slot lowers the click rate; the hour is noise."""
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, 200, n), rng.integers(0, 60, n)
    dev = rng.choice(["mobile", "desktop"], n)
    match = ((i < 30) & (dev == "mobile")) | ((i >= 30) & (dev == "desktop"))
    pos = rng.integers(1, 11, n)
    p = 1 / (1 + np.exp(-(-1.5 + 2.5 * match - 0.15 * pos)))
    click = (rng.random(n) < p).astype(int)
    return pd.DataFrame({"user_id": u, "item_id": i, "device": dev, "position": pos, "hour": rng.integers(0, 24, n),
                         "click": click, "buy": click * (rng.random(n) < 0.4)})


# ---------------------------------------------------------------- roles and kinds, six layouts


def test_industry_layout_integer_codes_are_categorical_context():
    rng = np.random.default_rng(1)
    n = 20000
    df = pd.DataFrame({"user_id": rng.integers(0, 800, n), "item_id": rng.integers(0, 500, n),
                       "101": rng.integers(0, 412, n), "206": rng.integers(0, 30, n),
                       "853": rng.integers(10**8, 10**9, n), "click": rng.integers(0, 2, n)})
    df["purchase"] = df["click"] * rng.integers(0, 2, n)
    m = guess_mapping(df)
    assert m["context_features"] == {"101": "categorical", "206": "categorical", "853": "categorical"}
    assert m["labels"] == ["click", "purchase"]
    assert m["reasons"]["101"].endswith("412 distinct integer codes in 20,000 rows: categorical")
    assert "hashed codes" in m["reasons"]["853"]


def test_short_video_log_time_columns_are_time_and_context_not_tasks():
    rng = np.random.default_rng(2)
    n = 5000
    t = 1_650_000_000_000 + np.sort(rng.integers(0, 10**9, n))
    df = pd.DataFrame({"user_id": rng.integers(0, 100, n), "video_id": rng.integers(0, 300, n),
                       "date": 20220421 + rng.integers(0, 5, n), "hourmin": rng.integers(0, 2400, n),
                       "time_ms": t, "is_click": rng.integers(0, 2, n), "is_follow": rng.integers(0, 2, n),
                       "long_view": rng.integers(0, 2, n), "play_time_ms": rng.exponential(9000, n).round()})
    m = guess_mapping(df)
    assert (m["user"], m["item"], m["timestamp"]) == ("user_id", "video_id", "time_ms")
    assert m["context_features"] == {"hourmin": "bucket"}
    assert "date" in m["ignore"] and "time column" in m["ignore"]["date"]
    assert set(m["labels"]) == {"is_click", "is_follow", "long_view", "play_time_ms"}
    ds = load(df)
    assert not any(t.startswith(("date", "hourmin", "time_ms")) for t in ds.suggested_tasks)
    assert ds.ignored == {"date": m["ignore"]["date"]}


def test_side_attributes_stay_item_and_user_features():
    k = np.arange(600)
    df = pd.DataFrame({"user": [f"u{x % 30}" for x in k], "item": [f"i{x % 50}" for x in k],
                       "category": [f"c{x % 50 % 7}" for x in k], "age": [20 + x % 30 for x in k],
                       "device": np.where(np.random.default_rng(0).random(600) < 0.4, "ios", "android"), "click": k % 2})
    m = guess_mapping(df)
    assert m["item_features"] == {"category": "categorical"} and m["user_features"] == {"age": "numeric"}
    assert m["context_features"] == {"device": "categorical"}
    assert m["reasons"]["category"].startswith("one value per item")


def test_retail_event_log_keeps_the_event_as_a_label():
    rng = np.random.default_rng(3)
    n = 3000
    df = pd.DataFrame({"visitorid": rng.integers(0, 200, n), "itemid": rng.integers(0, 400, n),
                       "event": rng.choice(["view", "addtocart", "transaction"], n),
                       "page": rng.choice(["home", "search", "cart"], n)})
    m = guess_mapping(df)
    assert m["labels"] == ["event"] and m["context_features"] == {"page": "categorical"}


def test_near_unique_and_constant_columns_are_ignored_with_a_reason():
    rng = np.random.default_rng(4)
    n = 400
    df = pd.DataFrame({"user_id": rng.integers(0, 40, n), "item_id": rng.integers(0, 60, n),
                       "url": [f"https://x.example/{k}" for k in range(n)], "country": "fr",
                       "click": rng.integers(0, 2, n)})
    ds = load(df)
    assert set(ds.ignored) == {"url", "country"}
    assert "unique" in ds.ignored["url"] and ds.ignored["country"] == "one value in every row"
    assert ds.mapping["ignore"] == ds.ignored and "url" in ds.report()["ignored"]


def test_split_column_and_position_are_recognised():
    rng = np.random.default_rng(5)
    n = 900
    df = pd.DataFrame({"user_id": rng.integers(0, 30, n), "item_id": rng.integers(0, 90, n),
                       "slot": rng.integers(1, 6, n), "split": rng.choice(["train", "valid", "test"], n),
                       "query_text": [" ".join(rng.choice(["red", "shoes", "blue", "hat", "cheap", "phone", "case",
                                                           "summer", "men", "wide"], 4)) for _ in range(n)],
                       "click": rng.integers(0, 2, n)})
    m = guess_mapping(df)
    assert m["position"] == "slot" and m["context_features"]["slot"] == "categorical"
    assert m["split"] == "split" and "split" not in m["context_features"]
    assert m["context_features"]["query_text"] == "text"


@pytest.mark.parametrize("values,kind", [
    (np.arange(1000) % 37, "categorical"),  # few codes per row
    (np.arange(1000) * 1.5, "numeric"),  # decimals
    (np.arange(1000), "numeric"),  # as many integers as rows: a number, not codes
    (np.arange(1000) % 2 + 7, "categorical"),  # two values
])
def test_integer_rule(values, kind):
    assert kind_with_reason(pd.Series(values, name="f"))[0] == kind


def test_user_mapping_moves_a_column_out_of_its_guessed_role():
    df = device_log(600)
    ds = load(df, mapping={"labels": ["click", "buy", "hour"], "context_features": {"device": "categorical"}})
    assert ds.context_features == {"device": "categorical"} and ds.position_column is None
    assert "hour" in ds.label_columns() and ds.reasons["hour"].startswith("set by you")


# ---------------------------------------------------------------- the model reads the context


def _cfg(arch: str, **kw) -> TrainConfig:
    cfg = TrainConfig()
    cfg.data.source = "files"
    cfg.epochs = 3
    cfg.model.arch = arch
    for k, v in kw.items():
        setattr(cfg.data, k, v)
    return cfg


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_learns_from_the_context(arch):
    ds = load(device_log())
    on = train(_cfg(arch), prepare(_cfg(arch), ds))
    off = train(_cfg(arch, context=False), prepare(_cfg(arch, context=False), ds))
    assert on.status == "finished" and off.status == "finished"
    # the clicks depend on device x item: without the context the model can only guess
    assert on.metrics["click"]["auc"] > off.metrics["click"]["auc"] + 0.1
    assert on.model.shared_input_layer() is None or on.model.shared_input_layer().context is not None


def test_stem_task_embeddings_and_retrieval_read_the_context():
    ds = load(device_log(4000))
    cfg = _cfg("mmoe")
    cfg.data.tasks = ["click=click", "r=retrieval:click"]
    cfg.model.options.task_emb = 4
    prep = prepare(cfg, ds)
    model = train(cfg, prep).model
    assert all(inp.context is not None for inp in model.task_inputs)
    inp = model.shared_input_layer()
    # the user tower reads the request (device, hour) but never the slot
    assert inp.context.request_dim == inp.context.feature_dim - inp.context.dim
    u = torch.arange(3)
    mobile = prep.space.context.encode_values({"device": "mobile"})
    desktop = prep.space.context.encode_values({"device": "desktop"})
    slot9 = prep.space.context.encode_values({"device": "mobile", "position": "9"})
    assert not torch.allclose(model.retrieval_user_vectors(u, "r", mobile), model.retrieval_user_vectors(u, "r", desktop))
    assert torch.allclose(model.retrieval_user_vectors(u, "r", mobile), model.retrieval_user_vectors(u, "r", slot9))


def test_context_vocabulary_comes_from_training_rows_only():
    df = pd.DataFrame({"device": ["a", "a", "b", "zz"], "hour": [1.0, 2.0, 3.0, 4.0]})
    sp = ContextSpace.fit(df, {"device": "categorical", "hour": "bucket"}, np.array([0, 1, 2]))
    cat, _, _ = sp.encode(df)
    assert sp.vocab["device"] == ["a", "b"] and cat[3, 0] == 0  # 'zz' unseen in training: other
    assert sp.defaults["device"] == "a"
    with pytest.raises(Exception, match="not a context feature"):
        sp.encode_values({"colour": "red"})


def test_scoring_in_a_chosen_context_moves_the_top_k(tmp_path):
    from mtrlib.runs import load_run
    from mtrlib.runs.writer import train_and_save
    from mtrlib.serve.recommend import recommend

    ds = load(device_log())
    cfg = _cfg("mmoe")
    cfg.epochs = 4
    prep = prepare(cfg, ds)
    _, writer = train_and_save(cfg, prep, store=tmp_path)
    run = load_run(writer.id, tmp_path)
    tops = {d: recommend(run, "5", k=10, context={"device": d}) for d in ("mobile", "desktop")}
    mobile_items = tops["mobile"]["item_id"].astype(int)
    desktop_items = tops["desktop"]["item_id"].astype(int)
    assert (mobile_items < 30).mean() >= 0.8 and (desktop_items >= 30).mean() >= 0.8
    assert tops["mobile"].attrs["context"]["position"] == "1"  # the slot scored in by default
    with pytest.raises(Exception, match="not a context feature"):
        recommend(run, "5", context={"colour": "red"})


@pytest.mark.parametrize("mode", ["feature", "tower", "none"])
def test_position_as_feature_bias_tower_or_nothing(mode):
    ds = load(device_log(4000))
    cfg = _cfg("mmoe")
    cfg.model.position = mode
    prep = prepare(cfg, ds)
    model = train(cfg, prep).model
    ctx = model.input.context
    assert (ctx.feature_dim == ctx.request_dim) == (mode != "feature")
    assert (getattr(model, "position_bias", None) is not None) == (mode == "tower")
    u, i = torch.arange(4), torch.arange(4)
    slot1 = prep.space.context.encode_values({"position": "1"})
    slot9 = prep.space.context.encode_values({"position": "9"})
    model.eval()
    with torch.no_grad():
        same = torch.allclose(model(u, i, context=slot1), model(u, i, context=slot9))
    assert same == (mode != "feature")  # served without the slot unless it is a feature
    if mode == "tower":  # in training the tower's bias is added, and it learned that later slots are clicked less
        model.train()
        with torch.no_grad():
            b = model.position_bias.bias.weight[:, 0]
        codes = [prep.space.context.vocab["position"].index(s) + 1 for s in ("1", "9")]
        assert b[codes[0]] > b[codes[1]]


def test_the_apps_mapping_reproduces_a_run_from_the_command_line(tmp_path, monkeypatch, capsys):
    """app -> JSON -> CLI -> config.json -> rerun: the mapping the Data page applies (and offers as a
    download) is what `train --mapping` reads; the run's config records it; `train --config`
    reproduces the run's metrics."""
    import json

    from streamlit.testing.v1 import AppTest

    from mtrlib.__main__ import main as cli
    from test_reliability_ui import files_session, upload

    log = tmp_path / "impressions.csv"
    device_log(3000).to_csv(log, index=False)
    at = upload(files_session(), "interactions", "impressions.csv", log.read_bytes())
    assert isinstance(at, AppTest) and not at.exception
    at.button(key="map_apply").click().run()
    mapping = at.session_state["mapping"]
    assert mapping["context_features"] == {"device": "categorical", "position": "categorical", "hour": "categorical"}
    assert mapping["position"] == "position" and mapping["labels"] == ["click", "buy"]
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(mapping))  # the download button's bytes are this dict as JSON

    monkeypatch.setenv("MTR_RUN_STORE", str(tmp_path / "store"))
    assert cli(["train", "--data", str(log), "--mapping", str(path), "--epochs", "2", "--quiet"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    config = json.loads((Path(first["run_dir"]) / "config.json").read_text())
    assert config["data"]["mapping"]["context_features"] == mapping["context_features"]
    assert cli(["train", "--config", str(Path(first["run_dir"]) / "config.json"), "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["metrics"] == first["metrics"]
