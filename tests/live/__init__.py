"""Tests of the live runtime (proctor/live). Helpers shared by these tests live here."""
from __future__ import annotations

import time


def wait_for(predicate, timeout: float, message: str, interval: float = 0.02, step=None):
    """Poll until predicate() is truthy (returns it) or fail with `message` after a generous timeout.

    A bounded wait, not a timing assertion: the timeout only stops a hung test.
    """
    deadline = time.monotonic() + timeout
    while True:
        if step is not None:
            step()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s: {message}")
        time.sleep(interval)


def load_photo(name: str):
    import cv2

    from tests.vision.conftest import TESTDATA

    img = cv2.imread(str(TESTDATA / name), cv2.IMREAD_COLOR)
    if img is None:
        raise AssertionError(f"test photo {name} not found under {TESTDATA} (set PROCTOR_TESTDATA)")
    return img


def fit(img, width: int = 640, height: int = 480):
    """Crop a photo to the webcam's aspect (keeping the upper-middle part, where a sitter's face is)
    and resize it to webcam size, as a browser's camera frame would be."""
    import cv2

    h, w = img.shape[:2]
    target = width / height
    if w / h > target:  # too wide: crop the sides evenly
        cw = int(round(h * target))
        x0 = (w - cw) // 2
        img = img[:, x0:x0 + cw]
    elif w / h < target:  # too tall (a portrait): keep the upper-middle band
        ch = int(round(w / target))
        y0 = int((h - ch) * 0.3)
        img = img[y0:y0 + ch]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)


def live_frame(img, i: int):
    """Frame i of a live stream of a still photo: a small camera shake and exposure flicker, so that
    consecutive frames differ as a real webcam's do (a pixel-identical stream reads as a frozen camera)."""
    import cv2
    import numpy as np

    dx, dy = (i % 4) * 3 - 4, (i % 3) * 2 - 2
    shifted = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (img.shape[1], img.shape[0]),
                             borderMode=cv2.BORDER_REFLECT)
    return cv2.convertScaleAbs(shifted, alpha=1.0 + 0.03 * ((i % 5) - 2))
