"""Talking to a student during the exam (issue 16): the proctor's messages, the student's raised hand
and extra time.

The wording a proctor picks from (PRESETS) and the reasons a student may give (HAND_REASONS) live
here only; the pages get them rendered (templates/admin/_messages.html, templates/student/exam.html).
Every change is one transaction: the row, and for an admin's action its audit row (live.message,
live.hand_dismissed, live.extra_time). After the commit the change is published on the live
runtime's event bus, which the socket bridge (proctor/sockets.py) pushes to the admins and to the
student's own room; a page that missed the push reads the same facts back (the student's unread
messages at load, the deadline at every save and reload).
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from sqlalchemy import select, update

from . import audit as audit_trail
from .extensions import db
from .jsonapi import ApiError
from .models import AuditLog, ExamSession, MessageSender, SessionMessage, SessionStatus, User, utcnow

log = logging.getLogger(__name__)

# key -> what the student reads. Keys are stored (session_messages.preset, at most 32 characters).
PRESETS = {
    "look_at_screen": "Please look at the screen.",
    "remove_phone": "Please remove the phone from the desk.",
    "stay_in_view": "Please stay in view of the camera.",
    "keep_quiet": "Please keep quiet.",
    "full_screen": "Please return to full screen.",
}
HAND_REASONS = {
    "technical": "Technical problem",
    "question": "Question about the exam",
}
MESSAGE_MAX_CHARS = 500
HAND_MAX_CHARS = 300
EXTRA_MINUTES_MIN, EXTRA_MINUTES_MAX = 1, 120
# Control characters (newlines included: the pages send one line) and the bidi overrides that could
# make a message read differently from what was stored.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

for _key in (*PRESETS, *HAND_REASONS):
    if len(_key) > 32:
        raise RuntimeError(f"preset key {_key!r} does not fit session_messages.preset")


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.replace(microsecond=0).isoformat() + "Z"


def clean_text(value, name: str, max_chars: int) -> str:
    """Free text from a page: a string of 1..max_chars characters (trimmed) without control characters."""
    if not isinstance(value, str):
        raise ApiError(f"'{name}' must be text")
    text = value.strip()
    if not text:
        raise ApiError(f"'{name}' must not be empty")
    if len(text) > max_chars:
        raise ApiError(f"'{name}' must be at most {max_chars} characters")
    if _UNSAFE.search(text):
        raise ApiError(f"'{name}' must not contain control characters (line breaks included)")
    return text


def extra_minutes_field(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError("'minutes' must be a whole number")
    if not EXTRA_MINUTES_MIN <= value <= EXTRA_MINUTES_MAX:
        raise ApiError(f"'minutes' must be between {EXTRA_MINUTES_MIN} and {EXTRA_MINUTES_MAX}")
    return value


def _locked_live_session(session_id: int, now: datetime) -> ExamSession:
    """The session, locked for this transaction; 404 when there is none, 409 when it is not running."""
    # A no-op write first: the row lock on MariaDB and SQLite's write lock (whose transactions begin at
    # the first write), so two grants at once are applied one after the other (as exam_service.start_session).
    db.session.execute(update(ExamSession).where(ExamSession.id == session_id)
                       .values(extra_minutes=ExamSession.extra_minutes))
    sess = db.session.scalar(select(ExamSession).where(ExamSession.id == session_id).with_for_update())
    if sess is None:
        db.session.rollback()
        raise ApiError(f"no exam session {session_id}", 404)
    if sess.status != SessionStatus.IN_PROGRESS.value:
        db.session.rollback()
        raise ApiError(f"session {session_id} is already {sess.status.lower()}", 409)
    if sess.deadline <= now:
        db.session.rollback()
        raise ApiError(f"session {session_id} is out of time (its deadline has passed)", 409)
    return sess


def _open_hands(session_id: int) -> list[SessionMessage]:
    return db.session.scalars(select(SessionMessage).where(
        SessionMessage.session_id == session_id, SessionMessage.sender == MessageSender.STUDENT.value,
        SessionMessage.acknowledged_at.is_(None)).order_by(SessionMessage.id)).all()


def _publish(name: str, payload: dict) -> None:
    """After the commit: the change is stored whatever happens to the push."""
    try:
        from .live_hooks import current_runtime

        current_runtime().events.publish(name, payload)
    except Exception:  # noqa: BLE001 - the page reads it back at its next load or save
        log.exception("could not publish %s for session %s", name, payload.get("session_id"))


def _names(ids) -> dict[int, str]:
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    return dict(db.session.execute(select(User.id, User.name).where(User.id.in_(ids))).all())


# --- the proctor's message ---------------------------------------------------------------------

def send_message(session_id: int, admin_id: int, preset=None, text=None) -> SessionMessage:
    """Store and push a message to the student of this running session; it answers their raised hands."""
    if (preset is None) == (text is None):
        raise ApiError("send either 'preset' (one of: " + ", ".join(PRESETS) + ") or 'text'")
    if preset is not None:
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ApiError("'preset' must be one of: " + ", ".join(PRESETS))
        body = PRESETS[preset]
    else:
        body = clean_text(text, "text", MESSAGE_MAX_CHARS)
    now = utcnow()
    sess = _locked_live_session(session_id, now)
    msg = SessionMessage(session_id=sess.id, student_id=sess.student_id, sender=MessageSender.PROCTOR.value,
                         author_id=admin_id, preset=preset, body=body, created_at=now)
    db.session.add(msg)
    answered = _open_hands(sess.id)
    for hand in answered:
        hand.acknowledged_at = now
    db.session.flush()
    audit_trail.record(admin_id, "live.message", "exam_session", sess.id, commit=False, student_id=sess.student_id,
                       message_id=msg.id, preset=preset, body=body, answered_hands=[h.id for h in answered])
    db.session.commit()
    log.info("message %s to student %s (session %s) by admin %s%s", msg.id, sess.student_id, sess.id, admin_id,
             f", answering hand(s) {[h.id for h in answered]}" if answered else "")
    author = _names([admin_id]).get(admin_id)
    _publish("message_sent", {"student_id": sess.student_id, "session_id": sess.id, "message_id": msg.id, "body": body,
                              "preset": preset, "created_at": iso(now), "author_id": admin_id, "author": author})
    if answered:
        _publish("hand_cleared", {"student_id": sess.student_id, "session_id": sess.id, "by_admin_id": admin_id,
                                  "message_ids": [h.id for h in answered], "answered": True})
    return msg


def unread_messages(session: ExamSession) -> list[dict]:
    """The proctor's messages the student has not acknowledged yet, oldest first (what a reloaded page shows)."""
    rows = db.session.scalars(select(SessionMessage).where(
        SessionMessage.session_id == session.id, SessionMessage.sender == MessageSender.PROCTOR.value,
        SessionMessage.acknowledged_at.is_(None)).order_by(SessionMessage.created_at, SessionMessage.id)).all()
    return [{"message_id": m.id, "session_id": m.session_id, "body": m.body, "preset": m.preset,
             "created_at": iso(m.created_at)} for m in rows]


def acknowledge(session_id: int, message_id: int, student_id: int) -> SessionMessage:
    """The student's "Understood": stored the first time only (idempotent); 404 for any message not theirs."""
    msg = db.session.scalar(select(SessionMessage).where(
        SessionMessage.id == message_id, SessionMessage.session_id == session_id,
        SessionMessage.student_id == student_id, SessionMessage.sender == MessageSender.PROCTOR.value))
    if msg is None:
        raise ApiError(f"no message {message_id} for you in session {session_id}", 404)
    now = utcnow()
    first = db.session.execute(update(SessionMessage).where(
        SessionMessage.id == msg.id, SessionMessage.acknowledged_at.is_(None)).values(acknowledged_at=now)).rowcount == 1
    db.session.commit()
    db.session.refresh(msg)
    if first:
        log.info("message %s acknowledged by student %s", msg.id, student_id)
        _publish("message_acknowledged", {"student_id": student_id, "session_id": session_id, "message_id": msg.id,
                                          "name": _names([student_id]).get(student_id),
                                          "acknowledged_at": iso(msg.acknowledged_at)})
    return msg


# --- the student's raised hand -----------------------------------------------------------------

def raise_hand(session: ExamSession, reason=None, text=None) -> SessionMessage:
    """Store the student's raised hand and push it to every admin; stays open until answered or dismissed."""
    if reason is not None and (not isinstance(reason, str) or reason not in HAND_REASONS):
        raise ApiError("'reason' must be one of: " + ", ".join(HAND_REASONS))
    if reason is not None and isinstance(text, str) and not text.strip():
        text = None  # a reason alone is enough
    if text is not None:
        text = clean_text(text, "text", HAND_MAX_CHARS)
    elif reason is None:
        raise ApiError(f"say what you need: 'text' (1 to {HAND_MAX_CHARS} characters) and/or 'reason'")
    if session.status != SessionStatus.IN_PROGRESS.value:
        raise ApiError("this exam is over", 409)
    body = ": ".join(part for part in (HAND_REASONS.get(reason) if reason else None, text) if part)
    msg = SessionMessage(session_id=session.id, student_id=session.student_id, sender=MessageSender.STUDENT.value,
                         author_id=session.student_id, preset=reason, body=body, created_at=utcnow())
    db.session.add(msg)
    db.session.commit()
    log.info("student %s raised a hand in session %s (message %s)", session.student_id, session.id, msg.id)
    _publish("hand_raised", {"student_id": session.student_id, "session_id": session.id, "message_id": msg.id,
                             "name": _names([session.student_id]).get(session.student_id), "body": body,
                             "reason": reason, "created_at": iso(msg.created_at)})
    return msg


def dismiss_hands(session_id: int, admin_id: int) -> list[int]:
    """Close the session's raised hands without a message (audited once when there were any)."""
    sess = db.session.get(ExamSession, session_id)
    if sess is None:
        raise ApiError(f"no exam session {session_id}", 404)
    hands = _open_hands(sess.id)
    if not hands:
        return []
    now = utcnow()
    for hand in hands:
        hand.acknowledged_at = now
    ids = [h.id for h in hands]
    audit_trail.record(admin_id, "live.hand_dismissed", "exam_session", sess.id, commit=False,
                       student_id=sess.student_id, message_ids=ids)
    db.session.commit()
    _publish("hand_cleared", {"student_id": sess.student_id, "session_id": sess.id, "by_admin_id": admin_id,
                              "message_ids": ids, "answered": False})
    return ids


# --- extra time --------------------------------------------------------------------------------

def grant_extra_time(session_id: int, admin_id: int, minutes: int) -> ExamSession:
    """Move the running session's deadline later by `minutes` and count them in extra_minutes, in one
    transaction with its audit row. exam_service enforces the deadline column, so the new one holds."""
    minutes = extra_minutes_field(minutes)
    now = utcnow()
    sess = _locked_live_session(session_id, now)
    sess.deadline = sess.deadline + timedelta(minutes=minutes)
    sess.extra_minutes = int(sess.extra_minutes or 0) + minutes
    audit_trail.record(admin_id, "live.extra_time", "exam_session", sess.id, commit=False, student_id=sess.student_id,
                       minutes=minutes, extra_minutes=sess.extra_minutes, deadline=iso(sess.deadline))
    db.session.commit()
    remaining = max(0.0, (sess.deadline - utcnow()).total_seconds())
    log.info("session %s: %s extra minute(s) by admin %s, deadline now %s", sess.id, minutes, admin_id, sess.deadline)
    _publish("extra_time_granted", {"student_id": sess.student_id, "session_id": sess.id, "minutes": minutes,
                                    "extra_minutes": sess.extra_minutes, "deadline": iso(sess.deadline),
                                    "remaining_s": round(remaining, 1), "by_admin_id": admin_id})
    return sess


# --- what an admin reads -----------------------------------------------------------------------

def conversation(session_id: int) -> list[dict]:
    """Every message of the session in time order, with who wrote it."""
    rows = db.session.scalars(select(SessionMessage).where(SessionMessage.session_id == session_id)
                              .order_by(SessionMessage.created_at, SessionMessage.id)).all()
    names = _names(m.author_id for m in rows)
    return [{"message_id": m.id, "sender": m.sender, "author_id": m.author_id, "author": names.get(m.author_id),
             "preset": m.preset, "body": m.body, "created_at": iso(m.created_at), "acknowledged_at": iso(m.acknowledged_at),
             "created": m.created_at, "acknowledged": m.acknowledged_at} for m in rows]


def extra_time_grants(session_id: int) -> list[dict]:
    """The extra time granted in this session, from the audit trail (who, how much, when, the new deadline)."""
    import json

    rows = db.session.scalars(select(AuditLog).where(AuditLog.action == "live.extra_time",
                                                     AuditLog.target_type == "exam_session",
                                                     AuditLog.target_id == session_id).order_by(AuditLog.id)).all()
    names = _names(r.actor_id for r in rows)
    out = []
    for r in rows:
        try:
            details = json.loads(r.details or "{}")
        except ValueError:
            details = {}
        out.append({"by": names.get(r.actor_id), "minutes": details.get("minutes"), "deadline": details.get("deadline"),
                    "at": r.created_at})
    return out
