"""A face on a phone screen at the live identity check (presentation_attack.py wired into the worker's
_check_identity): the real pipeline on b_1 (a phone showing a face, held to the webcam) reports
identity_spoof and no match, even against a template enrolled from that very picture (so identity alone
would match it); a real face still matches; the runtime turns a spoof into IDENTITY_MISMATCH whose
details say why."""
from __future__ import annotations

import time

import cv2
import pytest

from proctor.live.pipeline import FrameJob, FramePipeline
from tests.live import fit, load_photo

SPOOF = "b_1_phone_held_to_webcam.jpg"  # a webcam capture (480 x 640, portrait) as it came


@pytest.fixture(scope="module")
def config():
    from config_vision import load_vision_config

    return load_vision_config(env={})


@pytest.fixture(scope="module")
def templates(config):
    from face_identity import FaceIdentity, embedding_to_bytes

    identity = FaceIdentity(config)
    try:
        out = {}
        for name in (SPOOF, "identity/obama.jpg"):
            enrolment = identity.enrol(load_photo(name))
            assert enrolment.ok, (name, enrolment.error)
            out[name] = embedding_to_bytes(enrolment.embedding)
        return out
    finally:
        identity.close()


@pytest.fixture(scope="module")
def pipeline(config):
    p = FramePipeline(config)
    yield p
    p.close()


def _jpeg(img, quality=80) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    assert ok
    return buf.tobytes()


def _check(pipeline, student, img, embedding, overrides=None, detector=False):
    return pipeline.process(FrameJob(student, student * 10, 1, 1000.0, time.monotonic(), jpeg=_jpeg(img),
                                     run_detector=detector, identity_embedding=embedding,
                                     vision_overrides=overrides or {}))


def test_a_face_on_a_phone_is_never_the_student(pipeline, templates):
    """Enrolled from b_1 itself, so the identity distance is about 0: only the presentation check refuses it."""
    res = _check(pipeline, 101, load_photo(SPOOF), templates[SPOOF])
    assert res.errors == [] and res.identity_ran and res.identity_face_found
    assert res.identity_distance is not None and res.identity_distance < 0.2  # identity alone: a match
    assert res.identity_spoof is True and res.identity_match is False
    assert "border" in res.identity_details["spoof_reason"] and res.identity_details["spoof_score"] >= 0.7
    assert "presentation" in res.timings_ms


def test_the_switch_turns_the_check_off(pipeline, templates):
    res = _check(pipeline, 102, load_photo(SPOOF), templates[SPOOF], overrides={"PA_CHECK_ENABLED": False})
    assert res.identity_face_found and res.identity_match is True
    assert res.identity_spoof is None and res.identity_details == {} and "presentation" not in res.timings_ms


@pytest.mark.parametrize("name", ["identity/obama2.jpg", "identity/obama.jpg"])
def test_a_real_face_is_judged_live_and_still_matches(pipeline, templates, name):
    res = _check(pipeline, 103 + len(name), fit(load_photo(name)), templates["identity/obama.jpg"])
    assert res.errors == [] and res.identity_face_found
    assert res.identity_spoof is False and res.identity_match is True and res.identity_details == {}


def test_no_presentation_check_without_an_identity_check(pipeline):
    """The check costs 50-100 ms: it runs with the identity check (every IDENTITY_CHECK_EVERY_S), never per frame."""
    res = pipeline.process(FrameJob(110, 1100, 1, 1000.0, time.monotonic(), jpeg=_jpeg(load_photo(SPOOF)),
                                    run_detector=False))
    assert res.face is not None and res.face.face_detected
    assert not res.identity_ran and res.identity_spoof is None and "presentation" not in res.timings_ms


# --- the runtime: a spoof at the identity check is IDENTITY_MISMATCH with its own cause ---------------

def test_a_spoof_fires_identity_mismatch_saying_why(tmp_path):
    from decision_engine import SPOOF_EXPLANATION
    from face_pipeline import FaceObservation
    from proctor.live import FrameResult
    from tests.live.test_runtime_unit import STUDENT, MemoryStore, feed, make_runtime

    store = MemoryStore()
    store.add_session(embedding=b"\0" * 512)
    box = (200, 100, 400, 340)

    def respond(job):
        checked = job.identity_embedding is not None
        return FrameResult(job.student_id, job.session_id, job.seq, job.frame_ts, job.received_mono, worker_id=0,
                           face=FaceObservation(face_detected=True, face_count=1, box=box), frame_mean=90.0,
                           frame_diff=3.0, identity_ran=checked, identity_face_found=checked or None,
                           identity_distance=0.05 if checked else None, identity_match=False if checked else None,
                           identity_spoof=True if checked else None,
                           identity_details={"spoof_reason": "a straight-edged border", "spoof_score": 0.99} if checked else {})

    rt, _ = make_runtime(store, tmp_path, respond=respond)
    for i in range(12):
        feed(rt, 500.0 + i * 0.5)
    found = [v for v in store.violations.values() if v.type == "IDENTITY_MISMATCH"]
    assert len(found) == 1, store.violations
    assert found[0].details["cause"] == "spoof" and found[0].details["explanation"] == SPOOF_EXPLANATION
    assert SPOOF_EXPLANATION == "face on a screen or photo"
    ident = rt.status(STUDENT)["identity"]
    assert ident["spoof"] is True and ident["match"] is False
    # Checked, then once more IDENTITY_RECHECK_MIN_S later to agree (IDENTITY_MISMATCH_MIN_CHECKS), not per frame.
    assert [j.frame_ts for j in rt.pool.jobs if j.identity_embedding is not None] == [500.0, 502.0]


def test_a_different_person_is_a_plain_mismatch(tmp_path):
    from face_pipeline import FaceObservation
    from proctor.live import FrameResult
    from tests.live.test_runtime_unit import STUDENT, MemoryStore, feed, make_runtime

    store = MemoryStore()
    store.add_session(embedding=b"\0" * 512)

    def respond(job):
        checked = job.identity_embedding is not None
        return FrameResult(job.student_id, job.session_id, job.seq, job.frame_ts, job.received_mono, worker_id=0,
                           face=FaceObservation(face_detected=True, face_count=1, box=(200, 100, 400, 340)),
                           frame_mean=90.0, frame_diff=3.0, identity_ran=checked, identity_face_found=checked or None,
                           identity_distance=0.7 if checked else None, identity_match=False if checked else None,
                           identity_spoof=False if checked else None)

    rt, _ = make_runtime(store, tmp_path, respond=respond)
    for i in range(12):
        feed(rt, 500.0 + i * 0.5)
    found = [v for v in store.violations.values() if v.type == "IDENTITY_MISMATCH"]
    assert len(found) == 1 and "cause" not in found[0].details and "explanation" not in found[0].details
    assert rt.status(STUDENT)["identity"]["spoof"] is False
