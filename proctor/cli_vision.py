"""Offline vision tools: `flask --app app analyze FILE...` and `flask --app app verify-face ENROLLED PROBE...`.

They run the same pipelines as the live exam (face stage, object detector, identity, decision
engine, warning system, HUD) on files, print one JSON object per line, and touch no database
table. An unreadable file gives a JSON line with "error"; the others are still analysed, and the
command exits with status 1 at the end.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"}
EMBEDDING_BYTES = (128 * 8, 10 + 128 * 8 + 1024 * 4)  # a dlib-only template, a dlib+FaceRes one (face_identity)


class InputError(Exception):
    """A file that cannot be used; the message is shown in the JSON line."""


def register_vision_cli(app: Flask) -> None:
    app.cli.add_command(analyze_command)
    app.cli.add_command(verify_face_command)


# ------------------------------------------------------------------ shared helpers

def _emit(obj: dict) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=_json_default))


def _json_default(value: Any):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return str(value)


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _vision_config(settings: tuple[str, ...]):
    from config_vision import VisionConfigError, load_vision_config

    overrides: dict[str, Any] = dict(current_app.config.get("PROCTOR_VISION_OVERRIDES") or {})
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE, e.g. TIME_NO_FACE_S=2", param_hint="--set")
        overrides[name.strip()] = value.strip()
    try:
        return load_vision_config(**overrides)
    except VisionConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from None


def _read_image(path: Path):
    import cv2
    import numpy as np

    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "not a file")
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError("not a readable image")
    return image


def _load_embedding(path: Path, identity):
    """An enrolment: a .npy of 128 (dlib) or 1152 (dlib+FaceRes) floats, a stored template
    (embedding_to_bytes: 1024 or 5130 bytes), or a photo to enrol."""
    import numpy as np

    from face_identity import embedding_from_bytes

    if not path.is_file():
        raise click.BadParameter(f"{path}: no such file", param_hint="ENROLLED / --student-embedding")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(str(path), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"{path}: not a readable .npy file ({exc})") from None
        if arr.shape not in ((128,), (1152,)) or not np.issubdtype(arr.dtype, np.floating) \
                or not np.all(np.isfinite(arr)):
            raise click.BadParameter(f"{path}: expected 128 or 1152 finite floats, got shape {arr.shape} {arr.dtype}")
        return arr.astype(np.float64)
    if path.stat().st_size in EMBEDDING_BYTES and path.suffix.lower() not in IMAGE_SUFFIXES:
        try:
            return embedding_from_bytes(path.read_bytes())
        except ValueError as exc:
            raise click.BadParameter(f"{path}: {exc}") from None
    try:
        image = _read_image(path)
    except InputError as exc:
        raise click.BadParameter(f"{path}: {exc} (expected a photo, a .npy or a stored template)") from None
    enrolment = identity.enrol(image)
    if not enrolment.ok:
        raise click.ClickException(f"{path}: enrolment failed: {enrolment.error}")
    return enrolment.embedding


# ------------------------------------------------------------------ analyze

@dataclass
class _Tools:
    config: Any
    image_faces: Any                 # FaceAnalyzer in static-image mode
    detector: Any                    # ObjectDetector | None
    identity: Any = None             # FaceIdentity | None
    enrolled: Any = None             # np.ndarray | None
    overlay_dir: Path | None = None
    overlay_names: set = field(default_factory=set)

    def close(self) -> None:
        for tool in (self.image_faces, self.detector):
            close = getattr(tool, "close", None)
            if close is not None:
                close()


def _frame_record(tools: _Tools, frame, face) -> tuple[dict, Any, dict]:
    """The JSON fields for one analysed frame, plus the detections and identity result."""
    detections = tools.detector.detect(frame) if tools.detector is not None else None
    record: dict[str, Any] = {
        "face_detected": bool(face.face_detected),
        "face_count": int(face.face_count),
        "yaw_deg": _r(face.yaw_deg, 1),
        "pitch_deg": _r(face.pitch_deg, 1),
        "ear": _r(face.ear),
        "iris_offset": _r(face.iris_offset),
        "persons": detections.person_count if detections is not None else None,
        "objects": [] if detections is None else [
            {"label": d.label, "score": round(float(d.score), 3), "box": [round(float(v), 1) for v in d.box]}
            for d in detections.items if d.class_id != 0
        ],
        "phone_at_ear": bool(detections.phone_at_ear) if detections is not None else None,
    }
    identity: dict[str, Any] = {}
    if tools.enrolled is not None:
        ver = tools.identity.verify(tools.enrolled, frame)
        identity = {"face_found": bool(ver.face_found), "distance": _r(ver.distance, 4), "match": ver.match}
        record["identity_distance"], record["identity_match"] = identity["distance"], identity["match"]
    return record, detections, identity


def _write_overlay(tools: _Tools, frame, face, detections, status: dict, alerts: list[str], stem: str) -> str:
    import cv2

    from vision_ui import draw_hud

    name = f"{stem}_hud.jpg"
    n = 1
    while name in tools.overlay_names:
        n += 1
        name = f"{stem}_{n}_hud.jpg"
    tools.overlay_names.add(name)
    path = tools.overlay_dir / name
    image = draw_hud(frame, face, detections, status, alerts)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 85]):
        raise InputError(f"could not write overlay {path}")
    return str(path)


def _analyze_image(tools: _Tools, path: Path, image) -> Iterator[dict]:
    face = tools.image_faces.analyze(image)
    record, detections, _ = _frame_record(tools, image, face)
    out = {"file": str(path), "kind": "image", **record}
    if tools.overlay_dir is not None:
        out["overlay"] = _write_overlay(tools, image, face, detections, {"label": path.name}, [], path.stem)
    yield out


def _open_video(path: Path):
    import cv2

    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "not a file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise InputError("not a readable image or video")
    return cap


def _analyze_video(tools: _Tools, path: Path, cap, fps: float) -> Iterator[dict]:
    import cv2

    from decision_engine import DecisionEngine, FrameObservation
    from face_pipeline import FaceAnalyzer, camera_activity
    from warning_system import WarningSystem

    config = tools.config
    native_fps = cap.get(cv2.CAP_PROP_FPS)
    if not native_fps or not math.isfinite(native_fps) or native_fps <= 0 or native_fps > 1000:
        native_fps = 30.0  # containers without a rate: assume a webcam's
    engine, warnings = DecisionEngine(config), WarningSystem(config)
    faces = FaceAnalyzer(config, static_image_mode=False)  # tracking mode: a video is a stream
    student = str(path)
    sampled = index = 0
    next_t = 0.0
    previous_gray = None
    last_t = None
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            t = index / native_fps
            index += 1
            if t + 1e-9 < next_t:
                continue
            next_t += 1.0 / fps
            while next_t <= t:  # a gap in the stream: sample from here on
                next_t += 1.0 / fps
            sampled += 1
            frame_mean, frame_diff, previous_gray = camera_activity(frame, previous_gray)
            face = faces.analyze(frame)
            record, detections, identity = _frame_record(tools, frame, face)
            obs = FrameObservation(
                t=t, face=face, detections=detections, detections_t=t if detections is not None else None,
                identity_match=identity.get("match"), identity_t=t if identity else None,
                frame_mean=frame_mean, frame_diff=frame_diff,
            )
            events = engine.evaluate(student, obs, t)
            for event in events:
                decision = warnings.on_event(student, event, auto_terminate=False)
                yield {"file": str(path), **event.as_dict(), "warning_issued": decision.issued,
                       "warning_count": decision.count,
                       # rules the same moment fired are parts of one incident: one warning between them
                       **({"incident": decision.incident, "incident_opened": decision.opened_incident}
                          if decision.issued else {})}
            last_t = t
            out = {"file": str(path), "kind": "video", "t": round(t, 3), "frame": index - 1, **record}
            if tools.overlay_dir is not None:
                status = {"label": f"{path.name} t={t:.2f}s", "warnings": warnings.count(student),
                          "warning_limit": config.INSTANT_PENALTY_THRESHOLD,
                          "suspicion": warnings.suspicion(student, t).score}
                alerts = sorted(engine.active_conditions(student))
                out["overlay"] = _write_overlay(tools, frame, face, detections, status, alerts, f"{path.stem}_t{t:08.3f}")
            yield out
    finally:
        faces.close()
        cap.release()
    if sampled == 0:
        raise InputError("video has no readable frames")
    suspicion = warnings.suspicion(student, last_t)
    yield {"file": str(path), "kind": "summary", "frames_read": index, "frames_analysed": sampled,
           "duration_s": round(index / native_fps, 3), "video_fps": round(native_fps, 3),
           "active_at_end": sorted(engine.active_conditions(student)), "warnings": warnings.count(student),
           "suspicion": suspicion.score, "suspicion_explanation": suspicion.explanation}


def _analyze_file(tools: _Tools, path: Path, fps: float) -> Iterator[dict]:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        yield from _analyze_image(tools, path, _read_image(path))
        return
    try:
        image = _read_image(path)
    except InputError:
        image = None
    if image is not None:
        yield from _analyze_image(tools, path, image)
    else:
        yield from _analyze_video(tools, path, _open_video(path), fps)


@click.command("analyze")
@with_appcontext
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--overlay", "overlay_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write a HUD image per analysed image / sampled video frame into this folder.")
@click.option("--fps", type=click.FloatRange(0.1, 60.0), default=2.0, show_default=True,
              help="Video frames analysed per second of video.")
@click.option("--student-embedding", "enrolled_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The enrolled student (a photo, a .npy or a stored template): adds identity "
                   "distance/match per frame and IDENTITY_MISMATCH events for videos.")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder with the detector model files (default: the vision setting MODELS_DIR, i.e. PROCTOR_MODELS_DIR).")
@click.option("--no-detector", is_flag=True, help="Skip object detection (persons and objects are null).")
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Override a config_vision setting, e.g. --set TIME_NO_FACE_S=2 (repeatable).")
def analyze_command(files, overlay_dir, fps, enrolled_path, models_dir, no_detector, settings):
    """Analyse photos and videos offline; one JSON line per image, per sampled video frame and per rule event.

    Video lines carry `t` (seconds into the video); rule events look like
    {"event": "NO_FACE", "state": "started", "t": 7.2, ...}; each video ends with a "summary" line.
    Unreadable files give a line with "error" and make the exit status 1. No database is used.
    """
    from face_pipeline import FaceAnalyzer
    from person_pipeline import DetectorError, create_detector

    config = _vision_config(settings)
    if overlay_dir is not None:
        try:
            overlay_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise click.BadParameter(f"cannot create {overlay_dir}: {exc.strerror or exc}", param_hint="--overlay") from None
    detector = None
    if not no_detector:
        try:
            detector = create_detector(config, Path(models_dir) if models_dir else None)
        except DetectorError as exc:
            raise click.ClickException(f"object detector: {exc}") from None
        if detector is None:
            click.echo("note: no detector model found; persons and objects are null (see --models-dir)", err=True)
    tools = _Tools(config, FaceAnalyzer(config, static_image_mode=True), detector, overlay_dir=overlay_dir)
    failed = 0
    try:
        if enrolled_path is not None:
            from face_identity import FaceIdentity

            tools.identity = FaceIdentity(config)
            tools.enrolled = _load_embedding(enrolled_path, tools.identity)
        for path in files:
            try:
                for line in _analyze_file(tools, path, fps):
                    _emit(line)
            except InputError as exc:
                failed += 1
                _emit({"file": str(path), "error": str(exc)})
    finally:
        tools.close()
    sys.stdout.flush()
    if failed:
        click.echo(f"{failed} of {len(files)} file(s) could not be analysed", err=True)
        raise SystemExit(1)


# ------------------------------------------------------------------ verify-face

def _presentation_attack(attack, obs, image) -> dict | None:
    """presentation_attack.py's verdict on the photo's main face (None when the check is off or no face)."""
    if attack is None or obs.box is None:
        return None
    res = attack.assess(image, obs.box, obs.landmarks or None)
    return {"spoof": bool(res.spoof), "score": _r(res.score, 3), "reason": res.reason}


@click.command("verify-face")
@with_appcontext
@click.argument("enrolled", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("probes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--set", "settings", multiple=True, metavar="NAME=VALUE",
              help="Override a config_vision setting, e.g. --set IDENTITY_DISTANCE_THRESHOLD=0.45.")
def verify_face_command(enrolled, probes, settings):
    """Compare each PROBE photo with the ENROLLED photo (or .npy / stored template).

    One JSON line per probe: probe, face_found, distance (the decision distance: dlib and FaceRes
    fused, see docs/identity-calibration.md), match, threshold, dlib_distance, faceres_distance and
    rule (which models decided; dlib alone for a 1024-byte template or without models/faceres.onnx),
    and presentation_attack (spoof, score, reason: a face on a screen or a printed photo never matches).
    Unreadable probes give a line with "error" and make the exit status 1. No database is used.
    """
    from face_identity import FaceIdentity

    from face_pipeline import FaceAnalyzer
    from presentation_attack import PresentationAttackCheck

    config = _vision_config(settings)
    identity = FaceIdentity(config)
    embedding = _load_embedding(enrolled, identity)
    faces = FaceAnalyzer(config, static_image_mode=True)
    attack = PresentationAttackCheck(config) if config.PA_CHECK_ENABLED else None
    failed = 0
    for probe in probes:
        try:
            image = _read_image(probe)
        except InputError as exc:
            failed += 1
            _emit({"probe": str(probe), "error": str(exc)})
            continue
        obs = faces.analyze(image)  # one face search serves the identity check and the spoof check
        if obs.box is None:
            ver = identity.verify(embedding, image)  # no face: verify says so in its own words
        else:
            ver = identity.verify(embedding, image, box=obs.box)
        spoof = _presentation_attack(attack, obs, image) if ver.face_found else None
        _emit({"probe": str(probe), "face_found": bool(ver.face_found), "distance": _r(ver.distance, 4),
               # As at the confirmation and in the live check: a face on a screen or a print never matches.
               "match": False if spoof and spoof["spoof"] else ver.match,
               "threshold": config.IDENTITY_DISTANCE_THRESHOLD,
               "dlib_distance": _r(ver.dlib_distance, 4), "faceres_distance": _r(ver.faceres_distance, 4),
               "rule": ver.rule or identity.rule, "presentation_attack": spoof})
    faces.close()
    close = getattr(identity, "close", None)
    if close is not None:
        close()
    if failed:
        click.echo(f"{failed} of {len(probes)} probe(s) could not be read", err=True)
        raise SystemExit(1)
