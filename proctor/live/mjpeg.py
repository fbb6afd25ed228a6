"""The proctor's live view of one student as MJPEG: what to show next, and the multipart stream.

Only reads what the runtime already holds (the latest processed frame, else the newest raw one);
it never drives inference. No Flask here: the admin view wraps `mjpeg_parts` in a response.
"""
from __future__ import annotations

import logging
import threading
import time

import cv2
import numpy as np

from .views import rule_titles

log = logging.getLogger(__name__)

BOUNDARY = "frame"


def _mjpeg_part(jpeg: bytes) -> bytes:
    return (b"--" + BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
            + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")


def _encode(frame: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def _status_alerts(status: dict) -> list[str]:
    """The rules holding now by title, oldest first (as views.active_alerts draws the analysed frame)."""
    active = status.get("active_rules") if isinstance(status, dict) else None
    if isinstance(active, dict):
        return list(rule_titles(sorted(active, key=lambda r: active[r] if isinstance(active[r], (int, float)) else 0)))
    if isinstance(active, (list, tuple)):
        return list(rule_titles(active))
    return []


def _hud_status(status: dict) -> dict:
    """The runtime's status dict in the keys vision_ui.draw_hud reads, marked raw."""
    hud: dict = {"raw": True}
    if isinstance(status.get("name"), str) and status["name"]:
        hud["label"] = status["name"]
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
