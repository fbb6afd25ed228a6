"""Live proctoring runtime: latest-frame slots, worker processes, decisions, warnings, evidence.

    from proctor.live import get_runtime
    runtime = get_runtime(app)          # the app's LiveRuntime (created in create_app by init_app)
    runtime.submit_frame(student_id, session_id, frame_bgr_or_jpeg, client_ts_ms)
    runtime.events.subscribe(lambda name, payload: ...)

Its app settings are the PROCTOR_LIVE_* rows of proctor/settings.py (validated at start).
The runtime starts lazily on first use (or call .start()); tests call .stop().
"""
from __future__ import annotations

import atexit
import weakref

from .events import EVENT_NAMES, EventBus
from .frames import Frame, FrameReceipt, FrameSlots
from .runtime import LiveError, LiveRuntime, LiveView
from .workers import FrameJob, FrameResult, WorkerPool

__all__ = ["init_app", "get_runtime", "LiveRuntime", "LiveView", "LiveError", "FrameReceipt", "Frame", "FrameSlots",
           "FrameJob", "FrameResult", "WorkerPool", "EventBus", "EVENT_NAMES"]

EXTENSION_KEY = "proctor_live"
_ALL: "weakref.WeakSet[LiveRuntime]" = weakref.WeakSet()


def init_app(app, socketio=None) -> LiveRuntime:
    """Create the app's runtime (not started: it starts on first use or with .start())."""
    runtime = LiveRuntime(app, socketio)
    app.extensions[EXTENSION_KEY] = runtime
    _ALL.add(runtime)
    return runtime


def get_runtime(app=None) -> LiveRuntime:
    if app is None:
        from flask import current_app

        app = current_app._get_current_object()
    runtime = app.extensions.get(EXTENSION_KEY)
    if runtime is None:
        raise RuntimeError("the live runtime is not set up: create_app must call proctor.live.init_app")
    return runtime


@atexit.register
def _stop_all() -> None:  # worker processes are daemons anyway; this lets them close cleanly
    for runtime in list(_ALL):
        try:
            runtime.stop(timeout=1.0)
        except Exception:  # noqa: BLE001
            pass
