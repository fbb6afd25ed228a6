"""DetectorCadence on its own (proctor/live/cadence.py): the real vision config, real FrameResult,
FaceObservation and Detections values; frames carry their time, nothing sleeps."""
from __future__ import annotations

import pytest

from config_vision import VisionConfigError, load_vision_config
from face_pipeline import FaceObservation
from person_pipeline import Detection, Detections, ObjectEvidence
from proctor.live.cadence import DetectorCadence
from proctor.live.pipeline import FrameResult

PERSON = Detection(0, "person", 0.9, (120, 40, 520, 480))
OTHER_PERSON = Detection(0, "person", 0.7, (520, 100, 640, 480))
PHONE = Detection(67, "cell phone", 0.4, (300, 300, 360, 400))
FACE = FaceObservation(True, 1, yaw_deg=2.0, pitch_deg=-8.0)


@pytest.fixture(scope="module")
def config():
    return load_vision_config(env={})


def face(count=1, yaw=2.0, pitch=-8.0):
    return FaceObservation(count > 0, count, yaw_deg=yaw if count else None, pitch_deg=pitch if count else None)


def run_stream(cadence, frames, sees=lambda t: (PERSON,), every_s=0.5, config=None):
    """Feed frames (a list of (face, lower_motion) per frame, at `every_s` apart from t=0) through the
    cadence as the runtime does (Stream.absorb): due -> ran -> the worker's result -> ObjectEvidence ->
    observe. `sees(t)` is what a detector run at frame time t finds. Returns the frame times the
    detector ran at, with the reason."""
    ran = []
    evidence = ObjectEvidence.from_config(config or load_vision_config(env={}))
    for i, (f, motion) in enumerate(frames):
        t = round(i * every_s, 6)
        reason = cadence.due(t)
        if reason:
            cadence.ran(t, reason)
            ran.append((t, reason))
        dets = Detections(tuple(sees(t)), "unit", (640, 480)) if reason else None
        result = FrameResult(1, 1, i + 1, t, 0.0, worker_id=0, face=f, detections=dets, detector_ran=bool(reason),
                             lower_motion=motion)
        cadence.observe(result, evidence.update(dets) if dets is not None else None)
    return ran


def still(n, motion=1.0):
    return [(face(), motion) for _ in range(n)]


def test_a_steady_scene_gets_the_detector_once_per_steady_interval(config):
    cadence = DetectorCadence(config)
    ran = run_stream(cadence, still(20))  # 10 s at 2 frames/s, a still face, sensor-noise motion
    assert ran == [(0.0, "first"), (3.0, "steady"), (6.0, "steady"), (9.0, "steady")]
    assert not cadence.watching


def test_the_steady_interval_is_a_setting(config):
    cadence = DetectorCadence(config.with_overrides(DETECTOR_STEADY_INTERVAL_S=2.0))
    assert [t for t, _ in run_stream(cadence, still(12))] == [0.0, 2.0, 4.0]


@pytest.mark.parametrize("changed, reason", [
    ((face(), 20.0), "motion"),                     # a hand or an object in the lower half
    ((face(count=2), 1.0), "faces"),                # another face
    ((face(count=0), 1.0), "face_lost"),
    ((face(yaw=2.0 + 16), 1.0), "pose"),            # turned beyond DETECTOR_POSE_CHANGE_DEG (15)
    ((face(pitch=-8.0 - 16), 1.0), "pose"),
])
def test_each_change_runs_the_detector_on_the_next_frame(config, changed, reason):
    """A change on frame 4 (t = 2.0 s, 2 s after the first run): the detector runs on frame 5."""
    cadence = DetectorCadence(config)
    assert run_stream(cadence, still(4) + [changed] + still(3)) == [(0.0, "first"), (2.5, reason)]


def test_a_face_coming_back_runs_the_detector_on_the_next_frame(config):
    cadence = DetectorCadence(config)
    away = [(face(count=0), 1.0)]
    ran = run_stream(cadence, still(2) + away * 4 + still(2))
    # lost on frame 2 -> run on frame 3 (1.5 s); back on frame 6 (3.0 s) -> run on frame 7 (3.5 s)
    assert ran == [(0.0, "first"), (1.5, "face_lost"), (3.5, "face_back")]


@pytest.mark.parametrize("frame", [(face(), 5.0), (face(yaw=2.0 + 10), 1.0), (face(pitch=-8.0 + 12), 1.0), (None, 1.0)])
def test_small_changes_and_a_failed_face_stage_are_no_change(config, frame):
    """Below DETECTOR_MOTION_DIFF (6) and DETECTOR_POSE_CHANGE_DEG (15); the face stage not run (None)."""
    cadence = DetectorCadence(config)
    assert run_stream(cadence, still(3) + [frame] * 3) == [(0.0, "first")]


def test_the_pose_is_compared_with_the_last_run_not_the_last_frame(config):
    """A head turning slowly (8 degrees a frame) is a change once it is 15 degrees from the last run:
    frame 3 (18 degrees at 1.5 s) is, so frame 4 gets the detector."""
    cadence = DetectorCadence(config)
    turning = [(face(yaw=2.0 + 8 * k), 1.0) for k in range(1, 4)]  # 10, 18, 26 degrees
    assert run_stream(cadence, still(2) + turning) == [(0.0, "first"), (2.0, "pose")]


def test_a_change_right_after_a_run_waits_for_the_change_min_interval(config):
    """Motion on every frame (a student writing), 4 frames/s: at most one run per
    DETECTOR_CHANGE_MIN_INTERVAL_S (1 s: the old 1 in 2 frames at 2 frames/s). Without that bound a
    change seen on a frame runs the detector on the next, so every other frame (the motion a run's own
    frame shows was seen by that run)."""
    cadence = DetectorCadence(config)
    ran = run_stream(cadence, still(17, motion=20.0), every_s=0.25)
    assert ran == [(0.0, "first"), (1.0, "motion"), (2.0, "motion"), (3.0, "motion"), (4.0, "motion")]
    cadence = DetectorCadence(config.with_overrides(DETECTOR_CHANGE_MIN_INTERVAL_S=0.0))
    assert [t for t, _ in run_stream(cadence, still(17, motion=20.0), every_s=0.25)] == [k / 2 for k in range(9)]


def test_fast_while_a_candidate_is_confirmed_then_held_then_fast_to_its_end_then_steady(config):
    """A phone from t = 2.0 s to 5.0 s, seen first by a run triggered by motion: the detector runs on
    the next frame (DETECTOR_FAST_INTERVAL_S 0.5) to confirm it (ObjectEvidence: 2 of the last 5 runs);
    confirmed and seen by two runs in a row it is held (every DETECTOR_HOLD_INTERVAL_S, 1.5 s) while it
    stays; the first run that misses it brings the fast pace back until its last sighting has left the
    evidence window (5 runs), then the steady interval."""
    cadence = DetectorCadence(config)
    frames = still(4) + [(face(), 20.0)] + still(21)  # the hand moves on frame 4 (2.0 s)
    ran = run_stream(cadence, frames, sees=lambda t: (PERSON, PHONE) if 2.0 <= t < 5.0 else (PERSON,))
    assert ran[:3] == [(0.0, "first"), (2.5, "motion"), (3.0, "watch")]   # seen, seen: confirmed
    assert ran[3:5] == [(4.5, "hold"), (6.0, "hold")]                      # 6.0 misses it: fast again
    # The evidence still carries the phone while 2 of the last 5 runs saw it (up to the run at 7.0);
    # five runs without it after that (7.5 .. 9.5), then steady 3 s after the last run.
    assert ran[5:] == [(t / 2, "watch") for t in range(13, 20)] + [(12.5, "steady")]
    assert not cadence.watching and cadence.summary() == {
        "watching": False, "holding": False, "runs": {"first": 1, "motion": 1, "watch": 8, "hold": 2, "steady": 1}}


def test_a_phone_on_the_desk_all_along_costs_a_run_every_hold_interval(config):
    """Seen from the first frame for 30 s: two fast runs to confirm, then one every 1.5 s (a third of
    the frames at 2 frames/s instead of every frame); the rules' evidence is never older than
    OBSERVATION_STALE_S (2 s) on any frame."""
    cadence = DetectorCadence(config)
    ran = run_stream(cadence, still(60), sees=lambda t: (PERSON, PHONE))
    times = [t for t, _ in ran]
    assert ran[:3] == [(0.0, "first"), (0.5, "watch"), (2.0, "hold")] and len(ran) == 2 + 19  # 60 before
    assert all(b - a == pytest.approx(1.5) for a, b in zip(times[1:], times[2:]))
    assert max(b - a for a, b in zip(times, times[1:])) < config.OBSERVATION_STALE_S
    assert cadence.holding and cadence.summary()["holding"] is True


def test_motion_while_holding_still_runs_the_detector_at_the_change_pace(config):
    """A phone held in a moving hand: the change interval (1 s) is shorter than the hold interval."""
    cadence = DetectorCadence(config)
    ran = run_stream(cadence, still(3) + still(10, motion=20.0), sees=lambda t: (PERSON, PHONE))
    assert ran == [(0.0, "first"), (0.5, "watch"), (2.0, "hold")] + [(t, "motion") for t in (3.0, 4.0, 5.0, 6.0)]


def test_holding_is_a_setting_and_zero_runs_never_slows_down(config):
    cadence = DetectorCadence(config.with_overrides(DETECTOR_HOLD_AFTER_RUNS=0))
    assert len(run_stream(cadence, still(20), sees=lambda t: (PERSON, PHONE))) == 20 and not cadence.holding
    cadence = DetectorCadence(config.with_overrides(DETECTOR_HOLD_INTERVAL_S=1.0))
    assert [t for t, _ in run_stream(cadence, still(9), sees=lambda t: (PERSON, PHONE))] == [0.0, 0.5, 1.5, 2.5, 3.5]
    # Never faster than watching: a hold interval below the fast one is the fast one.
    assert DetectorCadence(config.with_overrides(DETECTOR_HOLD_INTERVAL_S=0.1)).hold_s == 0.5


def test_the_hold_interval_stays_within_the_evidence_shelf_life(config):
    """At most 3/4 of OBSERVATION_STALE_S: an exam that shortens the shelf life shortens the hold."""
    assert DetectorCadence(config.with_overrides(DETECTOR_HOLD_INTERVAL_S=5.0)).hold_s == 1.5   # 3/4 of 2 s
    assert DetectorCadence(config.with_overrides(OBSERVATION_STALE_S=1.0)).hold_s == 0.75
    assert DetectorCadence(config.with_overrides(DETECTOR_HOLD_INTERVAL_S=2.5, OBSERVATION_STALE_S=4.0)).hold_s == 2.5
    short = config.with_overrides(OBSERVATION_STALE_S=1.0)
    times = [t for t, _ in run_stream(DetectorCadence(short), still(40), sees=lambda t: (PERSON, PHONE), every_s=0.25)]
    assert {round(b - a, 2) for a, b in zip(times[1:], times[2:])} == {0.75}
    # At 2 frames/s the run falls on the next frame, 1.0 s on: the evidence is then exactly as old as the
    # shelf life, which the rules still take (stale means older than OBSERVATION_STALE_S).
    times = [t for t, _ in run_stream(DetectorCadence(short), still(20), sees=lambda t: (PERSON, PHONE))]
    assert max(b - a for a, b in zip(times, times[1:])) <= short.OBSERVATION_STALE_S


def test_an_extra_person_is_watched_like_an_object(config):
    cadence = DetectorCadence(config)
    ran = run_stream(cadence, still(8), sees=lambda t: (PERSON, OTHER_PERSON) if t < 1 else (PERSON,))
    # Two persons on frames 0 and 1 (seen twice in a row: held, the next run 1.5 s later); that run
    # sees one person only, so every frame again until 5 runs have (up to frame 9, past this clip).
    assert ran == [(0.0, "first"), (0.5, "watch"), (2.0, "hold"), (2.5, "watch"), (3.0, "watch"), (3.5, "watch")]


def test_a_phone_at_the_ear_is_watched_like_an_object(config):
    """A run that saw a phone at the ear (no phone box above its bar: the hand-guided look's own
    signal) is watched like a phone, so that ObjectEvidence's second sighting comes on the next frame;
    the same runs without the signal stay on the steady interval."""
    def run(at_ear):
        cadence, ran = DetectorCadence(config), []
        for i in range(8):
            t = i * 0.5
            reason = cadence.due(t)
            if reason:
                cadence.ran(t, reason)
                ran.append(reason)
            dets = Detections((PERSON,), "unit", (640, 480), phone_at_ear=at_ear and t < 1) if reason else None
            cadence.observe(FrameResult(1, 1, i + 1, t, 0.0, 0, face=FACE, detections=dets,
                                        detector_ran=bool(reason), lower_motion=1.0), dets)
        return ran

    # At ear on frames 0 and 1 (held after the second); the held run at 2.0 s misses it: every frame again.
    assert run(True) == ["first", "watch", "hold", "watch", "watch", "watch"]
    assert run(False) == ["first", "steady"]  # 0 s, then DETECTOR_STEADY_INTERVAL_S (3 s) later
def test_a_confirmed_object_keeps_it_watching(config):
    """The rules' detections (after ObjectEvidence) still hold a confirmed object: watch."""
    cadence = DetectorCadence(config)
    cadence.ran(0.0, "first")
    for i in range(6):
        t = i * 0.5
        cadence.quiet_runs = cadence.window_runs  # as if the raw runs saw nothing
        confirmed = Detections((PERSON, PHONE), "unit", (640, 480))
        cadence.observe(FrameResult(1, 1, i + 1, t, 0.0, 0, face=FACE, detections=Detections((PERSON,), "unit", (640, 480)),
                                    detector_ran=True), confirmed)
        assert cadence.watching


def test_the_fast_interval_is_bounded_by_the_persistence_times(config):
    assert DetectorCadence(config).fast_s == 0.5
    assert DetectorCadence(config.with_overrides(DETECTOR_FAST_INTERVAL_S=1.5)).fast_s == 1.5
    # An exam that reports an object after 0.2 s: the cadence watches at least that often.
    assert DetectorCadence(config.with_overrides(TIME_BANNED_OBJECT_S=0.2)).fast_s == 0.2
    assert DetectorCadence(config.with_overrides(TIME_MULTIPLE_PERSONS_S=0.0)).fast_s == 0.0


def test_frame_time_going_back_starts_over(config):
    cadence = DetectorCadence(config)
    cadence.ran(100.0, "first")
    assert cadence.due(100.5) is None and cadence.due(99.0) == "first"


def test_a_run_whose_detector_failed_still_sets_the_reference(config):
    """No detector result (the model missing or failed): no watching, and the face it saw is the reference."""
    cadence = DetectorCadence(config)
    cadence.ran(0.0, "first")
    cadence.observe(FrameResult(1, 1, 1, 0.0, 0.0, 0, face=face(count=2)), None)
    cadence.observe(FrameResult(1, 1, 2, 0.5, 0.0, 0, face=face(count=2), lower_motion=1.0), None)
    assert cadence.change is None and not cadence.watching


@pytest.mark.parametrize("name, value", [
    ("DETECTOR_STEADY_INTERVAL_S", 0.1), ("DETECTOR_STEADY_INTERVAL_S", 31), ("DETECTOR_FAST_INTERVAL_S", -0.1),
    ("DETECTOR_FAST_INTERVAL_S", 1.6), ("DETECTOR_CHANGE_MIN_INTERVAL_S", 11), ("DETECTOR_MOTION_DIFF", 0),
    ("DETECTOR_POSE_CHANGE_DEG", 2), ("DETECTOR_STEADY_INTERVAL_S", "often"), ("DETECTOR_HOLD_INTERVAL_S", -1),
    ("DETECTOR_HOLD_AFTER_RUNS", 21),
])
def test_cadence_settings_are_validated(name, value):
    with pytest.raises(VisionConfigError, match=name):
        load_vision_config(env={}, **{name: value})


def test_the_fast_interval_may_not_exceed_the_steady_one():
    with pytest.raises(VisionConfigError, match="DETECTOR_FAST_INTERVAL_S=1.5 must not exceed DETECTOR_STEADY_INTERVAL_S=1.0"):
        load_vision_config(env={}, DETECTOR_FAST_INTERVAL_S=1.5, DETECTOR_STEADY_INTERVAL_S=1.0)


def test_the_retired_setting_is_ignored_everywhere(tmp_path, caplog):
    """DETECTOR_EVERY_N_FRAMES in a settings file, the environment, keyword overrides or an exam's
    overrides: ignored with a warning, the rest still read."""
    settings = tmp_path / "vision.json"
    settings.write_text('{"DETECTOR_EVERY_N_FRAMES": 3, "YAW_THRESHOLD_DEG": 30}')
    with caplog.at_level("WARNING", logger="config_vision"):
        cfg = load_vision_config(env={"PROCTOR_DETECTOR_EVERY_N_FRAMES": "5"}, settings_file=str(settings),
                                 DETECTOR_EVERY_N_FRAMES=2)
        exam = cfg.with_overrides(DETECTOR_EVERY_N_FRAMES=4, TIME_CLEAR_S=2.0)
    assert cfg.YAW_THRESHOLD_DEG == 30 and exam.TIME_CLEAR_S == 2.0 and "DETECTOR_EVERY_N_FRAMES" not in exam.values
    with pytest.raises(AttributeError):
        cfg.DETECTOR_EVERY_N_FRAMES  # noqa: B018 - nothing reads it any more
    with pytest.raises(VisionConfigError, match="unknown vision setting 'DETECTOR_EVERY_N_FRAME'"):
        cfg.with_overrides(DETECTOR_EVERY_N_FRAME=4)  # a typo is still an error
