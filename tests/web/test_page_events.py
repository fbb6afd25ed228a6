"""Issue 16 on the server, on SQLite and MariaDB: the exam page's own events (copy, cut, paste, right click,
Print Screen, developer tools, a changed camera, a second display) are stored as their own rules with checked
details; the display report before the exam and the "block" policy's refusal at start; the system check's
virtual camera and single-display parts; the wording on the session page and in the CSV export; each rule's
own suspicion weight.

The live runtime runs without its vision worker processes (browser events need none)."""
from __future__ import annotations

import json
import math
import time

import pytest
from sqlalchemy import select

import config_vision
from tests.conftest import csrf_token, login, make_user
from tests.web.test_exam_flow import make_exam

NEW_TYPES = ("COPY", "CUT", "PASTE", "RIGHT_CLICK", "PRINT_SCREEN", "DEVTOOLS", "CAMERA_CHANGED",
             "MULTIPLE_DISPLAYS", "SCREEN_SHARE_STOPPED")


@pytest.fixture(autouse=True)
def no_vision_workers(monkeypatch):
    monkeypatch.setenv("PROCTOR_LIVE_ENABLED", "false")
    monkeypatch.setenv("PROCTOR_LIVE_WORKERS", "1")


class Student:
    """A logged-in student client with its CSRF token."""

    def __init__(self, app, email: str):
        self.app = app
        self.id = make_user(app, email, name="Page Events Student")
        self.client = app.test_client()
        assert login(self.client, email).status_code == 302
        self.token = csrf_token(self.client, "/student/")

    def post(self, url: str, body):
        return self.client.post(url, data=json.dumps(body), content_type="application/json",
                                headers={"X-CSRFToken": self.token})

    def event(self, body):
        return self.post("/api/student-event", body)

    def start_session(self, exam_id: int) -> int:
        from proctor import exam_service
        from proctor.live import get_runtime

        with self.app.app_context():
            sess = exam_service.start_session(self.id, exam_id)
            get_runtime(self.app).session_started(self.id, sess.id)
            return sess.id

    def ready_for(self, exam_id: int) -> None:
        """Every step before the exam done (rules, system check, face, identity), as the real steps record them."""
        from proctor.extensions import db
        from proctor.models import Profile, User

        with self.app.app_context():
            user = db.session.get(User, self.id)
            user.rules_accepted_version = self.app.config["PROCTOR_RULES_VERSION"]
            profile = Profile(student_id=self.id, image_path=f"faces/{self.id}.jpg", embedding=b"\x01" * 16)
            db.session.add(profile)
            db.session.commit()
            stamp = f"{profile.id}:{profile.image_path}"
        with self.client.session_transaction() as s:
            s["system_check"] = {"ok": True, "at": time.time()}
            s[f"identity_confirmed_{exam_id}"] = {"student_id": self.id, "at": time.time(), "profile": stamp,
                                                  "distance": 0.3, "liveness": "blink"}

    def start(self, exam_id: int):
        return self.client.post(f"/student/exams/{exam_id}/start", data={"csrf_token": self.token})


def error_of(resp) -> str:
    body = resp.get_json(silent=True)
    assert isinstance(body, dict) and body.get("code") == resp.status_code, (resp.status_code, resp.data[:200])
    return body["error"]


def stored(app, session_id: int) -> list[tuple[str, dict]]:
    from proctor.extensions import db
    from proctor.models import Violation

    with app.app_context():
        rows = db.session.scalars(select(Violation).where(Violation.session_id == session_id).order_by(Violation.id))
        return [(v.type, json.loads(v.details or "{}")) for v in rows]


def set_exam(app, exam_id: int, **fields) -> None:
    from proctor.extensions import db
    from proctor.models import Exam

    with app.app_context():
        exam = db.session.get(Exam, exam_id)
        for k, v in fields.items():
            setattr(exam, k, v)
        db.session.commit()


def sessions_of(app, student_id: int) -> list:
    from proctor.extensions import db
    from proctor.models import ExamSession

    with app.app_context():
        return db.session.scalars(select(ExamSession).where(ExamSession.student_id == student_id)).all()


# --- the new browser events ------------------------------------------------------------------

def test_each_new_event_is_stored_as_its_own_type_with_checked_details(app, admin_client):
    app.config["PROCTOR_EVENT_RATE_LIMIT"] = "100 per second"
    student = Student(app, "events@example.edu")
    session_id = student.start_session(make_exam(app))
    long_label = "OBS Virtual Camera <b>" + "x" * 200
    sent = {
        "COPY": {"target": "question", "html": "<script>", "level": 3},
        "CUT": {"target": "answer"},
        "PASTE": {"target": "page", "text": "the pasted answer"},
        "RIGHT_CLICK": {"target": "question", "x": 10},
        "PRINT_SCREEN": {"key": "PrintScreen"},
        "DEVTOOLS": {"key": "Ctrl+Shift+I", "target": "page"},
        "CAMERA_CHANGED": {"device": long_label, "previous_device": "fake_device_0", "reason": "x"},
        "MULTIPLE_DISPLAYS": {"screens": 2, "reason": "at start", "device": "y"},
        "SCREEN_SHARE_STOPPED": {"reason": "ended", "screens": 3},
    }
    for kind, details in sent.items():
        resp = student.event({"type": kind, "details": details})
        assert resp.status_code == 200, (kind, resp.data)
        assert resp.get_json()["type"] == kind
    got = dict(stored(app, session_id))
    assert set(got) == set(NEW_TYPES), got  # each its own type, nothing folded into TAB_SWITCH
    assert "TAB_SWITCH" not in got
    plain = {k: {f: v for f, v in d.items() if f in ("target", "key", "device", "previous_device", "screens")
                or f.endswith("_reason")}
             for k, d in got.items()}
    # Only the checked fields of each type are kept; the rest the page said is dropped.
    assert plain["COPY"] == {"target": "question"} and plain["CUT"] == {"target": "answer"}
    assert plain["PASTE"] == {"target": "page"} and plain["RIGHT_CLICK"] == {"target": "question"}
    assert plain["PRINT_SCREEN"] == {"key": "PrintScreen"} and plain["DEVTOOLS"] == {"key": "Ctrl+Shift+I"}
    # The page's reason keeps its own name: "reason" is the warning system's, which it must not overwrite.
    assert plain["MULTIPLE_DISPLAYS"] == {"screens": 2, "displays_reason": "at start"}
    assert plain["SCREEN_SHARE_STOPPED"] == {"share_reason": "ended"}
    assert all(d["reason"].startswith("warning ") for d in got.values()), got
    assert "html" not in got["COPY"] and "text" not in got["PASTE"] and "x" not in got["RIGHT_CLICK"]
    # A long camera label is cut to 64 plain characters (no markup).
    device = plain["CAMERA_CHANGED"]["device"]
    assert device.startswith("OBS Virtual Camera b") and len(device) == 64 and "<" not in device
    assert plain["CAMERA_CHANGED"] == {"device": device, "previous_device": "fake_device_0"}

    # The session page and the violations CSV say each in words (proctor/wording.py), not as codes only.
    page = admin_client.get(f"/admin/sessions/{session_id}").get_data(as_text=True)
    csv = admin_client.get(f"/admin/reports/violations.csv?session={session_id}").get_data(as_text=True)
    for sentence in ("copied from the exam", "cut text from the exam", "pasted into the exam", "opened the context menu",
                     "pressed Print Screen", "tried to open the developer tools", "switched to another camera",
                     "has a second display connected", "stopped sharing their screen"):
        assert sentence in page, sentence
        assert sentence in csv, sentence


@pytest.mark.parametrize("body, fragment", [
    ({"type": "copy"}, "'type' must be one of"),
    ({"type": "CLIPBOARD"}, "'type' must be one of"),
    ({"type": ["COPY"]}, "'type' must be one of"),
    ({"type": "COPY", "details": {"target": ["answer"]}}, "'target'"),
    ({"type": "DEVTOOLS", "details": {"key": 123}}, "'key'"),
    ({"type": "CAMERA_CHANGED", "details": {"device": {"label": "OBS"}}}, "'device'"),
    ({"type": "MULTIPLE_DISPLAYS", "details": {"screens": 0}}, "'screens'"),
    ({"type": "MULTIPLE_DISPLAYS", "details": {"screens": 17}}, "'screens'"),
    ({"type": "MULTIPLE_DISPLAYS", "details": {"screens": "2"}}, "'screens'"),
    ({"type": "COPY", "details": "question"}, "'details'"),
])
def test_bad_new_events_are_400_and_nothing_is_stored(app, body, fragment):
    student = Student(app, "bad-events@example.edu")
    session_id = student.start_session(make_exam(app))
    resp = student.event(body)
    assert resp.status_code == 400 and fragment in error_of(resp)
    assert stored(app, session_id) == []


def test_a_rule_disabled_for_the_exam_does_not_fire(app):
    student = Student(app, "disabled@example.edu")
    exam_id = make_exam(app)
    set_exam(app, exam_id, disabled_rules="COPY,DEVTOOLS")
    session_id = student.start_session(exam_id)
    for kind, details in (("COPY", {"target": "question"}), ("DEVTOOLS", {"key": "F12"}), ("PASTE", {"target": "page"})):
        assert student.event({"type": kind, "details": details}).status_code == 200
    assert [t for t, _ in stored(app, session_id)] == ["PASTE"]


def test_each_rule_counts_with_its_own_weight(app):
    """The suspicion score stored with a violation uses the rule's own weight (RULE_REGISTRY) and the incident its
    severity's weight: COPY (low, 0.3) alone and PASTE (medium, 0.5) alone give different scores."""
    from warning_system import SUSPICION_POINTS_PER_EVENT, SUSPICION_SCALE, severity_weight

    vision = config_vision.load_vision_config()
    for kind, email in (("COPY", "w-copy@example.edu"), ("PASTE", "w-paste@example.edu"),
                        ("CAMERA_CHANGED", "w-camera@example.edu")):
        student = Student(app, email)
        session_id = student.start_session(make_exam(app, title=kind))
        assert student.event({"type": kind, "details": {}}).status_code == 200
        [(got_type, details)] = stored(app, session_id)
        rule = config_vision.rule(kind)
        expected = 100.0 * (1 - math.exp(-rule.weight * SUSPICION_POINTS_PER_EVENT / SUSPICION_SCALE))
        assert got_type == kind and details["suspicion"] == pytest.approx(expected, abs=0.15), details
        assert details["incident_weight"] == pytest.approx(severity_weight(vision, rule.severity)), details


# --- displays before the exam ------------------------------------------------------------------

def test_display_report_route_checks_its_input_and_its_caller(app, admin_client):
    student = Student(app, "displays@example.edu")
    exam_id = make_exam(app)
    url = f"/api/exam/{exam_id}/displays"
    for body, fragment in (({}, "extended"), ({"extended": "yes"}, "extended"), ({"extended": 1}, "extended"),
                           ({"extended": True, "screens": 1}, "disagree"), ({"extended": False, "screens": 2}, "disagree"),
                           ({"extended": True, "screens": 17}, "screens"), ({"extended": True, "screens": 2.5}, "screens"),
                           ({"extended": True, "screens": "2"}, "screens"), ([True], "JSON object")):
        resp = student.post(url, body)
        assert resp.status_code == 400, body
        assert fragment in error_of(resp), (body, error_of(resp))
    resp = student.client.post(url, data="not json", content_type="application/json", headers={"X-CSRFToken": student.token})
    assert resp.status_code == 400 and error_of(resp)
    assert student.post("/api/exam/999999/displays", {"extended": False}).status_code == 404
    hidden = make_exam(app, published=False, title="Hidden")
    assert student.post(f"/api/exam/{hidden}/displays", {"extended": False}).status_code == 404
    assert app.test_client().post(url, json={"extended": False}).status_code == 401
    assert admin_client.post(url, json={"extended": False},
                             headers={"X-CSRFToken": csrf_token(admin_client, "/admin/")}).status_code == 403
    ok = student.post(url, {"extended": True, "screens": 3})
    assert ok.status_code == 200
    assert ok.get_json() == {"policy": "warn", "extended": True, "screens": 3, "allowed": True, "message": None}
    set_exam(app, exam_id, displays_policy="block")
    refused = student.post(url, {"extended": True}).get_json()
    assert refused["allowed"] is False and refused["screens"] == 2 and "second display" in refused["message"]
    assert student.post(url, {"extended": False}).get_json()["allowed"] is True


def test_block_refuses_the_start_while_a_second_display_is_reported(app):
    exam_id = make_exam(app, title="Block exam")
    set_exam(app, exam_id, displays_policy="block")
    student = Student(app, "block@example.edu")
    student.ready_for(exam_id)
    page = student.client.get(f"/student/exams/{exam_id}/ready").get_data(as_text=True)
    assert 'id="ready-displays"' in page and 'data-displays-policy="block"' in page and "js/student/displays.js" in page
    # No report: the page did not check (an old page, scripts blocked): refused, with a message to reload.
    resp = student.start(exam_id)
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/student/exams/{exam_id}/ready")
    assert "did not check your displays" in student.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert sessions_of(app, student.id) == []
    # A second display reported: refused.
    assert student.post(f"/api/exam/{exam_id}/displays", {"extended": True, "screens": 2}).status_code == 200
    resp = student.start(exam_id)
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"/student/exams/{exam_id}/ready")
    assert "A second display is connected" in student.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert sessions_of(app, student.id) == []
    # One display: the exam starts.
    assert student.post(f"/api/exam/{exam_id}/displays", {"extended": False, "screens": 1}).status_code == 200
    resp = student.start(exam_id)
    assert resp.status_code == 302 and "/student/sessions/" in resp.headers["Location"]
    assert len(sessions_of(app, student.id)) == 1


def test_a_stale_display_report_counts_as_none(app):
    from proctor.student import steps

    exam_id = make_exam(app, title="Stale report")
    set_exam(app, exam_id, displays_policy="block")
    student = Student(app, "stale@example.edu")
    student.ready_for(exam_id)
    assert student.post(f"/api/exam/{exam_id}/displays", {"extended": False}).status_code == 200
    with student.client.session_transaction() as s:
        s[f"displays_{exam_id}"] = {**s[f"displays_{exam_id}"], "at": time.time() - steps.DISPLAY_REPORT_VALID_S - 1}
    resp = student.start(exam_id)
    assert resp.headers["Location"].endswith("/ready") and sessions_of(app, student.id) == []


@pytest.mark.parametrize("policy", ["warn", "off"])
def test_warn_and_off_start_with_a_second_display(app, policy):
    exam_id = make_exam(app, title=f"{policy} exam")
    set_exam(app, exam_id, displays_policy=policy)
    student = Student(app, f"{policy}@example.edu")
    student.ready_for(exam_id)
    page = student.client.get(f"/student/exams/{exam_id}/ready").get_data(as_text=True)
    assert ("js/student/displays.js" in page) == (policy == "warn")  # "off": no check at all
    if policy == "warn":
        assert student.post(f"/api/exam/{exam_id}/displays", {"extended": True, "screens": 2}).status_code == 200
    resp = student.start(exam_id)
    assert resp.status_code == 302 and "/student/sessions/" in resp.headers["Location"]
    [sess] = sessions_of(app, student.id)
    exam_page = student.client.get(resp.headers["Location"]).get_data(as_text=True)
    assert f'data-displays-policy="{policy}"' in exam_page and "js/student/page_events.js" in exam_page
    assert sess.status == "IN_PROGRESS"


# --- the system check ------------------------------------------------------------------------------

def test_system_check_fails_a_virtual_camera_and_shows_a_second_display(app):
    student = Student(app, "check@example.edu")
    base = {"camera": True, "microphone": True, "browser": True, "upload": True, "upload_kbps": 900}
    page = student.client.get("/student/system-check").get_data(as_text=True)
    assert 'id="check-display"' in page and "js/student/displays.js" in page
    facts = json.loads(page.split('id="proctor-rules">', 1)[1].split("</script>", 1)[0])
    from proctor.devices import VIRTUAL_CAMERA_NAMES

    assert facts["virtual_cameras"] == list(VIRTUAL_CAMERA_NAMES)  # the page matches the server's list
    # A virtual camera fails the camera part even if the page said it was fine; the advice names the device.
    resp = student.post("/api/exam/system-check", {**base, "camera_label": "OBS Virtual Camera <i>"})
    body = resp.get_json()
    assert resp.status_code == 200 and body["ok"] is False and body["failed"] == ["virtual_camera"]
    assert body["virtual_camera"] == "OBS Virtual Camera i"
    advice = student.client.get(body["next"]).get_data(as_text=True)
    assert "OBS Virtual Camera i" in advice and "virtual camera" in advice and "<i>" not in advice
    for label in ("ManyCam Video Source", "Snap Camera", "XSplitBroadcaster", "CamTwist", "e2eSoft VCam",
                  "Some virtual webcam"):
        assert student.post("/api/exam/system-check", {**base, "camera_label": label}).get_json()["ok"] is False, label
    # The real camera passes; a second display is recorded and shown but does not fail the check.
    resp = student.post("/api/exam/system-check",
                        {**base, "camera_label": "fake_device_0", "display": False, "screens": 2})
    assert resp.get_json()["ok"] is True and resp.get_json()["display"] is False
    with student.client.session_transaction() as s:
        assert s["system_check"]["display"] is False and s["system_check"]["screens"] == 2
    # An older page without the new fields still passes.
    assert student.post("/api/exam/system-check", base).get_json()["ok"] is True
    for extra, fragment in (({"display": "no"}, "display"), ({"screens": 0}, "screens"), ({"screens": 1.5}, "screens"),
                            ({"camera_label": 5}, "camera_label")):
        resp = student.post("/api/exam/system-check", {**base, **extra})
        assert resp.status_code == 400 and fragment in error_of(resp)
