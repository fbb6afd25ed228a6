"""The rule registry (config_vision.RULE_REGISTRY) is the one place a rule is described: the
decision engine's severities, the warning system's weights and messages, and the exam page's
thresholds all come from it."""
from __future__ import annotations

import dataclasses
import json

import pytest

import config_vision
from config_vision import (BROWSER_EVENT_RULES, FRAME_RULE_NAMES, RULE_REGISTRY, RULES, VisionConfigError,
                           browser_rules, load_vision_config, rule)
from decision_engine import FRAME_RULES, STARTED, BrowserEvent, DecisionEngine, FrameObservation
from face_pipeline import FaceObservation
from person_pipeline import Detection, Detections
from warning_system import WarningSystem


def cfg(**overrides):
    return load_vision_config(env={}, **overrides)


FACE = FaceObservation(True, 1, yaw_deg=0.0, pitch_deg=0.0, ear_left=0.3, ear_right=0.3, iris_offset=0.0)
# One observation per frame rule that makes that rule's condition hold.
BAD_FRAMES = {
    "NO_FACE": lambda t: FrameObservation(t=t, face=FaceObservation(False, 0), frame_mean=120.0, frame_diff=4.0),
    "MULTIPLE_FACES": lambda t: FrameObservation(t=t, face=dataclasses.replace(FACE, face_count=2),
                                                 frame_mean=120.0, frame_diff=4.0),
    "DISTRACTION": lambda t: FrameObservation(t=t, face=dataclasses.replace(FACE, yaw_deg=45.0),
                                              frame_mean=120.0, frame_diff=4.0),
    "EYES_CLOSED": lambda t: FrameObservation(t=t, face=dataclasses.replace(FACE, ear_left=0.05, ear_right=0.05),
                                              frame_mean=120.0, frame_diff=4.0),
    "PROHIBITED_OBJECT": lambda t: FrameObservation(
        t=t, face=FACE, frame_mean=120.0, frame_diff=4.0, detections_t=t,
        detections=Detections((Detection(67, "cell phone", 0.9, (300, 300, 360, 400)),), "test", (640, 480))),
    "IDENTITY_MISMATCH": lambda t: FrameObservation(t=t, face=FACE, identity_match=False, identity_t=t,
                                                    frame_mean=120.0, frame_diff=4.0),
    "CAMERA_OFF": lambda t: FrameObservation(t=t, face=FaceObservation(False, 0), frame_mean=3.0, frame_diff=0.0),
}


def all_events(engine):
    """Every rule once: each frame rule held for 20 s (its own student), then every browser event."""
    events = []
    for name, make in BAD_FRAMES.items():
        for i in range(200):
            t = i * 0.1
            events += engine.evaluate(name, make(t), t)
    for k, kind in enumerate(BROWSER_EVENT_RULES):
        events += engine.browser_event("browser", BrowserEvent(kind, 1.0 + k, {}))
    return events


def test_registry_covers_exactly_the_rules_once():
    names = [r.name for r in RULE_REGISTRY]
    assert len(names) == len(set(names))
    assert tuple(names) == RULES
    assert set(BROWSER_EVENT_RULES) == {"TAB_SWITCH", "FULLSCREEN_EXIT", "VOICE_DETECTED", "CAMERA_OFF",
                                        "SCREEN_SHARE_STOPPED", "MULTIPLE_DISPLAYS", "CAMERA_CHANGED", "COPY", "CUT",
                                        "PASTE", "RIGHT_CLICK", "PRINT_SCREEN", "DEVTOOLS"}
    assert {r.name for r in FRAME_RULES} == set(FRAME_RULE_NAMES)
    assert set(FRAME_RULE_NAMES) | set(BROWSER_EVENT_RULES) == set(RULES)
    for r in RULE_REGISTRY:
        assert rule(r.name) is r
        assert r.title and r.message and 0 < r.weight <= 1
        assert f"RULE_{r.name}_ENABLED" in config_vision._BY_NAME  # each rule can be switched off
    with pytest.raises(KeyError, match="unknown rule 'NOPE'"):
        rule("NOPE")


def test_a_bad_registry_entry_fails_when_defined():
    with pytest.raises(ValueError, match="severity"):
        config_vision.Rule("X", "X", "huge", 0.5, "m", ("frame",))
    with pytest.raises(ValueError, match="weight"):
        config_vision.Rule("X", "X", "low", 0.0, "m", ("frame",))
    with pytest.raises(ValueError, match="sources"):
        config_vision.Rule("X", "X", "low", 0.5, "m", ("radio",))


def test_engine_emits_every_rule_with_the_registry_severity():
    events = all_events(DecisionEngine(cfg()))
    assert {e.rule for e in events} == set(RULES)
    for e in events:
        assert e.severity == rule(e.rule).severity, e


def test_engine_and_warning_system_read_the_registry_not_a_copy(monkeypatch):
    """Change one entry of the registry: the engine's severity and the student's message follow."""
    changed = dataclasses.replace(rule("TAB_SWITCH"), severity="critical", message="Changed in the registry.",
                                  weight=0.05)
    monkeypatch.setitem(config_vision._RULES_BY_NAME, "TAB_SWITCH", changed)
    [event] = DecisionEngine(cfg()).browser_event("s", BrowserEvent("TAB_SWITCH", 1.0, {}))
    assert event.severity == "critical"
    ws = WarningSystem(cfg())
    decision = ws.on_event("s", event)
    assert decision.issued and decision.message == "Changed in the registry."
    [component] = ws.suspicion("s", 2.0).components
    assert component["weight"] == 0.05


def test_warning_messages_and_weights_come_from_the_registry():
    ws = WarningSystem(cfg(WARNING_COOLDOWN_S=0))
    seen = set()
    for i, event in enumerate(e for e in all_events(DecisionEngine(cfg())) if e.state in (STARTED, "instant")):
        decision = ws.on_event(("w", i), event)
        assert decision.issued and decision.message == rule(event.rule).message
        [component] = ws.suspicion(("w", i), event.t).components
        assert component["weight"] == rule(event.rule).weight
        seen.add(event.rule)
    assert seen == set(RULES)


def test_browser_rules_reads_thresholds_from_the_config():
    facts = browser_rules(cfg())
    json.dumps(facts)  # JSON-able as it is
    assert list(facts["rules"]) == list(RULES) == facts["order"]
    camera = facts["rules"]["CAMERA_OFF"]
    assert camera["thresholds"] == {"black_frame_mean": 12.0, "hold_s": 5.0}
    assert camera["message"] == rule("CAMERA_OFF").message and camera["severity"] == "high"
    assert facts["rules"]["VOICE_DETECTED"]["thresholds"] == {"margin_db": 15.0, "min_s": 1.0, "window_s": 1.5}
    assert facts["rules"]["TAB_SWITCH"]["thresholds"] == {}
    tuned = browser_rules(cfg(BLACK_FRAME_MEAN=20, TIME_CAMERA_OFF_S=9, VOICE_MARGIN_DB=25))
    assert tuned["rules"]["CAMERA_OFF"]["thresholds"] == {"black_frame_mean": 20.0, "hold_s": 9.0}
    assert tuned["rules"]["VOICE_DETECTED"]["thresholds"]["margin_db"] == 25.0


def test_voice_settings_are_validated():
    with pytest.raises(VisionConfigError, match="VOICE_MARGIN_DB"):
        cfg(VOICE_MARGIN_DB=500)
    with pytest.raises(VisionConfigError, match="must not exceed VOICE_WINDOW_S"):
        cfg(VOICE_MIN_S=3, VOICE_WINDOW_S=2)
