"""Hands: where they are, the crops the detector looks at again, and the phone-at-the-ear signal.

Phones and books are held, and a held phone is small in a webcam frame: MediaPipe Hands (palm
detection + 21 hand landmarks, shipped in mediapipe 0.10.21) finds the hands, and the object
detector runs again on a square crop around each (a few hand sizes wide, resized to the
detector's input), so the phone is seen at several times the zoom of the whole frame
(``person_pipeline.ObjectDetector``, setting ``DETECTOR_HAND_LOOK``).

A phone at the ear is a signal of its own (``Detections.phone_at_ear``): a hand beside a head
(MediaPipe's full-range face detector finds the heads, only when a hand was found) with a
phone-ish score near that hand. Geometry alone is not enough: a hand on the cheek or chin is
common while thinking.

Static-image mode: one detector instance serves many students' frames in turn, so tracking
between frames would mix students. This module never imports Flask, the database or the web
package.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from config_vision import VisionConfig

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original frame

# Hands looked for per frame (a student plus someone passing a phone); a bound, not a tuning knob.
MAX_HANDS = 4


@dataclass(frozen=True)
class Hand:
    box: Box                 # the landmarks' bounding box
    score: float             # MediaPipe's handedness confidence (how sure it is this is a hand)
    landmarks: tuple[tuple[float, float], ...] = field(default=(), compare=False)  # 21 points, frame px

    @property
    def size(self) -> float:
        return max(self.box[2] - self.box[0], self.box[3] - self.box[1])

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


class HandFinder:
    """MediaPipe Hands and (on demand) FaceDetection on BGR frames; static-image mode."""

    def __init__(self, config: VisionConfig):
        try:
            from mediapipe.python.solutions import face_detection, hands
        except ImportError as exc:  # pragma: no cover - mediapipe is a runtime requirement
            raise RuntimeError("the hand-guided look needs mediapipe 0.10.21 (requirements-mediapipe.txt)") from exc
        self._hands = hands.Hands(static_image_mode=True, max_num_hands=max(MAX_HANDS, 2 * int(config.HAND_LOOK_MAX_CROPS)),
                                  model_complexity=0,
                                  min_detection_confidence=float(config.HAND_DETECTION_CONFIDENCE))
        self._faces = face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)

    def hands(self, frame_bgr: np.ndarray) -> list[Hand]:
        import cv2

        h, w = frame_bgr.shape[:2]
        res = self._hands.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        out = []
        for lms, handed in zip(res.multi_hand_landmarks or (), res.multi_handedness or ()):
            pts = tuple((float(p.x * w), float(p.y * h)) for p in lms.landmark)
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            box = (max(0.0, min(xs)), max(0.0, min(ys)), min(float(w), max(xs)), min(float(h), max(ys)))
            if box[2] > box[0] and box[3] > box[1]:
                out.append(Hand(box=box, score=float(handed.classification[0].score), landmarks=pts))
        return sorted(out, key=lambda hd: -hd.size)

    def heads(self, frame_bgr: np.ndarray) -> list[Box]:
        import cv2

        h, w = frame_bgr.shape[:2]
        res = self._faces.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        out = []
        for det in res.detections or ():
            b = det.location_data.relative_bounding_box
            out.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
        return out

    def close(self) -> None:
        self._hands.close()
        self._faces.close()


def hand_crop(hand: Hand, frame_size: tuple[int, int], hand_sizes: float, min_px: int) -> tuple[int, int, int, int] | None:
    """A square around the hand ``hand_sizes`` hand sizes wide (at least ``min_px``), shifted to
    stay inside the frame; None when the frame is too small to zoom in at all."""
    w, h = frame_size
    side = max(float(min_px), hand.size * hand_sizes)
    side = min(side, float(w), float(h))
    cx, cy = hand.centre
    x1 = int(round(min(max(0.0, cx - side / 2), w - side)))
    y1 = int(round(min(max(0.0, cy - side / 2), h - side)))
    x2, y2 = int(round(x1 + side)), int(round(y1 + side))
    if side >= 0.9 * min(w, h) or x2 - x1 < 16:
        return None  # the crop would be (nearly) the whole frame: nothing to gain
    return x1, y1, x2, y2


def hand_beside_head(hand: Hand, head: Box) -> bool:
    """The hand's centre is at the side of the head, at ear-to-jaw height (raised to the ear)."""
    hx1, hy1, hx2, hy2 = head
    hw, hh = hx2 - hx1, hy2 - hy1
    cx, cy = hand.centre
    if not (hy1 - 0.25 * hh <= cy <= hy2 + 0.4 * hh):
        return False
    left = hx1 - 1.0 * hw <= cx <= hx1 + 0.3 * hw
    right = hx2 - 0.3 * hw <= cx <= hx2 + 1.0 * hw
    return left or right


def phone_near_hand(hand: Hand, phone_boxes: list[tuple[Box, float]], min_score: float) -> float:
    """The best phone score whose box centre is within one hand size of the hand's box (0 if none)."""
    x1, y1, x2, y2 = hand.box
    m = hand.size
    best = 0.0
    for (b, score) in phone_boxes:
        px, py = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        if x1 - m <= px <= x2 + m and y1 - m <= py <= y2 + m and score >= min_score:
            best = max(best, score)
    return best
