"""Face work in requests: the registration photo, and the live captures that confirm identity
(match against the registration + liveness + no face on a screen or photo) before an exam.

The analysers are not thread-safe, so each request borrows one from a small pool; the work runs
off the event loop with a timeout (blocking.run_blocking). Confirmation attempts are kept per
(student, exam) in this process's memory for ATTEMPT_IDLE_S.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid

from flask import current_app

from ..blocking import InstancePool, run_blocking

log = logging.getLogger(__name__)
EXTENSION_KEY = "exam_vision"
ATTEMPT_IDLE_S = 600


def vision(app=None) -> dict:
    """The app's vision config and pools of FaceIdentity / FaceAnalyzer (made on first use)."""
    app = app or current_app._get_current_object()
    state = app.extensions.get(EXTENSION_KEY)
    if state is None:
        from ..page_data import server_vision_config

        cfg = server_vision_config(app)

        def make_identity():
            from face_identity import FaceIdentity

            return FaceIdentity(cfg)

        def make_analyzer():
            from face_pipeline import FaceAnalyzer

            # Photo mode: requests from different students share these instances, so no tracking
            # state may carry over from one frame to the next.
            return FaceAnalyzer(cfg, static_image_mode=True)

        state = {"config": cfg, "identity": InstancePool(make_identity), "analyzer": InstancePool(make_analyzer)}
        app.extensions[EXTENSION_KEY] = state
    return state


def compute(fn, *args):
    """fn(*args) off the event loop within PROCTOR_INFERENCE_TIMEOUT_S."""
    return run_blocking(fn, *args, timeout_s=float(current_app.config["PROCTOR_INFERENCE_TIMEOUT_S"]))


def enrol(image_bgr):
    """The FaceIdentity enrolment of a registration photo; TimeoutError when the server is busy."""
    with vision()["identity"].borrow() as identity:
        return compute(identity.enrol, image_bgr)


def presentation_check(cfg):
    """The presentation-attack check (a face on a screen or a printed photo), or None when
    PA_CHECK_ENABLED is off. It holds only the config, so making one per request costs nothing."""
    if not bool(cfg.PA_CHECK_ENABLED):
        return None
    from presentation_attack import PresentationAttackCheck

    return PresentationAttackCheck(cfg)


def measure_capture(frame, enrolled, config=None):
    """(face observation, distance to the enrolment or None, PresentationResult or None) for one
    live capture.

    One face analysis serves every check: its box is embedded (identity) and judged for a device's
    or a print's border around it (presentation attack, when PA_CHECK_ENABLED), and its pose and
    eyes feed liveness; a frame with several faces counts for none of them.
    """
    pools = vision()
    check = presentation_check(pools["config"])

    def work(analyzer, identity):
        observation = analyzer.analyze(frame)
        if observation.face_count != 1 or observation.box is None:
            return observation, None, None
        live = identity.embed(frame, observation.box)
        if live is None:
            return observation, None, None
        presentation = None
        if check is not None:
            try:
                presentation = check.assess(frame, observation.box, observation.landmarks)
            except ValueError as exc:  # a face box too small to judge: identity alone decides this frame
                log.warning("presentation-attack check skipped: %s", exc)
        return observation, identity.distance(enrolled, live), presentation

    with pools["analyzer"].borrow() as analyzer, pools["identity"].borrow() as identity:
        return compute(work, analyzer, identity)


class Attempt:
    """One student's confirmation attempt for one exam: frames matched, liveness, outcome."""

    def __init__(self, liveness_check):
        self.id = uuid.uuid4().hex
        self.liveness = liveness_check
        self.matched = 0
        self.mismatched = 0
        self.no_face = 0
        self.spoofed = 0  # frames refused as a face on a screen or a printed photo (also counted in mismatched)
        self.best_distance: float | None = None
        self.live_reason = ""
        self.live_passed = False
        self.refused: str | None = None
        self.refused_kind: str | None = None  # "mismatch" or "spoof" (a face on a screen or a photo)
        self.touched = time.monotonic()
        self.lock = threading.Lock()


_attempts: dict[tuple[int, int], Attempt] = {}
_attempts_lock = threading.Lock()


def attempt_for(student_id: int, exam_id: int, restart: bool) -> Attempt:
    from face_liveness import LivenessCheck

    now = time.monotonic()
    with _attempts_lock:
        for key in [k for k, a in _attempts.items() if now - a.touched > ATTEMPT_IDLE_S]:
            del _attempts[key]
        att = _attempts.get((student_id, exam_id))
        if att is None or restart:
            att = Attempt(LivenessCheck(vision()["config"]))
            _attempts[(student_id, exam_id)] = att
        att.touched = now
        return att
