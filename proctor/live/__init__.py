"""Live proctoring runtime: latest-frame slots, worker processes, decisions, warnings, evidence.

    from proctor.live import get_runtime
    runtime = get_runtime(app)          # the app's LiveRuntime (created in create_app by init_app)
    runtime.submit_frame(student_id, session_id, frame_bgr_or_jpeg, client_ts_ms)
    runtime.events.subscribe(lambda name, payload: ...)

App settings (environment variable = config key; validated at start):
  PROCTOR_LIVE_ENABLED (true)        run the vision workers at all
  PROCTOR_LIVE_WORKERS (2, 1..16)    worker processes (one core each)
  PROCTOR_LIVE_PREROLL_S (8, 2..30)  seconds of processed frames kept for a violation's clip
  PROCTOR_LIVE_STATUS_EVERY_S (1.0, 0.2..10)  student_status publishing period per student
  PROCTOR_MODELS_DIR ("")            folder of detector model files (default: config_vision's MODELS_DIR)
The runtime starts lazily on first use (or call .start()); tests call .stop().
"""
from __future__ import annotations

import atexit
import os
import weakref

from .events import EVENT_NAMES, EventBus
from .frames import Frame, FrameReceipt, FrameSlots
from .runtime import LiveError, LiveRuntime, LiveView
from .workers import FrameJob, FrameResult, WorkerPool

__all__ = ["init_app", "get_runtime", "LiveRuntime", "LiveView", "LiveError", "FrameReceipt", "Frame", "FrameSlots",
           "FrameJob", "FrameResult", "WorkerPool", "EventBus", "EVENT_NAMES", "live_settings"]

EXTENSION_KEY = "proctor_live"
_ALL: "weakref.WeakSet[LiveRuntime]" = weakref.WeakSet()


def live_settings(env=None) -> dict:
    """The runtime's app settings from the environment, validated (ConfigError names the bad one)."""
    from ..settings import _bool, _float, _int

    env = os.environ if env is None else env
    return {
        "PROCTOR_LIVE_ENABLED": _bool(env, "PROCTOR_LIVE_ENABLED", True),
        "PROCTOR_LIVE_WORKERS": _int(env, "PROCTOR_LIVE_WORKERS", 2, 1, 16),
        "PROCTOR_LIVE_PREROLL_S": _float(env, "PROCTOR_LIVE_PREROLL_S", 8.0, 2.0, 30.0),
        "PROCTOR_LIVE_STATUS_EVERY_S": _float(env, "PROCTOR_LIVE_STATUS_EVERY_S", 1.0, 0.2, 10.0),
        "PROCTOR_MODELS_DIR": env.get("PROCTOR_MODELS_DIR", ""),
    }


def init_app(app, socketio=None) -> LiveRuntime:
    """Create the app's runtime (not started: it starts on first use or with .start())."""
    from ..settings import ConfigError

    for key, value in live_settings().items():
        app.config.setdefault(key, value)
    try:
        from config_vision import VisionConfigError, load_vision_config

        load_vision_config(**dict(app.config.get("PROCTOR_VISION_OVERRIDES") or {}))
    except VisionConfigError as exc:
        raise ConfigError(str(exc)) from None
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
