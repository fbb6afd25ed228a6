"""Face analysis: presence, count, head pose, eyes and gaze from one frame.

(Types first: the implementation follows in this module.)
"""
from __future__ import annotations

from dataclasses import dataclass, field

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels of the analysed frame


@dataclass(frozen=True)
class FaceObservation:
    """What the face stage saw in one frame. Angles in degrees, ratios unitless."""

    face_detected: bool
    face_count: int
    yaw_deg: float | None = None        # + = the student's head turned to their left (image right)
    pitch_deg: float | None = None      # + = looking up
    roll_deg: float | None = None
    ear_left: float | None = None       # eye aspect ratio, ~0.25-0.35 open, < 0.18 closed
    ear_right: float | None = None
    iris_offset: float | None = None    # signed horizontal iris offset, -1..1 (fraction of half eye width)
    box: Box | None = None              # the main (largest) face
    confidence: float | None = None
    face_boxes: tuple[Box, ...] = ()    # every face counted
    detector: str = ""                  # which detector produced the count: facemesh, face_detection, haar
    brightness: float | None = None     # mean luma 0-255 of the frame before normalisation
    normalised: bool = False            # True when the frame was dark and CLAHE was applied
    landmarks: tuple[tuple[float, float], ...] = field(default=(), repr=False)  # main face, pixels

    @property
    def ear(self) -> float | None:
        vals = [v for v in (self.ear_left, self.ear_right) if v is not None]
        return sum(vals) / len(vals) if vals else None
