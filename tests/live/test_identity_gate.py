"""The live identity check judges only faces large and frontal enough, and IDENTITY_MISMATCH needs
several checks that agree (issue 15: a registered student whose face was small and turned got
distances of 0.50-0.52 and a mismatch).

Real photos (identity/people: 7 people), placed at a given face size into a 640x480 webcam frame, go
through the real FramePipeline (FaceMesh tracker, dlib + FaceRes); the runtime runs it in-process.
IDENTITY_MIN_FACE_PX (80) was chosen on people p01, p03, p05, p07 (the smallest size whose same-person
distances rise at most 0.03 over full size); the pairs below are from the other people (p02, p04, p06),
where a small face of the right person crosses the threshold at a size the gate refuses.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from proctor.live.pipeline import FrameJob, FramePipeline
from tests.live import live_frame, load_photo
from tests.photos import place_face

PEOPLE = "identity/people/"
TURNED = "c_1_coco446_woman_bookshelf.jpg"  # a real head turned about 47 degrees (FaceMesh's yaw)


@pytest.fixture(scope="module")
def config():
    from config_vision import load_vision_config

    return load_vision_config(env={})


@pytest.fixture(scope="module")
def identity(config):
    from face_identity import FaceIdentity

    ident = FaceIdentity(config)
    yield ident
    ident.close()


@pytest.fixture(scope="module")
def photo_face(config):
    """The main face box of a photo, found by the project's face stage in photo mode."""
    from face_pipeline import FaceAnalyzer

    analyzer = FaceAnalyzer(config, static_image_mode=True)
    cache: dict = {}

    def box_of(name):
        if name not in cache:
            obs = analyzer.analyze(load_photo(name))
            assert obs.face_detected and obs.box is not None, name
            cache[name] = obs.box
        return cache[name]

    yield box_of
    analyzer.close()


@pytest.fixture(scope="module")
def template(identity):
    from face_identity import embedding_to_bytes

    cache: dict = {}

    def enrol(name):
        if name not in cache:
            enrolment = identity.enrol(load_photo(name))
            assert enrolment.ok, (name, enrolment.error)
            cache[name] = embedding_to_bytes(enrolment.embedding)
        return cache[name]

    return enrol


def placed(photo_face, name, face_px, width=640, height=480):
    """The named photo with its face about face_px across, in a webcam frame (a student further away)."""
    return place_face(load_photo(name), photo_face(name), face_px, width, height)


@pytest.fixture(scope="module")
def pipeline(config):
    p = FramePipeline(config)
    yield p
    p.close()


def _check(pipeline, student, frame, embedding):
    return pipeline.process(FrameJob(student, student * 10, 1, 1000.0, time.monotonic(), image=frame,
                                     run_detector=False, identity_embedding=embedding))


# --- the gate's words and its settings ------------------------------------------------------------

def test_the_gate_says_why_a_face_cannot_be_judged(config):
    from face_identity import unjudgeable_reason

    assert unjudgeable_reason((100, 100, 164, 180), 0.0, 0.0, config) == "face too small: 64 px, at least 80 px needed"
    assert unjudgeable_reason((100, 100, 180, 190), 0.0, 0.0, config) is None  # 80 px: as at enrolment
    assert unjudgeable_reason((0, 0, 200, 200), -40.0, 0.0, config).startswith("face turned: yaw -40 deg")
    assert unjudgeable_reason((0, 0, 200, 200), 25.0, -30.0, config) is None  # the limits themselves pass
    assert unjudgeable_reason((0, 0, 200, 200), 0.0, -35.0, config).startswith("face turned up or down: pitch -35")
    assert unjudgeable_reason((0, 0, 200, 200), None, None, config) is None  # pose unknown: size alone


def test_mismatch_agreement_settings_are_validated():
    from config_vision import VisionConfigError, load_vision_config

    with pytest.raises(VisionConfigError, match="IDENTITY_MISMATCH_MIN_CHECKS=4 must not exceed"):
        load_vision_config(env={}, IDENTITY_MISMATCH_MIN_CHECKS=4)
    with pytest.raises(VisionConfigError, match="IDENTITY_MIN_FACE_PX"):
        load_vision_config(env={}, IDENTITY_MIN_FACE_PX=8)
    with pytest.raises(VisionConfigError, match="IDENTITY_MAX_YAW_DEG"):
        load_vision_config(env={}, IDENTITY_MAX_YAW_DEG=120)


# --- the worker's check on real photos ------------------------------------------------------------

# (enrolment, probe, face px): the same person; at this size the probe's distance crosses the threshold.
SMALL_RIGHT_PERSON = [
    ("p02_img28.jpg", "p02_img26.jpg", 56),
    ("p02_img45.jpg", "p02_img26.jpg", 56),
    ("p02_img44.jpg", "p02_img26.jpg", 56),
]


@pytest.mark.parametrize("enrolled,probe,face_px", SMALL_RIGHT_PERSON)
def test_a_small_face_of_the_right_person_gets_no_verdict(config, identity, pipeline, photo_face, template,
                                                          enrolled, probe, face_px):
    from face_identity import embedding_from_bytes

    frame = placed(photo_face, PEOPLE + probe, face_px)
    # Judged anyway (no gate), this face would be refused: the reported false mismatch.
    ungated = identity.verify(embedding_from_bytes(template(PEOPLE + enrolled)), frame)
    assert ungated.face_found and ungated.match is False, ungated.distance
    res = _check(pipeline, 1, frame, template(PEOPLE + enrolled))
    assert res.errors == [] and res.identity_ran and res.identity_face_found
    assert res.identity_skipped is not None and res.identity_skipped.startswith("face too small: "), res.identity_skipped
    assert res.identity_match is None and res.identity_distance is None and res.identity_spoof is None
    # Close enough to the camera, the same photo is judged, and matches.
    near = _check(pipeline, 2, placed(photo_face, PEOPLE + probe, 160), template(PEOPLE + enrolled))
    assert near.identity_skipped is None and near.identity_match is True, near.identity_distance
    assert near.identity_distance <= config.IDENTITY_DISTANCE_THRESHOLD - 0.03  # margin, at 160 px


def test_a_turned_head_gets_no_verdict(pipeline, template):
    """c_1: a real head turned about 47 degrees, enlarged so that its size alone would pass the gate."""
    img = load_photo(TURNED)
    big = cv2.resize(img, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
    frame = np.ascontiguousarray(big[140:620, 170:810])  # 640x480 around the face (box about 124 px)
    res = _check(pipeline, 3, frame, template(PEOPLE + "p06_img20.jpg"))
    assert res.errors == [] and res.identity_face_found and res.face.box is not None
    assert min(res.face.box[2] - res.face.box[0], res.face.box[3] - res.face.box[1]) >= 80
    assert res.identity_skipped is not None and res.identity_skipped.startswith("face turned: yaw "), res.identity_skipped
    assert res.identity_match is None and res.identity_distance is None


@pytest.mark.parametrize("enrolled,probe", [("p04_img15.jpg", "p06_img21.jpg"), ("p06_img20.jpg", "p02_img42.jpg")])
def test_an_impostor_at_a_judgeable_size_is_judged_a_mismatch(config, pipeline, photo_face, template, enrolled, probe):
    res = _check(pipeline, 4, placed(photo_face, PEOPLE + probe, 96), template(PEOPLE + enrolled))
    assert res.identity_skipped is None and res.identity_match is False
    assert res.identity_distance > config.IDENTITY_DISTANCE_THRESHOLD


# --- the runtime: no verdict waits for a better frame; a mismatch needs checks that agree ----------

def _runtime(tmp_path, pipeline, embedding, **vision):
    from tests.live.test_runtime_unit import MemoryStore, make_runtime

    store = MemoryStore()
    store.add_session(embedding=embedding)
    rt, _ = make_runtime(store, tmp_path, respond=pipeline.process, **vision)
    return rt, store


def _feed(rt, frame, t):
    from tests.live.test_runtime_unit import SESSION, STUDENT

    rt.submit_frame(STUDENT, SESSION, frame, server_ts=t)
    rt.step()


def test_the_right_student_far_from_the_camera_is_never_a_mismatch(tmp_path, pipeline, photo_face, template):
    """15 s of the enrolled student's face at about 56-70 px: every frame asks again (no verdict, no full
    interval wait), the status says why, and no IDENTITY_MISMATCH; once near, the check matches at once."""
    from tests.live.test_runtime_unit import STUDENT

    rt, store = _runtime(tmp_path, pipeline, template(PEOPLE + "p02_img28.jpg"))
    far, near = placed(photo_face, PEOPLE + "p02_img26.jpg", 56), placed(photo_face, PEOPLE + "p02_img26.jpg", 160)
    t0 = 7000.0
    for i in range(30):
        _feed(rt, live_frame(far, i), t0 + i * 0.5)
    assert "IDENTITY_MISMATCH" not in [v.type for v in store.violations.values()]  # (small eyes are another rule's)
    st = rt.status(STUDENT)
    assert st["identity"]["match"] is None and st["identity"]["skipped"].startswith("face too small: ")
    assert 14.5 <= st["identity"]["skipped_for_s"] < 16  # since the first frame, as the status reads the clock
    assert st["frames"]["identity_checks"] == 0 and st["frames"]["identity_attempts"] == 30  # asked every frame
    _feed(rt, live_frame(near, 30), t0 + 15.0)  # the first judgeable frame is checked at once
    st = rt.status(STUDENT)
    assert st["identity"]["match"] is True and st["identity"]["skipped"] is None
    assert st["identity"]["skipped_for_s"] is None and st["frames"]["identity_checks"] == 1


def test_an_impostor_fires_identity_mismatch_once_two_checks_agree(tmp_path, pipeline, photo_face, template):
    from tests.live.test_runtime_unit import STUDENT

    rt, store = _runtime(tmp_path, pipeline, template(PEOPLE + "p04_img15.jpg"))
    stranger = placed(photo_face, PEOPLE + "p06_img21.jpg", 128)
    t0 = 9000.0
    for i in range(16):
        _feed(rt, live_frame(stranger, i), t0 + i * 0.5)
    checked = [round(j.frame_ts - t0, 1) for j in rt.pool.jobs if j.identity_embedding is not None]
    assert checked[:2] == [0.0, 2.0], checked  # the second check comes IDENTITY_RECHECK_MIN_S after the first
    found = [v for v in store.violations.values() if v.type == "IDENTITY_MISMATCH"]
    assert len(found) == 1, store.violations
    assert found[0].details["mismatched_checks"] == 2 and found[0].details["since"] == pytest.approx(t0 + 2.0)
    assert rt.status(STUDENT)["identity"]["match"] is False


# --- the rule: K of the last N checks, each check counted once --------------------------------------

def _engine_run(engine, checks, until, step=0.5):
    """Frames every `step` s up to `until`; `checks` maps a check's frame time to its verdict (True: match),
    which every later frame carries with that identity_t, as the runtime does."""
    from decision_engine import FrameObservation
    from face_pipeline import FaceObservation

    face = FaceObservation(True, 1, yaw_deg=0.0, pitch_deg=0.0, box=(200, 120, 400, 360))
    events, verdict, made = [], None, None
    t = 0.0
    while t < until:
        if t in checks:
            verdict, made = checks[t], t
        events += engine.evaluate("s", FrameObservation(t=t, face=face, identity_match=verdict, identity_t=made,
                                                        frame_mean=120.0, frame_diff=4.0), t)
        t = round(t + step, 6)
    return [e for e in events if e.rule == "IDENTITY_MISMATCH"]


def test_one_mismatching_check_among_matches_never_fires(config):
    from decision_engine import DecisionEngine

    checks = {0.0: True, 10.0: False, 12.0: True, 22.0: True, 32.0: False, 34.0: True, 44.0: True}
    assert _engine_run(DecisionEngine(config), checks, 60.0) == []


def test_two_agreeing_checks_fire_and_a_match_ends_it(config):
    from decision_engine import STARTED, DecisionEngine

    events = _engine_run(DecisionEngine(config), {0.0: True, 10.0: False, 12.0: False, 30.0: True}, 40.0)
    assert [(e.state, e.t) for e in events] == [(STARTED, 15.0), ("ended", 31.0)]
    assert events[0].details["mismatched_checks"] == 2 and events[0].details["of_checks"] == 3


def test_two_of_the_last_three_checks_fire_even_with_a_match_between(config):
    from decision_engine import DecisionEngine

    events = _engine_run(DecisionEngine(config), {0.0: False, 2.0: True, 12.0: False}, 20.0)
    assert [e.t for e in events if e.state == "started"] == [15.0]
    # Older mismatches drop out of the window: two matches in between, and one mismatch alone is no verdict.
    quiet = _engine_run(DecisionEngine(config), {0.0: False, 2.0: True, 12.0: True, 22.0: False}, 30.0)
    assert quiet == []


def test_one_check_alone_fires_when_the_exam_says_so(config):
    from decision_engine import DecisionEngine

    events = _engine_run(DecisionEngine(config.with_overrides(IDENTITY_MISMATCH_MIN_CHECKS=1)), {0.0: False}, 5.0)
    assert [e.t for e in events] == [3.0]


def test_a_skipped_check_keeps_the_verified_clock_and_asks_again_on_the_next_frame(tmp_path):
    """Two matches make the face verified (30 s); a check that judged no face neither breaks that nor
    waits 30 s more: the next frames ask again until one is judged, and the 30 s count from that one."""
    from face_pipeline import FaceObservation
    from proctor.live import FrameResult
    from tests.live.test_runtime_unit import STUDENT, MemoryStore, feed, make_runtime

    store = MemoryStore()
    store.add_session(embedding=b"\0" * 512)
    small_until = 41.5  # the face is too small from 40 s (the verified check's time) to here

    def respond(job):
        t = job.frame_ts - 100.0
        checked = job.identity_embedding is not None
        skipped = "face too small: 60 px, at least 80 px needed" if checked and 40.0 <= t < small_until else None
        return FrameResult(job.student_id, job.session_id, job.seq, job.frame_ts, job.received_mono, worker_id=0,
                           face=FaceObservation(face_detected=True, face_count=1, box=(200, 100, 400, 340)),
                           frame_mean=90.0, frame_diff=3.0, identity_ran=checked, identity_face_found=checked or None,
                           identity_skipped=skipped, identity_distance=0.3 if checked and not skipped else None,
                           identity_match=True if checked and not skipped else None)

    rt, _ = make_runtime(store, tmp_path, respond=respond)
    for i in range(200):
        feed(rt, 100.0 + i * 0.5)
    checked = [round(j.frame_ts - 100.0, 1) for j in rt.pool.jobs if j.identity_embedding is not None]
    assert checked == [0.0, 10.0, 40.0, 40.5, 41.0, 41.5, 71.5], checked
    st = rt.status(STUDENT)
    assert st["identity"]["match"] is True and st["identity"]["skipped"] is None
    assert st["frames"]["identity_checks"] == 4 and st["frames"]["identity_attempts"] == 7


def test_verify_searching_the_frame_itself_applies_the_gate(config, identity, photo_face):
    """Without the face stage's box (it failed), the gated check searches the frame and judges the same way."""
    from face_identity import embedding_from_bytes, embedding_to_bytes

    enrolment = identity.enrol(load_photo(PEOPLE + "p04_img15.jpg"))
    assert enrolment.ok
    template = embedding_from_bytes(embedding_to_bytes(enrolment.embedding))
    far = identity.verify(template, placed(photo_face, PEOPLE + "p04_img14.jpg", 56), gate=True)
    assert far.face_found and far.skipped.startswith("face too small: ") and far.match is None and far.distance is None
    near = identity.verify(template, placed(photo_face, PEOPLE + "p04_img14.jpg", 140), gate=True)
    assert near.skipped is None and near.match is True


def test_the_skip_reason_travels_over_the_wire_and_is_checked():
    from proctor.live import FrameResult
    from proctor.live.wire import WireError, dump_result, load_message

    res = FrameResult(1, 2, 3, 10.0, 5.0, worker_id=0, identity_ran=True, identity_face_found=True,
                      identity_skipped="face turned: yaw 41 deg, at most 25 either side")
    kind, back, _ = load_message(dump_result(res, "w1"))
    assert kind == "result" and back.identity_skipped == res.identity_skipped and back.identity_match is None
    judged = FrameResult(1, 2, 4, 10.5, 5.5, worker_id=0, identity_ran=True, identity_face_found=True, identity_match=True)
    assert load_message(dump_result(judged, "w1"))[1].identity_skipped is None
    import json

    body = json.loads(dump_result(res, "w1"))
    body["identity_skipped"] = 7
    with pytest.raises(WireError, match="identity_skipped"):
        load_message(json.dumps(body).encode())
