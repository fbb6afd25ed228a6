"""The live runtime's storage in this app: SqlLiveStore, the LiveStore of proctor/live/store.py on
SQLAlchemy through Flask-SQLAlchemy.

create_app hands one to proctor.live.init_app. Each call runs in the app's context: the caller's
own when it is already inside one of this app (a request: audit rows then carry the client
address), else a fresh one for the call (the runtime's loop), so the database session ends with it.
"""
from __future__ import annotations

import json
import math
from contextlib import nullcontext
from typing import Iterable

from flask import current_app, has_app_context
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from . import audit as audit_trail
from . import exam_service
from .extensions import db
from .live.store import AuditEntry, LiveError, SessionInfo, ViolationRecord
from .models import AuditLog, Exam, ExamSession, Profile, User, Violation

DETAILS_MAX_CHARS = 8000  # violations.details is Text; the runtime's details are small, this is a guard


def _rules(text: str | None) -> frozenset[str]:
    """The comma-separated rule names a disabled_rules column holds."""
    return frozenset(part.strip().upper() for part in (text or "").split(",") if part.strip())


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class SqlLiveStore:
    def __init__(self, app):
        self.app = app

    def _context(self):
        if has_app_context() and current_app._get_current_object() is self.app:
            return nullcontext()
        return self.app.app_context()

    def load_session(self, session_id: int) -> SessionInfo | None:
        with self._context():
            session = db.session.get(ExamSession, session_id)
            if session is None:
                return None
            exam = db.session.get(Exam, session.exam_id)
            student = db.session.get(User, session.student_id)
            profile = db.session.scalar(select(Profile).where(Profile.student_id == session.student_id))
            return SessionInfo(
                session_id=session.id, student_id=session.student_id, status=session.status,
                student_name=student.name if student is not None else f"#{session.student_id}",
                exam_id=exam.id, exam_title=exam.title, exam_auto_terminate=bool(exam.auto_terminate),
                session_auto_terminate=session.auto_terminate,
                exam_disabled_rules=_rules(exam.disabled_rules), session_disabled_rules=_rules(session.disabled_rules),
                exam_thresholds=exam.thresholds or "{}",
                embedding=bytes(profile.embedding) if profile is not None and profile.embedding else None,
                **self._warning_state(session.id),
            )

    @staticmethod
    def _warning_state(session_id: int) -> dict:
        """The session's warnings as the runtime left them (SessionInfo's warning_count, warned_at,
        last_incident, open_incident): the count stored with its last violation, the frame time each
        rule was last warned at (its cooldown) and the incident of the last violation, all from the
        violations after the proctor's last clear; the highest incident number from all of them. A
        stream opened again (a server restart, another web process taking the student over) goes on
        from there: the count that auto-termination is measured against is not reset, a condition still
        going on is not warned (and stored) a second time within its cooldown, a part of the incident
        under way still joins it, and incident numbers are not used twice."""
        cleared = db.session.scalar(select(func.max(AuditLog.created_at)).where(
            AuditLog.action == "live.clear_warnings", AuditLog.target_type == "exam_session",
            AuditLog.target_id == session_id))
        query = select(Violation.type, Violation.details, Violation.timestamp).where(Violation.session_id == session_id)
        count, warned, last_incident, open_incident = 0, {}, 0, None
        for rule, raw, stamp in db.session.execute(query.order_by(Violation.id)).all():
            try:
                details = json.loads(raw or "{}")
            except ValueError:
                continue
            if not isinstance(details, dict):
                continue
            number = details.get("incident")
            number = number if isinstance(number, int) and not isinstance(number, bool) and 0 < number <= 10**9 else None
            last_incident = max(last_incident, number or 0)
            if cleared is not None and stamp <= cleared:
                continue
            n, t = details.get("warning_count"), details.get("frame_t")
            if _finite(n) and 0 <= n <= 10_000:  # weighted incidents: 1.5 is a count
                count = n
            if _finite(t):
                warned[rule] = max(float(t), warned.get(rule, float("-inf")))
            opened_t, weight = details.get("incident_t"), details.get("incident_weight")
            open_incident = ((float(opened_t), float(weight)) if number and _finite(opened_t) and _finite(weight)
                             and weight >= 0 else None)
        if open_incident is not None and not last_incident:
            open_incident = None
        return {"warning_count": count, "warned_at": tuple(sorted(warned.items())), "last_incident": last_incident,
                "open_incident": open_incident}

    def session_states(self, session_ids: Iterable[int]) -> dict[int, str]:
        ids = list(session_ids)
        if not ids:
            return {}
        with self._context():
            return dict(db.session.execute(select(ExamSession.id, ExamSession.status).where(ExamSession.id.in_(ids))).all())

    def save_violation(self, violation: ViolationRecord) -> int:
        """Idempotent on the record's client_id (unique column): a retry after a lost reply returns the stored id."""
        with self._context():
            if violation.client_id:
                stored = self._violation_id(violation.client_id)
                if stored is not None:
                    return stored
            row = Violation(student_id=violation.student_id, session_id=violation.session_id, type=violation.type,
                            severity=violation.severity,
                            details=json.dumps(violation.details, default=str)[:DETAILS_MAX_CHARS],
                            evidence_path=violation.evidence_path, clip_path=violation.clip_path,
                            client_id=violation.client_id)
            db.session.add(row)
            try:
                db.session.commit()
            except IntegrityError:
                db.session.rollback()
                stored = self._violation_id(violation.client_id) if violation.client_id else None
                if stored is not None:  # the same record saved at once by another attempt
                    return stored
                if db.session.get(ExamSession, violation.session_id) is None:
                    raise LiveError("the exam session of this violation no longer exists", 404) from None
                raise
            except Exception:
                db.session.rollback()
                raise
            return row.id

    @staticmethod
    def _violation_id(client_id: str) -> int | None:
        return db.session.scalar(select(Violation.id).where(Violation.client_id == client_id))

    def finish_session(self, session_id: int, reason: str) -> None:
        with self._context():
            try:
                exam_service.finish_session(session_id, "TERMINATED", reason)
            except exam_service.ExamError as exc:
                raise LiveError(str(exc), getattr(exc, "status", 404)) from None

    def set_auto_terminate(self, session_id: int, enabled: bool | None, audit: AuditEntry) -> None:
        with self._context():
            session = self._session(session_id)
            session.auto_terminate = enabled
            self._record(audit, commit=False)
            db.session.commit()

    def set_disabled_rules(self, session_id: int, rules: frozenset[str], audit: AuditEntry) -> None:
        with self._context():
            session = self._session(session_id)
            session.disabled_rules = ",".join(sorted(rules))
            self._record(audit, commit=False)
            db.session.commit()

    def audit(self, entry: AuditEntry) -> None:
        with self._context():
            self._record(entry, commit=True)

    @staticmethod
    def _session(session_id: int) -> ExamSession:
        session = db.session.get(ExamSession, session_id)
        if session is None:
            raise LiveError("no such exam session", 404)
        return session

    @staticmethod
    def _record(entry: AuditEntry, commit: bool) -> None:
        audit_trail.record(entry.actor_id, entry.action, entry.target_type, entry.target_id, commit=commit,
                           **dict(entry.details))
