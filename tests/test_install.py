"""mtrlib is an installable package: `pip install .` into a clean venv gives a working `mtr`.

Offline and fast: the new venv has no packages of its own; a .pth file makes this project's
venv's site-packages (torch and the rest, already installed from the lock) visible to it, and
pip builds with the setuptools found there (`--no-build-isolation`) and installs only mtrlib
(`--no-deps`). The source is copied first, so the build never writes into the checkout, and the
commands run outside it, so `mtrlib` can only come from the installed copy.
"""
from __future__ import annotations

import re
import shutil
import site
import subprocess
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _norm(name: str) -> str:
    """PEP 503's normal form: 'openTSNE' and 'opentsne', 'gt_all' and 'gt-all' are one name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _norm(re.split(r"[\s\[<>=!~;]", spec.strip(), maxsplit=1)[0])


def _lock() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            out[_norm(name)] = version.strip()
    return out


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_dependency_is_locked_at_a_version_it_allows():
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = _project()
    lock = _lock()
    specs = list(project["dependencies"]) + [s for group in project.get("optional-dependencies", {}).values()
                                             for s in group]
    assert specs, "pyproject.toml declares no dependencies"
    missing = [s for s in specs if _requirement_name(s) not in lock]
    assert not missing, f"in pyproject.toml but not in requirements.lock: {missing}"
    for s in specs:
        req = Requirement(s)
        assert req.specifier.contains(Version(lock[_requirement_name(s)]), prereleases=True), \
            f"{s}: the lock has {lock[_requirement_name(s)]}"


def test_the_command_is_the_module_main():
    assert _project()["scripts"]["mtr"] == "mtrlib.__main__:main"
    assert _project()["requires-python"] == ">=3.11"


def test_pip_install_into_a_clean_venv_gives_mtr(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "mtrlib", src / "mtrlib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    new_site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (new_site / "_mtr_project_deps.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")

    pip = subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", str(src)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert not (ROOT / "build").exists() and not list(ROOT.glob("*.egg-info"))

    mtr = env_dir / "bin" / "mtr"
    assert mtr.is_file(), "pip installed no `mtr` command"
    where = subprocess.run([py, "-c", "import mtrlib; print(mtrlib.__file__)"], capture_output=True, text=True,
                           cwd=tmp_path, check=True).stdout.strip()
    assert Path(where).is_relative_to(new_site), f"mtrlib imported from {where}, not the installed copy"

    top = subprocess.run([mtr, "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert top.returncode == 0, top.stderr
    assert top.stdout.startswith("usage: mtr ")
    for verb in ("world", "inspect", "train", "runs", "recommend", "eval", "project", "export", "sweep", "lesson"):
        assert re.search(rf"^\s+{verb}\b", top.stdout, re.M), f"`mtr --help` does not list {verb}:\n{top.stdout}"

    train = subprocess.run([mtr, "train", "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert train.returncode == 0, train.stderr
    assert train.stdout.startswith("usage: mtr train")
    for flag in ("--data", "--task", "--epochs"):
        assert flag in train.stdout, f"`mtr train --help` lacks {flag}"


def test_installed_copy_keeps_its_files_out_of_site_packages(tmp_path, monkeypatch):
    """An installed package has no repository around it: its cache and run store go to the
    user's folders, while a checkout keeps today's `data/` under the repository."""
    from mtrlib import paths

    assert paths.in_checkout() and paths.cache_dir() == ROOT / "data" / "cache"
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path / "site-packages")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert not paths.in_checkout()
    assert paths.cache_dir() == tmp_path / "cache" / "mtrlib"
    assert paths.data_dir() == tmp_path / "share" / "mtrlib"
