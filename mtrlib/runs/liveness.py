"""Is a run that says "running" still training? A killed trainer cannot say so itself, so a
reader asks /proc (same host: is the pid alive, with the same start time?) and the heartbeat."""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path

STALE_S = 600.0  # a "running" run without a heartbeat for this long is interrupted


def _proc_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (Linux), read once; None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()
    except (OSError, ValueError):
        return None


def _start_of(fields: list[str] | None) -> int | None:
    try:
        return int(fields[19]) if fields is not None else None
    except (ValueError, IndexError):
        return None


def proc_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), to tell a reused pid apart."""
    return _start_of(_proc_fields(pid))


def _alive(pid: int, start: int | None) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    fields = _proc_fields(pid)
    if fields and fields[0] in ("Z", "X"):
        return False
    if start is not None:
        now = _start_of(fields)
        if now is not None and now != start:
            return False
    return True


def effective_status(meta: Mapping, now: float | None = None) -> tuple[str, str]:
    """(status, reason) with 'running' turned into 'interrupted' when its process is gone.
    `meta` is meta.json as a mapping (`RunMeta.to_dict()` or the raw JSON)."""
    status, reason = meta.get("status", "unknown"), meta.get("reason") or ""
    if status != "running":
        return status, reason
    now = time.time() if now is None else now
    beat = float(meta.get("heartbeat") or meta.get("created") or 0)
    pid = meta.get("pid")
    if meta.get("host") == socket.gethostname() and not _alive(pid, meta.get("pid_start")):
        return "interrupted", (f"The training process (pid {pid}) ended without finishing the run; "
                               "its history up to the last logged step is kept.")
    if now - beat > STALE_S:
        return "interrupted", f"No sign of life from the training process for {int((now - beat) // 60)} minutes."
    return status, reason
