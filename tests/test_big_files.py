"""Big logs on one machine: the command line reads files of any size (`--max-file-mb` caps them)
while the app keeps its cap; the vectorised helpers the loader and the pipeline use at tens of
millions of rows give what the slow pandas calls they replace gave."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtrlib.__main__ import main
from mtrlib.data import load
from mtrlib.data import values as vl
from mtrlib.data.dataset import index_positions
from mtrlib.errors import DataError
from mtrlib.data.read import parse, sources


def _log(path, rows: int) -> None:
    rng = np.random.default_rng(0)
    pd.DataFrame({"user_id": [f"u{k}" for k in rng.integers(0, 500, rows)], "item_id": rng.integers(0, 90, rows),
                  "click": rng.integers(0, 2, rows)}).to_csv(path, index=False)


def test_the_cli_reads_any_size_unless_capped_and_the_app_keeps_its_cap(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MTR_MAX_FILE_MB", raising=False)
    monkeypatch.setattr(sources, "DEFAULT_MAX_FILE_MB", 0.25)  # the app's default cap, made small
    path = tmp_path / "log.csv"
    _log(path, 40_000)
    assert path.stat().st_size > 0.3 * 1024 * 1024
    with pytest.raises(DataError, match="over the 0.25 MB limit"):
        load(str(path))  # the library / app: capped
    assert main(["inspect", str(path)]) == 0  # the command line: any size
    assert "Rows:      40,000" in capsys.readouterr().out
    assert main(["inspect", str(path), "--max-file-mb", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "over the 0.1 MB limit" in err and "--max-file-mb" in err
    monkeypatch.setenv("MTR_MAX_FILE_MB", "0.2")  # set by the user: the command line honours it too
    assert main(["inspect", str(path)]) == 2
    assert "over the 0.2 MB limit" in capsys.readouterr().err
    with sources.file_cap("none"):
        assert sources.max_file_bytes() == int(0.2 * 1024 * 1024)


def test_the_whole_file_field_count_check_names_the_line_across_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(parse, "CHECK_WINDOW", 997)  # many windows, cut mid-file
    lines = ["user,item,click"] + [f"u{k},i{k % 7},{k % 2}" for k in range(12_000)]  # past the 64 KB sample
    lines[9001] += ",extra"
    lines[11200] += ",extra"
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as e:
        load(str(path))
    assert "Line 9002 has 4 field(s)" in str(e.value) and "(1 more lines disagree too)" in str(e.value)


def _frames():
    rng = np.random.default_rng(1)
    n = 5000
    text = pd.Series(rng.choice(["a", "b", "c", None], n), dtype="str")
    yield pd.DataFrame({"u": text, "x": rng.integers(0, 3, n), "y": rng.choice([0.5, np.nan, 2.0], n)})
    wide = {f"c{j}": rng.integers(0, 4000, n) for j in range(6)}  # key overflows 2**62: renumbered on the way
    wide["c0"][100:200] = wide["c0"][:100]
    for j in range(1, 6):
        wide[f"c{j}"][100:200] = wide[f"c{j}"][:100]
    yield pd.DataFrame(wide)


@pytest.mark.parametrize("frame", list(_frames()))
def test_count_repeats_is_duplicated_sum(frame):
    assert vl.count_repeats(frame) == int(frame.duplicated().sum())


def test_isin_and_index_positions_match_pandas():
    rng = np.random.default_rng(2)
    ids = pd.Series([f"i{k}" for k in rng.integers(0, 3000, 40_000)], dtype="str")
    catalogue = pd.Index([f"i{k}" for k in range(0, 3000, 2)], dtype="str")
    assert np.array_equal(vl.isin(ids, catalogue), ids.isin(catalogue).to_numpy())
    assert np.array_equal(vl.isin(ids.astype(object), set(catalogue)), ids.isin(catalogue).to_numpy())
    assert np.array_equal(index_positions(catalogue, ids), catalogue.get_indexer(ids))
    assert np.array_equal(index_positions(catalogue, list(ids[:50])), catalogue.get_indexer(ids[:50]))


@pytest.mark.parametrize("values", [["1", "2", None, "40"], ["1.5", "-2", "1e3"], ["1", "x"], ["inf", "3"]])
def test_arrow_numbers_match_pandas(values):
    got = vl.as_numeric(pd.Series(values, dtype="str"))
    want = vl.as_numeric(pd.Series(values, dtype=object))
    if want is None:
        assert got is None
    else:
        np.testing.assert_array_equal(got.to_numpy(dtype=float), want.to_numpy(dtype=float))


def test_parquet_keeps_its_column_types(tmp_path):
    df = pd.DataFrame({"user_id": np.arange(50) % 7, "item_id": [f"m{k % 9}" for k in range(50)],
                       "rating": np.linspace(0.5, 5, 50)})
    df.to_parquet(tmp_path / "r.parquet")
    ds = load(str(tmp_path / "r.parquet"))
    assert ds.n_interactions == 50 and ds.interactions["user_id"].iloc[3] == "3"
    assert pd.api.types.is_float_dtype(ds.interactions["rating"])
