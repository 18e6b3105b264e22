"""Where the run store is, and the file primitives every part of it writes and reads through.

All writes are atomic (temp file in the same folder, then `os.replace`), so a reader never
sees half a file; arrays are safetensors, everything else JSON; nothing is ever pickled.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load as load_safetensors, save as save_safetensors

from ..errors import DataError
from ..paths import data_dir
from ..safe import json_clean


class RunError(DataError):
    """A run cannot be found, read or written; the message says which and what to do."""


@dataclass
class RunProblem:
    """A folder in the store that is not a readable run (reported by `list_runs`, never raised)."""
    path: Path
    message: str


def default_store() -> Path:
    """`$MTR_RUN_STORE` if set, else `data/runs/` under the repository (git-ignored), or the
    user's data folder for an installed package (`mtrlib.paths.data_dir`).
    Read at each call, so a test or a page that sets the variable later is honoured."""
    env = os.environ.get("MTR_RUN_STORE", "").strip()
    return Path(env).expanduser() if env else data_dir() / "runs"


def store_dir(store) -> Path:
    return Path(store).expanduser() if store is not None else default_store()


def _json_bytes(obj) -> bytes:
    return json.dumps(json_clean(obj), indent=1, allow_nan=False).encode("utf-8")


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def atomic_write(path: Path, data: bytes, fsync: bool = False) -> None:
    """Write `data` to a temp file next to `path`, then `os.replace` it into place."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise


def atomic_write_json(path: Path, obj, fsync: bool = False) -> None:
    atomic_write(path, _json_bytes(obj), fsync)


def save_arrays(path: Path, arrays: dict[str, np.ndarray], fsync: bool = False) -> None:
    clean = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    atomic_write(path, save_safetensors(clean), fsync)


def load_arrays(path: Path, what: str) -> dict[str, np.ndarray]:
    """safetensors only: a damaged or pickled file is refused, never unpickled."""
    try:
        return load_safetensors(Path(path).read_bytes())
    except FileNotFoundError:
        raise RunError(f"The run folder {path.parent} has no {path.name} ({what}).",
                       fix="the run was probably not saved completely; delete it and train again") from None
    except Exception as e:  # SafetensorError, bad header, truncated file
        raise RunError(f"{path.name} in {path.parent} is damaged or not a safetensors file ({what}): {e}.",
                       fix="refusing to load it; delete the run and train again") from None


def store_message(e: OSError, where: Path) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "permission denied"
    elif e.errno == errno.ENOTDIR or (e.errno == errno.EEXIST and where.exists() and not where.is_dir()):
        why = "a part of the path is a file, not a folder"
    else:
        why = e.strerror or str(e)
    return (f"The run store {where} is not writable ({why}); this run is kept in memory only and is NOT saved. "
            f"Set MTR_RUN_STORE or pass another store folder.")
