"""Object detection: persons and prohibited objects, behind a registry of backends.

(Types first: the implementation follows in this module.)
"""
from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original frame


@dataclass(frozen=True)
class Detection:
    class_id: int      # COCO-80 id
    label: str         # COCO name, e.g. "cell phone"
    score: float
    box: Box


@dataclass(frozen=True)
class Detections:
    """The one result type every detector backend converts its raw output into."""

    items: tuple[Detection, ...]
    backend: str
    frame_size: tuple[int, int]  # width, height

    @property
    def persons(self) -> tuple[Detection, ...]:
        return tuple(d for d in self.items if d.class_id == 0)

    @property
    def person_count(self) -> int:
        return len(self.persons)

    def banned(self, class_ids) -> tuple[Detection, ...]:
        ids = set(class_ids)
        return tuple(d for d in self.items if d.class_id in ids)
