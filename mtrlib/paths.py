"""Where the library keeps files it writes (the run store, the text-vector cache).

In a checkout of the repository (a `pyproject.toml` beside the package) they live under its
git-ignored `data/` folder, as they always have; an installed package (`pip install .`) has no
repository around it, so it uses the user's cache / data folders (XDG, else ~/.cache and
~/.local/share). Environment variables still win: MTR_RUN_STORE, MTR_CACHE_DIR.
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # the checkout, when this package is one (see `in_checkout`)


def in_checkout() -> bool:
    """True when the package is imported from the repository, not from an installed copy."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "mtrlib" / "__init__.py").is_file()


def _xdg(var: str, fallback: str) -> Path:
    root = os.environ.get(var, "").strip()
    return (Path(root).expanduser() if root else Path.home() / fallback) / "mtrlib"


def cache_dir() -> Path:
    """Re-creatable files (text vectors): `<repo>/data/cache`, else $XDG_CACHE_HOME/mtrlib."""
    return REPO_ROOT / "data" / "cache" if in_checkout() else _xdg("XDG_CACHE_HOME", ".cache")


def data_dir() -> Path:
    """Files a user keeps (saved runs): `<repo>/data`, else $XDG_DATA_HOME/mtrlib."""
    return REPO_ROOT / "data" if in_checkout() else _xdg("XDG_DATA_HOME", ".local/share")
