"""What the proctor and the student read (issue 15): one place for the wording of every violation
(proctor/wording.py), the admin session page in words and times instead of epoch floats and dicts,
and the student's result page in sentences instead of codes."""
from __future__ import annotations

import calendar
import json
import re
from datetime import timedelta
from pathlib import Path

import config_vision
from proctor import wording
from tests.conftest import login
from tests.web.test_admin_results import seed_session
from tests.web.test_page_data import rendered_facts

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- coverage

def test_every_rule_has_wording_in_every_voice():
    """A rule added to the registry without an admin sentence or a result-page sentence fails here."""
    assert set(wording.ADMIN_TEMPLATES) == set(config_vision.RULES)
    assert set(wording.STUDENT_AFTERWARDS) == set(config_vision.RULES)
    assert set(wording.SEVERITY_WORDING) == set(config_vision.SEVERITIES)
    for name in config_vision.RULES:
        w = wording.violation_wording(name)
        assert w.type == name and w.student == config_vision.rule(name).message
        admin = wording.admin_sentence(name, "Ana Lima", {"duration_s": 6.0, "objects": [{"label": "cell phone", "score": 0.82}]})
        assert admin.startswith("Ana Lima") and "{" not in admin and name not in admin
        assert not w.afterwards.startswith(("I ", "We ")) and name not in w.afterwards


def test_every_event_the_exam_page_sends_has_wording():
    """The browser's events (TAB_SWITCH, FULLSCREEN_EXIT, VOICE_DETECTED for audio, CAMERA_OFF) are rules with wording."""
    js = (ROOT / "static/js/student/proctor.js").read_text()
    sent = set(re.findall(r'sendEvent\("([A-Z_]+)"', js))
    assert {"TAB_SWITCH", "FULLSCREEN_EXIT", "VOICE_DETECTED", "CAMERA_OFF"} <= sent
    assert sent <= set(wording.ADMIN_TEMPLATES)


def test_every_way_a_session_ends_reads_as_a_sentence():
    """Automatic termination (the runtime's prefix + the warning system's reason), time up, submitted, a proctor."""
    from decision_engine import RuleEvent
    from proctor.exam_service import TIME_UP_REASON
    from warning_system import WarningSystem

    runtime = (ROOT / "proctor/live/runtime.py").read_text()
    prefix = re.search(r'f"(Automatically terminated: )\{decision\.reason\}"', runtime)
    assert prefix, "the runtime's automatic-termination reason changed: update proctor/wording.AUTO_TERMINATION"
    ws = WarningSystem(config_vision.load_vision_config(INSTANT_PENALTY_THRESHOLD=2))
    decision = None
    for i, rule in enumerate(("TAB_SWITCH", "IDENTITY_MISMATCH")):
        decision = ws.on_event("s", RuleEvent(rule, "instant", 100.0 + 60 * i, "high", {}), auto_terminate=True)
    assert decision.terminate
    auto = prefix.group(1) + decision.reason
    student = wording.termination_sentence(auto, audience="student")
    assert student == ("Your exam was ended automatically after 2 proctoring warnings. "
                       "The last one: the person at the camera did not match your registered face.")
    assert wording.termination_sentence(auto, audience="admin") == "Ended automatically after 2 warnings; the last: identity mismatch."
    # a reason stored before incidents reads the same
    old_reason = "Automatically terminated: warning 2 of 2 for IDENTITY_MISMATCH; auto-terminate: 2 warnings reached the threshold 2"
    assert wording.termination_sentence(old_reason, audience="student") == student
    assert wording.termination_sentence(TIME_UP_REASON, audience="student").startswith("Time ran out")
    assert f'"{wording.SUBMITTED_REASON}"' in (ROOT / "proctor/student/exam_api.py").read_text()
    assert wording.termination_sentence(wording.SUBMITTED_REASON, audience="student") == "You submitted the exam."
    assert wording.termination_sentence("Left the room", audience="student") == "A proctor ended your exam: Left the room"


def test_the_page_data_block_carries_the_wording_and_js_keeps_no_copy(app, admin_client):
    facts = rendered_facts(admin_client.get("/admin/monitor").get_data(as_text=True))
    assert facts["wording"] == json.loads(json.dumps(wording.wording_facts()))
    assert set(facts["wording"]["violations"]) == set(config_vision.RULES)
    # the longest literal piece of every sentence (between placeholders) appears in no script
    pieces = [max(re.split(r"\{\w+\}", t), key=len).strip() for t in wording.ADMIN_TEMPLATES.values()]
    pieces += [w.rstrip(".") for w in wording.STUDENT_AFTERWARDS.values()]
    for path in (ROOT / "static/js").rglob("*.js"):
        text = path.read_text()
        for piece in pieces:
            assert piece not in text, f"{path.name} keeps its own copy of {piece!r}"


# --------------------------------------------------------------------------- the admin session page

def _epoch(dt) -> float:
    return calendar.timegm(dt.timetuple()) + dt.microsecond / 1e6


def _live_like_session(app):
    """Violations with the details the live runtime stores (frame_t, since, identity_t, seq, objects...)."""
    s = seed_session(app, student_name="Ana Lima", violations=[])
    from proctor.extensions import db
    from proctor.models import ExamSession, Violation

    with app.app_context():
        sess = db.session.get(ExamSession, s["session_id"])
        start = sess.started_at
        t0 = _epoch(start)
        rows = [
            ("DISTRACTION", 754, {"state": "started", "frame_t": t0 + 754.21, "warning_count": 1, "seq": 4411,
                                  "reason": "warning 1 of 3 for DISTRACTION", "yaw_deg": 38.4, "cause": "head_turned",
                                  "since": t0 + 748.0, "duration_s": 6.2, "suspicion": 22.5}),
            ("PROHIBITED_OBJECT", 800, {"state": "started", "frame_t": t0 + 800.5, "warning_count": 2, "seq": 4700,
                                        "objects": [{"label": "cell phone", "class_id": 67, "score": 0.8234, "box": [10.0, 20.0, 50.0, 90.0]}],
                                        "since": t0 + 797.9, "duration_s": 2.6, "suspicion": 48.0}),
            ("IDENTITY_MISMATCH", 3725, {"state": "started", "frame_t": t0 + 3725.0, "identity_t": t0 + 3721.4, "seq": 9000,
                                         "since": t0 + 3719.0, "duration_s": 6.0, "warning_count": 3}),
        ]
        for vtype, offset, details in rows:
            v = Violation(student_id=s["student_id"], session_id=sess.id, type=vtype, severity=config_vision.rule(vtype).severity,
                          details=json.dumps(details), timestamp=start + timedelta(seconds=offset),
                          client_id=f"client-{vtype.lower()}-3f9c")
            db.session.add(v)
        sess.termination_reason = "Automatically terminated: warning 3 of 3 for IDENTITY_MISMATCH; auto-terminate: 3 warnings reached the threshold 3"
        db.session.commit()
        return s, start


def test_session_page_reads_as_words_and_times(app, admin_client):
    s, start = _live_like_session(app)
    page = admin_client.get(f"/admin/sessions/{s['session_id']}").get_data(as_text=True)
    section = re.search(r'<section class="mb-4" aria-labelledby="v-h">.*?</section>', page, re.S).group(0)
    # no internals: raw epoch floats, seq, dict reprs, client ids, the warning system's coded reason
    assert not re.search(r"\b1[0-9]{9}(\.\d+)?\b", section), "an epoch float is on the page"
    for internal in ("seq", "4411", "frame_t", "identity_t", "{'", "client-", "class_id", "warning 1 of 3", "head_turned"):
        assert internal not in section, internal
    # third-person sentences naming the student, with the duration and the objects with their scores
    assert "Ana Lima looked away from the screen for 6 s." in section
    assert "Ana Lima: a prohibited object is in view (cell phone 0.82)." in section
    assert "cell phone 0.82" in section and "head turned away" in section and "left/right 38°" in section
    # times from the start (+12:34, +1:02:05 past an hour) and as a UTC instant the browser shows in local time
    assert '<span class="moment-offset">+12:34</span>' in section and '<span class="moment-offset">+12:28</span>' in section
    assert '<span class="moment-offset">+1:02:05</span>' in section and '<span class="moment-offset">+1:02:01</span>' in section
    iso = (start.replace(microsecond=0) + timedelta(seconds=754)).isoformat() + "Z"
    assert f'<time class="local-time" datetime="{iso}">' in section
    assert "js/admin/local_time.js" in page
    # severity as text and icon, not colour alone
    assert re.search(r'severity-critical"><span aria-hidden="true">✖</span> Critical</span>', section)
    assert "Ended automatically after 3 warnings; the last: identity mismatch." in page


# --------------------------------------------------------------------------- the student's result page

def test_result_page_uses_sentences_not_codes(app):
    s = seed_session(app, student_email="ana@example.edu", student_name="Ana Lima", violations=[
        ("NO_FACE", 60, {}, None), ("NO_FACE", 90, {}, None), ("TAB_SWITCH", 120, {}, None)])
    from proctor.extensions import db
    from proctor.models import ExamSession

    with app.app_context():
        db.session.get(ExamSession, s["session_id"]).termination_reason = (
            "Automatically terminated: warning 3 of 3 for TAB_SWITCH; auto-terminate: 3 warnings reached the threshold 3")
        db.session.commit()
    client = app.test_client()
    assert login(client, "ana@example.edu").status_code == 302
    page = client.get(f"/student/sessions/{s['session_id']}/result").get_data(as_text=True)
    assert "Your face was not visible to the camera." in page and "You left the exam tab." in page
    assert "2 times" in page and "1 time<" in page
    assert "Your exam was ended automatically after 3 proctoring warnings. The last one: you left the exam tab." in page
    for code in ("NO_FACE", "TAB_SWITCH", "Automatically terminated:"):
        assert code not in page.replace('data-type="NO_FACE"', "").replace('data-type="TAB_SWITCH"', ""), code


# --------------------------------------------------------------------------- liveness: what the code accepts

def test_liveness_is_described_as_the_check_accepts_it():
    """face_liveness passes on a blink OR a head turn (either one): the wording says so, with the server's numbers."""
    from face_liveness import LivenessCheck
    from face_pipeline import FaceObservation

    cfg = config_vision.load_vision_config()
    admin = wording.liveness_wording(cfg, audience="admin")
    student = wording.liveness_wording(cfg, audience="student")
    assert "either one is enough" in admin and "Either one is enough" in student
    assert f"{cfg.LIVENESS_TURN_DEG:g}°" in admin and f"{cfg.LIVENESS_WINDOW_S:g} s" in admin
    assert " and head turn" not in admin + student
    # the check itself: a head turn alone passes, with no blink
    check = LivenessCheck(cfg)
    state = None
    for i, yaw in enumerate((0.0, 0.0, cfg.LIVENESS_TURN_DEG + 2, cfg.LIVENESS_TURN_DEG + 2, 1.0)):
        state = check.update(FaceObservation(face_detected=True, face_count=1, yaw_deg=yaw, ear_left=0.3, ear_right=0.3), 0.2 * i)
    assert state.passed and state.head_turn_seen and not state.blink_seen
    for path in (ROOT / "templates").rglob("*.html"):
        assert "blink and head turn" not in path.read_text(), path


def test_exam_form_and_confirm_page_say_either_one(app, admin_client, student_client):
    from markupsafe import escape

    from tests.web.test_exam_flow import make_exam
    from tests.web.test_face_registration import TESTDATA as PHOTOS, upload

    cfg = config_vision.load_vision_config()
    form = admin_client.get("/admin/exams/new").get_data(as_text=True)
    assert str(escape(wording.liveness_wording(cfg, audience="admin"))) in form
    exam_id = make_exam(app)  # liveness required (the default)
    assert upload(student_client, (PHOTOS / "identity/obama.jpg").read_bytes()).status_code == 302
    from tests.conftest import csrf_token

    token = csrf_token(student_client, "/student/")
    student_client.post("/api/exam/system-check", headers={"X-CSRFToken": token}, content_type="application/json",
                        data=json.dumps({"camera": True, "microphone": True, "browser": True, "upload": True}))
    student_client.post("/student/rules", data={"csrf_token": token, "accept": "yes"})
    page = student_client.get(f"/student/exams/{exam_id}/confirm").get_data(as_text=True)
    assert f'<span id="liveness-instruction">{escape(wording.liveness_wording(cfg, audience="student"))}</span>' in page
