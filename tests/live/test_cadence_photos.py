"""The detector's cadence on real photos: the real runtime, Stream, FramePipeline (face stage, lower-half
motion, CenterNet detector), ObjectEvidence and decision engine, in this process (the pool's place is
taken by a stand-in that calls FramePipeline.process at once). Frames carry their time, 2 per second;
nothing sleeps, nothing is timed.

Scenes are made from the photos in ../shared/testdata as tests/live.live_frame makes a webcam stream
of a still photo (a few pixels of shake, exposure flicker), and composites of them: a laptop held in
two hands (d_3) raised into the lower half of a student at her desk (a_1), and a student with a phone
at her ear (b_3, cropped to one of the women) taking the seat.
"""
from __future__ import annotations

import cv2
import pytest

from proctor.live.pipeline import FramePipeline
from tests.live import fit, live_frame, load_photo
from tests.live.test_runtime_unit import SESSION, STUDENT, MemoryStore, make_runtime

T0 = 500.0
EVERY_S = 0.5  # 2 frames/s, as the exam page sends them


@pytest.fixture(scope="module")
def config():
    from config_vision import load_vision_config

    return load_vision_config(env={})


@pytest.fixture(scope="module")
def pipeline(config):
    p = FramePipeline(config)
    assert p.info.get("detector", {}).get("loaded"), p.info  # models/centernet_mbv3_coco.onnx
    p.warm_up()
    yield p
    p.close()


@pytest.fixture
def runtime(pipeline, tmp_path):
    store = MemoryStore()
    store.add_session()
    pipeline.forget(STUDENT)  # a fresh face tracker and motion reference for each test
    rt, _ = make_runtime(store, tmp_path, respond=pipeline.process)
    return rt, store


def play(rt, frames, t0=T0):
    """Each frame at t0 + i * EVERY_S through the runtime. Returns [(t, ran, reason or None)] per frame."""
    stream = None
    out = []
    for i, image in enumerate(frames):
        t = t0 + i * EVERY_S
        rt.submit_frame(STUDENT, SESSION, image, server_ts=t)
        stream = stream or rt._streams.get(STUDENT)
        before = dict(stream.cadence.reasons) if stream else {}
        rt.step()
        stream = rt._streams[STUDENT]
        job = rt.pool.jobs[-1]
        assert job.frame_ts == t
        grown = [r for r, n in stream.cadence.reasons.items() if n > before.get(r, 0)]
        out.append((t, job.run_detector, grown[0] if grown else None))
    return out


def a_1():
    return fit(load_photo("a_1_webcam_woman_T1.jpg"))


def laptop_raised():
    """a_1 with the d_3 laptop (and the hands holding it) raised into the lower half of the picture."""
    student = a_1()
    laptop = fit(load_photo("d_3_woman_holding_xo_laptop.jpg"))[270:480, 110:500]
    laptop = cv2.resize(laptop, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    h, w = laptop.shape[:2]
    x = (student.shape[1] - w) // 2
    student[student.shape[0] - h:, x:x + w] = laptop
    return student


def phone_at_the_ear():
    """The left woman of b_3 with her phone at her ear, as her webcam would frame her."""
    b3 = load_photo("b_3_coco536_women_on_phones.jpg")
    return cv2.resize(b3[40:145, 50:190], (640, 480), interpolation=cv2.INTER_CUBIC)


def _prohibited(store):
    return [v for v in store.violations.values() if v.type == "PROHIBITED_OBJECT"]


@pytest.mark.parametrize("name", ["a_1_webcam_woman_T1.jpg", "a_6_grace_hopper.jpg", "f_5_living_room_empty.jpg"])
def test_a_steady_scene_gets_the_detector_once_per_steady_interval(runtime, config, name):
    """15 s of a still scene: the detector runs on the first frame and then every
    DETECTOR_STEADY_INTERVAL_S (3 s): 5 runs for 30 frames, where 1 in 2 frames gave 15."""
    rt, store = runtime
    scene = fit(load_photo(name))
    played = play(rt, [live_frame(scene, i) for i in range(30)])
    runs = [(t - T0, reason) for t, ran, reason in played if ran]
    assert runs == [(0.0, "first"), (3.0, "steady"), (6.0, "steady"), (9.0, "steady"), (12.0, "steady")]
    assert rt.status(STUDENT)["frames"]["detector_runs"] == 5 and _prohibited(store) == []


def test_a_laptop_raised_into_the_lower_half_gets_the_detector_at_once_and_is_confirmed(runtime, config):
    """A student at her desk (4 s, the detector at 0 and 3 s), then a laptop raised into the lower half
    at 4.0 s: the lower-half motion runs the detector on the very next frame (4.5 s), it sees the laptop,
    the cadence watches (every frame), the next run (5.0 s) confirms it (ObjectEvidence 2 of 5), and
    PROHIBITED_OBJECT starts TIME_BANNED_OBJECT_S (1.5 s) later: the object confirmed 1 s after it
    appeared, within its persistence time. Confirmed and seen twice in a row, it is held: the next run
    comes DETECTOR_HOLD_INTERVAL_S (1.5 s) later, while the evidence is still fresh."""
    rt, store = runtime
    student, raised = a_1(), laptop_raised()
    frames = [live_frame(student, i) for i in range(8)] + [live_frame(raised, i) for i in range(8, 16)]
    played = play(rt, frames)
    runs = [(t - T0, reason) for t, ran, reason in played if ran]
    assert runs == [(0.0, "first"), (3.0, "steady"), (4.5, "motion"), (5.0, "watch"), (6.5, "hold")]
    found = _prohibited(store)
    assert len(found) == 1, store.violations
    appeared = T0 + 4.0
    assert found[0].details["since"] == pytest.approx(appeared + 1.0)
    assert found[0].details["frame_t"] == pytest.approx(appeared + 1.0 + config.TIME_BANNED_OBJECT_S)
    assert [o["label"] for o in found[0].details["objects"]] == ["laptop"]


def test_a_student_with_a_phone_taking_the_seat_is_confirmed_at_once(runtime, config):
    """An empty seat (the a_1 student gone: the living room) for 2 s, then a student with a phone at her
    ear at 2.0 s: the detector runs on the next frame (the scene changed: motion and a face back), sees
    the phone, and confirms it on the frame after (within DETECTOR_FAST_INTERVAL_S)."""
    rt, store = runtime
    room, caller = fit(load_photo("f_5_living_room_empty.jpg")), phone_at_the_ear()
    frames = [live_frame(room, i) for i in range(4)] + [live_frame(caller, i) for i in range(4, 12)]
    played = play(rt, frames)
    runs = [(t - T0, reason) for t, ran, reason in played if ran]
    assert runs[:3] == [(0.0, "first"), (2.5, "motion"), (3.0, "watch")]
    found = _prohibited(store)
    assert len(found) == 1, store.violations
    assert found[0].details["since"] <= T0 + 2.0 + config.TIME_BANNED_OBJECT_S  # confirmed within 1.5 s
    # the phone's box, and the hand-guided look's phone at the ear (the same k of n runs)
    assert [o["label"] for o in found[0].details["objects"]] == ["cell phone", "phone at ear"]
    assert found[0].details["phone_at_ear"] is True


def test_a_second_person_is_held_with_fresh_evidence(runtime, config):
    """Two people in the picture (e_5): the first two runs see the extra person (the second on the next
    frame, DETECTOR_FAST_INTERVAL_S), then the cadence holds it: a run every DETECTOR_HOLD_INTERVAL_S
    (1.5 s, below OBSERVATION_STALE_S), which keeps MULTIPLE_FACES' evidence fresh."""
    rt, store = runtime
    two = fit(load_photo("e_5_zidane_two_men.jpg"))
    played = play(rt, [live_frame(two, i) for i in range(8)])
    assert [reason for _, _, reason in played] == ["first", "watch", None, None, "hold", None, None, "hold"]
    assert rt.status(STUDENT)["persons"] == 2
    assert "MULTIPLE_FACES" in [v.type for v in store.violations.values()]
