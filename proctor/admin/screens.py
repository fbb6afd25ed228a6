"""Admin: screenshots of a student's shared screen (issue 16).

The live grid polls the latest one of each session (GET /admin/sessions/<id>/screenshots/latest,
with ?after=<id> so that an unchanged screenshot costs a 204 and no bytes); the session review draws
them on its timeline and as a strip of thumbnails. Each screenshot itself is a Recording of kind
"screen", served like every recording by /admin/recordings/<id> (results.recording_file).

Polling rather than a socket push: the grid already refreshes its camera thumbnails by polling, a
poll needs no new admin event, and a proctor who connects late gets the latest screenshot at once.
"""
from __future__ import annotations

from flask import Response, abort, request, send_file
from sqlalchemy import select

from ..datafiles import stored_file
from ..extensions import db
from ..models import ExamSession, Recording
from ..security import ADMIN, access
from . import bp
from .fields import get_or_404

SCREEN_KIND = "screen"  # the Recording kind the student's screen_api stores


def screenshots_for(session_id: int) -> list[Recording]:
    """The session's screenshots in the order they were taken."""
    return db.session.scalars(select(Recording).where(Recording.session_id == session_id, Recording.kind == SCREEN_KIND)
                              .order_by(Recording.started_at, Recording.id)).all()


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/sessions/<int:session_id>/screenshots/latest")
@access(ADMIN)
def latest_screenshot(session_id: int):
    """The newest screenshot of the session as image/jpeg (X-Screenshot-Id names it); 404 when it has none;
    204 when ?after=<id> already is the newest."""
    get_or_404(ExamSession, session_id)
    raw_after = request.args.get("after", "")
    after = None
    if raw_after:
        if not (raw_after.isascii() and raw_after.isdigit() and len(raw_after) <= 12):
            abort(400, description="'after' must be a screenshot id")
        after = int(raw_after)
    rec = db.session.scalar(select(Recording).where(Recording.session_id == session_id, Recording.kind == SCREEN_KIND)
                            .order_by(Recording.id.desc()).limit(1))
    if rec is None:
        abort(404)
    if after is not None and rec.id <= after:
        response = _no_store(Response(status=204))
        response.headers["X-Screenshot-Id"] = str(rec.id)
        return response
    path = stored_file(rec.path, f"screenshot {rec.id}")
    if path is None:
        abort(404)
    response = _no_store(send_file(path, mimetype="image/jpeg", max_age=0, conditional=False, etag=False))
    response.headers["X-Screenshot-Id"] = str(rec.id)
    if rec.started_at is not None:
        response.headers["X-Captured-At"] = rec.started_at.isoformat() + "Z"
    return response
