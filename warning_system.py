"""Warning system: turns rule events into warnings, cooldowns, termination and a suspicion score.

Pure: no I/O and no clock; every call carries the event's frame time.

* Each "started" or "instant" rule event may issue a warning; "ended" events never do.
* After a warning of one rule, further warnings of that rule wait ``WARNING_COOLDOWN_S``
  (the event is then *held by cooldown*; it still counts as evidence for the score).
* Incidents: one moment of the scene (a second person walks in holding a phone, the student
  turns to them) fires several rules within a few seconds. Warnings that start within
  ``INCIDENT_WINDOW_S`` of an incident's first warning are parts of that incident, numbered
  from 1 per student. Every part is issued (stored as its own violation, with the incident's
  number), but the warning count counts incidents, each weighted by its most severe part
  (``INCIDENT_WEIGHT_LOW`` .. ``INCIDENT_WEIGHT_CRITICAL``). A later part more severe than the
  incident so far raises the incident's weight, and the count by the difference: rules fire
  after their own hold times (identity mismatch, the critical one, after the longest), so the
  order of the parts says nothing about the moment and must not lower its weight. The window
  runs from the incident's first warning, not from its latest part, so a long run of warnings
  cannot chain into one incident.
* Auto-termination: when the (weighted) warning count reaches ``INSTANT_PENALTY_THRESHOLD`` the
  decision says ``terminate`` - but only if the caller passes ``auto_terminate=True`` (an exam
  setting, OFF by default, ``AUTO_TERMINATE_DEFAULT``).
* The count is a number of warnings: an ``int`` when whole (the default weights are whole but
  for 'low', 0.5), else a float.
* The suspicion score (0-100) summarises the session's evidence for a human reviewer: which
  signals, how long, how often, with what weight and what each contributed. It is advisory
  only: it never terminates a session and never fails anyone - ``terminate`` is decided from
  the warning count alone, never from the score.
* ``clear`` resets the warning count and the cooldowns and closes the open incident (an admin
  forgave the warnings: a part arriving later opens a new incident); incident numbers go on, so
  they stay unique within the session. The evidence behind the suspicion score is kept, because
  it is the session's record.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Hashable, Iterable

from config_vision import RULES, SEVERITIES, VisionConfig
from config_vision import rule as registered_rule
from decision_engine import ENDED, INSTANT, STARTED, RuleEvent

# Each signal's weight (0..1) and the student's message come from config_vision.RULE_REGISTRY.
SUSPICION_POINTS_PER_EVENT = 4.0    # raw points per occurrence (before the weight)
SUSPICION_POINTS_PER_SECOND = 0.5   # raw points per second a condition lasted (before the weight)
SUSPICION_SCALE = 50.0              # raw points at which the score reaches 63 (1 - 1/e); saturates at 100

Count = int | float  # warnings, weighted by severity: an int when whole


@dataclass(frozen=True)
class WarningDecision:
    issued: bool
    held_by_cooldown: bool
    count: Count                   # the weighted incident count after this event
    terminate: bool
    reason: str
    message: str = ""              # the text for the student when issued
    incident: int = 0              # the incident this warning is a part of (1, 2, ... per student); 0: none
    opened_incident: bool = False  # this warning opened the incident (False: a later part of it)
    incident_part: int = 0         # 1 for the opening warning, 2.. for later parts
    incident_weight: Count = 0     # the incident's weight so far (its most severe part's)
    incident_t: float | None = None  # frame time of the incident's first warning


@dataclass(frozen=True)
class Suspicion:
    score: float                 # 0..100, advisory only
    components: list[dict]       # {signal, seconds, count, weight, contribution}
    explanation: str


@dataclass
class _Signal:
    count: int = 0
    seconds: float = 0.0           # finished durations
    open_since: float | None = None  # a started condition not yet ended


@dataclass
class _Incident:
    number: int
    opened_t: float
    weight: float
    parts: int = 1


@dataclass
class _StudentWarnings:
    count: float = 0.0
    last_warned: dict[str, float] = field(default_factory=dict)
    signals: dict[str, _Signal] = field(default_factory=dict)
    incidents: int = 0               # the last incident's number (never reset: numbers stay unique)
    open: _Incident | None = None    # the incident later warnings may join


def tidy_count(value: float) -> Count:
    """A weighted count as people read it: 2, not 2.0; 1.5 stays 1.5."""
    value = round(float(value), 3)
    return int(value) if value.is_integer() else value


def severity_weight(config: VisionConfig, severity: str) -> float:
    """What an incident of this severity adds to the warning count (an unknown severity counts as medium)."""
    name = severity if severity in SEVERITIES else "medium"
    return float(getattr(config, f"INCIDENT_WEIGHT_{name.upper()}"))


class WarningSystem:
    def __init__(self, config: VisionConfig):
        self.config = config
        self._students: dict[Hashable, _StudentWarnings] = {}

    def on_event(self, student: Hashable, event: RuleEvent, auto_terminate: bool = False) -> WarningDecision:
        if not isinstance(event, RuleEvent):
            raise TypeError("event must be a RuleEvent")
        if event.rule not in RULES:
            raise ValueError(f"unknown rule {event.rule!r}")
        if event.state not in (STARTED, ENDED, INSTANT):
            raise ValueError(f"unknown event state {event.state!r}")
        st = self._students.setdefault(student, _StudentWarnings())
        threshold = int(self.config.INSTANT_PENALTY_THRESHOLD)
        terminate = bool(auto_terminate) and st.count >= threshold
        count = tidy_count(st.count)
        t = float(event.t)
        if not math.isfinite(t):
            return WarningDecision(False, False, count, terminate, "event time is not a number: ignored")
        self._record_evidence(st, event, t)
        if event.state == ENDED:
            return WarningDecision(False, False, count, terminate, f"{event.rule} ended: no warning")
        last = st.last_warned.get(event.rule)
        cooldown = float(self.config.WARNING_COOLDOWN_S)
        if last is not None and t - last < cooldown:
            ago = max(0.0, t - last)
            return WarningDecision(False, True, count, terminate,
                                   f"held: {event.rule} was warned {ago:.1f} s ago (cooldown {cooldown:g} s)")
        st.last_warned[event.rule] = t
        weight = severity_weight(self.config, event.severity)
        incident = st.open
        # abs(): a frame's result may arrive after a browser event stamped a little later
        if incident is not None and abs(t - incident.opened_t) < float(self.config.INCIDENT_WINDOW_S):
            incident.parts += 1
            rise = max(0.0, weight - incident.weight)
            incident.weight += rise
            st.count += rise
            what = f"{event.rule} is part {incident.parts} of incident {incident.number}"
            if rise:
                what += f" (its weight rises to {tidy_count(incident.weight):g})"
        else:
            st.incidents += 1
            incident = st.open = _Incident(st.incidents, t, weight)
            st.count += weight
            what = f"{event.rule} opens incident {incident.number} (weight {tidy_count(weight):g})"
        count = tidy_count(st.count)
        terminate = bool(auto_terminate) and st.count >= threshold
        reason = f"warning {count:g} of {threshold}: {what}"
        if terminate:
            reason += f"; auto-terminate: {count:g} warnings reached the threshold {threshold}"
        elif not auto_terminate and st.count >= threshold:
            reason += " (threshold reached; auto-terminate is off, an admin decides)"
        return WarningDecision(True, False, count, terminate, reason, registered_rule(event.rule).message,
                               incident=incident.number, opened_incident=incident.parts == 1,
                               incident_part=incident.parts, incident_weight=tidy_count(incident.weight),
                               incident_t=incident.opened_t)

    def clear(self, student: Hashable, t: float) -> None:
        """Reset the warning count and cooldowns; the suspicion evidence is kept."""
        st = self._students.get(student)
        if st is not None:
            st.count = 0.0
            st.last_warned.clear()
            st.open = None

    def restore(self, student: Hashable, count: Count, warned_at: Iterable[tuple[str, float]] = (),
                last_incident: int = 0, open_incident: tuple[float, Count] | None = None) -> None:
        """Go on from a count, cooldowns and incidents kept elsewhere (the stored violations of a session
        opened again): ``warned_at`` gives each rule's last warning time (frame time); ``last_incident``
        the highest incident number used (new incidents are numbered after it); ``open_incident`` the
        (frame time, weight) of the incident of the last warning since a clear, which later parts may
        still join within INCIDENT_WINDOW_S."""
        if isinstance(count, bool) or not isinstance(count, (int, float)) or not math.isfinite(count) or count < 0:
            raise ValueError(f"count must be a number >= 0, got {count!r}")
        if isinstance(last_incident, bool) or not isinstance(last_incident, int) or last_incident < 0:
            raise ValueError(f"last_incident must be a whole number >= 0, got {last_incident!r}")
        st = self._students.setdefault(student, _StudentWarnings())
        st.count = float(count)
        st.incidents = max(st.incidents, last_incident)
        for rule, t in warned_at:
            if rule in RULES and math.isfinite(float(t)):
                st.last_warned[rule] = float(t)
        if open_incident is not None and last_incident > 0:
            opened_t, weight = (float(x) for x in open_incident)
            if math.isfinite(opened_t) and math.isfinite(weight) and weight >= 0:
                st.open = _Incident(last_incident, opened_t, weight)

    def count(self, student: Hashable) -> Count:
        """The weighted incident count (what auto-terminate compares with the threshold)."""
        st = self._students.get(student)
        return tidy_count(st.count) if st is not None else 0

    def suspicion(self, student: Hashable, t: float) -> Suspicion:
        """The advisory score at frame time ``t`` (open conditions count up to ``t``)."""
        st = self._students.get(student)
        rows = []
        for rule in RULES:
            sig = st.signals.get(rule) if st is not None else None
            if sig is None or (sig.count == 0 and sig.seconds == 0 and sig.open_since is None):
                continue
            seconds = sig.seconds
            if sig.open_since is not None and math.isfinite(t) and t > sig.open_since:
                seconds += t - sig.open_since
            weight = registered_rule(rule).weight
            raw = weight * (sig.count * SUSPICION_POINTS_PER_EVENT + seconds * SUSPICION_POINTS_PER_SECOND)
            rows.append((rule, seconds, sig.count, weight, raw))
        total_raw = sum(r[4] for r in rows)
        score = 100.0 * (1.0 - math.exp(-total_raw / SUSPICION_SCALE)) if total_raw > 0 else 0.0
        components = [
            {"signal": rule, "seconds": round(seconds, 1), "count": count, "weight": weight,
             "contribution": round(score * raw / total_raw, 1)}
            for rule, seconds, count, weight, raw in sorted(rows, key=lambda r: -r[4])
        ]
        if components:
            parts = "; ".join(
                f"{c['signal']} {c['count']}x" + (f" for {c['seconds']:g} s" if c["seconds"] else "")
                + f" (weight {c['weight']:g}) -> {c['contribution']:g}"
                for c in components
            )
            explanation = f"Suspicion {score:.0f}/100 from: {parts}."
        else:
            explanation = "Suspicion 0/100: no signals so far."
        explanation += " Advisory only: the score never terminates or fails a session."
        return Suspicion(round(score, 1), components, explanation)

    def forget(self, student: Hashable) -> None:
        self._students.pop(student, None)

    @staticmethod
    def _record_evidence(st: _StudentWarnings, event: RuleEvent, t: float) -> None:
        sig = st.signals.setdefault(event.rule, _Signal())
        if event.state == INSTANT:
            sig.count += 1
        elif event.state == STARTED:
            sig.count += 1
            since = event.details.get("since") if isinstance(event.details, dict) else None
            start = float(since) if isinstance(since, (int, float)) and math.isfinite(since) and since <= t else t
            if sig.open_since is None:
                sig.open_since = start
        elif sig.open_since is not None:  # ended
            cleared = event.details.get("cleared_at") if isinstance(event.details, dict) else None
            end = float(cleared) if isinstance(cleared, (int, float)) and math.isfinite(cleared) else t
            sig.seconds += max(0.0, end - sig.open_since)
            sig.open_since = None
