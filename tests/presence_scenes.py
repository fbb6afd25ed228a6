"""Scenes with nobody in them, made from the real photos in ../shared/testdata, for the presence
sweep (bench/presence_sweep.py) and its tests.

Two kinds of empty scene:
- the photos that show no person (an empty loft, an empty living room);
- every photo with a person, with the people covered: each person's region (the detector's person
  boxes and the face stage's face boxes, widened) is filled by OpenCV's inpainting from the
  surrounding background, as if the person had left the room. Where the people fill most of the
  photo the inpainting is a smear, which is still a scene with no face in it.

Each scene then goes through webcam-like transforms (``TRANSFORMS``): letterbox and pillarbox to
4:3 and 16:9, scale 0.5-1.5, gamma and darkening, sensor noise (fresh on every frame), JPEG 40-90,
mirrored. ``person_clip`` makes a clip person -> empty -> person from a photo and its covered copy;
``examinee_clip`` one from an empty scene with an examinee's head and shoulders composited in.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from tests.vision.conftest import TESTDATA

EMPTY_PHOTOS = ("f_1_coco133_loft_desk_chair.jpg", "f_5_living_room_empty.jpg")
PERSON_PHOTOS = (
    "a_1_webcam_woman_T1.jpg", "a_3_face_closeup_sergey.png", "a_6_grace_hopper.jpg", "a_7_astronaut.png",
    "b_1_phone_held_to_webcam.jpg", "b_3_coco536_women_on_phones.jpg", "c_1_coco446_woman_bookshelf.jpg",
    "d_3_woman_holding_xo_laptop.jpg", "e_2_three_business.jpg", "e_5_zidane_two_men.jpg",
)
WORK_WIDTH = 640  # scenes are built at this width before the transforms
MAX_COVERED_SHARE = 0.8  # a photo whose people fill more than this share shows no room once they are covered


@dataclass(frozen=True)
class Transform:
    name: str
    aspect: float = 4 / 3        # the camera frame's width / height
    scale: float = 1.0           # < 1: the scene shrunk inside the frame (borders), > 1: zoomed in
    gamma: float = 1.0           # > 1 darkens the mid-tones
    gain: float = 1.0            # overall brightness factor
    noise: float = 0.0           # sensor noise, standard deviation in grey levels
    jpeg: int | None = None      # JPEG quality of the camera's encoder
    mirror: bool = False


TRANSFORMS = (
    Transform("plain"),
    Transform("letterbox 4:3 noisy", 4 / 3, noise=4, jpeg=70),
    Transform("pillarbox 16:9 noisy", 16 / 9, noise=4, jpeg=70),
    Transform("zoom 1.5", scale=1.5, noise=3, jpeg=80),
    Transform("shrink 0.5", scale=0.5, noise=3, jpeg=80),
    Transform("shrink 0.75 16:9", 16 / 9, scale=0.75, noise=3, jpeg=60),
    Transform("dim gamma 2.2", gamma=2.2, gain=0.6, noise=5, jpeg=60),
    Transform("dark gamma 3", gamma=3.0, gain=0.45, noise=6, jpeg=50),
    Transform("bright gamma 0.6", gamma=0.6, noise=3, jpeg=85),
    Transform("jpeg 40", noise=4, jpeg=40),
    Transform("jpeg 90 mirrored", noise=2, jpeg=90, mirror=True),
    Transform("mirrored 16:9 dim", 16 / 9, gamma=1.6, gain=0.8, noise=5, jpeg=55, mirror=True),
)


def load(name: str) -> np.ndarray:
    path = Path(TESTDATA) / name
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return img


def resize_width(img: np.ndarray, width: int) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


# The person boxes of each photo at WORK_WIDTH: CenterNet's person detections at a 0.2 threshold,
# widened by 8 % / 5 % (measured 2026-12-03 and checked by eye; fixed here so that the scenes do
# not change when the detector does).
PERSON_BOXES = {
    "a_1_webcam_woman_T1.jpg": ((0, 62, 587, 853),),
    "a_3_face_closeup_sergey.png": ((0, 0, 640, 640),),
    "a_6_grace_hopper.jpg": ((0, 0, 640, 750),),
    "a_7_astronaut.png": ((0, 0, 495, 640),),
    "b_1_phone_held_to_webcam.jpg": ((0, 144, 640, 853), (364, 15, 640, 119)),
    "b_3_coco536_women_on_phones.jpg": ((227, 93, 402, 480), (111, 79, 259, 480), (425, 205, 628, 465)),
    "c_1_coco446_woman_bookshelf.jpg": ((47, 134, 517, 853),),
    "d_3_woman_holding_xo_laptop.jpg": ((0, 0, 639, 640), (0, 165, 158, 469)),
    "e_2_three_business.jpg": ((149, 86, 450, 640), (352, 25, 640, 640), (0, 59, 259, 640)),
    "e_5_zidane_two_men.jpg": ((360, 10, 581, 360), (32, 85, 579, 360)),
}


@lru_cache(maxsize=None)
def person_regions(name: str) -> tuple[tuple[int, int, int, int], ...]:
    """Boxes (at WORK_WIDTH) covering every person in the photo: PERSON_BOXES and each face the
    face stage finds, widened to a head-and-shoulders region down to the bottom of the photo."""
    from config_vision import load_vision_config
    from face_pipeline import FaceAnalyzer

    img = resize_width(load(name), WORK_WIDTH)
    h, w = img.shape[:2]
    boxes = list(PERSON_BOXES.get(name, ()))
    with FaceAnalyzer(load_vision_config(), static_image_mode=True) as faces:
        for x1, y1, x2, y2 in faces.analyze(img).face_boxes:
            fw, fh = x2 - x1, y2 - y1
            boxes.append((max(0, int(x1 - fw * 0.9)), max(0, int(y1 - fh * 0.7)), min(w, int(x2 + fw * 0.9)), h))
    return tuple(boxes)


@lru_cache(maxsize=None)
def covered(name: str) -> np.ndarray:
    """The photo at WORK_WIDTH with every person inpainted away (a read-only array)."""
    img = resize_width(load(name), WORK_WIDTH)
    mask = np.zeros(img.shape[:2], np.uint8)
    for x1, y1, x2, y2 in person_regions(name):
        mask[y1:y2, x1:x2] = 255
    if not mask.any():
        raise ValueError(f"{name}: no person found to cover")
    if mask.mean() / 255 > MAX_COVERED_SHARE:
        raise ValueError(f"{name}: the people fill {mask.mean() / 2.55:.0f} % of the photo: no room left to show")
    out = cv2.inpaint(img, mask, 9, cv2.INPAINT_TELEA)
    out.setflags(write=False)
    return out


def empty_scenes() -> list[tuple[str, np.ndarray]]:
    """(label, BGR image at WORK_WIDTH) for every scene with nobody in it."""
    scenes = [(f"{n} (empty photo)", resize_width(load(n), WORK_WIDTH)) for n in EMPTY_PHOTOS]
    for n in PERSON_PHOTOS:
        try:
            scenes.append((f"{n} (people covered)", covered(n)))
        except ValueError:
            continue  # a close-up: the person is the whole photo
    return scenes


def apply(scene: np.ndarray, tf: Transform, rng: np.random.Generator, frame_w: int = 640) -> np.ndarray:
    """One camera frame (frame_w wide, tf.aspect) of the scene under the transform; the noise is
    drawn fresh from rng, as a sensor's is on every frame."""
    frame_h = int(round(frame_w / tf.aspect))
    img = cv2.flip(scene, 1) if tf.mirror else scene
    h, w = img.shape[:2]
    fit = min(frame_w / w, frame_h / h)  # letterbox/pillarbox: the whole scene inside the frame
    s = fit * tf.scale
    scaled = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                        interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    frame = np.zeros((frame_h, frame_w, 3), np.uint8)
    sh, sw = scaled.shape[:2]
    # Centre the scaled scene on the frame, cropping what does not fit (a zoom) or leaving black borders.
    fx, fy = max(0, (frame_w - sw) // 2), max(0, (frame_h - sh) // 2)
    cx, cy = max(0, (sw - frame_w) // 2), max(0, (sh - frame_h) // 2)
    cw, ch = min(sw, frame_w), min(sh, frame_h)
    frame[fy:fy + ch, fx:fx + cw] = scaled[cy:cy + ch, cx:cx + cw]
    if tf.gamma != 1.0 or tf.gain != 1.0:
        lut = np.clip(255.0 * tf.gain * (np.arange(256) / 255.0) ** tf.gamma, 0, 255).round().astype(np.uint8)
        frame = cv2.LUT(frame, lut)
    if tf.noise:
        frame = np.clip(frame.astype(np.float32) + rng.normal(0.0, tf.noise, frame.shape), 0, 255).astype(np.uint8)
    if tf.jpeg is not None:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(tf.jpeg)])
        frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return frame


def person_clip(name: str, tf: Transform, *, before_s: float, empty_s: float, after_s: float,
                fps: float = 2.0, seed: int = 0) -> list[tuple[float, bool, np.ndarray]]:
    """(t, person in view, frame): the person's photo, then the same room with the person gone,
    then the person back, at fps frames per second."""
    person = resize_width(load(name), WORK_WIDTH)
    return _clip(person, covered(name), tf, before_s, empty_s, after_s, fps, seed)


# Examinees for the composite clips: head-and-shoulders photos of people at a webcam or in a portrait.
EXAMINEES = ("a_1_webcam_woman_T1.jpg", "a_6_grace_hopper.jpg", "identity/people/p05_img39.jpg",
             "identity/people/p07_img25.jpg")


@lru_cache(maxsize=None)
def _head_and_shoulders(name: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The photo (at WORK_WIDTH) and its largest face box, found by the face stage in photo mode."""
    from config_vision import load_vision_config
    from face_pipeline import FaceAnalyzer

    img = resize_width(load(name), WORK_WIDTH)
    with FaceAnalyzer(load_vision_config(), static_image_mode=True) as faces:
        obs = faces.analyze(img)
    if obs.box is None:
        raise ValueError(f"{name}: no face found")
    return img, obs.box


def composite(room: np.ndarray, examinee: str, face_fraction: float = 0.3) -> np.ndarray:
    """The room with the examinee's head and shoulders pasted at the bottom centre, the face about
    face_fraction of the room's height, blended in with a feathered elliptical edge."""
    img, (x1, y1, x2, y2) = _head_and_shoulders(examinee)
    fw, fh = x2 - x1, y2 - y1
    cx1, cy1 = max(0, int(x1 - fw)), max(0, int(y1 - fh * 0.8))
    cx2, cy2 = min(img.shape[1], int(x2 + fw)), img.shape[0]
    crop = img[cy1:cy2, cx1:cx2]
    rh, rw = room.shape[:2]
    scale = face_fraction * rh / fh
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ch, cw = crop.shape[:2]
    ch, cw = min(ch, rh), min(cw, rw)
    crop = crop[:ch, :cw]
    mask = np.zeros((ch, cw), np.float32)
    cv2.ellipse(mask, (cw // 2, ch), (int(cw * 0.48), int(ch * 0.98)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, cw * 0.03))[..., None]
    out = room.copy()
    x0, y0 = (rw - cw) // 2, rh - ch
    region = out[y0:y0 + ch, x0:x0 + cw].astype(np.float32)
    out[y0:y0 + ch, x0:x0 + cw] = (crop * mask + region * (1 - mask)).astype(np.uint8)
    return out


def examinee_clip(room: np.ndarray, examinee: str, tf: Transform, *, before_s: float, empty_s: float,
                  after_s: float, fps: float = 2.0, seed: int = 0) -> list[tuple[float, bool, np.ndarray]]:
    """(t, person in view, frame): the examinee composited in the room, then the room alone, then the
    examinee again."""
    return _clip(composite(room, examinee), room, tf, before_s, empty_s, after_s, fps, seed)


def _clip(person: np.ndarray, empty: np.ndarray, tf: Transform, before_s: float, empty_s: float, after_s: float,
          fps: float, seed: int) -> list[tuple[float, bool, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    n_before, n_empty, n_after = (int(round(s * fps)) for s in (before_s, empty_s, after_s))
    for i in range(n_before + n_empty + n_after):
        present = i < n_before or i >= n_before + n_empty
        out.append((i / fps, present, apply(person if present else empty, tf, rng)))
    return out
