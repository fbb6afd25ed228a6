"""Live proctoring runtime: latest-frame slots, worker processes, decisions, warnings, evidence.

    runtime = init_app(app, socketio, store=SqlLiveStore(app))   # create_app does this
    runtime = get_runtime(app)          # the app's LiveRuntime
    runtime.submit_frame(student_id, session_id, frame_bgr_or_jpeg, client_ts_ms)
    runtime.events.subscribe(lambda name, payload: ...)

This package imports nothing from the web layer above it (tests/live/test_layering.py checks):
its settings arrive as a LiveSettings (settings.py, read from the app's PROCTOR_LIVE_* and
neighbouring settings of proctor/settings.py), and everything it reads or writes in the database
goes through the LiveStore it is handed (store.py; the web layer's is proctor/live_store.py).
The runtime starts on first use or with .start() (the server, `python app.py`, starts it at once:
proctor.start_live); tests call .stop().
"""
from __future__ import annotations

import atexit
import weakref

from .events import EVENT_NAMES, EventBus
from .frames import Frame, FrameReceipt, FrameSlots
from .pipeline import FrameJob, FramePipeline, FrameResult
from .runtime import LiveRuntime, LiveView
from .settings import LiveSettings
from .store import AuditEntry, LiveError, LiveStore, SessionInfo, ViolationRecord
from .workers import WorkerPool

__all__ = ["init_app", "get_runtime", "LiveRuntime", "LiveView", "LiveError", "LiveSettings", "LiveStore",
           "SessionInfo", "ViolationRecord", "AuditEntry", "FrameReceipt", "Frame", "FrameSlots", "FrameJob",
           "FrameResult", "FramePipeline", "WorkerPool", "EventBus", "EVENT_NAMES"]

EXTENSION_KEY = "proctor_live"
_ALL: "weakref.WeakSet[LiveRuntime]" = weakref.WeakSet()


def init_app(app, socketio=None, *, store: LiveStore) -> LiveRuntime:
    """Create the app's runtime from its settings and the given store (not started: it starts on
    first use or with .start()). `app` is only read for its config and keeps the runtime in its
    extensions."""
    runtime = LiveRuntime(LiveSettings.from_config(app.config), store, socketio)
    app.extensions[EXTENSION_KEY] = runtime
    _ALL.add(runtime)
    return runtime


def get_runtime(app) -> LiveRuntime:
    """The runtime init_app made for this app (web code: proctor.live_hooks.current_runtime())."""
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
