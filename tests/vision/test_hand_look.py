"""The hand-guided look (hand_pipeline.py through ObjectDetector.detect) on real photos.

b_3 shows two women holding phones at their ears and a third seated; c_1 a woman holding a
black remote at a bookshelf; e_5 a man with a hand low in the frame. Variants are made by
cropping, mirroring and scaling the photos (bench/detection_quality.py measures many more).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from config_vision import COCO_BOOK, COCO_CELL_PHONE, COCO_LAPTOP, load_vision_config
from hand_pipeline import Hand, hand_beside_head, hand_crop
from person_pipeline import create_detector

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("PROCTOR_MODEL_MIRROR", REPO_ROOT.parent / "shared" / "models"))
BANNED = (COCO_CELL_PHONE, COCO_BOOK, COCO_LAPTOP)
EAR_HAND_B3 = (106, 108, 123, 142)   # the left woman's hand at her ear (MediaPipe landmarks' box)


@pytest.fixture(scope="module")
def detector():
    return create_detector(load_vision_config(env={}, DETECTOR_BACKEND="centernet"), models_dir=MIRROR)


def _near(box, target, tol):
    return all(abs(a - b) <= tol for a, b in zip(box, target))


VARIANTS = {
    "original": lambda im: im,
    "mirrored": lambda im: cv2.flip(im, 1),
    "left two women": lambda im: np.ascontiguousarray(im[:, :300]),
    "scale 1.5": lambda im: cv2.resize(im, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR),
    "jpeg 60": lambda im: cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_COLOR),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_phone_at_ear_in_b3(detector, load_image, variant):
    dets = detector.detect(VARIANTS[variant](load_image("b_3_coco536_women_on_phones.jpg")))
    assert dets.hands, "MediaPipe Hands should find the hand at the ear"
    assert dets.phone_at_ear is True


@pytest.mark.parametrize("name", [
    "c_1_coco446_woman_bookshelf.jpg",   # a hand holding a remote, at waist height
    "e_5_zidane_two_men.jpg",            # a hand low in the frame
    "a_1_webcam_woman_T1.jpg",
    "d_3_woman_holding_xo_laptop.jpg",
    "f_5_living_room_empty.jpg",
])
@pytest.mark.parametrize("mirror", [False, True])
def test_no_phone_at_ear_elsewhere(detector, load_image, name, mirror):
    img = load_image(name)
    dets = detector.detect(cv2.flip(img, 1) if mirror else img)
    assert dets.phone_at_ear is False


def test_hands_are_where_they_are(detector, load_image):
    dets = detector.detect(load_image("b_3_coco536_women_on_phones.jpg"))
    assert any(_near(h.box, EAR_HAND_B3, 8) for h in dets.hands), [h.box for h in dets.hands]
    mirrored = detector.detect(cv2.flip(load_image("b_3_coco536_women_on_phones.jpg"), 1))
    w = 448
    flipped = (w - EAR_HAND_B3[2], EAR_HAND_B3[1], w - EAR_HAND_B3[0], EAR_HAND_B3[3])
    assert any(_near(h.box, flipped, 8) for h in mirrored.hands), [h.box for h in mirrored.hands]


def test_hand_look_off_gives_no_hands_and_no_signal(detector, load_image):
    cfg = load_vision_config(env={}, DETECTOR_BACKEND="centernet", DETECTOR_HAND_LOOK=False)
    dets = detector.detect(load_image("b_3_coco536_women_on_phones.jpg"), config=cfg)
    assert dets.hands == () and dets.phone_at_ear is False


def test_hand_crop_is_a_square_around_the_hand_inside_the_frame():
    hand = Hand(box=EAR_HAND_B3, score=0.98)
    x1, y1, x2, y2 = hand_crop(hand, (448, 336), hand_sizes=4.0, min_px=96)
    assert x2 - x1 == y2 - y1 == round(4.0 * 34)
    assert x1 <= 106 and y1 <= 108 and x2 >= 123 and y2 >= 142 and x1 >= 0 and y1 >= 0
    corner = Hand(box=(0, 300, 20, 336), score=0.9)                 # at the frame's corner: shifted in
    cx1, cy1, cx2, cy2 = hand_crop(corner, (448, 336), hand_sizes=4.0, min_px=96)
    assert cx1 == 0 and cy2 == 336 and cx2 - cx1 == 144
    assert hand_crop(Hand(box=(0, 0, 300, 300), score=0.9), (448, 336), 4.0, 96) is None   # no zoom to gain


def test_beside_the_head_geometry():
    head = (117, 93, 155, 131)                                      # the left woman's face in b_3
    assert hand_beside_head(Hand(box=EAR_HAND_B3, score=0.9), head)
    assert not hand_beside_head(Hand(box=(138, 249, 155, 277), score=0.9), head)   # a hand in the lap
    assert not hand_beside_head(Hand(box=(300, 108, 320, 140), score=0.9), head)   # far to the side


def test_hand_crop_raises_the_ear_phone_score_nanodet(load_image):
    """On b_3 NanoDet scores the phone at the left woman's ear 0.13-0.16 on the whole frame and
    0.22-0.23 in the crop around her hand: the crop finds what the whole frame scores lower (still
    under NanoDet's phone bar, so it feeds phone_at_ear rather than PROHIBITED_OBJECT)."""
    cfg = load_vision_config(env={}, DETECTOR_BACKEND="nanodet", DETECTOR_SECOND_LOOK=False,
                             NANODET_PHONE_CONFIDENCE=0.1)
    det = create_detector(cfg, models_dir=MIRROR)
    for variant in ("original", "mirrored"):
        img = VARIANTS[variant](load_image("b_3_coco536_women_on_phones.jpg"))
        whole = det.detect(img, config=cfg.with_overrides(DETECTOR_HAND_LOOK=False))
        looked = det.detect(img, config=cfg.with_overrides(HAND_CROP_OBJECTS=True, HAND_LOOK_MAX_CROPS=2))

        def at_ear_hand(dets):
            hands = [h for h in looked.hands if h.size > 20 and h.box[1] < 160]   # the raised hands
            return max((d.score for d in dets.items if d.class_id == COCO_CELL_PHONE and any(
                h.box[0] - h.size <= (d.box[0] + d.box[2]) / 2 <= h.box[2] + h.size and
                h.box[1] - h.size <= (d.box[1] + d.box[3]) / 2 <= h.box[3] + h.size for h in hands)), default=0.0)

        assert at_ear_hand(looked) >= 0.2 > at_ear_hand(whole), (variant, at_ear_hand(looked), at_ear_hand(whole))


def test_hand_crop_objects_would_call_the_held_remote_a_phone(load_image):
    """Why HAND_CROP_OBJECTS is off by default: on c_1 CenterNet scores the black remote in the
    woman's hand 0.17 on the whole frame but 0.3+ in the crop around her hand, above the phone bar."""
    cfg = load_vision_config(env={}, DETECTOR_BACKEND="centernet")
    det = create_detector(cfg, models_dir=MIRROR)
    img = load_image("c_1_coco446_woman_bookshelf.jpg")
    assert not det.detect(img).banned([COCO_CELL_PHONE])
    assert det.detect(img, config=cfg.with_overrides(HAND_CROP_OBJECTS=True, HAND_LOOK_MAX_CROPS=2)).banned(
        [COCO_CELL_PHONE])
