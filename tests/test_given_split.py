"""Given splits (issue 26): a split column, three train / val / test files, or a folder of them;
a sampled negative follows its positive; bad values and a missing part are clear errors."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest

import mtrlib.__main__ as cli
from mtrlib.data import build_examples, load, split
from mtrlib.data.read.given import part_codes, part_of_name, plan_split
from mtrlib.errors import DataError


def log_frame(n=400, seed=0, split_values=("train",) * 8 + ("Valid", "TEST")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"uid": rng.integers(0, 30, n), "iid": rng.integers(0, 20, n),
                         "click": rng.integers(0, 2, n), "fold": rng.choice(list(split_values), n)})


def write_parts(df: pd.DataFrame, folder, names=("log_train.csv", "log_valid.csv", "log_test.csv")) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, value in zip(names, ("train", "Valid", "TEST")):
        df[df.fold == value].drop(columns="fold").to_csv(folder / name, index=False)
        paths.append(folder / name)
    return paths


def parts_of(ds, method="given"):
    ex = build_examples(ds, ["click=click", "seen=implicit"], negatives=2, seed=0)
    used, given = plan_split(method, ds)
    return ex, split(ex, used, given=given)


def test_given_by_column_follows_the_column_and_negatives_follow_their_positive(tmp_path):
    df = log_frame()
    df.to_csv(tmp_path / "log.csv", index=False)
    ds = load(tmp_path / "log.csv")
    assert ds.mapping["split"] == "fold" and "fold" not in ds.mapping["labels"]  # suggested, not a label
    assert not any("fold" in t for t in ds.suggested_tasks)
    assert plan_split("random", ds)[1] is None  # only used when asked for (--split given)
    ex, sp = parts_of(ds)
    want = df["fold"].str.lower().map({"train": 0, "valid": 1, "test": 2}).to_numpy()
    origin = ex.frame["origin"].to_numpy()
    for k, rows in enumerate((sp.train, sp.val, sp.test)):
        assert (want[origin[rows]] == k).all()  # sampled negatives too: by their positive's row
    assert sp.method == "given" and len(sp.test) == 3 * (want == 2).sum()


def test_given_by_three_files_and_by_folder_and_zip(tmp_path):
    df = log_frame()
    paths = write_parts(df, tmp_path / "parts")
    by_files = load(dict(zip(("train", "val", "test"), paths)))
    by_folder = load(tmp_path / "parts")
    with zipfile.ZipFile(tmp_path / "parts.zip", "w") as z:
        for p in paths:
            z.write(p, p.name)
    by_zip = load(tmp_path / "parts.zip")
    for ds in (by_files, by_folder, by_zip):
        assert ds.n_interactions == len(df) and ds.mapping["split"] == "split"
        assert any("train / val / test files" in n for n in ds.notes)
        ex, sp = parts_of(ds, "random")  # the files' split is used over the default random one
        assert sp.method == "given"
        counts = df["fold"].value_counts()
        assert int((~ex.frame["sampled"].to_numpy()[sp.test]).sum()) == counts["TEST"]
        assert int((~ex.frame["sampled"].to_numpy()[sp.val]).sum()) == counts["Valid"]
    assert parts_of(by_folder, "temporal" if by_folder.has_timestamp else "cold-items")[1].method != "given"


def test_train_with_three_files_records_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MTR_RUN_STORE", str(tmp_path / "store"))
    train, val, test = write_parts(log_frame(), tmp_path / "p")
    assert cli.main(["train", "--train-file", str(train), "--val-file", str(val), "--test-file", str(test),
                     "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert cfg["split"] == "given" and set(cfg["files"]) == {"train", "val", "test"}
    assert res["status"] == "finished"


def test_bad_split_values_and_a_missing_part(tmp_path, capsys):
    df = log_frame()
    df.loc[16, "fold"] = "tset"
    df.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"Row 17 of the split column 'fold' holds 'tset'"):
        parts_of(load(tmp_path / "bad.csv", mapping={"split": "fold"}))
    assert cli.main(["train", "--data", str(tmp_path / "bad.csv"), "--split-col", "fold", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'tset'" in err and "Fix:" in err and "Traceback" not in err
    log_frame(split_values=("train", "val")).to_csv(tmp_path / "notest.csv", index=False)
    with pytest.raises(DataError, match="has no test rows"):
        parts_of(load(tmp_path / "notest.csv", mapping={"split": "fold"}))
    with pytest.raises(DataError, match="needs the data's own split"):
        parts_of(load(tmp_path / "notest.csv", mapping={"labels": ["click"], "ignore": ["fold"]}))
    assert cli.main(["inspect", "--train-file", str(tmp_path / "notest.csv")]) == 2
    assert "needs all three files; --val-file and --test-file are missing" in capsys.readouterr().err


def test_part_values_and_file_names():
    s = pd.Series(["train", "VALIDATION", " val ", "Test", "valid", "0", "1", "2"])
    assert part_codes(s, "s").tolist() == [0, 1, 1, 2, 1, 0, 1, 2]
    assert part_codes(pd.Series([0, 1, 2, 2.0]), "s").tolist() == [0, 1, 2, 2]
    with pytest.raises(DataError, match="Row 2"):
        part_codes(pd.Series([0, 3, 1, 2]), "s")
    assert [part_of_name(n) for n in ("ratings_train.csv", "dev.tsv", "x.valid.csv", "test.parquet", "notes.md",
                                      "train_test.csv")] == ["train", "val", "val", "test", None, None]


def test_a_split_column_constant_per_item_stays_a_split(tmp_path):
    """A cold-start split given by item (every row of an item in one part) looks like an item
    attribute to the guess; it stays the split column, not an item feature."""
    df = log_frame(n=600)
    part_of_item = {i: ("TEST" if i % 5 == 0 else "Valid" if i % 5 == 1 else "train") for i in range(20)}
    df["fold"] = df["iid"].map(part_of_item)
    df.to_csv(tmp_path / "cold.csv", index=False)
    ds = load(tmp_path / "cold.csv", mapping={"split": "fold"})
    assert "fold" not in ds.item_features and "fold" not in ds.items.columns and "fold" in ds.interactions.columns
    ex, sp = parts_of(ds)
    test_items = set(ex.frame["item_id"].to_numpy()[sp.test][~ex.frame["sampled"].to_numpy()[sp.test]])
    assert test_items == {str(i) for i in range(0, 20, 5)}
