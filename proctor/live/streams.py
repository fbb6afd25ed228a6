"""One student's live stream: what the runtime holds for an active exam session, and how it changes.

A Stream is opened from the store's SessionInfo (proctor/live/store.py). It holds the session's
settings (auto-terminate, disabled rules, the exam's vision overrides, the enrolment), the
DecisionEngine and WarningSystem of its exam (shared by the exam's streams: their state is kept
per student), its own ObjectEvidence (person_pipeline: a prohibited object counts only when seen
in OBJECT_EVIDENCE_MIN_HITS of the last OBJECT_EVIDENCE_WINDOW_RUNS detector runs), its own
DetectorCadence (cadence.py: which frames get the object detector, by scene), the latest
observations, counters and the newest processed frame. `frame_job` turns a frame into the
worker's job; `absorb` takes the worker's result in and returns the observation the decision
engine sees. No I/O and no locking here: the runtime (proctor/live/runtime.py) holds the lock.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .cadence import DetectorCadence
from .pipeline import FrameJob, FrameResult
from .store import SessionInfo

log = logging.getLogger(__name__)

DETAILS_MAX_ITEMS = 20
DETAILS_MAX_TEXT = 200
LOAD_WINDOW_S = 10.0     # the share of frames analysed is measured over this many seconds
DEGRADED_SHARE = 0.9     # fewer analysed than this share of the frames received: the status says degraded
MAX_LOAD_STRETCH = 4.0   # under overload the detector's and identity's intervals grow at most this much ...
STRETCH_RELAX_SHARE = 0.97  # ... and shrink back by STRETCH_RELAX_STEP a second once this share is analysed
STRETCH_RELAX_STEP = 0.1
IDENTITY_RECHECK_MIN_S = 2.0  # an early identity re-check (the face changed) comes at most this often


@dataclass
class ExamRules:
    """An exam's decision engine, warning system and vision overrides (one per distinct override set)."""

    engine: Any                  # decision_engine.DecisionEngine (per-student state inside)
    warnings: Any                # warning_system.WarningSystem (per-student state inside)
    overrides: dict              # the exam's validated vision overrides (also sent to the workers)

    @property
    def config(self):
        return self.engine.config


class ExamRulesCache:
    """One ExamRules per distinct set of exam threshold overrides, on top of the app's vision config."""

    def __init__(self, config):
        self.config = config
        self._by_key: dict[str, ExamRules] = {}

    def for_exam(self, thresholds_json: str, exam_id: int) -> ExamRules:
        from decision_engine import DecisionEngine
        from person_pipeline import ObjectEvidence
        from warning_system import WarningSystem

        try:
            overrides = json.loads(thresholds_json) if thresholds_json else {}
            if not isinstance(overrides, dict):
                raise ValueError("not a JSON object")
            config = self.config.with_overrides(**overrides) if overrides else self.config
            ObjectEvidence.from_config(config)  # OBJECT_EVIDENCE_MIN_HITS <= _WINDOW_RUNS, as at start
        except ValueError as exc:
            log.error("exam %s has bad vision thresholds (%s); using the defaults", exam_id, exc)
            overrides, config = {}, self.config
        key = json.dumps(overrides, sort_keys=True)
        rules = self._by_key.get(key)
        if rules is None:
            rules = ExamRules(DecisionEngine(config), WarningSystem(config), overrides)
            self._by_key[key] = rules
        return rules


def parse_rules(names) -> frozenset:
    """Rule names from storage, upper-cased; unknown names are logged and ignored."""
    from config_vision import RULES

    out = set()
    for part in names or ():
        name = str(part).strip().upper()
        if not name:
            continue
        if name in RULES:
            out.add(name)
        else:
            log.warning("ignoring unknown rule %r in a disabled-rules list", name)
    return frozenset(out)


def clean_details(details: Any) -> dict:
    """Browser-sent details, reduced to a few short JSON scalars (never trusted, never large)."""
    if not isinstance(details, dict):
        return {}
    out = {}
    for key, value in list(details.items())[:DETAILS_MAX_ITEMS]:
        key = str(key)[:40]
        if isinstance(value, bool) or value is None:
            out[key] = value
        elif isinstance(value, (int, float)):
            out[key] = value if math.isfinite(float(value)) else None
        else:
            out[key] = str(value)[:DETAILS_MAX_TEXT]
    return out


def face_summary(face) -> dict | None:
    if face is None:
        return None

    def r(v, n=1):
        return None if v is None else round(float(v), n)

    return {
        "detected": bool(face.face_detected), "count": int(face.face_count), "yaw_deg": r(face.yaw_deg),
        "pitch_deg": r(face.pitch_deg), "ear": r(face.ear, 3), "iris_offset": r(face.iris_offset, 3),
        "brightness": r(face.brightness), "normalised": bool(face.normalised), "detector": face.detector,
    }


def objects_summary(dets, banned_class_ids=()) -> list[dict]:
    """What the detector's latest result (after ObjectEvidence) holds, for the status. Each item says
    whether it is `prohibited` in this exam (its banned classes): persons and anything else not banned
    are context, never an alarm; an extra person is the `persons` count's business (MULTIPLE_FACES)."""
    if dets is None:
        return []
    banned = frozenset(int(c) for c in banned_class_ids)
    out = [{"label": d.label, "class_id": d.class_id, "score": round(float(d.score), 3),
            "box": [round(float(v), 1) for v in d.box], "prohibited": int(d.class_id) in banned} for d in dets.items]
    if dets.phone_at_ear:  # confirmed by ObjectEvidence, as the objects are, and only while phones are banned
        from config_vision import COCO_CELL_PHONE

        out.append({"label": "phone at ear", "class_id": COCO_CELL_PHONE, "prohibited": True})
    return out


@dataclass
class Stream:
    """Everything the runtime holds for one student's active session."""

    student_id: int
    session_id: int
    name: str
    exam_id: int
    exam_title: str
    rules: ExamRules
    exam_auto_terminate: bool
    session_auto_terminate: bool | None
    exam_disabled: frozenset
    session_disabled: frozenset
    embedding: bytes | None
    objects: Any = None          # person_pipeline.ObjectEvidence: a prohibited object needs k of the last n runs
    cadence: DetectorCadence | None = None  # which frames get the detector (made from the exam's config)
    joined_mono: float = field(default_factory=time.monotonic)
    dispatched: int = 0
    processed: int = 0
    detector_runs: int = 0
    identity_attempts: int = 0
    identity_checks: int = 0     # attempts that found a face to compare
    last_identity_dispatch_t: float | None = None
    last_detections: Any = None  # the latest detector result after ObjectEvidence: what the rules see
    last_detections_t: float | None = None
    identity_match: bool | None = None
    identity_distance: float | None = None
    identity_t: float | None = None
    identity_spoof: bool = False        # the latest identity check saw a face on a screen or a printed photo
    identity_spoof_details: dict = field(default_factory=dict)
    identity_skipped: str | None = None     # why the latest check judged no face (too small, turned); None: judged
    identity_skipped_t: float | None = None  # frame time of the first such check since the last judged one
    last_face: Any = None
    last_face_box: tuple | None = None  # the main face's box in the latest result (None: no face)
    stretch: float = 1.0                # > 1 under overload: detector and identity clocks slowed (see load)
    stretch_relaxed_mono: float = float("-inf")  # when the stretch last shrank a step
    identity_recheck: bool = False      # the face changed since the last identity check: check again soon
    identity_streak: int = 0            # matching checks in a row of one unbroken face track (verified_every)
    identity_mismatches: int = 0        # mismatching judged checks in a row (a quick re-check until enough agree)
    last_result_mono: float | None = None
    last_errors: list = field(default_factory=list)
    pending: dict = field(default_factory=dict)   # seq -> the Frame sent to a worker, until its result
    last_frame: Any = None       # the Frame the latest result was computed on (views.py draws on it)
    processed_mono: float | None = None
    drawn: tuple | None = None   # views.py's cache: (key, JPEG with the HUD)
    detector_frame: Any = None   # views.EvidenceShot of the latest frame the detector ran on (the runtime sets it)
    object_frame: Any = None     # ... of the latest one on which that run itself saw a prohibited object
    result_ages: deque = field(default_factory=lambda: deque(maxlen=40))  # s from a frame's arrival to its result
    load_marks: deque = field(default_factory=lambda: deque(maxlen=64))   # (mono, frames received, dropped)
    last_status_mono: float = 0.0
    terminated: bool = False
    face_state: str | None = None

    def __post_init__(self) -> None:
        if self.cadence is None:
            self.cadence = DetectorCadence(self.rules.config)

    @classmethod
    def open(cls, info: SessionInfo, rules: ExamRules) -> "Stream":
        from person_pipeline import ObjectEvidence

        return cls(
            student_id=info.student_id, session_id=info.session_id, name=info.student_name or f"#{info.student_id}",
            exam_id=info.exam_id, exam_title=info.exam_title, rules=rules,
            exam_auto_terminate=bool(info.exam_auto_terminate), session_auto_terminate=info.session_auto_terminate,
            exam_disabled=parse_rules(info.exam_disabled_rules), session_disabled=parse_rules(info.session_disabled_rules),
            embedding=info.embedding or None, objects=ObjectEvidence.from_config(rules.config),
        )

    @property
    def engine(self):
        return self.rules.engine

    @property
    def warnings(self):
        return self.rules.warnings

    @property
    def auto_terminate(self) -> bool:
        return self.exam_auto_terminate if self.session_auto_terminate is None else bool(self.session_auto_terminate)

    @property
    def disabled_rules(self) -> frozenset:
        return self.exam_disabled | self.session_disabled

    def forget(self) -> None:
        """Drop this student's state in the shared engine and warning system."""
        self.engine.forget(self.student_id)
        self.warnings.forget(self.student_id)

    # ------------------------------------------------------------------ frames out, results in
    def frame_job(self, frame, config) -> FrameJob:
        """The worker's job for this frame: the detector when the cadence says so (cadence.py); identity
        every IDENTITY_CHECK_EVERY_S (IDENTITY_VERIFIED_EVERY_S once the tracked face is verified), and
        sooner when the face changed (see absorb)."""
        reason = self.cadence.due(frame.server_ts, self.stretch)
        run_detector = reason is not None
        if run_detector:
            self.cadence.ran(frame.server_ts, reason)
        embedding = None
        since = None if self.last_identity_dispatch_t is None else frame.server_ts - self.last_identity_dispatch_t
        if self.embedding is not None and (
            since is None or since >= self.identity_every(config) * self.stretch
            or (self.identity_recheck and since >= IDENTITY_RECHECK_MIN_S * self.stretch)
        ):
            embedding = self.embedding
            self.last_identity_dispatch_t, self.identity_recheck = frame.server_ts, False
        self.dispatched += 1
        self.pending[frame.seq] = frame
        while len(self.pending) > 4:  # results lost with a crashed worker never come back
            del self.pending[min(self.pending)]
        return FrameJob(self.student_id, frame.session_id, frame.seq, frame.server_ts, frame.received_mono,
                        frame.image, frame.jpeg, run_detector, embedding, vision_overrides=self.rules.overrides)

    def identity_every(self, config) -> float:
        """Seconds between routine identity checks: IDENTITY_CHECK_EVERY_S, or IDENTITY_VERIFIED_EVERY_S
        once IDENTITY_VERIFIED_AFTER_CHECKS checks in a row matched one face tracked without a break.
        Whoever replaces the student breaks the track (the face lost, the count changed or the main face
        jumped: see absorb), which resets the streak and brings a check on the next frame."""
        after = int(config.IDENTITY_VERIFIED_AFTER_CHECKS)
        if after > 0 and self.identity_streak >= after:
            return float(config.IDENTITY_VERIFIED_EVERY_S)
        return float(config.IDENTITY_CHECK_EVERY_S)

    def absorb(self, r: FrameResult, now_mono: float):
        """Take a worker's result in; returns the decision engine's FrameObservation for it."""
        from decision_engine import FrameObservation
        from face_pipeline import face_jumped

        self.processed += 1
        self.last_errors = list(r.errors)
        if r.detector_ran:
            self.detector_runs += 1
            dets = r.detections
            if dets is not None and self.objects is not None:
                dets = self.objects.update(dets)  # a prohibited object counts once seen in k of the last n runs
            self.last_detections, self.last_detections_t = dets, r.frame_ts
        self.cadence.observe(r, self.last_detections if r.detector_ran else None)
        face_state = None if r.face is None else ("no_face" if not r.face.face_detected else f"faces={r.face.face_count}")
        if face_state != self.face_state or (r.face is not None and r.face.face_detected
                                             and face_jumped(self.last_face_box, r.face.box)):
            self.identity_streak = 0  # the track broke: whoever is there now earns the long interval again
        judged = bool(r.identity_ran and r.identity_face_found and not r.identity_skipped)
        if r.identity_ran and r.identity_face_found and r.identity_skipped:
            # A face too small or too turned to judge: no verdict, neither a match (the streak and the
            # verified interval stay as they were) nor a mismatch, and the latest verdict stands. Ask
            # again on the next frame, not a full interval later (the gate costs no embedding).
            self.identity_attempts += 1
            self.last_identity_dispatch_t = None
            if self.identity_skipped is None:
                self.identity_skipped_t = r.frame_ts
                log.info("identity check student=%s session=%s seq=%s: no verdict (%s)", r.student_id,
                         r.session_id, r.seq, r.identity_skipped)
            self.identity_skipped = str(r.identity_skipped)
        elif r.identity_ran:
            self.identity_attempts += 1
            self.identity_checks += 1 if judged else 0
            self.identity_skipped = self.identity_skipped_t = None
            if not r.identity_face_found:
                self.last_identity_dispatch_t = None  # no face to check: try again on the next frame
            self.identity_match = r.identity_match if r.identity_face_found else None
            self.identity_distance = r.identity_distance
            self.identity_t = r.frame_ts
            # A picture of a face is not the student, whoever it shows: a mismatch whatever the distance.
            self.identity_spoof = bool(r.identity_face_found and r.identity_spoof)
            self.identity_spoof_details = dict(r.identity_details or {}) if self.identity_spoof else {}
            if self.identity_spoof:
                self.identity_match = False
                log.info("identity check student=%s session=%s seq=%s: face on a screen or photo (%s)", r.student_id,
                         r.session_id, r.seq, self.identity_spoof_details.get("spoof_reason", ""))
            self.identity_streak = self.identity_streak + 1 if self.identity_match else 0
            self.identity_mismatches = self.identity_mismatches + 1 if self.identity_match is False else 0
            if 0 < self.identity_mismatches < int(self.rules.config.IDENTITY_MISMATCH_MIN_CHECKS):
                # IDENTITY_MISMATCH waits for IDENTITY_MISMATCH_MIN_CHECKS agreeing checks: until they
                # agree, the next one comes IDENTITY_RECHECK_MIN_S later, not IDENTITY_CHECK_EVERY_S.
                self.identity_recheck = True
        self.last_face = r.face
        self.last_result_mono = now_mono
        self.result_ages.append(max(0.0, now_mono - r.received_mono))
        frame = self.pending.pop(r.seq, None)
        if frame is not None:
            self.last_frame, self.processed_mono = frame, now_mono
        checked_now = judged
        if r.face is not None and r.face.face_detected and self.embedding is not None and not checked_now and (
                face_state != self.face_state or face_jumped(self.last_face_box, r.face.box)):
            # A face came back, the count changed or the main face jumped: whoever sits there now is
            # checked on the next frame (IDENTITY_RECHECK_MIN_S after the last check at the earliest, so
            # that a flickering face does not bring a check on every frame), not at the next
            # IDENTITY_CHECK_EVERY_S.
            self.identity_recheck = True
        if r.face is not None:
            self.last_face_box = r.face.box if r.face.face_detected else None
        if face_state != self.face_state:
            log.info("face status student=%s session=%s seq=%s: %s -> %s", r.student_id, r.session_id, r.seq,
                     self.face_state, face_state)
            self.face_state = face_state
        return FrameObservation(
            t=r.frame_ts, face=r.face, detections=self.last_detections, detections_t=self.last_detections_t,
            identity_match=self.identity_match, identity_t=self.identity_t,
            frame_mean=r.frame_mean, frame_diff=r.frame_diff, identity_spoof=self.identity_spoof,
        )

    # ------------------------------------------------------------------ what admins see
    def load(self, now_mono: float, received: int, dropped: int) -> dict:
        """How much of this student's stream the workers keep up with, over the last LOAD_WINDOW_S:
        the share of the frames received that were not dropped (replaced in the latest-frame slot
        before a worker took them). A frame still waiting or with a worker is not counted as lost:
        counting only finished results read a student as degraded whenever a frame was in flight.

        Under overload every student is served in turn (frames.py, workers.py), so each gets a reduced,
        equal rate: the status says so ("1 frame in N") with how old results are, rather than hiding it."""
        marks = self.load_marks
        marks.append((now_mono, received, dropped))
        while len(marks) > 2 and now_mono - marks[1][0] >= LOAD_WINDOW_S:
            marks.popleft()
        t0, received0, dropped0 = marks[0]
        got, lost = received - received0, dropped - dropped0
        share = None if got <= 0 or now_mono - t0 < 1.0 else min(1.0, max(0.0, 1.0 - lost / got))
        ages = sorted(self.result_ages)
        p95 = ages[min(len(ages) - 1, int(0.95 * len(ages)))] if ages else None
        # Overload: the detector's and identity's clocks run slower by about the share not analysed
        # (at most MAX_LOAD_STRETCH), so that they keep their part of the analysed frames and the cost
        # of a frame does not grow as fewer frames are analysed (which would deepen the overload).
        # Raised at once, lowered slowly once every frame is analysed again (no see-saw): one step a
        # second at most, however often the status is read (the loop's pushes, admins' requests).
        if share is not None and share < DEGRADED_SHARE:
            self.stretch = min(MAX_LOAD_STRETCH, max(self.stretch, 1.0 / max(share, 1e-6)))
        elif share is not None and share >= STRETCH_RELAX_SHARE and now_mono - self.stretch_relaxed_mono >= 1.0:
            self.stretch = max(1.0, self.stretch - STRETCH_RELAX_STEP)
            self.stretch_relaxed_mono = now_mono
        return {"analysed_share": None if share is None else round(share, 2),
                "one_in": None if not share else round(1.0 / share, 1),
                "result_age_p95_s": None if p95 is None else round(p95, 2),
                "degraded": share is not None and share < DEGRADED_SHARE, "intervals_x": round(self.stretch, 2)}

    def status(self, now: float, now_mono: float, frame, frame_stats: dict) -> dict:
        """The stream's status at student frame time `now`; `frame` is the newest frame in its slot."""
        sid = self.student_id
        susp = self.warnings.suspicion(sid, now)
        warnings = self.warnings.count(sid)
        face, dets = self.last_face, self.last_detections
        return {
            "student_id": sid,
            "session_id": self.session_id,
            "active": True,
            "name": self.name,
            "exam_id": self.exam_id,
            "frame_age_s": None if frame is None else round(now_mono - frame.received_mono, 2),
            "result_age_s": None if self.last_result_mono is None else round(now_mono - self.last_result_mono, 2),
            "face": face_summary(face),
            "faces": None if face is None else int(face.face_count),
            "persons": None if dets is None else dets.person_count,
            "objects": objects_summary(dets, self.rules.config.banned_class_ids),
            "identity": {"match": self.identity_match, "distance": self.identity_distance,
                         "enrolled": self.embedding is not None, "spoof": self.identity_spoof,
                         # Why the latest checks gave no verdict (a face too small or turned), and for how long.
                         "skipped": self.identity_skipped,
                         "skipped_for_s": None if self.identity_skipped_t is None
                         else round(max(0.0, now - self.identity_skipped_t), 1)},
            "warnings": warnings,
            # The dashboard's order: higher first, element by element, then by name (see risk_order).
            "risk": [round(float(susp.score), 3), warnings],
            "suspicion": {"score": susp.score, "components": susp.components, "explanation": susp.explanation},
            "active_rules": {k: round(v, 3) for k, v in self.engine.active_conditions(sid).items()},
            "auto_terminate": self.auto_terminate,
            "disabled_rules": sorted(self.disabled_rules),
            "frames": frame_stats | {
                "processed": self.processed, "detector_runs": self.detector_runs,
                "detector_cadence": self.cadence.summary(),
                "identity_checks": self.identity_checks, "identity_attempts": self.identity_attempts},
            "load": self.load(now_mono, int(frame_stats.get("received", 0)), int(frame_stats.get("dropped", 0))),
            "errors": list(self.last_errors),
            "terminated": self.terminated,
        }
