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
