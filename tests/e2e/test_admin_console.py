"""The admin console in a real browser against the real server, beside a proctored student.

One browser context is the student, whose fake webcam plays real photos (a face, then an empty
room); another is the admin. The admin builds the exam through the console, sees the student
appear on the live dashboard, gets a toast when the face disappears, opens the live feed and
receives frames, clears the warnings and force-terminates the exam; the student's page then shows
the terminated result. The review page and the CSV export carry the violation and its evidence;
a dismissed violation shows as dismissed. Screenshots of every admin page go to test-artifacts/.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.e2e.conftest import login_in_browser
from tests.e2e.media import EMPTY_ROOM, FACE, TESTDATA, Segment

ADMIN_EMAIL = "proctor@example.edu"
STUDENT_EMAIL = "candidate@example.edu"
STUDENT_NAME = "Casey Candidate"
EXAM_TITLE = "Console Exam <b>&</b>"
WAIT_MS = 60_000  # a wait, not an assertion on speed: the server analyses frames on 2 CPU cores


def wait_until(locator, expression: str, arg=None, timeout_s: float = WAIT_MS / 1000) -> None:
    """Poll `expression` (a function of the element) until it is truthy.

    page.wait_for_function would evaluate a string, which the pages' CSP (no 'unsafe-eval') refuses;
    locator.evaluate runs through the DevTools protocol instead.
    """
    import time

    deadline = time.monotonic() + timeout_s
    locator.wait_for(timeout=timeout_s * 1000)
    while not locator.evaluate(expression, arg):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout_s:.0f} s: {expression}")
        time.sleep(0.25)


def _admin_creates_exam(page, shots) -> int:
    page.goto("/admin/exams/new")
    page.get_by_label("Title", exact=True).fill(EXAM_TITLE)
    page.get_by_label("Description", exact=True).fill("Built through the admin console by the e2e test.")
    page.get_by_label("Duration (minutes, 1–600)").fill("20")
    page.get_by_label("Pass mark (%, 0–100)").fill("50")
    # No liveness gesture: the fake camera shows a still photo (liveness has its own tests).
    page.get_by_label(re.compile("Require a liveness check")).uncheck()
    page.locator("summary", has_text="Threshold overrides").click()
    page.locator("#th_TIME_NO_FACE_S").fill("2")
    shots(page, "admin-exam-new")
    page.get_by_role("button", name="Save exam").click()
    page.wait_for_url(re.compile(r"/admin/exams/\d+/questions$"))
    exam_id = int(re.search(r"/admin/exams/(\d+)/questions", page.url).group(1))
    for text, options, correct in [("Which planet is largest?", ["Mars", "Jupiter", "Venus"], 1),
                                   ("2 + 3 = ?", ["5", "6"], 0)]:
        page.get_by_label("Question", exact=True).fill(text)
        for i, option in enumerate(options):
            page.locator(f"#q-option-{i}").fill(option)
        page.locator(f"#q-correct-{correct}").check()
        page.get_by_role("button", name="Add question").click()
        page.wait_for_load_state()
    assert page.locator("#question-list > li").count() == 2
    shots(page, "admin-questions")
    page.goto("/admin/exams")
    page.locator(f'tr[data-exam-id="{exam_id}"] button', has_text="Publish").click()
    page.wait_for_load_state()
    assert page.locator(f'tr[data-exam-id="{exam_id}"] td', has_text="yes").count() == 1
    shots(page, "admin-exams")
    return exam_id


def _student_starts_exam(page, exam_id: int, photo: Path, shots) -> int:
    login_in_browser(page, STUDENT_EMAIL)
    page.goto(f"/student/exams/{exam_id}/")
    page.wait_for_load_state()
    if "/rules" in page.url:
        page.get_by_label(re.compile("I have read the rules")).check()
        page.get_by_role("button", name=re.compile("Accept and continue")).click()
        page.wait_for_load_state()
    if "/system-check" in page.url:
        page.locator("#check-continue:not([disabled])").wait_for(timeout=WAIT_MS)
        page.locator("#check-continue").click()
        page.wait_for_url(lambda url: "/system-check" not in url, timeout=WAIT_MS)
    if "/face" in page.url:
        page.locator("#photo").set_input_files(str(photo))
        page.locator("#face-upload").click()
        page.wait_for_url(lambda url: "/face" not in url, timeout=WAIT_MS)
    if "/confirm" in page.url:  # the check starts by itself; the button is there to retry
        ready = re.compile(r"/ready$")
        try:
            page.wait_for_url(ready, timeout=WAIT_MS // 2)
        except PlaywrightTimeout:
            page.locator("#confirm-start:not([disabled])").click(timeout=WAIT_MS)
            page.wait_for_url(ready, timeout=WAIT_MS)
    page.locator("#start-exam").click()
    page.wait_for_url(re.compile(r"/student/sessions/\d+$"), timeout=WAIT_MS)
    shots(page, "student-exam")
    return int(re.search(r"/sessions/(\d+)", page.url).group(1))


@pytest.mark.timeout(600)
def test_admin_console_end_to_end(make_live_server, browser_factory, media, shots):
    server = make_live_server()
    server.create_user(ADMIN_EMAIL, role="ADMIN", name="Pat Proctor")
    server.create_user(STUDENT_EMAIL, name=STUDENT_NAME)
    # The camera: the student's face long enough to confirm identity and be seen, then the empty room.
    video = media.clip("console-face-then-absent", [Segment(FACE, 14.0), Segment(EMPTY_ROOM, 12.0)])

    def context(browser):
        ctx = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900},
                                  permissions=["camera", "microphone"])
        ctx.set_default_timeout(20_000)
        page = ctx.new_page()
        page.console_messages = []
        page.on("console", lambda m: page.console_messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: page.console_messages.append(f"pageerror: {e}"))
        return page

    admin = context(browser_factory())
    student = context(browser_factory(video=video, audio=media.silence()))
    try:
        _run(server, admin, student, shots)
    except Exception:
        print("admin console:", "\n".join(admin.console_messages[-30:]))
        print("student console:", "\n".join(student.console_messages[-30:]))
        print("server log:", server.log_tail(80))
        raise


def _run(server, admin, student, shots):
    login_in_browser(admin, ADMIN_EMAIL)
    assert admin.url.endswith("/admin/"), admin.url
    shots(admin, "admin-home")
    exam_id = _admin_creates_exam(admin, shots)

    # the admin watches the dashboard before the student starts
    admin.goto("/admin/monitor")
    admin.locator('#connection-state[data-state="live"]').wait_for(timeout=WAIT_MS)

    session_id = _student_starts_exam(student, exam_id, TESTDATA / FACE, shots)
    (student_id,) = server.sql("SELECT StudentID FROM exam_sessions WHERE SessionID = :s", s=session_id)[0]

    # 1. the student appears in the grid, with a thumbnail from the live frames
    card = admin.locator(f'#monitor-grid [data-student-id="{student_id}"]')
    card.wait_for(timeout=WAIT_MS)
    assert STUDENT_NAME in card.inner_text()
    wait_until(card.locator("img.student-thumb"), "img => img.naturalWidth > 0")
    shots(admin, "admin-monitor")
    # The detector has seen the honest student (one person): a person is not a prohibited object, so
    # the objects chip says none and is not red (it used to say "objects: person" in red).
    admin.locator(f'#monitor-grid [data-student-id="{student_id}"][data-persons="1"]').wait_for(timeout=WAIT_MS)
    objects_chip = card.locator('[data-chip="objects"]')
    assert objects_chip.inner_text() == "objects: none"
    assert "text-bg-danger" not in (objects_chip.get_attribute("class") or "")
    assert card.locator('[data-chip="persons"]').count() == 0
    # The registered student's face was checked against the registration: the identity chip says so.
    identity_chip = card.locator('[data-chip="identity"]')
    wait_until(identity_chip, "el => el.textContent === 'identity: matches'")
    assert "text-bg-success" in (identity_chip.get_attribute("class") or "")

    # 2. the face disappears (the clip moves to the empty room): a toast on the dashboard
    toast = admin.locator('.admin-toast[data-type="NO_FACE"]')
    toast.first.wait_for(timeout=WAIT_MS)
    assert toast.first.locator(".toast-body").inner_text().startswith(f"{STUDENT_NAME} was not visible to the camera")
    assert "toast-sev-high" in toast.first.get_attribute("class")
    shots(admin, "admin-monitor-toast")

    # the socket drops: the page says so and keeps the grid alive by polling /api/admin-active-students
    admin.evaluate("() => window.adminSocket.disconnect()")
    admin.locator('#connection-state[data-state="polling"]').wait_for(timeout=WAIT_MS)
    assert "refreshing every" in admin.locator("#connection-state").inner_text()
    frame_chip = card.locator('[data-chip="frame_age"]')
    before = frame_chip.inner_text()
    wait_until(frame_chip, "(el, before) => el.textContent !== before", arg=before)
    assert card.count() == 1
    shots(admin, "admin-monitor-polling")

    # 3. the live feed page receives MJPEG frames
    card.locator("a").click()
    admin.wait_for_url(re.compile(rf"/admin/monitor/{student_id}$"))
    feed = admin.locator("#live-feed")
    wait_until(feed, "img => img.naturalWidth > 0")
    size = feed.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert size[0] >= 160 and size[1] >= 120, size
    admin.locator('[data-field="warnings"]').filter(has_text=re.compile(r"^[1-9]")).wait_for(timeout=WAIT_MS)
    admin.locator('#live-violations li[data-type="NO_FACE"]', has_text="No face").first.wait_for(timeout=WAIT_MS)
    shots(admin, "admin-live-feed")

    # 4. clear warnings (audited by the runtime)
    admin.locator("#clear-warnings").click()
    admin.locator("#action-result", has_text="Warnings cleared").wait_for()
    assert server.sql("SELECT COUNT(*) FROM audit_log WHERE action LIKE '%clear%' AND target_id IS NOT NULL")[0][0] >= 1

    # an accommodation: one rule off for this student; auto-terminate on and off again (both audited)
    admin.locator("#rule-VOICE_DETECTED").uncheck()
    admin.locator("#action-result", has_text="VOICE_DETECTED off for this student").wait_for()
    admin.locator("#auto-terminate").check()
    admin.locator("#action-result", has_text="Auto-terminate on").wait_for()
    admin.locator("#auto-terminate").uncheck()
    admin.locator("#action-result", has_text="Auto-terminate off").wait_for()
    assert server.sql("SELECT DisabledRules FROM exam_sessions WHERE SessionID = :s", s=session_id)[0][0] == "VOICE_DETECTED"

    # 5. force terminate with confirmation; the student's page shows the terminated result
    admin.locator("#terminate-reason").fill("Left the camera view (e2e)")
    admin.once("dialog", lambda d: d.accept())
    admin.locator("#terminate").click()
    admin.locator("#action-result", has_text="exam has ended").wait_for(timeout=WAIT_MS)
    shots(admin, "admin-terminated")
    student.wait_for_url(re.compile(rf"/student/sessions/{session_id}/result$"), timeout=WAIT_MS)
    student.locator('#result-status[data-status="TERMINATED"]').wait_for(timeout=WAIT_MS)
    assert "A proctor ended your exam: Left the camera view (e2e)" in student.locator("#result-status").inner_text()
    shots(student, "student-terminated-result")
    assert server.sql("SELECT Status, TerminationReason FROM exam_sessions WHERE SessionID = :s", s=session_id) == [
        ("TERMINATED", "Left the camera view (e2e)")]

    # 6. review: the NO_FACE violation with its evidence snapshot; dismiss one, set the outcome
    admin.goto(f"/admin/results?exam={exam_id}")
    admin.locator(f'tr[data-session-id="{session_id}"]').wait_for()
    shots(admin, "admin-results")
    admin.locator(f'tr[data-session-id="{session_id}"] a', has_text="Review").click()
    admin.wait_for_url(re.compile(rf"/admin/sessions/{session_id}$"))
    no_face = admin.locator('article.violation[data-type="NO_FACE"]').first
    no_face.wait_for()
    vid = int(no_face.get_attribute("data-violation-id"))
    # read as words and times: a sentence naming the student, "+m:ss" from the start and the browser's local time
    assert no_face.locator(".violation-sentence").inner_text().startswith(f"{STUDENT_NAME} was not visible to the camera")
    assert re.fullmatch(r"\+\d+:\d\d", no_face.locator(".moment-offset").first.inner_text())
    assert no_face.locator("time.local-time").first.inner_text().endswith(" local")
    snapshot = no_face.locator("img.evidence-snapshot")
    assert snapshot.count() == 1, "the NO_FACE violation has no evidence snapshot"
    wait_until(snapshot, "img => img.complete && img.naturalWidth > 0")
    assert admin.locator("svg.timeline circle").count() >= 1
    shots(admin, "admin-session-review")
    no_face.locator(f"#note-{vid}").fill("Student stepped away: checked with them")
    no_face.get_by_role("button", name="Dismiss").click()
    admin.wait_for_load_state()
    dismissed = admin.locator(f"#v{vid}")
    assert "violation-dismissed" in dismissed.get_attribute("class")
    assert "DISMISSED" in dismissed.locator(".review-status").inner_text()
    admin.locator('label[for="outcome-SUSPICIOUS"]').click()
    admin.get_by_role("button", name="Save outcome").click()
    admin.wait_for_load_state()
    assert admin.locator("#outcome").inner_text() == "SUSPICIOUS"
    shots(admin, "admin-session-reviewed")

    # 7. the CSV exports carry the violation, its evidence link and the review
    resp = admin.request.get(f"/admin/reports/violations.csv?session={session_id}")
    assert resp.ok and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text())))
    mine = [r for r in rows if r["violation_id"] == str(vid)]
    assert mine and mine[0]["type"] == "NO_FACE" and mine[0]["review_status"] == "DISMISSED"
    assert mine[0]["snapshot_url"].endswith(f"/admin/evidence/{vid}/snapshot")
    evidence = admin.request.get(mine[0]["snapshot_url"])
    assert evidence.ok and evidence.headers["content-type"] == "image/jpeg" and len(evidence.body()) > 1000
    results = list(csv.DictReader(io.StringIO(admin.request.get(f"/admin/reports/results.csv?exam={exam_id}").text())))
    assert [(r["session_id"], r["status"], r["outcome"]) for r in results] == [(str(session_id), "TERMINATED", "SUSPICIOUS")]
    assert int(results[0]["violations_dismissed"]) >= 1

    # 8. the audit log shows every action of this session, by this admin
    admin.goto("/admin/audit")
    table = admin.locator("#audit-table").inner_text()
    for action in ("exam.create", "question.create", "exam.publish", "live.clear_warnings", "live.set_rule",
                   "live.set_auto_terminate", "live.terminate", "violation.review", "session.outcome"):
        assert action in table, action
    shots(admin, "admin-audit")

    # the printable report hides the controls when printed
    admin.goto(f"/admin/sessions/{session_id}/report")
    assert admin.locator("#print-button").is_visible()
    admin.emulate_media(media="print")
    assert not admin.locator("#print-button").is_visible()
    assert admin.locator("svg.timeline").is_visible()
    shots(admin, "admin-report-as-printed")
    admin.emulate_media(media="screen")

    # 9. the remaining admin pages render in the browser (screenshots for the record)
    (question_id,) = server.sql("SELECT MIN(QuestionID) FROM questions WHERE ExamID = :e", e=exam_id)[0]
    for path, name in [(f"/admin/sessions/{session_id}/report", "admin-report-print"),
                       (f"/admin/sessions/{session_id}/recordings", "admin-recordings"),
                       ("/admin/students", "admin-students"), (f"/admin/students/{student_id}/edit", "admin-student-edit"),
                       ("/admin/students/import", "admin-students-import"), (f"/admin/exams/{exam_id}/edit", "admin-exam-edit"),
                       ("/admin/reports", "admin-reports"), ("/admin/students/new", "admin-student-new"),
                       (f"/admin/students/{student_id}/delete", "admin-student-delete-confirm"),
                       (f"/admin/exams/{exam_id}/delete", "admin-exam-delete-confirm"),
                       (f"/admin/questions/{question_id}/edit", "admin-question-edit"), ("/admin/", "admin-home-after")]:
        resp = admin.goto(path)
        assert resp.status == 200, path
        shots(admin, name)
    admin.goto(f"/admin/students/{student_id}/edit")
    face = admin.locator("img.face-image")
    wait_until(face, "img => img.complete && img.naturalWidth > 0")
    errors = [m for m in admin.console_messages if m.startswith("pageerror") or "Content Security Policy" in m]
    assert errors == [], errors
