"""Health, the caller's own account, and the live pipeline's diagnostics (admins)."""
from flask import current_app, jsonify
from flask_login import current_user
from sqlalchemy import text

from ..extensions import db
from ..live.mjpeg import stream_counter
from ..live_hooks import current_runtime
from ..security import ADMIN, LOGIN, PUBLIC, access
from . import bp


@bp.route("/health")
@access(PUBLIC)
def health():
    """The database and the live loop. 503 when either is down: a live loop with no pass for
    PROCTOR_LIVE_STALL_S analyses nobody's frames. Takes none of the runtime's locks."""
    try:
        db.session.execute(text("SELECT 1"))
        database = "ok"
    except Exception:  # noqa: BLE001 - reported, not raised: this is the health probe
        database = "unavailable"
    live = current_runtime().loop_health()
    status = 200 if database == "ok" and not live["stalled"] else 503
    return jsonify(status="ok" if status == 200 else "degraded", database=database, live=live), status


@bp.route("/me")
@access(LOGIN)
def me():
    return jsonify(id=current_user.id, name=current_user.name, email=current_user.email, role=current_user.role)


@bp.route("/object-detection-status")
@access(ADMIN)
def object_detection_status():
    return jsonify(current_runtime().detector_status())


@bp.route("/detection-pipeline-status")
@access(ADMIN)
def detection_pipeline_status():
    return jsonify({**current_runtime().pipeline_status(), "mjpeg_streams": stream_counter(current_app).as_dict()})


@bp.route("/admin-active-students")
@access(ADMIN)
def admin_active_students():
    students = current_runtime().active_students()
    return jsonify(students=list(students), count=len(students))
