"""Live proctoring over HTTP: frame and browser-event uploads, the MJPEG view, diagnostics, admin actions.

Two blueprints: `api_bp` under /api (JSON; errors are {"error", "code"}) and `admin_bp` under /admin
(the MJPEG stream and violation evidence). Every view declares its access level; the student and
the exam session always come from the login session and the database, never from the request body.
The routes only hand work to the live runtime (proctor.live): none of them runs inference.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import mimetypes
import re
import struct
import threading
import time

import cv2
import numpy as np
from flask import Blueprint, Response, abort, current_app, jsonify, request, send_file
from flask_login import current_user

from config_vision import BROWSER_EVENT_RULES, RULES

from .extensions import db, limiter, socketio
from .models import ExamSession, Role, SessionStatus, Student, Violation
from .security import ADMIN, STUDENT, access
from .datafiles import stored_file
from .settings import LIVE_ROUTE_SETTINGS, RATE_SETTINGS

log = logging.getLogger(__name__)

api_bp = Blueprint("live_api", __name__, url_prefix="/api")
admin_bp = Blueprint("live_admin", __name__, url_prefix="/admin")

# Defaults for app settings this module reads (settings.py reads them from the environment).
DEFAULTS = {name: spec[1] for name, spec in LIVE_ROUTE_SETTINGS.items()} | {
    name: RATE_SETTINGS[name] for name in ("PROCTOR_FRAME_RATE_LIMIT", "PROCTOR_EVENT_RATE_LIMIT")
}
REASON_MAX = 255
LEVEL_MIN, LEVEL_MAX = -200.0, 1000.0  # voice level: dBFS (negative) or a 0..1 / 0..100 scale
DURATION_MAX_MS = 24 * 3600 * 1000
CLIENT_TS_MAX_MS = 2 ** 53  # a JavaScript Date.now() fits well below this
EVIDENCE_KINDS = {"snapshot": "evidence_path", "clip": "clip_path"}

REASON_WORD_MAX = 40
_REASON_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:-]")
_DATA_URL = re.compile(r"^data:image/(jpeg|jpg|png);base64,", re.IGNORECASE)


def setting(name: str):
    return current_app.config.get(name, DEFAULTS[name])


@api_bp.record_once
def _check_settings(state) -> None:
    """A bad value in app.config for these settings stops the app at start with a clear message."""
    from limits import parse_many

    from .settings import ConfigError

    config = state.app.config
    for name in ("PROCTOR_FRAME_RATE_LIMIT", "PROCTOR_EVENT_RATE_LIMIT"):
        value = config.get(name, DEFAULTS[name])
        try:
            parse_many(value)
        except (ValueError, TypeError):
            raise ConfigError(f"{name}={value!r}: not a rate limit such as '10 per second'") from None
    for name, default in DEFAULTS.items():
        if name.endswith("_LIMIT"):
            continue
        value = config.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"{name}={value!r}: must be a positive number")


def _user_key() -> str:
    # Limits are per account: a class behind one NAT address must not share a budget.
    return f"user:{current_user.get_id()}" if current_user.is_authenticated else f"addr:{request.remote_addr}"


def _runtime():
    from .live import get_runtime

    return get_runtime(current_app._get_current_object())


def _bad(message: str):
    abort(400, description=message)


# --- input validation -------------------------------------------------------------------

class FrameError(ValueError):
    """The uploaded frame is not acceptable; the message says why (400)."""


def image_dimensions(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) read from a JPEG or PNG header, before any pixel is decoded."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise FrameError("broken PNG header")
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data.startswith(b"\xff\xd8"):
        i, n = 2, len(data)
        while i < n:
            if data[i] != 0xFF:
                raise FrameError("broken JPEG: bad marker")
            while i < n and data[i] == 0xFF:  # fill bytes
                i += 1
            if i >= n:
                break
            marker = data[i]
            i += 1
            if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
                continue
            if i + 2 > n:
                break
            (length,) = struct.unpack(">H", data[i:i + 2])
            if length < 2:
                raise FrameError("broken JPEG: bad segment length")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if i + 7 > n:
                    break
                height, width = struct.unpack(">HH", data[i + 3:i + 7])
                return "jpeg", width, height
            if marker == 0xDA:  # start of scan before any frame header
                break
            i += length
        raise FrameError("broken JPEG: no frame header")
    raise FrameError("not a JPEG or PNG image")


def decode_frame(image_field, *, min_side: int, max_side: int, max_w: int, max_h: int) -> np.ndarray:
    """The uploaded image (data URL or bare base64 of a JPEG/PNG) as a BGR frame that fits max_w x max_h."""
    if not isinstance(image_field, str) or not image_field:
        raise FrameError("'image' must be a non-empty string (a data URL or base64 JPEG/PNG)")
    text = image_field
    if text.startswith("data:"):
        match = _DATA_URL.match(text)
        if not match:
            raise FrameError("'image' data URL must be data:image/jpeg;base64,... or data:image/png;base64,...")
        text = text[match.end():]
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FrameError("'image' is not valid base64") from None
    if not raw:
        raise FrameError("'image' is empty")
    _, width, height = image_dimensions(raw)
    if min(width, height) < min_side:
        raise FrameError(f"image too small: {width}x{height} (each side must be at least {min_side} px)")
    if max(width, height) > max_side:
        raise FrameError(f"image too large: {width}x{height} (each side must be at most {max_side} px)")
    frame = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if frame is None or frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError("the image could not be decoded")
    h, w = frame.shape[:2]
    if sorted((w, h)) != sorted((width, height)):  # the header lied (EXIF rotation may swap the sides)
        raise FrameError("the image could not be decoded")
    scale = min(max_w / w, max_h / h, 1.0)
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(frame)


def _number(value, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _bad(f"'{name}' must be a number")
    if not lo <= value <= hi:
        _bad(f"'{name}' must be between {lo:g} and {hi:g}")
    return float(value)


def _json_body(max_bytes: int | None = None) -> dict:
    """The request body as a JSON object; 413 when over max_bytes, 400 when it is not a JSON object."""
    if max_bytes is not None and request.content_length is not None and request.content_length > max_bytes:
        abort(413, description=f"request body over the {max_bytes // 1024} KiB limit for this address")
    if not request.is_json:
        _bad("send a JSON body (Content-Type: application/json)")
    if max_bytes is not None:
        data = request.stream.read(max_bytes + 1) if request.content_length is None else request.get_data(cache=True)
        if len(data) > max_bytes:
            abort(413, description=f"request body over the {max_bytes // 1024} KiB limit for this address")
    else:
        data = request.get_data(cache=True)
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        _bad("the body is not valid JSON")
    if not isinstance(body, dict):
        _bad("the body must be a JSON object")
    return body


def _current_session() -> ExamSession:
    """The logged-in student's exam session in progress; 409 when there is none or its time is over.

    exam_service.active_session submits a session whose deadline has passed, so a late frame both
    gets its 409 and closes the exam at the server's deadline.
    """
    from . import exam_service

    exam_session = exam_service.active_session(current_user.id)
    if exam_session is None:
        abort(409, description="no exam in progress for this account (not started, finished or out of time)")
    return exam_session


# --- student uploads -----------------------------------------------------------------------

@api_bp.route("/student-frame", methods=["POST"])
@access(STUDENT)
@limiter.limit(lambda: setting("PROCTOR_FRAME_RATE_LIMIT"), key_func=_user_key)
def student_frame():
    body = _json_body(int(setting("PROCTOR_FRAME_MAX_BYTES")))
    exam_session = _current_session()
    ts = body.get("ts")
    if ts is None:
        _bad("'ts' (the client's time in ms) is required")
    ts = _number(ts, "ts", 0, CLIENT_TS_MAX_MS)
    try:
        frame = decode_frame(
            body.get("image"),
            min_side=int(setting("PROCTOR_FRAME_MIN_SIDE_PX")),
            max_side=int(setting("PROCTOR_FRAME_MAX_SIDE_PX")),
            max_w=int(setting("PROCTOR_FRAME_MAX_WIDTH_PX")),
            max_h=int(setting("PROCTOR_FRAME_MAX_HEIGHT_PX")),
        )
    except FrameError as exc:
        log.info("frame refused for student %s: %s", current_user.id, exc)
        _bad(str(exc))
    receipt = _runtime().submit_frame(current_user.id, exam_session.id, frame, ts)
    return jsonify(seq=receipt.seq, replaced_older=bool(receipt.replaced_older),
                   width=int(frame.shape[1]), height=int(frame.shape[0])), 202


def _event_details(kind: str, body: dict) -> dict:
    """Only known fields, checked: nothing else the client says is passed on."""
    details: dict = {}
    raw = body.get("details")
    if raw is not None and not isinstance(raw, dict):
        _bad("'details' must be an object")
    raw = dict(raw or {})
    for key in ("level", "duration_ms"):  # accepted at the top level too
        if key in body and key not in raw:
            raw[key] = body[key]
    if kind == "VOICE_DETECTED":
        if raw.get("level") is None:
            _bad("VOICE_DETECTED needs a numeric 'level'")
        details["level"] = _number(raw["level"], "level", LEVEL_MIN, LEVEL_MAX)
    if raw.get("duration_ms") is not None:
        details["duration_ms"] = _number(raw["duration_ms"], "duration_ms", 0, DURATION_MAX_MS)
    if kind == "CAMERA_OFF" and raw.get("reason") is not None:
        # The page's own word for why the camera stopped ("denied", "ended"...): kept short and plain.
        if not isinstance(raw["reason"], str):
            _bad("'reason' must be a string")
        reason = _REASON_UNSAFE.sub("", raw["reason"])[:REASON_WORD_MAX].strip()
        if reason:
            details["camera_reason"] = reason
    return details


@api_bp.route("/student-event", methods=["POST"])
@access(STUDENT)
@limiter.limit(lambda: setting("PROCTOR_EVENT_RATE_LIMIT"), key_func=_user_key)
def student_event():
    body = _json_body(16 * 1024)
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in BROWSER_EVENT_RULES:
        _bad(f"'type' must be one of {', '.join(BROWSER_EVENT_RULES)}")
    details = _event_details(kind, body)
    exam_session = _current_session()
    warnings = _live_call(_runtime().browser_event, current_user.id, exam_session.id, kind, details)
    return jsonify(accepted=True, type=kind, warnings=list(warnings or []))


# --- MJPEG live view ---------------------------------------------------------------------

_BOUNDARY = "frame"


def _mjpeg_part(jpeg: bytes) -> bytes:
    return (b"--" + _BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
            + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")


def _encode(frame: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _status_alerts(status: dict) -> list[str]:
    active = status.get("active_rules") if isinstance(status, dict) else None
    if isinstance(active, dict):
        return [str(rule) for rule in active]
    if isinstance(active, (list, tuple)):
        return [str(rule) for rule in active]
    return []


def _hud_status(status: dict) -> dict:
    """The runtime's status dict in the keys vision_ui.draw_hud reads, marked raw."""
    hud: dict = {"raw": True}
    if isinstance(status.get("warnings"), int):
        hud["warnings"] = status["warnings"]
    suspicion = status.get("suspicion")
    if isinstance(suspicion, dict):
        suspicion = suspicion.get("score")
    if isinstance(suspicion, (int, float)) and not isinstance(suspicion, bool):
        hud["suspicion"] = float(suspicion)
    return hud


_WAITING_JPEG: bytes | None = None


def _waiting_jpeg() -> bytes:
    """A plain card shown until the student's first frame arrives."""
    global _WAITING_JPEG
    if _WAITING_JPEG is None:
        card = np.full((240, 320, 3), 40, np.uint8)
        cv2.putText(card, "waiting for camera", (62, 125), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (200, 200, 200), 1, cv2.LINE_AA)
        _WAITING_JPEG = _encode(card)
    return _WAITING_JPEG


def _raw_hud(frame: np.ndarray, status: dict, age_s: float | None) -> bytes:
    """The raw camera frame with the last known status drawn on it and a clear RAW label."""
    label = "RAW - analysis not current" + (f" ({age_s:.1f}s)" if age_s is not None else "")
    alerts = [label] + _status_alerts(status or {})
    try:
        from vision_ui import draw_hud

        frame = draw_hud(frame, None, None, _hud_status(status or {}), alerts)
    except Exception:  # noqa: BLE001 - a drawing bug must not end the stream
        log.exception("draw_hud failed on a raw frame; marking it with plain text")
        frame = frame.copy()
        cv2.rectangle(frame, (0, 0), (frame.shape[1], 28), (0, 0, 0), -1)
        cv2.putText(frame, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 200, 255), 1, cv2.LINE_AA)
    return _encode(frame)


class LiveViewSource:
    """Chooses what the viewer sees next, from what the runtime already holds (never runs inference).

    The processed frame (HUD drawn by the worker) while it is fresh; otherwise the newest raw camera
    frame, if newer, with the last known status drawn on it and marked RAW; a waiting card before
    any frame. next() returns (key, jpeg): the key changes only when the picture does.
    """

    def __init__(self, runtime, student_id: int, fresh_s: float):
        self.runtime = runtime
        self.student_id = student_id
        self.fresh_s = fresh_s
        self._raw_cache: tuple[object, bytes] | None = None

    def _raw_frame(self):
        slots = getattr(self.runtime, "slots", None)
        return slots.latest(self.student_id) if slots is not None else None

    def next(self) -> tuple[object, bytes]:
        view = self.runtime.latest_view(self.student_id)
        if view is not None and view.kind == "processed" and view.age_s <= self.fresh_s:
            return ("processed", id(view.jpeg), len(view.jpeg)), view.jpeg
        frame = self._raw_frame()
        raw_age = time.monotonic() - frame.received_mono if frame is not None else None
        if frame is not None and (frame.image is not None or frame.jpeg is not None) \
                and (view is None or raw_age < view.age_s):
            key = ("raw", frame.seq, id(frame))
            if self._raw_cache is None or self._raw_cache[0] != key:
                image = frame.image if frame.image is not None else \
                    cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
                status = view.status if view is not None else self.runtime.status(self.student_id)
                jpeg = _raw_hud(image, status, raw_age) if image is not None else _waiting_jpeg()
                self._raw_cache = (key, jpeg)
            return key, self._raw_cache[1]
        if view is not None:  # stale, but the newest picture there is
            if view.kind == "processed":
                return ("processed", id(view.jpeg), len(view.jpeg)), view.jpeg
            key = ("raw-view", id(view.jpeg), len(view.jpeg))
            if self._raw_cache is None or self._raw_cache[0] != key:
                image = cv2.imdecode(np.frombuffer(view.jpeg, np.uint8), cv2.IMREAD_COLOR)
                self._raw_cache = (key, _raw_hud(image, view.status, view.age_s) if image is not None else view.jpeg)
            return key, self._raw_cache[1]
        return ("waiting",), _waiting_jpeg()


class StreamCounter:
    """Open/opened/closed MJPEG streams of one app (shown in the pipeline diagnostics)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.open = self.opened = self.closed = self.parts = 0

    def started(self) -> None:
        with self._lock:
            self.open += 1
            self.opened += 1

    def ended(self, parts: int) -> None:
        with self._lock:
            self.open -= 1
            self.closed += 1
            self.parts += parts

    def as_dict(self) -> dict:
        with self._lock:
            return {"open": self.open, "opened": self.opened, "closed": self.closed, "parts_sent": self.parts}


def stream_counter(app) -> StreamCounter:
    return app.extensions.setdefault("proctor_mjpeg_streams", StreamCounter())


def mjpeg_parts(source: LiveViewSource, fps: float, max_s: float, keepalive_s: float, sleep, clock=time.monotonic,
                counter: StreamCounter | None = None):
    """Generator of multipart parts at most `fps` a second for at most `max_s` seconds.

    A part is sent when the picture changes, and at least every keepalive_s (so a viewer that left
    is noticed: the server closes this generator when a write fails).
    """
    period = 1.0 / max(fps, 0.1)
    started = clock()
    last_key = None
    last_sent = 0.0
    sent = 0
    counter = counter or StreamCounter()
    counter.started()
    try:
        while clock() - started < max_s:
            key, jpeg = source.next()
            now = clock()
            if key != last_key or now - last_sent >= keepalive_s:
                sent += 1
                last_key, last_sent = key, now
                yield _mjpeg_part(jpeg)
            sleep(period)
    finally:
        counter.ended(sent)
        log.info("mjpeg stream for student %s ended after %d parts", source.student_id, sent)


@admin_bp.route("/live/<int:student_id>")
@access(ADMIN)
def live_stream(student_id: int):
    student = db.session.get(Student, student_id)
    if student is None or student.role != Role.STUDENT.value:
        abort(404)
    counter = stream_counter(current_app)
    if counter.as_dict()["open"] >= int(setting("PROCTOR_MJPEG_MAX_STREAMS")):
        abort(429, description="too many live views are open; close one and try again")
    source = LiveViewSource(_runtime(), student_id, fresh_s=float(setting("PROCTOR_MJPEG_FRESH_S")))
    parts = mjpeg_parts(
        source,
        fps=float(setting("PROCTOR_MJPEG_FPS")),
        max_s=float(setting("PROCTOR_MJPEG_MAX_S")),
        keepalive_s=float(setting("PROCTOR_MJPEG_KEEPALIVE_S")),
        sleep=socketio.sleep,
        counter=counter,
    )
    resp = Response(parts, mimetype=f"multipart/x-mixed-replace; boundary={_BOUNDARY}", direct_passthrough=True)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"  # a reverse proxy must not buffer the stream
    return resp


# --- evidence ----------------------------------------------------------------------------

@admin_bp.route("/evidence/<int:violation_id>/<kind>")
@access(ADMIN)
def evidence(violation_id: int, kind: str):
    column = EVIDENCE_KINDS.get(kind)
    if column is None:
        abort(404)
    violation = db.session.get(Violation, violation_id)
    stored = getattr(violation, column, None) if violation is not None else None
    if not stored:
        abort(404)
    path = stored_file(stored, f"evidence {violation_id}/{kind}")
    if path is None:
        abort(404)
    mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    resp = send_file(path, mimetype=mimetype, conditional=True, max_age=0)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


def evidence_url(violation_id: int | None, kind: str) -> str | None:
    """The admin URL of a violation's snapshot or clip (no request context needed)."""
    if violation_id is None:
        return None
    return f"/admin/evidence/{int(violation_id)}/{kind}"


# --- diagnostics -------------------------------------------------------------------------

@api_bp.route("/object-detection-status")
@access(ADMIN)
def object_detection_status():
    return jsonify(_runtime().detector_status())


@api_bp.route("/detection-pipeline-status")
@access(ADMIN)
def detection_pipeline_status():
    return jsonify({**_runtime().pipeline_status(), "mjpeg_streams": stream_counter(current_app).as_dict()})


@api_bp.route("/admin-active-students")
@access(ADMIN)
def admin_active_students():
    students = _runtime().active_students()
    return jsonify(students=list(students), count=len(students))


# --- admin actions -----------------------------------------------------------------------
# Each action is audited exactly once, by the runtime method itself (proctor.audit.record inside
# the request, so the row carries this admin and the client address): live.clear_warnings,
# live.terminate, live.set_auto_terminate, live.set_rule.

def _session_in_progress(session_id: int) -> ExamSession:
    exam_session = db.session.get(ExamSession, session_id)
    if exam_session is None:
        abort(404, description=f"no exam session {session_id}")
    if exam_session.status != SessionStatus.IN_PROGRESS.value:
        abort(409, description=f"session {session_id} is already {exam_session.status.lower()}")
    return exam_session


def _bool_field(body: dict, name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        _bad(f"'{name}' must be true or false")
    return value


def _live_call(method, *args):
    """Run a runtime action; its LiveError becomes the HTTP error it names."""
    from .live import LiveError

    try:
        return method(*args)
    except LiveError as exc:
        abort(exc.status, description=str(exc))


@api_bp.route("/admin/students/<int:student_id>/clear-warnings", methods=["POST"])
@access(ADMIN)
def clear_warnings(student_id: int):
    student = db.session.get(Student, student_id)
    if student is None or student.role != Role.STUDENT.value:
        abort(404, description=f"no student {student_id}")
    _live_call(_runtime().clear_warnings, student_id, current_user.id)
    return jsonify(ok=True, student_id=student_id)


@api_bp.route("/admin/sessions/<int:session_id>/terminate", methods=["POST"])
@access(ADMIN)
def terminate_session(session_id: int):
    body = _json_body(16 * 1024)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        _bad("'reason' is required")
    reason = reason.strip()
    if len(reason) > REASON_MAX:
        _bad(f"'reason' must be at most {REASON_MAX} characters")
    _session_in_progress(session_id)
    _live_call(_runtime().terminate, session_id, reason, current_user.id)
    db.session.expire_all()
    refreshed = db.session.get(ExamSession, session_id)
    return jsonify(ok=True, session_id=session_id, status=refreshed.status if refreshed else None)


@api_bp.route("/admin/sessions/<int:session_id>/auto-terminate", methods=["POST"])
@access(ADMIN)
def set_auto_terminate(session_id: int):
    body = _json_body(16 * 1024)
    enabled = _bool_field(body, "enabled")
    _session_in_progress(session_id)
    effective = _live_call(_runtime().set_auto_terminate, session_id, enabled, current_user.id)
    return jsonify(ok=True, session_id=session_id, auto_terminate=bool(effective))


@api_bp.route("/admin/sessions/<int:session_id>/rules", methods=["POST"])
@access(ADMIN)
def set_rule(session_id: int):
    body = _json_body(16 * 1024)
    rule = body.get("rule")
    if not isinstance(rule, str) or rule not in RULES:
        _bad(f"'rule' must be one of {', '.join(RULES)}")
    enabled = _bool_field(body, "enabled")
    _session_in_progress(session_id)
    disabled = _live_call(_runtime().set_rule, session_id, rule, enabled, current_user.id)
    return jsonify(ok=True, session_id=session_id, rule=rule, enabled=enabled, disabled_rules=list(disabled or []))
