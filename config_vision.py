"""Every tunable number of the vision pipeline, in one place.

Each setting has a name with its unit, a default, bounds and a one-line description.
Values come from (lowest to highest precedence): the defaults below, an optional JSON
settings file (``PROCTOR_VISION_SETTINGS=/path/file.json``, keys are the setting names),
and environment variables ``PROCTOR_<NAME>`` (e.g. ``PROCTOR_YAW_THRESHOLD_DEG=30``).
A bad value fails at start with a message naming the setting, the value and the bounds.

This module imports nothing from the web layer, the database or any model library.
``python config_vision.py`` prints the table of settings (the documentation).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from typing import Any, Mapping

ENV_PREFIX = "PROCTOR_"
SETTINGS_FILE_ENV = "PROCTOR_VISION_SETTINGS"

log = logging.getLogger(__name__)

SEVERITIES = ("low", "medium", "high", "critical")
SOURCES = ("frame", "browser")


@dataclass(frozen=True)
class Rule:
    """Everything the project says about one proctoring rule, said once.

    ``sources``: "frame" (the decision engine derives it from camera frames) and/or "browser" (the
    exam page reports it). ``browser_settings`` maps the name the exam page uses for a threshold to
    the vision setting that holds it, so the page and the server read the same number (and an
    exam's threshold overrides reach the page too).
    """

    name: str
    title: str                 # short label for admins
    severity: str              # one of SEVERITIES
    weight: float              # 0..1, how strongly the signal suggests cheating (suspicion score)
    message: str               # what the student is told when a warning is issued
    sources: tuple[str, ...]
    browser_settings: tuple[tuple[str, str], ...] = ()  # (name on the page, vision setting)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"rule {self.name}: severity {self.severity!r} is not one of {SEVERITIES}")
        if not 0 < self.weight <= 1:
            raise ValueError(f"rule {self.name}: weight {self.weight!r} must be in (0, 1]")
        if not self.sources or set(self.sources) - set(SOURCES):
            raise ValueError(f"rule {self.name}: sources {self.sources!r} must be some of {SOURCES}")
        if not self.message or not self.title:
            raise ValueError(f"rule {self.name}: a title and a message are required")


# The one registry of rules; the decision engine, the warning system and the pages read it.
RULE_REGISTRY: tuple[Rule, ...] = (
    Rule("NO_FACE", "No face", "high", 0.6,
         "Your face is not visible. Stay in front of the camera.", ("frame",)),
    Rule("MULTIPLE_FACES", "Several people", "high", 1.0,
         "More than one person is visible. You must take the exam alone.", ("frame",)),
    Rule("DISTRACTION", "Looking away", "medium", 0.4,
         "Please keep looking at the screen.", ("frame",)),
    Rule("EYES_CLOSED", "Eyes closed", "low", 0.2,
         "Your eyes appear closed. Please stay attentive.", ("frame",)),
    Rule("PROHIBITED_OBJECT", "Prohibited object", "high", 1.0,
         "A prohibited object (phone, book or laptop) is visible. Put it away.", ("frame",)),
    Rule("IDENTITY_MISMATCH", "Identity mismatch", "critical", 1.0,
         "The person in front of the camera does not match the enrolled student.", ("frame",)),
    Rule("CAMERA_OFF", "Camera off", "high", 0.8,
         "Your camera is off, covered or frozen. Turn it back on.", ("frame", "browser"),
         (("black_frame_mean", "BLACK_FRAME_MEAN"), ("hold_s", "TIME_CAMERA_OFF_S"))),
    Rule("TAB_SWITCH", "Tab switch", "medium", 0.6,
         "Leaving the exam tab is not allowed.", ("browser",)),
    Rule("FULLSCREEN_EXIT", "Left full screen", "medium", 0.4,
         "Please return to full screen.", ("browser",)),
    Rule("VOICE_DETECTED", "Voice", "medium", 0.3,
         "Talking was detected. Please stay quiet during the exam.", ("browser",),
         (("margin_db", "VOICE_MARGIN_DB"), ("min_s", "VOICE_MIN_S"), ("window_s", "VOICE_WINDOW_S"))),
    # Beyond the webcam (issue 16): the screen, displays, the camera device and the page's own events.
    Rule("SCREEN_SHARE_STOPPED", "Screen share stopped", "high", 0.8,
         "Your screen is no longer shared. Share your entire screen again to continue.", ("browser",)),
    Rule("MULTIPLE_DISPLAYS", "Second display", "medium", 0.6,
         "A second display is connected. Disconnect it and use one screen only.", ("browser",)),
    Rule("CAMERA_CHANGED", "Camera changed", "high", 0.7,
         "Your camera was switched to another device. Use the camera you started with.", ("browser",)),
    Rule("COPY", "Copy", "low", 0.3,
         "Copying from the exam is not allowed.", ("browser",)),
    Rule("CUT", "Cut", "low", 0.3,
         "Cutting text from the exam is not allowed.", ("browser",)),
    Rule("PASTE", "Paste", "medium", 0.5,
         "Pasting into the exam is not allowed.", ("browser",)),
    Rule("RIGHT_CLICK", "Right click", "low", 0.2,
         "The context menu is not available during the exam.", ("browser",)),
    Rule("PRINT_SCREEN", "Print Screen", "medium", 0.5,
         "Taking screenshots of the exam is not allowed.", ("browser",)),
    Rule("DEVTOOLS", "Developer tools", "medium", 0.6,
         "Opening the browser's developer tools is not allowed.", ("browser",)),
)
_RULES_BY_NAME = {r.name: r for r in RULE_REGISTRY}

# Rule names, derived from the registry (the engine, the warning system and the web layer use them).
RULES: tuple[str, ...] = tuple(r.name for r in RULE_REGISTRY)
# Rules derived from camera frames by the decision engine.
FRAME_RULE_NAMES: tuple[str, ...] = tuple(r.name for r in RULE_REGISTRY if "frame" in r.sources)
# Rules reported by the browser (CAMERA_OFF is both: the page sees a dead track, the server black frames).
BROWSER_EVENT_RULES: tuple[str, ...] = tuple(r.name for r in RULE_REGISTRY if "browser" in r.sources)


def rule(name: str) -> Rule:
    """The registry entry for a rule name; an unknown name fails loudly."""
    try:
        return _RULES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown rule {name!r}; expected one of {', '.join(RULES)}") from None


DETECTOR_BACKENDS = ("auto", "nanodet", "yolo_onnx", "ultralytics", "centernet", "opencv_darknet", "none")

# COCO-80 class ids (0-based, the order YOLO and the CenterNet model use).
COCO_PERSON = 0
COCO_LAPTOP = 63
COCO_MOUSE = 64
COCO_CELL_PHONE = 67
COCO_REFRIGERATOR = 72
COCO_BOOK = 73
COCO_SCISSORS = 76
COCO_TEDDY_BEAR = 77


class VisionConfigError(ValueError):
    """A vision setting has a bad value; the message says which and why."""


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None


def _rule_flag(rule: str) -> Setting:
    return Setting(f"RULE_{rule}_ENABLED", bool, True, f"Whether the {rule} rule may fire at all.")


SETTINGS: tuple[Setting, ...] = (
    # --- face geometry thresholds
    Setting("YAW_THRESHOLD_DEG", float, 25.0, "Head yaw beyond this (either side) counts as looking away.", 5, 80),
    Setting("PITCH_THRESHOLD_DEG", float, 30.0, "Head pitch beyond this (up or down) counts as looking away.", 5, 80),
    Setting("EAR_THRESHOLD", float, 0.18, "Eye aspect ratio below this (both eyes) counts as eyes closed.", 0.05, 0.40),
    Setting("EYES_CLOSED_MAX_PITCH_DOWN_DEG", float, 20.0, "Eyes are judged closed (EAR) only while the head is turned down by at most this from the line of sight; further down the camera sees the upper lids over open eyes (reading, writing), so EYES_CLOSED does not judge and DISTRACTION's PITCH_THRESHOLD_DEG applies. 20: faces looking at the camera read up to 18 down in the test photos, heads turned down 30 beyond 20 in 42 of 45 (tests/vision/test_eyes_looking_down.py).", 5, 90),
    Setting("EYES_CLOSED_MIN_FACE_PX", int, 83, "Eyes are judged (EYES_CLOSED, either way) only on a face box at least this many pixels on its short side; on a smaller face the lid opening is two or three pixels and open eyes read under EAR_THRESHOLD (0 judges every face). 83: chosen on half of the test photos' people as the smallest face whose open eyes read at most 0.05 under their full-size EAR, and so on the other half (worst 0.047; 0.09-0.16 under 80 px, open eyes read closed at 67 and 70 px) (bench/eyes_face_size.py, docs/detection-quality.md).", 0, 2000),
    Setting("IRIS_OFFSET_THRESHOLD", float, 0.28, "Iris offset from the eye centre (fraction of half the eye width) beyond this counts as gazing away.", 0.05, 1.0),
    # --- how long a condition must hold before its rule fires (seconds, frame time)
    Setting("TIME_NO_FACE_S", float, 3.0, "No face in frame for this long fires NO_FACE.", 0.0, 120),
    Setting("TIME_HEAD_TURNED_S", float, 2.0, "Head turned beyond the yaw/pitch threshold this long fires DISTRACTION.", 0.0, 120),
    Setting("TIME_EYES_CLOSED_S", float, 1.0, "Eyes closed this long fires EYES_CLOSED.", 0.0, 120),
    Setting("TIME_GAZING_S", float, 2.0, "Gaze off screen (iris offset) this long fires DISTRACTION.", 0.0, 120),
    Setting("TIME_MULTIPLE_PERSONS_S", float, 1.5, "More than one face or person this long fires MULTIPLE_FACES.", 0.0, 120),
    Setting("TIME_BANNED_OBJECT_S", float, 1.5, "A prohibited object seen this long fires PROHIBITED_OBJECT.", 0.0, 120),
    Setting("TIME_IDENTITY_MISMATCH_S", float, 3.0, "A face that is not the enrolled student this long fires IDENTITY_MISMATCH.", 0.0, 300),
    Setting("TIME_CAMERA_OFF_S", float, 5.0, "No frames, or black/frozen frames, this long fires CAMERA_OFF.", 1.0, 300),
    Setting("TIME_CLEAR_S", float, 1.0, "A firing condition must be absent this long before its rule ends (hysteresis).", 0.0, 60),
    Setting("OBSERVATION_STALE_S", float, 2.0, "Evidence older than this (e.g. the last detector result) is not used by rules.", 0.1, 60),
    # --- warnings
    Setting("WARNING_COOLDOWN_S", float, 5.0, "After a warning of one type, further warnings of that type wait this long.", 0.0, 3600),
    Setting("INSTANT_PENALTY_THRESHOLD", int, 3, "Warnings after which the session is terminated, when auto-terminate is on.", 1, 100),
    Setting("AUTO_TERMINATE_DEFAULT", bool, False, "Whether auto-termination is on for new exams (OFF unless an admin turns it on)."),
    # --- incidents: one moment of the scene is one warning, however many rules it fires (warning_system.py)
    Setting("INCIDENT_WINDOW_S", float, 6.0, "Warnings that start within this many seconds (frame time) of an incident's first warning are parts of that incident: each is stored, the incident counts once, at the weight of its most severe part. Measured through the live runtime on real scenes (a student, then others in view): the rules of one scene fired 1.5 to 2.0 s apart on b_3, c_1 and e_2, and 5.0 s apart on e_5 (looking away after the second face); 6 s takes them all with 1 s to spare (4 s, from the rules' hold times alone, split e_5). 0: every warning is its own incident.", 0.0, 60),
    Setting("INCIDENT_WEIGHT_LOW", float, 0.5, "What an incident whose most severe part is 'low' (eyes closed: blinks and looking down at the desk look alike) adds to the warning count that auto-terminate compares with INSTANT_PENALTY_THRESHOLD.", 0.0, 10),
    Setting("INCIDENT_WEIGHT_MEDIUM", float, 1.0, "What an incident whose most severe part is 'medium' (looking away, tab switch, voice) adds to the warning count.", 0.0, 10),
    Setting("INCIDENT_WEIGHT_HIGH", float, 1.0, "What an incident whose most severe part is 'high' (another person, a prohibited object, no face, camera off) adds to the warning count.", 0.0, 10),
    Setting("INCIDENT_WEIGHT_CRITICAL", float, 2.0, "What an incident whose most severe part is 'critical' (identity mismatch: someone else sits the exam) adds to the warning count; 2 with the threshold 3: one such moment alone never ends an exam, a second incident of any kind does.", 0.0, 10),
    # --- face detection
    Setting("FACE_DETECTION_CONFIDENCE", float, 0.3, "Minimum confidence for a face detection.", 0.05, 0.99),
    Setting("FACE_TILE_CONFIDENCE", float, 0.7, "Minimum confidence for face detections on tiles of the frame (large turned faces, small background faces); detectors fire on some non-faces at 0.5-0.67 on tiles in the test photos.", 0.05, 0.99),
    Setting("FACE_SMALL_SCAN_EVERY_N_FRAMES", int, 6, "In video mode, look for small background faces on zoomed tiles (about 35 ms on 640x480) once every N frames (6: every 3 s at 2 frames/s, so a small background face is counted within 3 s); the boxes found count until the next scan. 0 turns the scan off; photo mode scans every call.", 0, 30),
    Setting("FACE_TRACKING_CONFIDENCE", float, 0.5, "Minimum confidence for FaceMesh landmark tracking between frames.", 0.05, 0.99),
    Setting("FACE_COUNTER_EVERY_N_FRAMES", int, 4, "In video mode, the independent face counter (MediaPipe FaceDetection on the frame and on square tiles, about 13 ms on 640x480) runs on every frame where FaceMesh's face count or tracked face changes, the face is lost, or the counter sees a face the mesh does not; otherwise once every N frames as an audit (4: every 2 s at 2 frames/s). 1 runs it on every frame.", 1, 30),
    # --- presence: which faces make the examinee present (face_presence.py)
    Setting("PRESENCE_CONFIRM_CONFIDENCE", float, 0.55, "A FaceMesh face makes the examinee present once a face detection of at least this score agrees with it (in video mode for as long as FaceMesh keeps tracking it), and a face only a detector found does when FaceMesh fits landmarks to it on a zoomed crop; FaceMesh alone also fits landmarks to cushions and texture.", 0.05, 0.99),
    Setting("PRESENCE_DETECTION_CONFIDENCE", float, 0.85, "A face found by a face detector alone (no FaceMesh landmarks) makes the examinee present at this score or above; false faces on empty rooms scored up to 0.81 in the presence sweep.", 0.05, 0.99),
    Setting("PRESENCE_KEEP_CONFIDENCE", float, 0.45, "In video mode, a face that made the examinee present on the previous frame stays present while a face detection of at least this score is at the same place (a face that dims or turns scores lower than one that appears).", 0.05, 0.99),
    Setting("PRESENCE_MIN_FACE_FRACTION", float, 0.1, "Smallest face, as a fraction of the frame's short side, that can be the examinee (0.1: 48 px on a 480-px frame; an examinee at a webcam shows 80-200 px, a false face on a dim room's texture measured 35 px on 360); smaller faces are only counted for MULTIPLE_FACES.", 0.0, 0.5),
    Setting("FACE_SECONDARY_PERSIST_RUNS", int, 2, "In video mode, a face that does not make the examinee present (a weaker detection, a small background face) counts for MULTIPLE_FACES only once this many looks in a row saw it at the same place.", 1, 10),
    Setting("MAX_FACES", int, 4, "Most faces FaceMesh analyses in one frame.", 1, 16),
    Setting("DARK_FRAME_MEAN", float, 80.0, "Frames whose mean luma is below this are normalised (CLAHE) before analysis.", 0, 255),
    Setting("BLACK_FRAME_MEAN", float, 12.0, "Frames whose mean luma is below this count as black (camera covered or off).", 0, 255),
    # --- the exam page's own checks (it reports CAMERA_OFF from BLACK_FRAME_MEAN and TIME_CAMERA_OFF_S too)
    Setting("VOICE_MARGIN_DB", float, 15.0, "Speech-band sound this many dB above the noise floor measured at the start of the exam counts as talking.", 3, 60),
    Setting("VOICE_MIN_S", float, 1.0, "Talking must add up to this long within VOICE_WINDOW_S before the exam page reports VOICE_DETECTED.", 0.3, 30),
    Setting("VOICE_WINDOW_S", float, 1.5, "The sliding window (seconds) in which talking is added up for VOICE_MIN_S (pauses between words fit in it).", 0.3, 60),
    Setting("FROZEN_FRAME_DIFF", float, 0.2, "Mean absolute luma change (full resolution) below this between consecutive frames counts as frozen; a live webcam stays well above it even for a still student.", 0, 50),
    # --- object detection
    Setting("DETECTOR_BACKEND", str, "auto", "Object detector backend; 'auto' takes the first whose model file is present.", choices=DETECTOR_BACKENDS),
    Setting("DETECTOR_MODEL_PATH", str, "", "Model file for the detector; empty means the backend's file in MODELS_DIR."),
    Setting("MODELS_DIR", str, "models", "Folder holding model files (relative to the repository root unless absolute)."),
    Setting("DETECTOR_THREADS", int, 1, "CPU threads each detector instance may use.", 1, 16),
    Setting("PERSON_CONFIDENCE", float, 0.35, "Minimum score for a person detection.", 0.01, 0.99),
    Setting("PHONE_CONFIDENCE", float, 0.24, "Minimum score for a cell phone (COCO 67), CenterNet; chosen on held-out photo splits (bench/detection_quality.py): the highest phone score on photos without one, plus 0.02.", 0.01, 0.99),
    Setting("BOOK_CONFIDENCE", float, 0.30, "Minimum score for a book (COCO 73), CenterNet; chosen like PHONE_CONFIDENCE (empty rooms and shelves score up to 0.28; docs/detection-quality.md).", 0.01, 0.99),
    Setting("LAPTOP_CONFIDENCE", float, 0.16, "Minimum score for a laptop (COCO 63), CenterNet; chosen like PHONE_CONFIDENCE (nearly black, brightened frames without a laptop score up to 0.14; d_3's laptop 0.17-0.48).", 0.01, 0.99),
    Setting("EXTRA_OBJECT_CONFIDENCE", float, 0.35, "Minimum score for the optional extra banned classes.", 0.01, 0.99),
    Setting("EXTRA_BANNED_CLASSES", str, "", "Comma-separated extra COCO ids to ban, from: 64 mouse, 72 refrigerator, 76 scissors, 77 teddy bear."),
    Setting("NMS_IOU", float, 0.5, "IoU above which overlapping boxes of one class are merged.", 0.05, 0.95),
    Setting("PERSON_DUPLICATE_OVERLAP", float, 0.8, "A person box with at least this fraction of its area inside a higher-scored person box is a duplicate (when also similar in size).", 0.5, 1.0),
    Setting("PERSON_DUPLICATE_MIN_AREA_RATIO", float, 0.3, "Only a contained person box at least this fraction of the other's area counts as a duplicate (a small person behind is kept).", 0.0, 1.0),
    Setting("PERSON_MIN_AREA_FRACTION", float, 0.01, "Person boxes smaller than this fraction of the frame area are ignored (parts of a person, or far in the background).", 0.0, 0.5),
    Setting("DETECTOR_DARK_FRAME_MEAN", float, 35.0, "Frames whose mean luma is below this are brightened (gamma) before object detection; measured to recover phones/books in dim frames.", 0, 255),
    Setting("DETECTOR_BRIGHTEN_TARGET_MEAN", float, 110.0, "Mean luma a dark frame is brightened to (gamma curve) before object detection.", 30, 200),
    Setting("DETECTOR_SECOND_LOOK", bool, True, "Run the detector again on zoomed crops around detected persons to find small objects (phones, books)."),
    Setting("SECOND_LOOK_MAX_REGIONS", int, 2, "Most person crops looked at again per detector run (each costs one more inference).", 0, 8),
    Setting("SECOND_LOOK_MARGIN_FRACTION", float, 0.15, "Margin added around a person box on each side for the second look (fraction of box size).", 0.0, 1.0),
    Setting("SECOND_LOOK_MAX_AREA_FRACTION", float, 0.6, "Crops covering more than this fraction of the frame are skipped (too little zoom to help).", 0.05, 1.0),
    # --- NanoDet's own per-class bars and the hand-guided look (person_pipeline, hand_pipeline; docs/detection-quality.md)
    Setting("NANODET_PERSON_CONFIDENCE", float, 0.40, "NanoDet backend: minimum score for a person (its scores run on another scale than CenterNet's *_CONFIDENCE).", 0.01, 0.99),
    Setting("NANODET_PHONE_CONFIDENCE", float, 0.35, "NanoDet backend: minimum score for a cell phone (COCO 67).", 0.01, 0.99),
    Setting("NANODET_BOOK_CONFIDENCE", float, 0.32, "NanoDet backend: minimum score for a book (COCO 73).", 0.01, 0.99),
    Setting("NANODET_LAPTOP_CONFIDENCE", float, 0.26, "NanoDet backend: minimum score for a laptop (COCO 63).", 0.01, 0.99),
    Setting("DETECTOR_HAND_LOOK", bool, True, "When the detector runs and sees something phone-ish (a cell phone scoring at least PHONE_AT_EAR_MIN_SCORE, below the phone bar) or HAND_LOOK_MAX_CROPS asks for crops, find hands (MediaPipe Hands, about 20 ms) for the phone-at-ear signal (Detections.phone_at_ear) and the crops. Run on every detector run it cost 4 of 20 students over HTTP (bench/README.md).",),
    Setting("HAND_LOOK_MAX_CROPS", int, 0, "Most hand crops the detector looks at again per run (each costs one more inference); 0 finds hands for the phone-at-ear signal only. Measured: with CenterNet the crops add about 40 ms and no phone-at-ear hit; with NanoDet set 2 (phone at ear in 8 instead of 5 of 10 b_3 variants).", 0, 8),
    Setting("HAND_CROP_OBJECTS", bool, False, "Count phones and books found in the hand crops as detections (off: measured false phones on a held remote, no held-out gain; the crops still feed the phone-at-ear signal).",),
    Setting("HAND_CROP_HAND_SIZES", float, 4.0, "Side of the square crop around a hand, in hand sizes (the longer side of its landmarks' box).", 1.5, 20),
    Setting("HAND_CROP_MIN_PX", int, 96, "Smallest side of a hand crop in frame pixels (a far hand still gets some context).", 16, 2000),
    Setting("HAND_DETECTION_CONFIDENCE", float, 0.5, "Minimum MediaPipe palm-detection confidence for a hand.", 0.05, 0.99),
    Setting("PHONE_AT_EAR_MIN_SCORE", float, 0.15, "Phone at the ear: a phone-ish score at least this high near a hand beside a head (below the phone bar: the geometry is the other half of the evidence).", 0.01, 0.99),
    Setting("OBJECT_EVIDENCE_WINDOW_RUNS", int, 5, "Prohibited-object evidence: the last N detector runs are remembered.", 1, 50),
    Setting("OBJECT_EVIDENCE_MIN_HITS", int, 2, "Prohibited-object evidence: a class counts only when seen in at least this many of the remembered runs.", 1, 50),
    # --- when the detector runs (proctor/live/cadence.py): by scene, not on one frame in N; the face stage runs on every frame
    Setting("DETECTOR_STEADY_INTERVAL_S", float, 3.0, "In a steady scene the object detector runs once every this many seconds of frame time (sooner on a change or while an object is being confirmed). 3 s costs a third of running it every second; an object that turns up without any movement is still looked for within 3 s.", 0.5, 30),
    Setting("DETECTOR_FAST_INTERVAL_S", float, 0.5, "While a prohibited object or an extra person is being confirmed or is present (seen in one of the last OBJECT_EVIDENCE_WINDOW_RUNS runs), the detector runs this often (0.5: every frame at 2 frames/s); never slower than TIME_BANNED_OBJECT_S, TIME_MULTIPLE_PERSONS_S or OBSERVATION_STALE_S (the smallest is used).", 0.0, 1.5),
    Setting("DETECTOR_HOLD_INTERVAL_S", float, 1.5, "Once a prohibited object or an extra person is confirmed (the rules see it) and each of the last DETECTOR_HOLD_AFTER_RUNS detector runs saw it, the detector runs this often instead of DETECTOR_FAST_INTERVAL_S until a run misses it (then the fast pace again, so the end is found quickly). Never more than 3/4 of OBSERVATION_STALE_S (the cadence caps it), so the evidence never goes stale while the thing is there. 1.5: a student with a phone on the desk costs a run every 3 frames, not every frame (bench/README.md).", 0.0, 10),
    Setting("DETECTOR_HOLD_AFTER_RUNS", int, 2, "How many detector runs in a row must have seen the confirmed object or extra person before the detector slows to DETECTOR_HOLD_INTERVAL_S. 0 never slows down.", 0, 20),
    Setting("DETECTOR_CHANGE_MIN_INTERVAL_S", float, 1.0, "A change in the scene (lower-half motion, face count, head pose) runs the detector on the next frame, but not sooner than this after its previous run, so continuous movement (writing) costs at most one run per this many seconds.", 0.0, 10),
    Setting("DETECTOR_MOTION_DIFF", float, 6.0, "Motion in the lower half of the picture (hands, desk) above this counts as a change: mean absolute luma difference (0-255) between consecutive 64x48 greyscale thumbnails, each pixel against its best match one thumbnail pixel around, exposure evened out. Measured (bench/cadence_bench.py): still scenes with a 9-pixel camera shake and exposure flicker stay below 4.3; a laptop raised into the lower half gives 13-45.", 0.5, 255),
    Setting("DETECTOR_POSE_CHANGE_DEG", float, 15.0, "A head yaw or pitch this many degrees away from where it was at the detector's previous run counts as a change (the tracked pose of a still face wanders by up to 7 degrees).", 3, 90),
    # --- identity
    Setting("IDENTITY_DISTANCE_THRESHOLD", float, 0.48, "Identity distance at or below which the live face is the enrolled student: (dlib euclidean distance + IDENTITY_FACERES_TO_DLIB_SCALE x FaceRes cosine distance) / 2, on dlib's scale, so values set before FaceRes keep about their meaning. A dlib-only enrolment (stored before FaceRes, or FaceRes missing) is decided by IDENTITY_DLIB_ONLY_THRESHOLD, scaled by an exam's value of this setting over the app's, so an exam's stricter or looser value moves both rules alike. 0.48: no false match in 88,501 different-person pairs of the identity photos and transforms, closest 0.51 (bench/calibrate_identity.py, docs/identity-calibration.md).", 0.2, 0.8),
    Setting("IDENTITY_USE_FACERES", bool, True, "Fuse the FaceRes descriptor (models/faceres.onnx, about 20-50 ms more a check) with dlib's; off, or with the file missing, identity uses dlib alone (and says so in the log and in each result)."),
    Setting("IDENTITY_FACERES_TO_DLIB_SCALE", float, 1.0, "FaceRes cosine distances are multiplied by this before being averaged with dlib's distance. 1.0: the two models' spreads over different-person pairs of the calibration photos are within 3 % of each other (ratio 1.03; 0.93 and 0.84 on the two halves).", 0.5, 2.0),
    Setting("IDENTITY_DLIB_ONLY_THRESHOLD", float, 0.45, "dlib euclidean distance at or below which two faces match when only dlib's vector is available (a template stored before FaceRes, or FaceRes missing). Kept at its old 0.45: an unseen trial found two different women at dlib 0.433, so dlib alone is not loosened; re-registering moves a student to the fused rule.", 0.2, 0.8),
    Setting("IDENTITY_CHECK_EVERY_S", float, 10.0, "How often (frame time) the live face is verified against the enrolment while the same face stays in view (about 90 ms a check with dlib alone, 20-50 ms more with FaceRes); a face that comes back, a change in the face count or a jump of the main face is checked on the next frame whatever this says.", 0.5, 600),
    Setting("IDENTITY_VERIFIED_EVERY_S", float, 30.0, "Once IDENTITY_VERIFIED_AFTER_CHECKS checks in a row matched the same face, tracked without a break (no face lost, no change in the face count, no jump of the main face), it is checked this often instead of IDENTITY_CHECK_EVERY_S: swapping the person in front of the camera breaks the track and brings a check on the next frame. A mismatch, a failed check or a break goes back to IDENTITY_CHECK_EVERY_S. Must not be below IDENTITY_CHECK_EVERY_S.", 0.5, 600),
    Setting("IDENTITY_VERIFIED_AFTER_CHECKS", int, 2, "How many matching identity checks in a row of one unbroken face track before it is checked only every IDENTITY_VERIFIED_EVERY_S. 0: always every IDENTITY_CHECK_EVERY_S.", 0, 20),
    Setting("IDENTITY_MIN_FACE_PX", int, 80, "A live identity check judges a face only when its box is at least this many pixels on its short side; a smaller face is no verdict (neither match nor mismatch) and is checked again on the next frames. 80, as ENROL_MIN_FACE_PX: chosen on half of the identity photos' people as the smallest size whose same-person distances rise at most 0.03 over full size; on the other half they rose at most 0.029 at 80 px (no false refusal), 0.038 at 64 px (1) and 0.110 at 56 px (7) (bench/calibrate_identity_gate.py, docs/identity-calibration.md).", 16, 2000),
    Setting("IDENTITY_MAX_YAW_DEG", float, 25.0, "A live identity check judges a face only when its head yaw is within this many degrees either side (a face turned further is no verdict, checked again on the next frames). 25, as YAW_THRESHOLD_DEG: a face the rules count as looking at the screen can be judged; enrolment photos are frontal.", 5, 90),
    Setting("IDENTITY_MAX_PITCH_DEG", float, 30.0, "A live identity check judges a face only when its head pitch is within this many degrees up or down (further is no verdict, checked again on the next frames). 30, as PITCH_THRESHOLD_DEG.", 5, 90),
    Setting("IDENTITY_MISMATCH_MIN_CHECKS", int, 2, "IDENTITY_MISMATCH needs at least this many mismatching checks (a face on a screen or a photo counts as one) among the last IDENTITY_MISMATCH_WINDOW_CHECKS judged checks, the latest among them, before TIME_IDENTITY_MISMATCH_S starts; after a mismatch the next check comes within 2 s, so agreement costs seconds, not IDENTITY_CHECK_EVERY_S.", 1, 20),
    Setting("IDENTITY_MISMATCH_WINDOW_CHECKS", int, 3, "How many of the latest judged identity checks IDENTITY_MISMATCH_MIN_CHECKS counts in. Must not be below IDENTITY_MISMATCH_MIN_CHECKS.", 1, 20),
    Setting("ENROL_MIN_FACE_PX", int, 80, "Enrolment photo: the face box must be at least this many pixels on its short side.", 16, 2000),
    Setting("ENROL_MIN_BRIGHTNESS", float, 60.0, "Enrolment photo: mean luma (0-255) of the face below this is refused as too dark.", 0, 255),
    Setting("ENROL_MAX_BRIGHTNESS", float, 225.0, "Enrolment photo: mean luma (0-255) of the face above this is refused as too bright.", 0, 255),
    Setting("ENROL_MIN_SHARPNESS", float, 40.0, "Enrolment photo: variance of the Laplacian of the face (resized to 160 px) below this is refused as too blurry.", 0, 10000),
    # --- liveness (a still picture held to the camera neither blinks nor turns)
    Setting("LIVENESS_WINDOW_S", float, 10.0, "Liveness passes when a blink or a head turn is seen within this many seconds (frame time).", 1.0, 600),
    Setting("LIVENESS_TURN_DEG", float, 15.0, "Liveness head turn: yaw must move this far from where it started, then come back within half of it.", 5.0, 60),
    Setting("LIVENESS_EAR_OPEN_MARGIN", float, 0.04, "Liveness blink: after EAR falls below EAR_THRESHOLD it must rise above EAR_THRESHOLD plus this margin.", 0.0, 0.3),
    Setting("LIVENESS_BLINK_MAX_S", float, 1.0, "Liveness blink: the eyes must reopen within this many seconds of closing.", 0.05, 10),
    # --- presentation attacks (face on a screen or a printed photo; presentation_attack.py, docs/presentation-attack.md)
    Setting("PA_CHECK_ENABLED", bool, True, "Refuse a face shown on a screen or a printed photo at the identity confirmation and at each live identity check (IDENTITY_CHECK_EVERY_S, not every frame: about 50-100 ms a check); off, such a face is judged by identity alone.",),
    Setting("PA_FRAME_SEARCH_FACE_WIDTHS", float, 1.0, "Presentation attack: straight edges of a device or print are looked for up to this many face sizes beside the face box.", 0.2, 3.0),
    Setting("PA_FRAME_MAX_TILT_DEG", float, 25.0, "Presentation attack: an edge may lean this far from the face box's side it runs along (a tilted phone).", 5, 45),
    Setting("PA_FRAME_EDGE_MIN_LENGTH_FACE", float, 1.0, "Presentation attack: an edge this long (in face sizes along that side) counts in full; shorter ones count in proportion.", 0.3, 3.0),
    Setting("PA_SIDE_EDGE_BELOW_CHIN_FACE", float, 0.2, "Presentation attack: a left/right edge must run this far below the chin (face heights) to count in full; a window or door edge behind a real head stops at the shoulders.", 0.0, 2.0),
    Setting("PA_BORDER_MAX_WIDTH_FACE", float, 0.3, "Presentation attack: the even band outside an edge (bezel, paper margin) may be at most this wide (fraction of the face width).", 0.05, 1.0),
    Setting("PA_BORDER_MAX_STD_LUMA", float, 20.0, "Presentation attack: luma (0-255) may vary this much along and across a band and still count as even.", 2, 80),
    Setting("PA_BORDER_CONTRAST_LUMA", float, 60.0, "Presentation attack: a band this much darker or brighter (luma) than both the picture inside and the scene outside counts in full.", 5, 255),
    Setting("PA_BEZEL_MAX_LUMA", float, 60.0, "Presentation attack: a band at most this bright (luma) is a bezel; bands between this and PA_PAPER_MIN_LUMA count half.", 0, 255),
    Setting("PA_PAPER_MIN_LUMA", float, 180.0, "Presentation attack: a band at least this bright (luma) is a paper margin.", 0, 255),
    Setting("PA_FRAME_SCORE_THRESHOLD", float, 0.7, "Presentation attack: mean evidence of the two strongest sides (0-1) at or above this refuses the face as a picture (chosen on half the test photos by bench/presentation_attack_bench.py: the highest real face there scored 0.695).", 0.05, 1.0),
    Setting("PA_PLANAR_MIN_MOTION", float, 0.02, "Presentation attack, several frames: landmark motion beyond a similarity (fraction of the eye distance) needed before planarity is judged (a tilted picture gave 0.016-0.023, a still face with camera noise 0.010).", 0.0, 1.0),
    Setting("PA_PLANAR_MAX_RESIDUAL", float, 0.012, "Presentation attack, several frames: landmarks explained by one homography to within this (fraction of the eye distance) are a flat picture (tilted pictures left 0.008, real faces in other poses 0.021-0.057; few samples, see docs/presentation-attack.md).", 0.0, 1.0),
) + tuple(_rule_flag(r) for r in RULES)

_BY_NAME = {s.name: s for s in SETTINGS}

# Settings that no longer exist. A stored exam override, settings file, PROCTOR_VISION_OVERRIDES or
# environment variable that still names one is ignored with a warning (never an error: an exam
# stored before the change still opens with its other thresholds).
RETIRED_SETTINGS: dict[str, str] = {
    "DETECTOR_EVERY_N_FRAMES": "the detector now runs by scene: see DETECTOR_STEADY_INTERVAL_S, "
                               "DETECTOR_FAST_INTERVAL_S and DETECTOR_CHANGE_MIN_INTERVAL_S",
}


_retired_warned: set[tuple[str, str]] = set()


def _retired(name: str, source: str) -> bool:
    """True when ``name`` is a retired setting (a warning is logged once per name and source)."""
    if name not in RETIRED_SETTINGS:
        return False
    if (name, source) not in _retired_warned:
        _retired_warned.add((name, source))
        log.warning("ignoring retired vision setting %s (from %s): %s", name, source, RETIRED_SETTINGS[name])
    return True

for _rule in RULE_REGISTRY:  # a registry typo fails at import, not in a browser
    for _key, _setting in _rule.browser_settings:
        if _setting not in _BY_NAME:
            raise ValueError(f"rule {_rule.name}: browser setting {_key} names unknown vision setting {_setting!r}")

_EXTRA_CLASS_IDS = {COCO_MOUSE, COCO_REFRIGERATOR, COCO_SCISSORS, COCO_TEDDY_BEAR}


def _parse(setting: Setting, raw: Any, source: str) -> Any:
    where = f"{setting.name}={raw!r} (from {source})"
    if setting.type is bool:
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
            value = True
        elif isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off"):
            value = False
        else:
            raise VisionConfigError(f"{where}: expected true/false")
        return value
    if setting.type in (int, float):
        if isinstance(raw, bool):
            raise VisionConfigError(f"{where}: expected a number")
        try:
            value = setting.type(raw) if setting.type is float else int(str(raw).strip())
        except (TypeError, ValueError):
            raise VisionConfigError(f"{where}: expected {'an integer' if setting.type is int else 'a number'}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise VisionConfigError(f"{where}: expected a finite number")
        if setting.min is not None and value < setting.min or setting.max is not None and value > setting.max:
            raise VisionConfigError(f"{where}: must be between {setting.min} and {setting.max}")
        return value
    if not isinstance(raw, str):
        raise VisionConfigError(f"{where}: expected text")
    value = raw.strip()
    if setting.choices is not None and value not in setting.choices:
        raise VisionConfigError(f"{where}: must be one of {', '.join(setting.choices)}")
    return value


@dataclass(frozen=True)
class VisionConfig:
    """Validated vision settings. Build with :func:`load_vision_config`."""

    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "values":  # keeps copy/pickle working
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def with_overrides(self, **overrides: Any) -> "VisionConfig":
        """A copy with some settings changed (validated like any other source)."""
        merged = dict(self.values)
        for name, raw in overrides.items():
            if _retired(name, "override"):
                continue
            if name not in _BY_NAME:
                raise VisionConfigError(f"unknown vision setting {name!r}")
            merged[name] = _parse(_BY_NAME[name], raw, "override")
        return replace(self, values=_validated(merged))

    def rule_enabled(self, rule: str) -> bool:
        return bool(self.values[f"RULE_{rule}_ENABLED"])

    @property
    def extra_banned_class_ids(self) -> tuple[int, ...]:
        text = self.values["EXTRA_BANNED_CLASSES"]
        return tuple(int(x) for x in text.split(",") if x.strip())

    @property
    def banned_class_ids(self) -> tuple[int, ...]:
        return (COCO_CELL_PHONE, COCO_BOOK, COCO_LAPTOP) + self.extra_banned_class_ids

    def class_confidence(self, class_id: int) -> float:
        """The minimum score for a detection of this COCO class to count."""
        return {
            COCO_PERSON: self.values["PERSON_CONFIDENCE"],
            COCO_CELL_PHONE: self.values["PHONE_CONFIDENCE"],
            COCO_BOOK: self.values["BOOK_CONFIDENCE"],
            COCO_LAPTOP: self.values["LAPTOP_CONFIDENCE"],
        }.get(class_id, self.values["EXTRA_OBJECT_CONFIDENCE"])

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)


def _validated(values: dict[str, Any]) -> dict[str, Any]:
    if values["VOICE_MIN_S"] > values["VOICE_WINDOW_S"]:
        raise VisionConfigError(
            f"VOICE_MIN_S={values['VOICE_MIN_S']!r} must not exceed VOICE_WINDOW_S={values['VOICE_WINDOW_S']!r}"
        )
    if values["DETECTOR_FAST_INTERVAL_S"] > values["DETECTOR_STEADY_INTERVAL_S"]:
        raise VisionConfigError(
            f"DETECTOR_FAST_INTERVAL_S={values['DETECTOR_FAST_INTERVAL_S']!r} must not exceed "
            f"DETECTOR_STEADY_INTERVAL_S={values['DETECTOR_STEADY_INTERVAL_S']!r}"
        )
    if values["IDENTITY_VERIFIED_EVERY_S"] < values["IDENTITY_CHECK_EVERY_S"]:
        raise VisionConfigError(
            f"IDENTITY_VERIFIED_EVERY_S={values['IDENTITY_VERIFIED_EVERY_S']!r} must not be below "
            f"IDENTITY_CHECK_EVERY_S={values['IDENTITY_CHECK_EVERY_S']!r}"
        )
    if values["IDENTITY_MISMATCH_MIN_CHECKS"] > values["IDENTITY_MISMATCH_WINDOW_CHECKS"]:
        raise VisionConfigError(
            f"IDENTITY_MISMATCH_MIN_CHECKS={values['IDENTITY_MISMATCH_MIN_CHECKS']!r} must not exceed "
            f"IDENTITY_MISMATCH_WINDOW_CHECKS={values['IDENTITY_MISMATCH_WINDOW_CHECKS']!r}"
        )
    extra = values["EXTRA_BANNED_CLASSES"]
    for part in (p.strip() for p in extra.split(",") if p.strip()):
        if not part.isdigit() or int(part) not in _EXTRA_CLASS_IDS:
            raise VisionConfigError(
                f"EXTRA_BANNED_CLASSES={extra!r}: {part!r} is not one of the optional classes "
                f"{sorted(_EXTRA_CLASS_IDS)}"
            )
    return values


def load_vision_config(
    env: Mapping[str, str] | None = None,
    settings_file: str | None = None,
    **overrides: Any,
) -> VisionConfig:
    """Defaults, then the settings file, then the environment, then keyword overrides."""
    env = os.environ if env is None else env
    values = {s.name: s.default for s in SETTINGS}
    path = settings_file or env.get(SETTINGS_FILE_ENV)
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as exc:
            raise VisionConfigError(f"vision settings file {path!r} could not be read: {exc}") from None
        if not isinstance(data, dict):
            raise VisionConfigError(f"vision settings file {path!r} must hold a JSON object")
        for name, raw in data.items():
            if _retired(name, path):
                continue
            if name not in _BY_NAME:
                raise VisionConfigError(f"vision settings file {path!r}: unknown setting {name!r}")
            values[name] = _parse(_BY_NAME[name], raw, path)
    for setting in SETTINGS:
        key = ENV_PREFIX + setting.name
        if key in env:
            values[setting.name] = _parse(setting, env[key], f"environment {key}")
    for name in RETIRED_SETTINGS:
        if ENV_PREFIX + name in env:
            _retired(name, f"environment {ENV_PREFIX}{name}")
    for name, raw in overrides.items():
        if _retired(name, "override"):
            continue
        if name not in _BY_NAME:
            raise VisionConfigError(f"unknown vision setting {name!r}")
        values[name] = _parse(_BY_NAME[name], raw, "override")
    return VisionConfig(values=_validated(values))


def browser_rules(config: VisionConfig) -> dict[str, Any]:
    """The JSON-able facts the pages need about every rule, with thresholds read from ``config``
    (so an exam's threshold overrides reach the page): {"rules": {name: {...}}, "order": [...]}."""
    rules = {}
    for r in RULE_REGISTRY:
        rules[r.name] = {
            "name": r.name,
            "title": r.title,
            "severity": r.severity,
            "message": r.message,
            "sources": list(r.sources),
            "thresholds": {key: config.values[setting] for key, setting in r.browser_settings},
        }
    return {"rules": rules, "order": list(RULES)}


def describe() -> str:
    """The settings table as text (name, default, bounds, description)."""
    lines = []
    for s in SETTINGS:
        bounds = f"{s.min}..{s.max}" if s.min is not None else (" | ".join(s.choices) if s.choices else "")
        lines.append(f"{ENV_PREFIX}{s.name:<32} {str(s.default):<8} {bounds:<14} {s.description}")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - documentation helper
    print(describe())
