"""The room scan in a real browser (Chromium, fake camera from a real photo) against the real server:
a student of an exam that requires a scan goes rules -> system check -> face -> identity check ->
room scan (a recording under 10 s is refused on the page; a real one of just over 10 s is uploaded)
-> the exam; an admin then opens the session and the clip plays and seeks in its <video>.
Both pages pass axe-core; screenshots go to test-artifacts/.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import login_in_browser
from tests.e2e.media import FACE, TESTDATA
from tests.e2e.test_accessibility import AXE_JS, axe_violations, new_context_page

pytestmark = pytest.mark.timeout(600)

STUDENT = "scan-student@example.edu"
ADMIN = "scan-admin@example.edu"
QUESTIONS = [("2 + 2 = ?", ["3", "4"], 1), ("Capital of France?", ["Paris", "Rome"], 0)]
WAIT_MS = 60_000  # a wait, not a speed assertion: 2 shared cores


def test_student_records_the_room_scan_and_the_admin_plays_it(live_server, browser_factory, media, shots):
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} missing: run scripts/install_static.sh --dev")
    server = live_server
    server.create_user(STUDENT, name="Sam Scan")
    server.create_user(ADMIN, role="ADMIN", name="Ada Scan")
    exam_id = server.create_exam("Room Scan Exam", QUESTIONS, require_liveness=False)
    server.sql("UPDATE exams SET RequireRoomScan = 1 WHERE ExamID = :e", e=exam_id)
    browser = browser_factory(video=media.face(), audio=media.silence())

    # --- the student's steps up to the room scan
    page = new_context_page(browser, server)
    login_in_browser(page, STUDENT)
    page.goto(f"/student/exams/{exam_id}/")
    page.wait_for_url("**/student/rules**")
    page.get_by_label(re.compile("I have read the rules")).check()
    page.get_by_role("button", name=re.compile("Accept and continue")).click()
    page.wait_for_url("**/student/system-check**")
    page.locator("#check-continue:not([disabled])").click(timeout=WAIT_MS)
    page.wait_for_url("**/student/face**", timeout=WAIT_MS)
    page.locator("#photo").set_input_files(str(TESTDATA / FACE))
    page.locator("#face-upload").click()
    page.wait_for_url(f"**/student/exams/{exam_id}/room-scan", timeout=WAIT_MS)  # through the identity check

    # --- the room scan page
    current = page.locator(".exam-step-current")
    expect(current).to_contain_text("Room scan")
    assert page.locator(".exam-step").all_inner_texts()[-2:] == ["5 Room scan", "6 Exam"]
    expect(page.locator("#scan-instructions")).to_contain_text("under the desk")
    record = page.get_by_role("button", name="Record", exact=True)
    expect(record).to_be_enabled(timeout=WAIT_MS)
    assert axe_violations(page, "room scan") == []
    # Too short: refused on the page, nothing uploaded.
    record.click()
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#scan-status")).to_contain_text("Too short")
    assert server.sql("SELECT COUNT(*) FROM room_scans")[0][0] == 0
    # A real recording: the countdown runs; stopped just past the 10 s minimum.
    page.get_by_role("button", name="Record again").click()
    page.wait_for_function("() => document.getElementById('scan-progress').value >= 3")
    expect(page.locator("#scan-time")).to_contain_text("of 20 s")
    shots(page, "room-scan-recording")
    page.wait_for_function("() => document.getElementById('scan-progress').value >= 10.4", timeout=20_000)
    page.get_by_role("button", name="Stop").click()
    upload = page.get_by_role("button", name="Upload and continue")
    expect(upload).to_be_visible()
    expect(page.locator("#scan-status")).to_contain_text(re.compile(r"Recorded 1\d\.\d s"))  # the click lands late on a busy machine
    assert page.locator("#scan-playback").is_visible()
    shots(page, "room-scan-recorded")
    assert axe_violations(page, "room scan recorded") == []
    upload.click()
    page.wait_for_url(f"**/student/exams/{exam_id}/ready", timeout=WAIT_MS)
    [(scan_id, session_id, duration, mime, size)] = server.sql(
        "SELECT id, session_id, duration_s, mime, bytes FROM room_scans")
    assert session_id is None and 9.5 <= duration <= 20 and mime == "video/webm" and 20_000 < size < 2_000_000
    page.get_by_role("button", name="Start the exam").click()
    page.wait_for_url(re.compile(r".*/student/sessions/\d+$"), timeout=WAIT_MS)
    session_id = int(page.url.rsplit("/", 1)[1])
    assert server.sql("SELECT session_id FROM room_scans WHERE id = :i", i=scan_id) == [(session_id,)]
    page.context.close()  # the exam page's camera and frames are not this test's subject

    # --- the admin's review: the scan first, and it plays and seeks
    admin = new_context_page(browser, server)
    login_in_browser(admin, ADMIN)
    admin.goto(f"/admin/sessions/{session_id}")
    video = admin.locator("#room-scan-video")
    expect(video).to_be_visible()
    expect(admin.locator("#room-scan-facts")).to_contain_text(re.compile(r"1\d\.\d s · recorded"))
    assert admin.evaluate("""() => {
        const scan = document.getElementById('room-scan'), v = document.getElementById('v-h');
        return !!(scan.compareDocumentPosition(v) & Node.DOCUMENT_POSITION_FOLLOWING);
    }""")
    video.evaluate("v => { v.muted = true; return v.play(); }")
    admin.wait_for_function("() => { const v = document.getElementById('room-scan-video');"
                            " return v.readyState >= 2 && v.currentTime > 0.2; }", timeout=WAIT_MS)
    duration = video.evaluate("v => v.duration")
    assert 9 < duration <= 20, duration  # a real length (the server remuxed the recorder's WebM), not Infinity
    seeked = video.evaluate("""v => new Promise((resolve) => {
        v.pause(); v.addEventListener('seeked', () => resolve(v.currentTime), {once: true}); v.currentTime = 7; })""")
    assert 6.5 <= seeked <= 7.5
    shots(admin, "admin-session-room-scan")
    assert axe_violations(admin, "admin session with room scan") == []
