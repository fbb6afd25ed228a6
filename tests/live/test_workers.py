"""The worker pool: real processes running the real FaceAnalyzer and detector on real photos."""
from __future__ import annotations

import os
import signal
import time

import cv2
import numpy as np
import pytest

from proctor.live.workers import FramePipeline, FrameJob, WorkerPool
from tests.live import fit, load_photo, wait_for

READY_TIMEOUT_S = 240
RESULT_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def config():
    from config_vision import load_vision_config

    return load_vision_config(env={})


@pytest.fixture(scope="module")
def pool(config):
    p = WorkerPool(2, config)
    p.start()
    try:
        assert p.wait_ready(READY_TIMEOUT_S), f"workers did not become ready: {p.status()}"
        yield p
    finally:
        p.stop()


def _job(student, seq, image=None, jpeg=None, t=None, detector=True):
    return FrameJob(student, student * 10, seq, 1000.0 + seq if t is None else t, time.monotonic(),
                    image=image, jpeg=jpeg, run_detector=detector)


def _run(pool, job):
    assert wait_for(lambda: pool.can_take(job.student_id), RESULT_TIMEOUT_S, "the student's worker never became idle")
    assert pool.submit(job)
    got = []
    wait_for(lambda: got.extend(pool.results()) or got, RESULT_TIMEOUT_S, f"no result for {job.student_id}/{job.seq}")
    assert len(got) == 1
    return got[0]


def test_face_and_empty_room_on_real_photos(pool):
    face = _run(pool, _job(1, 1, fit(load_photo("a_1_webcam_woman_T1.jpg"))))
    assert face.errors == []
    assert face.face is not None and face.face.face_detected and face.face.face_count == 1
    assert face.detector_ran and face.detections.person_count >= 1
    assert face.frame_size == (640, 480)
    assert not hasattr(face, "processed_jpeg")  # workers draw nothing: views.py draws where somebody looks
    assert face.timings_ms["cpu"] > 0  # the worker's CPU for the job: what the pool balances on

    room = _run(pool, _job(1, 2, fit(load_photo("f_5_living_room_empty.jpg")), detector=False))
    assert room.face is not None and not room.face.face_detected and room.face.face_count == 0
    assert not room.detector_ran and room.detections is None
    assert room.frame_diff is not None and room.frame_diff > 5  # a different picture from the same stream
    assert room.frame_mean is not None and 0 < room.frame_mean < 255


def test_two_people_are_counted(pool):
    """e_5's two faces are found by the face detectors only (FaceMesh fits neither): in a stream such a
    face counts once a second look has seen it (face_presence.py), so on the student's second frame."""
    frame = fit(load_photo("e_5_zidane_two_men.jpg"))
    first = _run(pool, _job(2, 1, frame))
    second = _run(pool, _job(2, 2, frame))
    assert first.face.face_count <= 1 and second.face.face_count >= 2, (first.face, second.face)


def test_a_face_on_a_phone_at_the_identity_check_is_a_spoof_not_the_student(pool, config):
    """b_1 (a phone showing a face, held to the webcam) sent to a worker process with an identity template
    enrolled from that very picture: identity alone would match it (distance about 0); the worker's
    presentation-attack check refuses it (identity_spoof, no match, the reason in identity_details)."""
    from face_identity import FaceIdentity, embedding_to_bytes

    spoof = load_photo("b_1_phone_held_to_webcam.jpg")
    identity = FaceIdentity(config)
    try:
        enrolment = identity.enrol(spoof)
    finally:
        identity.close()
    assert enrolment.ok, enrolment.error
    ok, buf = cv2.imencode(".jpg", spoof, [int(cv2.IMWRITE_JPEG_QUALITY), 80])
    assert ok
    job = FrameJob(12, 120, 1, 1000.0, time.monotonic(), jpeg=buf.tobytes(), run_detector=False,
                   identity_embedding=embedding_to_bytes(enrolment.embedding))
    res = _run(pool, job)
    assert res.errors == [] and res.identity_ran and res.identity_face_found
    assert res.identity_distance is not None and res.identity_distance < 0.2
    assert res.identity_spoof is True and res.identity_match is False
    assert "border" in res.identity_details["spoof_reason"]


def test_jpeg_frames_are_decoded_in_the_worker_and_bad_bytes_reported(pool):
    ok, buf = cv2.imencode(".jpg", fit(load_photo("a_6_grace_hopper.jpg")))
    assert ok
    res = _run(pool, _job(3, 1, jpeg=buf.tobytes()))
    assert res.face.face_detected and "decode" in res.timings_ms
    bad = _run(pool, _job(3, 2, jpeg=b"\xff\xd8 truncated"))
    assert bad.errors == ["could not decode frame"] and bad.face is None
    assert (bad.frame_mean, bad.frame_diff) == (0.0, 0.0)  # a black, frozen camera to the rules: CAMERA_OFF


def test_frozen_and_black_frames_are_measured(pool):
    img = fit(load_photo("c_1_coco446_woman_bookshelf.jpg"))
    _run(pool, _job(4, 1, img, detector=False))
    same = _run(pool, _job(4, 2, img.copy(), detector=False))
    assert same.frame_diff == pytest.approx(0.0, abs=0.01)
    dark = _run(pool, _job(4, 3, (img * 0.02).astype(np.uint8), detector=False))
    assert dark.frame_mean < 12


def test_sticky_assignment_spreads_students_over_workers(pool):
    assert pool.worker_for(1) == pool.worker_for(1)
    # New students go to the lighter worker by load (measured cost per frame): the students earlier
    # tests of this module left there can make one worker heavier by a few of them, so enough new
    # ones (COST_DEFAULT_MS each) must reach both (four did not always: a flaky test).
    ids = {pool.worker_for(s) for s in range(11, 19)}
    assert ids == {0, 1}, pool.status()


def test_a_student_has_one_job_out_and_a_worker_holds_two(pool):
    from proctor.live.workers import PIPELINE_DEPTH

    img = fit(load_photo("a_1_webcam_woman_T1.jpg"))
    wid = pool.worker_for(1)
    same_worker = [s for s in range(100, 140) if pool.worker_for(s) == wid][:PIPELINE_DEPTH]
    wait_for(lambda: pool.can_take(1), RESULT_TIMEOUT_S, "worker idle")
    assert pool.submit(_job(1, 10, img))
    assert not pool.submit(_job(1, 11, img))  # one job out per student: the slot keeps the newer frame
    assert pool.submit(_job(same_worker[0], 1, img))  # the worker's second job waits in its pipe
    assert not pool.submit(_job(same_worker[1], 1, img))  # PIPELINE_DEPTH jobs at most
    got = []
    wait_for(lambda: got.extend(pool.results()) or len(got) >= 2, RESULT_TIMEOUT_S, "results")
    assert [(r.student_id, r.seq) for r in got] == [(1, 10), (same_worker[0], 1)]
    assert pool.can_take(1)


def test_killed_worker_is_restarted_and_the_next_frame_is_processed(pool):
    img = fit(load_photo("a_1_webcam_woman_T1.jpg"))
    wid = pool.worker_for(5)
    pid = pool.pids()[wid]
    assert pool.submit(_job(5, 1, img))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pool.results() is not None and pool.status()["workers"][wid]["restarts"] >= 1,
             RESULT_TIMEOUT_S, "the crash was not noticed")
    st = pool.status()["workers"][wid]
    assert st["last_crash"]["pid"] == pid and st["last_crash"]["exitcode"] == -signal.SIGKILL
    assert st["last_crash"]["lost_job"] == {"student_id": 5, "seq": 1}
    assert pool.pids()[wid] != pid
    wait_for(lambda: (pool.results() is not None) and all(w["ready"] for w in pool.status()["workers"]),
             READY_TIMEOUT_S, "the restarted worker never became ready")
    res = _run(pool, _job(5, 2, img))
    assert res.face.face_detected and res.seq == 2


def test_pipeline_in_process_matches_contract(config):
    """FramePipeline is the same code the workers run; here in-process, for a task engine later."""
    pipe = FramePipeline(config)
    try:
        res = pipe.process(_job(6, 1, fit(load_photo("a_3_face_closeup_sergey.png"))))
        assert res.face.face_detected and res.errors == [] and {"face", "total", "cpu"} <= set(res.timings_ms)
        pipe.forget(6)
        assert 6 not in pipe._analyzers
    finally:
        pipe.close()


def test_a_crash_loop_backs_off_instead_of_spinning(config):
    from proctor.live import workers

    p = WorkerPool(1, config)
    p.start()
    try:
        for n in range(1, workers.RESTARTS_BEFORE_BACKOFF + 2):
            pid = p.pids()[0]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: p.results() is not None and p.status()["workers"][0]["restarts"] == n, 60,
                     f"crash {n} was not noticed")
        st = p.status()["workers"][0]
        # More than RESTARTS_BEFORE_BACKOFF crashes within a minute: the next start waits.
        assert st["restart_in_s"] is not None and 0 < st["restart_in_s"] <= workers.RESTART_BACKOFF_S
        assert not st["alive"] and not st["ready"]
        assert not p.submit(_job(1, 1, fit(load_photo("a_1_webcam_woman_T1.jpg"))))  # nothing to take it meanwhile
        assert len(p.crashes) == workers.RESTARTS_BEFORE_BACKOFF + 1
    finally:
        p.stop()


def test_an_exams_thresholds_reach_the_detector(config):
    """A phone in b_3 is reported at the default threshold and not when the exam raises it."""
    pipeline = FramePipeline(config)
    try:
        frame = fit(load_photo("b_3_coco536_women_on_phones.jpg"))
        default = pipeline.process(FrameJob(7, 70, 1, 1000.0, time.monotonic(), image=frame))
        strict = pipeline.process(FrameJob(7, 70, 2, 1001.0, time.monotonic(), image=frame,
                                           vision_overrides={"PHONE_CONFIDENCE": 0.95}))
    finally:
        pipeline.close()
    assert default.errors == [] and strict.errors == []
    assert any(d.label == "cell phone" for d in default.detections.items), default.detections
    assert not any(d.label == "cell phone" for d in strict.detections.items), strict.detections


def test_an_exams_identity_threshold_reaches_the_identity_check(config):
    """The same probe (another photo of the enrolled person) matches under an exam's loose
    IDENTITY_DISTANCE_THRESHOLD and not under a strict one: the job's exam config decides, as for the detector."""
    from face_identity import FaceIdentity, embedding_to_bytes

    enrolment = FaceIdentity(config).enrol(load_photo("identity/obama.jpg"))
    assert enrolment.ok, enrolment.error
    probe = fit(load_photo("identity/obama2.jpg"))
    pipeline = FramePipeline(config)
    try:
        def check(seq, overrides):
            return pipeline.process(FrameJob(8, 80, seq, 1000.0 + seq, time.monotonic(), image=probe, run_detector=False,
                                             identity_embedding=embedding_to_bytes(enrolment.embedding),
                                             vision_overrides=overrides))

        default = check(1, {})
        loose = check(2, {"IDENTITY_DISTANCE_THRESHOLD": 0.8})
        strict = check(3, {"IDENTITY_DISTANCE_THRESHOLD": 0.2})
    finally:
        pipeline.close()
    for res in (default, loose, strict):
        assert res.errors == [] and res.identity_ran and res.identity_face_found
    d = default.identity_distance
    assert 0.2 < d <= min(0.8, config.IDENTITY_DISTANCE_THRESHOLD)  # the probe lies between the two exam thresholds
    # The check embeds the face the tracker found in that frame; FaceMesh's tracked box settles over
    # the first frames of a still photo, so the three distances agree closely, not to the bit.
    assert loose.identity_distance == pytest.approx(d, abs=0.02) and strict.identity_distance == pytest.approx(d, abs=0.02)
    assert default.identity_match is True and loose.identity_match is True
    assert strict.identity_match is False


def test_no_identity_model_run_on_a_frame_without_a_face(config):
    """The face stage found nobody (a real empty room): the identity check reports no face without a
    face search of its own; a frame with the enrolled person is compared as before."""
    from face_identity import FaceIdentity, embedding_to_bytes

    enrolment = FaceIdentity(config).enrol(load_photo("identity/obama.jpg"))
    assert enrolment.ok, enrolment.error
    emb = embedding_to_bytes(enrolment.embedding)
    pipeline = FramePipeline(config)
    try:
        room = pipeline.process(FrameJob(9, 90, 1, 1000.0, time.monotonic(), image=fit(load_photo("f_5_living_room_empty.jpg")),
                                         run_detector=False, identity_embedding=emb))
        face = pipeline.process(FrameJob(9, 90, 2, 1000.5, time.monotonic(), image=fit(load_photo("identity/obama2.jpg")),
                                         run_detector=False, identity_embedding=emb))
    finally:
        pipeline.close()
    assert room.face is not None and not room.face.face_detected
    assert room.identity_ran and room.identity_face_found is False and room.identity_match is None
    assert "identity" not in room.timings_ms  # the identity model did not run
    assert face.identity_ran and face.identity_face_found and face.identity_match is True and "identity" in face.timings_ms


class _FakeChild:
    """A worker process stand-in for the pool's bookkeeping: takes every message."""

    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)
        return True


def _bookkeeping_pool(config, ready=(True, True)):
    p = WorkerPool(len(ready), config)
    for w, up in zip(p._workers, ready):
        w.child, w.ready = _FakeChild(), up
    return p


def _finish(p, job, cpu_ms):
    """The worker's answer to job, as results() takes it in."""
    w = p._workers[p._assign[job.student_id]]
    w.jobs.popleft()
    p._inflight.discard(job.student_id)
    old = p._cost.get(job.student_id)
    p._cost[job.student_id] = cpu_ms if old is None else old + 0.2 * (cpu_ms - old)


def test_students_are_placed_by_measured_cost_not_by_count(config):
    p = _bookkeeping_pool(config)
    p._cost.update({1: 200.0, 2: 20.0, 3: 20.0})
    for sid in (1, 2, 3):
        p._move(sid, p._workers[0] if sid == 1 else p._workers[1])
    # worker 0: one expensive student (200 ms); worker 1: two cheap ones (40 ms): the next goes to 1
    assert p.worker_for(4) == 1


def test_students_pinned_to_the_first_ready_worker_are_spread_when_the_other_comes_up(config):
    from proctor.live import workers

    p = _bookkeeping_pool(config, ready=(True, False))
    for sid in range(1, 9):
        assert p.worker_for(sid) == 0
        p._cost[sid] = 50.0
    p._workers[1].ready = True
    p._rebalance(now=1000.0)
    loads = [p._load(w) for w in p._workers]
    assert loads == [200.0, 200.0], loads
    assert p.moves == 4 and {sid for sid in range(1, 9) if p._assign[sid] == 1} == p._workers[1].streams
    # the old worker was told to drop the moved students' trackers
    assert sorted(m[1] for m in p._workers[0].child.sent if m[0] == "forget") == sorted(p._workers[1].streams)
    p._rebalance(now=1000.0 + workers.REBALANCE_EVERY_S)  # balanced: nobody moves again
    assert p.moves == 4


def test_a_student_with_a_job_out_is_not_moved(config):
    img = np.zeros((48, 64, 3), np.uint8)
    p = _bookkeeping_pool(config, ready=(True, False))
    for sid in (1, 2):
        p.worker_for(sid)
        p._cost[sid] = 80.0
        assert p.submit(_job(sid, 1, img))
    p._workers[1].ready = True
    p._rebalance(now=1000.0)
    assert p.moves == 0  # both have a job running on worker 0: their results must come back there
    _finish(p, _job(2, 1, img), 80.0)
    p._rebalance(now=1000.0 + 10)
    assert p.moves == 1 and p._assign[2] == 1 and p._assign[1] == 0
