"""`python -m mtrlib world` and `inspect`: files written, reports printed, exit status 2 on bad data."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mtrlib.__main__ as cli
from mtrlib.data import build_examples, load, make_world, split

ROOT = Path(__file__).resolve().parents[1]


def run(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "mtrlib", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


def test_world_writes_the_trio_and_it_loads_back(tmp_path, capsys):
    out = tmp_path / "w"
    assert cli.main(["world", "--out", str(out), "--users", "120", "--items", "30", "--genres", "4",
                     "--correlation", "0.8", "--seed", "3"]) == 0
    assert {p.name for p in out.iterdir()} == {"interactions.csv", "items.csv", "users.csv"}
    assert "interactions.csv" in capsys.readouterr().out
    ref = make_world(n_users=120, n_items=30, n_genres=4, correlation=0.8, seed=3, impressions_per_user=30)
    for ds in (load(out), load(out / "interactions.csv", out / "items.csv", out / "users.csv")):
        assert (ds.n_interactions, ds.n_users, ds.n_items) == (ref.n_interactions, 120, 30)
        assert ds.item_features == {"title": "text", "description": "text", "genre": "categorical",
                                    "price_band": "categorical"}
        assert ds.user_features == {"age_band": "categorical", "region": "categorical"}
        assert ds.title_column == "title" and ds.has_timestamp
        assert ds.suggested_tasks == ref.suggested_tasks
        assert (ds.interactions["user_id"].to_numpy() == ref.interactions["user_id"].to_numpy()).all()
    ex = build_examples(ds, ds.suggested_tasks)
    assert len(split(ex, "temporal").test) > 0


def test_inspect_reports(tmp_path, capsys):
    out = tmp_path / "w"
    cli.main(["world", "--out", str(out), "--users", "60", "--items", "20"])
    capsys.readouterr()
    assert cli.main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    for part in ("Rows:      1,200", "Users:     60", "Items:     20", "Density:", "click:", "positive",
                 "Layout:    generic", "Suggested tasks:", "--task 'like=like'", "dwell=dwell:reg|click"):
        assert part in text, (part, text)  # a like on every impression (the default world)
    cli.main(["world", "--out", str(tmp_path / "f"), "--users", "60", "--items", "20", "--like-observed", "clicks"])
    capsys.readouterr()
    assert cli.main(["inspect", str(tmp_path / "f")]) == 0
    assert "like=like|click" in capsys.readouterr().out  # the funnel: a like only after a click
    assert cli.main(["inspect", str(out / "interactions.csv"), "--items", str(out / "items.csv"),
                     "--users", str(out / "users.csv"), "--json"]) == 0
    assert '"rows": 1200' in capsys.readouterr().out


def test_inspect_with_column_options(tmp_path, capsys):
    p = tmp_path / "log.csv"
    p.write_text("a,b,c\n" + "".join(f"x{k % 3},y{k % 4},{k % 2}\n" for k in range(12)))
    assert cli.main(["inspect", str(p)]) == 2
    err = capsys.readouterr().err
    assert "Could not find a user column" in err and "Traceback" not in err
    assert cli.main(["inspect", str(p), "--user", "a", "--item", "b"]) == 0
    assert "Users:     3" in capsys.readouterr().out


def test_inspect_bad_input_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "photo.csv"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    r = run("inspect", str(bad))
    assert r.returncode == 2
    assert "photo.csv: This is a PNG image, not a table." in r.stderr and "Traceback" not in r.stderr
    r = run("inspect", str(tmp_path / "missing.csv"))
    assert r.returncode == 2 and "File not found" in r.stderr


def test_world_bad_knob_exits_2(capsys):
    assert cli.main(["world", "--out", "unused", "--correlation", "3"]) == 2
    assert "between -1 and 1" in capsys.readouterr().err


def test_no_verb_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "inspect" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-verb"])
    assert e.value.code == 2


def test_missing_cli_modules_are_skipped(monkeypatch):
    monkeypatch.setattr(cli, "CLI_MODULES", ["data", "not_written_yet"])
    parser = cli.build_parser()
    assert parser.parse_args(["inspect", "x.csv"]).func.__name__ == "cmd_inspect"


def test_python_dash_m_entry_point(tmp_path):
    r = run("world", "--out", str(tmp_path), "--users", "20", "--items", "15")
    assert r.returncode == 0, r.stderr
    r = run("inspect", str(tmp_path))
    assert r.returncode == 0 and "Users:     20" in r.stdout
