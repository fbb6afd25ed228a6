"""The proctor's actions on a live exam (admins): clear warnings, terminate, auto-terminate, rules.

Each action is audited exactly once, by the runtime method itself through its store (inside this
request, so the row carries this admin and the client address): live.clear_warnings, live.terminate,
live.set_auto_terminate, live.set_rule.
"""
from __future__ import annotations

from flask import jsonify
from flask_login import current_user

from config_vision import RULES

from ..extensions import db
from ..jsonapi import ApiError, bool_field, json_body
from ..live_hooks import current_runtime
from ..models import ExamSession, Role, SessionStatus, User
from ..security import ADMIN, access
from . import bp
from .frames import live_call

REASON_MAX = 255
BODY_MAX_BYTES = 16 * 1024


def _session_in_progress(session_id: int) -> ExamSession:
    exam_session = db.session.get(ExamSession, session_id)
    if exam_session is None:
        raise ApiError(f"no exam session {session_id}", 404)
    if exam_session.status != SessionStatus.IN_PROGRESS.value:
        raise ApiError(f"session {session_id} is already {exam_session.status.lower()}", 409)
    return exam_session


@bp.route("/admin/students/<int:student_id>/clear-warnings", methods=["POST"])
@access(ADMIN)
def clear_warnings(student_id: int):
    student = db.session.get(User, student_id)
    if student is None or student.role != Role.STUDENT.value:
        raise ApiError(f"no student {student_id}", 404)
    live_call(current_runtime().clear_warnings, student_id, current_user.id)
    return jsonify(ok=True, student_id=student_id)


@bp.route("/admin/sessions/<int:session_id>/terminate", methods=["POST"])
@access(ADMIN)
def terminate_session(session_id: int):
    body = json_body(BODY_MAX_BYTES)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ApiError("'reason' is required")
    reason = reason.strip()
    if len(reason) > REASON_MAX:
        raise ApiError(f"'reason' must be at most {REASON_MAX} characters")
    _session_in_progress(session_id)
    live_call(current_runtime().terminate, session_id, reason, current_user.id)
    db.session.expire_all()
    refreshed = db.session.get(ExamSession, session_id)
    return jsonify(ok=True, session_id=session_id, status=refreshed.status if refreshed else None)


@bp.route("/admin/sessions/<int:session_id>/auto-terminate", methods=["POST"])
@access(ADMIN)
def set_auto_terminate(session_id: int):
    body = json_body(BODY_MAX_BYTES)
    enabled = bool_field(body, "enabled")
    _session_in_progress(session_id)
    effective = live_call(current_runtime().set_auto_terminate, session_id, enabled, current_user.id)
    return jsonify(ok=True, session_id=session_id, auto_terminate=bool(effective))


@bp.route("/admin/sessions/<int:session_id>/rules", methods=["POST"])
@access(ADMIN)
def set_rule(session_id: int):
    body = json_body(BODY_MAX_BYTES)
    rule = body.get("rule")
    if not isinstance(rule, str) or rule not in RULES:
        raise ApiError(f"'rule' must be one of {', '.join(RULES)}")
    enabled = bool_field(body, "enabled")
    _session_in_progress(session_id)
    disabled = live_call(current_runtime().set_rule, session_id, rule, enabled, current_user.id)
    return jsonify(ok=True, session_id=session_id, rule=rule, enabled=enabled, disabled_rules=list(disabled or []))
