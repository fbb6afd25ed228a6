"""FrameJob and FrameResult as bytes for the distributed mode (proctor/live/remote.py, proctor/tasks.py).

JSON, never pickle: whoever can write to the broker must not be able to run code in a web process
or a worker by placing a crafted message. A job is one line of JSON, a newline, then the camera's
JPEG bytes as they came (no base64: a frame is 20-60 KB). A result is one JSON object.

    data = dump_job(job);      job = load_job(data)
    data = dump_result(res, worker);   kind, res_or_student, worker = load_message(data)

A malformed message raises WireError (the caller drops it and logs); nothing else is trusted in
it beyond its shape: the runtime treats a result as what a worker saw, exactly as it does for a
result from its own worker processes.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from .pipeline import FrameJob, FrameResult

WIRE_VERSION = 1


class WireError(ValueError):
    """A message that is not a job or result of this version."""


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise WireError("expected base64 text")
    return base64.b64decode(text.encode("ascii"), validate=True)


def dump_job(job: FrameJob, sent_wall: float) -> bytes:
    """``sent_wall`` (time.time() when handed over) lets a worker refuse a frame that waited too long."""
    if job.jpeg is None:
        raise WireError("a job for a remote worker carries the camera's JPEG bytes")
    head = {
        "v": WIRE_VERSION, "student_id": int(job.student_id), "session_id": int(job.session_id),
        "seq": int(job.seq), "frame_ts": float(job.frame_ts), "received_mono": float(job.received_mono),
        "run_detector": bool(job.run_detector), "identity_embedding": _b64(job.identity_embedding),
        "vision_overrides": dict(job.vision_overrides or {}), "sent_wall": float(sent_wall),
    }
    return json.dumps(head, separators=(",", ":")).encode("utf-8") + b"\n" + bytes(job.jpeg)


def load_job(data: bytes) -> tuple[FrameJob, float]:
    """The job and when it was handed over (wall clock of the sender)."""
    head, sep, jpeg = bytes(data).partition(b"\n")
    if not sep or not jpeg:
        raise WireError("a job is a JSON line then the JPEG bytes")
    try:
        h = json.loads(head)
        if h.get("v") != WIRE_VERSION:
            raise WireError(f"job version {h.get('v')!r}, this code reads {WIRE_VERSION}")
        if not isinstance(h.get("vision_overrides"), dict):
            raise WireError("vision_overrides must be an object")
        job = FrameJob(
            student_id=int(h["student_id"]), session_id=int(h["session_id"]), seq=int(h["seq"]),
            frame_ts=float(h["frame_ts"]), received_mono=float(h["received_mono"]), jpeg=jpeg,
            run_detector=bool(h["run_detector"]), identity_embedding=_unb64(h.get("identity_embedding")),
            vision_overrides=h["vision_overrides"],
        )
        return job, float(h["sent_wall"])
    except WireError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WireError(f"bad job: {exc}") from None


# The web side reads the landmarks only to draw them (vision_ui.FaceAnnotator draws about 120 of the
# 478): a result carries every LANDMARK_STEP-th point to 0.1 px, a fifth of the bytes to encode, send
# and parse (the 478 pairs were most of a result's size).
LANDMARK_STEP = 4


def _face_dict(face) -> dict | None:
    if face is None:
        return None
    from dataclasses import fields

    body = {f.name: getattr(face, f.name) for f in fields(face) if f.name != "landmarks"}
    body["landmarks"] = [[round(x, 1), round(y, 1)] for x, y in face.landmarks[::LANDMARK_STEP]]
    return body


def _tuple_box(box) -> tuple | None:
    return None if box is None else tuple(box)


def _face_from(d: Any):
    if d is None:
        return None
    from face_pipeline import FaceObservation

    if not isinstance(d, dict):
        raise WireError("face must be an object")
    d = dict(d)
    d["box"] = _tuple_box(d.get("box"))
    d["face_boxes"] = tuple(tuple(b) for b in d.get("face_boxes") or ())
    d["landmarks"] = tuple((float(x), float(y)) for x, y in d.get("landmarks") or ())
    return FaceObservation(**d)


# The hands of the hand-guided look (hand_pipeline.Hand) travel as [x1, y1, x2, y2, score] to 0.1 px
# (score to 0.001), without their 21 landmarks: the HUD draws only their boxes. A result carries at
# most WIRE_MAX_HANDS of them (hand_pipeline finds at most max(MAX_HANDS, 2 * HAND_LOOK_MAX_CROPS) = 16).
WIRE_MAX_HANDS = 16


def _detections_dict(dets) -> dict | None:
    if dets is None:
        return None
    return {"backend": dets.backend, "frame_size": list(dets.frame_size),
            "items": [[d.class_id, d.label, d.score, list(d.box)] for d in dets.items],
            "phone_at_ear": bool(dets.phone_at_ear),
            "hands": [[round(float(v), 1) for v in h.box] + [round(float(h.score), 3)] for h in dets.hands]}


def _hands_from(raw: Any) -> tuple:
    import math

    from hand_pipeline import Hand

    if not isinstance(raw, list) or len(raw) > WIRE_MAX_HANDS:
        raise WireError(f"hands must be a list of at most {WIRE_MAX_HANDS}")
    hands = []
    for h in raw:
        if not isinstance(h, list) or len(h) != 5 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in h):
            raise WireError("a hand is [x1, y1, x2, y2, score] of finite numbers")
        x1, y1, x2, y2, score = (float(v) for v in h)
        if x2 < x1 or y2 < y1 or not 0.0 <= score <= 1.0:
            raise WireError("a hand's box must have x2 >= x1, y2 >= y1 and a score in 0-1")
        hands.append(Hand(box=(x1, y1, x2, y2), score=score))
    return tuple(hands)


def _detections_from(d: Any):
    if d is None:
        return None
    from person_pipeline import Detection, Detections

    if not isinstance(d, dict):
        raise WireError("detections must be an object")
    items = tuple(Detection(int(c), str(label), float(score), tuple(float(v) for v in box))
                  for c, label, score, box in d["items"])
    at_ear = d.get("phone_at_ear", False)  # absent from a worker of an earlier release: no signal
    if not isinstance(at_ear, bool):
        raise WireError("phone_at_ear must be true or false")
    return Detections(items=items, backend=str(d["backend"]), frame_size=tuple(int(v) for v in d["frame_size"]),
                      hands=_hands_from(d.get("hands", [])), phone_at_ear=at_ear)


_PLAIN = ("student_id", "session_id", "seq", "frame_ts", "received_mono", "worker_id", "detector_ran",
          "identity_ran", "identity_face_found", "identity_distance", "identity_match", "frame_mean",
          "frame_diff", "lower_motion", "timings_ms", "errors", "done_mono")


def dump_result(res: FrameResult, worker: str) -> bytes:
    body = {name: getattr(res, name) for name in _PLAIN}
    body.update(identity_spoof=res.identity_spoof, identity_details=dict(res.identity_details or {}),
                identity_skipped=res.identity_skipped)
    body.update(v=WIRE_VERSION, worker=str(worker), face=_face_dict(res.face),
                detections=_detections_dict(res.detections),
                frame_size=None if res.frame_size is None else list(res.frame_size))
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def dump_skipped(student_id: int, seq: int, worker: str) -> bytes:
    """A worker's answer for a frame it did not analyse (it waited too long)."""
    return json.dumps({"v": WIRE_VERSION, "skipped": True, "student_id": int(student_id), "seq": int(seq),
                       "worker": str(worker)}, separators=(",", ":")).encode("utf-8")


def load_message(data: bytes) -> tuple[str, FrameResult | int, str]:
    """("result", FrameResult, worker) or ("skipped", student_id, worker)."""
    try:
        b = json.loads(data)
        if not isinstance(b, dict) or b.get("v") != WIRE_VERSION:
            raise WireError("not a message of this version")
        if b.get("skipped") is True:
            return "skipped", int(b["student_id"]), str(b["worker"])
        return "result", _result_from(b), str(b["worker"])
    except WireError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WireError(f"bad result: {exc}") from None


def _result_from(b: dict) -> FrameResult:
    res = FrameResult(int(b["student_id"]), int(b["session_id"]), int(b["seq"]), float(b["frame_ts"]),
                      float(b["received_mono"]), int(b["worker_id"]))
    for name in _PLAIN[6:]:
        setattr(res, name, b[name])
    if not isinstance(res.timings_ms, dict) or not isinstance(res.errors, list):
        raise WireError("timings_ms must be an object and errors a list")
    res.identity_spoof, res.identity_details = _identity_spoof_from(b)
    res.identity_skipped = _identity_skipped_from(b)
    res.face = _face_from(b["face"])
    res.detections = _detections_from(b["detections"])
    res.frame_size = None if b["frame_size"] is None else tuple(int(v) for v in b["frame_size"])
    return res


# A spoof verdict's details are presentation_attack's reason (one sentence) and score; nothing else is read.
SPOOF_REASON_MAX_CHARS = 300


def _identity_skipped_from(b: dict) -> str | None:
    """Why the identity check judged no face (face_identity.unjudgeable_reason: one short sentence), or None;
    absent from a worker of an earlier release: judged."""
    skipped = b.get("identity_skipped")
    if skipped is not None and not isinstance(skipped, str):
        raise WireError("identity_skipped must be text or null")
    return None if skipped is None else skipped[:SPOOF_REASON_MAX_CHARS]


def _identity_spoof_from(b: dict) -> tuple[bool | None, dict]:
    """identity_spoof and identity_details of a result (absent from a worker of an earlier release: not judged)."""
    import math

    spoof, details = b.get("identity_spoof"), b.get("identity_details") or {}
    if spoof is not None and not isinstance(spoof, bool):
        raise WireError("identity_spoof must be true, false or null")
    if not isinstance(details, dict):
        raise WireError("identity_details must be an object")
    out: dict = {}
    if "spoof_reason" in details:
        if not isinstance(details["spoof_reason"], str):
            raise WireError("identity_details.spoof_reason must be text")
        out["spoof_reason"] = details["spoof_reason"][:SPOOF_REASON_MAX_CHARS]
    if "spoof_score" in details:
        score = details["spoof_score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise WireError("identity_details.spoof_score must be a finite number")
        out["spoof_score"] = float(score)
    return spoof, out
