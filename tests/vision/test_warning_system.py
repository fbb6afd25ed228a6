"""Warning system: counts, cooldowns, auto-termination (off by default), clearing, suspicion score."""
from __future__ import annotations

import math

import pytest

from config_vision import load_vision_config
from config_vision import rule as registered_rule
from decision_engine import ENDED, INSTANT, STARTED, BrowserEvent, DecisionEngine, FrameObservation, RuleEvent
from face_pipeline import FaceObservation
from warning_system import WarningSystem


def cfg(**overrides):
    return load_vision_config(env={}, **overrides)


def ev(rule_name, t, state=INSTANT, **details):
    return RuleEvent(rule_name, state, t, registered_rule(rule_name).severity, details)


def test_counts_across_rules_and_messages():
    ws = WarningSystem(cfg())
    d1 = ws.on_event("s", ev("TAB_SWITCH", 1.0))
    d2 = ws.on_event("s", ev("NO_FACE", 2.0, STARTED, since=-1.0))
    assert (d1.issued, d1.count, d2.issued, d2.count) == (True, 1, True, 2)
    assert d1.message == registered_rule("TAB_SWITCH").message
    assert "warning 2 of 3" in d2.reason
    assert ws.count("s") == 2 and ws.count("nobody") == 0


def test_ended_events_never_issue_warnings():
    ws = WarningSystem(cfg())
    d = ws.on_event("s", ev("NO_FACE", 9.0, ENDED, since=1.0, cleared_at=8.0))
    assert (d.issued, d.held_by_cooldown, d.count) == (False, False, 0)


def test_cooldown_per_type():
    ws = WarningSystem(cfg(WARNING_COOLDOWN_S=5.0))
    assert ws.on_event("s", ev("TAB_SWITCH", 10.0)).issued
    held = ws.on_event("s", ev("TAB_SWITCH", 14.9))
    assert (held.issued, held.held_by_cooldown, held.count) == (False, True, 1)
    assert "cooldown" in held.reason
    # another type is not held by TAB_SWITCH's cooldown
    assert ws.on_event("s", ev("FULLSCREEN_EXIT", 11.0)).issued
    again = ws.on_event("s", ev("TAB_SWITCH", 15.0))
    assert again.issued and again.count == 3
    # time going backwards is held, not a new warning
    back = ws.on_event("s", ev("TAB_SWITCH", 3.0))
    assert back.held_by_cooldown and not back.issued and back.count == 3


def test_auto_terminate_is_off_by_default():
    config = cfg()
    assert config.AUTO_TERMINATE_DEFAULT is False
    ws = WarningSystem(config)
    decisions = [ws.on_event("s", ev(rule, t)) for t, rule in
                 enumerate(["TAB_SWITCH", "FULLSCREEN_EXIT", "VOICE_DETECTED", "CAMERA_OFF", "TAB_SWITCH"], start=0)]
    decisions[-1] = ws.on_event("s", ev("TAB_SWITCH", 30.0))
    assert ws.count("s") >= config.INSTANT_PENALTY_THRESHOLD
    assert not any(d.terminate for d in decisions)
    assert "auto-terminate is off" in decisions[2].reason


def test_auto_terminate_on_at_threshold_3():
    ws = WarningSystem(cfg(INSTANT_PENALTY_THRESHOLD=3))
    d1 = ws.on_event("s", ev("TAB_SWITCH", 0.0), auto_terminate=True)
    d2 = ws.on_event("s", ev("FULLSCREEN_EXIT", 1.0), auto_terminate=True)
    held = ws.on_event("s", ev("TAB_SWITCH", 2.0), auto_terminate=True)  # cooldown: not a third warning
    d3 = ws.on_event("s", ev("VOICE_DETECTED", 3.0), auto_terminate=True)
    assert [d.terminate for d in (d1, d2, held)] == [False, False, False]
    assert d3.terminate and d3.count == 3 and "auto-terminate" in d3.reason


def test_clear_resets_count_and_cooldowns_but_keeps_the_record():
    ws = WarningSystem(cfg(INSTANT_PENALTY_THRESHOLD=3))
    for t, rule in enumerate(["TAB_SWITCH", "FULLSCREEN_EXIT"]):
        ws.on_event("s", ev(rule, float(t)), auto_terminate=True)
    before = ws.suspicion("s", 2.0).score
    ws.clear("s", 2.5)
    assert ws.count("s") == 0
    d = ws.on_event("s", ev("TAB_SWITCH", 3.0), auto_terminate=True)  # within the old cooldown, but cleared
    assert d.issued and d.count == 1 and not d.terminate
    assert ws.suspicion("s", 3.0).score > before  # evidence is kept and grows
    ws.clear("unknown-student", 1.0)  # harmless


def test_suspicion_explains_signals_durations_weights():
    ws = WarningSystem(cfg())
    assert ws.suspicion("s", 0.0).score == 0.0
    assert "no signals" in ws.suspicion("s", 0.0).explanation
    ws.on_event("s", ev("PROHIBITED_OBJECT", 11.5, STARTED, since=10.0))
    ws.on_event("s", ev("PROHIBITED_OBJECT", 21.0, ENDED, since=10.0, cleared_at=20.0))
    ws.on_event("s", ev("TAB_SWITCH", 25.0))
    ws.on_event("s", ev("NO_FACE", 33.0, STARTED, since=30.0))  # still open at t=40
    s = ws.suspicion("s", 40.0)
    assert 0 < s.score < 100
    by = {c["signal"]: c for c in s.components}
    assert set(by) == {"PROHIBITED_OBJECT", "TAB_SWITCH", "NO_FACE"}
    assert by["PROHIBITED_OBJECT"]["seconds"] == 10.0 and by["PROHIBITED_OBJECT"]["count"] == 1
    assert by["NO_FACE"]["seconds"] == 10.0  # open since 30, counted up to 40
    assert by["TAB_SWITCH"]["seconds"] == 0 and by["TAB_SWITCH"]["count"] == 1
    assert by["PROHIBITED_OBJECT"]["weight"] == registered_rule("PROHIBITED_OBJECT").weight
    assert sum(c["contribution"] for c in s.components) == pytest.approx(s.score, abs=0.3)
    assert by["PROHIBITED_OBJECT"]["contribution"] > by["NO_FACE"]["contribution"] > by["TAB_SWITCH"]["contribution"]
    for name in by:
        assert name in s.explanation
    assert "never terminates" in s.explanation
    # more evidence never lowers the score, and it stays below 100
    later = ws.suspicion("s", 4000.0)
    assert s.score < later.score <= 100


def test_suspicion_never_terminates():
    ws = WarningSystem(cfg(WARNING_COOLDOWN_S=3600))
    decisions = [ws.on_event("s", ev("IDENTITY_MISMATCH", 1.0, STARTED, since=0.0), auto_terminate=False)]
    decisions += [ws.on_event("s", ev("IDENTITY_MISMATCH", 1.0 + k, STARTED, since=0.0)) for k in range(1, 50)]
    assert ws.suspicion("s", 5000.0).score > 90
    assert ws.count("s") == 1 and not any(d.terminate for d in decisions)


def test_bad_events_are_refused_or_ignored():
    ws = WarningSystem(cfg())
    with pytest.raises(ValueError):
        ws.on_event("s", RuleEvent("NOT_A_RULE", INSTANT, 1.0, "high", {}))
    with pytest.raises(ValueError):
        ws.on_event("s", RuleEvent("TAB_SWITCH", "maybe", 1.0, "high", {}))
    d = ws.on_event("s", ev("TAB_SWITCH", math.nan))
    assert not d.issued and ws.count("s") == 0
    ws.forget("s")
    assert ws.suspicion("s", 1.0).score == 0


def test_engine_and_warnings_together_on_a_fake_clock():
    """NO_FACE for 20 s gives one started event and one warning; three tab switches, two held by cooldown."""
    config = cfg(WARNING_COOLDOWN_S=5.0)
    engine, ws = DecisionEngine(config), WarningSystem(config)
    issued = []
    no_face = FaceObservation(False, 0)
    for i in range(200):
        t = i * 0.1
        for e in engine.evaluate("s", FrameObservation(t=t, face=no_face, frame_mean=100, frame_diff=3), t):
            issued.append(ws.on_event("s", e))
    for t in (21.0, 22.0, 23.0):
        for e in engine.browser_event("s", BrowserEvent("TAB_SWITCH", t, {})):
            issued.append(ws.on_event("s", e))
    assert [d.issued for d in issued] == [True, True, False, False]
    assert ws.count("s") == 2
    comps = {c["signal"]: c for c in ws.suspicion("s", 23.0).components}
    assert comps["NO_FACE"]["seconds"] == pytest.approx(23.0, abs=0.2) and comps["TAB_SWITCH"]["count"] == 3
