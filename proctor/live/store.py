"""What the live runtime needs from storage, and nothing more: the LiveStore interface.

The runtime decides, warns and publishes; it never touches the database itself. Everything it
reads or writes goes through one LiveStore, handed in by the web layer (proctor/live_store.py:
SqlLiveStore, SQLAlchemy through Flask-SQLAlchemy). Only the plain values below cross it: no
Flask objects, no ORM rows, no sessions. A second implementation (a distributed mode, the fake
in tests/live/test_runtime_unit.py) only has to provide these seven methods.

Errors: a store raises LiveError when the request names something that is not there (its
`status` is the HTTP code the web layer answers with); anything else it raises is a failure
of the storage itself, which the runtime logs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, runtime_checkable

IN_PROGRESS = "IN_PROGRESS"  # the one session status that has a live stream


class LiveError(ValueError):
    """A bad request to the runtime (unknown session, wrong student, bad event type); `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SessionInfo:
    """One exam session as the runtime needs it to open a stream or act on it."""

    session_id: int
    student_id: int
    status: str                           # IN_PROGRESS, COMPLETED, TERMINATED, ...
    student_name: str
    exam_id: int
    exam_title: str
    exam_auto_terminate: bool
    session_auto_terminate: bool | None   # the proctor's override for this session; None: the exam's setting
    exam_disabled_rules: frozenset[str]   # rule names as stored (the runtime ignores unknown ones)
    session_disabled_rules: frozenset[str]
    exam_thresholds: str                  # the exam's vision overrides, JSON text as stored ("{}" when none)
    embedding: bytes | None               # the student's enrolment face embedding, if enrolled
    warning_count: int | float = 0        # warnings (incidents by weight) so far and not cleared: a stream opened again goes on from it
    warned_at: tuple[tuple[str, float], ...] = ()  # (rule, frame time of its last warning): cooldowns go on too
    last_incident: int = 0                # the highest incident number stored: new incidents are numbered after it
    open_incident: tuple[float, float] | None = None  # (frame time, weight) of the last warning's incident since a clear


@dataclass(frozen=True)
class ViolationRecord:
    """A warning the runtime issued, to be stored as a violation."""

    student_id: int
    session_id: int
    type: str                             # the rule, e.g. "NO_FACE"
    severity: str
    details: dict[str, Any]               # JSON-able
    evidence_path: str | None             # the snapshot, relative to the data directory
    client_id: str | None = None          # a UUID made when the warning was issued: the store saves it once
    clip_path: str | None = None          # the pre-roll clip (a frames file), relative to the data directory


@dataclass(frozen=True)
class AuditEntry:
    """One proctor (or system, actor_id None) action for the audit trail."""

    actor_id: int | None
    action: str                           # e.g. "live.terminate"
    target_type: str
    target_id: int
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class LiveStore(Protocol):
    def load_session(self, session_id: int) -> SessionInfo | None:
        """The session with its exam, student and enrolment; None when there is no such session."""

    def session_states(self, session_ids: Iterable[int]) -> dict[int, str]:
        """{session id: status} for those that exist (a deleted session is simply absent)."""

    def save_violation(self, violation: ViolationRecord) -> int:
        """Store the violation; returns its id (the stored one's, when its client_id is stored already).
        Raises LiveError when it can never be stored (the session is gone), anything else when not now."""

    def finish_session(self, session_id: int, reason: str) -> None:
        """End the session as TERMINATED with this reason, graded (idempotent); LiveError 404 if unknown."""

    def set_auto_terminate(self, session_id: int, enabled: bool | None, audit: AuditEntry) -> None:
        """Set the session's auto-terminate override and write `audit`, together."""

    def set_disabled_rules(self, session_id: int, rules: frozenset[str], audit: AuditEntry) -> None:
        """Replace the session's own disabled rules and write `audit`, together."""

    def audit(self, entry: AuditEntry) -> None:
        """Write one audit row."""
