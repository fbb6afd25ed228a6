"""proctor/live/wire.py: jobs and results of the distributed mode as JSON, read back exactly.

Real results (the real pipeline on real photos) go through dump -> load and must come back equal,
field by field; anything that is not such a message is refused with WireError, never unpickled.
"""
from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from proctor.live.pipeline import FrameJob, FramePipeline
from proctor.live.wire import WireError, dump_job, dump_result, dump_skipped, load_job, load_message
from tests.live import fit, load_photo


@pytest.fixture(scope="module")
def pipeline():
    from config_vision import load_vision_config

    p = FramePipeline(load_vision_config(env={}))
    yield p
    p.close()


def _jpeg(name: str) -> bytes:
    return cv2.imencode(".jpg", fit(load_photo(name)), [int(cv2.IMWRITE_JPEG_QUALITY), 80])[1].tobytes()


def test_job_round_trip_keeps_every_field_and_the_jpeg_bytes():
    embedding = np.arange(128, dtype=np.float64).tobytes()
    job = FrameJob(7, 70, 12, 1234.5, 99.25, jpeg=_jpeg("a_1_webcam_woman_T1.jpg"), run_detector=False,
                   identity_embedding=embedding, vision_overrides={"CELL_PHONE_CONFIDENCE": 0.3})
    back, sent = load_job(dump_job(job, 1700000000.5))
    assert sent == 1700000000.5
    for name in ("student_id", "session_id", "seq", "frame_ts", "received_mono", "run_detector",
                 "identity_embedding", "vision_overrides", "jpeg"):
        assert getattr(back, name) == getattr(job, name), name
    assert back.image is None


@pytest.mark.parametrize("photo", ["a_1_webcam_woman_T1.jpg", "e_5_zidane_two_men.jpg", "f_5_living_room_empty.jpg"])
def test_real_results_come_back_equal(pipeline, photo):
    job = FrameJob(3, 30, 1, 10.0, time.monotonic(), jpeg=_jpeg(photo), run_detector=True)
    res = pipeline.process(job)
    kind, back, worker = load_message(dump_result(res, "w1@host"))
    assert (kind, worker) == ("result", "w1@host")
    from dataclasses import replace

    from proctor.live.wire import LANDMARK_STEP

    # FaceObservation: every field and box; the landmarks thinned to what the HUD draws, to 0.1 px.
    assert replace(back.face, landmarks=()) == replace(res.face, landmarks=())
    thinned = res.face.landmarks[::LANDMARK_STEP]
    assert len(back.face.landmarks) == len(thinned) and (len(thinned) >= 100 or not res.face.landmarks)
    assert all(abs(a - c) <= 0.05 + 1e-9 and abs(b - d) <= 0.05 + 1e-9
               for (a, b), (c, d) in zip(back.face.landmarks, thinned))
    assert back.detections == res.detections
    for name in ("student_id", "session_id", "seq", "frame_ts", "received_mono", "detector_ran", "frame_mean",
                 "frame_diff", "lower_motion", "frame_size", "timings_ms", "errors", "identity_ran"):
        assert getattr(back, name) == getattr(res, name), name
    assert res.face is not None and res.detections is not None  # the photo really went through both stages


def test_phone_at_ear_and_hands_come_back(pipeline):
    """b_3 (women on phones): the detector's phone-at-ear signal and its hands survive the wire; the
    hands as boxes to 0.1 px without their landmarks (the HUD draws boxes only)."""
    res = pipeline.process(FrameJob(3, 30, 2, 11.0, time.monotonic(),
                                    jpeg=_jpeg("b_3_coco536_women_on_phones.jpg"), run_detector=True))
    assert res.detections.phone_at_ear is True and len(res.detections.hands) >= 2, res.detections
    _, back, _ = load_message(dump_result(res, "w1@host"))
    assert back.detections == res.detections and back.detections.phone_at_ear is True
    assert len(back.detections.hands) == len(res.detections.hands)
    for got, sent in zip(back.detections.hands, res.detections.hands):
        assert all(abs(a - b) <= 0.05 + 1e-9 for a, b in zip(got.box, sent.box)), (got.box, sent.box)
        assert abs(got.score - sent.score) <= 0.0005 + 1e-9 and got.landmarks == ()
    # A message from a worker that does not send the signal yet: no signal, no hands.
    body = json.loads(dump_result(res, "w1@host"))
    del body["detections"]["phone_at_ear"], body["detections"]["hands"]
    _, old, _ = load_message(json.dumps(body).encode())
    assert old.detections.phone_at_ear is False and old.detections.hands == ()
    assert old.detections.items == res.detections.items


def _result_with_a_hand() -> dict:
    """A result message as a worker writes it, with one hand and no phone at the ear."""
    from hand_pipeline import Hand
    from person_pipeline import Detections
    from proctor.live.pipeline import FrameResult

    res = FrameResult(1, 1, 1, 1.0, 1.0, 0)
    res.detector_ran, res.frame_size = True, (640, 480)
    res.detections = Detections((), "centernet", (640, 480), hands=(Hand((1.0, 2.0, 3.0, 4.0), 0.9),))
    return json.loads(dump_result(res, "w"))


@pytest.mark.parametrize("field,value", [
    ("phone_at_ear", "yes"), ("phone_at_ear", 1), ("phone_at_ear", None),
    ("hands", {"x": 1}), ("hands", [[1, 2, 3, 4]]), ("hands", [[1, 2, 3, 4, 0.9, 6]]),
    ("hands", [[10, 2, 3, 4, 0.9]]),                       # x2 < x1
    ("hands", [[1, 2, 3, 4, 1.5]]),                        # score outside 0-1
    ("hands", [[1, 2, 3, 4, True]]), ("hands", [["1", 2, 3, 4, 0.9]]),
    ("hands", [[1, 2, 3, 4, 0.9]] * 17),                   # more hands than a worker finds
])
def test_malformed_phone_at_ear_and_hands_are_refused(field, value):
    body = _result_with_a_hand()
    kind, good, _ = load_message(json.dumps(body).encode())  # the message is valid as it stands
    assert kind == "result" and [h.box for h in good.detections.hands] == [(1.0, 2.0, 3.0, 4.0)]
    body["detections"][field] = value
    with pytest.raises(WireError):
        load_message(json.dumps(body).encode())


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_hand_boxes_are_refused(number):
    data = json.dumps(_result_with_a_hand()).replace("[1.0, 2.0, 3.0, 4.0, 0.9]", f"[1.0, 2.0, {number}, 4.0, 0.9]")
    assert number in data  # Python's json reads NaN and Infinity: refused all the same
    with pytest.raises(WireError):
        load_message(data.encode())


def test_skipped_message():
    assert load_message(dump_skipped(5, 41, "w2@h")) == ("skipped", 5, "w2@h")


@pytest.mark.parametrize("data", [
    b"", b"not json", b"[]", b'{"v": 99}', b'{"v": 1, "student_id": "x"}',
    b'{"v": 1, "skipped": true, "student_id": 1}',  # no worker
    json.dumps({"v": 1, "worker": "w", "student_id": 1, "session_id": 1, "seq": 1, "frame_ts": 1, "received_mono": 1,
                "worker_id": 0, "face": "a face", "detections": None, "frame_size": None}).encode(),
    b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.",  # a pickle: refused
])
def test_malformed_results_are_refused(data):
    with pytest.raises(WireError):
        load_message(data)


@pytest.mark.parametrize("data", [b"", b"no newline", b'{"v": 1}\n', b'{"v": 2, "x": 1}\nJPEG',
                                  b'{"v": 1, "student_id": 1}\nJPEG', b'[1]\nJPEG'])
def test_malformed_jobs_are_refused(data):
    with pytest.raises(WireError):
        load_job(data)


def test_a_job_without_jpeg_bytes_is_not_sent():
    with pytest.raises(WireError):
        dump_job(FrameJob(1, 1, 1, 1.0, 1.0, image=np.zeros((4, 4, 3), np.uint8)), time.time())


def test_an_identity_spoof_comes_back(pipeline):
    """b_1 (a face on a phone held to the webcam) checked against a template of that very picture: the
    worker's identity_spoof, the refused match and the reason survive the wire."""
    from config_vision import load_vision_config
    from face_identity import FaceIdentity, embedding_to_bytes

    spoof = load_photo("b_1_phone_held_to_webcam.jpg")
    identity = FaceIdentity(load_vision_config(env={}))
    try:
        enrolment = identity.enrol(spoof)
    finally:
        identity.close()
    assert enrolment.ok, enrolment.error
    jpeg = cv2.imencode(".jpg", spoof, [int(cv2.IMWRITE_JPEG_QUALITY), 80])[1].tobytes()
    res = pipeline.process(FrameJob(4, 40, 1, 10.0, time.monotonic(), jpeg=jpeg, run_detector=False,
                                    identity_embedding=embedding_to_bytes(enrolment.embedding)))
    assert res.identity_spoof is True and res.identity_match is False and res.identity_details["spoof_reason"]
    _, back, _ = load_message(dump_result(res, "w1@host"))
    for name in ("identity_ran", "identity_face_found", "identity_distance", "identity_match", "identity_spoof",
                 "identity_details"):
        assert getattr(back, name) == getattr(res, name), name


def _result_body(**extra) -> bytes:
    return json.dumps({"v": 1, "worker": "w", "student_id": 1, "session_id": 1, "seq": 1, "frame_ts": 1.0,
                       "received_mono": 1.0, "worker_id": 0, "detector_ran": False, "identity_ran": True,
                       "identity_face_found": True, "identity_distance": 0.3, "identity_match": True,
                       "frame_mean": 90.0, "frame_diff": 2.0, "lower_motion": 0.0, "timings_ms": {}, "errors": [],
                       "done_mono": 2.0, "face": None, "detections": None, "frame_size": None, **extra}).encode()


def test_a_result_from_an_earlier_worker_has_no_spoof_verdict():
    _, res, _ = load_message(_result_body())
    assert res.identity_spoof is None and res.identity_details == {} and res.identity_match is True


@pytest.mark.parametrize("extra", [
    {"identity_spoof": "yes"}, {"identity_spoof": 1}, {"identity_details": [1]},
    {"identity_spoof": True, "identity_details": {"spoof_reason": 5}},
    {"identity_spoof": True, "identity_details": {"spoof_score": "high"}},
    {"identity_spoof": True, "identity_details": {"spoof_score": float("nan")}},
])
def test_malformed_spoof_verdicts_are_refused(extra):
    with pytest.raises(WireError):
        load_message(_result_body(**extra))
