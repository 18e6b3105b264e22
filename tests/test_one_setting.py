"""One declaration per setting (issue 25): a core setting is ONE field with its `knob(...)`.

In a temporary copy of the project, one new field is added to `TrainConfig` in
mtrlib/config.py (the declaration and its knob metadata, nothing else edited anywhere), and
it appears in the CLI (`train --help`, and its flag sets it in the saved config.json), in the
URL (mtrlib.share round trip, under its declared key), on the Train page (AppTest sees its
widget, in the Training section's "More settings", and setting it changes the config) and in
validation (a bad value is refused with the knob's own message and fix).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ANCHOR = "    name: str | None = None\n"
FIELD = ('    grad_clip: float = knob(0.0, "Gradient clipping", noun="gradient clipping norm", lo=0.0, hi=100.0,\n'
         '                            flag="--grad-clip", url="gclip", valid=lambda v: v >= 0, fix="e.g. 1.0",\n'
         '                            message="The gradient clipping norm must be 0 (off) or more (got {v}).",\n'
         '                            help="clip the global gradient norm to this (0: off)")\n')


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("one-setting") / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("mtrlib", "pages", ".streamlit"):
        shutil.copytree(ROOT / name, dst / name, ignore=ignore)
    shutil.copy(ROOT / "app.py", dst / "app.py")
    path = dst / "mtrlib/config.py"
    src = path.read_text()
    assert src.count(ANCHOR) == 1 and "grad_clip" not in src
    path.write_text(src.replace(ANCHOR, FIELD + ANCHOR))  # the one edit: the field, declared once
    return dst


def _run(copy: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(copy), MTR_RUN_STORE=str(copy / "runs"))
    return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_new_setting_is_a_cli_flag(copy, tmp_path):
    help_text = _run(copy, "-m", "mtrlib", "train", "--help").stdout
    assert "--grad-clip" in help_text and "clip the global gradient norm" in help_text
    out = _run(copy, "-m", "mtrlib", "train", "--grad-clip", "2.5", "--save-config", str(tmp_path / "c.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "c.json").read_text())["grad_clip"] == 2.5
    bad = _run(copy, "-m", "mtrlib", "train", "--grad-clip", "-1", "--save-config", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "gradient clipping norm must be 0 (off) or more (got -1.0)" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad.json").exists()


def test_the_new_setting_is_a_url_key_and_is_validated(copy):
    script = (
        "import json\n"
        "from mtrlib.config import TrainConfig, validate\n"
        "from mtrlib.errors import ConfigError\n"
        "from mtrlib.share import from_params, to_params\n"
        "c = TrainConfig(grad_clip=2.5)\n"
        "p = to_params(c)\n"
        "back, problems = from_params(p)\n"
        "by_path, _ = from_params({'grad_clip': '0.5'})\n"
        "try:\n"
        "    validate(TrainConfig(grad_clip=-3.0))\n"
        "    refused = None\n"
        "except ConfigError as e:\n"
        "    refused = [e.problem, e.fix]\n"
        "print(json.dumps({'params': p, 'back': back.grad_clip, 'problems': problems, 'by_path': by_path.grad_clip,\n"
        "                  'default_absent': 'gclip' not in to_params(TrainConfig()), 'refused': refused}))\n")
    out = _run(copy, "-c", script)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["params"] == {"gclip": "2.5"} and got["back"] == 2.5 and got["problems"] == [], got
    assert got["by_path"] == 0.5 and got["default_absent"], got  # the dotted path is a key too
    assert got["refused"] == ["The gradient clipping norm must be 0 (off) or more (got -3.0).", "e.g. 1.0"], got


def test_the_new_setting_has_a_widget_on_the_train_page(copy):
    script = (
        "import json\n"
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file('pages/train.py', default_timeout=120).run()\n"
        "assert not at.exception, at.exception\n"
        "w = [n for n in at.number_input if n.key == 't_gclip']\n"
        "labels = [e.label for e in at.expander]\n"
        "w[0].set_value(1.5).run()\n"
        "print(json.dumps({'label': w[0].label, 'value': at.session_state['cfg'].grad_clip,\n"
        "                  'expanders': labels, 'errors': [e.value for e in at.error]}))\n")
    out = _run(copy, "-c", script)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["label"] == "Gradient clipping" and got["value"] == 1.5, got
    assert "More settings" in got["expanders"] and not got["errors"], got
