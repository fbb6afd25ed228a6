"""Object detection: persons and prohibited objects, behind a registry of backends.

Every backend turns its model's raw output into boxes in the original frame's pixels at the
edge (``_infer``); everything after that (per-class thresholds, per-class NMS, duplicate person
suppression, the zoomed second look) is shared, so nothing downstream knows which model ran.

Backends (``DETECTOR_BACKEND``), tried in this order by ``auto`` when their files are present:

1. ``yolo_onnx``      Ultralytics YOLOv8/YOLO11 exported to ONNX (output ``[1, 4+80, N]``), onnxruntime CPU.
2. ``ultralytics``    a ``.pt`` through the optional ``ultralytics`` package (imported lazily).
3. ``centernet``      CenterNet MobileNetV3 COCO (ONNX, NHWC ``[1,512,512,3]``, output ``[1,100,6]``).
4. ``opencv_darknet`` YOLOv4-tiny (``.cfg`` + ``.weights``) through ``cv2.dnn``.

``ObjectEvidence`` is a small pure accumulator the live loop keeps per student: a prohibited
class counts only when seen in k of the last n detector runs.

This module never imports Flask, the database or the web package.
"""
from __future__ import annotations

import ast
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from config_vision import COCO_PERSON, VisionConfig
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


class ObjectDetector:
    """Base of every backend. One instance per worker/stream (not shared between threads)."""

    name = "base"

    def __init__(self, config: VisionConfig, model_path: Path, input_size: tuple[int, int]):
        self.model_path = Path(model_path)
        self.input_size = input_size  # width, height
        self._use(config)

    def _use(self, config: VisionConfig) -> None:
        """Take thresholds and post-processing settings from ``config``."""
        self.config = config
        self.wanted_ids: tuple[int, ...] = tuple(sorted({COCO_PERSON, *config.banned_class_ids}))
        self._thresholds = np.full(80, 1.01)
        for cid in self.wanted_ids:
            self._thresholds[cid] = float(config.class_confidence(cid))
        # Raw candidates below this never count, whatever the class.
        self.min_score = float(min(self._thresholds[list(self.wanted_ids)]))

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
        if self.config.DETECTOR_SECOND_LOOK and self.config.SECOND_LOOK_MAX_REGIONS > 0:
            extra = self._second_look(frame, [d for d in first if d.class_id == COCO_PERSON])
            if extra[0].shape[0]:
                # Persons come from the whole frame only: crops cut people in half.
                keep = extra[2] != COCO_PERSON
                boxes = np.concatenate([boxes, extra[0][keep]])
                scores = np.concatenate([scores, extra[1][keep]])
                classes = np.concatenate([classes, extra[2][keep]])
                first = self._postprocess(boxes, scores, classes, w * h)
        return Detections(items=tuple(first), backend=self.name, frame_size=(w, h))

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
        pass


def _onnx_session(model_path: Path, threads: int):
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a runtime requirement
        raise DetectorError("onnxruntime is not installed (pip install -r requirements.txt)") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(model_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise DetectorError(f"could not load ONNX model {model_path}: {exc}") from exc


# --------------------------------------------------------------------------- backends

class YoloOnnxDetector(ObjectDetector):
    """Ultralytics YOLOv8/YOLO11 ONNX export: input [1,3,H,W] RGB 0..1 letterboxed,
    output [1, 4+80, N] (cx, cy, w, h in input pixels, then 80 class scores; no objectness)."""

    name = "yolo_onnx"
    default_files = ("yolov8n.onnx", "yolo11n.onnx")

    def __init__(self, config: VisionConfig, model_path: Path):
        self.session = _onnx_session(model_path, config.DETECTOR_THREADS)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise DetectorError(f"{model_path}: expected a YOLO input [1, 3, H, W], got {shape}")
        ih = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else 640
        iw = shape[3] if isinstance(shape[3], int) and shape[3] > 0 else 640
        super().__init__(config, model_path, (iw, ih))
        out_shape = list(self.session.get_outputs()[0].shape)
        if len(out_shape) == 3 and isinstance(out_shape[1], int) and isinstance(out_shape[2], int):
            self._check_channels(out_shape)
        self._check_names(self.session.get_modelmeta().custom_metadata_map.get("names"))

    def _check_names(self, names_text: str | None) -> None:
        """Ultralytics exports carry their class names; a model trained on other classes in the
        same 80 slots would silently mislabel, so the classes the rules use must match COCO."""
        if not names_text:
            return
        try:
            names = ast.literal_eval(names_text)
        except (ValueError, SyntaxError):
            log.warning("%s: unreadable 'names' metadata ignored", self.model_path)
            return
        if not isinstance(names, dict):
            return
        for cid in self.wanted_ids:
            got = names.get(cid)
            if got is not None and str(got) != COCO_NAMES[cid]:
                raise DetectorError(
                    f"{self.model_path}: class {cid} is {got!r} in this model, but the rules need COCO "
                    f"{COCO_NAMES[cid]!r}; use a COCO-80 model")

    def _check_channels(self, shape) -> None:
        if 84 not in (shape[1], shape[2]):
            chans = shape[1] if shape[1] < shape[2] else shape[2]
            raise DetectorError(
                f"{self.model_path}: YOLO output {list(shape)} has {chans - 4} classes; this project needs a "
                "COCO-80 model (output [1, 84, N]) because its rules use COCO ids (0 person, 63 laptop, "
                "67 cell phone, 73 book)")

    def _infer(self, image_bgr: np.ndarray) -> RawOutput:
        h, w = image_bgr.shape[:2]
        canvas, lb = letterbox(image_bgr, self.input_size)
        blob = np.ascontiguousarray(canvas[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        out = np.asarray(self.session.run(None, {self.input_name: blob})[0])
        if out.ndim != 3:
            raise DetectorError(f"{self.model_path}: unexpected YOLO output shape {list(out.shape)}")
        self._check_channels(out.shape)
        pred = out[0] if out.shape[1] == 84 else out[0].T   # -> [84, N]
        class_scores = pred[4:]
        classes = class_scores.argmax(axis=0)
        scores = class_scores[classes, np.arange(pred.shape[1])]
        keep = scores >= self.min_score
        if not keep.any():
            return _empty_raw()
        cx, cy, bw, bh = (pred[i][keep] for i in range(4))
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        return lb.to_frame(boxes, w, h), scores[keep].astype(np.float64), classes[keep].astype(np.int64)


class UltralyticsDetector(ObjectDetector):
    """A ``.pt`` model through the optional ``ultralytics`` package (AGPL-3.0; not a requirement)."""

    name = "ultralytics"
    default_files = ("yolov8n.pt", "yolo11n.pt")

    def __init__(self, config: VisionConfig, model_path: Path):
        try:
            from ultralytics import YOLO  # optional extra, imported only when chosen
        except ImportError as exc:
            raise DetectorError(
                "detector backend 'ultralytics' needs the optional package 'ultralytics' "
                "(pip install ultralytics; AGPL-3.0), which is not installed; use backend "
                "'yolo_onnx' with an exported yolov8n.onnx, or 'centernet'") from exc
        try:
            self.model = YOLO(str(model_path))
        except Exception as exc:
            raise DetectorError(f"could not load ultralytics model {model_path}: {exc}") from exc
        super().__init__(config, model_path, (640, 640))

    def _infer(self, image_bgr: np.ndarray) -> RawOutput:
        res = self.model.predict(image_bgr, imgsz=self.input_size[0], conf=self.min_score,
                                 iou=0.95, device="cpu", verbose=False)[0]
        b = res.boxes
        if b is None or len(b) == 0:
            return _empty_raw()
        return (b.xyxy.cpu().numpy().astype(np.float64), b.conf.cpu().numpy().astype(np.float64),
                b.cls.cpu().numpy().astype(np.int64))


class CenterNetDetector(ObjectDetector):
    """CenterNet MobileNetV3 COCO (ONNX): NHWC [1,512,512,3] RGB 0..255; output [1,100,6]
    x1, y1, x2, y2 (input pixels), score, class. Letterboxed rather than stretched: measured
    higher person scores on non-square frames (docs/detection-quality.md)."""

    name = "centernet"
    default_files = ("centernet_mbv3_coco.onnx",)

    def __init__(self, config: VisionConfig, model_path: Path):
        self.session = _onnx_session(model_path, config.DETECTOR_THREADS)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or shape[3] != 3:
            raise DetectorError(f"{model_path}: expected a CenterNet input [1, H, W, 3], got {shape}")
        ih = shape[1] if isinstance(shape[1], int) else 512
        iw = shape[2] if isinstance(shape[2], int) else 512
        super().__init__(config, model_path, (iw, ih))

    def _infer(self, image_bgr: np.ndarray) -> RawOutput:
        h, w = image_bgr.shape[:2]
        canvas, lb = letterbox(image_bgr, self.input_size)
        blob = np.ascontiguousarray(canvas[:, :, ::-1][None], dtype=np.float32)
        out = np.asarray(self.session.run(None, {self.input_name: blob})[0])
        if out.ndim != 3 or out.shape[2] != 6:
            raise DetectorError(f"{self.model_path}: unexpected CenterNet output shape {list(out.shape)}")
        rows = out[0]
        rows = rows[rows[:, 4] >= self.min_score]
        if rows.shape[0] == 0:
            return _empty_raw()
        return lb.to_frame(rows[:, :4], w, h), rows[:, 4].astype(np.float64), rows[:, 5].round().astype(np.int64)


class DarknetDetector(ObjectDetector):
    """YOLOv4-tiny (AlexeyAB darknet, COCO-80) through OpenCV's dnn module."""

    name = "opencv_darknet"
    default_files = ("yolov4-tiny.cfg",)  # plus the .weights file beside it

    def __init__(self, config: VisionConfig, model_path: Path):
        import cv2

        cfg = Path(model_path)
        weights = cfg.with_suffix(".weights")
        if cfg.suffix == ".weights":
            cfg, weights = cfg.with_suffix(".cfg"), cfg
        for f in (cfg, weights):
            if not f.is_file():
                raise DetectorError(f"detector backend 'opencv_darknet' needs {f}, which is missing "
                                    "(python download_yolo_models.py --online --models yolov4-tiny)")
        try:
            net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
            self.model = cv2.dnn_DetectionModel(net)
        except cv2.error as exc:
            raise DetectorError(f"could not load darknet model {cfg}: {exc}") from exc
        cv2.setNumThreads(int(config.DETECTOR_THREADS))
        self.model.setInputParams(size=(416, 416), scale=1 / 255.0, swapRB=True)
        super().__init__(config, cfg, (416, 416))

    def _infer(self, image_bgr: np.ndarray) -> RawOutput:
        # nmsThreshold 1.0 leaves NMS to the shared per-class step.
        class_ids, confs, boxes = self.model.detect(image_bgr, confThreshold=self.min_score, nmsThreshold=1.0)
        if len(boxes) == 0:
            return _empty_raw()
        xywh = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        xyxy = np.column_stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]])
        return xyxy, np.asarray(confs, dtype=np.float64).ravel(), np.asarray(class_ids, dtype=np.int64).ravel()


# --------------------------------------------------------------------------- registry

BACKENDS: dict[str, type[ObjectDetector]] = {
    "yolo_onnx": YoloOnnxDetector,
    "ultralytics": UltralyticsDetector,
    "centernet": CenterNetDetector,
    "opencv_darknet": DarknetDetector,
}
AUTO_ORDER = ("yolo_onnx", "ultralytics", "centernet", "opencv_darknet")


def _required_files(backend: str, models_dir: Path) -> list[list[Path]]:
    """Candidate file sets for a backend; a set is usable when all its files exist."""
    if backend == "opencv_darknet":
        return [[models_dir / "yolov4-tiny.cfg", models_dir / "yolov4-tiny.weights"]]
    return [[models_dir / f] for f in BACKENDS[backend].default_files]


def _find_model(backend: str, models_dir: Path) -> Path | None:
    for files in _required_files(backend, models_dir):
        if all(f.is_file() for f in files):
            return files[0]
    return None


def _resolve_models_dir(config: VisionConfig, models_dir: Path | None) -> Path:
    d = Path(models_dir) if models_dir is not None else Path(config.MODELS_DIR)
    return d if d.is_absolute() else REPO_ROOT / d


def create_detector(config: VisionConfig, models_dir: Path | None = None) -> ObjectDetector | None:
    """Build the configured detector.

    ``auto``: the first backend (yolo_onnx, ultralytics, centernet, opencv_darknet) whose model
    file is present, or None when there is none. An explicit backend whose file is missing, an
    unknown backend or a file that will not load raises :class:`DetectorError`.
    """
    backend = str(config.DETECTOR_BACKEND)
    if backend == "none":
        return None
    directory = _resolve_models_dir(config, models_dir)
    explicit_path = Path(config.DETECTOR_MODEL_PATH) if config.DETECTOR_MODEL_PATH else None
    if explicit_path is not None and not explicit_path.is_absolute():
        explicit_path = REPO_ROOT / explicit_path

    if backend == "auto":
        if explicit_path is not None:
            return _build(_backend_for_file(explicit_path), config, explicit_path)
        for name in AUTO_ORDER:
            path = _find_model(name, directory)
            if path is None:
                continue
            try:
                return _build(name, config, path)
            except DetectorError as exc:  # e.g. a .pt present but the ultralytics package missing
                log.warning("detector backend %s skipped: %s", name, exc)
        log.warning("no detector model found in %s; object detection is off "
                    "(run download_yolo_models.py)", directory)
        return None

    if backend not in BACKENDS:
        raise DetectorError(f"unknown detector backend {backend!r}; choose one of "
                            f"{', '.join(('auto',) + AUTO_ORDER + ('none',))}")
    path = explicit_path or _find_model(backend, directory)
    if path is None:
        wanted = " or ".join(" + ".join(str(f) for f in files) for files in _required_files(backend, directory))
        raise DetectorError(f"detector backend {backend!r} needs {wanted}, which is missing "
                            "(run download_yolo_models.py, or set DETECTOR_MODEL_PATH)")
    return _build(backend, config, path)


def _backend_for_file(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".pt":
        return "ultralytics"
    if suffix in (".cfg", ".weights"):
        return "opencv_darknet"
    if suffix == ".onnx":
        return "centernet" if "centernet" in path.name.lower() else "yolo_onnx"
    raise DetectorError(f"cannot tell the detector backend of {path}; set DETECTOR_BACKEND")


def _build(backend: str, config: VisionConfig, path: Path) -> ObjectDetector:
    cls = BACKENDS.get(backend)
    if cls is None:
        raise DetectorError(f"unknown detector backend {backend!r}")
    if not path.is_file():
        raise DetectorError(f"detector backend {backend!r}: model file {path} is missing")
    return cls(config, path)


# --------------------------------------------------------------------------- evidence over frames

class ObjectEvidence:
    """A prohibited class counts only when seen in ``min_hits`` of the last ``window`` detector runs.

    Pure and per student: feed it each detector result in order; it returns the same result with
    prohibited items limited to confirmed classes. A confirmed class missed in this run is carried
    from its latest sighting in the window, so one missed run does not end the condition.
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

    @classmethod
    def from_config(cls, config: VisionConfig) -> "ObjectEvidence":
        return cls(config.OBJECT_EVIDENCE_MIN_HITS, config.OBJECT_EVIDENCE_WINDOW_RUNS, config.banned_class_ids)

    def hits(self, class_id: int) -> int:
        return sum(1 for run in self._runs if class_id in run)

    @property
    def confirmed(self) -> frozenset[int]:
        return frozenset(c for c in self.banned if self.hits(c) >= self.min_hits)

    def update(self, detections: Detections) -> Detections:
        seen: dict[int, list[Detection]] = {}
        for d in detections.items:
            if d.class_id in self.banned:
                seen.setdefault(d.class_id, []).append(d)
        self._runs.append({c: tuple(v) for c, v in seen.items()})
        confirmed = self.confirmed
        items = [d for d in detections.items if d.class_id not in self.banned]
        for cid in sorted(confirmed):
            for run in reversed(self._runs):
                if cid in run:
                    items.extend(run[cid])
                    break
        return Detections(items=tuple(items), backend=detections.backend, frame_size=detections.frame_size)

    def reset(self) -> None:
        self._runs.clear()
