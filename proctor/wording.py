"""What each violation is called, said once: an admin sentence, a student sentence and a severity label.

The pages read it from here: templates through ``violation_wording``/``describe_details`` (the session
and result pages), JavaScript through the page's JSON data block (proctor/page_data.py puts
``wording_facts()`` there, so static/js keeps no copy of its own).

- The admin sentence is third person and names the student ("Ana Lima looked away from the screen
  for 6 s"). It is a template: ``{name}``, ``{for_duration}`` (" for 6 s" or "") and ``{objects}``
  ("cell phone 0.82"), filled in Python by ``admin_sentence`` and in the browser by the same rule.
- The student sentence is second person. For a rule it is the registry's message
  (config_vision.RULE_REGISTRY), because that is what the warning system sends to the student's page.
- The severity comes from the registry too; this module gives it a label and an icon, so a page
  never shows severity by colour alone.

tests/web/test_wording.py fails if a rule, a browser event or an outcome exists without wording here.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import config_vision

# Severity -> (label, icon); the icon is decoration (aria-hidden), the label is the text that carries it.
# Icons are plain characters found in common fonts (DejaVu has all four; U+26D4 "no entry" showed as a box).
SEVERITY_WORDING: dict[str, tuple[str, str]] = {
    "low": ("Notice", "ℹ"),
    "medium": ("Warning", "⚠"),
    "high": ("Serious", "‼"),
    "critical": ("Critical", "✖"),
}

# Admin sentence templates, one per rule of the registry (third person, the student named).
ADMIN_TEMPLATES: dict[str, str] = {
    "NO_FACE": "{name} was not visible to the camera{for_duration}",
    "MULTIPLE_FACES": "{name}: more than one person is in view{for_duration}",
    "DISTRACTION": "{name} looked away from the screen{for_duration}",
    "EYES_CLOSED": "{name} kept their eyes closed{for_duration}",
    "PROHIBITED_OBJECT": "{name}: a prohibited object is in view ({objects})",
    "IDENTITY_MISMATCH": "{name}: the person at the camera does not match the enrolled student{for_duration}",
    "CAMERA_OFF": "{name}'s camera was off, covered or frozen{for_duration}",
    "TAB_SWITCH": "{name} left the exam tab",
    "FULLSCREEN_EXIT": "{name} left full screen",
    "VOICE_DETECTED": "{name} was heard talking{for_duration}",
    "SCREEN_SHARE_STOPPED": "{name} stopped sharing their screen",
    "MULTIPLE_DISPLAYS": "{name} has a second display connected",
    "CAMERA_CHANGED": "{name} switched to another camera",
    "COPY": "{name} copied from the exam",
    "CUT": "{name} cut text from the exam",
    "PASTE": "{name} pasted into the exam",
    "RIGHT_CLICK": "{name} opened the context menu",
    "PRINT_SCREEN": "{name} pressed Print Screen",
    "DEVTOOLS": "{name} tried to open the developer tools",
}

# The student's result page, after the fact: second person, past tense, one per rule.
STUDENT_AFTERWARDS: dict[str, str] = {
    "NO_FACE": "Your face was not visible to the camera.",
    "MULTIPLE_FACES": "More than one person was in view.",
    "DISTRACTION": "You looked away from the screen.",
    "EYES_CLOSED": "Your eyes appeared closed.",
    "PROHIBITED_OBJECT": "A prohibited object (a phone, book or laptop) was in view.",
    "IDENTITY_MISMATCH": "The person at the camera did not match your registered face.",
    "CAMERA_OFF": "Your camera was off, covered or frozen.",
    "TAB_SWITCH": "You left the exam tab.",
    "FULLSCREEN_EXIT": "You left full screen.",
    "VOICE_DETECTED": "Talking was heard.",
    "SCREEN_SHARE_STOPPED": "You stopped sharing your screen.",
    "MULTIPLE_DISPLAYS": "A second display was connected.",
    "CAMERA_CHANGED": "You switched to another camera.",
    "COPY": "You copied from the exam.",
    "CUT": "You cut text from the exam.",
    "PASTE": "You pasted into the exam.",
    "RIGHT_CLICK": "You opened the context menu.",
    "PRINT_SCREEN": "You pressed Print Screen.",
    "DEVTOOLS": "You tried to open the developer tools.",
}

# How a session ended (ExamSession.termination_reason holds free text; these are the forms the code writes).
# warning_system.py's reason: "warning 3 of 3: TAB_SWITCH opens incident 2 ..." (counts may be weighted: 2.5);
# before incidents, "warning 3 of 3 for TAB_SWITCH".
AUTO_TERMINATION = re.compile(r"^Automatically terminated: warning (\d+(?:\.\d+)?) of (\d+)(?: for |: )([A-Z_]+)")
TIME_UP_PREFIX = "time expired"          # proctor/exam_service.TIME_UP_REASON
SUBMITTED_REASON = "submitted by the student"  # proctor/student/exam_api.submit
PROCTOR_DEFAULT_REASON = "Terminated by the proctor"  # proctor/live/actions.DEFAULT_REASON: no reason typed


@dataclass(frozen=True)
class Wording:
    type: str
    title: str
    severity: str
    severity_label: str
    icon: str
    admin: str      # template: {name}, {for_duration}, {objects}
    student: str    # the warning on the exam page (present tense)
    afterwards: str  # the result page (past tense)


def _unknown(type_: str) -> Wording:
    # A stored row of a type this code no longer knows still gets a readable line, not a crash.
    return Wording(type_, type_.replace("_", " ").capitalize(), "medium", *SEVERITY_WORDING["medium"],
                   "{name}: " + type_.replace("_", " ").lower(), "The proctoring system flagged something.",
                   "The proctoring system flagged something.")


def violation_wording(type_: str) -> Wording:
    """The wording of one violation type (a registry rule); an unknown stored type gets a plain fallback."""
    try:
        r = config_vision.rule(type_)
    except KeyError:
        return _unknown(str(type_))
    label, icon = SEVERITY_WORDING[r.severity]
    return Wording(r.name, r.title, r.severity, label, icon, ADMIN_TEMPLATES[r.name], r.message, STUDENT_AFTERWARDS[r.name])


def severity_label(severity: str) -> str:
    return SEVERITY_WORDING.get(severity, (str(severity).capitalize(), ""))[0]


def format_duration(seconds: Any) -> str:
    """6 -> "6 s", 75 -> "1 min 15 s"; "" for anything that is not a sensible duration."""
    if not _number(seconds) or seconds < 0 or seconds > 7 * 24 * 3600:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"


def format_objects(objects: Any) -> str:
    """[{"label": "cell phone", "score": 0.82}, ...] -> "cell phone 0.82, book 0.61"."""
    if not isinstance(objects, list):
        return ""
    parts = []
    for o in objects[:10]:
        if not isinstance(o, Mapping) or not isinstance(o.get("label"), str):
            continue
        score = o.get("score")
        parts.append(f"{o['label'][:40]} {score:.2f}" if _number(score) else o["label"][:40])
    return ", ".join(parts)


def admin_sentence(type_: str, name: str, details: Mapping[str, Any] | None = None) -> str:
    """"Ana Lima looked away from the screen for 6 s"; the browser fills the same template (static/js/admin/live.js)."""
    details = details if isinstance(details, Mapping) else {}
    duration = format_duration(details.get("duration_s"))
    objects = format_objects(details.get("objects")) or "not named"
    return violation_wording(type_).admin.format(name=name or "The student", for_duration=f" for {duration}" if duration else "",
                                                 objects=objects)


def student_sentence(type_: str) -> str:
    return violation_wording(type_).student


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- how a session ended

def termination_sentence(reason: str | None, *, audience: str) -> str:
    """ExamSession.termination_reason as a sentence for "student" (second person) or "admin"."""
    reason = (reason or "").strip()
    student = audience == "student"
    if not reason:
        return ""
    m = AUTO_TERMINATION.match(reason)
    if m:
        count, last = m.group(1), violation_wording(m.group(3))
        if student:
            return (f"Your exam was ended automatically after {count} proctoring warnings. "
                    f"The last one: {last.afterwards[0].lower()}{last.afterwards[1:]}")
        return f"Ended automatically after {count} warnings; the last: {last.title.lower()}."
    if reason.startswith(TIME_UP_PREFIX):
        return ("Time ran out, so your answers were submitted automatically." if student
                else "Time ran out; the answers were submitted automatically.")
    if reason == SUBMITTED_REASON:
        return "You submitted the exam." if student else "The student submitted the exam."
    if reason == PROCTOR_DEFAULT_REASON:
        return "A proctor ended your exam." if student else "Ended by a proctor (no reason given)."
    # Anything else is what a proctor typed when ending the exam.
    return f"A proctor ended your exam: {reason}" if student else f"Ended by a proctor: {reason}"


# --------------------------------------------------------------------------- violation details, readable

CAUSES = {
    "head_turned": "head turned away", "gazing": "eyes off the screen", "black": "the picture is black",
    "frozen": "the picture is frozen", "no_frames": "no pictures arrived", "spoof": "a face on a screen or photo",
}
SOURCES = {"browser": "the exam page"}
# Stored for the machinery, not for a reviewer: sequence numbers, raw clock readings, state names, the
# warning system's coded reason (the warning number is shown instead), client ids.
INTERNAL_KEYS = frozenset({"seq", "frame_t", "state", "reason", "client_id", "event", "t", "box", "class_id",
                           "cleared_at", "last_frame_t", "incident_t", "incident_opened"})
# Keys whose value is a clock reading (epoch seconds), shown as a time.
TIME_KEYS = {"since": "Began", "identity_t": "Identity checked"}
# An epoch reading this far from the exam is not a clock the page can place.
_PLAUSIBLE_OFFSET = timedelta(days=2)


def format_offset(seconds: float) -> str:
    """Seconds from the exam's start as "+12:34" (or "+1:02:03" past an hour; "-0:05" before the start)."""
    sign = "-" if seconds < 0 else "+"
    s = int(round(abs(seconds)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{sec:02d}" if h else f"{sign}{m}:{sec:02d}"


@dataclass(frozen=True)
class Moment:
    """A time on the session page: from the exam's start, and the UTC instant the page shows in local time."""
    offset: str
    utc: datetime

    @property
    def iso(self) -> str:
        return self.utc.replace(tzinfo=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

    @property
    def utc_text(self) -> str:
        return self.utc.strftime("%H:%M:%S") + " UTC"


def moment(at: datetime, start: datetime) -> Moment:
    return Moment(format_offset((at - start).total_seconds()), at)


def _epoch_moment(value: Any, start: datetime) -> Moment | None:
    if not _number(value):
        return None
    try:
        at = datetime.fromtimestamp(float(value), tz=timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None
    return moment(at, start) if abs(at - start) < _PLAUSIBLE_OFFSET else None


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _number(value):
        return f"{value:g}" if isinstance(value, int) else f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, str):
        return value[:200]
    return ""


def describe_details(details: Mapping[str, Any], start: datetime) -> list[tuple[str, str | Moment]]:
    """A violation's stored details as (label, text or Moment) rows for a reviewer, internals left out."""
    if not isinstance(details, Mapping):
        return []
    rows: list[tuple[str, str | Moment]] = []
    d = dict(details)
    if "unreadable" in d:
        return [("Details", "could not be read")]
    duration = format_duration(d.pop("duration_s", None))
    if duration:
        rows.append(("Lasted", duration))
    for key, label in TIME_KEYS.items():
        m = _epoch_moment(d.pop(key, None), start)
        if m is not None:
            rows.append((label, m))
    cause = d.pop("cause", None)
    if isinstance(cause, str):
        rows.append(("Cause", CAUSES.get(cause, cause.replace("_", " "))))
    objects = format_objects(d.pop("objects", None))
    if objects:
        rows.append(("Objects", objects))
    faces, persons = d.pop("face_count", None), d.pop("persons", None)
    if _number(faces):
        rows.append(("Faces seen", _plain(faces)))
    if _number(persons):
        rows.append(("People seen", _plain(persons)))
    angles = [f"{name} {float(d[k]):.0f}°" for k, name in (("yaw_deg", "left/right"), ("pitch_deg", "up/down"))
              if _number(d.get(k))]
    d.pop("yaw_deg", None), d.pop("pitch_deg", None)
    if angles:
        rows.append(("Head turned", ", ".join(angles)))
    if d.get("phone_at_ear") is True:
        rows.append(("Phone", "held at the ear"))
    d.pop("phone_at_ear", None)
    count = d.pop("warning_count", None)
    if _number(count):
        rows.append(("Warning number", _plain(count)))
    # warning_system.py: rules one moment fired together are parts of one incident, one warning between them
    incident, part, weight = d.pop("incident", None), d.pop("incident_part", None), d.pop("incident_weight", None)
    if _number(incident) and incident >= 1:
        text = f"#{_plain(incident)}" + (f", part {_plain(part)}" if _number(part) and part >= 1 else "")
        if _number(weight):
            text += f" (counts as {_plain(weight)} warning{'' if weight == 1 else 's'})"
        rows.append(("Incident", text))
    suspicion = d.pop("suspicion", None)
    if isinstance(suspicion, Mapping):
        suspicion = suspicion.get("score")
    if _number(suspicion):
        rows.append(("Suspicion", f"{suspicion:.0f} / 100"))
    source = d.pop("source", None)
    if isinstance(source, str):
        rows.append(("Reported by", SOURCES.get(source, source)))
    speech_ms = d.pop("duration_ms", None)
    if _number(speech_ms):
        rows.append(("Sound lasted", f"{speech_ms / 1000:.1f} s"))
    for key in sorted(d):
        if key in INTERNAL_KEYS or key.endswith("_id"):
            continue
        value = d[key]
        if _number(value) and value > 1e9:  # another clock reading: a time, or nothing
            m = _epoch_moment(value, start)
            if m is not None:
                rows.append((key.replace("_", " ").capitalize(), m))
            continue
        text = _plain(value)
        if text:
            rows.append((key.replace("_", " ").capitalize(), text))
    return rows


# --------------------------------------------------------------------------- liveness

def liveness_wording(config: Any, *, audience: str) -> str:
    """What face_liveness.LivenessCheck accepts, said once: a blink OR a head turn, either one is enough
    (not both), seen within any LIVENESS_WINDOW_S of the check. ``config`` is the server's VisionConfig."""
    turn, window = f"{float(config.LIVENESS_TURN_DEG):g}", f"{float(config.LIVENESS_WINDOW_S):g}"
    if audience == "student":
        return (f"Then blink, or turn your head slowly to one side (about {turn}°) and back. "
                f"Either one is enough, within {window} seconds.")
    return (f"the student blinks, or turns their head at least {turn}° to one side and back: either one is enough, "
            f"seen within {window} s")


# --------------------------------------------------------------------------- for the browser

def wording_facts() -> dict[str, Any]:
    """The JSON-able wording for the page's data block: every rule's sentences and severity label."""
    return {
        "violations": {name: {"title": w.title, "severity": w.severity, "severity_label": w.severity_label,
                              "icon": w.icon, "admin": w.admin, "student": w.student}
                       for name in config_vision.RULES for w in (violation_wording(name),)},
        "severities": {s: {"label": label, "icon": icon} for s, (label, icon) in SEVERITY_WORDING.items()},
    }
