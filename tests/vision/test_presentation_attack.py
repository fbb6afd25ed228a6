"""Presentation attacks on real photos: b_1 (a phone showing a face, held to the webcam) is refused,
every real face photo in ../shared/testdata passes, spoofs made from the held-out half of the photos
(side B of bench/presentation_attack_bench.py, never used to choose the threshold) are refused."""
from __future__ import annotations

import importlib.util
import sys

import cv2
import numpy as np
import pytest

from config_vision import load_vision_config
from presentation_attack import PresentationAttackCheck, PresentationResult, planarity
from tests.vision.conftest import REPO_ROOT, TESTDATA


def _bench():
    spec = importlib.util.spec_from_file_location("pa_bench", REPO_ROOT / "bench" / "presentation_attack_bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["pa_bench"] = module
    spec.loader.exec_module(module)
    return module


bench = _bench()
REAL = bench.real_photo_names(TESTDATA) if TESTDATA.is_dir() else []


@pytest.fixture(scope="module")
def config():
    return load_vision_config()


@pytest.fixture(scope="module")
def analyzer(config):
    from face_pipeline import FaceAnalyzer

    fa = FaceAnalyzer(config, static_image_mode=True)
    yield fa
    fa.close()


@pytest.fixture(scope="module")
def check(config):
    return PresentationAttackCheck(config)


def _face_box(obs):
    # the main face box, or the largest counted face when the face stage does not call it present
    return obs.box if obs.box is not None else (obs.face_boxes[0] if obs.face_boxes else None)


def _assess(analyzer, check, frame) -> PresentationResult:
    obs = analyzer.analyze(frame)
    box = _face_box(obs)
    assert box is not None, "the face stage must find the face first"
    return check.assess(frame, box, obs.landmarks)


def test_b1_phone_held_to_webcam_is_refused(analyzer, check, load_image):
    r = _assess(analyzer, check, load_image(bench.SPOOF_PHOTO))
    assert r.spoof and r.score >= 0.95, r
    assert "border" in r.reason
    assert set(r.cues["sides"]) == {"left", "right", "top", "bottom"}


@pytest.mark.parametrize("transform", ["jpeg40", "jpeg70", "noise6", "dark", "mirror", "scale0.6"])
def test_b1_transformed_is_refused(analyzer, check, load_image, transform):
    frame = bench.TRANSFORMS[transform](load_image(bench.SPOOF_PHOTO))
    assert _assess(analyzer, check, frame).spoof


@pytest.mark.parametrize("room", [0, 1])
def test_b1_phone_pasted_in_an_empty_room_is_refused(analyzer, check, load_image, room):
    frame = bench.phone_on_background(load_image(bench.SPOOF_PHOTO), load_image(bench.EMPTY_ROOMS[room]), 0.75, (0.1, 0.05))
    assert _assess(analyzer, check, frame).spoof


@pytest.mark.parametrize("name", REAL)
def test_every_real_face_photo_passes(analyzer, check, load_image, name):
    r = _assess(analyzer, check, load_image(name))
    assert not r.spoof, (name, r.score, r.cues["sides"])
    assert r.score < check.config.PA_FRAME_SCORE_THRESHOLD


def test_held_out_printed_photos_are_refused(analyzer, check, load_image):
    held_out = [n for n in REAL if bench.side_of(n, REAL) == "B"]
    refused = 0
    for k, name in enumerate(held_out):
        img = load_image(name)
        box = _face_box(analyzer.analyze(img))
        frame = bench.printed_photo(img, box, load_image(bench.EMPTY_ROOMS[(k + 1) % 2]), 0.4 + 0.3 * (k % 3))
        refused += _assess(analyzer, check, frame).spoof
    # measured 23 of 23 at the default threshold (docs/presentation-attack.md); allow one miss
    assert refused >= len(held_out) - 1, (refused, len(held_out))


def test_held_out_faces_on_the_phone_screen_in_a_room_are_mostly_refused(analyzer, check, load_image):
    held_out = [n for n in REAL if bench.side_of(n, REAL) == "B"]
    b1 = load_image(bench.SPOOF_PHOTO)
    refused = 0
    for k, name in enumerate(held_out):
        img = load_image(name)
        screen = bench.screen_composite(b1, img, _face_box(analyzer.analyze(img)))
        frame = bench.phone_on_background(screen, load_image(bench.EMPTY_ROOMS[k % 2]), 0.75, (0.12 * (-1) ** k, 0.05))
        refused += _assess(analyzer, check, frame).spoof
    # measured 14 of 23 (docs/presentation-attack.md): the cue misses screens whose picture is as dark as the bezel
    assert refused >= len(held_out) // 2, (refused, len(held_out))


def _tilt(img, a, b):
    h, w = img.shape[:2]
    src = np.float32([(0, 0), (w, 0), (w, h), (0, h)])
    dst = np.float32([(a * w, b * h), (w - a * w * 0.3, 0), (w, h - b * h), (0, h)])
    return cv2.warpPerspective(img, cv2.getPerspectiveTransform(src, dst), (w, h), borderMode=cv2.BORDER_REPLICATE)


def test_sequence_of_a_tilted_picture_is_planar_and_refused(analyzer, check, load_image):
    b1 = load_image(bench.SPOOF_PHOTO)
    frames = [b1, _tilt(b1, 0.06, 0.02), _tilt(b1, 0.1, 0.05), _tilt(b1, -0.05, 0.04)]
    r = check.assess_sequence([(f, analyzer.analyze(f)) for f in frames])
    assert r.spoof and r.cues["frames"] == 4
    assert r.cues["planar_residual"] <= check.config.PA_PLANAR_MAX_RESIDUAL


def test_sequence_of_one_real_person_in_different_poses_is_not_planar(analyzer, check, load_image):
    names = ["p05_img38.jpg", "p05_img39.jpg", "p05_img40.jpg", "p05_img41.jpg"]
    frames = [load_image(f"identity/people/{n}") for n in names]
    r = check.assess_sequence([(f, analyzer.analyze(f)) for f in frames])
    assert not r.spoof and r.cues["planar"] is False, r.cues


def test_still_real_face_leaves_planarity_undecided(analyzer, check, load_image):
    a1 = load_image("a_1_webcam_woman_T1.jpg")
    noisy = bench._noise(a1, 4.0)
    r = check.assess_sequence([(a1, analyzer.analyze(a1)), (noisy, analyzer.analyze(noisy))])
    assert not r.spoof and r.cues["planar"] is None


def test_planarity_of_a_homography_is_near_zero():
    rng = np.random.default_rng(3)
    pts = rng.uniform(100, 300, (468, 2))
    h = np.array([[1.05, 0.08, 4.0], [-0.03, 0.97, -6.0], [2e-4, -1e-4, 1.0]])
    moved = cv2.perspectiveTransform(pts.reshape(-1, 1, 2), h).reshape(-1, 2)
    res = planarity([pts, moved])
    assert res["residual"] < 1e-6 < res["motion"]


@pytest.mark.parametrize("frame, box, landmarks", [
    ("not an image", (0, 0, 10, 10), None),
    (np.zeros((100, 100, 3), np.float32), (10, 10, 50, 50), None),
    (np.zeros((100, 100, 5), np.uint8), (10, 10, 50, 50), None),
    (np.zeros((100, 100, 3), np.uint8), (10, 10, 12, 12), None),
    (np.zeros((100, 100, 3), np.uint8), (200, 200, 300, 300), None),
    (np.zeros((100, 100, 3), np.uint8), "box", None),
    (np.zeros((100, 100, 3), np.uint8), (10, 10, 60, 60), [[1.0, float("nan")]]),
])
def test_bad_input_is_a_value_error(check, frame, box, landmarks):
    with pytest.raises(ValueError):
        check.assess(frame, box, landmarks)


def test_empty_sequence_is_a_value_error(check):
    with pytest.raises(ValueError):
        check.assess_sequence([])
