"""Face analysis: presence, count, head pose, eyes and gaze from one frame.

Stages, one way:
  frame -> (dark? CLAHE) -> FaceMesh (478 landmarks per face)
        -> independent face counter (MediaPipe FaceDetection full range on the frame, short range
           on square tiles; in video mode only when it can change the answer, see _counter_due)
        -> boxes merged by IoU -> main face -> pose (solvePnP), EAR, iris.
When MediaPipe cannot be imported, OpenCV's Haar cascade counts faces (no landmarks then).

This module never imports Flask, the database or the web package. Every tunable number comes
from config_vision. One FaceAnalyzer per worker/stream; an instance serialises its own calls
(MediaPipe graphs are not re-entrant) and shares nothing with other instances.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable

import cv2
import numpy as np

from face_presence import PresenceJudge, box_iou  # noqa: F401  (box_iou: part of this module's interface)
from face_presence import same_face as _same_face

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels of the analysed frame


@dataclass(frozen=True)
class FaceObservation:
    """What the face stage saw in one frame. Angles in degrees, ratios unitless."""

    face_detected: bool
    face_count: int
    yaw_deg: float | None = None        # + = the student's head turned to their left (image right)
    pitch_deg: float | None = None      # + = looking up (pitch_down_deg: + = looking down)
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
    def pitch_down_deg(self) -> float | None:
        """How far the head is turned down from the line of sight to the camera (+ = down)."""
        return None if self.pitch_deg is None else -self.pitch_deg

    @property
    def ear(self) -> float | None:
        vals = [v for v in (self.ear_left, self.ear_right) if v is not None]
        return sum(vals) / len(vals) if vals else None


# ---------------------------------------------------------------------------------------------
# Geometry on FaceMesh landmarks (indices of the 468/478-point topology).
# "left"/"right" are the STUDENT's own left/right (MediaPipe's naming): the student's left eye
# appears on the image right. iris_offset is + when the irises sit toward the image right.

# 6-point EAR: p1 outer corner, p2/p3 upper lid, p4 inner corner, p5/p6 lower lid.
_LEFT_EYE_EAR = (263, 387, 385, 362, 380, 373)
_RIGHT_EYE_EAR = (33, 160, 158, 133, 153, 144)
_LEFT_IRIS_CENTRE = 473   # refine_landmarks=True only
_RIGHT_IRIS_CENTRE = 468

# Pose solve: six vertices of MediaPipe's canonical face model (the 3-D face FaceMesh's
# topology is built on; google-ai-edge/mediapipe, mediapipe/modules/face_geometry/data/
# canonical_face_model.obj, Apache-2.0), in centimetres, turned into a camera-aligned frame for
# a face looking straight at the camera: x to the image right, y down, z away from the camera.
_POSE_LANDMARKS = (1, 152, 33, 263, 61, 291)  # nose tip, chin, eye outer corners, mouth corners
_POSE_MODEL = np.array(
    [
        (0.0, 1.126865, -7.475604),         # 1 nose tip
        (0.0, 9.403378, -4.264492),         # 152 chin
        (-4.445859, -2.663991, -3.173422),  # 33 image-left eye outer corner (student's right eye)
        (4.445859, -2.663991, -3.173422),   # 263 image-right eye outer corner (student's left eye)
        (-2.456206, 4.342621, -4.283884),   # 61 image-left mouth corner
        (2.456206, 4.342621, -4.283884),    # 291 image-right mouth corner
    ],
    dtype=np.float64,
)

_JUMP_IOU = 0.3  # the main face box overlaps its previous place less than this: a new track (maybe someone else)


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(*(a - b)))


def eye_aspect_ratio(pts: np.ndarray, idx: tuple[int, ...]) -> float | None:
    """(|p2-p6| + |p3-p5|) / (2 |p1-p4|) on pixel landmarks; None when degenerate."""
    p1, p2, p3, p4, p5, p6 = (pts[i] for i in idx)
    width = _dist(p1, p4)
    if width < 1e-6:
        return None
    return (_dist(p2, p6) + _dist(p3, p5)) / (2.0 * width)


def iris_offset(pts: np.ndarray) -> float | None:
    """Mean signed iris offset of both eyes along each eye's corner axis, in half eye widths."""
    if len(pts) < 478:
        return None
    offsets = []
    for (outer, inner), centre in (((33, 133), _RIGHT_IRIS_CENTRE), ((263, 362), _LEFT_IRIS_CENTRE)):
        a, b = pts[outer], pts[inner]
        if a[0] > b[0]:
            a, b = b, a  # a = image-left corner, b = image-right corner
        axis = b - a
        half = float(np.hypot(*axis)) / 2.0
        if half < 1e-6:
            return None
        mid = (a + b) / 2.0
        offsets.append(float(np.dot(pts[centre] - mid, axis / (2.0 * half))) / half)
    return float(np.clip(sum(offsets) / len(offsets), -1.0, 1.0))


def head_pose(pts: np.ndarray, frame_w: int, frame_h: int) -> tuple[float, float, float] | None:
    """(yaw, pitch, roll) in degrees from a solvePnP fit of the generic 3-D face.

    Pinhole camera with focal length = frame width, principal point at the centre, no
    distortion. yaw + = nose toward the image right (student's left); pitch + = looking up;
    roll + = the face rotated clockwise in the image.
    """
    image_pts = np.array([pts[i] for i in _POSE_LANDMARKS], dtype=np.float64)
    focal = float(max(frame_w, frame_h))
    camera = np.array([[focal, 0, frame_w / 2.0], [0, focal, frame_h / 2.0], [0, 0, 1]], dtype=np.float64)
    ok, rvec, tvec = cv2.solvePnP(_POSE_MODEL, image_pts, camera, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or float(tvec[2][0]) <= 0:
        # Retry from a frontal start in front of the camera (the default start can land behind it).
        ok, rvec, tvec = cv2.solvePnP(
            _POSE_MODEL, image_pts, camera, np.zeros(4),
            rvec=np.zeros((3, 1)), tvec=np.array([[0.0], [0.0], [60.0]]),
            useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
        )
        if not ok:
            return None
    rot, _ = cv2.Rodrigues(rvec)
    forward = rot @ np.array([0.0, 0.0, -1.0])   # where the nose points, camera coordinates
    x_axis = rot @ np.array([1.0, 0.0, 0.0])     # the face's left-to-right axis in the image
    tx, ty, tz = (float(v) for v in tvec.ravel())
    # Angles are measured from the line of sight (face -> camera), not the camera axis, so a
    # student sitting off-centre who looks at the camera reads 0.
    yaw = math.degrees(math.atan2(forward[0], -forward[2]) - math.atan2(-tx, tz))
    pitch = math.degrees(math.atan2(-forward[1], math.hypot(forward[0], forward[2]))
                         - math.atan2(ty, math.hypot(tx, tz)))
    roll = math.degrees(math.atan2(x_axis[1], x_axis[0]))
    return yaw, pitch, roll


def face_jumped(before: Box | None, now: Box | None) -> bool:
    """The main face box moved so far between two frames that it is a new track: the face counter counts
    again (FaceAnalyzer) and the live identity check looks again (proctor/live/streams.py)."""
    return before is not None and now is not None and box_iou(before, now) < _JUMP_IOU


def _area(b: Box) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


@dataclass
class _Candidate:
    box: Box
    score: float
    source: str                          # facemesh | face_detection | haar
    landmarks: np.ndarray | None = None  # pixels, (N, 2)
    confirmed: bool | None = None        # small-face scan: FaceMesh found a face in the zoomed crop
    small: bool = False                  # found by the small-face scan (never makes anyone present)


def merge_candidates(cands: Iterable[_Candidate]) -> list[_Candidate]:
    """One entry per face: FaceMesh faces first (they carry landmarks), then the rest by score."""
    order = sorted(cands, key=lambda c: (c.landmarks is None, -c.score))
    kept: list[_Candidate] = []
    for c in order:
        for k in kept:
            if _same_face(c.box, k.box):
                k.score = max(k.score, c.score)
                break
        else:
            kept.append(c)
    return kept


def to_bgr_uint8(frame: Any) -> np.ndarray:
    """Validate a frame: HxWx3 BGR uint8 (HxW grey and HxWx4 BGRA are converted)."""
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    elif frame.ndim == 3 and frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    elif not (frame.ndim == 3 and frame.shape[2] == 3):
        raise ValueError(f"frame must be HxWx3 BGR, got shape {frame.shape}")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise ValueError(f"frame is empty: shape {frame.shape}")
    return np.ascontiguousarray(frame)


def camera_activity(frame_bgr: np.ndarray, previous_grey: np.ndarray | None) -> tuple[float, float | None, np.ndarray]:
    """Mean luma (0-255), mean absolute luma change from the previous frame (None without one or after a
    size change) and this frame's grey copy, for the CAMERA_OFF rule (black or frozen picture).

    Measured at full resolution: a live webcam's sensor and JPEG noise keeps the change well above
    FROZEN_FRAME_DIFF even when the student sits still, while a frozen or replayed-still camera gives
    (near) zero. A shrunken copy would average the noise away and accuse a still student."""
    grey = cv2.cvtColor(to_bgr_uint8(frame_bgr), cv2.COLOR_BGR2GRAY)
    diff = None
    if previous_grey is not None and previous_grey.shape == grey.shape:
        diff = float(cv2.absdiff(grey, previous_grey).mean())
    return float(grey.mean()), diff, grey


MOTION_THUMB_SIZE = (64, 48)  # width, height of the whole frame's thumbnail; its lower half is compared
MOTION_TOLERANCE_PX = 1       # each thumbnail pixel is compared with its best match this far around


def lower_half_motion(grey: np.ndarray, previous_thumb: np.ndarray | None) -> tuple[float | None, np.ndarray]:
    """How much the lower half of the picture (hands, desk) changed since the previous frame, and this
    frame's thumbnail for the next call. None without a previous thumbnail.

    The mean (0-255) over the lower half of 64x48 greyscale thumbnails of each pixel's absolute
    difference to its best match within MOTION_TOLERANCE_PX thumbnail pixels (10 frame pixels at
    640x480) in the previous thumbnail, scaled to this one's mean brightness first. The thumbnail
    averages sensor and JPEG noise away, the best match absorbs a camera shake or a student shifting
    by a few pixels, the brightness scaling an exposure change; a hand or an object that was not
    there stays (bench/cadence_bench.py measures both). Well under 1 ms on 640x480; the object
    detector's cadence (proctor/live/cadence.py) reads it."""
    w, h = MOTION_THUMB_SIZE
    thumb = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)[h // 2:].astype(np.float32)
    if previous_thumb is None or previous_thumb.shape != thumb.shape:
        return None, thumb
    r = MOTION_TOLERANCE_PX
    prev = previous_thumb * (float(thumb.mean()) / max(float(previous_thumb.mean()), 1.0))
    padded = cv2.copyMakeBorder(prev, r, r, r, r, cv2.BORDER_REPLICATE)
    th, tw = thumb.shape
    best = None
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            diff = cv2.absdiff(thumb, padded[dy:dy + th, dx:dx + tw])
            best = diff if best is None else cv2.min(best, diff)
    return float(best.mean()), thumb


def normalise_dark(frame_bgr: np.ndarray) -> np.ndarray:
    """CLAHE on the L channel (LAB), after stretching L to the full range."""
    lab = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2LAB)
    l_chan = cv2.normalize(lab[:, :, 0], None, 0, 255, cv2.NORM_MINMAX)
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8))
    lab[:, :, 0] = clahe.apply(l_chan)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


def _small_face_tiles(w: int, h: int) -> list[tuple[int, int, int, int]]:
    """A grid of overlapping squares (side 0.6 of the short side) so that a small face fills
    enough of the full-range detector's 192-px input to be found."""
    side = int(min(w, h) * 0.6)
    if side < 120:
        return []
    stride = side * 0.8
    nx = max(1, math.ceil((w - side) / stride) + 1)
    ny = max(1, math.ceil((h - side) / stride) + 1)
    xs = [round(i * (w - side) / max(1, nx - 1)) for i in range(nx)]
    ys = [round(j * (h - side) / max(1, ny - 1)) for j in range(ny)]
    return [(x, y, x + side, y + side) for y in ys for x in xs]


def _square_tiles(w: int, h: int) -> list[tuple[int, int, int, int]]:
    """Overlapping square tiles (side = the short side) covering a non-square frame."""
    side = min(w, h)
    long_len = max(w, h)
    if long_len - side < side * 0.1:
        return [(0, 0, w, h)]
    n = max(2, math.ceil((long_len - side) / (side * 0.5)) + 1)
    starts = [round(i * (long_len - side) / (n - 1)) for i in range(n)]
    if w >= h:
        return [(s, 0, s + side, h) for s in starts]
    return [(0, s, w, s + side) for s in starts]


class FaceAnalyzer:
    """Face stage for one worker or stream.

    static_image_mode=False tracks landmarks across video frames (cheaper, steadier);
    True treats every call as an unrelated photo. backend: "auto" (MediaPipe, falling back to
    the Haar cascade when MediaPipe cannot be imported), "mediapipe" or "haar".
    """

    def __init__(self, config: Any, static_image_mode: bool = False, *, backend: str = "auto") -> None:
        if backend not in ("auto", "mediapipe", "haar"):
            raise ValueError(f"unknown face backend {backend!r}: use auto, mediapipe or haar")
        self.config = config
        self.static_image_mode = bool(static_image_mode)
        self._lock = threading.Lock()
        self._closed = False
        self._mesh = self._crop_mesh = self._fd_full = self._fd_short = None
        self._haar = None
        self._frame_no = 0
        self._small_cache: list[_Candidate] = []
        self._mesh_seen: tuple[int, Box | None] = (-1, None)  # FaceMesh's count and main box on the last frame
        self._since_counter = 0
        self._counter_extra = False
        self._presence_wait = False  # a FaceMesh face waits for a detection to agree with it
        self._scan_fresh = True  # the small-face boxes of this frame come from a scan on this frame
        self._presence = PresenceJudge(config, video=not self.static_image_mode)
        self.counter_runs = 0  # frames the independent counter ran on (for benchmarks and tests)
        conf = float(config.FACE_DETECTION_CONFIDENCE)
        mp_solutions = None
        if backend != "haar":
            try:
                from mediapipe.python.solutions import face_detection, face_mesh
                mp_solutions = (face_detection, face_mesh)
            except ImportError:
                if backend == "mediapipe":
                    raise
        if mp_solutions is not None:
            face_detection, face_mesh = mp_solutions
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=self.static_image_mode,
                max_num_faces=int(config.MAX_FACES),
                refine_landmarks=True,
                min_detection_confidence=conf,
                min_tracking_confidence=float(config.FACE_TRACKING_CONFIDENCE),
            )
            # Landmarks for a face the frame-level mesh missed (small or far), on a zoomed crop.
            self._crop_mesh = face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=conf,
            )
            # The independent counter: full range finds small/background faces on the whole
            # frame; short range on square tiles finds large turned faces full range misses.
            self._fd_full = face_detection.FaceDetection(model_selection=1, min_detection_confidence=conf)
            self._fd_short = face_detection.FaceDetection(model_selection=0, min_detection_confidence=conf)
            self.backend = "mediapipe"
        else:
            self._haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            if self._haar.empty():
                raise RuntimeError("OpenCV Haar cascade haarcascade_frontalface_default.xml could not be loaded")
            self.backend = "haar"

    # -- public -----------------------------------------------------------------------------
    def analyze(self, frame_bgr: np.ndarray) -> FaceObservation:
        frame = to_bgr_uint8(frame_bgr)
        with self._lock:
            if self._closed:
                raise RuntimeError("FaceAnalyzer is closed")
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            brightness = float(grey.mean())
            normalised = brightness < float(self.config.DARK_FRAME_MEAN)
            work = normalise_dark(frame) if normalised else frame
            h, w = work.shape[:2]
            if self.backend == "haar":
                cands = self._haar_candidates(work)
            else:
                cands = self._mediapipe_candidates(work)
            faces = merge_candidates(cands)
            if self.backend != "haar":  # the Haar fallback has no scores to judge by: every face counts
                self._fit_unmeshed(work, faces)
                decision = self._presence.judge(faces, w, h, fresh=[not c.small or self._scan_fresh for c in faces])
                self._presence_wait = decision.needs_counter
                counted = [faces[i] for i in decision.counted]
                faces = [faces[i] for i in decision.present]
            else:
                counted = faces
            if not faces:
                return FaceObservation(
                    face_detected=False, face_count=len(counted), brightness=brightness, normalised=normalised,
                    detector=self.backend if self.backend == "haar" else "facemesh",
                    face_boxes=tuple(c.box for c in sorted(counted, key=lambda c: -_area(c.box))),
                )
            main = max(faces, key=lambda c: _area(c.box))
            faces = counted
            if main.landmarks is None and self._crop_mesh is not None:
                main.landmarks = self._landmarks_on_crop(work, main.box)
            sources = {c.source for c in faces}
            detector = "haar" if "haar" in sources else ("facemesh" if sources == {"facemesh"} else "face_detection")
            kwargs: dict[str, Any] = {}
            pts = main.landmarks
            if pts is not None and len(pts) >= 468:
                pose = head_pose(pts, w, h)
                if pose is not None:
                    kwargs.update(yaw_deg=pose[0], pitch_deg=pose[1], roll_deg=pose[2])
                kwargs.update(
                    ear_left=eye_aspect_ratio(pts, _LEFT_EYE_EAR),
                    ear_right=eye_aspect_ratio(pts, _RIGHT_EYE_EAR),
                    iris_offset=iris_offset(pts),
                    landmarks=tuple(map(tuple, np.asarray(pts, dtype=np.float64)[:, :2].tolist())),  # 10x faster than a genexpr
                )
            return FaceObservation(
                face_detected=True,
                face_count=len(faces),
                box=main.box,
                confidence=float(main.score),
                face_boxes=tuple(c.box for c in sorted(faces, key=lambda c: -_area(c.box))),
                detector=detector,
                brightness=brightness,
                normalised=normalised,
                **kwargs,
            )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for graph in (self._mesh, self._crop_mesh, self._fd_full, self._fd_short):
                if graph is not None:
                    graph.close()
            self._mesh = self._crop_mesh = self._fd_full = self._fd_short = self._haar = None

    def __enter__(self) -> "FaceAnalyzer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- detectors --------------------------------------------------------------------------
    def _mediapipe_candidates(self, frame: np.ndarray) -> list[_Candidate]:
        h, w = frame.shape[:2]
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        cands: list[_Candidate] = []
        result = self._mesh.process(rgb)
        for face in result.multi_face_landmarks or ():
            pts = np.array([(lm.x * w, lm.y * h) for lm in face.landmark], dtype=np.float64)
            box = _clip_box(pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max(), w, h)
            if box is not None:
                # FaceMesh reports no per-face score: start from the floor its detector passed;
                # merging raises it to the score of a face detection of the same face.
                cands.append(_Candidate(box, float(self.config.FACE_DETECTION_CONFIDENCE), "facemesh", pts))
        tile_min = float(self.config.FACE_TILE_CONFIDENCE)
        if self._counter_due([c.box for c in cands]):
            counted = self._face_detection(self._fd_full, rgb, 0, 0)
            for x1, y1, x2, y2 in _square_tiles(w, h):
                tile = np.ascontiguousarray(rgb[y1:y2, x1:x2])
                counted.extend(c for c in self._face_detection(self._fd_short, tile, x1, y1, (w, h)) if c.score >= tile_min)
            # A face the mesh does not track keeps the counter on every frame until the mesh agrees.
            self._counter_extra = any(not any(_same_face(c.box, m.box) for m in cands) for c in counted)
            self.counter_runs += 1
            cands.extend(counted)
        known = [c.box for c in cands]
        smalls, fresh = self._small_faces(rgb, tile_min)
        self._scan_fresh = fresh
        if not fresh and not known:
            return cands  # a scene with no face of its own now: old small-face boxes do not count
        for small in smalls:
            if any(_same_face(small.box, k) for k in known):
                continue  # already counted
            # A new small face must be confirmed by FaceMesh on a zoomed crop: the full-range
            # detector on tiles fires on some hands and fabric folds at 0.7 in the test photos.
            if small.confirmed is None:
                small.confirmed = self._landmarks_on_crop(frame, small.box) is not None
            if small.confirmed:
                cands.append(_Candidate(small.box, small.score, small.source, small=True))
        return cands

    def _fit_unmeshed(self, frame: np.ndarray, faces: list[_Candidate]) -> None:
        """FaceMesh on a zoomed crop of each detector-only face that could be the examinee (at most
        two, largest first): landmarks there are what presence asks of a weaker detection."""
        if self._crop_mesh is None:
            return
        min_side = float(self.config.PRESENCE_MIN_FACE_FRACTION) * min(frame.shape[:2])
        floor = float(self.config.PRESENCE_CONFIRM_CONFIDENCE)
        todo = [c for c in faces if c.landmarks is None and not c.small and c.score >= floor
                and min(c.box[2] - c.box[0], c.box[3] - c.box[1]) >= min_side]
        for c in sorted(todo, key=lambda c: -_area(c.box))[:2]:
            c.landmarks = self._landmarks_on_crop(frame, c.box)

    def _counter_due(self, mesh_boxes: list[Box]) -> bool:
        """The independent counter (FaceDetection on the frame and on square tiles, about 13 ms on
        640x480) runs only when it can change the answer: in photo mode; when FaceMesh's face count
        changes, down to none included (a turned or half-hidden face the mesh lost); when the tracked face
        jumps (a new track); while the counter sees a face the mesh does not track; and as an audit
        once every FACE_COUNTER_EVERY_N_FRAMES frames. In video mode FaceMesh runs its own face
        detector on every frame while it tracks fewer than MAX_FACES faces, so a second face that
        comes in changes the mesh's count and brings the counter in at once."""
        every = max(1, int(self.config.FACE_COUNTER_EVERY_N_FRAMES))
        main = max(mesh_boxes, key=_area) if mesh_boxes else None
        prev_count, prev_main = self._mesh_seen
        self._mesh_seen = (len(mesh_boxes), main)
        self._since_counter += 1
        due = (self.static_image_mode or every == 1 or len(mesh_boxes) != prev_count or face_jumped(prev_main, main)
               or self._counter_extra or self._presence_wait or self._since_counter >= every)
        if due:
            self._since_counter = 0
        return due

    def _small_faces(self, rgb: np.ndarray, min_score: float) -> tuple[list[_Candidate], bool]:
        """Full range on zoomed tiles: in photo mode every call, in video mode every Nth frame
        (the boxes found stand until the next scan, so the count does not flicker)."""
        every = int(self.config.FACE_SMALL_SCAN_EVERY_N_FRAMES)
        if every <= 0:
            return [], True
        self._frame_no += 1
        fresh = self.static_image_mode or (self._frame_no - 1) % every == 0
        if fresh:
            h, w = rgb.shape[:2]
            found: list[_Candidate] = []
            for x1, y1, x2, y2 in _small_face_tiles(w, h):
                tile = np.ascontiguousarray(rgb[y1:y2, x1:x2])
                found.extend(c for c in self._face_detection(self._fd_full, tile, x1, y1, (w, h)) if c.score >= min_score)
            self._small_cache = found
        return self._small_cache, fresh

    @staticmethod
    def _face_detection(graph: Any, rgb: np.ndarray, ox: int, oy: int,
                        full: tuple[int, int] | None = None) -> list[_Candidate]:
        th, tw = rgb.shape[:2]
        fw, fh = full or (tw, th)
        out = []
        for det in graph.process(rgb).detections or ():
            rb = det.location_data.relative_bounding_box
            box = _clip_box(ox + rb.xmin * tw, oy + rb.ymin * th,
                            ox + (rb.xmin + rb.width) * tw, oy + (rb.ymin + rb.height) * th, fw, fh)
            if box is not None:
                out.append(_Candidate(box, float(det.score[0]), "face_detection"))
        return out

    def _haar_candidates(self, frame: np.ndarray) -> list[_Candidate]:
        grey = cv2.equalizeHist(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        min_side = max(20, min(frame.shape[:2]) // 25)
        found = self._haar.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        return [_Candidate((int(x), int(y), int(x + bw), int(y + bh)), 0.5, "haar") for x, y, bw, bh in
                (found if len(found) else ())]

    def _landmarks_on_crop(self, frame: np.ndarray, box: Box) -> np.ndarray | None:
        """FaceMesh on a zoomed crop around a face the frame-level mesh missed."""
        h, w = frame.shape[:2]
        bw, bh = box[2] - box[0], box[3] - box[1]
        side = int(max(bw, bh) * 2.0)
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        x1, y1 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x2, y2 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        if x2 - x1 < 8 or y2 - y1 < 8:
            return None
        crop = frame[y1:y2, x1:x2]
        scale = 256.0 / max(crop.shape[:2])
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        res = self._crop_mesh.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        if not res.multi_face_landmarks:
            return None
        ch, cw = crop.shape[:2]
        pts = np.array([(x1 + lm.x * cw / scale, y1 + lm.y * ch / scale)
                        for lm in res.multi_face_landmarks[0].landmark], dtype=np.float64)
        centre = pts.mean(axis=0)
        if not (box[0] <= centre[0] <= box[2] and box[1] <= centre[1] <= box[3]):
            return None  # the crop's mesh found some other face
        return pts


def _clip_box(x1: float, y1: float, x2: float, y2: float, w: int, h: int) -> Box | None:
    bx1, by1 = int(max(0, math.floor(x1))), int(max(0, math.floor(y1)))
    bx2, by2 = int(min(w, math.ceil(x2))), int(min(h, math.ceil(y2)))
    if bx2 - bx1 < 2 or by2 - by1 < 2:
        return None
    return bx1, by1, bx2, by2
