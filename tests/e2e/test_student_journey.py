"""The student's journey in a real browser (Chromium, fake camera/mic from real photos) against
the real server (`python app.py`): sign up -> rules -> system check -> face registration ->
identity confirmation with liveness -> exam -> answers (kept over a reload) -> submit -> result.
Refusals: registration with no face or several faces; confirmation by a different person or by a face
on a phone screen.
"""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from proctor.cli import DEMO_EXAM_TITLE, DEMO_QUESTIONS
from tests.e2e.conftest import E2E_PASSWORD, login_in_browser
from tests.e2e.media import PERSON_A_AGAIN, PERSON_B, TESTDATA

pytestmark = pytest.mark.timeout(600)
KEY = {text: options[correct] for text, options, correct in DEMO_QUESTIONS}
WRONG = {text: options[(correct + 1) % len(options)] for text, options, correct in DEMO_QUESTIONS}


def test_fixtures_start_server_and_browser_with_fake_camera(live_server, new_page, media, shots):
    # The account through the administrator's own command line, `flask --app app create-user` in a process
    # of its own (the other tests run the same command in-process: LiveServer.cli).
    email = "smoke@example.edu"
    live_server.cli_process("create-user", "--role", "STUDENT", "--email", email, "--password", E2E_PASSWORD,
                            "--name", "E2E Student")
    page = new_page(video=media.face(), audio=media.silence())
    login_in_browser(page, email)
    assert page.url.endswith("/student/"), page.url
    # The fake camera is a real MediaStream whose frames come from the test photo.
    size = page.evaluate("""async () => {
        const s = await navigator.mediaDevices.getUserMedia({video: true, audio: true});
        const t = s.getVideoTracks()[0].getSettings();
        const a = s.getAudioTracks().length;
        s.getTracks().forEach(x => x.stop());
        return [t.width, t.height, a];
    }""")
    assert size == [640, 480, 1]
    shots(page, "student-home")


def signup(page, name: str, email: str, password: str = E2E_PASSWORD) -> None:
    page.goto("/signup")
    page.get_by_label("Full name").fill(name)
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_label("Repeat password").fill(password)
    page.get_by_role("button", name=re.compile("sign up|create", re.I)).click()
    page.wait_for_url("**/student/")


def accept_rules(page) -> None:
    page.wait_for_url("**/student/rules**")
    page.get_by_label("I have read the rules and I accept them.").check()
    page.get_by_role("button", name="Accept and continue").click()


def pass_system_check(page) -> dict[str, str]:
    page.wait_for_url("**/student/system-check**")
    expect(page.locator("#check-summary")).to_contain_text("passed", timeout=30_000)
    found = {}
    for part in ("browser", "camera", "microphone", "upload"):
        result = page.locator(f"#check-{part} .check-result")
        assert result.get_attribute("data-state") == "ok", part
        found[part] = result.inner_text()
    page.get_by_role("button", name="Continue").click()
    return found


def register_by_upload(page, photo: str) -> None:
    page.wait_for_url("**/student/face**")
    page.get_by_label(re.compile("Photo of your face")).set_input_files(str(TESTDATA / photo))
    page.get_by_role("button", name="Upload and register").click()
    page.wait_for_load_state()


def current_question_text(page) -> str:
    legend = page.locator("#question-text").inner_text()
    return legend.split(": ", 1)[1]


def timer_seconds(page) -> int:
    m, s = page.locator("#timer").inner_text().split(":")
    return int(m) * 60 + int(s)


def test_full_student_journey(live_server, new_page, media, shots):
    live_server.seed_demo()
    exam_id = live_server.sql("SELECT ExamID FROM exams WHERE Title = :t", t=DEMO_EXAM_TITLE)[0][0]
    # The camera shows the registered person's second photo and its mirror image in turn:
    # a real face whose measured yaw swings, which is what the liveness check asks for.
    page = new_page(video=media.face_turning(PERSON_A_AGAIN), audio=media.silence())
    signup(page, "Journey Student", "journey@example.edu")
    shots(page, "home")
    page.get_by_role("link", name=f"Take this exam: {DEMO_EXAM_TITLE}").click()

    accept_rules(page)
    shots(page, "system-check")
    checks = pass_system_check(page)
    assert checks["camera"] == "640×480"

    register_by_upload(page, "identity/obama.jpg")
    # Registered: the journey goes on to the identity check, which starts by itself.
    page.wait_for_url(f"**/student/exams/{exam_id}/confirm")
    t_confirm = time.monotonic()
    shots(page, "confirm")
    page.wait_for_url(f"**/student/exams/{exam_id}/ready", timeout=60_000)
    confirm_s = time.monotonic() - t_confirm
    shots(page, "ready")
    page.get_by_role("button", name="Start the exam").click()
    page.wait_for_url(re.compile(r".*/student/sessions/\d+$"))
    session_id = int(page.url.rsplit("/", 1)[1])
    row = live_server.sql("SELECT IdentityConfirmedAt, IdentityDistance, IdentityLiveness, Status FROM exam_sessions "
                          "WHERE SessionID = :s", s=session_id)[0]
    assert row[0] is not None and row[1] < 0.6 and "head turn" in row[2] and row[3] == "IN_PROGRESS"

    page.wait_for_selector("#question-text")
    shots(page, "exam")
    answered = {}
    for i in range(6):  # six questions, one of them wrong on purpose
        text = current_question_text(page)
        choice = WRONG[text] if i == 2 else KEY[text]
        page.get_by_label(choice, exact=True).check()
        expect(page.locator("#save-state")).to_have_text("Saved")
        answered[text] = choice
        if i == 1:
            page.get_by_role("button", name="Flag for review").click()
            expect(page.locator("#save-state")).to_have_text("Saved")
        page.get_by_role("button", name="Next").click()
    before = timer_seconds(page)
    assert 0 < before < 15 * 60

    page.reload()  # answers and the remaining time survive a reload
    page.wait_for_selector("#question-text")
    assert page.locator(".question-nav-item.answered").count() == 6
    assert page.locator(".question-nav-item.flagged").count() == 1
    after = timer_seconds(page)
    assert after <= before and after > before - 60
    page.locator(".question-nav-item").first.click()
    for _ in range(6):
        text = current_question_text(page)
        assert page.get_by_label(answered[text], exact=True).is_checked(), text
        page.get_by_role("button", name="Next").click()
    shots(page, "after-reload")
    for _ in range(len(DEMO_QUESTIONS) - 6):  # the rest, correctly
        text = current_question_text(page)
        page.get_by_label(KEY[text], exact=True).check()
        expect(page.locator("#save-state")).to_have_text("Saved")
        if page.get_by_role("button", name="Next").is_enabled():
            page.get_by_role("button", name="Next").click()

    proctor_state = page.evaluate("() => window.ExamProctor.state()")
    print(f"\nfigures: upload {checks['upload']}; identity confirmation with liveness {confirm_s:.1f} s; "
          f"proctor client interval {proctor_state['interval']:.0f} ms, JPEG quality {proctor_state['quality']:.2f}, "
          f"noise floor {proctor_state['noiseFloorDb']} dB")
    page.get_by_role("button", name="Submit the exam").click()
    page.wait_for_selector("#submit-modal.show")
    assert "You answered 12 of 12 questions" in page.locator("#submit-summary").inner_text()
    shots(page, "submit-confirm")
    page.locator("#submit-confirm").click()
    page.wait_for_url(f"**/student/sessions/{session_id}/result")
    shots(page, "result")
    assert page.locator("#result-status").get_attribute("data-status") == "PASS"
    assert "11 / 12" in page.locator("#result-score").inner_text()
    stored = live_server.sql("SELECT Score, Total, Status FROM exam_results WHERE SessionID = :s", s=session_id)
    assert stored == [(11, 12, "PASS")]
    # The page never received the key: the session JSON has only questions and options.
    payload = page.evaluate(f"fetch('/api/exam/sessions/{session_id}').then(r => r.text())")
    assert "correct" not in payload.lower()


@pytest.mark.parametrize("photo, message", [
    ("f_5_living_room_empty.jpg", "no face found"),
    ("e_2_three_business.jpg", "3 faces found: exactly one person must be in the picture"),
])
def test_registration_refuses_no_face_or_several_faces(live_server, new_page, media, shots, photo, message):
    email = live_server.create_user(f"refuse-{photo[:3]}@example.edu")
    page = new_page(video=media.empty_room(), audio=media.silence())
    login_in_browser(page, email)
    page.goto("/student/face")
    register_by_upload(page, photo)
    error = page.locator("#face-error")
    assert message in error.inner_text()
    shots(page, "refused")
    assert live_server.sql("SELECT COUNT(*) FROM profiles p JOIN students s ON s.ID = p.student_id WHERE s.Email = :e",
                           e=email) == [(0,)]


def test_registration_by_webcam_capture(live_server, new_page, media, shots):
    email = live_server.create_user("webcam@example.edu")
    page = new_page(video=media.face(), audio=media.silence())
    login_in_browser(page, email)
    page.goto("/student/face")
    expect(page.locator("#face-capture")).to_be_enabled()
    shots(page, "camera-ready")
    page.get_by_role("button", name="Take photo and register").click()
    page.wait_for_selector("#face-registered")
    assert "Your face is registered." in page.content()
    rows = live_server.sql("SELECT p.image_path, length(p.embedding) FROM profiles p JOIN students s ON s.ID = p.student_id "
                           "WHERE s.Email = :e", e=email)
    from face_identity import TEMPLATE_BYTES

    assert len(rows) == 1 and rows[0][1] == TEMPLATE_BYTES  # dlib's and FaceRes's vectors (face_identity.py)


def test_confirmation_by_a_different_person_is_refused(live_server, new_page, media, shots):
    live_server.seed_demo()
    exam_id = live_server.sql("SELECT ExamID FROM exams WHERE Title = :t", t=DEMO_EXAM_TITLE)[0][0]
    email = live_server.create_user("impostor@example.edu")
    page = new_page(video=media.face(PERSON_B), audio=media.silence())  # someone else sits the exam
    login_in_browser(page, email)
    page.goto(f"/student/exams/{exam_id}/")
    accept_rules(page)
    pass_system_check(page)
    register_by_upload(page, "identity/obama.jpg")
    page.wait_for_url(f"**/student/exams/{exam_id}/confirm")
    expect(page.locator("#confirm-status")).to_contain_text("Refused", timeout=60_000)
    assert page.locator("#confirm-match").get_attribute("data-state") == "fail"
    shots(page, "refused")
    page.goto(f"/student/exams/{exam_id}/ready")
    assert page.url.endswith(f"/student/exams/{exam_id}/confirm")  # cannot skip ahead
    assert live_server.sql("SELECT COUNT(*) FROM exam_sessions es JOIN students s ON s.ID = es.StudentID "
                           "WHERE s.Email = :e", e=email) == [(0,)]


def test_confirmation_with_a_face_on_a_phone_is_refused(live_server, new_page, media, shots):
    """The camera sees b_1 (a phone showing a face, held to the webcam), and the registered photo is that
    same picture, so identity alone would confirm it: the presentation check refuses it with its own message."""
    spoof = "b_1_phone_held_to_webcam.jpg"
    live_server.seed_demo()
    exam_id = live_server.sql("SELECT ExamID FROM exams WHERE Title = :t", t=DEMO_EXAM_TITLE)[0][0]
    email = live_server.create_user("phone-face@example.edu")
    page = new_page(video=media.face(spoof), audio=media.silence())
    login_in_browser(page, email)
    page.goto(f"/student/exams/{exam_id}/")
    accept_rules(page)
    pass_system_check(page)
    register_by_upload(page, spoof)
    page.wait_for_url(f"**/student/exams/{exam_id}/confirm")
    expect(page.locator("#confirm-status")).to_contain_text("your own face, not a photo or a screen", timeout=60_000)
    assert page.locator("#confirm-match").get_attribute("data-state") == "fail"
    assert "photo or a screen" in page.locator("#confirm-match").inner_text()
    shots(page, "refused-phone-face")
    page.goto(f"/student/exams/{exam_id}/ready")
    assert page.url.endswith(f"/student/exams/{exam_id}/confirm")  # cannot skip ahead
    assert live_server.sql("SELECT COUNT(*) FROM exam_sessions es JOIN students s ON s.ID = es.StudentID "
                           "WHERE s.Email = :e", e=email) == [(0,)]
