"""The proctor's actions on live exams: clear warnings, terminate, auto-terminate, rule switches.

ProctorActions is part of LiveRuntime (a mixin, kept apart because the loop is the other room).
It changes the stream the runtime holds, writes through the runtime's LiveStore (each action is
audited exactly once, in the same store call as its change where there is one) and publishes
the events admins and students see. Every method raises LiveError for a bad request.
"""
from __future__ import annotations

import logging

from .store import IN_PROGRESS, AuditEntry, LiveError, SessionInfo
from .streams import Stream, parse_rules

log = logging.getLogger(__name__)

REASON_MAX = 255
DEFAULT_REASON = "Terminated by the proctor"


class ProctorActions:
    # Provided by LiveRuntime: store, events, _lock, _streams, _student_now, _close_stream.

    def _stream_for_session(self, session_id: int) -> Stream | None:
        for s in self._streams.values():
            if s.session_id == session_id:
                return s
        return None

    def _known_session(self, session_id: int) -> SessionInfo:
        info = self.store.load_session(session_id)
        if info is None:
            raise LiveError("no such exam session", 404)
        return info

    def clear_warnings(self, student_id: int, by_admin_id: int | None) -> None:
        with self._lock:
            stream = self._streams.get(student_id)
            if stream is None:
                raise LiveError("this student has no active exam session", 404)
            stream.warnings.clear(student_id, self._student_now(stream))
            self.store.audit(AuditEntry(by_admin_id, "live.clear_warnings", "exam_session", stream.session_id,
                                        {"student_id": student_id}))
            log.info("warnings cleared student=%s session=%s by=%s", student_id, stream.session_id, by_admin_id)
        self.events.publish("warnings_cleared", {"student_id": student_id, "session_id": stream.session_id,
                                                 "by_admin_id": by_admin_id})

    def terminate(self, session_id: int, reason: str, by_admin_id: int | None) -> None:
        """End the session now (graded as TERMINATED), publish exam_terminated, drop the stream."""
        reason = (str(reason or "").strip() or DEFAULT_REASON)[:REASON_MAX]
        with self._lock:
            stream = self._stream_for_session(session_id)
            if stream is not None:
                self._terminate_stream(stream, reason, by_admin_id, auto=False)
                return
            info = self._known_session(session_id)
            if info.status != IN_PROGRESS:
                raise LiveError(f"exam session {session_id} is already {info.status}", 409)
            self.store.finish_session(session_id, reason)
            self.store.audit(AuditEntry(by_admin_id, "live.terminate", "exam_session", session_id, {"reason": reason}))
            self.events.publish("exam_terminated", {"student_id": info.student_id, "session_id": session_id,
                                                    "reason": reason, "by_admin_id": by_admin_id, "auto": False})

    def _terminate_stream(self, stream: Stream, reason: str, by_admin_id: int | None, auto: bool) -> None:
        stream.terminated = True
        self.store.finish_session(stream.session_id, reason)
        self.store.audit(AuditEntry(by_admin_id, "live.auto_terminate" if auto else "live.terminate", "exam_session",
                                    stream.session_id, {"student_id": stream.student_id, "reason": reason,
                                                        "warnings": stream.warnings.count(stream.student_id)}))
        log.warning("session terminated student=%s session=%s auto=%s by=%s: %s", stream.student_id, stream.session_id,
                    auto, by_admin_id, reason)
        self.events.publish("exam_terminated", {"student_id": stream.student_id, "session_id": stream.session_id,
                                                "reason": reason, "by_admin_id": by_admin_id, "auto": auto})
        self._close_stream(stream, "TERMINATED")

    def set_auto_terminate(self, session_id: int, enabled: bool | None, by_admin_id: int | None) -> bool:
        """Session override (True/False; None: back to the exam's setting). Returns the effective value."""
        if enabled is not None and not isinstance(enabled, bool):
            raise LiveError("enabled must be true, false or null")
        with self._lock:
            info = self._known_session(session_id)
            self.store.set_auto_terminate(session_id, enabled, AuditEntry(
                by_admin_id, "live.set_auto_terminate", "exam_session", session_id, {"enabled": enabled}))
            stream = self._stream_for_session(session_id)
            if stream is not None:
                stream.session_auto_terminate = enabled
            effective = bool(info.exam_auto_terminate) if enabled is None else enabled
            log.info("auto-terminate session=%s set to %s (effective %s) by=%s", session_id, enabled, effective, by_admin_id)
            return effective

    def set_rule(self, session_id: int, rule: str, enabled: bool, by_admin_id: int | None) -> list[str]:
        """Enable or disable one rule for this session. Returns the session's disabled rules (exam + session)."""
        from config_vision import RULES

        if rule not in RULES:
            raise LiveError(f"unknown rule {rule!r}")
        if not isinstance(enabled, bool):
            raise LiveError("enabled must be true or false")
        with self._lock:
            info = self._known_session(session_id)
            session_rules = set(parse_rules(info.session_disabled_rules))
            exam_rules = parse_rules(info.exam_disabled_rules)
            if enabled:
                session_rules.discard(rule)
                if rule in exam_rules:
                    raise LiveError(f"{rule} is disabled for the whole exam; change it in the exam's settings", 409)
            else:
                session_rules.add(rule)
            self.store.set_disabled_rules(session_id, frozenset(session_rules), AuditEntry(
                by_admin_id, "live.set_rule", "exam_session", session_id, {"rule": rule, "enabled": enabled}))
            stream = self._stream_for_session(session_id)
            if stream is not None:
                stream.session_disabled = frozenset(session_rules)
                stream.exam_disabled = exam_rules
                stream.engine.set_disabled_rules(stream.student_id, set(stream.disabled_rules))
            log.info("rule %s %s for session=%s by=%s", rule, "enabled" if enabled else "disabled", session_id, by_admin_id)
            return sorted(exam_rules | session_rules)
