"""One incident, one warning, in a real browser against the real server (issue 15).

Leaving the exam tab exits full screen at the same moment, and the student says something: the
exam page reports three rules at once. The server stores three violations of one incident and
counts one warning; the admin's live dashboard shows one toast for the incident, with the later
parts joined to it, not three warnings. A warning a few seconds after the window is a new toast.
"""
from __future__ import annotations

import json
import time

import pytest

from tests.e2e.conftest import login_in_browser

ADMIN_EMAIL = "incident-admin@example.edu"
STUDENT_EMAIL = "incident-student@example.edu"
WAIT_MS = 60_000


def _start_session(server, exam_id: int) -> int:
    """An exam session in progress, written as the exam flow writes it (the flow has its own tests)."""
    student_id = server.sql("SELECT ID FROM students WHERE Email = :e", e=STUDENT_EMAIL)[0][0]
    server.sql("INSERT INTO exam_sessions (StudentID, ExamID, Status, StartedAt, Deadline, QuestionOrder, DisabledRules) "
               "VALUES (:s, :e, 'IN_PROGRESS', CURRENT_TIMESTAMP, datetime(CURRENT_TIMESTAMP, '+30 minutes'), '[]', '')",
               s=student_id, e=exam_id)
    return server.sql("SELECT MAX(SessionID) FROM exam_sessions WHERE StudentID = :s", s=student_id)[0][0]


def _report(student, kind: str, **details) -> dict:
    """What the exam page's outbox sends for a browser event (POST /api/student-event with its CSRF token)."""
    token = student.locator('meta[name="csrf-token"]').get_attribute("content")
    resp = student.request.post("/api/student-event", data=json.dumps({"type": kind, "details": details}),
                                headers={"Content-Type": "application/json", "X-CSRFToken": token})
    assert resp.ok, resp.text()
    return resp.json()


@pytest.mark.timeout(300)
def test_a_multi_rule_moment_is_one_toast_and_one_warning(make_live_server, browser_factory, shots):
    server = make_live_server()
    server.create_user(ADMIN_EMAIL, role="ADMIN", name="Pat Proctor")
    server.create_user(STUDENT_EMAIL, name="Ines Incident")
    exam_id = server.create_exam("Incident exam", [("2 + 2 = ?", ["3", "4"], 1)], require_liveness=False,
                                 auto_terminate=True)
    session_id = _start_session(server, exam_id)
    browser = browser_factory()
    admin = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900}).new_page()
    student = browser.new_context(base_url=server.url).new_page()
    login_in_browser(admin, ADMIN_EMAIL)
    admin.goto("/admin/monitor")
    admin.locator('#connection-state[data-state="live"]').wait_for(timeout=WAIT_MS)
    login_in_browser(student, STUDENT_EMAIL)

    replies = [_report(student, "TAB_SWITCH"), _report(student, "FULLSCREEN_EXIT"),
               _report(student, "VOICE_DETECTED", level=0.4)]
    warnings = [w for r in replies for w in r["warnings"]]
    assert [(w["type"], w["incident"], w["incident_opened"], w["count"], w["terminate"]) for w in warnings] == [
        ("TAB_SWITCH", 1, True, 1, False), ("FULLSCREEN_EXIT", 1, False, 1, False),
        ("VOICE_DETECTED", 1, False, 1, False)]  # auto-terminate is on, threshold 3: the exam goes on

    toast = admin.locator('.admin-toast[data-incident="1"]')
    toast.locator(".incident-part").nth(1).wait_for(timeout=WAIT_MS)  # both later parts joined it
    shots(admin, "admin-incident-toast")
    assert admin.locator(".admin-toast").count() == 1
    assert "Incident 1" in toast.locator(".toast-header").inner_text()
    assert toast.get_attribute("data-type") == "TAB_SWITCH"
    parts = toast.locator(".incident-part")
    assert [parts.nth(i).get_attribute("data-type") for i in range(parts.count())] == ["FULLSCREEN_EXIT", "VOICE_DETECTED"]
    assert all(parts.nth(i).inner_text().startswith("Same incident: ") and "Ines Incident" in parts.nth(i).inner_text()
               for i in range(2))

    rows = server.sql("SELECT Type, Details FROM violations WHERE SessionID = :s ORDER BY ViolationID", s=session_id)
    assert [(t, json.loads(d)["incident"], json.loads(d)["warning_count"]) for t, d in rows] == [
        ("TAB_SWITCH", 1, 1), ("FULLSCREEN_EXIT", 1, 1), ("VOICE_DETECTED", 1, 1)]
    assert server.sql("SELECT Status FROM exam_sessions WHERE SessionID = :s", s=session_id) == [("IN_PROGRESS",)]

    # After the incident's window (INCIDENT_WINDOW_S, 6 s by default) the next rule is a new incident and toast.
    time.sleep(6.5)
    later = _report(student, "CAMERA_OFF", reason="ended")["warnings"]
    assert [(w["incident"], w["incident_opened"], w["count"]) for w in later] == [(2, True, 2)]
    admin.locator('.admin-toast[data-incident="2"]').wait_for(timeout=WAIT_MS)
    assert admin.locator(".admin-toast").count() == 2
