"""The JSON API under /api/: health and identity, camera frames and browser events from the exam
page, the proctor's live actions and diagnostics. Every error is {"error", "code"} (jsonapi).

The student and the exam session always come from the login session and the database, never
from the request body. None of these views runs inference: frames are handed to the live runtime.
"""
from ..jsonapi import json_blueprint

bp = json_blueprint("api", __name__, "/api")

from . import frame_socket, frames, live_actions, messages, system  # noqa: E402,F401  (views on bp)
