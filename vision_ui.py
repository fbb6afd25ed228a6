"""Heads-up display: draws observations onto a copy of a frame. It decides nothing.

``draw_hud(frame, face, detections, status, alerts)`` returns a new BGR image; the input is
never modified. ``draw_evidence`` draws a violation's evidence picture: the same observations plus a
caption that names the rule, says why it fired (``rule_reason``, from the rule event's details) and
when, wrapped to the frame's width, and no counters (they would be stale by the time it is looked
at). Drawing is split into annotators with one method, ``annotate(scene, hud) -> scene``, each
drawing one kind of thing onto the scene it is given (the copy ``draw_hud`` made): object boxes, the
hands (thin boxes), the face (box, landmarks, pose axes), the status panel, the alerts (with "PHONE
AT EAR" when the detections say so; wrapped, not cut) and an evidence caption. Works with missing
observations (None) and with frames of any size, down to one pixel (text is skipped when there is
no room for it).

``status`` keys used (all optional): ``raw`` (bool: the frame is the unprocessed camera image),
``warnings`` (int), ``warning_limit`` (int), ``suspicion`` (0-100), ``label`` (text, e.g.
the student's name), ``fps`` (float), ``t`` (frame time, s).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import cv2
import numpy as np

from config_vision import rule as registered_rule
from face_pipeline import FaceObservation
from person_pipeline import Detections

# Colours (BGR).
GREEN = (80, 200, 60)
RED = (40, 40, 230)
AMBER = (0, 170, 255)
WHITE = (245, 245, 245)
GREY = (170, 170, 170)
CYAN = (220, 200, 40)
PERSON_CLASS = 0

FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_TEXT_HEIGHT_PX = 60  # below this frame height no text is drawn (it would be illegible)


@dataclass(frozen=True)
class Hud:
    """What the annotators draw: the observations plus display status and alerts."""

    face: FaceObservation | None
    detections: Detections | None
    status: Mapping[str, Any] = field(default_factory=dict)
    alerts: Sequence[str] = ()


class Annotator(Protocol):
    def annotate(self, scene: np.ndarray, hud: Hud) -> np.ndarray:
        """Draw onto ``scene`` (a copy owned by the caller) and return it."""


def _scale(scene: np.ndarray) -> float:
    return max(0.3, min(1.0, scene.shape[0] / 1000.0))


def _thickness(scene: np.ndarray) -> int:
    return max(1, int(round(scene.shape[0] / 400.0)))


def _text_ok(scene: np.ndarray) -> bool:
    return scene.shape[0] >= MIN_TEXT_HEIGHT_PX and scene.shape[1] >= MIN_TEXT_HEIGHT_PX


def _put_label(scene: np.ndarray, text: str, x: int, y: int, colour) -> None:
    """Text on a filled background, kept inside the frame."""
    scale, thick = _scale(scene), 1
    (w, h), base = cv2.getTextSize(text, FONT, scale, thick)
    x = int(min(max(0, x), max(0, scene.shape[1] - w - 2)))
    y = int(min(max(h + 2, y), scene.shape[0] - 2))
    cv2.rectangle(scene, (x, y - h - 2), (x + w + 2, y + base), colour, -1)
    cv2.putText(scene, text, (x + 1, y - 1), FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)


def wrap_text(text: str, width_px: int, scale: float, max_lines: int | None = None) -> list[str]:
    """``text`` broken into lines no wider than ``width_px`` at font ``scale`` (at word boundaries; a
    word wider than a line is cut). With ``max_lines``, the lines beyond it are dropped and the last
    kept one ends in "..." so that the reader sees the text goes on."""
    def fits(line: str) -> bool:
        return cv2.getTextSize(line, FONT, scale, 1)[0][0] <= width_px

    lines: list[str] = []
    for word in str(text).split():
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and fits(joined):
            lines[-1] = joined
            continue
        while not fits(word) and len(word) > 1:  # a word wider than the frame: cut it where it stops fitting
            n = max(1, max(i for i in range(1, len(word) + 1) if fits(word[:i]) or i == 1))
            lines.append(word[:n])
            word = word[n:]
        lines.append(word)
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max(0, max_lines)]
        if lines:
            last = lines[-1]
            while last and not fits(last + "..."):
                last = last[:-1]
            lines[-1] = last.rstrip() + "..."
    return lines


def _detector_scale(scene, dets) -> tuple[float, float]:
    """Boxes are in the detector's frame pixels; the HUD frame may differ in size."""
    h, w = scene.shape[:2]
    fw, fh = dets.frame_size if dets.frame_size and min(dets.frame_size) > 0 else (w, h)
    return w / fw, h / fh


class DetectionBoxAnnotator:
    """Detector boxes with label and score; persons green, everything else (banned) red."""

    def annotate(self, scene, hud):
        dets = hud.detections
        if dets is None or not dets.items:
            return scene
        sx, sy = _detector_scale(scene, dets)
        for d in dets.items:
            x1, y1, x2, y2 = (int(round(v)) for v in (d.box[0] * sx, d.box[1] * sy, d.box[2] * sx, d.box[3] * sy))
            colour = GREEN if d.class_id == PERSON_CLASS else RED
            cv2.rectangle(scene, (x1, y1), (x2, y2), colour, _thickness(scene))
            if _text_ok(scene):
                _put_label(scene, f"{d.label} {d.score:.2f}", x1, y1 - 2, colour)
        return scene


class HandAnnotator:
    """The hands the detector's hand-guided look found (``Detections.hands``): thin amber boxes."""

    def annotate(self, scene, hud):
        dets = hud.detections
        if dets is None or not dets.hands:
            return scene
        sx, sy = _detector_scale(scene, dets)
        for hand in dets.hands:
            b = hand.box
            cv2.rectangle(scene, (int(round(b[0] * sx)), int(round(b[1] * sy))),
                          (int(round(b[2] * sx)), int(round(b[3] * sy))), AMBER, 1)
        return scene


PHONE_AT_EAR_ALERT = "PHONE AT EAR"


class FaceAnnotator:
    """Every counted face's box, the main face's landmarks and its head-pose axes."""

    def annotate(self, scene, hud):
        face = hud.face
        if face is None or not face.face_detected:
            return scene
        thick = _thickness(scene)
        boxes = list(face.face_boxes) or ([face.box] if face.box else [])
        for i, b in enumerate(boxes):
            colour = CYAN if i == 0 or b == face.box else AMBER
            cv2.rectangle(scene, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), colour, thick)
        pts = face.landmarks
        if pts:
            step = max(1, len(pts) // 120)  # a sample is enough to show the mesh fits
            for x, y in pts[::step]:
                if 0 <= x < scene.shape[1] and 0 <= y < scene.shape[0]:
                    cv2.circle(scene, (int(x), int(y)), max(1, thick), CYAN, -1)
        if face.box is not None and face.yaw_deg is not None and face.pitch_deg is not None:
            x1, y1, x2, y2 = face.box
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            length = max(4.0, 0.6 * (x2 - x1))
            yaw, pitch, roll = (math.radians(v or 0.0) for v in (face.yaw_deg, face.pitch_deg, face.roll_deg))
            # where the nose points: yaw + turns towards image right, pitch + looks up
            nose = (cx + length * math.sin(yaw) * math.cos(pitch), cy - length * math.sin(pitch))
            side = (cx + 0.5 * length * math.cos(roll), cy + 0.5 * length * math.sin(roll))
            up = (cx + 0.5 * length * math.sin(roll), cy - 0.5 * length * math.cos(roll))
            centre = (int(cx), int(cy))
            cv2.arrowedLine(scene, centre, tuple(int(v) for v in nose), RED, thick + 1, cv2.LINE_AA, tipLength=0.2)
            cv2.line(scene, centre, tuple(int(v) for v in side), GREEN, thick, cv2.LINE_AA)
            cv2.line(scene, centre, tuple(int(v) for v in up), (255, 120, 0), thick, cv2.LINE_AA)
        return scene


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


class StatusPanelAnnotator:
    """Top-left panel: face, pose, eyes, gaze, objects, warnings, suspicion, and a RAW marker."""

    def lines(self, hud: Hud) -> list[tuple[str, tuple]]:
        face, dets, status = hud.face, hud.detections, hud.status
        out: list[tuple[str, tuple]] = []
        if status.get("label"):
            out.append((str(status["label"])[:40], WHITE))
        if face is None:
            out.append(("FACE: not analysed", GREY))
        else:
            out.append((f"FACE: {'yes' if face.face_detected else 'NO'} ({face.face_count})",
                        GREEN if face.face_count == 1 else RED))
            out.append((f"YAW {_fmt(face.yaw_deg, '+.0f')}  PITCH {_fmt(face.pitch_deg, '+.0f')}", WHITE))
            out.append((f"EAR {_fmt(face.ear, '.2f')}  GAZE {_fmt(face.iris_offset, '+.2f')}", WHITE))
        if dets is None:
            out.append(("OBJECTS: not analysed", GREY))
        else:
            others = [d for d in dets.items if d.class_id != PERSON_CLASS]
            named = [f"{d.label} {d.score:.2f}" for d in others[:3]] + (["phone at ear"] if dets.phone_at_ear else [])
            text = ", ".join(named) or "none"
            out.append((f"PERSONS {dets.person_count}  OBJECTS: {text}", RED if named else WHITE))
        if "warnings" in status:
            limit = status.get("warning_limit")
            out.append((f"WARNINGS {status['warnings']}" + (f"/{limit}" if limit else ""),
                        RED if status["warnings"] else WHITE))
        if status.get("suspicion") is not None:
            try:
                out.append((f"SUSPICION {float(status['suspicion']):.0f}/100", AMBER))
            except (TypeError, ValueError):
                pass
        if status.get("fps") is not None:
            try:
                out.append((f"{float(status['fps']):.1f} fps", GREY))
            except (TypeError, ValueError):
                pass
        return out

    def annotate(self, scene, hud):
        if _text_ok(scene):
            self._panel(scene, hud)
        if status_raw(hud.status):
            self._raw_marker(scene)  # after the panel, so its border is not darkened
        return scene

    def _panel(self, scene, hud):
        lines = self.lines(hud)
        scale = _scale(scene)
        line_h = int(cv2.getTextSize("Ag", FONT, scale, 1)[0][1] * 1.8) + 2
        width = max(cv2.getTextSize(text, FONT, scale, 1)[0][0] for text, _ in lines) + 10
        height = line_h * len(lines) + 6
        width, height = min(width, scene.shape[1]), min(height, scene.shape[0])
        roi = scene[0:height, 0:width]
        roi[:] = (roi.astype(np.float32) * 0.35).astype(np.uint8)  # darken behind the text
        for i, (text, colour) in enumerate(lines):
            y = line_h * (i + 1)
            if y > scene.shape[0]:
                break
            cv2.putText(scene, text, (5, y), FONT, scale, colour, 1, cv2.LINE_AA)

    @staticmethod
    def _raw_marker(scene):
        h, w = scene.shape[:2]
        thick = _thickness(scene)
        cv2.rectangle(scene, (0, 0), (w - 1, h - 1), AMBER, thick)
        if _text_ok(scene):
            scale = _scale(scene) * 1.2
            (tw, th), _ = cv2.getTextSize("RAW", FONT, scale, 2)
            cv2.putText(scene, "RAW", (max(0, w - tw - 8), th + 8), FONT, scale, AMBER, 2, cv2.LINE_AA)


def status_raw(status: Mapping[str, Any]) -> bool:
    return bool(status.get("raw"))


class AlertAnnotator:
    """Active alerts in red along the bottom, newest last; a red frame border when any."""

    def annotate(self, scene, hud):
        alerts = [str(a) for a in hud.alerts if str(a).strip()]
        if hud.detections is not None and hud.detections.phone_at_ear and PHONE_AT_EAR_ALERT not in alerts:
            alerts.append(PHONE_AT_EAR_ALERT)  # what the detector saw, beside the rules' alerts
        if not alerts:
            return scene
        h, w = scene.shape[:2]
        cv2.rectangle(scene, (0, 0), (w - 1, h - 1), RED, _thickness(scene) * 2)
        if not _text_ok(scene):
            return scene
        scale = _scale(scene)
        line_h = int(cv2.getTextSize("Ag", FONT, scale, 1)[0][1] * 1.9) + 2
        room = max(1, int(h * 0.4) // line_h)  # the bottom 40 %: the picture stays visible above
        lines: list[str] = []
        for text in reversed(alerts[-4:]):  # newest at the bottom; older ones give way when room runs out
            wrapped = wrap_text(text, w - 14, scale, room - len(lines))
            lines[:0] = wrapped
            if len(lines) >= room:
                break
        for i, text in enumerate(reversed(lines)):
            _put_label(scene, text, 5, h - 6 - i * line_h, RED)
        return scene


DEFAULT_ANNOTATORS: tuple[Annotator, ...] = (DetectionBoxAnnotator(), HandAnnotator(), FaceAnnotator(),
                                             StatusPanelAnnotator(), AlertAnnotator())


# ------------------------------------------------------------------------------ evidence pictures

def clock_text(t: float | None) -> str:
    """A frame time (epoch seconds) as a UTC date and time to a tenth of a second."""
    if t is None or not math.isfinite(t):
        return "time unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 10)} UTC"


def _n(value, spec: str) -> str:
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return "?"


def rule_reason(rule: str, details: Mapping[str, Any]) -> str:
    """Why a rule fired, in words, from its event's details (decision_engine's conditions write them)."""
    d = dict(details or {})
    held = f" for {_n(d['duration_s'], '.1f')} s" if d.get("duration_s") is not None else ""
    cause = d.get("cause")
    if rule == "PROHIBITED_OBJECT":
        objects = [o for o in d.get("objects") or () if isinstance(o, Mapping)]
        named = [f"{o.get('label', '?')} ({_n(o['score'], '.2f')})" if o.get("score") is not None
                 else str(o.get("label", "?")) for o in objects]
        return f"Prohibited object seen{held}: {', '.join(named) or 'unnamed'}."
    if rule == "MULTIPLE_FACES":
        parts = [f"{d['face_count']} faces" if d.get("face_count") is not None else "",
                 f"{d['persons']} persons" if d.get("persons") is not None else ""]
        return f"More than one person{held}: {', '.join(p for p in parts if p) or 'count unknown'}."
    if rule == "NO_FACE":
        return f"No face in view{held}."
    if rule == "DISTRACTION":
        if cause == "gazing":
            return f"Gaze off the screen (iris offset {_n(d.get('iris_offset'), '+.2f')}){held}."
        return (f"Head turned (yaw {_n(d.get('yaw_deg'), '+.0f')} deg, pitch {_n(d.get('pitch_deg'), '+.0f')} deg)"
                f"{held}.")
    if rule == "EYES_CLOSED":
        return f"Eyes closed (EAR {_n(d.get('ear_left'), '.2f')} / {_n(d.get('ear_right'), '.2f')}){held}."
    if rule == "IDENTITY_MISMATCH":
        if cause == "spoof":
            return f"A picture of a face, not a live face: {d.get('explanation') or 'screen or print'}{held}."
        return f"The face does not match the enrolled student{held}."
    if rule == "CAMERA_OFF":
        what = {"black": "black frames", "frozen": "frozen frames",
                "no_frames": "no frames arrive"}.get(cause, "camera off")
        return f"Camera off: {what}{held}."
    try:
        return f"{registered_rule(rule).title}{held}."
    except (KeyError, ValueError):
        return f"{rule}{held}."


class CaptionAnnotator:
    """A violation's caption along the bottom: the rule and the frame's time on the first line, the
    reason wrapped below (``status["caption"]``: (title, reason)); a red frame border."""

    def annotate(self, scene, hud):
        caption = hud.status.get("caption")
        if not caption:
            return scene
        h, w = scene.shape[:2]
        cv2.rectangle(scene, (0, 0), (w - 1, h - 1), RED, _thickness(scene) * 2)
        if not _text_ok(scene):
            return scene
        title, reason = (str(c) for c in caption)
        scale = _scale(scene)
        line_h = int(cv2.getTextSize("Ag", FONT, scale, 1)[0][1] * 1.8) + 3
        room = max(2, int(h * 0.45) // line_h)  # at most the bottom 45 %: the reason must not hide the picture
        lines = wrap_text(title, w - 12, scale, 2) + wrap_text(reason, w - 12, scale, room - 2)
        top = h - line_h * len(lines) - 6
        roi = scene[max(0, top):h, 0:w]
        roi[:] = (roi.astype(np.float32) * 0.3).astype(np.uint8)  # darken behind the text
        for i, text in enumerate(lines):
            cv2.putText(scene, text, (6, top + line_h * (i + 1) - 3), FONT, scale, RED if i == 0 else WHITE, 1,
                        cv2.LINE_AA)
        return scene


# The boxes last: a phone low in the picture must stay visible over the caption (text may be crossed, the evidence not).
EVIDENCE_ANNOTATORS: tuple[Annotator, ...] = (FaceAnnotator(), StatusPanelAnnotator(), CaptionAnnotator(),
                                              HandAnnotator(), DetectionBoxAnnotator())


def evidence_caption(rule: str, details: Mapping[str, Any], frame_t: float | None,
                     fired_t: float | None = None) -> tuple[str, str]:
    """(title, reason) of an evidence picture: the rule and the frame's time; why it fired and, when the
    picture is of an earlier frame than the one it fired on (the detector's), how much earlier."""
    title = f"{rule} {clock_text(frame_t)}"
    reason = rule_reason(rule, details)
    if fired_t is not None and frame_t is not None and abs(fired_t - frame_t) >= 0.05:
        reason += f" Fired {_n(fired_t - frame_t, '.1f')} s after this frame."
    return title, reason


def draw_evidence(
    frame_bgr: np.ndarray,
    face: FaceObservation | None,
    detections: Detections | None,
    rule: str,
    details: Mapping[str, Any] | None = None,
    frame_t: float | None = None,
    fired_t: float | None = None,
    label: str | None = None,
) -> np.ndarray:
    """A violation's evidence picture: the frame the reason was seen on with that frame's own
    observations (boxes, face), its facts in the top-left panel, and the caption (evidence_caption).
    No warning counts or suspicion: they change after the picture is drawn."""
    status = {"caption": evidence_caption(rule, details or {}, frame_t, fired_t)}
    if label:
        status["label"] = label
    return draw_hud(frame_bgr, face, detections, status, (), EVIDENCE_ANNOTATORS)


def _as_bgr_copy(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.size == 0:
        raise ValueError("draw_hud needs a non-empty image array")
    if frame.dtype != np.uint8:
        raise ValueError(f"draw_hud needs a uint8 image, got {frame.dtype}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return np.ascontiguousarray(frame).copy()
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"draw_hud needs an HxW, HxWx3 or HxWx4 image, got shape {frame.shape}")


def draw_hud(
    frame_bgr: np.ndarray,
    face: FaceObservation | None,
    detections: Detections | None,
    status: Mapping[str, Any] | None = None,
    alerts: Sequence[str] | None = None,
    annotators: Sequence[Annotator] = DEFAULT_ANNOTATORS,
) -> np.ndarray:
    """A new BGR image: ``frame_bgr`` with the HUD drawn on it (the input is left untouched)."""
    scene = _as_bgr_copy(frame_bgr)
    hud = Hud(face, detections, dict(status or {}), tuple(alerts or ()))
    for annotator in annotators:
        scene = annotator.annotate(scene, hud)
    return scene
