"""Admin: a session's room scan, the clip the student recorded of the desk and room before the exam
(proctor/room_scans.py). The session page shows it first; this streams it with Range support so the
<video> element can seek. Like the other evidence files, reading it is not audited; the decisions are."""
from __future__ import annotations

from flask import abort, send_file

from .. import room_scans
from ..datafiles import stored_file
from ..models import ExamSession
from ..security import ADMIN, access
from . import bp
from .fields import get_or_404


def review_block(session: ExamSession) -> dict:
    """What the session page shows about the scan: present, missing though required, or not required."""
    return room_scans.describe(room_scans.scan_of_session(session.id), bool(session.exam.require_room_scan))


@bp.route("/sessions/<int:session_id>/room-scan")
@access(ADMIN)
def session_room_scan(session_id: int):
    get_or_404(ExamSession, session_id)
    scan = room_scans.scan_of_session(session_id)
    path = stored_file(scan.path, f"room scan {scan.id}") if scan is not None else None
    if path is None:
        abort(404)
    # conditional=True answers Range requests (206) so the <video> element can seek.
    response = send_file(path, mimetype=room_scans.MIME, conditional=True, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response
