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
