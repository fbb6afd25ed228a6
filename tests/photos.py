"""Webcam-shaped frames from the real photos in ../shared/testdata (shared by tests and bench/)."""
from __future__ import annotations


def cover(image, size):
    """Scale to cover ``size`` (w, h) and crop the centre, as a webcam's fixed frame would (no distortion)."""
    import cv2

    w, h = size
    ih, iw = image.shape[:2]
    s = max(w / iw, h / ih)
    scaled = cv2.resize(image, (max(w, round(iw * s)), max(h, round(ih * s))), interpolation=cv2.INTER_AREA)
    y, x = (scaled.shape[0] - h) // 2, (scaled.shape[1] - w) // 2
    return scaled[y:y + h, x:x + w].copy()


def place_face(image, box, face_px: int, width: int = 640, height: int = 480):
    """The photo scaled so that its face box (x1, y1, x2, y2) has a short side of about face_px, centred
    in a width x height webcam frame, grey where the photo does not reach: a student sitting further away."""
    import cv2
    import numpy as np

    x1, y1, x2, y2 = box
    s = face_px / min(x2 - x1, y2 - y1)
    small = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    ox, oy = int(round(width / 2 - (x1 + x2) / 2 * s)), int(round(height / 2 - (y1 + y2) / 2 * s))
    frame = np.full((height, width, 3), 40, np.uint8)
    h, w = small.shape[:2]
    sx1, sy1, sx2, sy2 = max(0, -ox), max(0, -oy), min(w, width - ox), min(h, height - oy)
    frame[sy1 + oy:sy2 + oy, sx1 + ox:sx2 + ox] = small[sy1:sy2, sx1:sx2]
    return frame
