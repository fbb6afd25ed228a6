"""Screen sharing (issue 16) in real Chromium against the real server: one server, cases in sequence.

What Debian's Chromium 156 does headless (tried one by one, the page asking
getDisplayMedia({video: {displaySurface: "monitor"}})):
- `--use-fake-ui-for-media-stream --use-fake-device-for-media-stream` (the e2e default flags): the
  picker is accepted at once with Chromium's fake screen, label "screen:-3:0", 1280x720,
  displaySurface "monitor". Adding `display-media-type=browser|window` to the fake-device flag changes
  nothing: the surface stays "monitor".
- `--auto-select-tab-capture-source-by-title=<title>` (WITHOUT the fake UI, which overrides it with
  NotReadableError): the tab of another page with that title is captured for real, displaySurface
  "browser". This is the tab share refused below: no stub.
- `--auto-select-desktop-capture-source=Entire screen` and `--auto-select-window-capture-source-by-title`:
  the promise never settles headless (no screen or window to list), so no window surface is tested.

Stopping: nothing available headless stops a fake screen capture the way the browser's "Stop sharing"
bar does (no capture UI, no CDP command for it; track.stop() from the page ends the track without the
"ended" event). So the test stops the real track and then dispatches `new Event("ended")` on it, which
is what the browser does when the user stops sharing. The page's stream is reached through a spy
around getDisplayMedia (an init script that records the real stream it returns; nothing is faked).
"""
from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from tests.e2e.conftest import CHROMIUM, chromium_args, login_in_browser
from tests.e2e.test_accessibility import AXE_JS, axe_violations, tab_to

ADMIN_EMAIL = "screen-admin@example.edu"
STUDENT_EMAIL = "screen-student@example.edu"
STUDENT_NAME = "Sam Screen"
WAIT_S = 60  # a wait, not a speed assertion: 2 shared cores run the server, two browsers and pytest
NOT_ENTIRE = "Share your entire screen, not a window or a tab"
SPY = """(() => {
  window.__screenStreams = [];
  const real = navigator.mediaDevices.getDisplayMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getDisplayMedia = async (c) => { const s = await real(c); window.__screenStreams.push(s); return s; };
})();"""


def _wait(what: str, probe, timeout_s: float = WAIT_S):
    """Polls probe() until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _session(server, exam_id: int) -> int:
    """An exam session in progress, written as the exam flow writes it (the flow has its own tests)."""
    student_id = server.sql("SELECT ID FROM students WHERE Email = :e", e=STUDENT_EMAIL)[0][0]
    qids = [r[0] for r in server.sql("SELECT QuestionID FROM questions WHERE ExamID = :e ORDER BY Position", e=exam_id)]
    server.sql("INSERT INTO exam_sessions (StudentID, ExamID, Status, StartedAt, Deadline, QuestionOrder, DisabledRules) "
               "VALUES (:s, :e, 'IN_PROGRESS', CURRENT_TIMESTAMP, datetime(CURRENT_TIMESTAMP, '+30 minutes'), :q, '')",
               s=student_id, e=exam_id, q=json.dumps(qids))
    return server.sql("SELECT MAX(SessionID) FROM exam_sessions WHERE StudentID = :s", s=student_id)[0][0]


def _screens(server, session_id):
    return server.sql("SELECT id, path, bytes, mime, started_at FROM recordings WHERE session_id = :s AND kind = 'screen' "
                      "ORDER BY id", s=session_id)


def _page(browser, server, **kw):
    ctx = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900}, **kw)
    ctx.set_default_timeout(WAIT_S * 1000)
    page = ctx.new_page()
    page.console_messages = []
    page.on("console", lambda m: page.console_messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.console_messages.append(f"pageerror: {e}"))
    return page


@pytest.mark.timeout(300)
def test_screen_share_entire_screen_tab_refused_and_stop(make_live_server, browser_factory, playwright_instance, shots):
    server = make_live_server()
    server.create_user(ADMIN_EMAIL, role="ADMIN", name="Pat Proctor")
    server.create_user(STUDENT_EMAIL, name=STUDENT_NAME)
    exam_id = server.create_exam("Screen exam", [("2 + 2 = ?", ["3", "4"], 1), ("3 + 3 = ?", ["6", "7"], 0)],
                                 require_liveness=False)
    server.sql("UPDATE exams SET ScreenShare = 'required', ScreenshotIntervalS = 5 WHERE ExamID = :e", e=exam_id)
    session_id = _session(server, exam_id)
    student_id = server.sql("SELECT ID FROM students WHERE Email = :e", e=STUDENT_EMAIL)[0][0]

    browser = browser_factory()  # the e2e flags: fake camera, microphone and screen (displaySurface "monitor")
    admin = _page(browser, server)
    login_in_browser(admin, ADMIN_EMAIL)
    admin.goto("/admin/monitor")
    student = _page(browser, server, permissions=["camera", "microphone"], bypass_csp=True)  # bypass: axe is injected
    student.add_init_script(SPY)
    login_in_browser(student, STUDENT_EMAIL)
    student.goto(f"/student/sessions/{session_id}")

    # 1. Before sharing: the panel stands in the questions' place; it passes axe and is reached by keyboard.
    panel, questions = student.locator("#screen-panel"), student.locator("#question")
    panel.wait_for()
    student.locator("#question .question-text").wait_for(state="attached")  # the questions are loaded, hidden
    assert panel.is_visible() and not questions.is_visible()
    assert not student.locator("#next").is_visible()
    assert AXE_JS.exists(), "run scripts/install_static.sh --dev (axe-core)"
    assert axe_violations(student, "exam page, screen not shared") == []
    shots(student, "student-screen-not-shared")
    tab_to(student, "#screen-share")
    student.keyboard.press("Enter")  # a user gesture, as getDisplayMedia requires

    # 2. Entire screen granted: the questions show; screenshots arrive at once and then every 5 s.
    student.locator('#exam[data-screen-live="1"]').wait_for()
    assert questions.is_visible() and not panel.is_visible()
    rows = _wait("two screenshots stored", lambda: (r := _screens(server, session_id)) and len(r) >= 2 and r)
    for rid, path, size, mime, started_at in rows[:2]:
        data = (server.data_dir / path).read_bytes()
        assert mime == "image/jpeg" and size == len(data) and 1_000 < size < 600 * 1024 and started_at
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and max(img.shape[:2]) <= 1280 and img.shape[1] >= 640, img.shape  # the 1280x720 fake screen
    assert student.evaluate("() => window.__screenStreams[0].getVideoTracks()[0].getSettings().displaySurface") == "monitor"

    # 3. The admin's live tile shows the latest screenshot beside the camera picture.
    tile = admin.locator(f'#monitor-grid [data-student-id="{student_id}"] img.student-screen')
    tile.wait_for()
    _wait("the screenshot drawn on the live tile", lambda: tile.evaluate("img => !img.hidden && img.naturalWidth > 0"))
    shown = int(tile.get_attribute("data-screenshot-id"))
    assert shown in {r[0] for r in _screens(server, session_id)}
    assert tile.get_attribute("alt") == f"Shared screen of {STUDENT_NAME}"
    shots(admin, "admin-live-tile-with-screen")

    # 4. The student stops sharing: SCREEN_SHARE_STOPPED is stored for this session and the panel is back.
    student.evaluate("""() => { const t = window.__screenStreams[0].getVideoTracks()[0];
                               t.stop(); t.dispatchEvent(new Event("ended")); }""")
    panel.wait_for()
    assert not questions.is_visible()
    stopped = _wait("the SCREEN_SHARE_STOPPED violation", lambda: server.sql(
        "SELECT Details FROM violations WHERE SessionID = :s AND Type = 'SCREEN_SHARE_STOPPED'", s=session_id))
    assert len(stopped) == 1 and json.loads(stopped[0][0]).get("share_reason") == "ended"
    message = student.locator("#screen-message").inner_text()
    assert "Share your entire screen again" in message, message  # the rule's own message (config_vision)
    assert student.evaluate("() => document.activeElement.id") == "screen-share"
    shots(student, "student-screen-share-stopped")
    after_stop = len(_screens(server, session_id))

    # 5. A tab shared in a second browser that captures a tab by its title: refused, the panel stays.
    tab_browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=[a for a in chromium_args(None, None) if a != "--use-fake-ui-for-media-stream"]
        + ["--auto-select-tab-capture-source-by-title=Notes to capture"])
    try:
        tab_student = _page(tab_browser, server, permissions=["camera", "microphone"])
        tab_student.context.new_page().set_content("<title>Notes to capture</title><p>notes</p>")
        login_in_browser(tab_student, STUDENT_EMAIL)
        tab_student.goto(f"/student/sessions/{session_id}")
        tab_student.locator("#screen-share").click()
        tab_student.locator('#exam[data-refused-surface="browser"]').wait_for()
        assert NOT_ENTIRE in tab_student.locator("#screen-message").inner_text()
        assert tab_student.locator("#screen-panel").is_visible() and not tab_student.locator("#question").is_visible()
        assert tab_student.locator("#screen-share").is_enabled()
        shots(tab_student, "student-tab-share-refused")
    finally:
        tab_browser.close()
    assert len(_screens(server, session_id)) == after_stop  # neither the stopped nor the refused share sends any
    assert len(server.sql("SELECT 1 FROM violations WHERE SessionID = :s AND Type = 'SCREEN_SHARE_STOPPED'",
                          s=session_id)) == 1  # refusing a tab is not a violation

    # 6. The review: every screenshot on the timeline's "Screen" lane and in the strip, each opening the image.
    review = _page(browser, server, bypass_csp=True)  # bypass: axe is injected
    login_in_browser(review, ADMIN_EMAIL)
    review.goto(f"/admin/sessions/{session_id}")
    ids = [r[0] for r in _screens(server, session_id)]
    links = review.locator("svg.timeline a.tl-shot-link")
    assert [int(links.nth(i).get_attribute("data-screenshot-id")) for i in range(links.count())] == ids
    thumbs = review.locator("#screenshots img.screenshot-thumb")
    assert thumbs.count() == len(ids)
    thumbs.first.scroll_into_view_if_needed()
    _wait("the first thumbnail loaded", lambda: thumbs.first.evaluate("img => img.complete && img.naturalWidth > 0"))
    assert axe_violations(review, "session review with screenshots") == []
    shots(review, "admin-review-screenshots")
    opened = review.request.get(links.first.get_attribute("href"))
    assert opened.status == 200 and opened.headers["content-type"] == "image/jpeg"
    assert opened.body() == (server.data_dir / _screens(server, session_id)[0][1]).read_bytes()
