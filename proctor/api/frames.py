"""What the exam page sends while the exam runs: camera frames and browser events.

/api/student-frame only validates, decodes and stores the latest frame (202); the live runtime's
workers analyse it later. /api/student-event passes a checked browser event to the rules.
"""
from __future__ import annotations

import logging
import re
from functools import partial

from flask import current_app, jsonify
from flask_login import current_user

from config_vision import BROWSER_EVENT_RULES

from .. import exam_service
from ..blocking import run_blocking
from ..images import camera_frame, data_url_bytes, image_dimensions
from ..jsonapi import ApiError, json_body, number_field
from ..limits import per_user_limit
from ..live import LiveError
from ..live_hooks import current_runtime
from ..models import ExamSession
from ..security import STUDENT, access
from . import bp

log = logging.getLogger(__name__)

LEVEL_MIN, LEVEL_MAX = -200.0, 1000.0  # voice level: dBFS (negative) or a 0..1 / 0..100 scale
DURATION_MAX_MS = 24 * 3600 * 1000
CLIENT_TS_MAX_MS = 2 ** 53  # a JavaScript Date.now() fits well below this
EVENT_MAX_BYTES = 16 * 1024
REASON_WORD_MAX = 64  # a camera label ("OBS Virtual Camera (0000:0001)") fits
_REASON_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:()+-]")
# The exam page's id for one event (crypto.randomUUID): its outbox may send it again; the runtime takes it once.
_CLIENT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def live_call(method, *args):
    """Run a runtime action; its LiveError becomes the HTTP error it names."""
    try:
        return method(*args)
    except LiveError as exc:
        raise ApiError(str(exc), exc.status) from None


def current_session(student_id: int | None = None) -> ExamSession:
    """The logged-in student's exam session in progress; 409 when there is none or its time is over.

    exam_service.active_session submits a session whose deadline has passed, so a late frame both
    gets its 409 and closes the exam at the server's deadline.
    """
    exam_session = exam_service.active_session(current_user.id if student_id is None else student_id)
    if exam_session is None:
        raise ApiError("no exam in progress for this account (not started, finished or out of time)", 409)
    return exam_session


def checked_frame(config, raw: bytes, student_id: int):
    """The camera frame to store (JPEG bytes, or pixels when it had to be decoded); ApiError when refused."""
    try:
        # A JPEG that fits the frame size goes on as bytes (the workers decode it; camera_frame only
        # proves it is a picture); a PNG or a larger picture is decoded and scaled here. Either is CPU:
        # off the event loop, so that a student posting large frames does not slow everybody's requests
        # (a frame over PROCTOR_FRAME_MAX_SIDE_PX is refused from its header, before decoding).
        check = partial(camera_frame, min_side=int(config["PROCTOR_FRAME_MIN_SIDE_PX"]),
                        max_side=int(config["PROCTOR_FRAME_MAX_SIDE_PX"]),
                        max_w=int(config["PROCTOR_FRAME_MAX_WIDTH_PX"]), max_h=int(config["PROCTOR_FRAME_MAX_HEIGHT_PX"]))
        return run_blocking(check, raw, timeout_s=float(config["PROCTOR_FRAME_DECODE_TIMEOUT_S"]))
    except ApiError as exc:
        log.info("frame refused for student %s: %s", student_id, exc.message)
        raise
    except TimeoutError:
        log.warning("frame from student %s took too long to decode", student_id)
        raise ApiError("the frame took too long to decode", 503) from None


def client_ts(value) -> float:
    if value is None:
        raise ApiError("'ts' (the client's time in ms) is required")
    return number_field(value, "ts", 0, CLIENT_TS_MAX_MS)


def receipt_body(receipt, frame) -> dict:
    _, width, height = image_dimensions(frame) if isinstance(frame, bytes) else (None, frame.shape[1], frame.shape[0])
    return {"seq": receipt.seq, "replaced_older": bool(receipt.replaced_older), "width": int(width), "height": int(height)}


@bp.route("/student-frame", methods=["POST"])
@access(STUDENT)
@per_user_limit("PROCTOR_FRAME_RATE_LIMIT")
def student_frame():
    """One camera frame as a JSON data URL (the pages without a socket; frame_socket.py takes the rest)."""
    config = current_app.config
    body = json_body(int(config["PROCTOR_FRAME_MAX_BYTES"]))
    exam_session = current_session()
    ts = client_ts(body.get("ts"))
    frame = checked_frame(config, data_url_bytes(body.get("image"), bare_base64=True), current_user.id)
    receipt = current_runtime().submit_frame(current_user.id, exam_session.id, frame, ts)
    return jsonify(receipt_body(receipt, frame)), 202


def event_details(kind: str, body: dict) -> dict:
    """Only known fields, checked: nothing else the client says is passed on."""
    details: dict = {}
    raw = body.get("details")
    if raw is not None and not isinstance(raw, dict):
        raise ApiError("'details' must be an object")
    raw = dict(raw or {})
    for key in ("level", "duration_ms"):  # accepted at the top level too
        if key in body and key not in raw:
            raw[key] = body[key]
    if kind == "VOICE_DETECTED":
        if raw.get("level") is None:
            raise ApiError("VOICE_DETECTED needs a numeric 'level'")
        details["level"] = number_field(raw["level"], "level", LEVEL_MIN, LEVEL_MAX)
    if raw.get("duration_ms") is not None:
        details["duration_ms"] = number_field(raw["duration_ms"], "duration_ms", 0, DURATION_MAX_MS)
    if kind == "CAMERA_OFF" and raw.get("reason") is not None:
        # The page's own word for why the camera stopped ("denied", "ended"...): kept short and plain.
        reason = _plain_word(raw["reason"], "reason")
        if reason:
            details["camera_reason"] = reason
    for key, kinds in _WORD_DETAILS.items():
        if kind in kinds and raw.get(key) is not None:
            word = _plain_word(raw[key], key)
            if word:
                details[_STORED_AS.get((kind, key), key)] = word
    if kind == "MULTIPLE_DISPLAYS" and raw.get("screens") is not None:
        details["screens"] = int(number_field(raw["screens"], "screens", 1, SCREENS_MAX))
    return details


# Short plain words some events carry (the page's own; stored and shown as text, never trusted as more):
# why a share or camera stopped, the camera device's label, the shortcut pressed, what the clipboard
# event touched.
_WORD_DETAILS = {
    "reason": ("SCREEN_SHARE_STOPPED", "MULTIPLE_DISPLAYS"),
    "device": ("CAMERA_CHANGED",),
    "previous_device": ("CAMERA_CHANGED",),
    "key": ("PRINT_SCREEN", "DEVTOOLS"),
    "target": ("COPY", "CUT", "PASTE", "RIGHT_CLICK"),
}
SCREENS_MAX = 16
# The page's "reason" is stored under its own name, as CAMERA_OFF's camera_reason: a stored violation's
# "reason" is the warning system's (runtime._store_violation), which the page's word would overwrite, and
# wording.py hides "reason" from reviewers as internal.
_STORED_AS = {("SCREEN_SHARE_STOPPED", "reason"): "share_reason", ("MULTIPLE_DISPLAYS", "reason"): "displays_reason"}


def _plain_word(value, name: str) -> str:
    if not isinstance(value, str):
        raise ApiError(f"'{name}' must be a string")
    return _REASON_UNSAFE.sub("", value)[:REASON_WORD_MAX].strip()


@bp.route("/student-event", methods=["POST"])
@access(STUDENT)
@per_user_limit("PROCTOR_EVENT_RATE_LIMIT")
def student_event():
    body = json_body(EVENT_MAX_BYTES)
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in BROWSER_EVENT_RULES:
        raise ApiError(f"'type' must be one of {', '.join(BROWSER_EVENT_RULES)}")
    details = event_details(kind, body)
    client_id = body.get("client_id")
    if client_id is not None and not (isinstance(client_id, str) and _CLIENT_ID.fullmatch(client_id.lower())):
        raise ApiError("'client_id' must be a UUID string")
    client_id = client_id.lower() if client_id else None
    exam_session = current_session()
    warnings = live_call(current_runtime().browser_event, current_user.id, exam_session.id, kind, details, client_id)
    return jsonify(accepted=True, type=kind, warnings=list(warnings or []), duplicate=warnings is None)
