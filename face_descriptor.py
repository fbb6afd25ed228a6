"""The second face descriptor beside dlib: HSE-FaceRes (models/faceres.onnx), 1024-d, cosine distance.

The model file, its exact input and its source are described in ../shared/models/PROVENANCE.md
("faceres.onnx"). The crop follows the JavaScript library it was made for (Human,
src/face/faceres.ts): the face box enlarged 1.4x about its centre and made square (longer side),
cut and resized bilinear to 192x192 (tf.image.cropAndResize: corner-aligned sampling, zeros
outside the image), then resized bilinear to 224x224 (TF's legacy resize: no half-pixel
centres), RGB 0..255, no rotation. face_identity.FaceIdentity fuses its distance with dlib's.

This module never imports Flask, the database or the web package.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent
FACERES_FILE = "faceres.onnx"
DESCRIPTOR_SIZE = 1024
_INPUT_NAME = "input_1:0"
_OUTPUT_NAME = "global_pooling/Mean:0"
_CROP_SIDE = 192
_INPUT_SIDE = 224
_BOX_ENLARGE = 1.4


class DescriptorModelError(RuntimeError):
    """The FaceRes model file is missing or could not be loaded."""


def faceres_path(config: Any, models_dir: Path | str | None = None) -> Path:
    """models/faceres.onnx under MODELS_DIR (relative to the repository root unless absolute)."""
    d = Path(models_dir) if models_dir is not None else Path(str(config.MODELS_DIR))
    return (d if d.is_absolute() else REPO_ROOT / d) / FACERES_FILE


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - cos(a, b); FaceRes vectors are non-negative, so this lies in 0..1."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 1.0
    return float(1.0 - np.dot(a, b) / (na * nb))


def _square_box(box: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * _BOX_ENLARGE
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0


def faceres_input(frame_rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The model's [224, 224, 3] float32 input (RGB 0..255) for the face in box."""
    h, w = frame_rgb.shape[:2]
    x1, y1, x2, y2 = _square_box(box)
    # tf.image.cropAndResize with normalised box (y1/(h-1) .. y2/(h-1)): sample i of n lies at
    # y1 + i * (y2 - y1) / (n - 1) in image pixels (pixel centres at integers), zero outside.
    ny1, nx1, ny2, nx2 = y1 / h, x1 / w, y2 / h, x2 / w  # Human normalises by the image size
    steps = np.arange(_CROP_SIDE, dtype=np.float32) / (_CROP_SIDE - 1)
    ys = (ny1 + steps * (ny2 - ny1)) * (h - 1)
    xs = (nx1 + steps * (nx2 - nx1)) * (w - 1)
    map_x, map_y = np.meshgrid(xs, ys)
    crop = cv2.remap(frame_rgb.astype(np.float32) / 255.0, map_x.astype(np.float32), map_y.astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # TF's legacy bilinear resize (half_pixel_centers=False): output pixel j samples at j * in / out.
    src = np.arange(_INPUT_SIDE, dtype=np.float32) * (_CROP_SIDE / _INPUT_SIDE)
    gx, gy = np.meshgrid(src, src)
    out = cv2.remap(crop, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return (out * 255.0).astype(np.float32)


class FaceResDescriptor:
    """HSE-FaceRes on onnxruntime, one intra-op thread, loaded once per instance; calls are serialised."""

    def __init__(self, model_path: Path | str) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise DescriptorModelError(
                f"FaceRes model file not found: {path} (install it with download_yolo_models.py or copy "
                f"../shared/models/{FACERES_FILE}); face identity falls back to dlib alone")
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a runtime requirement
            raise DescriptorModelError(f"onnxruntime is not installed: {exc}") from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise DescriptorModelError(f"could not load FaceRes model {path}: {exc}") from exc
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        outputs = {o.name for o in self._session.get_outputs()}
        if _INPUT_NAME not in inputs or _OUTPUT_NAME not in outputs:
            raise DescriptorModelError(
                f"{path} is not the FaceRes model (inputs {sorted(inputs)}, outputs {sorted(outputs)})")
        self.path = path
        self._lock = threading.Lock()

    def describe(self, frame_rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """The 1024-d float32 descriptor of the face in box (frame in RGB uint8)."""
        batch = faceres_input(frame_rgb, box)[None]
        with self._lock:
            out = self._session.run([_OUTPUT_NAME], {_INPUT_NAME: batch})[0]
        vec = np.asarray(out, dtype=np.float32).reshape(-1)
        if vec.shape != (DESCRIPTOR_SIZE,) or not np.all(np.isfinite(vec)):
            raise DescriptorModelError(f"FaceRes gave a bad descriptor (shape {vec.shape})")
        return vec
