"""Admin: CSV exports of results and violations (formula-safe cells).

The coded columns (type, severity, termination_reason) stay as stored: tools match on them. Readable
columns (proctor/wording.py's sentences) are appended at the end, so a reader of the file gets words and a
tool that reads columns by position still finds the old ones where they were."""
from __future__ import annotations

import json
from datetime import datetime, time, timedelta

from flask import Response, render_template, request, url_for
from sqlalchemy import select

from .. import wording
from ..extensions import db
from ..models import AuditLog, Exam, ExamSession, ResultStatus, ReviewStatus, User, Violation
from ..security import ADMIN, access
from . import bp
from .fields import csv_text, paginate, query_int
from .results import OUTCOMES, read_filters, results_query, stored_details, violation_counts

EXPORT_MAX_ROWS = 50_000


def _csv_response(text: str, filename: str) -> Response:
    response = Response(text, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _iso(value) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value else ""


@bp.route("/reports")
@access(ADMIN)
def reports():
    exams = db.session.execute(select(Exam.id, Exam.title).order_by(Exam.title)).all()
    return render_template("admin/reports.html", exams=exams, statuses=[s.value for s in ResultStatus], outcomes=OUTCOMES,
                           review_statuses=[s.value for s in ReviewStatus], f=read_filters())


@bp.route("/reports/results.csv")
@access(ADMIN)
def export_results():
    f = read_filters()
    rows = db.session.execute(results_query(f).limit(EXPORT_MAX_ROWS)).all()
    counts = violation_counts([r.ExamSession.id for r in rows])
    header = ["result_id", "session_id", "student_id", "student_name", "student_email", "exam_id", "exam_title",
              "started_at_utc", "ended_at_utc", "score", "total", "percentage", "grade", "status", "termination_reason",
              "outcome", "violations", "violations_pending", "violations_confirmed", "violations_dismissed", "how_it_ended"]
    out = []
    for r in rows:
        c = counts[r.ExamSession.id]
        out.append([r.ExamResult.id, r.ExamSession.id, r.User.id, r.User.name, r.User.email, r.Exam.id, r.Exam.title,
                    _iso(r.ExamSession.started_at), _iso(r.ExamSession.ended_at), r.ExamResult.score, r.ExamResult.total,
                    f"{r.ExamResult.percentage:.1f}", r.ExamResult.grade, r.ExamResult.status,
                    r.ExamSession.termination_reason or "", r.ExamResult.outcome or "", c["total"], c["PENDING"],
                    c["CONFIRMED"], c["DISMISSED"],
                    wording.termination_sentence(r.ExamSession.termination_reason, audience="admin")])
    return _csv_response(csv_text(header, out), "results.csv")


@bp.route("/reports/violations.csv")
@access(ADMIN)
def export_violations():
    f = read_filters()
    review = request.args.get("review", "").strip().upper()
    stmt = (select(Violation, User, Exam, ExamSession)
            .join(User, User.id == Violation.student_id)
            .join(ExamSession, ExamSession.id == Violation.session_id)
            .join(Exam, Exam.id == ExamSession.exam_id))
    if f.exam_id:
        stmt = stmt.where(ExamSession.exam_id == f.exam_id)
    if review in {s.value for s in ReviewStatus}:
        stmt = stmt.where(Violation.review_status == review)
    if f.date_from:
        stmt = stmt.where(Violation.timestamp >= datetime.combine(f.date_from, time.min))
    if f.date_to:
        stmt = stmt.where(Violation.timestamp < datetime.combine(f.date_to + timedelta(days=1), time.min))
    session_raw = request.args.get("session", "")
    if session_raw.isascii() and session_raw.isdigit() and len(session_raw) < 10:
        stmt = stmt.where(Violation.session_id == int(session_raw))
    rows = db.session.execute(stmt.order_by(Violation.timestamp, Violation.id).limit(EXPORT_MAX_ROWS)).all()
    header = ["violation_id", "session_id", "student_id", "student_name", "student_email", "exam_title", "timestamp_utc",
              "type", "severity", "details", "review_status", "review_note", "reviewed_at_utc", "snapshot_url", "clip_url",
              "time_from_start", "description", "severity_label"]
    out = []
    for r in rows:
        v = r.Violation
        out.append([v.id, v.session_id, r.User.id, r.User.name, r.User.email, r.Exam.title, _iso(v.timestamp),
                    v.type, v.severity, v.details, v.review_status, v.review_note or "", _iso(v.reviewed_at),
                    url_for("admin.evidence", violation_id=v.id, kind="snapshot", _external=True) if v.evidence_path else "",
                    url_for("admin.evidence", violation_id=v.id, kind="clip", _external=True) if v.clip_path else "",
                    # "12:34", not "+12:34": a cell starting with "+" would be defused with a quote (csv_cell)
                    wording.format_offset((v.timestamp - r.ExamSession.started_at).total_seconds()).lstrip("+"),
                    wording.admin_sentence(v.type, r.User.name, stored_details(v)),
                    wording.severity_label(v.severity)])
    return _csv_response(csv_text(header, out), "violations.csv")


@bp.route("/audit")
@access(ADMIN)
def audit_log():
    """Who did what to which record: the audit trail, newest first, filterable by action and target."""
    action = request.args.get("action", "").strip()[:64]
    target_type = request.args.get("target_type", "").strip()[:32]
    target_raw = request.args.get("target_id", "").strip()
    stmt = select(AuditLog, User.name, User.email).outerjoin(User, User.id == AuditLog.actor_id)
    if action:
        stmt = stmt.where(AuditLog.action.like(_like_prefix(action), escape="\\"))
    if target_type:
        stmt = stmt.where(AuditLog.target_type == target_type)
    if target_raw.isascii() and target_raw.isdigit() and len(target_raw) < 10:
        stmt = stmt.where(AuditLog.target_id == int(target_raw))
    page = paginate(stmt.order_by(AuditLog.created_at.desc(), AuditLog.id.desc()), query_int("page", 1), per_page=50,
                    scalars=False)
    actions = db.session.scalars(select(AuditLog.action).distinct().order_by(AuditLog.action)).all()
    details = {}
    for row in page.items:
        try:
            parsed = json.loads(row.AuditLog.details or "{}")
        except ValueError:
            parsed = {"unreadable": row.AuditLog.details[:200]}
        details[row.AuditLog.id] = parsed if isinstance(parsed, dict) else {"value": parsed}
    args = {k: v for k, v in (("action", action), ("target_type", target_type), ("target_id", target_raw)) if v}
    return render_template("admin/audit.html", page=page, actions=actions, details=details, args=args)


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
