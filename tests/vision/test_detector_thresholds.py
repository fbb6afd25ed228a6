"""Per-class thresholds chosen on one half of the photos behave on the other half.

The same rule as bench/detection_quality.py (which runs 11 variants and both folds): the bar of
a class is the highest score it gets on the tuning photos without it, plus 0.02 (never below
0.1). Here: bars from split A (b_1, c_1, a_1, a_6, f_1, e_2), scored on split B (b_3, d_3, a_3,
a_7, f_5, e_5), four variants each, CenterNet (the backend auto picks here).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import pytest

from config_vision import COCO_BOOK, COCO_CELL_PHONE, COCO_LAPTOP, load_vision_config
from person_pipeline import create_detector

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("PROCTOR_MODEL_MIRROR", REPO_ROOT.parent / "shared" / "models"))
BANNED = (COCO_CELL_PHONE, COCO_BOOK, COCO_LAPTOP)
SPLIT_A = {"b_1_phone_held_to_webcam.jpg": COCO_CELL_PHONE, "c_1_coco446_woman_bookshelf.jpg": COCO_BOOK,
           "a_1_webcam_woman_T1.jpg": None, "a_6_grace_hopper.jpg": None,
           "f_1_coco133_loft_desk_chair.jpg": None, "e_2_three_business.jpg": None}
SPLIT_B = {"b_3_coco536_women_on_phones.jpg": COCO_CELL_PHONE, "d_3_woman_holding_xo_laptop.jpg": COCO_LAPTOP,
           "a_3_face_closeup_sergey.png": None, "a_7_astronaut.png": None,
           "f_5_living_room_empty.jpg": None, "e_5_zidane_two_men.jpg": None}
VARIANTS = {
    "original": lambda im: im,
    "mirrored": lambda im: cv2.flip(im, 1),
    "scale 1.5": lambda im: cv2.resize(im, None, fx=1.5, fy=1.5, interpolation=cv2.INTER_LINEAR),
    "jpeg 40": lambda im: cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 40])[1], cv2.IMREAD_COLOR),
}


@pytest.fixture(scope="module")
def scores(load_image):
    """Best score per prohibited class for every photo and variant (the pipeline's looks, bars 0.05)."""
    cfg = load_vision_config(env={}, DETECTOR_BACKEND="centernet", DETECTOR_HAND_LOOK=False,
                             PHONE_CONFIDENCE=0.05, BOOK_CONFIDENCE=0.05, LAPTOP_CONFIDENCE=0.05)
    det = create_detector(cfg, models_dir=MIRROR)
    out = {}
    for name in (*SPLIT_A, *SPLIT_B):
        img = load_image(name)
        for v, tf in VARIANTS.items():
            dets = det.detect(tf(img))
            out[(name, v)] = {c: max((d.score for d in dets.items if d.class_id == c), default=0.0) for c in BANNED}
    return out


def _bars(scores, split):
    return {c: max(0.1, math.ceil((max(s[c] for (name, _), s in scores.items() if name in split and split[name] != c)
                                   + 0.02) * 100 - 1e-6) / 100) for c in BANNED}


def test_bars_from_split_a_find_split_b_objects_without_false_alarms(scores):
    bars = _bars(scores, SPLIT_A)
    hits = {c: [] for c in BANNED}
    false_alarms = []
    for (name, v), s in scores.items():
        if name not in SPLIT_B:
            continue
        for c in BANNED:
            fired = s[c] >= bars[c]
            if SPLIT_B[name] == c:
                hits[c].append(fired)
            elif fired:
                false_alarms.append((name, v, c, round(s[c], 2)))
    # Held out, honestly: the book bar from split A (0.25: f_1's shelf edges) lets one frame of
    # B through, the empty living room at JPEG 40 (0.27). The shipped bar (0.30) is the rule on
    # both splits; an unseen room can still beat it. Phones and laptops: no false alarm on B.
    assert [fa[:3] for fa in false_alarms] == [("f_5_living_room_empty.jpg", "jpeg 40", COCO_BOOK)], (bars, false_alarms)
    assert all(hits[COCO_LAPTOP]) and len(hits[COCO_LAPTOP]) == 4, (bars, scores)
    assert sum(hits[COCO_CELL_PHONE]) >= 3, (bars, hits)               # the b_3 phones at the ears


def test_shipped_defaults_are_at_least_the_split_bars(scores):
    """The defaults are the rule applied to all photos (bench, 11 variants): never below either
    split's own bar here, so neither side's false scores pass them."""
    cfg = load_vision_config(env={})
    for split in (SPLIT_A, SPLIT_B):
        bars = _bars(scores, split)
        for c in BANNED:
            assert cfg.class_confidence(c) >= bars[c] - 1e-9, (c, cfg.class_confidence(c), bars)


def test_book_bar_from_split_b_finds_the_c1_books(scores):
    bars = _bars(scores, SPLIT_B)
    found = [scores[("c_1_coco446_woman_bookshelf.jpg", v)][COCO_BOOK] >= bars[COCO_BOOK] for v in VARIANTS]
    assert all(found), (bars, [scores[("c_1_coco446_woman_bookshelf.jpg", v)] for v in VARIANTS])
