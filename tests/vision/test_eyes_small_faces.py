"""EYES_CLOSED on a face far from the camera (issue 15), on real photos through the real FaceMesh.

Reported: students sitting back from the camera (faces about 56-70 px) got EYES_CLOSED with their eyes
open. On such a face the eye is about 11-14 px wide and its lid opening two or three pixels, so the eye
aspect ratio strays by up to 0.10-0.16 from the same face's at full size, under EAR_THRESHOLD for open
eyes. EyesClosedRule therefore judges no eyes on a face box under EYES_CLOSED_MIN_FACE_PX (short side).

The photos are placed into a 640x480 webcam frame with the face scaled down (and re-encoded as JPEG
quality 70, as the browser sends), as bench/eyes_face_size.py does to choose the bound: chosen on half A
of the people (bench/identity_samples.SPLIT), scored here on half B. Closed eyes are made from real
photos by ``squash_eyes`` (test_face_pipeline).
"""
from __future__ import annotations

import pytest

from bench.eyes_face_size import jpeg
from decision_engine import EyesClosedRule, FrameObservation
from tests.photos import place_face
from tests.vision.test_eyes_looking_down import eyes_closed_events
from tests.vision.test_face_pipeline import squash_eyes



@pytest.fixture(scope="module")
def far_face(photo, load_image):
    """(photo name, face px, codec, closed?) -> the face stage's observation of that webcam frame."""
    def _far(name: str, face_px: int, codec: str = "raw", closed: bool = False):
        img = load_image(name)
        full = photo.analyze(img)
        assert full.face_detected, name
        src = squash_eyes(img, full) if closed else img
        frame = place_face(src, full.box, face_px)
        return photo.analyze(jpeg(frame) if codec == "jpeg70" else frame)
    return _far


def short_side(face) -> int:
    x1, y1, x2, y2 = face.box
    return min(x2 - x1, y2 - y1)


def lids_read_closed(cfg, face) -> bool:
    return face.ear_left < cfg.EAR_THRESHOLD and face.ear_right < cfg.EAR_THRESHOLD


# Open eyes that the EAR alone read as closed on a small face (bench/eyes_face_size.py): before issue 15's
# size bound each of these fired EYES_CLOSED.
OPEN_READ_CLOSED_WHEN_SMALL = [
    ("a_1_webcam_woman_T1.jpg", 64, "jpeg70"),
    ("identity/people/p02_img44.jpg", 64, "raw"),
]


@pytest.mark.parametrize("name,face_px,codec", OPEN_READ_CLOSED_WHEN_SMALL,
                         ids=[f"{n.split('/')[-1][:9]}-{p}px-{c}" for n, p, c in OPEN_READ_CLOSED_WHEN_SMALL])
def test_open_eyes_on_a_small_face_are_not_eyes_closed(cfg, photo, far_face, load_image, name, face_px, codec):
    full = photo.analyze(load_image(name))
    assert not lids_read_closed(cfg, full)  # open at full size
    face = far_face(name, face_px, codec)
    assert face.face_detected and face.face_count == 1
    assert lids_read_closed(cfg, face), (face.ear_left, face.ear_right)  # EAR alone says closed here
    assert short_side(face) < cfg.EYES_CLOSED_MIN_FACE_PX, face.box
    assert eyes_closed_events(cfg, face) == []


# Half B of bench/identity_samples.SPLIT (the bound was chosen on half A), open eyes. p02_img26 is left
# out: a broad smile with heavy make-up reads 0.184 at full size, at the bar at every size
# (docs/fairness.md), a question for EAR_THRESHOLD, not for size.
HELD_OUT_OPEN = ["identity/people/p02_img27.jpg", "identity/people/p02_img28.jpg", "identity/people/p02_img42.jpg",
                 "identity/people/p02_img43.jpg", "identity/people/p02_img44.jpg", "identity/people/p02_img45.jpg",
                 "identity/people/p02_img46.jpg", "identity/people/p04_img13.jpg", "identity/people/p04_img14.jpg",
                 "identity/people/p04_img15.jpg", "identity/people/p04_img57.jpg", "identity/people/p04_img58.jpg",
                 "identity/people/p06_img20.jpg", "identity/people/p06_img21.jpg", "identity/biden.jpg",
                 "a_3_face_closeup_sergey.png", "a_7_astronaut.png"]


@pytest.mark.parametrize("name", HELD_OUT_OPEN, ids=[n.split("/")[-1][:9] for n in HELD_OUT_OPEN])
def test_held_out_open_eyes_are_judged_open_above_the_bound_and_not_judged_below(cfg, far_face, name):
    rule = EyesClosedRule()
    for face_px, codec in ((96, "jpeg70"), (56, "jpeg70"), (56, "raw")):
        face = far_face(name, face_px, codec)
        assert face.face_detected, (name, face_px, codec)
        cond = rule.condition(FrameObservation(t=0.0, face=face), cfg, 0.0, None)
        if face_px >= cfg.EYES_CLOSED_MIN_FACE_PX:
            assert short_side(face) >= cfg.EYES_CLOSED_MIN_FACE_PX, face.box
            assert cond is not None and not cond.active, (face_px, codec, face.ear_left, face.ear_right)
        else:
            assert short_side(face) < cfg.EYES_CLOSED_MIN_FACE_PX, face.box
            assert cond is None, (face_px, codec, face.ear_left, face.ear_right)


@pytest.mark.parametrize("face_px,codec", [(160, "raw"), (120, "jpeg70"), (96, "raw"), (96, "jpeg70")])
def test_closed_eyes_at_a_normal_size_are_still_eyes_closed(cfg, far_face, face_px, codec):
    face = far_face("a_1_webcam_woman_T1.jpg", face_px, codec, closed=True)
    assert short_side(face) >= cfg.EYES_CLOSED_MIN_FACE_PX, face.box
    assert lids_read_closed(cfg, face), (face.ear_left, face.ear_right)
    ev = eyes_closed_events(cfg, face)
    assert len(ev) == 1 and ev[0].t == pytest.approx(cfg.TIME_EYES_CLOSED_S)
    assert ev[0].details["face_px"] == short_side(face)
