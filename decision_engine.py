"""Decision engine: turns timestamped observations into rule events.

Pure and clock-free: it never reads the clock and does no I/O. Every observation carries its
frame time ``t`` (seconds, any monotonic origin) and rules use only that time, so tests drive
the engine with a fake clock and a recorded clip gives the same events every time.

Each rule has the shape of a Home Assistant ``for:`` trigger with hysteresis:

* a *condition* computed from one observation: True, False, or None (unknown - the stage
  that would tell did not run, or its evidence is stale; unknown never fires a rule and
  never ends one);
* an *on-for* time: the condition must hold this long before the rule starts
  (e.g. ``TIME_NO_FACE_S``);
* an *off-for* time, ``TIME_CLEAR_S``: the condition must be absent this long before a
  started rule ends, and before a pending (not yet started) condition is forgotten. A
  brief flicker (one frame with a face in the middle of an absence) therefore neither
  restarts the on-for timer nor ends a started rule.

A rule "started" event is emitted once when the on-for time is reached, an "ended" event
when the condition has been absent for ``TIME_CLEAR_S``. Browser-reported events
(TAB_SWITCH, FULLSCREEN_EXIT, VOICE_DETECTED, CAMERA_OFF) become "instant" events.

Observations whose time goes backwards or repeats are ignored (no events, no state
change). Evidence gaps longer than a rule's freshness window restart a pending condition,
so an on-for timer never spans a stretch with no evidence.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Hashable

from config_vision import BROWSER_EVENT_RULES, FRAME_RULE_NAMES, RULES, VisionConfig
from config_vision import COCO_CELL_PHONE
from config_vision import rule as registered_rule
from face_pipeline import FaceObservation
from person_pipeline import Detections

STARTED = "started"
ENDED = "ended"
INSTANT = "instant"
SPOOF_EXPLANATION = "face on a screen or photo"  # IDENTITY_MISMATCH's details when the check saw a picture
TIME_EPS_S = 1e-6  # frame times are floats: 3.3 - 0.3 must count as the full 3.0 s

@dataclass(frozen=True)
class FrameObservation:
    """Everything known about one frame at frame time ``t`` (seconds).

    ``face`` None means the face stage did not run (not "no face"); ``detections`` None
    means no detector result is available. ``detections_t`` / ``identity_t`` say when that
    evidence was produced (it may come from an earlier frame); None means ``t``.
    ``frame_mean`` is the mean luma 0-255, ``frame_diff`` the mean absolute difference from
    the previous frame (both None when not measured).
    """

    t: float
    face: FaceObservation | None
    detections: Detections | None = None
    detections_t: float | None = None
    identity_match: bool | None = None
    identity_t: float | None = None
    frame_mean: float | None = None
    frame_diff: float | None = None
    identity_spoof: bool = False  # the identity check's face was on a screen or a printed photo (identity_match is False)


@dataclass(frozen=True)
class BrowserEvent:
    """Something the exam page reported: TAB_SWITCH, FULLSCREEN_EXIT, VOICE_DETECTED, CAMERA_OFF."""

    type: str
    t: float
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RuleEvent:
    rule: str
    state: str  # "started" | "ended" | "instant"
    t: float
    severity: str
    details: dict

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.rule, "state": self.state, "t": round(self.t, 3), "severity": self.severity, **self.details}


@dataclass(frozen=True)
class Condition:
    """One rule's verdict on one observation."""

    active: bool
    on_for_s: float = 0.0  # how long it must hold before the rule starts (when active)
    details: dict = field(default_factory=dict)
    cause: str = ""


# --------------------------------------------------------------------------- rules

class Rule:
    """One rule: a condition over an observation. The engine owns timing and hysteresis."""

    name: str = ""

    def condition(self, obs: FrameObservation, cfg: VisionConfig, now: float, state: "_RuleState") -> Condition | None:
        raise NotImplementedError

    def freshness_s(self, cfg: VisionConfig) -> float:
        """The longest gap between pieces of evidence that still counts as continuous."""
        return float(cfg.OBSERVATION_STALE_S)


def _face_known(obs: FrameObservation) -> FaceObservation | None:
    return obs.face if isinstance(obs.face, FaceObservation) else None


def _short_side(box: tuple[int, int, int, int] | None) -> int | None:
    return None if box is None else min(box[2] - box[0], box[3] - box[1])


def _fresh_detections(obs: FrameObservation, cfg: VisionConfig, now: float) -> Detections | None:
    if obs.detections is None:
        return None
    made = obs.t if obs.detections_t is None else obs.detections_t
    if not _finite(made) or now - made > cfg.OBSERVATION_STALE_S or made > now:
        return None
    return obs.detections


class NoFaceRule(Rule):
    name = "NO_FACE"

    def condition(self, obs, cfg, now, state):
        face = _face_known(obs)
        if face is None:
            return None
        if face.face_detected and face.face_count > 0:
            return Condition(False)
        return Condition(True, cfg.TIME_NO_FACE_S, {"face_count": 0})


class MultipleFacesRule(Rule):
    name = "MULTIPLE_FACES"

    def condition(self, obs, cfg, now, state):
        face = _face_known(obs)
        dets = _fresh_detections(obs, cfg, now)
        if face is None and dets is None:
            return None
        faces = face.face_count if face is not None else None
        persons = dets.person_count if dets is not None else None
        details = {"face_count": faces, "persons": persons}
        if (faces or 0) > 1 or (persons or 0) > 1:
            return Condition(True, cfg.TIME_MULTIPLE_PERSONS_S, details)
        return Condition(False)


class DistractionRule(Rule):
    """Head turned (yaw/pitch) for TIME_HEAD_TURNED_S, or gaze off screen for TIME_GAZING_S."""

    name = "DISTRACTION"

    def condition(self, obs, cfg, now, state):
        face = _face_known(obs)
        if face is None:
            return None
        if not face.face_detected:
            return Condition(False)  # absent, not distracted: NO_FACE covers it
        causes: list[tuple[float, str]] = []
        details: dict[str, Any] = {}
        if face.yaw_deg is not None and abs(face.yaw_deg) > cfg.YAW_THRESHOLD_DEG:
            causes.append((cfg.TIME_HEAD_TURNED_S, "head_turned"))
        if face.pitch_deg is not None and abs(face.pitch_deg) > cfg.PITCH_THRESHOLD_DEG:
            causes.append((cfg.TIME_HEAD_TURNED_S, "head_turned"))
        eyes_closed = face.ear_left is not None and face.ear_right is not None and max(face.ear_left, face.ear_right) < cfg.EAR_THRESHOLD
        if face.iris_offset is not None and not eyes_closed and abs(face.iris_offset) > cfg.IRIS_OFFSET_THRESHOLD:
            causes.append((cfg.TIME_GAZING_S, "gazing"))
        if face.yaw_deg is None and face.pitch_deg is None and face.iris_offset is None:
            return None
        for key, value in (("yaw_deg", face.yaw_deg), ("pitch_deg", face.pitch_deg), ("iris_offset", face.iris_offset)):
            if value is not None:
                details[key] = round(float(value), 3)
        if not causes:
            return Condition(False)
        on_for, cause = min(causes)
        details["cause"] = cause
        return Condition(True, on_for, details, cause)


class EyesClosedRule(Rule):
    """Both eyes' lids closed (EAR below EAR_THRESHOLD) for TIME_EYES_CLOSED_S.

    Lids that look closed on a head turned down beyond EYES_CLOSED_MAX_PITCH_DOWN_DEG are not
    judged (unknown): from a camera above the eyes, open eyes looking down at the keyboard or a
    sheet show their upper lids over the iris and read as low an EAR as a blink. Looking down is
    a gaze question, DISTRACTION's (PITCH_THRESHOLD_DEG), not sleep. Unknown neither starts the
    rule nor ends it, so a sleeper whose head sinks stays reported.

    Eyes on a face box smaller than EYES_CLOSED_MIN_FACE_PX (short side) are not judged either way
    (unknown): the lid opening is then two or three pixels and the EAR of open eyes strays under the
    bar (bench/eyes_face_size.py). A face without a box (no size known) is judged.
    """

    name = "EYES_CLOSED"

    def condition(self, obs, cfg, now, state):
        face = _face_known(obs)
        if face is None:
            return None
        if not face.face_detected:
            return Condition(False)
        if face.ear_left is None or face.ear_right is None:
            return None
        face_px = _short_side(face.box)
        if face_px is not None and face_px < cfg.EYES_CLOSED_MIN_FACE_PX:
            return None  # too small to read the lids, open or closed
        if not (face.ear_left < cfg.EAR_THRESHOLD and face.ear_right < cfg.EAR_THRESHOLD):
            return Condition(False)
        down = face.pitch_down_deg
        if down is not None and down > cfg.EYES_CLOSED_MAX_PITCH_DOWN_DEG:
            return None  # looking down: low lids over open eyes
        details = {"ear_left": round(face.ear_left, 3), "ear_right": round(face.ear_right, 3)}
        if down is not None:
            details["pitch_down_deg"] = round(down, 1)
        if face_px is not None:
            details["face_px"] = face_px
        return Condition(True, cfg.TIME_EYES_CLOSED_S, details)


class ProhibitedObjectRule(Rule):
    """A banned object above its class's bar, or a phone at the ear (``Detections.phone_at_ear``: a
    hand beside the head holding something phone-ish, which counts as a phone while phones are
    banned). Both reach the rule after ObjectEvidence's k of n runs in the live loop."""

    name = "PROHIBITED_OBJECT"

    def condition(self, obs, cfg, now, state):
        dets = _fresh_detections(obs, cfg, now)
        if dets is None:
            return None
        banned = [d for d in dets.banned(cfg.banned_class_ids) if d.score >= cfg.class_confidence(d.class_id)]
        at_ear = bool(dets.phone_at_ear) and COCO_CELL_PHONE in cfg.banned_class_ids
        if not banned and not at_ear:
            return Condition(False)
        objects = [{"label": d.label, "class_id": d.class_id, "score": round(float(d.score), 3),
                    "box": [round(float(v), 1) for v in d.box]} for d in sorted(banned, key=lambda d: -d.score)]
        if at_ear:
            objects.append({"label": "phone at ear", "class_id": COCO_CELL_PHONE})
            return Condition(True, cfg.TIME_BANNED_OBJECT_S, {"objects": objects, "phone_at_ear": True})
        return Condition(True, cfg.TIME_BANNED_OBJECT_S, {"objects": objects})


class IdentityMismatchRule(Rule):
    """The live face is not the enrolled student, or is a picture of a face (a screen or a print).

    One check is not a verdict: the latest check must mismatch and so must at least
    IDENTITY_MISMATCH_MIN_CHECKS of the last IDENTITY_MISMATCH_WINDOW_CHECKS checks (a spoof counts
    as a mismatch), so one unlucky frame of the right student (blur, a half-turned head) never fires
    it. Each check counts once, however many frames carry its verdict (``identity_t`` tells them
    apart; None: every observation is a check of its own). A check that judged no face (too small,
    turned) is no check: the runtime sends no verdict for it.
    """

    name = "IDENTITY_MISMATCH"

    def freshness_s(self, cfg):
        # Identity is checked every IDENTITY_CHECK_EVERY_S, so its evidence is sparser.
        return float(cfg.IDENTITY_CHECK_EVERY_S + cfg.OBSERVATION_STALE_S)

    def condition(self, obs, cfg, now, state):
        if obs.identity_match is None:
            return None
        made = obs.t if obs.identity_t is None else obs.identity_t
        if not _finite(made) or made > now or now - made > self.freshness_s(cfg):
            return None
        if state.check_t is None or made > state.check_t:  # a new check: count its verdict once
            state.check_t = made
            state.checks.append(not obs.identity_match)
            del state.checks[:-int(cfg.IDENTITY_MISMATCH_WINDOW_CHECKS)]
        if obs.identity_match:
            return Condition(False)
        agreeing = sum(state.checks)
        if agreeing < int(cfg.IDENTITY_MISMATCH_MIN_CHECKS):
            return None  # not yet agreed: the next check (soon after a mismatch) decides
        details = {"identity_t": round(made, 3), "mismatched_checks": agreeing, "of_checks": len(state.checks)}
        if obs.identity_spoof:  # presentation_attack.py: not the student, whoever the picture shows
            return Condition(True, cfg.TIME_IDENTITY_MISMATCH_S,
                             {**details, "cause": "spoof", "explanation": SPOOF_EXPLANATION}, "spoof")
        return Condition(True, cfg.TIME_IDENTITY_MISMATCH_S, details)


class CameraOffRule(Rule):
    """Black or frozen frames (from observations); "no frames at all" is found by tick()."""

    name = "CAMERA_OFF"

    def condition(self, obs, cfg, now, state):
        if obs.frame_mean is not None and obs.frame_mean < cfg.BLACK_FRAME_MEAN:
            return Condition(True, cfg.TIME_CAMERA_OFF_S, {"cause": "black", "frame_mean": round(obs.frame_mean, 2)}, "black")
        if obs.frame_diff is not None and obs.frame_diff < cfg.FROZEN_FRAME_DIFF:
            return Condition(True, cfg.TIME_CAMERA_OFF_S, {"cause": "frozen", "frame_diff": round(obs.frame_diff, 3)}, "frozen")
        if obs.frame_mean is not None or obs.frame_diff is not None or state.cause == "no_frames":
            return Condition(False)  # a frame arrived, so "no frames" is over
        return None


FRAME_RULES: tuple[Rule, ...] = (
    NoFaceRule(), MultipleFacesRule(), DistractionRule(), EyesClosedRule(),
    ProhibitedObjectRule(), IdentityMismatchRule(), CameraOffRule(),
)
if {r.name for r in FRAME_RULES} != set(FRAME_RULE_NAMES):  # the registry says which rules come from frames
    raise RuntimeError(f"decision_engine.FRAME_RULES {[r.name for r in FRAME_RULES]} disagree with "
                       f"config_vision's frame rules {list(FRAME_RULE_NAMES)}")


# --------------------------------------------------------------------------- engine

@dataclass
class _RuleState:
    since: float | None = None         # when the condition began (pending or active)
    active: bool = False               # "started" was emitted
    absent_since: float | None = None  # first known-false observation while pending/active
    last_known_t: float | None = None
    cause: str = ""
    details: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)  # IDENTITY_MISMATCH: the latest checks' verdicts, True = mismatch
    check_t: float | None = None                 # IDENTITY_MISMATCH: when the newest counted check was made


@dataclass
class _StudentState:
    rules: dict[str, _RuleState] = field(default_factory=lambda: {r.name: _RuleState() for r in FRAME_RULES})
    disabled: frozenset[str] = frozenset()
    last_t: float | None = None           # last accepted observation time
    last_browser_t: float | None = None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class DecisionEngine:
    """Per-student rule state. One instance may serve many students (keyed by any hashable)."""

    def __init__(self, config: VisionConfig):
        self.config = config
        self._students: dict[Hashable, _StudentState] = {}

    # -- public API
    def evaluate(self, student: Hashable, observation: FrameObservation, t: float) -> list[RuleEvent]:
        """Feed one observation at frame time ``t``; returns the events it causes (may be empty)."""
        if not isinstance(observation, FrameObservation):
            raise TypeError("observation must be a FrameObservation")
        if not _finite(t):
            return []
        st = self._state(student)
        if st.last_t is not None and t <= st.last_t:
            return []  # time went backwards or repeated: ignore this observation
        st.last_t = t
        events: list[RuleEvent] = []
        for rule in FRAME_RULES:
            if not self._enabled(st, rule.name):
                continue
            rs = st.rules[rule.name]
            cond = rule.condition(observation, self.config, t, rs)
            event = self._step(rule, rs, cond, t)
            if event is not None:
                events.append(event)
        return events

    def browser_event(self, student: Hashable, event: BrowserEvent) -> list[RuleEvent]:
        """A browser-reported event becomes one "instant" rule event (unless disabled)."""
        if not isinstance(event, BrowserEvent):
            raise TypeError("event must be a BrowserEvent")
        if event.type not in BROWSER_EVENT_RULES:
            raise ValueError(f"unknown browser event type {event.type!r}; expected one of {', '.join(BROWSER_EVENT_RULES)}")
        if not _finite(event.t):
            return []
        st = self._state(student)
        if st.last_browser_t is not None and event.t < st.last_browser_t:
            return []  # out of order: ignore
        st.last_browser_t = event.t
        if not self._enabled(st, event.type):
            return []
        if event.type == "CAMERA_OFF" and st.rules["CAMERA_OFF"].active:
            return []  # already reported from the frames
        details = dict(event.details) if isinstance(event.details, dict) else {}
        details.setdefault("source", "browser")
        return [RuleEvent(event.type, INSTANT, float(event.t), registered_rule(event.type).severity, details)]

    def tick(self, student: Hashable, t: float) -> list[RuleEvent]:
        """Time passes without a frame: CAMERA_OFF starts once no frame came for TIME_CAMERA_OFF_S."""
        if not _finite(t):
            return []
        st = self._students.get(student)
        if st is None or st.last_t is None or t <= st.last_t or not self._enabled(st, "CAMERA_OFF"):
            return []
        rs = st.rules["CAMERA_OFF"]
        gap = t - st.last_t
        if rs.active or gap + TIME_EPS_S < self.config.TIME_CAMERA_OFF_S:
            return []
        rs.since, rs.active, rs.absent_since = st.last_t, True, None
        rs.last_known_t, rs.cause = t, "no_frames"
        rs.details = {"cause": "no_frames", "last_frame_t": round(st.last_t, 3), "duration_s": round(gap, 3)}
        return [RuleEvent("CAMERA_OFF", STARTED, t, registered_rule("CAMERA_OFF").severity, dict(rs.details))]

    def set_disabled_rules(self, student: Hashable, rules: set[str]) -> None:
        """Rules this student is excused from (an accommodation). Active ones are dropped silently."""
        unknown = set(rules) - set(RULES)
        if unknown:
            raise ValueError(f"unknown rule(s): {', '.join(sorted(unknown))}")
        st = self._state(student)
        st.disabled = frozenset(rules)
        for name in st.disabled & set(st.rules):
            st.rules[name] = _RuleState()

    def active_conditions(self, student: Hashable) -> dict[str, float]:
        """Started (not yet ended) rules -> the frame time their condition began."""
        st = self._students.get(student)
        if st is None:
            return {}
        return {name: rs.since for name, rs in st.rules.items() if rs.active and rs.since is not None}

    def forget(self, student: Hashable) -> None:
        self._students.pop(student, None)

    # -- internals
    def _state(self, student: Hashable) -> _StudentState:
        st = self._students.get(student)
        if st is None:
            st = self._students[student] = _StudentState()
        return st

    def _enabled(self, st: _StudentState, rule: str) -> bool:
        return self.config.rule_enabled(rule) and rule not in st.disabled

    def _step(self, rule: Rule, rs: _RuleState, cond: Condition | None, t: float) -> RuleEvent | None:
        cfg = self.config
        if cond is None:
            return None  # unknown: neither starts nor ends anything
        gap_broken = rs.last_known_t is not None and t - rs.last_known_t > rule.freshness_s(cfg)
        rs.last_known_t = t
        if cond.active:
            rs.absent_since = None
            if rs.since is None or (gap_broken and not rs.active):
                rs.since = t  # a new condition, or a pending one after a gap in the evidence
            rs.details = dict(cond.details)
            rs.cause = cond.cause
            if not rs.active and t - rs.since + TIME_EPS_S >= cond.on_for_s:
                rs.active = True
                details = {**cond.details, "since": round(rs.since, 3), "duration_s": round(t - rs.since, 3)}
                return RuleEvent(rule.name, STARTED, t, registered_rule(rule.name).severity, details)
            return None
        # known false
        if rs.since is None:
            return None
        if rs.absent_since is None:
            rs.absent_since = t
        if t - rs.absent_since + TIME_EPS_S < cfg.TIME_CLEAR_S and not (gap_broken and not rs.active):
            return None  # flicker: keep the condition for now
        was_active, since, absent_since, last = rs.active, rs.since, rs.absent_since, rs.details
        rs.since, rs.active, rs.absent_since, rs.cause, rs.details = None, False, None, "", {}
        if not was_active:
            return None
        details = {**last, "since": round(since, 3), "cleared_at": round(absent_since, 3),
                   "duration_s": round(absent_since - since, 3)}
        return RuleEvent(rule.name, ENDED, t, registered_rule(rule.name).severity, details)
