"""Object detection: persons and prohibited objects, the shared part of every detector backend.

Every backend (``detector_backends.py``: nanodet, yolo_onnx, ultralytics, centernet,
opencv_darknet, chosen by ``DETECTOR_BACKEND`` through ``create_detector``) turns its model's raw
output into boxes in the original frame's pixels at the edge (``_infer``); everything after that
is here and shared (per-class thresholds, per-class NMS, duplicate person suppression, the zoomed
second look around persons, the hand-guided look of ``hand_pipeline.py``), so nothing downstream
knows which model ran. The backends' names are importable from here too
(``from person_pipeline import create_detector, NanoDetDetector``).

``ObjectEvidence`` is a small pure accumulator the live loop keeps per student: a prohibited
class counts only when seen in k of the last n detector runs.

This module never imports Flask, the database or the web package.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from config_vision import COCO_BOOK, COCO_CELL_PHONE, COCO_LAPTOP, COCO_PERSON, VisionConfig
from face_pipeline import to_bgr_uint8  # one frame validator for every stage

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original frame

REPO_ROOT = Path(__file__).resolve().parent

# COCO-80 class names in the order YOLO and the CenterNet model use (0-based ids).
COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
assert len(COCO_NAMES) == 80


class DetectorError(RuntimeError):
    """The detector cannot be built or run; the message says why and what to do."""


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
    # The hand-guided look (hand_pipeline.py), when it ran: the hands found (context for drawing
    # and cadence, not part of a result's identity) and whether a hand beside a head holds
    # something phone-ish (a phone at the ear; a signal of its own).
    hands: tuple = field(default=(), compare=False)   # hand_pipeline.Hand
    phone_at_ear: bool = False

    @property
    def persons(self) -> tuple[Detection, ...]:
        return tuple(d for d in self.items if d.class_id == 0)

    @property
    def person_count(self) -> int:
        return len(self.persons)

    def banned(self, class_ids) -> tuple[Detection, ...]:
        ids = set(class_ids)
        return tuple(d for d in self.items if d.class_id in ids)


# --------------------------------------------------------------------------- geometry helpers

@dataclass(frozen=True)
class Letterbox:
    """How a frame was scaled and padded into a square model input (to map boxes back)."""

    scale: float
    pad_x: float
    pad_y: float

    def to_frame(self, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        out = boxes.astype(np.float64, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
        return out


def letterbox(frame_bgr: np.ndarray, size_wh: tuple[int, int], pad_value: int = 114) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio, centred on a grey canvas of ``size_wh`` (as Ultralytics does)."""
    import cv2

    h, w = frame_bgr.shape[:2]
    tw, th = size_wh
    scale = min(tw / w, th / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.full((th, tw, 3), pad_value, dtype=np.uint8)
    px, py = (tw - nw) // 2, (th - nh) // 2
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas[py:py + nh, px:px + nw] = cv2.resize(frame_bgr, (nw, nh), interpolation=interp)
    return canvas, Letterbox(scale=scale, pad_x=px, pad_y=py)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = max(0.0, (box[2] - box[0]) * (box[3] - box[1]))
    areas = np.clip(others[:, 2] - others[:, 0], 0, None) * np.clip(others[:, 3] - others[:, 1], 0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        if not order:
            break
        rest = np.array(order)
        ious = box_iou(boxes[i], boxes[rest])
        order = [int(j) for j, iou in zip(rest, ious) if iou <= iou_threshold]
    return keep


def _area(b) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _intersection(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def suppress_duplicate_persons(persons: list[Detection], overlap: float, min_area_ratio: float) -> list[Detection]:
    """Drop a person box mostly inside a higher-scored person box of similar size.

    The model often puts a second, lower-scored box on one person (torso, or a shifted copy).
    A much smaller box inside a big one (a person further back) is kept: ``min_area_ratio``.
    """
    kept: list[Detection] = []
    for det in sorted(persons, key=lambda d: -d.score):
        area = _area(det.box)
        duplicate = False
        for other in kept:
            other_area = _area(other.box)
            if area <= 0 or other_area <= 0:
                continue
            contained = _intersection(det.box, other.box) / area
            ratio = min(area, other_area) / max(area, other_area)
            if contained >= overlap and ratio >= min_area_ratio:
                duplicate = True
                break
        if not duplicate:
            kept.append(det)
    return kept


def brighten_if_dark(frame_bgr: np.ndarray, dark_mean: float, target_mean: float) -> np.ndarray:
    """Gamma-brighten a dim frame so its mean luma reaches ``target_mean`` (detector input only).

    Measured on darkened real photos: phone and book scores drop below threshold in dim frames
    and come back after this (docs/detection-quality.md). A no-op for normal frames.
    """
    import cv2

    mean = float(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY).mean())
    if mean >= dark_mean or mean < 1.0:
        return frame_bgr
    gamma = np.log(target_mean / 255.0) / np.log(mean / 255.0)
    lut = (255.0 * (np.arange(256) / 255.0) ** gamma).clip(0, 255).astype(np.uint8)
    return cv2.LUT(frame_bgr, lut)


# --------------------------------------------------------------------------- detector base

# A safety bound, not a tuning knob: no real frame has this many boxes of one class.
MAX_CANDIDATES_PER_CLASS = 1000

RawOutput = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N,4) frame px, scores (N,), class ids (N,)


def _empty_raw() -> RawOutput:
    return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,), dtype=np.int64)


def _only(raw: RawOutput, keep_class) -> RawOutput:
    keep = keep_class(raw[2])
    return raw[0][keep], raw[1][keep], raw[2][keep]


class ObjectDetector:
    """Base of every backend. One instance per worker/stream (not shared between threads)."""

    name = "base"

    def __init__(self, config: VisionConfig, model_path: Path, input_size: tuple[int, int]):
        self.model_path = Path(model_path)
        self.input_size = input_size  # width, height
        self._hands = None  # hand_pipeline.HandFinder, built on the first hand-guided look
        self._use(config)

    def _use(self, config: VisionConfig) -> None:
        """Take thresholds and post-processing settings from ``config``."""
        self.config = config
        self.wanted_ids: tuple[int, ...] = tuple(sorted({COCO_PERSON, *config.banned_class_ids}))
        self._thresholds = np.full(80, 1.01)
        for cid in self.wanted_ids:
            self._thresholds[cid] = float(self.class_threshold(config, cid))
        # Raw candidates below this never count, whatever the class (the phone-at-ear check looks
        # at weaker phone-ish candidates near a hand, below the phone bar).
        self.min_score = float(min(self._thresholds[list(self.wanted_ids)]))
        if config.DETECTOR_HAND_LOOK:
            self.min_score = min(self.min_score, float(config.PHONE_AT_EAR_MIN_SCORE))

    def class_threshold(self, config: VisionConfig, class_id: int) -> float:
        """The minimum score for a class; a backend whose scores run on another scale overrides it."""
        return float(config.class_confidence(class_id))

    # Backends implement this: raw boxes in ``image`` pixels, unfiltered apart from min_score.
    def _infer(self, image_bgr: np.ndarray) -> RawOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def detect(self, frame_bgr: np.ndarray, config: VisionConfig | None = None) -> Detections:
        """Persons and prohibited objects in one BGR frame.

        ``config`` (optional) is an exam's own settings (``VisionConfig.with_overrides``): its
        per-class thresholds, banned classes, NMS, second-look and brightening settings apply to
        this call only. The model, its threads and its input size stay those of construction.
        """
        if config is None or config is self.config:
            return self._detect(frame_bgr)
        default = self.config
        self._use(config)
        try:
            return self._detect(frame_bgr)
        finally:
            self._use(default)

    def _detect(self, frame_bgr: np.ndarray) -> Detections:
        frame_bgr = to_bgr_uint8(frame_bgr)
        if min(frame_bgr.shape[:2]) < 2:
            raise ValueError(f"frame is too small: {frame_bgr.shape[1]}x{frame_bgr.shape[0]}")
        frame = brighten_if_dark(frame_bgr, self.config.DETECTOR_DARK_FRAME_MEAN,
                                 self.config.DETECTOR_BRIGHTEN_TARGET_MEAN)
        h, w = frame.shape[:2]
        boxes, scores, classes = self._infer(frame)
        first = self._postprocess(boxes, scores, classes, w * h)
        looks = []
        if self.config.DETECTOR_SECOND_LOOK and self.config.SECOND_LOOK_MAX_REGIONS > 0:
            # Small held things only: persons come from the whole frame (crops cut people in half),
            # and books and laptops too (measured: the person crops add false books, never a hit).
            extra = self._second_look(frame, [d for d in first if d.class_id == COCO_PERSON])
            looks.append(_only(extra, lambda c: ~np.isin(c, (COCO_PERSON, COCO_BOOK, COCO_LAPTOP))))
        hands: tuple = ()
        at_ear = False
        if self.config.DETECTOR_HAND_LOOK:
            extra, hands, at_ear = self.hand_look(frame, [(boxes, scores, classes)] + looks,
                                                  int(self.config.HAND_LOOK_MAX_CROPS))
            if self.config.HAND_CROP_OBJECTS:
                looks.append(extra)
        if any(part[0].shape[0] for part in looks):
            boxes = np.concatenate([boxes] + [p[0] for p in looks])
            scores = np.concatenate([scores] + [p[1] for p in looks])
            classes = np.concatenate([classes] + [p[2] for p in looks])
            first = self._postprocess(boxes, scores, classes, w * h)
        return Detections(items=tuple(first), backend=self.name, frame_size=(w, h), hands=hands,
                          phone_at_ear=at_ear)

    def hand_look(self, frame: np.ndarray, seen: list[RawOutput], max_crops: int) -> tuple[RawOutput, tuple, bool]:
        """The hand-guided look: the hands (hand_pipeline.HandFinder), phones and books in up to
        ``max_crops`` square crops around them (frame pixels), and the phone-at-ear signal, judged
        from the phone-ish candidates in ``seen`` (the passes so far, raw) and in the hand crops."""
        from hand_pipeline import HandFinder, hand_beside_head, hand_crop, phone_near_hand

        min_score = float(self.config.PHONE_AT_EAR_MIN_SCORE)
        if max_crops <= 0 and not any(int(c) == COCO_CELL_PHONE and float(sc) >= min_score
                                      for part in seen for sc, c in zip(part[1], part[2])):
            # Nothing phone-ish anywhere and no crops asked for: the hands could not change the answer
            # (MediaPipe Hands costs about 20 ms a run; measured over HTTP it cost 4 of 20 students).
            return _empty_raw(), (), False
        if self._hands is None:
            self._hands = HandFinder(self.config)
        h, w = frame.shape[:2]
        hands = tuple(self._hands.hands(frame))
        crops: list[tuple[int, int, int, int]] = []
        for hand in hands:
            if len(crops) >= max_crops:
                break
            crop = hand_crop(hand, (w, h), self.config.HAND_CROP_HAND_SIZES, self.config.HAND_CROP_MIN_PX)
            if crop is None or any(box_iou(np.array(crop, float), np.array([c], float))[0] > 0.5 for c in crops):
                continue
            crops.append(crop)
        parts = []
        for x1, y1, x2, y2 in crops:
            b, s, c = self._infer(np.ascontiguousarray(frame[y1:y2, x1:x2]))
            if b.shape[0]:
                parts.append((b + np.array([x1, y1, x1, y1], dtype=np.float64), s, c))
        extra = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                 np.concatenate([p[2] for p in parts])) if parts else _empty_raw()
        at_ear = False
        if hands:
            phones = [(tuple(b), float(s)) for part in (*seen, extra) for b, s, c in zip(*part)
                      if int(c) == COCO_CELL_PHONE]
            holding = [hd for hd in hands if phone_near_hand(hd, phones, min_score) > 0]
            if holding:  # the face detector runs only when a hand holds something phone-ish
                heads = self._hands.heads(frame)
                at_ear = any(hand_beside_head(hd, head) for hd in holding for head in heads)
        # Held things only: persons and laptops come from the whole frame.
        return _only(extra, lambda cl: (cl == COCO_CELL_PHONE) | (cl == COCO_BOOK)), hands, at_ear

    def _second_look(self, frame: np.ndarray, persons: list[Detection]) -> RawOutput:
        """Run again on crops around the persons, upscaled to the model input; map boxes back."""
        h, w = frame.shape[:2]
        margin = self.config.SECOND_LOOK_MARGIN_FRACTION
        max_area = self.config.SECOND_LOOK_MAX_AREA_FRACTION * w * h
        parts = []
        for det in persons[: self.config.SECOND_LOOK_MAX_REGIONS]:
            x1, y1, x2, y2 = det.box
            mx, my = (x2 - x1) * margin, (y2 - y1) * margin
            cx1, cy1 = int(max(0, x1 - mx)), int(max(0, y1 - my))
            cx2, cy2 = int(min(w, x2 + mx)), int(min(h, y2 + my))
            if (cx2 - cx1) < 16 or (cy2 - cy1) < 16 or (cx2 - cx1) * (cy2 - cy1) > max_area:
                continue
            b, s, c = self._infer(np.ascontiguousarray(frame[cy1:cy2, cx1:cx2]))
            if b.shape[0]:
                b = b + np.array([cx1, cy1, cx1, cy1], dtype=np.float64)
                parts.append((b, s, c))
        if not parts:
            return _empty_raw()
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                np.concatenate([p[2] for p in parts]))

    def _postprocess(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                     frame_area: float) -> list[Detection]:
        """Per-class thresholds, per-class NMS, tiny and duplicate persons; best score first."""
        if boxes.shape[0] == 0:
            return []
        classes = classes.astype(np.int64)
        valid = (classes >= 0) & (classes < 80)
        valid &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        cls_safe = np.where(valid, classes, 0)
        valid &= scores >= self._thresholds[cls_safe]
        out: list[Detection] = []
        for cid in np.unique(classes[valid]):
            idx = np.flatnonzero(valid & (classes == cid))
            if idx.size > MAX_CANDIDATES_PER_CLASS:  # bounds the O(n^2) NMS on a noisy frame
                idx = idx[np.argsort(-scores[idx], kind="stable")[:MAX_CANDIDATES_PER_CLASS]]
            for k in nms(boxes[idx], scores[idx], self.config.NMS_IOU):
                i = idx[k]
                out.append(Detection(int(cid), COCO_NAMES[int(cid)], float(scores[i]),
                                     tuple(float(v) for v in boxes[i])))
        min_person_area = self.config.PERSON_MIN_AREA_FRACTION * frame_area
        persons = suppress_duplicate_persons([d for d in out if d.class_id == COCO_PERSON
                                              and _area(d.box) >= min_person_area],
                                             self.config.PERSON_DUPLICATE_OVERLAP,
                                             self.config.PERSON_DUPLICATE_MIN_AREA_RATIO)
        others = [d for d in out if d.class_id != COCO_PERSON]
        return sorted(persons + others, key=lambda d: -d.score)

    def info(self) -> dict:
        """Contract: loaded, backend, model_path, device, input_size, class_map (ids it reports)."""
        return {
            "loaded": True,
            "backend": self.name,
            "model_path": str(self.model_path),
            "device": "cpu",
            "input_size": list(self.input_size),
            "class_map": {cid: COCO_NAMES[cid] for cid in self.wanted_ids},
        }

    def close(self) -> None:
        if self._hands is not None:
            self._hands.close()
            self._hands = None



# --------------------------------------------------------------------------- evidence over frames

class ObjectEvidence:
    """A prohibited class counts only when seen in ``min_hits`` of the last ``window`` detector runs.

    Pure and per student: feed it each detector result in order; it returns the same result with
    prohibited items limited to confirmed classes. A confirmed class missed in this run is carried
    from its latest sighting in the window, so one missed run does not end the condition. The
    phone-at-the-ear signal (``Detections.phone_at_ear``) is held to the same k of n, as a phone,
    and only while phones are prohibited; the hands are this run's (context for drawing).
    """

    def __init__(self, min_hits: int, window: int, banned_class_ids: Iterable[int]):
        if window < 1 or min_hits < 1:
            raise ValueError("ObjectEvidence: window and min_hits must be at least 1")
        if min_hits > window:
            raise ValueError(f"ObjectEvidence: OBJECT_EVIDENCE_MIN_HITS ({min_hits}) cannot exceed "
                             f"OBJECT_EVIDENCE_WINDOW_RUNS ({window})")
        self.min_hits = int(min_hits)
        self.window = int(window)
        self.banned = frozenset(int(c) for c in banned_class_ids)
        self._runs: deque[dict[int, tuple[Detection, ...]]] = deque(maxlen=self.window)
        self._at_ear: deque[bool] = deque(maxlen=self.window)  # phone_at_ear per run, same window

    @classmethod
    def from_config(cls, config: VisionConfig) -> "ObjectEvidence":
        return cls(config.OBJECT_EVIDENCE_MIN_HITS, config.OBJECT_EVIDENCE_WINDOW_RUNS, config.banned_class_ids)

    def hits(self, class_id: int) -> int:
        return sum(1 for run in self._runs if class_id in run)

    @property
    def phone_at_ear_hits(self) -> int:
        return sum(self._at_ear)

    @property
    def confirmed(self) -> frozenset[int]:
        return frozenset(c for c in self.banned if self.hits(c) >= self.min_hits)

    def update(self, detections: Detections) -> Detections:
        seen: dict[int, list[Detection]] = {}
        for d in detections.items:
            if d.class_id in self.banned:
                seen.setdefault(d.class_id, []).append(d)
        self._runs.append({c: tuple(v) for c, v in seen.items()})
        self._at_ear.append(bool(detections.phone_at_ear) and COCO_CELL_PHONE in self.banned)
        confirmed = self.confirmed
        items = [d for d in detections.items if d.class_id not in self.banned]
        for cid in sorted(confirmed):
            for run in reversed(self._runs):
                if cid in run:
                    items.extend(run[cid])
                    break
        return Detections(items=tuple(items), backend=detections.backend, frame_size=detections.frame_size,
                          hands=detections.hands, phone_at_ear=self.phone_at_ear_hits >= self.min_hits)

    def reset(self) -> None:
        self._runs.clear()
        self._at_ear.clear()


# --------------------------------------------------------------------------- backends, re-exported

_BACKEND_NAMES = frozenset({
    "BACKENDS", "AUTO_ORDER", "create_detector", "YoloOnnxDetector", "UltralyticsDetector",
    "CenterNetDetector", "NanoDetDetector", "DarknetDetector", "nanodet_class_confidence",
})


def __getattr__(name: str):
    # The backends live in detector_backends.py, which imports this module's base class; importing
    # them lazily here keeps ``from person_pipeline import create_detector`` working without a cycle.
    if name in _BACKEND_NAMES:
        import detector_backends

        return getattr(detector_backends, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
