"""A tiny in-process publish/subscribe bus for live-proctoring events.

The runtime publishes; the Socket.IO layer (and tests) subscribe. A subscriber that raises is
logged and skipped, so one broken listener cannot stop the others or the runtime.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

log = logging.getLogger(__name__)

# Every event name the runtime publishes (payloads are plain JSON-able dicts).
EVENT_NAMES = (
    "student_violation",   # {student_id, session_id, violation_id, type, severity, count, message, t, details}
    "student_status",      # {student_id, session_id, status: {...}} about once a second per active student
    "student_joined",      # {student_id, session_id, name, exam_id, exam_title}
    "student_left",        # {student_id, session_id, status}
    "exam_terminated",     # {student_id, session_id, reason, by_admin_id, auto}
    "warnings_cleared",    # {student_id, session_id, by_admin_id}
    "student_warning",     # {student_id, session_id, type, message, count}: for the student's own page
    # Talking to the student (issue 16; published by the web layer, proctor/messages.py, not by the runtime):
    "message_sent",        # {student_id, session_id, message_id, body, preset, created_at, author_id, author}
    "message_acknowledged",  # {student_id, session_id, message_id, name, acknowledged_at}
    "hand_raised",         # {student_id, session_id, message_id, name, body, reason, created_at}
    "hand_cleared",        # {student_id, session_id, message_ids, by_admin_id, answered}
    "extra_time_granted",  # {student_id, session_id, minutes, extra_minutes, deadline, remaining_s, by_admin_id}
)

# The events pushed to admins (Socket.IO /admin); the admin pages get this list rendered (page_data).
ADMIN_EVENTS = ("student_violation", "student_status", "student_joined", "student_left", "exam_terminated",
                "warnings_cleared",
                "message_sent", "message_acknowledged", "hand_raised", "hand_cleared", "extra_time_granted")
if not set(ADMIN_EVENTS) <= set(EVENT_NAMES):
    raise RuntimeError(f"ADMIN_EVENTS names events the runtime never publishes: {set(ADMIN_EVENTS) - set(EVENT_NAMES)}")

Callback = Callable[[str, dict], Any]


class EventBus:
    """subscribe(callback(name, payload)) -> unsubscribe function; publish(name, payload)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Callback] = []

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        if not callable(callback):
            raise TypeError("subscribe() needs a callable(name, payload)")
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            self.unsubscribe(callback)

        return unsubscribe

    def unsubscribe(self, callback: Callback) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def publish(self, name: str, payload: dict) -> None:
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown live event {name!r}")
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(name, payload)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the runtime
                log.exception("live event subscriber %r failed on %s", callback, name)
