"""Admin: the live dashboard (grid of active students) and the per-student live feed page.

The data and actions come from D2's endpoints: GET /api/admin-active-students (polling fallback),
Socket.IO namespace /admin (push), MJPEG /admin/live/<student_id>, and the JSON actions under
/api/admin/... (clear warnings, terminate, auto-terminate, rules). These pages only render the shell.
"""
from __future__ import annotations

from flask import Response, abort, current_app, render_template
from sqlalchemy import select

import config_vision

from .admin import bp
from .admin_common import get_or_404
from .extensions import db
from .models import ExamSession, Student, Violation
from .security import ADMIN, access

POLL_INTERVAL_S = 4
RECENT_VIOLATIONS = 20


@bp.route("/monitor")
@access(ADMIN)
def monitor():
    return render_template("admin/monitor.html", poll_interval_s=POLL_INTERVAL_S)


@bp.route("/monitor/<int:student_id>")
@access(ADMIN)
def monitor_student(student_id: int):
    student = get_or_404(Student, student_id)
    session = db.session.scalar(select(ExamSession).where(ExamSession.student_id == student.id,
                                                          ExamSession.status == "IN_PROGRESS")
                                .order_by(ExamSession.started_at.desc()))
    disabled = {r for r in (session.disabled_rules or "").split(",") if r} if session else set()
    if session is not None:
        disabled |= {r for r in (session.exam.disabled_rules or "").split(",") if r}
    auto_terminate = None
    violations = []
    if session is not None:
        auto_terminate = session.auto_terminate if session.auto_terminate is not None else session.exam.auto_terminate
        violations = db.session.scalars(select(Violation).where(Violation.session_id == session.id)
                                        .order_by(Violation.timestamp.desc(), Violation.id.desc()).limit(RECENT_VIOLATIONS)).all()
    return render_template("admin/monitor_student.html", student=student, session=session, rules=config_vision.RULES,
                           disabled=disabled, auto_terminate=auto_terminate, poll_interval_s=POLL_INTERVAL_S,
                           violations=violations, recent_max=RECENT_VIOLATIONS)


@bp.route("/monitor/<int:student_id>/snapshot.jpg")
@access(ADMIN)
def monitor_snapshot(student_id: int):
    """The latest processed (or raw) frame as one JPEG, for the dashboard's thumbnails.

    A grid of MJPEG streams would hold one connection per student (browsers allow ~6 per host),
    so the grid refreshes single frames instead; the per-student page uses D2's MJPEG stream.
    """
    from .live import get_runtime
    from .live_routes import LiveViewSource, setting

    # The same picture the MJPEG stream would send next: the processed frame while fresh, else the
    # newest raw frame marked RAW; "waiting" means no frame has arrived for this student.
    source = LiveViewSource(get_runtime(current_app._get_current_object()), student_id,
                            fresh_s=float(setting("PROCTOR_MJPEG_FRESH_S")))
    key, jpeg = source.next()
    if key[0] == "waiting":
        abort(404)
    response = Response(jpeg, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Kind"] = "processed" if key[0] == "processed" else "raw"
    return response
