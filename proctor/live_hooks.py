"""The web layer's way to the live runtime: the current app's runtime, and telling it when an exam
session starts or ends.

Proctoring bookkeeping must never cost the student their exam: a failure here is logged, and
the runtime also re-reads session states on its own (a stream whose session ended elsewhere is
closed within seconds).
"""
from __future__ import annotations

import logging

from flask import current_app

log = logging.getLogger(__name__)


def current_runtime(app=None):
    """The live runtime of `app`, or of the current app (inside a request or app context)."""
    from .live import get_runtime

    return get_runtime(app or current_app._get_current_object())


def session_started(sess, app=None) -> None:
    try:
        current_runtime(app).session_started(sess.student_id, sess.id)
    except Exception:  # noqa: BLE001 - the exam goes on; the admin sees the camera missing
        log.exception("live runtime: session_started failed for session %s", sess.id)


def session_ended(sess, app=None) -> None:
    try:
        current_runtime(app).session_ended(sess.student_id, sess.id, sess.status)
    except Exception:  # noqa: BLE001 - proctoring bookkeeping must not lose the student's submission
        log.exception("live runtime: session_ended failed for session %s", sess.id)
