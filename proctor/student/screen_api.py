"""Screenshots of the student's shared screen (issue 16), under /api/exam/ (errors are {"error", "code"}).

An exam whose screen_share is "required" covers its questions until the student shares the entire
screen (static/js/student/screen.js); the page then sends a JPEG of it every screenshot_interval_s
seconds. Each one is checked (own session, in progress, the exam asks for it, size, a real JPEG,
its pixel size, the session's quota) and stored whole as a Recording of kind "screen", stamped with
the server's time of arrival: the page's clock is not evidence.
"""
from __future__ import annotations

import logging
import uuid
from pathlib import Path

import cv2
import numpy as np
from flask import jsonify, request
from flask_login import current_user
from sqlalchemy import func, select

from .. import exam_service as svc
from ..extensions import db
from ..images import ImageError, image_dimensions, image_format
from ..jsonapi import ApiError
from ..limits import per_user_limit
from ..models import Recording, SessionStatus, utcnow
from ..security import STUDENT, access
from ..uploads import check_session_quota, store_file
from . import api_bp as bp
from .steps import setting

log = logging.getLogger(__name__)

SCREEN_KIND = "screen"
SCREENSHOT_MIN_SIDE_PX = 16


def check_screenshot(raw: bytes, max_side: int) -> tuple[int, int]:
    """(width, height) of a real JPEG no larger than max_side; ApiError (415/400) otherwise.

    The header's size is read before any pixel is decoded; then a 1/8-scale greyscale decode of the
    whole stream proves it is a picture (a JPEG header on garbage is refused) at a fraction of a
    full decode's cost."""
    if not raw:
        raise ApiError("the screenshot is empty")
    kind = image_format(raw)
    if kind != "jpeg":
        named = {"png": "a PNG", "webp": "a WebP"}.get(kind, "not an image")
        raise ApiError(f"a screenshot must be a JPEG image; this is {named}", 415)
    try:
        _, width, height = image_dimensions(raw)
    except ImageError as exc:
        raise ApiError(exc.message) from None
    if min(width, height) < SCREENSHOT_MIN_SIDE_PX:
        raise ApiError(f"screenshot too small: {width}x{height} (each side must be at least {SCREENSHOT_MIN_SIDE_PX} px)")
    if max(width, height) > max_side:
        raise ApiError(f"screenshot too large: {width}x{height} px (scale it to at most {max_side} px on the long side)")
    small = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if small is None or small.ndim != 2 or sorted(small.shape) != sorted(((height + 7) // 8, (width + 7) // 8)):
        raise ApiError("the screenshot could not be decoded")
    return width, height


def _read_body(most: int) -> bytes:
    """At most `most` bytes of the body (a read may return less than asked; a chunked body has no length)."""
    buf = bytearray()
    while len(buf) < most:
        part = request.stream.read(most - len(buf))
        if not part:
            break
        buf += part
    return bytes(buf)


@bp.route("/sessions/<int:session_id>/screenshot", methods=["POST"])
@access(STUDENT)
@per_user_limit("PROCTOR_SCREENSHOT_LIMIT")
def screenshot(session_id: int):
    """The body is the JPEG itself (Content-Type: image/jpeg). 201 {ok, id, bytes}."""
    limit = int(setting("PROCTOR_SCREENSHOT_MAX_BYTES"))
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(f"a screenshot is limited to {limit} bytes", 413)
    sess = svc.session_for_student(session_id, current_user.id)  # 404 / 403: never another student's
    if sess.status != SessionStatus.IN_PROGRESS.value:
        raise ApiError("this exam is over: no more screenshots", 409)
    if sess.exam.screen_share != "required":
        raise ApiError("this exam does not record the screen", 409)
    if request.mimetype != "image/jpeg":
        raise ApiError(f"send the screenshot as image/jpeg, not {request.mimetype or 'an unnamed type'}", 415)
    raw = _read_body(limit + 1)
    if len(raw) > limit:
        raise ApiError(f"a screenshot is limited to {limit} bytes", 413)
    width, height = check_screenshot(raw, int(setting("PROCTOR_SCREENSHOT_MAX_SIDE_PX")))
    check_session_quota(sess.id, SCREEN_KIND, len(raw), int(setting("PROCTOR_SCREENSHOT_MAX_BYTES_PER_SESSION")),
                        "screenshot")
    captured = utcnow()
    sequence = db.session.scalar(select(func.count(Recording.id))
                                 .where(Recording.session_id == sess.id, Recording.kind == SCREEN_KIND))
    rel = Path("recordings") / str(sess.id) / f"screen-{captured:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}.jpg"
    store_file(rel, raw, "screenshot", f"session {sess.id}")
    rec = Recording(session_id=sess.id, student_id=current_user.id, kind=SCREEN_KIND, path=str(rel), mime="image/jpeg",
                    bytes=len(raw), sequence=sequence, started_at=captured)
    db.session.add(rec)
    db.session.commit()
    log.debug("screenshot %s of session %s: %sx%s, %s bytes", rec.id, sess.id, width, height, len(raw))
    return jsonify(ok=True, id=rec.id, bytes=len(raw)), 201
