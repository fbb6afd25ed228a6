"""What a proctor sees of a student: the HUD drawn on the analysed camera frame, only when looked at.

The workers return observations, not pictures (proctor/live/pipeline.py). The runtime keeps the
camera frame each result was computed on (its JPEG bytes as the page sent them) and this module
draws the HUD on it when somebody asks: the live view (MJPEG or snapshot). The drawing is cached
per frame and per HUD content, so several viewers of one student share one drawing, and a student
nobody watches costs no drawing and no encoding.

A violation's evidence snapshot is drawn once, when the violation is stored, on the frame where its
reason is visible (an EvidenceShot: the frame and that frame's own observations): for the detector's
rules the frame the detector ran on, with its boxes; for the others the frame whose result fired it
(evidence_shot chooses). Per frame the runtime only keeps references (no decoding, no encoding).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

VIEW_JPEG_QUALITY = 80
DRAW_TIMEOUT_S = 10.0  # a view's drawing off the event loop that takes longer is given up (the raw frame is shown)


@dataclass(frozen=True)
class LiveView:
    jpeg: bytes
    kind: str        # "processed" (with HUD overlays) or "raw"
    age_s: float
    status: dict


def risk_order(row: dict):
    """Sort key of the dashboard: the status's `risk` (suspicion score, warnings) descending, then name.
    The page re-sorts live updates by the same `risk` list, so the weighting lives here only."""
    return tuple(-v for v in row["status"].get("risk", (0.0, 0))) + (row["name"],)


def frame_pixels(frame) -> np.ndarray | None:
    """The frame as BGR pixels (decoded from its JPEG when that is what it holds)."""
    if frame.image is not None:
        return frame.image
    if frame.jpeg is None:
        return None
    return cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)


def encode_jpeg(image: np.ndarray, quality: int = VIEW_JPEG_QUALITY) -> bytes | None:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buf.tobytes() if ok else None


def frame_jpeg(frame) -> bytes | None:
    """The frame as JPEG bytes: the page's own bytes when it sent a JPEG (no re-encoding)."""
    if frame.jpeg is not None:
        return frame.jpeg
    return encode_jpeg(frame.image) if frame.image is not None else None


def hud_status(stream) -> dict:
    """The keys vision_ui.draw_hud reads (its docstring): "label" names the student on the HUD. No warning
    count: drawn into the picture it is stale by the time a cached thumbnail or a snapshot is seen (the
    card and the student's page show the live count)."""
    frame = stream.last_frame
    return {"label": stream.name, "session_id": stream.session_id, "seq": None if frame is None else frame.seq}


def rule_titles(names) -> tuple[str, ...]:
    """Rule names as the registry's titles ("No face"), in the given order; an unknown name as it is."""
    from config_vision import rule

    out = []
    for name in names:
        try:
            out.append(rule(str(name)).title)
        except KeyError:
            out.append(str(name))
    return tuple(out)


def active_alerts(stream) -> tuple[str, ...]:
    """What the picture's alert strip says: the rules holding now (fired and not yet ended), oldest first,
    by title. Not the warnings issued so far: those stayed on the picture after the student was back."""
    active = stream.engine.active_conditions(stream.student_id)
    return rule_titles(sorted(active, key=lambda name: active[name]))


def hud_plan(stream) -> tuple | None:
    """What processed_jpeg would serve, read from the stream at once: (key, cached JPEG or None, the
    arguments of draw_processed when it must be drawn); None before the first result. The arguments
    are the stream's values of this moment (the frame, the face, the detections: replaced, never
    changed in place), so the drawing itself can run off the event loop while the stream moves on."""
    frame = stream.last_frame
    if frame is None:
        return None
    status = hud_status(stream)
    alerts = active_alerts(stream)
    key = (frame.seq, id(frame), alerts)
    cached = stream.drawn
    if cached is not None and cached[0] == key:
        return key, cached[1], None
    return key, None, (frame, stream.last_face, stream.last_detections, status, alerts, stream.student_id)


def draw_processed(frame, face, detections, status: dict, alerts: tuple, student_id: int) -> bytes | None:
    """The frame with its HUD as JPEG (decode, draw, encode: 5-10 ms of CPU on 640x480); touches no
    shared state, so it may run in a native thread (proctor/blocking.py)."""
    image = frame_pixels(frame)
    if image is None:
        return None
    try:
        from vision_ui import draw_hud

        image = draw_hud(image, face, detections, status, list(alerts))
    except Exception:  # noqa: BLE001 - a drawing bug must not cost the proctor the picture
        log.exception("draw_hud failed for student %s; showing the plain frame", student_id)
    return encode_jpeg(image)


def processed_jpeg(stream, draw=None) -> bytes | None:
    """The stream's last analysed frame with its HUD (faces, objects, status, alerts) as JPEG; None
    before the first result. Drawn on the first call after a change, then served from the cache.
    `draw(fn, *args)` runs the drawing (default: here and now)."""
    plan = hud_plan(stream)
    if plan is None:
        return None
    key, jpeg, args = plan
    if jpeg is None:
        jpeg = draw(draw_processed, *args) if draw is not None else draw_processed(*args)
        if jpeg is not None:
            stream.drawn = (key, jpeg)
    return jpeg


def draw_off_loop(fn, *args):
    """Under eventlet, fn(*args) in eventlet's native thread pool, so that decoding, drawing and
    encoding a view (cv2 lets the GIL go) do not stall the event loop that answers every student's
    frame upload: the live grid fetches every student's picture every 2 s, and drawn on the loop
    those bursts were the frame acks' slowest 1 % (bench/README.md). Elsewhere, here and now."""
    from . import offload

    if not offload.green():
        return fn(*args)
    return offload.run_off_loop(fn, *args, timeout_s=DRAW_TIMEOUT_S)


@dataclass(frozen=True)
class EvidenceShot:
    """A frame with the observations computed on that very frame: what an evidence picture shows."""

    frame: object           # frames.Frame: the page's JPEG bytes (or pixels), never re-encoded to keep it
    face: object            # face_pipeline.FaceObservation of this frame, or None
    detections: object      # the detector's result on this frame (after ObjectEvidence), or None: not run on it
    t: float                # the frame's time


def sighted_banned(detections, banned_class_ids) -> bool:
    """Whether this detector run itself saw a prohibited object (or a phone at the ear), before
    ObjectEvidence carries earlier sightings forward."""
    if detections is None:
        return False
    banned = frozenset(int(c) for c in banned_class_ids)
    return bool(detections.phone_at_ear) or any(int(d.class_id) in banned for d in detections.items)


def evidence_shot(stream, rule: str, details: dict) -> EvidenceShot | None:
    """The frame that shows why `rule` fired. PROHIBITED_OBJECT: the latest frame on which the detector
    itself saw the object (its boxes are that frame's), else the latest detector frame; MULTIPLE_FACES
    counted from persons (not faces): the latest detector frame; every other rule: the frame whose
    result fired it, with the detector's boxes only when the detector ran on that frame."""
    detector_rule = rule == "PROHIBITED_OBJECT" or (
        rule == "MULTIPLE_FACES" and (details.get("persons") or 0) > 1 and (details.get("face_count") or 0) <= 1)
    if detector_rule:
        shot = (stream.object_frame if rule == "PROHIBITED_OBJECT" else None) or stream.detector_frame
        if shot is not None:
            return shot
    frame = stream.last_frame
    if frame is None:
        return None
    ran = stream.detector_frame
    dets = ran.detections if ran is not None and ran.frame is frame else None
    return EvidenceShot(frame, stream.last_face, dets, frame.server_ts)


def draw_evidence_jpeg(shot: EvidenceShot, rule: str, details: dict, fired_t: float, label: str | None,
                       student_id: int) -> bytes | None:
    """The evidence picture (vision_ui.draw_evidence) as JPEG; decode, draw, encode: touches no shared
    state. A drawing bug gives the plain frame rather than no evidence."""
    image = frame_pixels(shot.frame)
    if image is None:
        return None
    try:
        from vision_ui import draw_evidence

        image = draw_evidence(image, shot.face, shot.detections, rule, details, shot.t, fired_t, label)
    except Exception:  # noqa: BLE001 - the evidence is kept whatever the drawing does
        log.exception("draw_evidence failed for student %s rule %s; storing the plain frame", student_id, rule)
    return encode_jpeg(image, 90)


def raw_jpeg(frame, cache: dict) -> bytes | None:
    """The raw frame as JPEG, encoded at most once per frame (`cache`: student id -> ((student, seq), jpeg))."""
    if frame.jpeg is not None:
        return frame.jpeg
    key = (frame.student_id, frame.seq)
    cached = cache.get(frame.student_id)
    if cached is not None and cached[0] == key:
        return cached[1]
    jpeg = encode_jpeg(frame.image, 75)
    if jpeg is None:
        return None
    cache[frame.student_id] = (key, jpeg)
    return cache[frame.student_id][1]


class LiveViews:
    """What the runtime shows of its students (a mixin of LiveRuntime). Provided by LiveRuntime:
    _streams, slots, _raw_cache, _student_now, _reading."""

    def latest_view(self, student_id: int) -> LiveView | None:
        """The newest processed frame (HUD drawn), else the newest raw JPEG; None when there is nothing yet."""
        with self._reading():
            stream = self._streams.get(student_id)
            plan = hud_plan(stream) if stream is not None else None
        if plan is not None:
            key, jpeg, args = plan
            if jpeg is None:  # drawn outside the runtime's lock, off the event loop
                try:
                    jpeg = draw_off_loop(draw_processed, *args)
                except TimeoutError:
                    log.error("drawing student %s's view took over %g s; showing the raw frame", student_id,
                              DRAW_TIMEOUT_S)
                if jpeg is not None and (stream.drawn is None or stream.drawn[0] != key):
                    stream.drawn = (key, jpeg)
            if jpeg is not None:
                return LiveView(jpeg, "processed", time.monotonic() - stream.processed_mono, self.status(student_id))
        frame = self.slots.latest(student_id)
        if frame is None:
            return None
        jpeg = raw_jpeg(frame, self._raw_cache)
        if jpeg is None:
            return None
        return LiveView(jpeg, "raw", time.monotonic() - frame.received_mono, self.status(student_id))

    def status(self, student_id: int) -> dict:
        with self._reading() as locked:
            stream = self._streams.get(student_id)
            if stream is None:
                return {"student_id": student_id, "session_id": None, "active": False}
            try:
                return stream.status(self._student_now(stream), time.monotonic(), self.slots.latest(student_id),
                                     self.slots.stats(student_id).as_dict())
            except RuntimeError:  # a torn read without the lock (threading mode): say so, do not fail
                if locked:
                    raise
                return {"student_id": student_id, "session_id": stream.session_id, "active": True, "stale": True}

    def active_students(self) -> list[dict]:
        with self._reading():
            streams = list(self._streams.values())
            rows = []
            for s in streams:
                st = self.status(s.student_id)
                rows.append({"student_id": s.student_id, "name": s.name, "session_id": s.session_id,
                             "exam_id": s.exam_id, "exam_title": s.exam_title, "status": st})
        rows.sort(key=risk_order)
        return rows

