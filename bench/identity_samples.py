"""The identity calibration set: every identity photo and its transforms, embedded with both models.

Used by bench/calibrate_identity.py (figures) and tests/vision/test_face_identity.py (the look-alike
pair). Faces are found the way the product finds them (FaceAnalyzer in photo mode, largest face)
and embedded by face_identity.FaceIdentity (dlib's 128 values, then FaceRes's 1024).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TESTDATA = REPO_ROOT.parent / "shared" / "testdata"

# Photos outside identity/people: file -> person. The a_* photos are one person each (only as
# different people: they add different-person pairs, no same-person pair).
EXTRA_PHOTOS = {
    "identity/obama.jpg": "obama", "identity/obama2.jpg": "obama", "identity/biden.jpg": "biden",
    "a_1_webcam_woman_T1.jpg": "a_1", "a_3_face_closeup_sergey.png": "a_3",
    "a_6_grace_hopper.jpg": "a_6", "a_7_astronaut.png": "a_7",
}
# The two halves of the people, for choosing on one and scoring on the other (then swapped).
SPLIT = {
    "A": ("p01", "p03", "p05", "p07", "obama", "a_1", "a_6"),
    "B": ("p02", "p04", "p06", "biden", "a_3", "a_7"),
}


@dataclass(frozen=True)
class Sample:
    person: str
    photo: str       # source file
    transform: str
    face_px: int     # short side of the face box found in the transformed image
    template: np.ndarray


def load_photos(testdata: Path) -> list[tuple[str, str, np.ndarray]]:
    """(person, file, BGR image) for every identity photo."""
    people = testdata / "identity" / "people"
    rows = list(csv.DictReader((people / "identities.tsv").open(encoding="utf-8"), delimiter="\t"))
    names = [(r["person"], f"identity/people/{r['file']}") for r in rows]
    names += [(person, name) for name, person in EXTRA_PHOTOS.items()]
    out = []
    for person, name in names:
        img = cv2.imread(str(testdata / name), cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f"missing test photo {testdata / name}")
        out.append((person, name, img))
    return out


def _scale_face_to(img: np.ndarray, face_px: int, target: int) -> np.ndarray | None:
    if face_px <= target:
        return None  # no upscaling: the face is already this small
    f = target / face_px
    return cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)


def _gamma(img: np.ndarray, g: float) -> np.ndarray:
    lut = (255.0 * (np.arange(256) / 255.0) ** g).clip(0, 255).astype(np.uint8)
    return cv2.LUT(img, lut)


def _noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)  # fixed seed: the same figures every run
    soft = cv2.GaussianBlur(img, (0, 0), 0.7)
    return np.clip(soft.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def _webcam(img: np.ndarray, face_px: int) -> np.ndarray | None:
    small = _scale_face_to(img, face_px, 100)
    return None if small is None else _jpeg(_noise(_gamma(small, 1.6), 6, 7), 60)


# name -> fn(image, face_px) -> image or None (not applicable). "shift" is applied to the box.
TRANSFORMS: dict[str, Callable[[np.ndarray, int], np.ndarray | None]] = {
    "original": lambda im, px: im,
    "mirror": lambda im, px: cv2.flip(im, 1),
    "face160": lambda im, px: _scale_face_to(im, px, 160),
    "face112": lambda im, px: _scale_face_to(im, px, 112),
    "face80": lambda im, px: _scale_face_to(im, px, 80),
    "dark45": lambda im, px: (im.astype(np.float32) * 0.45).astype(np.uint8),
    "gamma2.2": lambda im, px: _gamma(im, 2.2),
    "noise": lambda im, px: _noise(im, 8, 3),
    "jpeg50": lambda im, px: _jpeg(im, 50),
    "webcam100": _webcam,
    "shift": lambda im, px: im,
}
SHIFT_FRACTION = (0.10, 0.08)  # the face box moved right and down by this share of its size


def shifted(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    dx, dy = int((x2 - x1) * SHIFT_FRACTION[0]), int((y2 - y1) * SHIFT_FRACTION[1])
    return x1 + dx, y1 + dy, x2 + dx, y2 + dy


def build_samples(identity, faces, testdata: Path, transforms=None, log=print) -> tuple[list[Sample], list[str]]:
    """Embed every photo under every transform; (samples, what could not be embedded)."""
    samples, missed = [], []
    for person, name, img in load_photos(testdata):
        obs = faces.analyze(img)
        if obs.box is None:
            missed.append(f"{name} (no face)")
            continue
        px0 = min(obs.box[2] - obs.box[0], obs.box[3] - obs.box[1])
        for tname, fn in (transforms or TRANSFORMS).items():
            out = fn(img, px0)
            if out is None:
                continue
            box = faces.analyze(out).box
            if box is None:
                missed.append(f"{name} [{tname}]")
                continue
            if tname == "shift":
                box = shifted(box)
            template = identity.embed(out, box)
            if template is None:  # pragma: no cover - an embedding is always made for a box
                missed.append(f"{name} [{tname}]")
                continue
            samples.append(Sample(person, name, tname, int(min(box[2] - box[0], box[3] - box[1])), template))
        log(f"  {name}: face {px0} px")
    return samples, missed


def save(path: Path, samples: list[Sample]) -> None:
    np.savez_compressed(path, person=[s.person for s in samples], photo=[s.photo for s in samples],
                        transform=[s.transform for s in samples], face_px=[s.face_px for s in samples],
                        template=np.stack([s.template for s in samples]))


def load(path: Path) -> list[Sample]:
    z = np.load(path)
    return [Sample(str(p), str(f), str(t), int(px), tpl)
            for p, f, t, px, tpl in zip(z["person"], z["photo"], z["transform"], z["face_px"], z["template"])]
