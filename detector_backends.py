"""The object detector backends and their registry (``create_detector``).

Each backend turns its model's raw output into boxes in the original frame's pixels at the
edge (``_infer``); everything after that is shared (``person_pipeline.ObjectDetector``).
Backends (``DETECTOR_BACKEND``); ``auto`` takes the first of ``AUTO_ORDER`` whose files exist:

- ``yolo_onnx``      Ultralytics YOLOv8/YOLO11 exported to ONNX (output ``[1, 4+80, N]``).
- ``ultralytics``    a ``.pt`` through the optional ``ultralytics`` package (imported lazily).
- ``centernet``      CenterNet MobileNetV3 COCO (ONNX, NHWC ``[1,512,512,3]``, output ``[1,100,6]``);
                     the one used here (measured best on phones, books, laptops and person counts).
- ``nanodet``        NanoDet-m 416 COCO (ONNX, NCHW ``[1,3,416,416]`` BGR mean/std, 3 strides,
                     distribution bins); about 30 % less CPU per pass, weaker on phones.
- ``opencv_darknet`` YOLOv4-tiny (``.cfg`` + ``.weights``) through ``cv2.dnn``.

Importing this module loads no model; ``person_pipeline`` re-exports every public name here.
This module never imports Flask, the database or the web package.
"""
from __future__ import annotations

import ast
import logging
from pathlib import Path

import numpy as np

from config_vision import VisionConfig
from person_pipeline import (
    COCO_NAMES,
    REPO_ROOT,
    DetectorError,
    ObjectDetector,
    RawOutput,
    _empty_raw,
    letterbox,
)

log = logging.getLogger(__name__)

# NanoDet's scores run on another scale than CenterNet's, so it has its own per-class bars.
_NANODET_THRESHOLDS = {0: "NANODET_PERSON_CONFIDENCE", 67: "NANODET_PHONE_CONFIDENCE",
                       73: "NANODET_BOOK_CONFIDENCE", 63: "NANODET_LAPTOP_CONFIDENCE"}


def nanodet_class_confidence(config: VisionConfig, class_id: int) -> float:
    """NanoDet's minimum score for a class (the optional extra classes share EXTRA_OBJECT_CONFIDENCE)."""
    name = _NANODET_THRESHOLDS.get(int(class_id))
    return float(getattr(config, name)) if name else float(config.class_confidence(class_id))

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


class NanoDetDetector(ObjectDetector):
    """NanoDet-m 416 COCO (ONNX, ../shared/models/PROVENANCE.md): input NCHW [1,3,416,416], the
    frame stretched (not letterboxed) to 416x416, BGR, (x - mean) / std. Outputs per stride
    8/16/32: class scores [1, cells, 80] (sigmoid applied) and box logits [1, cells, 44]
    (left, top, right, bottom x 11 bins; distance = softmax expectation of the bin index x stride,
    from the cell centre; cells row-major)."""

    name = "nanodet"
    default_files = ("nanodet.onnx",)
    MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
    STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
    STRIDES = (8, 16, 32)
    BINS = 11

    def __init__(self, config: VisionConfig, model_path: Path):
        self.session = _onnx_session(model_path, config.DETECTOR_THREADS)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] != 3 or not all(isinstance(v, int) for v in shape[2:]):
            raise DetectorError(f"{model_path}: expected a NanoDet input [1, 3, H, W], got {shape}")
        ih, iw = shape[2], shape[3]
        # Pair each stride's score output with its box output by cell count (names vary by export).
        outs = self.session.get_outputs()
        by_cells: dict[int, dict[int, int]] = {}
        for i, o in enumerate(outs):
            oshape = list(o.shape)
            if len(oshape) == 3 and isinstance(oshape[1], int) and oshape[2] in (80, 4 * self.BINS):
                by_cells.setdefault(oshape[1], {})[oshape[2]] = i
        self._levels: list[tuple[int, int, int, int]] = []  # stride, grid width, score output, box output
        for stride in self.STRIDES:
            gw, gh = iw // stride, ih // stride
            pair = by_cells.get(gw * gh, {})
            if 80 not in pair or 4 * self.BINS not in pair:
                raise DetectorError(
                    f"{model_path}: not a NanoDet COCO-80 model: no [1, {gw * gh}, 80] scores and "
                    f"[1, {gw * gh}, {4 * self.BINS}] box outputs for stride {stride} "
                    f"(outputs: {[list(o.shape) for o in outs]})")
            self._levels.append((stride, gw, pair[80], pair[4 * self.BINS]))
        super().__init__(config, model_path, (iw, ih))
        self._wanted = np.array(self.wanted_ids, dtype=np.int64)

    def _use(self, config: VisionConfig) -> None:
        super()._use(config)
        self._wanted = np.array(self.wanted_ids, dtype=np.int64)

    def class_threshold(self, config: VisionConfig, class_id: int) -> float:
        return nanodet_class_confidence(config, class_id)

    def _infer(self, image_bgr: np.ndarray) -> RawOutput:
        import cv2

        h, w = image_bgr.shape[:2]
        iw, ih = self.input_size
        interp = cv2.INTER_AREA if w > iw or h > ih else cv2.INTER_LINEAR
        x = (cv2.resize(image_bgr, (iw, ih), interpolation=interp).astype(np.float32) - self.MEAN_BGR) / self.STD_BGR
        blob = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        outs = self.session.run(None, {self.input_name: blob})
        all_boxes, all_scores, all_classes = [], [], []
        bins = np.arange(self.BINS, dtype=np.float32)
        for stride, gw, si, bi in self._levels:
            scores = np.asarray(outs[si])[0][:, self._wanted]          # [cells, wanted]
            cells, k = np.nonzero(scores >= self.min_score)
            if cells.size == 0:
                continue
            logits = np.asarray(outs[bi])[0][cells].reshape(-1, 4, self.BINS)
            e = np.exp(logits - logits.max(axis=2, keepdims=True))
            dist = (e / e.sum(axis=2, keepdims=True) * bins).sum(axis=2) * stride  # [n, 4] l, t, r, b
            cx = (cells % gw + 0.5) * stride
            cy = (cells // gw + 0.5) * stride
            all_boxes.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1))
            all_scores.append(scores[cells, k])
            all_classes.append(self._wanted[k])
        if not all_boxes:
            return _empty_raw()
        boxes = np.concatenate(all_boxes).astype(np.float64)
        boxes[:, [0, 2]] = (boxes[:, [0, 2]] * (w / iw)).clip(0, w)
        boxes[:, [1, 3]] = (boxes[:, [1, 3]] * (h / ih)).clip(0, h)
        return boxes, np.concatenate(all_scores).astype(np.float64), np.concatenate(all_classes)


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
    "nanodet": NanoDetDetector,
    "yolo_onnx": YoloOnnxDetector,
    "ultralytics": UltralyticsDetector,
    "centernet": CenterNetDetector,
    "opencv_darknet": DarknetDetector,
}
# By measurement (docs/detection-quality.md): CenterNet before NanoDet (NanoDet is cheaper per pass
# but finds no phone above its own false scores and miscounts more persons); YOLO could not be
# measured here and keeps its place first.
AUTO_ORDER = ("yolo_onnx", "ultralytics", "centernet", "nanodet", "opencv_darknet")


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

    ``auto``: the first backend of ``AUTO_ORDER`` (yolo_onnx, ultralytics, centernet, nanodet,
    opencv_darknet) whose model file is present, or None when there is none. An explicit backend whose file is missing, an
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
        lower = path.name.lower()
        if "nanodet" in lower:
            return "nanodet"
        return "centernet" if "centernet" in lower else "yolo_onnx"
    raise DetectorError(f"cannot tell the detector backend of {path}; set DETECTOR_BACKEND")


def _build(backend: str, config: VisionConfig, path: Path) -> ObjectDetector:
    cls = BACKENDS.get(backend)
    if cls is None:
        raise DetectorError(f"unknown detector backend {backend!r}")
    if not path.is_file():
        raise DetectorError(f"detector backend {backend!r}: model file {path} is missing")
    return cls(config, path)

