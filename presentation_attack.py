"""Presentation attacks: a face shown on a phone/tablet screen or a printed photo, held to the webcam.

Cues that can be measured on one frame (``PresentationAttackCheck.assess``):
- the device's frame: long straight edges beside and above/below the face, roughly parallel to the
  face's sides, forming (part of) a rectangle that encloses the face box at a small distance, with a
  dark, even band (the bezel) or a bright, even band (a paper margin) on their outer side;
- screen moire and glare: isolated peaks in the face crop's high spatial frequencies (reported as a
  cue; on the test photos it does not separate, see docs/presentation-attack.md).
Cues that need several frames of the same face (``assess_sequence``):
- planarity: when the face moves enough that a 3-D head would show parallax, the landmarks of a
  picture still move by one homography (a plane seen from another angle);
- no micro-motion: a picture's landmarks move rigidly (a homography explains them to within
  landmark noise), a live face's do not (expression, blinks, 3-D turn).

The small anti-spoof CNNs measured on the test photos do not separate the phone-screen face from real
faces (../shared/models/PROVENANCE.md), so nothing here is learned; every threshold is a setting in
config_vision (PA_*), chosen on one half of the test photos and scored on the other
(bench/presentation_attack_bench.py, docs/presentation-attack.md).

This module never imports Flask, the database or the web package.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from face_pipeline import to_bgr_uint8

Box = tuple[int, int, int, int]

SIDES = ("left", "right", "top", "bottom")
_WORK_FACE_PX = 96.0        # the region around the face is resized so the face box is this wide
_STRIP_FRACTION = 0.08      # width of the band sampled either side of an edge (fraction of face width)
_LSD = None


def _lsd() -> Any:
    global _LSD
    if _LSD is None:  # one detector per process; LSD holds no state between calls
        _LSD = cv2.createLineSegmentDetector(cv2.LSD_REFINE_NONE)
    return _LSD


@dataclass(frozen=True)
class PresentationResult:
    """The verdict on one frame (or a sequence). ``score`` 0..1, higher = more likely a picture;
    ``cues`` holds every measured figure by name; ``reason`` says in words why."""

    spoof: bool
    score: float
    cues: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def _validated_frame(frame: Any) -> np.ndarray:
    frame = to_bgr_uint8(frame)  # the face stage's own validation (grey and BGRA converted)
    if frame.shape[0] < 16 or frame.shape[1] < 16:
        raise ValueError(f"frame is too small: shape {frame.shape}")
    return frame


def _validated_box(box: Any, w: int, h: int) -> Box:
    try:
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be (x1, y1, x2, y2), got {box!r}") from None
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 8 or y2 - y1 < 8:
        raise ValueError(f"box {box!r} is empty or too small inside a {w}x{h} frame")
    return x1, y1, x2, y2


def _validated_landmarks(landmarks: Any) -> np.ndarray | None:
    if landmarks is None or len(landmarks) == 0:
        return None
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
        raise ValueError(f"landmarks must be N x 2 finite pixel coordinates, got shape {pts.shape}")
    return pts


# ---------------------------------------------------------------------------------------------
# Single-frame cues

def _profile(grey: np.ndarray, p1: np.ndarray, p2: np.ndarray, normal: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Luma across an edge: for offsets 1..depth px along ``normal``, the median and the spread
    (interquartile range) of the pixels along the segment's middle 80 %. NaN where mostly outside the image."""
    h, w = grey.shape
    n_along = max(8, int(np.hypot(*(p2 - p1)) / 2))
    t = np.linspace(0.1, 0.9, n_along)[:, None, None]
    s = np.arange(1, depth + 1, dtype=np.float64)[None, :, None]
    pts = p1[None, None, :] + t * (p2 - p1)[None, None, :] + s * normal[None, None, :]
    xs, ys = pts[..., 0].round().astype(int), pts[..., 1].round().astype(int)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    vals = grey[np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)].astype(np.float64)
    enough = inside.mean(axis=0) >= 0.5
    vals[~inside] = np.nan
    vals[:, ~enough] = 0.0  # keeps nanmedian quiet; masked below
    med = np.nanmedian(vals, axis=0)
    spread = np.nanpercentile(vals, 75, axis=0) - np.nanpercentile(vals, 25, axis=0)
    return np.where(enough, med, np.nan), np.where(enough, spread, np.nan)


def border_band(grey: np.ndarray, p1: np.ndarray, p2: np.ndarray, normal: np.ndarray, face_w: float, cfg: Any) -> dict[str, float]:
    """Is there a narrow, even band (a bezel or a paper margin) just outside this edge, bounded by a
    second change of luma (the device's or the print's outer edge, or the picture's border)?"""
    depth = max(6, int(float(cfg.PA_BORDER_MAX_WIDTH_FACE) * face_w * 1.6))
    med_out, spread_out = _profile(grey, p1, p2, normal, depth)
    med_in, _ = _profile(grey, p1, p2, -normal, max(4, int(0.08 * face_w)))
    empty = {"band_width": 0.0, "band_luma": float("nan"), "inner_contrast": 0.0, "outer_contrast": 0.0}
    if np.isnan(med_out[0]):
        return empty
    ref = float(np.nanmedian(med_out[:3]))
    tol = float(cfg.PA_BORDER_MAX_STD_LUMA)
    width = 0
    for v, sp in zip(med_out, spread_out):
        if np.isnan(v) or abs(v - ref) > tol or sp > 2 * tol:
            break
        width += 1
    if width == 0:
        return empty
    band = float(np.mean(med_out[:width]))
    beyond = med_out[width + 2: width + 2 + max(3, int(0.05 * face_w))]
    beyond = beyond[~np.isnan(beyond)]
    # a band that runs off the picture is not bounded: a plain wall reaching the frame's edge is not a bezel
    outer = abs(float(np.mean(beyond)) - band) if beyond.size else 0.0
    inner = float(np.nanmedian(med_in)) if not np.all(np.isnan(med_in)) else float("nan")
    return {"band_width": width / face_w, "band_luma": band,
            "inner_contrast": abs(inner - band) if inner == inner else 0.0, "outer_contrast": outer}


def frame_edges(grey: np.ndarray, box: Box, cfg: Any) -> dict[str, dict[str, float]]:
    """The device-frame cue: for each side of the face box, the best straight edge beside it (roughly
    parallel to that side, outside the box, within PA_FRAME_SEARCH_FACE_WIDTHS face sizes): its length
    as a fraction of the face's size along that side and the band just outside it."""
    x1, y1, x2, y2 = box
    fw, fh = x2 - x1, y2 - y1
    reach = float(cfg.PA_FRAME_SEARCH_FACE_WIDTHS)
    H, W = grey.shape
    pad = reach + 1.6 * float(cfg.PA_BORDER_MAX_WIDTH_FACE) + 0.1  # room for the band beyond the farthest edge
    rx1, ry1 = max(0, int(x1 - pad * fw)), max(0, int(y1 - pad * fh))
    rx2, ry2 = min(W, int(x2 + pad * fw)), min(H, int(y2 + pad * fh))
    scale = _WORK_FACE_PX / fw
    roi = grey[ry1:ry2, rx1:rx2]
    roi = cv2.resize(roi, (max(8, round(roi.shape[1] * scale)), max(8, round(roi.shape[0] * scale))),
                     interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    fx1, fy1, fx2, fy2 = ((x1 - rx1) * scale, (y1 - ry1) * scale, (x2 - rx1) * scale, (y2 - ry1) * scale)
    sfw, sfh = fx2 - fx1, fy2 - fy1
    found = _lsd().detect(roi)[0]
    segs = np.zeros((0, 4)) if found is None else found.reshape(-1, 4).astype(np.float64)
    max_tilt = math.radians(float(cfg.PA_FRAME_MAX_TILT_DEG))
    min_len = float(cfg.PA_FRAME_EDGE_MIN_LENGTH_FACE)
    best: dict[str, dict[str, float]] = {s: {"evidence": 0.0, "length": 0.0} for s in SIDES}
    for sx1, sy1, sx2, sy2 in segs:
        p1, p2 = np.array([sx1, sy1]), np.array([sx2, sy2])
        d = p2 - p1
        length = float(np.hypot(*d))
        if length < 0.5 * min_len * min(sfw, sfh):
            continue
        angle = math.atan2(abs(d[1]), abs(d[0]))  # 0 horizontal, pi/2 vertical
        if angle > math.pi / 2 - max_tilt:  # near vertical: left or right of the face
            overlap = min(max(sy1, sy2), fy2) - max(min(sy1, sy2), fy1)
            if max(sx1, sx2) <= fx1 + 0.05 * sfw:
                side, dim, outward = "left", sfh, np.array([-1.0, 0.0])
            elif min(sx1, sx2) >= fx2 - 0.05 * sfw:
                side, dim, outward = "right", sfh, np.array([1.0, 0.0])
            else:
                continue
        elif angle < max_tilt:  # near horizontal: above or below
            overlap = min(max(sx1, sx2), fx2) - max(min(sx1, sx2), fx1)
            if max(sy1, sy2) <= fy1 + 0.05 * sfh:
                side, dim, outward = "top", sfw, np.array([0.0, -1.0])
            elif min(sy1, sy2) >= fy2 - 0.05 * sfh:
                side, dim, outward = "bottom", sfw, np.array([0.0, 1.0])
            else:
                continue
        else:
            continue
        if overlap < 0.5 * dim or (dist_px := {"left": fx1 - max(sx1, sx2), "right": min(sx1, sx2) - fx2, "top": fy1 - max(sy1, sy2), "bottom": min(sy1, sy2) - fy2}[side]) > reach * dim:
            continue
        rel = length / dim
        # A wall's or a window's edge beside a real head stops at the shoulders; a screen's or a
        # print's side runs on past the chin (the picture shows the neck inside the same frame).
        below = (max(sy1, sy2) - fy2) / sfh if side in ("left", "right") else 1.0
        reach_down = 1.0 if below >= float(cfg.PA_SIDE_EDGE_BELOW_CHIN_FACE) else 0.5
        if min(1.0, rel / min_len) * reach_down <= best[side]["evidence"]:
            continue  # cannot beat this side's best: skip the band profile (most of the cost)
        normal = np.array([-d[1], d[0]]) / length
        if normal @ outward < 0:
            normal = -normal
        band = border_band(roi, p1, p2, normal, sfw, cfg)
        narrow = 0 < band["band_width"] <= float(cfg.PA_BORDER_MAX_WIDTH_FACE)
        contrast = min(band["inner_contrast"], band["outer_contrast"])
        tone = band["band_luma"] <= float(cfg.PA_BEZEL_MAX_LUMA) or band["band_luma"] >= float(cfg.PA_PAPER_MIN_LUMA)
        evidence = (min(1.0, rel / min_len) * min(1.0, contrast / float(cfg.PA_BORDER_CONTRAST_LUMA))
                    * (1.0 if narrow else 0.3) * (1.0 if tone else 0.5) * reach_down)
        if evidence > best[side]["evidence"]:
            best[side] = {"evidence": evidence, "length": rel, "distance": float(dist_px / dim),
                          "below_chin": float(below) if side in ("left", "right") else 0.0, **band}
    return best


def moire_peak_ratio(grey: np.ndarray, box: Box) -> float:
    """The strongest isolated peak of the face crop's spectrum in the upper half of frequencies, over
    the median there (screens add periodic patterns, a live face does not)."""
    x1, y1, x2, y2 = box
    crop = grey[y1:y2, x1:x2]
    crop = cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA if crop.shape[0] > 128 else cv2.INTER_LINEAR)
    crop = crop.astype(np.float32) - float(crop.mean())
    win = np.outer(np.hanning(128), np.hanning(128)).astype(np.float32)
    mag = np.abs(np.fft.fftshift(np.fft.fft2(crop * win)))
    yy, xx = np.mgrid[-64:64, -64:64]
    r = np.hypot(xx, yy)
    band = mag[(r >= 32) & (r <= 62)]
    return float(band.max() / max(float(np.median(band)), 1e-6))


def glare_fraction(frame: np.ndarray, box: Box) -> float:
    """Fraction of the face box that is blown-out and colourless (a screen's or a print's specular patch)."""
    x1, y1, x2, y2 = box
    hsv = cv2.cvtColor(frame[y1:y2, x1:x2], cv2.COLOR_BGR2HSV)
    return float(((hsv[..., 2] >= 245) & (hsv[..., 1] <= 30)).mean())


# ---------------------------------------------------------------------------------------------
# Several frames of one face

def planarity(landmark_sets: Sequence[np.ndarray]) -> dict[str, float]:
    """How well one plane explains the landmarks' motion between the first frame and each other one.

    ``motion``: RMS landmark displacement left after the best similarity transform (shift, turn,
    scale), over the inter-ocular distance: how much the face moved in a way a flat picture moved
    in the plane would not. ``residual``: RMS left after the best homography, same unit. A picture
    (tilted, turned, moved) leaves only landmark noise; a live head turning or a face changing
    expression leaves more. The largest motion pair is reported."""
    base = landmark_sets[0]
    iod = float(np.hypot(*(base[33] - base[263]))) if len(base) > 263 else float(np.ptp(base[:, 0]))
    iod = max(iod, 1.0)
    best = {"motion": 0.0, "residual": 0.0, "pairs": 0.0}
    for pts in landmark_sets[1:]:
        sim, _ = cv2.estimateAffinePartial2D(base.astype(np.float32), pts.astype(np.float32), method=cv2.LMEDS)
        hom, _ = cv2.findHomography(base, pts, 0)
        if sim is None or hom is None:
            continue
        moved_sim = base @ sim[:, :2].T + sim[:, 2]
        moved_h = cv2.perspectiveTransform(base.reshape(-1, 1, 2), hom).reshape(-1, 2)
        motion = float(np.sqrt(np.mean(np.sum((pts - moved_sim) ** 2, axis=1)))) / iod
        residual = float(np.sqrt(np.mean(np.sum((pts - moved_h) ** 2, axis=1)))) / iod
        best["pairs"] += 1
        if motion >= best["motion"]:
            best.update(motion=motion, residual=residual)
    return best


class PresentationAttackCheck:
    """Refuses a face shown on a screen or a printed photo. Stateless; safe to share between threads.

    ``assess(frame, box, landmarks)`` judges one frame from the device-frame cue; ``assess_sequence``
    adds the planarity cue over several frames of the same face (an identity confirmation can ask
    the student to turn their head a little while it takes 3-5 frames)."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def assess(self, frame_bgr: Any, box: Any, landmarks: Any = None) -> PresentationResult:
        frame = _validated_frame(frame_bgr)
        h, w = frame.shape[:2]
        box = _validated_box(box, w, h)
        _validated_landmarks(landmarks)  # validated now; the one-frame cues do not need them
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        cfg = self.config
        sides = frame_edges(grey, box, cfg)
        ranked = sorted(SIDES, key=lambda s: -sides[s]["evidence"])
        score = (sides[ranked[0]]["evidence"] + sides[ranked[1]]["evidence"]) / 2
        cues: dict[str, Any] = {
            "frame_score": round(score, 3),
            "sides": {s: {k: round(v, 3) for k, v in sides[s].items()} for s in SIDES},
            "moire_peak_ratio": round(moire_peak_ratio(grey, box), 2),
            "glare_fraction": round(glare_fraction(frame, box), 4),
        }
        spoof = score >= float(cfg.PA_FRAME_SCORE_THRESHOLD)
        if spoof:
            reason = (f"a straight-edged border (bezel or paper margin) encloses the face on the "
                      f"{ranked[0]} and {ranked[1]} (score {score:.2f} >= {float(cfg.PA_FRAME_SCORE_THRESHOLD):.2f})")
        else:
            reason = f"no device or print border around the face (score {score:.2f})"
        return PresentationResult(spoof=spoof, score=float(score), cues=cues, reason=reason)

    def assess_sequence(self, frames_with_obs: Iterable[tuple[Any, Any]]) -> PresentationResult:
        """``frames_with_obs``: (frame_bgr, FaceObservation-like with .box and .landmarks) of one face,
        in time order. A spoof when most frames show a device/print border, or when the face moved
        enough (PA_PLANAR_MIN_MOTION) and one plane still explains its landmarks
        (residual <= PA_PLANAR_MAX_RESIDUAL). Too little motion leaves planarity undecided."""
        items = list(frames_with_obs)
        if not items:
            raise ValueError("assess_sequence needs at least one (frame, observation) pair")
        cfg = self.config
        singles, sets = [], []
        for frame, obs in items:
            box = getattr(obs, "box", None)
            if box is None:
                raise ValueError("every observation must have a face box (obs.box is None)")
            lms = _validated_landmarks(getattr(obs, "landmarks", None))
            singles.append(self.assess(frame, box, lms))
            if lms is not None and len(lms) >= 468:
                sets.append(lms[:468])
        flagged = sum(r.spoof for r in singles)
        frame_score = float(np.median([r.score for r in singles]))
        cues: dict[str, Any] = {"frames": len(items), "frames_flagged": flagged, "frame_score": round(frame_score, 3)}
        planar = None
        if len(sets) >= 2:
            plan = planarity(sets)
            cues.update(planar_motion=round(plan["motion"], 4), planar_residual=round(plan["residual"], 4))
            if plan["motion"] >= float(cfg.PA_PLANAR_MIN_MOTION):
                planar = plan["residual"] <= float(cfg.PA_PLANAR_MAX_RESIDUAL)
        cues["planar"] = planar
        if flagged * 2 > len(items):
            return PresentationResult(True, frame_score, cues,
                                      f"a device or print border around the face in {flagged} of {len(items)} frames")
        if planar:
            score = max(frame_score, 1.0 - cues["planar_residual"] / max(cues["planar_motion"], 1e-6))
            return PresentationResult(True, score, cues,
                                      "the face moved but its landmarks moved as one flat plane (a picture)")
        why = "planarity undecided (too little head motion)" if planar is None else "landmarks move as a 3-D face"
        return PresentationResult(False, frame_score, cues, f"no device or print border; {why}")
