"""Camera frames over the student's own Socket.IO connection: /student, event "frame", binary JPEG.

The exam page already holds a /student socket (its warnings arrive on it). Sending each frame on it
as a binary message, instead of one HTTP POST with a base64 data URL, saves the web process the
per-request work: parsing a request, loading the session and the account from the database, the
rate limiter's store, the JSON answer. The socket was authenticated at its handshake (a student's
login; a sign-out closes it, see sockets.py), so a frame is checked here against what the server
itself recorded for that socket, never against anything the page says about itself.

    socket.emit("frame", {image: <ArrayBuffer JPEG>, ts: Date.now()}, ack)
    ack: {seq, replaced_older, width, height} | {error, status}   (status as the HTTP route's)

The handler is registered on the Socket.IO server directly (not through Flask-SocketIO's
per-event request context); it runs in the server's concurrency model (a green thread under
eventlet). Checks, in order: the socket belongs to a student; the frame rate limit
(PROCTOR_FRAME_RATE_LIMIT, counted per account in this process); the payload's shape and size;
an exam session in progress (read from the database at most every SESSION_RECHECK_S per student,
and at once when the cached deadline has passed); the picture itself (frames.checked_frame, the
same check as the HTTP route). The POST route stays for pages without a socket.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import timezone

from limits import parse_many

from ..jsonapi import ApiError
from ..live_hooks import current_runtime
from ..sockets import STUDENT_NS, bridge

log = logging.getLogger(__name__)

EXTENSION_KEY = "proctor_frame_socket"
SESSION_RECHECK_S = 2.0


class FrameSocket:
    """The /student "frame" event of one app."""

    def __init__(self, app, socketio, namespace: str = STUDENT_NS):
        self.app = app
        self.namespace = namespace
        self._sessions: dict[int, tuple[int, float, float]] = {}  # student -> (session id, deadline ts, checked mono)
        self._windows: dict[tuple[int, int], list] = {}     # (student, limit index) -> [window start, count]
        self._lock = threading.Lock()
        self.limits = [(item.amount, float(item.get_expiry())) for item in
                       parse_many(str(app.config["PROCTOR_FRAME_RATE_LIMIT"]))]
        self.frames = self.refused = 0
        socketio.server.on("frame", self.on_frame, namespace=namespace)

    def on_frame(self, sid, data):
        # The socket's owner as recorded at its authenticated handshake (only students may open /student).
        student_id = bridge(self.app).owner(sid, self.namespace)
        if student_id is None:
            return {"error": "this socket is not signed in as a student", "status": 401}
        try:
            with self.app.app_context():
                body = self._take(student_id, data)
        except ApiError as exc:
            self.refused += 1
            return {"error": exc.message, "status": exc.status}
        except Exception:  # noqa: BLE001 - an unexpected bug answers 500, the socket stays up
            self.refused += 1
            log.exception("frame over the socket from student %s failed", student_id)
            return {"error": "the server could not take this frame", "status": 500}
        self.frames += 1
        return body

    def _take(self, student_id: int, data) -> dict:
        from flask import current_app

        from .frames import checked_frame, client_ts, receipt_body

        self._rate(student_id)
        if not isinstance(data, dict):
            raise ApiError("a frame is an object {image: <JPEG bytes>, ts: <ms>}")
        raw = data.get("image")
        if not isinstance(raw, (bytes, bytearray)):
            raise ApiError("'image' must be the JPEG's bytes (an ArrayBuffer)")
        if len(raw) > int(current_app.config["PROCTOR_FRAME_MAX_BYTES"]):
            raise ApiError("the image is too large", 413)
        ts = client_ts(data.get("ts"))
        session_id = self._session(student_id)
        frame = checked_frame(current_app.config, bytes(raw), student_id)
        receipt = current_runtime().submit_frame(student_id, session_id, frame, ts)
        return receipt_body(receipt, frame)

    def _rate(self, student_id: int) -> None:
        now = time.monotonic()
        with self._lock:
            for i, (amount, period) in enumerate(self.limits):
                window = self._windows.setdefault((student_id, i), [now, 0])
                if now - window[0] >= period:
                    window[0], window[1] = now, 0
                if window[1] >= amount:
                    raise ApiError(f"too many frames: at most {amount} per {period:g} s", 429)
                window[1] += 1

    def _session(self, student_id: int) -> int:
        """The student's exam session in progress (the database's word, cached briefly); 409 when none."""
        from ..extensions import db
        from .frames import current_session

        cached = self._sessions.get(student_id)
        now = time.monotonic()
        if cached is not None and now - cached[2] < SESSION_RECHECK_S and time.time() < cached[1]:
            return cached[0]
        try:
            exam_session = current_session(student_id)
            deadline = exam_session.deadline.replace(tzinfo=timezone.utc).timestamp()  # stored as naive UTC
            self._sessions[student_id] = (exam_session.id, deadline, now)
            return exam_session.id
        except ApiError:
            self._sessions.pop(student_id, None)
            raise
        finally:
            db.session.remove()


def init_app(app, socketio) -> FrameSocket:
    """Take camera frames on the /student sockets (after sockets.init_app, which owns that namespace)."""
    fs = FrameSocket(app, socketio)
    app.extensions[EXTENSION_KEY] = fs
    return fs


def frame_socket(app) -> FrameSocket | None:
    return app.extensions.get(EXTENSION_KEY)
