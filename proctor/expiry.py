"""The deadline sweep: a background task that submits sessions whose deadline passed while
nobody touched them (a closed browser). Started by the running server's first request;
PROCTOR_EXPIRY_SWEEP_S sets its period (0: sessions are only closed when touched)."""
from __future__ import annotations

import logging

from flask import current_app

from . import exam_service, live_hooks
from .extensions import db, socketio
from .models import ExamSession

log = logging.getLogger(__name__)
EXTENSION_KEY = "exam_expiry_sweep"


def _ensure_started() -> None:
    app = current_app._get_current_object()
    if app.extensions.get(EXTENSION_KEY) or app.testing:
        return
    period = float(app.config["PROCTOR_EXPIRY_SWEEP_S"])
    state = app.extensions[EXTENSION_KEY] = {"running": period > 0, "sweeps": 0}
    if period <= 0:
        return

    def sweep():
        while state["running"]:
            socketio.sleep(period)
            if not state["running"]:
                break
            state["sweeps"] += 1
            try:
                with app.app_context():
                    done = exam_service.expire_overdue()
                    if done:
                        log.info("submitted %d session(s) at their deadline: %s", len(done), done)
                    for session_id in done:
                        sess = db.session.get(ExamSession, session_id)
                        if sess is not None:
                            live_hooks.session_ended(sess, app)
                    db.session.remove()
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next period
                log.exception("deadline sweep failed")

    state["task"] = socketio.start_background_task(sweep)


def init_app(app) -> None:
    app.before_request(_ensure_started)
