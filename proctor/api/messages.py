"""Talking to the student during the exam (issue 16): the JSON routes around proctor/messages.py.

Admins (audited there, once each): POST /api/admin/sessions/<id>/messages {"preset"} or {"text"},
POST /api/admin/sessions/<id>/extra-time {"minutes"}, POST /api/admin/sessions/<id>/hand/dismiss,
GET /api/admin/sessions/<id>/messages (the card's state after a reload).
The student, for their own session only (any other is 404): GET /api/exam/sessions/<id>/messages (the
proctor's unread messages), POST .../messages/<message_id>/ack, POST .../hand {"reason", "text"}
(PROCTOR_HAND_RAISE_LIMIT per account).
"""
from __future__ import annotations

from flask import jsonify
from flask_login import current_user

from .. import exam_service
from .. import messages as talk
from ..extensions import db
from ..jsonapi import ApiError, json_body
from ..limits import per_user_limit
from ..models import ExamSession, SessionStatus
from ..security import ADMIN, STUDENT, access
from . import bp

BODY_MAX_BYTES = 8 * 1024


def _own_session(session_id: int) -> ExamSession:
    """The logged-in student's session (an overdue one is submitted first); 404 for any other."""
    try:
        return exam_service.session_for_student(session_id, current_user.id)
    except exam_service.ExamError as exc:
        raise ApiError(f"no exam session {session_id} for you", 404 if exc.status in (403, 404) else exc.status) from None


# --- admins --------------------------------------------------------------------------------------

@bp.route("/admin/sessions/<int:session_id>/messages", methods=["POST"])
@access(ADMIN)
def send_message(session_id: int):
    body = json_body(BODY_MAX_BYTES)
    unknown = set(body) - {"preset", "text"}
    if unknown:
        raise ApiError(f"unknown field(s): {', '.join(sorted(unknown))}")
    msg = talk.send_message(session_id, current_user.id, preset=body.get("preset"), text=body.get("text"))
    return jsonify(ok=True, message_id=msg.id, session_id=session_id, body=msg.body, preset=msg.preset,
                   created_at=talk.iso(msg.created_at)), 201


@bp.route("/admin/sessions/<int:session_id>/messages")
@access(ADMIN)
def session_messages(session_id: int):
    sess = db.session.get(ExamSession, session_id)
    if sess is None:
        raise ApiError(f"no exam session {session_id}", 404)
    rows = [{k: v for k, v in m.items() if k not in ("created", "acknowledged")} for m in talk.conversation(sess.id)]
    return jsonify(session_id=sess.id, student_id=sess.student_id, status=sess.status, messages=rows,
                   extra_minutes=int(sess.extra_minutes or 0), deadline=talk.iso(sess.deadline),
                   open_hands=[m for m in rows if m["sender"] == "student" and m["acknowledged_at"] is None])


@bp.route("/admin/sessions/<int:session_id>/hand/dismiss", methods=["POST"])
@access(ADMIN)
def dismiss_hand(session_id: int):
    return jsonify(ok=True, session_id=session_id, dismissed=talk.dismiss_hands(session_id, current_user.id))


@bp.route("/admin/sessions/<int:session_id>/extra-time", methods=["POST"])
@access(ADMIN)
def extra_time(session_id: int):
    body = json_body(BODY_MAX_BYTES)
    if "minutes" not in body:
        raise ApiError("'minutes' is required")
    sess = talk.grant_extra_time(session_id, current_user.id, body["minutes"])
    return jsonify(ok=True, session_id=sess.id, minutes=body["minutes"], extra_minutes=sess.extra_minutes,
                   deadline=talk.iso(sess.deadline), remaining_s=round(exam_service.remaining_seconds(sess), 1))


# --- the student ---------------------------------------------------------------------------------

@bp.route("/exam/sessions/<int:session_id>/messages")
@access(STUDENT)
def my_messages(session_id: int):
    sess = _own_session(session_id)
    return jsonify(session_id=sess.id, messages=talk.unread_messages(sess))


@bp.route("/exam/sessions/<int:session_id>/messages/<int:message_id>/ack", methods=["POST"])
@access(STUDENT)
def acknowledge(session_id: int, message_id: int):
    sess = _own_session(session_id)
    msg = talk.acknowledge(sess.id, message_id, current_user.id)
    return jsonify(ok=True, message_id=msg.id, acknowledged_at=talk.iso(msg.acknowledged_at))


@bp.route("/exam/sessions/<int:session_id>/hand", methods=["POST"])
@access(STUDENT)
@per_user_limit("PROCTOR_HAND_RAISE_LIMIT")
def raise_hand(session_id: int):
    body = json_body(BODY_MAX_BYTES)
    unknown = set(body) - {"reason", "text"}
    if unknown:
        raise ApiError(f"unknown field(s): {', '.join(sorted(unknown))}")
    sess = _own_session(session_id)
    if sess.status != SessionStatus.IN_PROGRESS.value:
        raise ApiError("this exam is over: the proctor is no longer watching it", 409)
    msg = talk.raise_hand(sess, reason=body.get("reason"), text=body.get("text"))
    return jsonify(ok=True, message_id=msg.id, body=msg.body, created_at=talk.iso(msg.created_at)), 201


@bp.app_template_global("session_conversation")
def session_conversation(session: ExamSession) -> dict:
    """For the session review page (templates/admin/_session_messages.html): messages and extra time, each
    time as a wording.Moment (from the exam's start, and the instant the page shows in local time)."""
    from ..wording import moment

    rows = talk.conversation(session.id)
    for m in rows:
        m["sent"] = moment(m["created"], session.started_at)
        m["read"] = moment(m["acknowledged"], session.started_at) if m["acknowledged"] else None
    grants = talk.extra_time_grants(session.id)
    for g in grants:
        g["when"] = moment(g["at"], session.started_at)
    return {"messages": rows, "grants": grants, "extra_minutes": int(session.extra_minutes or 0)}


@bp.app_template_global("message_presets")
def message_presets() -> dict:
    return {"presets": talk.PRESETS, "hand_reasons": talk.HAND_REASONS, "message_max": talk.MESSAGE_MAX_CHARS,
            "hand_max": talk.HAND_MAX_CHARS, "minutes_min": talk.EXTRA_MINUTES_MIN,
            "minutes_max": talk.EXTRA_MINUTES_MAX}
