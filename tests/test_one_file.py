"""Registries by discovery (issue 13): an architecture or a weighting method is ONE new file.

In a temporary copy of the project, a copy of `shared_bottom.py` saved under another name with
another `arch` (and label), and a copy of `fixed.py` with another `name`, train from the CLI and
appear on the Train page, with no other edit anywhere.
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


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("one-file") / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("mtrlib", "pages", ".streamlit"):
        shutil.copytree(ROOT / name, dst / name, ignore=ignore)
    shutil.copy(ROOT / "app.py", dst / "app.py")
    src = (dst / "mtrlib/models/shared_bottom.py").read_text()
    new = src.replace('arch = "shared-bottom"', 'arch = "my-bottom"').replace('label = "Shared-Bottom"', 'label = "My bottom"')
    assert new != src
    (dst / "mtrlib/models/my_bottom.py").write_text(new)
    src = (dst / "mtrlib/weighting/fixed.py").read_text()
    new = src.replace('name = "fixed"', 'name = "my-fixed"').replace('label = "Fixed (your weights)"', 'label = "My fixed"')
    assert new != src
    (dst / "mtrlib/weighting/my_fixed.py").write_text(new)
    return dst


def _env(copy: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(copy), MTR_RUN_STORE=str(copy / "runs"))


def test_the_copies_train_from_the_cli(copy):
    out = subprocess.run([sys.executable, "-m", "mtrlib", "train", "--model", "my-bottom", "--weighting", "my-fixed",
                          "--users", "100", "--items", "40", "--impressions", "10", "--epochs", "1", "--quiet"],
                         cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert last["status"] == "finished" and set(last["metrics"]) == {"click", "like", "dwell"}, last
    assert list(last["grad"]["by_group"]) == ["embeddings", "bottom"]  # its shared parameters, found unaided
    cfg = json.loads((Path(last["run_dir"]) / "config.json").read_text())
    assert cfg["model"]["arch"] == "my-bottom" and cfg["weighting"]["name"] == "my-fixed"
    meta = json.loads((Path(last["run_dir"]) / "meta.json").read_text())
    assert meta["model"] == "My bottom [64,32]"  # the copy's own summary() and label
    help_text = subprocess.run([sys.executable, "-m", "mtrlib", "train", "--help"], cwd=copy, env=_env(copy),
                               capture_output=True, text=True, timeout=120).stdout
    assert "my-bottom" in help_text and "my-fixed" in help_text


def test_the_copies_appear_on_the_train_page(copy):
    script = (
        "import json\n"
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file('pages/train.py', default_timeout=120).run()\n"
        "assert not at.exception, at.exception\n"
        "arch = at.radio(key='t_arch')\n"
        "w = at.selectbox(key='t_weighting')\n"
        "arch.set_value('my-bottom').run()\n"
        "w = at.selectbox(key='t_weighting')\n"
        "w.set_value('my-fixed').run()\n"
        "titles = [e.proto.spec for e in at.get('plotly_chart')]\n"
        "print(json.dumps({'arch_options': list(at.radio(key='t_arch').options),\n"
        "                  'weighting_options': list(at.selectbox(key='t_weighting').options),\n"
        "                  'arch': at.radio(key='t_arch').value, 'weighting': at.selectbox(key='t_weighting').value,\n"
        "                  'layers_label': [n.label for n in at.number_input if n.key == 't_shared_n'],\n"
        "                  'diagram': [t for t in titles if 'My bottom network' in t] != [],\n"
        "                  'errors': [e.value for e in at.error]}))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=copy, env=_env(copy), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert "My bottom" in got["arch_options"] and "My fixed" in got["weighting_options"], got
    assert got["arch"] == "my-bottom" and got["weighting"] == "my-fixed", got
    assert got["layers_label"] == ["Shared layers: layers"], got  # the copy's own knobs, as declared
    assert got["diagram"] and not got["errors"], got
