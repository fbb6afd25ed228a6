"""Admin: the live dashboard (grid of active students), the per-student page, its MJPEG feed,
thumbnails and violation evidence.

The pages get their data from GET /api/admin-active-students (polling fallback), the Socket.IO
namespace /admin (push), and act through the JSON actions under /api/admin/... (proctor.api).
"""
from __future__ import annotations

import mimetypes

from flask import Response, abort, current_app, render_template, send_file
from sqlalchemy import select

import config_vision

from ..datafiles import stored_file, stored_path
from ..evidence_files import RETRY_AFTER_S, ClipUnavailable, clip_not_ready, playable_clip
from ..extensions import db, socketio
from ..live.mjpeg import BOUNDARY, LiveViewSource, mjpeg_parts, stream_counter
from ..live_hooks import current_runtime
from ..models import ExamSession, Role, User, Violation
from ..security import ADMIN, access
from . import bp
from .fields import get_or_404

POLL_INTERVAL_S = 4
RECENT_VIOLATIONS = 20


@bp.route("/monitor")
@access(ADMIN)
def monitor():
    return render_template("admin/monitor.html", poll_interval_s=POLL_INTERVAL_S)


@bp.route("/monitor/<int:student_id>")
@access(ADMIN)
def monitor_student(student_id: int):
    student = get_or_404(User, student_id)
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
    so the grid refreshes single frames instead; the per-student page uses the MJPEG stream.
    """
    # The same picture the MJPEG stream would send next: the processed frame while fresh, else the
    # newest raw frame marked RAW; "waiting" means no frame has arrived for this student.
    source = LiveViewSource(current_runtime(), student_id, fresh_s=float(current_app.config["PROCTOR_MJPEG_FRESH_S"]))
    key, jpeg = source.next()
    if key[0] == "waiting":
        abort(404)
    response = Response(jpeg, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Kind"] = "processed" if key[0] == "processed" else "raw"
    return response


@bp.route("/live/<int:student_id>")
@access(ADMIN)
def live_stream(student_id: int):
    student = db.session.get(User, student_id)
    if student is None or student.role != Role.STUDENT.value:
        abort(404)
    config = current_app.config
    counter = stream_counter(current_app)
    if counter.as_dict()["open"] >= int(config["PROCTOR_MJPEG_MAX_STREAMS"]):
        abort(429, description="too many live views are open; close one and try again")
    source = LiveViewSource(current_runtime(), student_id, fresh_s=float(config["PROCTOR_MJPEG_FRESH_S"]))
    parts = mjpeg_parts(
        source,
        fps=float(config["PROCTOR_MJPEG_FPS"]),
        max_s=float(config["PROCTOR_MJPEG_MAX_S"]),
        keepalive_s=float(config["PROCTOR_MJPEG_KEEPALIVE_S"]),
        sleep=socketio.sleep,
        counter=counter,
    )
    resp = Response(parts, mimetype=f"multipart/x-mixed-replace; boundary={BOUNDARY}", direct_passthrough=True)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"  # a reverse proxy must not buffer the stream
    return resp


EVIDENCE_KINDS = {"snapshot": "evidence_path", "clip": "clip_path"}


def _clip_unavailable(exc: ClipUnavailable, retry_after_s: int = RETRY_AFTER_S) -> Response:
    resp = Response(exc.message + "\n", status=exc.status, mimetype="text/plain")
    resp.headers["Cache-Control"] = "no-store"
    if exc.status == 503:
        resp.headers["Retry-After"] = str(retry_after_s)
    return resp


@bp.route("/evidence/<int:violation_id>/<kind>")
@access(ADMIN)
def evidence(violation_id: int, kind: str):
    """A violation's snapshot, or its clip as WebM: a clip stored as frames is encoded on its first
    open (off the event loop) and cached; Range requests are answered (send_file, conditional)."""
    column = EVIDENCE_KINDS.get(kind)
    if column is None:
        abort(404)
    violation = db.session.get(Violation, violation_id)
    stored = getattr(violation, column, None) if violation is not None else None
    if not stored:
        abort(404)
    what = f"evidence {violation_id}/{kind}"
    path = stored_file(stored, what)
    if path is None and kind == "clip":  # still recording its post-roll, or never finished?
        pending = clip_not_ready(stored_path(stored, what), what)
        if pending is not None:
            return _clip_unavailable(pending, retry_after_s=5)
    if path is None:
        abort(404)
    if kind == "clip":
        try:
            path = playable_clip(path, what)
        except ClipUnavailable as exc:
            return _clip_unavailable(exc)
    mimetype = "video/webm" if path.suffix == ".webm" else mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    resp = send_file(path, mimetype=mimetype, conditional=True, max_age=0)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp
