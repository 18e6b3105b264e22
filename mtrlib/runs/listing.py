"""The store as a collection: list its runs, find one by id / name / path, load, rename, delete.
Hidden entries are runs being created or deleted, so a listing skips them."""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from .meta import RunInfo, read_info, read_meta
from .owner import Visitor, check_may_change
from .reader import Run
from .store import RunError, RunProblem, store_dir, atomic_write_json


def list_runs(store=None, problems: list | None = None) -> list[RunInfo]:
    """Runs in the store, newest first. Folders that are not readable runs are skipped; when
    `problems` (a list) is given, a `RunProblem(path, message)` is appended for each of them.
    Hidden entries (temp / being created / being deleted) are ignored silently."""
    root = store_dir(store)
    out: list[RunInfo] = []
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    except OSError as e:
        if problems is not None:
            problems.append(RunProblem(root, f"The run store {root} cannot be read: {e.strerror or e}."))
        return []
    for ent in entries:
        if ent.name.startswith("."):
            continue
        p = Path(ent.path)
        try:
            if not ent.is_dir():
                if problems is not None:
                    problems.append(RunProblem(p, f"{p.name} is a file, not a run folder; skipped."))
                continue
            out.append(read_info(p))
        except RunError as e:
            if problems is not None:
                problems.append(RunProblem(p, str(e)))
        except Exception as e:  # anything odd in a foreign folder: report, never break the listing
            if problems is not None:
                problems.append(RunProblem(p, f"{p.name} could not be read ({type(e).__name__}: {e}); skipped."))
    out.sort(key=lambda r: (r.created, r.id), reverse=True)
    return out


def resolve_run(id_or_path, store=None) -> Path:
    """A run folder from a path, an id (folder name), a unique id prefix or a unique name."""
    if isinstance(id_or_path, (Run, RunInfo)):
        return id_or_path.path
    text = str(id_or_path).strip()
    if not text:
        raise RunError("No run was named.", fix="give a run id, name or folder (see `python -m mtrlib runs`)")
    p = Path(text).expanduser()
    if p.is_dir() and (p / "meta.json").exists():
        return p.resolve()
    root = store_dir(store)
    if "/" not in text and "\\" not in text and text not in (".", ".."):
        direct = root / text
        if direct.is_dir() and (direct / "meta.json").exists():
            return direct
        runs = list_runs(root)
        for pred in (lambda r: r.name == text, lambda r: r.id.startswith(text)):
            hits = [r for r in runs if pred(r)]
            if len(hits) == 1:
                return hits[0].path
            if len(hits) > 1:
                raise RunError(f"'{text}' matches {len(hits)} runs: {', '.join(r.id for r in hits[:5])}.",
                               fix="use the run id (first column of `python -m mtrlib runs`)")
    if p.is_dir():
        raise RunError(f"{p} is not a run folder (no meta.json).")
    raise RunError(f"No run '{text}' in the run store {root}.",
                   fix="list runs with `python -m mtrlib runs`, or give the run folder's path")


def load_run(id_or_path, store=None, device: str = "cpu") -> Run:
    """Load a run by id, name, unique id prefix or folder path (see `resolve_run`)."""
    if isinstance(id_or_path, Run):
        return id_or_path
    return Run(resolve_run(id_or_path, store), device=device)


def rename_run(id_or_path, new_name: str, store=None, visitor: Visitor | None = None) -> RunInfo:
    """Give a run a new display name; refused (RunError) when `visitor` may not change it (runs.owner)."""
    name = " ".join(str(new_name).split())
    if not name:
        raise RunError("A run name cannot be empty.", fix="type a name")
    if len(name) > 200:
        raise RunError("A run name can be at most 200 characters.", fix="use a shorter name")
    path = resolve_run(id_or_path, store)
    meta = read_meta(path)
    check_may_change(meta.owner, visitor, "rename", meta.name)
    try:
        atomic_write_json(path / "name.json", {"name": name})
    except OSError as e:
        raise RunError(f"Could not rename run {path.name}: {e.strerror or e}.") from None
    return read_info(path)


def delete_run(id_or_path, store=None, force: bool = False, visitor: Visitor | None = None) -> None:
    """Remove a run folder (only a real run folder; a running run only with `force`; only its
    owner or the teacher when `visitor` is given on a server with a teacher token)."""
    path = resolve_run(id_or_path, store)
    meta = read_meta(path)  # refuses foreign folders
    check_may_change(meta.owner, visitor, "delete", meta.name)
    status, _ = meta.status_now()
    if status == "running" and not force:
        raise RunError(f"Run '{meta.name}' is still training.", fix="stop it first")
    gone = path.parent / f".deleting-{path.name}-{secrets.token_hex(3)}"
    try:
        os.rename(path, gone)
    except OSError as e:
        raise RunError(f"Could not delete run {path.name}: {e.strerror or e}.") from None
    shutil.rmtree(gone, ignore_errors=True)
