"""EYES_CLOSED against a student looking down (issue 15), on real photos through the real FaceMesh.

Reported: a man reading his laptop (eyes open, looking down, EAR 0.13-0.18 because the upper lids
cover the iris from the camera's angle) got EYES_CLOSED in every run. ../shared/testdata holds no
photo of a face looking down and none of real closed eyes, so both are made from real photos:

* looking down: ``nod`` turns the head of a real photo down about a horizontal axis. FaceMesh's own
  3-D landmarks of the photo are rotated and the photo is warped piecewise-affinely onto them (a
  ring around the face and the frame's border hold the background), optionally with the upper lids
  lowered towards the lower ones and the irises lowered, as open eyes looking down show them;
* closed eyes: ``squash_eyes`` from test_face_pipeline (the lid opening of a real face shrunk the
  way a blink does).

EYES_CLOSED_MAX_PITCH_DOWN_DEG (20) was chosen on the frontal photos of people p01-p04 (faces
looking at the camera read at most 18.1 degrees down, p03_img55) and scored on the other frontal
photos (at most 16.5 down, b_1: 3.5 degrees of margin). Heads turned down 30 degrees by ``nod``
read beyond 20 in 26 of 27 (choose) and 16 of 18 (score) photos, 40 degrees in 44 of 45;
turned 20 degrees (with lowered lids), in 32 of 45: a head lowered less than about 25 degrees is
still judged by its lids alone.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from decision_engine import STARTED, DecisionEngine, FrameObservation
from tests.vision.test_face_pipeline import squash_eyes

STEP_S = 0.1
# FaceMesh indices (478-point topology): each eye's upper lid, lower lid (corner to corner), iris.
_UPPER_LIDS = ((246, 161, 160, 159, 158, 157, 173), (466, 388, 387, 386, 385, 384, 398))
_LOWER_LIDS = ((33, 7, 163, 144, 145, 153, 154, 155, 133), (263, 249, 390, 373, 374, 380, 381, 382, 362))
_IRISES = (tuple(range(468, 473)), tuple(range(473, 478)))


@pytest.fixture(scope="module")
def mesh3d():
    """photo -> its main face's 478 FaceMesh landmarks in pixels, with depth (x, y, z)."""
    from mediapipe.python.solutions import face_mesh

    mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True)

    def _landmarks(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        res = mesh.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        assert res.multi_face_landmarks, "FaceMesh found no face to turn"
        return np.array([(p.x * w, p.y * h, p.z * w) for p in res.multi_face_landmarks[0].landmark])

    yield _landmarks
    mesh.close()


def _triangles(pts: np.ndarray, w: int, h: int) -> list[list[int]]:
    sub = cv2.Subdiv2D((-1, -1, w + 2, h + 2))
    index = {}
    for i, (x, y) in enumerate(pts):
        index[(float(np.float32(x)), float(np.float32(y)))] = i
        sub.insert((float(x), float(y)))
    tris = []
    for t in sub.getTriangleList():
        ids = [index.get((float(np.float32(t[2 * k])), float(np.float32(t[2 * k + 1])))) for k in range(3)]
        if None not in ids:  # triangles touching Subdiv2D's outer virtual vertices are dropped
            tris.append(ids)
    return tris


def nod(img: np.ndarray, p3: np.ndarray, down_deg: float, lid_drop: float = 0.0, iris_drop: float = 0.0) -> np.ndarray:
    """The photo with its head turned down by ``down_deg`` (see the module docstring); the upper lids
    lowered by ``lid_drop`` of the lid opening and the irises by ``iris_drop`` of their radius."""
    h, w = img.shape[:2]
    centre = p3[:468].mean(axis=0)
    th = math.radians(down_deg)
    d = p3 - centre
    # Turning down: the forehead comes towards the camera (z falls), the chin goes away.
    dy = d[:, 1] * math.cos(th) - d[:, 2] * math.sin(th)
    depth = d[:, 1] * math.sin(th) + d[:, 2] * math.cos(th)
    dst = np.stack([p3[:, 0], centre[1] + dy], axis=1)
    for upper, lower, iris in zip(_UPPER_LIDS, _LOWER_LIDS, _IRISES):
        lx, ly = zip(*sorted((dst[i, 0], dst[i, 1]) for i in lower))
        up = list(upper)
        dst[up, 1] += lid_drop * (np.interp(dst[up, 0], lx, ly) - dst[up, 1])
        dst[list(iris), 1] += iris_drop * np.hypot(*(dst[iris[1]] - dst[iris[3]])) / 2
    src = p3[:, :2]
    (x1, y1), (x2, y2) = src.min(axis=0), src.max(axis=0)
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = np.stack([(x1 + x2) / 2 + (x2 - x1) * 0.8 * np.cos(ang), (y1 + y2) / 2 + (y2 - y1) * 0.8 * np.sin(ang)], axis=1)
    ring = ring[(ring[:, 0] > 0) & (ring[:, 0] < w - 1) & (ring[:, 1] > 0) & (ring[:, 1] < h - 1)]
    ring_dst = np.stack([ring[:, 0], centre[1] + (ring[:, 1] - centre[1]) * math.cos(th)], axis=1)
    border = np.array([(x, y) for x in (0, w / 2, w - 1) for y in (0, h / 2, h - 1) if (x, y) != (w / 2, h / 2)], float)
    all_src = np.concatenate([src, ring, border])
    all_dst = np.concatenate([dst, ring_dst, border])
    all_depth = np.concatenate([depth, np.full(len(ring) + len(border), depth.max() + 1.0)])
    out = img.copy()
    for t in sorted(_triangles(all_src, w, h), key=lambda t: -all_depth[t].mean()):  # far first, near last
        s, dd = np.float32(all_src[t]), np.float32(all_dst[t])
        bx, by, bw, bh = cv2.boundingRect(dd)
        xa, ya, xb, yb = max(bx, 0), max(by, 0), min(bx + bw, w), min(by + bh, h)
        if xb <= xa or yb <= ya:
            continue
        m = cv2.getAffineTransform(s, dd - np.float32([bx, by]))
        patch = cv2.warpAffine(img, m, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        mask = np.zeros((bh, bw), np.uint8)
        cv2.fillConvexPoly(mask, np.int32(np.round(dd - [bx, by])), 255, cv2.LINE_AA)
        cut = (slice(ya - by, yb - by), slice(xa - bx, xb - bx))
        alpha = mask[cut][..., None] / 255.0
        out[ya:yb, xa:xb] = (patch[cut] * alpha + out[ya:yb, xa:xb] * (1 - alpha)).astype(np.uint8)
    return out


def eyes_closed_events(cfg, face, seconds: float = 3.0):
    """The same real observation held for ``seconds`` on a fake clock: the EYES_CLOSED events."""
    engine = DecisionEngine(cfg)
    events = []
    for i in range(int(round(seconds / STEP_S))):
        t = round(i * STEP_S, 6)
        events += engine.evaluate("s", FrameObservation(t=t, face=face, frame_mean=120.0, frame_diff=4.0), t)
    return [e for e in events if e.rule == "EYES_CLOSED" and e.state == STARTED]


def lids_read_closed(cfg, face) -> bool:
    return face.ear_left < cfg.EAR_THRESHOLD and face.ear_right < cfg.EAR_THRESHOLD


# Looking down with the lids low, where EAR alone says "closed" (the reported case): a plain nod of
# 45 degrees, and nods of 30-35 degrees with the upper lids and irises lowered.
LOOKING_DOWN = [
    ("a_1_webcam_woman_T1.jpg", 45, 0.0, 0.0),
    ("a_3_face_closeup_sergey.png", 30, 0.6, 0.5),
    ("a_3_face_closeup_sergey.png", 35, 0.75, 0.6),
]


@pytest.mark.parametrize("name,down_deg,lid_drop,iris_drop", LOOKING_DOWN,
                         ids=[f"{n[:4]}down{d}lids{l}" for n, d, l, _ in LOOKING_DOWN])
def test_looking_down_with_low_lids_is_not_eyes_closed(cfg, photo, mesh3d, load_image, name, down_deg, lid_drop, iris_drop):
    img = load_image(name)
    face = photo.analyze(nod(img, mesh3d(img), down_deg, lid_drop, iris_drop))
    assert face.face_detected and face.face_count == 1
    assert lids_read_closed(cfg, face), (face.ear_left, face.ear_right)  # EAR alone fired here before issue 15
    assert face.pitch_down_deg > cfg.EYES_CLOSED_MAX_PITCH_DOWN_DEG + 3, face.pitch_down_deg
    assert eyes_closed_events(cfg, face) == []


FRONTAL_OPEN = ["a_1_webcam_woman_T1.jpg", "a_3_face_closeup_sergey.png", "a_6_grace_hopper.jpg",
                "a_7_astronaut.png", "identity/obama.jpg", "identity/people/p02_img26.jpg"]


@pytest.mark.parametrize("name", FRONTAL_OPEN)
def test_frontal_open_eyes_are_not_eyes_closed(cfg, photo, load_image, name):
    face = photo.analyze(load_image(name))
    assert face.face_detected and face.pitch_down_deg < cfg.EYES_CLOSED_MAX_PITCH_DOWN_DEG
    assert eyes_closed_events(cfg, face) == []


@pytest.mark.parametrize("name", ["a_1_webcam_woman_T1.jpg", "identity/obama.jpg"])
def test_closed_eyes_facing_the_camera_are_eyes_closed(cfg, photo, load_image, name):
    img = load_image(name)
    face = photo.analyze(squash_eyes(img, photo.analyze(img)))
    assert lids_read_closed(cfg, face), (face.ear_left, face.ear_right)
    ev = eyes_closed_events(cfg, face)
    assert len(ev) == 1 and ev[0].t == pytest.approx(cfg.TIME_EYES_CLOSED_S)
    assert ev[0].details["pitch_down_deg"] == pytest.approx(face.pitch_down_deg, abs=0.05)


# The held-out half of the threshold's data (the module docstring): frontal faces stay inside the
# bound, and the same faces turned 40 degrees down fall beyond it.
SCORE_FRONTAL = ["a_6_grace_hopper.jpg", "a_7_astronaut.png", "b_1_phone_held_to_webcam.jpg",
                 "identity/biden.jpg", "identity/obama2.jpg", "identity/people/p05_img39.jpg",
                 "identity/people/p06_img21.jpg", "identity/people/p07_img24.jpg"]


@pytest.mark.parametrize("name", SCORE_FRONTAL)
def test_pitch_bound_separates_faces_at_the_camera_from_heads_turned_down(cfg, photo, mesh3d, load_image, name):
    img = load_image(name)
    frontal = photo.analyze(img)
    down = photo.analyze(nod(img, mesh3d(img), 40, 0.5, 0.5))
    bound = cfg.EYES_CLOSED_MAX_PITCH_DOWN_DEG
    assert frontal.pitch_down_deg < bound - 3, frontal.pitch_down_deg
    assert down.pitch_down_deg > bound + 5, down.pitch_down_deg
