"""Who may change a run on a shared server: its owner (the browser session that started it) or
the teacher. Everyone may read every run.

A teaching server sets `MTR_TEACHER_TOKEN`; whoever presents that token is the teacher. With no
token set (a laptop, one person) nobody is told no, exactly as before owners existed. The CLI and
library callers pass no visitor: they run on the server's shell, which is the teacher's already.
"""
from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass

from .store import RunError

TOKEN_ENV = "MTR_TEACHER_TOKEN"


def teacher_token() -> str | None:
    """The configured teacher token (read now, so a test or a restart can change it), or None."""
    t = os.environ.get(TOKEN_ENV, "").strip()
    return t or None


def is_teacher_token(given: str | None) -> bool:
    """Whether `given` is the teacher token (constant-time compare; False when none is set)."""
    want = teacher_token()
    return bool(want and given) and hmac.compare_digest(str(given).strip().encode(), want.encode())


@dataclass(frozen=True)
class Visitor:
    """One browser session: a random owner id kept in the session (and in the meta.json of each run
    it starts), and whether it showed the teacher token."""
    owner: str
    teacher: bool = False

    @classmethod
    def new(cls) -> Visitor:
        return cls(secrets.token_hex(8))

    @property
    def label(self) -> str:
        """How the teacher's queue view names this session (short, not the whole id)."""
        return "teacher" if self.teacher else f"student {self.owner[:4]}"


def may_change(run_owner: str | None, visitor: Visitor | None) -> bool:
    """Stop, rename or delete: allowed with no token configured, for the CLI (no visitor), for the
    teacher, and for the session whose id the run carries. A run with no owner (pre-trained with
    the CLI, or written before owners existed) is the teacher's."""
    if teacher_token() is None or visitor is None or visitor.teacher:
        return True
    return run_owner is not None and run_owner == visitor.owner


def check_may_change(run_owner: str | None, visitor: Visitor | None, action: str, name: str) -> None:
    """RunError naming the cause when `visitor` may not `action` the run called `name`."""
    if not may_change(run_owner, visitor):
        raise RunError(f"You cannot {action} '{name}': it belongs to another session on this server "
                       "(only whoever started it, or the teacher, can).",
                       fix="open it read-only, or train your own copy")


__all__ = ["TOKEN_ENV", "Visitor", "teacher_token", "is_teacher_token", "may_change", "check_may_change"]
