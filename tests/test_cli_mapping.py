"""Issue 26 on the command line: exact flags (no prefix matching) with the nearest flag named,
one column-mapping JSON (inspect --mapping-out -> train --mapping -> config.json -> train
--config), the per-column flags, and check_mapping's messages for the new keys."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

import mtrlib.__main__ as cli
from mtrlib.cli.parser import nearest_flags
from mtrlib.data import load
from mtrlib.data.mapping import check_mapping
from mtrlib.errors import DataError

VERBS = ["world", "inspect", "train", "runs", "recommend", "eval", "project", "export", "sweep", "lesson", "report",
         "tune"]


def write_log(path, n=400, seed=0):
    """A small log: user, item, a context column, a label, a split column (train/Valid/TEST)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"uid": rng.integers(0, 30, n), "iid": rng.integers(0, 20, n),
                       "device": rng.choice(["ios", "web", "tv"], n), "row_no": np.arange(n),
                       "click": rng.integers(0, 2, n), "fold": rng.choice(["train"] * 8 + ["Valid", "TEST"], n)})
    df.to_csv(path, index=False)
    return df


def parsers(parser: argparse.ArgumentParser):
    """The parser and every parser under it (argparse keeps subparsers in a private action class:
    this walk is the test that guards that use in mtrlib.cli.parser.verb_parser)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


@pytest.mark.parametrize("verb", [None, *VERBS])
def test_every_parser_reads_flags_exactly(verb):
    top = cli.build_parser(verb)
    seen = list(parsers(top))
    assert len(seen) > len(VERBS)
    assert all(p.allow_abbrev is False for p in seen), [p.prog for p in seen if p.allow_abbrev]
    if verb is not None:
        names = {p.prog.rsplit(" ", 1)[-1] for p in seen}
        assert verb in names


def test_a_prefix_is_not_a_flag_and_the_nearest_is_named(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--user", "user_id", "--item", "item_id"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown flag --user; did you mean --user-col?" in err and "unknown flag --item" in err
    assert "Traceback" not in err and "usage:" not in err
    with pytest.raises(SystemExit):
        cli.main(["train", "--split", "rndom"])
    assert "did you mean 'random'?" in capsys.readouterr().err
    assert nearest_flags("--epoch", ["--epochs", "--early-stop"])[0] == "--epochs"


def test_inspect_keeps_its_old_column_flags_exactly(tmp_path, capsys):
    p = tmp_path / "log.csv"
    p.write_text("a,b,c\n" + "".join(f"x{k % 3},y{k % 4},{k % 2}\n" for k in range(12)))
    assert cli.main(["inspect", str(p), "--user", "a", "--item", "b"]) == 0
    assert "Users:     3" in capsys.readouterr().out
    assert cli.main(["inspect", str(p), "--user-col", "a", "--item-col", "b", "--time-col", "c"]) == 0
    assert "Timestamp: yes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["inspect", str(p), "--use", "a"])  # a prefix of --user / --users: not a flag
    assert "unknown flag --use" in capsys.readouterr().err


def test_flags_override_the_mapping_file(tmp_path, capsys):
    log = tmp_path / "log.csv"
    write_log(log)
    out = tmp_path / "m.json"
    assert cli.main(["inspect", str(log), "--mapping-out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert (m["user"], m["item"], m["split"]) == ("uid", "iid", "fold")  # the split column is suggested
    assert "click" in m["labels"] and "fold" not in m["labels"]
    capsys.readouterr()
    assert cli.main(["inspect", str(log), "--mapping", str(out), "--feature", "device=categorical",
                     "--ignore", "row_no", "--mapping-out", str(tmp_path / "m2.json")]) == 0
    text = capsys.readouterr().out
    assert "Context features: device (categorical)" in text and "Ignored: row_no" in text
    m2 = json.loads((tmp_path / "m2.json").read_text())
    assert m2["context_features"] == {"device": "categorical"} and "row_no" in m2["ignore"]
    assert "row_no" not in m2["labels"]
    ds = load(log, mapping={k: v for k, v in m2.items() if k != "reasons"})
    assert "row_no" not in " ".join(ds.suggested_tasks) and "row_no" in ds.ignored
    assert cli.main(["inspect", str(log), "--feature", "device=colour"]) == 2
    assert "KIND one of categorical, multi, numeric, text, bucket" in capsys.readouterr().err


def test_position_and_feature_flags_move_a_column(tmp_path, capsys):
    log = tmp_path / "log.csv"
    write_log(log)
    out = tmp_path / "m.json"
    assert cli.main(["inspect", str(log), "--position-col", "row_no", "--label", "click", "--mapping-out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["position"] == "row_no" and m["context_features"]["row_no"] == "categorical"
    assert cli.main(["inspect", str(log), "--mapping", str(out), "--feature", "row_no=bucket",
                     "--mapping-out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["position"] == "row_no" and m["context_features"]["row_no"] == "bucket"
    assert cli.main(["inspect", str(log), "--mapping", str(out), "--ignore", "row_no", "--mapping-out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert "position" not in m and "row_no" not in m.get("context_features", {}) and "row_no" in m["ignore"]
    capsys.readouterr()


def test_mapping_round_trip_reproduces_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MTR_RUN_STORE", str(tmp_path / "store"))
    log = tmp_path / "log.csv"
    write_log(log)
    m = tmp_path / "mapping.json"
    assert cli.main(["inspect", str(log), "--mapping-out", str(m), "--ignore", "row_no"]) == 0
    quick = ["--epochs", "2", "--batch-size", "128", "--quiet", "--negatives", "1"]
    capsys.readouterr()
    assert cli.main(["train", "--data", str(log), "--mapping", str(m), *quick, "--out", str(tmp_path / "r1")]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cfg = json.loads((tmp_path / "r1" / "config.json").read_text())
    assert cfg["data"]["mapping"]["user"] == "uid" and "row_no" in cfg["data"]["mapping"]["ignore"]
    assert cfg["data"]["mapping"] == {k: v for k, v in json.loads(m.read_text()).items() if k != "reasons"}
    assert cli.main(["train", "--config", str(tmp_path / "r1" / "config.json"), "--quiet",
                     "--out", str(tmp_path / "r2")]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["metrics"] == first["metrics"] and set(first["metrics"]) == {"click"}


def test_a_bad_mapping_file_is_a_message(tmp_path, capsys):
    log = tmp_path / "log.csv"
    write_log(log)
    for text, words in (("{not json", "not valid JSON"), ("[1, 2]", "one JSON object"),
                        ('{"user": "uid", "labels": "click"}', "must be a list of column names")):
        (tmp_path / "m.json").write_text(text)
        assert cli.main(["inspect", str(log), "--mapping", str(tmp_path / "m.json")]) == 2
        err = capsys.readouterr().err
        assert words in err and "Fix:" in err and "Traceback" not in err
    assert cli.main(["inspect", str(log), "--mapping", str(tmp_path / "missing.json")]) == 2
    assert "Cannot read the mapping file" in capsys.readouterr().err


def test_column_flags_need_a_data_file(capsys):
    assert cli.main(["train", "--user-col", "uid", "--save-config", "unused.json"]) == 2
    err = capsys.readouterr().err
    assert "describe a data file" in err and "--data" in err and "Traceback" not in err


@pytest.mark.parametrize("mapping, words", [
    ({"user": "uid", "context_features": {"devcie": "categorical"}}, ["'devcie'", "did you mean 'device'"]),
    ({"context_features": {"device": "colour"}}, ["kind 'colour'", "bucket"]),
    ({"item_features": {"device": "bucket"}}, ["kind 'bucket'", "context features only"]),
    ({"context_features": {"device": "categorical"}, "position": "row_no"}, ["position column 'row_no'",
                                                                              "not among the context features"]),
    ({"split": "folds"}, ["split column", "'folds'", "did you mean 'fold'"]),
    ({"ignore": ["nope"]}, ["'nope'", "column to ignore"]),
    ({"ignore": "row_no"}, ["must be a list"]),
    ({"labels": ["click"], "ignore": ["click"]}, ["two roles", "label and ignored column"]),
    ({"split": "fold", "labels": ["fold"]}, ["two roles"]),
    ({"usr": "uid"}, ["Unknown key", "did you mean 'user'"]),
    ({"labels": 5}, ["must be a list of column names"]),
    ({"position": ["row_no"]}, ["one column name"]),
    (["uid"], ["must be a dictionary"]),
])
def test_check_mapping_names_the_problem(mapping, words):
    cols = ["uid", "iid", "device", "row_no", "click", "fold"]
    with pytest.raises(DataError) as e:
        check_mapping(mapping, cols, source="log.csv")
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert e.value.fix


def test_check_mapping_accepts_the_new_keys():
    cols = ["uid", "iid", "device", "row_no", "click", "fold"]
    m = {"user": "uid", "item": "iid", "context_features": {"device": "categorical", "row_no": "bucket"},
         "position": "row_no", "ignore": {"click": "not needed"}, "split": "fold", "reasons": {"uid": "named so"}}
    assert check_mapping(m, cols, source="x") == m
