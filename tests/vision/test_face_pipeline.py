"""Face stage on real photos (../shared/testdata) and real transforms of them.

Transforms used: darken (scale pixel values), horizontal flip, crop, rotate, paste a real face
crop into a real empty room, and squash the eye region of a real face vertically (closes the
eyes the way a blink does; the analysed frame is then fed to the liveness check).
"""
from __future__ import annotations

import dataclasses
import threading

import cv2
import numpy as np
import pytest

import face_pipeline as fp
from config_vision import load_vision_config
from face_liveness import LivenessCheck
from face_pipeline import FaceAnalyzer, FaceObservation, box_iou

SINGLE = ["a_1_webcam_woman_T1.jpg", "a_3_face_closeup_sergey.png", "a_6_grace_hopper.jpg", "a_7_astronaut.png"]
EMPTY = ["f_1_coco133_loft_desk_chair.jpg", "f_5_living_room_empty.jpg"]


def darken(img: np.ndarray, factor: float) -> np.ndarray:
    return np.clip(img.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def squash_eyes(img: np.ndarray, obs: FaceObservation, keep: float = 0.2) -> np.ndarray:
    """Close the eyes of a real face: rows of each eye band are remapped so the lid opening
    shrinks to `keep` of its height and the skin above and below stretches to fill the band."""
    pts = np.array(obs.landmarks)
    out = img.copy()
    h, w = img.shape[:2]
    for idx in (fp._LEFT_EYE_EAR, fp._RIGHT_EYE_EAR):
        eye = pts[list(idx)]
        x1, x2 = eye[:, 0].min(), eye[:, 0].max()
        cy = eye[:, 1].mean()
        a = (eye[:, 1].max() - eye[:, 1].min()) / 2 * 1.3
        band = a * 2.5
        mx = (x2 - x1) * 0.3
        bx1, bx2 = int(max(0, x1 - mx)), int(min(w, x2 + mx))
        by1, by2 = int(max(0, cy - band)), int(min(h, cy + band))
        ys, xs = np.mgrid[by1:by2, bx1:bx2].astype(np.float32)
        d = ys - cy
        ad = np.abs(d)
        src = np.where(ad <= a * keep, ad / keep, a + (ad - a * keep) * (band - a) / (band - a * keep))
        patch = cv2.remap(img, xs, (cy + np.sign(d) * src).astype(np.float32), cv2.INTER_LINEAR)
        weight = np.clip(np.minimum(xs - bx1, bx2 - 1 - xs) / max(1.0, mx), 0, 1)[..., None]
        out[by1:by2, bx1:bx2] = (patch * weight + img[by1:by2, bx1:bx2] * (1 - weight)).astype(np.uint8)
    return out


# --- presence and count ------------------------------------------------------------------------

@pytest.mark.parametrize("name", SINGLE)
def test_one_roughly_frontal_face(photo, load_image, name):
    obs = photo.analyze(load_image(name))
    assert obs.face_detected and obs.face_count == 1, obs
    assert obs.detector == "facemesh"
    assert len(obs.landmarks) == 478  # refine_landmarks: 468 + 10 iris points
    # a_1's head is visibly turned a little (measured ~19 degrees); the others face the camera.
    assert abs(obs.yaw_deg) < 20, obs.yaw_deg
    assert abs(obs.pitch_deg) < 25 and abs(obs.roll_deg) < 20
    x1, y1, x2, y2 = obs.box
    h, w = load_image(name).shape[:2]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    assert 0.5 < obs.confidence <= 1.0  # the face detection score of this face (measured 0.77-0.96)
    assert -1.0 <= obs.iris_offset <= 1.0


@pytest.mark.parametrize("name", SINGLE)
def test_open_eyes_have_plausible_ear(photo, load_image, name):
    obs = photo.analyze(load_image(name))
    assert 0.2 <= obs.ear_left <= 0.4 and 0.2 <= obs.ear_right <= 0.4, (obs.ear_left, obs.ear_right)


@pytest.mark.parametrize("name", EMPTY)
@pytest.mark.parametrize("factor", [1.0, 0.3])
def test_empty_room_has_no_face(photo, load_image, name, factor):
    obs = photo.analyze(darken(load_image(name), factor))
    assert not obs.face_detected and obs.face_count == 0 and obs.face_boxes == ()
    assert obs.yaw_deg is None and obs.ear is None and obs.box is None


@pytest.mark.parametrize("name,at_least", [("e_2_three_business.jpg", 3), ("e_5_zidane_two_men.jpg", 2),
                                           ("b_3_coco536_women_on_phones.jpg", 3)])
def test_several_faces_are_counted(photo, load_image, name, at_least):
    obs = photo.analyze(load_image(name))
    assert obs.face_count >= at_least, obs.face_boxes
    assert len(obs.face_boxes) == obs.face_count
    # no face counted twice: boxes of different faces barely overlap
    for i, a in enumerate(obs.face_boxes):
        for b in obs.face_boxes[i + 1:]:
            assert box_iou(a, b) < 0.3
    assert obs.box == max(obs.face_boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))


def test_turned_face_in_wide_frame_is_counted(photo, load_image):
    """Zidane (e_5, three-quarter profile, shouting) is missed by the full-range detector on the
    whole 1280x720 frame; the short-range detector on square tiles finds him."""
    img = load_image("e_5_zidane_two_men.jpg")
    obs = photo.analyze(img)
    centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in obs.face_boxes]
    assert any(450 < cx < 700 and 250 < cy < 450 for cx, cy in centres), obs.face_boxes  # Zidane
    assert any(850 < cx < 1100 and 100 < cy < 320 for cx, cy in centres), obs.face_boxes  # the other man


@pytest.mark.parametrize("name", SINGLE + ["identity/obama.jpg"])
def test_dark_copy_still_finds_face_and_is_normalised(cfg, photo, load_image, name):
    original = load_image(name)
    dark = darken(original, 0.3)
    obs = photo.analyze(dark)
    assert obs.brightness < cfg.DARK_FRAME_MEAN and obs.normalised
    assert obs.face_detected and obs.face_count == 1
    ref = photo.analyze(original)
    assert box_iou(obs.box, ref.box) > 0.7
    assert obs.yaw_deg is not None and abs(obs.yaw_deg - ref.yaw_deg) < 8


@pytest.mark.parametrize("factor", [0.08, 0.02])
def test_nearly_black_frames(photo, load_image, factor):
    """Stretch + CLAHE finds a face even at 2-8 % brightness, and invents none in a dark room."""
    face = photo.analyze(darken(load_image("a_1_webcam_woman_T1.jpg"), factor))
    room = photo.analyze(darken(load_image("f_1_coco133_loft_desk_chair.jpg"), factor))
    assert face.normalised and face.face_count == 1
    assert room.normalised and room.face_count == 0


def test_black_frame_has_no_face(photo):
    assert photo.analyze(np.zeros((480, 640, 3), np.uint8)).face_count == 0


def test_bright_frame_is_not_normalised(cfg, photo, load_image):
    obs = photo.analyze(load_image("a_1_webcam_woman_T1.jpg"))
    assert obs.brightness >= cfg.DARK_FRAME_MEAN and not obs.normalised


@pytest.mark.parametrize("name", ["a_1_webcam_woman_T1.jpg", "identity/obama2.jpg", "identity/biden.jpg",
                                  "c_1_coco446_woman_bookshelf.jpg"])
def test_mirror_flips_yaw_sign(photo, load_image, name):
    img = load_image(name)
    a = photo.analyze(img)
    b = photo.analyze(cv2.flip(img, 1))
    assert abs(a.yaw_deg) > 8, "pick photos with a turned head"
    assert np.sign(a.yaw_deg) == -np.sign(b.yaw_deg), (a.yaw_deg, b.yaw_deg)
    assert abs(abs(a.yaw_deg) - abs(b.yaw_deg)) < max(5.0, 0.25 * abs(a.yaw_deg)), (a.yaw_deg, b.yaw_deg)
    assert np.sign(a.roll_deg) == -np.sign(b.roll_deg) or abs(a.roll_deg) < 3


def test_yaw_sign_convention(photo, load_image):
    """a_1: the woman's nose points to the image right (her left) -> yaw positive."""
    obs = photo.analyze(load_image("a_1_webcam_woman_T1.jpg"))
    assert obs.yaw_deg > 8


def test_rotation_shows_in_roll(photo, load_image):
    img = load_image("a_3_face_closeup_sergey.png")
    h, w = img.shape[:2]
    base = photo.analyze(img)
    # getRotationMatrix2D: positive angle turns the picture counter-clockwise on screen
    rotated = cv2.warpAffine(img, cv2.getRotationMatrix2D((w / 2, h / 2), 15, 1.0), (w, h),
                             borderMode=cv2.BORDER_REPLICATE)
    obs = photo.analyze(rotated)
    assert obs.face_count == 1
    assert -20 < obs.roll_deg - base.roll_deg < -10, (base.roll_deg, obs.roll_deg)
    assert abs(obs.yaw_deg - base.yaw_deg) < 8


def test_crop_that_cuts_the_face_out_has_no_face(photo, load_image):
    img = load_image("a_1_webcam_woman_T1.jpg")
    box = photo.analyze(img).box
    below = img[box[3] + 20:, :]          # shirt and room below the chin
    beside = img[:, box[2] + 60:]          # the room to the right of the head
    for crop in (below, beside):
        obs = photo.analyze(np.ascontiguousarray(crop))
        assert obs.face_count == 0, obs.face_boxes


def _face_crop(photo, img, margin=0.35):
    x1, y1, x2, y2 = photo.analyze(img).box
    mw, mh = int((x2 - x1) * margin), int((y2 - y1) * margin)
    h, w = img.shape[:2]
    return img[max(0, y1 - mh):min(h, y2 + mh), max(0, x1 - mw):min(w, x2 + mw)].copy()


def test_composite_two_small_faces_in_empty_room(photo, load_image):
    room = load_image("f_1_coco133_loft_desk_chair.jpg")  # 640x480, no person
    pasted = []
    for name, x, y, width in (("a_6_grace_hopper.jpg", 140, 150, 110), ("a_7_astronaut.png", 380, 170, 90)):
        crop = _face_crop(photo, load_image(name))
        crop = cv2.resize(crop, (width, int(crop.shape[0] * width / crop.shape[1])), interpolation=cv2.INTER_AREA)
        room[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
        pasted.append((x, y, x + crop.shape[1], y + crop.shape[0]))
    obs = photo.analyze(room)
    assert obs.face_count == 2, obs.face_boxes
    for region in pasted:
        assert any(box_iou(region, b) > 0.2 for b in obs.face_boxes), (region, obs.face_boxes)


def test_small_background_face_is_counted(photo, load_image):
    """A second face far smaller than the student's (someone in the background)."""
    frame = load_image("a_1_webcam_woman_T1.jpg")  # 480x640 portrait, face on the left half
    small = _face_crop(photo, load_image("a_6_grace_hopper.jpg"))
    small = cv2.resize(small, (56, int(small.shape[0] * 56 / small.shape[1])), interpolation=cv2.INTER_AREA)
    frame[40:40 + small.shape[0], 390:390 + small.shape[1]] = small
    obs = photo.analyze(frame)
    assert obs.face_count == 2, obs.face_boxes
    assert obs.box[0] < 300  # the main face is still the large one


def test_squashed_eyes_lower_ear_below_threshold(cfg, photo, load_image):
    img = load_image("a_1_webcam_woman_T1.jpg")
    open_obs = photo.analyze(img)
    closed_obs = photo.analyze(squash_eyes(img, open_obs))
    assert open_obs.ear > cfg.EAR_THRESHOLD + 0.04
    assert closed_obs.face_detected and closed_obs.ear < cfg.EAR_THRESHOLD, closed_obs.ear


# --- input handling, modes, threads ------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    [[0, 0, 0]],
    np.zeros((10, 10, 3), dtype=np.float32),
    np.zeros((10, 10, 2), dtype=np.uint8),
    np.zeros((0, 10, 3), dtype=np.uint8),
    np.zeros((4, 4, 4, 3), dtype=np.uint8),
])
def test_bad_frames_are_refused_clearly(photo, bad):
    with pytest.raises(ValueError, match="frame"):
        photo.analyze(bad)


def test_grey_bgra_and_tiny_frames_work(photo, load_image):
    img = load_image("a_6_grace_hopper.jpg")
    assert photo.analyze(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)).face_count == 1
    assert photo.analyze(cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)).face_count == 1
    for shape in ((1, 1, 3), (3, 200, 3), (200, 3, 3)):
        assert photo.analyze(np.full(shape, 128, np.uint8)).face_count == 0
    strided = np.ascontiguousarray(img)[:, ::-1]  # a non-contiguous view
    assert photo.analyze(strided).face_count == 1


def test_tracking_mode_on_a_video_sequence(cfg, load_image):
    frame = load_image("a_1_webcam_woman_T1.jpg")
    with FaceAnalyzer(cfg) as video:
        assert not video.static_image_mode
        seen = [video.analyze(frame) for _ in range(5)]
        empty = video.analyze(load_image("f_5_living_room_empty.jpg"))
        again = video.analyze(frame)
    assert all(o.face_count == 1 for o in seen) and again.face_count == 1
    assert empty.face_count == 0
    assert max(o.yaw_deg for o in seen) - min(o.yaw_deg for o in seen) < 3
    with pytest.raises(RuntimeError, match="closed"):
        video.analyze(frame)


def _webcam(img: np.ndarray, rng, w: int = 640, h: int = 480) -> np.ndarray:
    """A photo as a webcam delivers it: letterboxed to 640x480, sensor noise, JPEG quality 70."""
    s = min(w / img.shape[1], h / img.shape[0])
    small = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y:y + small.shape[0], x:x + small.shape[1]] = small
    out = np.clip(out.astype(np.int16) + rng.integers(-3, 4, out.shape), 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_COLOR)


def test_face_counter_runs_only_when_it_can_change_the_count(cfg, load_image):
    """Video mode: the independent counter on every frame (FACE_COUNTER_EVERY_N_FRAMES=1, the old
    behaviour) and gated (the default) give the same face count on every frame of a sequence of
    real scenes, each held for 8 frames as a webcam would show it (one person, three people, two
    men, an empty room, a person holding a phone), while the gated counter runs on far fewer frames."""
    names = ["a_1_webcam_woman_T1.jpg", "e_2_three_business.jpg", "a_1_webcam_woman_T1.jpg",
             "e_5_zidane_two_men.jpg", "f_5_living_room_empty.jpg", "b_3_coco536_women_on_phones.jpg",
             "a_6_grace_hopper.jpg"]
    rng = np.random.default_rng(3)
    frames = [_webcam(load_image(n), rng) for n in names for _ in range(8)]
    every = load_vision_config(env={}, FACE_COUNTER_EVERY_N_FRAMES=1)
    assert cfg.FACE_COUNTER_EVERY_N_FRAMES > 1
    with FaceAnalyzer(every) as always, FaceAnalyzer(cfg) as gated:
        want = [always.analyze(f).face_count for f in frames]
        got, ran = [], []
        for f in frames:
            before = gated.counter_runs
            got.append(gated.analyze(f).face_count)
            ran.append(gated.counter_runs > before)
        assert always.counter_runs == len(frames)
    assert got == want
    assert {want[i * 8 + 7] for i in range(len(names))} >= {0, 1, 2}  # the scenes do differ
    # One face the mesh tracks (the single-person scenes, 3 of them): the counter on the scene's first
    # frame (the count changed) and then one audit in FACE_COUNTER_EVERY_N_FRAMES frames.
    for i, name in enumerate(names):
        if name.startswith("a_"):
            assert ran[i * 8] and sum(ran[i * 8:i * 8 + 8]) == 1 + 7 // cfg.FACE_COUNTER_EVERY_N_FRAMES, (name, ran)
    # Faces the mesh does not track (the small faces of the group photos) keep it on every frame.
    assert all(ran[8:16]), ran[8:16]


def test_instances_run_in_parallel_threads(cfg, load_image):
    """One analyser per thread, no shared state: results match a single-threaded run."""
    names = ["a_1_webcam_woman_T1.jpg", "e_2_three_business.jpg", "f_5_living_room_empty.jpg", "a_7_astronaut.png"]
    frames = [load_image(n) for n in names]
    with FaceAnalyzer(cfg, static_image_mode=True) as ref:
        expected = [ref.analyze(f).face_count for f in frames]
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            with FaceAnalyzer(cfg, static_image_mode=True) as mine:
                results[i] = [mine.analyze(f).face_count for f in frames * 3]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert expected == [1, 3, 0, 1]
    assert all(r == expected * 3 for r in results.values())


def test_haar_fallback_counts_faces(cfg, load_image):
    with FaceAnalyzer(cfg, static_image_mode=True, backend="haar") as haar:
        obs = haar.analyze(load_image("a_6_grace_hopper.jpg"))
        none = haar.analyze(load_image("f_5_living_room_empty.jpg"))
    assert obs.face_count == 1 and obs.detector == "haar" and obs.yaw_deg is None and obs.landmarks == ()
    assert none.face_count == 0


def test_unknown_backend_is_refused(cfg):
    with pytest.raises(ValueError, match="backend"):
        FaceAnalyzer(cfg, backend="retina")


# --- liveness ----------------------------------------------------------------------------------

def _run(check: LivenessCheck, observations, start=0.0, step=0.1):
    state = None
    for i, obs in enumerate(observations):
        state = check.update(obs, start + i * step)
    return state


@pytest.mark.parametrize("name", ["b_1_phone_held_to_webcam.jpg", "a_1_webcam_woman_T1.jpg"])
def test_still_picture_does_not_pass_liveness(cfg, load_image, name):
    """The same frame for 12 s (a photo or phone screen held to the camera), through the
    video-mode analyser as the live pipeline would see it."""
    frame = load_image(name)
    check = LivenessCheck(cfg)
    with FaceAnalyzer(cfg) as video:
        states = [check.update(video.analyze(frame), i * 0.2) for i in range(61)]
    assert not any(s.passed or s.blink_seen or s.head_turn_seen for s in states)
    assert "waiting" in states[5].reason
    assert "still picture" in states[-1].reason


def test_shaking_phone_does_not_pass_liveness(cfg, load_image):
    """b_1 as a hand would hold it: every frame shifted up to 8 px, turned up to 3 degrees in the
    image plane and JPEG-compressed (quality 70), as a webcam stream would deliver it."""
    frame = load_image("b_1_phone_held_to_webcam.jpg")
    h, w = frame.shape[:2]
    rng = np.random.default_rng(7)
    check = LivenessCheck(cfg)
    states, yaws, ears = [], [], []
    with FaceAnalyzer(cfg) as video:
        for i in range(60):
            m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-3, 3)), 1.0)
            m[:, 2] += rng.uniform(-8, 8, size=2)
            moved = cv2.warpAffine(frame, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
            moved = cv2.imdecode(cv2.imencode(".jpg", moved, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], cv2.IMREAD_COLOR)
            obs = video.analyze(moved)
            yaws.append(obs.yaw_deg)
            ears.append(obs.ear)
            states.append(check.update(obs, i * 0.2))
    assert all(y is not None for y in yaws)
    assert not any(s.passed for s in states), (min(yaws), max(yaws), min(ears), max(ears))


def test_tilting_the_picture_does_not_fake_a_head_turn(cfg, load_image):
    """b_1 turned about its vertical axis and back (perspective warp; one edge shrinks to 70 %):
    the face in the picture changes its measured yaw by only a few degrees (measured ~5)."""
    frame = load_image("b_1_phone_held_to_webcam.jpg")
    h, w = frame.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    check = LivenessCheck(cfg)
    yaws, states = [], []
    with FaceAnalyzer(cfg) as video:
        for i, k in enumerate(list(np.linspace(0, 0.3, 8)) + list(np.linspace(0.3, 0, 8))):
            dst = np.float32([[0, 0], [w, h * k / 2], [w, h * (1 - k / 2)], [0, h]])
            warped = cv2.warpPerspective(frame, cv2.getPerspectiveTransform(src, dst), (w, h),
                                         borderMode=cv2.BORDER_REPLICATE)
            obs = video.analyze(warped)
            yaws.append(obs.yaw_deg)
            states.append(check.update(obs, i * 0.25))
    assert max(yaws) - min(yaws) < cfg.LIVENESS_TURN_DEG, yaws
    assert not any(s.passed for s in states)


def test_real_blink_passes_liveness(cfg, photo, load_image):
    img = load_image("a_1_webcam_woman_T1.jpg")
    open_obs = photo.analyze(img)
    closed_obs = photo.analyze(squash_eyes(img, open_obs))
    check = LivenessCheck(cfg)
    state = _run(check, [open_obs] * 5 + [closed_obs] * 2 + [open_obs] * 2)
    assert state.passed and state.blink_seen and not state.head_turn_seen
    assert state.reason == "blink seen"
    # latched until reset
    assert check.update(open_obs, 5.0).passed
    check.reset()
    assert not check.update(open_obs, 6.0).passed


def test_long_eye_closure_is_not_a_blink(cfg, photo, load_image):
    img = load_image("a_1_webcam_woman_T1.jpg")
    open_obs = photo.analyze(img)
    closed_obs = photo.analyze(squash_eyes(img, open_obs))
    state = _run(LivenessCheck(cfg), [open_obs] * 3 + [closed_obs] * 30 + [open_obs] * 3)  # 3 s closed
    assert not state.blink_seen and not state.passed


def test_blink_without_open_eyes_first_does_not_count(cfg, photo, load_image):
    img = load_image("a_1_webcam_woman_T1.jpg")
    closed_obs = photo.analyze(squash_eyes(img, photo.analyze(img)))
    state = _run(LivenessCheck(cfg), [closed_obs] * 5)
    assert not state.passed


def test_head_turn_and_back_passes_liveness(cfg, photo, load_image):
    img = load_image("identity/obama2.jpg")  # head turned ~14 degrees; its mirror ~15 the other way
    one = photo.analyze(img)
    other = photo.analyze(cv2.flip(img, 1))
    assert abs(one.yaw_deg - other.yaw_deg) >= cfg.LIVENESS_TURN_DEG
    state = _run(LivenessCheck(cfg), [one] * 3 + [other] * 3 + [one] * 3, step=0.3)
    assert state.passed and state.head_turn_seen and not state.blink_seen
    # turning away without coming back is not enough
    assert not _run(LivenessCheck(cfg), [one] * 3 + [other] * 6, step=0.3).passed


def test_liveness_evidence_outside_the_window_expires(cfg, photo, load_image):
    img = load_image("a_1_webcam_woman_T1.jpg")
    open_obs = photo.analyze(img)
    slow = dataclasses.replace(open_obs)  # same real observation
    check = LivenessCheck(cfg.with_overrides(LIVENESS_WINDOW_S=2.0, LIVENESS_BLINK_MAX_S=5.0))
    closed_obs = photo.analyze(squash_eyes(img, open_obs))
    check.update(slow, 0.0)
    check.update(closed_obs, 3.0)  # the open frame at t=0 has left the 2 s window
    state = check.update(open_obs, 3.5)
    assert not state.passed


def test_no_face_reason(cfg):
    state = LivenessCheck(cfg).update(FaceObservation(face_detected=False, face_count=0), 1.0)
    assert not state.passed and state.reason == "no face in view"
    with pytest.raises(ValueError):
        LivenessCheck(cfg).update(None, float("nan"))


def test_camera_activity_tells_a_still_student_from_a_frozen_camera(load_image):
    """Two captures of a motionless scene differ by sensor noise and JPEG requantisation; a frozen camera
    repeats the same picture. Only the second may count as frozen (CAMERA_OFF)."""
    import cv2
    import numpy as np

    from config_vision import load_vision_config
    from face_pipeline import camera_activity

    frozen_limit = load_vision_config(env={}).FROZEN_FRAME_DIFF
    photo = cv2.resize(load_image("a_1_webcam_woman_T1.jpg"), (640, 480), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(7)

    def capture():  # mild sensor noise (sigma 1.5 grey levels), then the page's JPEG encoding at quality 0.7
        noisy = np.clip(photo.astype(np.float32) + rng.normal(0, 1.5, photo.shape), 0, 255).astype(np.uint8)
        ok, jpeg = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 70])
        assert ok
        return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)

    first, second = capture(), capture()
    mean, diff, grey = camera_activity(first, None)
    assert diff is None and 60 < mean < 200 and grey.shape == (480, 640)
    _, still_diff, _ = camera_activity(second, grey)
    assert still_diff > frozen_limit, f"a still student would count as a frozen camera ({still_diff:.3f})"
    _, frozen_diff, _ = camera_activity(first, grey)
    assert frozen_diff == 0.0 < frozen_limit
    _, resized, _ = camera_activity(cv2.resize(first, (320, 240)), grey)
    assert resized is None  # a size change is not evidence either way
