"""Issue 16 end to end, in Chromium with the fake camera: virtual cameras, a second display, the exam page's own
events and a camera change. One browser, one server, one student walking the cases in sequence.

What is real and what is stubbed (an init script, `STUBS`, driven by localStorage flags the test sets):
- Chromium's fake camera is named "fake_device_0" (or, as here, after the clip file it plays) and no virtual
  camera driver exists on this machine, so the virtual camera is the fake camera's label replaced by "OBS
  Virtual Camera" (MediaStreamTrack.label and the videoinput entries of enumerateDevices()); with the flag
  removed, the real fake device is checked and passes.
- There is no second display here: screen.isExtended is stubbed to true.
- The camera change is a stubbed one too: Chromium's fake capture offers one device, so the live track's label
  and getSettings().deviceId are replaced by another device's and a `devicechange` event is dispatched, as the
  browser does when a camera is plugged in or out.
- Copy, paste, the right click, Print Screen and F12 are real key presses and clicks through Playwright, and
  the clipboard is the browser's real one.
"""
from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import CHROMIUM, chromium_args, login_in_browser
from tests.e2e.media import FACE, TESTDATA
from tests.e2e.test_accessibility import axe_violations
from tests.e2e.test_student_proctoring import QUESTIONS, wait_js, wait_rows

pytestmark = pytest.mark.timeout(600)
EMAIL = "devices@example.edu"

STUBS = """
(() => {
  const flag = (name) => { try { return window.localStorage.getItem(name); } catch (e) { return null; } };
  const label = Object.getOwnPropertyDescriptor(MediaStreamTrack.prototype, "label");
  Object.defineProperty(MediaStreamTrack.prototype, "label", {configurable: true, get() {
    const real = label.get.call(this);
    return (this.kind === "video" && flag("e2e-camera-label")) || real;
  }});
  const getSettings = MediaStreamTrack.prototype.getSettings;
  MediaStreamTrack.prototype.getSettings = function () {
    const s = getSettings.call(this);
    if (this.kind === "video" && flag("e2e-camera-id")) s.deviceId = flag("e2e-camera-id");
    return s;
  };
  const enumerate = MediaDevices.prototype.enumerateDevices;
  MediaDevices.prototype.enumerateDevices = async function () {
    const list = await enumerate.call(this);
    const name = flag("e2e-camera-label");
    if (!name) return list;
    return list.map((d) => d.kind !== "videoinput" ? d
      : {deviceId: d.deviceId, groupId: d.groupId, kind: d.kind, label: name, toJSON() { return this; }});
  };
  const extended = Object.getOwnPropertyDescriptor(Screen.prototype, "isExtended");
  Object.defineProperty(Screen.prototype, "isExtended", {configurable: true, get() {
    const f = flag("e2e-extended");
    return f === null ? (extended ? extended.get.call(this) : false) : f === "true";
  }});
})();
"""


def set_flags(page, **flags) -> None:
    """localStorage flags the stubs read (None removes one)."""
    page.evaluate("""(flags) => { for (const [k, v] of Object.entries(flags)) {
        if (v === null) localStorage.removeItem(k); else localStorage.setItem(k, v); } }""",
                  {f"e2e-{k.replace('_', '-')}": v for k, v in flags.items()})


def make_exam(server, title: str, displays: str, block_copy_paste: bool) -> int:
    exam_id = server.create_exam(title, QUESTIONS, require_liveness=False)
    server.sql("UPDATE exams SET DisplaysPolicy = :d, BlockCopyPaste = :b WHERE ExamID = :e",
               d=displays, b=int(block_copy_paste), e=exam_id)
    return exam_id


def types_stored(server, session_id: int) -> dict[str, dict]:
    return {t: json.loads(d) for t, d in server.sql("SELECT Type, Details FROM violations WHERE SessionID = :s",
                                                   s=session_id)}


def wait_type(page, server, session_id: int, kind: str) -> dict:
    rows = wait_rows(server, "SELECT Details FROM violations WHERE SessionID = :s AND Type = :t", timeout_s=30,
                     s=session_id, t=kind)
    assert rows, f"no {kind} stored for session {session_id}; page log: {page.console_messages[-8:]}\n{server.log_tail(20)}"
    return json.loads(rows[0][0])


def through_confirmation(page, exam_id: int) -> None:
    """From the exam's first step to its ready page (identity confirmation runs by itself on the fake camera)."""
    page.goto(f"/student/exams/{exam_id}/")
    page.wait_for_url(f"**/student/exams/{exam_id}/ready", timeout=60_000)


def session_of(page) -> int:
    page.wait_for_url(re.compile(r".*/student/sessions/\d+$"))
    page.wait_for_selector("#question-text")
    return int(page.url.rsplit("/", 1)[1])


def test_virtual_camera_second_display_page_events_and_camera_change(playwright_instance, live_server, media, shots):
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                  args=chromium_args(media.face(FACE), media.silence()))
    try:
        # bypass_csp only so that axe-core can be injected (test_accessibility.py does the same)
        ctx = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900}, bypass_csp=True,
                                  permissions=["camera", "microphone", "clipboard-read", "clipboard-write"])
        ctx.set_default_timeout(20_000)
        ctx.add_init_script(STUBS)
        page = ctx.new_page()
        page.console_messages = []
        page.on("console", lambda m: page.console_messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: page.console_messages.append(f"pageerror: {e}"))
        run(page, live_server, shots)
    finally:
        browser.close()


def run(page, server, shots):
    warn_exam = make_exam(server, "Devices: warn, copy blocked", "warn", True)
    block_exam = make_exam(server, "Devices: block", "block", False)
    server.create_user(EMAIL)
    login_in_browser(page, EMAIL)
    set_flags(page, camera_label="OBS Virtual Camera", extended="true")
    page.goto(f"/student/exams/{warn_exam}/")
    page.get_by_label("I have read the rules and I accept them.").check()
    page.get_by_role("button", name="Accept and continue").click()

    # (1) A virtual camera fails the camera part, named; the server's advice names it too.
    page.wait_for_url("**/student/system-check/problems**", timeout=30_000)
    advice = page.locator(".alert-danger").inner_text()
    assert "OBS Virtual Camera" in advice and "virtual camera" in advice, advice
    shots(page, "virtual-camera-refused")
    # The real fake device passes; (2) the second display is shown as a problem, with the explanation.
    set_flags(page, camera_label=None)
    page.get_by_role("link", name="Run the check again").click()
    expect(page.locator("#check-summary")).to_contain_text("passed", timeout=30_000)
    expect(page.locator("#check-display .check-result")).to_have_attribute("data-state", "fail")
    expect(page.locator("#check-display .check-result")).to_contain_text("2 displays")
    expect(page.locator("#display-advice")).to_be_visible()
    expect(page.locator("#check-camera .check-result")).to_have_attribute("data-state", "ok")
    shots(page, "system-check-second-display")
    found = axe_violations(page, "system check, second display")
    assert not found, found
    # (the advice page does not carry the exam on, so its "check again" link leads home: go to the exam's steps)
    page.goto(f"/student/exams/{warn_exam}/")
    page.wait_for_url("**/student/face**")
    page.get_by_label(re.compile("Photo of your face")).set_input_files(str(TESTDATA / FACE))
    page.get_by_role("button", name="Upload and register").click()
    page.wait_for_url(f"**/student/exams/{warn_exam}/ready", timeout=60_000)

    # (2) The "block" exam: the page keeps Start refused, and so does the server.
    through_confirmation(page, block_exam)
    notice = page.locator("#ready-displays")
    expect(notice).to_contain_text("A second display is connected")
    expect(page.locator("#start-exam")).to_be_disabled()
    found = axe_violations(page, "ready page, second display")
    assert not found, found
    shots(page, "block-exam-refused")
    token = page.locator("#start-form input[name=csrf_token]").input_value()
    resp = page.request.post(f"/student/exams/{block_exam}/start", form={"csrf_token": token})
    assert resp.ok and resp.url.endswith(f"/student/exams/{block_exam}/ready"), resp.url
    assert "A second display is connected" in resp.text()
    assert server.sql("SELECT COUNT(*) FROM exam_sessions WHERE ExamID = :e", e=block_exam) == [(0,)]

    # The "warn" exam starts, and the exam page reports MULTIPLE_DISPLAYS at once.
    through_confirmation(page, warn_exam)
    expect(page.locator("#start-exam")).to_be_enabled()
    expect(notice).to_contain_text("second display")
    page.get_by_role("button", name="Start the exam").click()
    warn_session = session_of(page)
    displays = wait_type(page, server, warn_session, "MULTIPLE_DISPLAYS")
    assert displays["screens"] == 2 and displays["displays_reason"] == "at start", displays

    # (3) The page's own events, with block_copy_paste: copy is prevented (the clipboard keeps what it had)
    # and still reported; paste, right click, Print Screen and F12 are each their own type.
    page.evaluate("""() => { window.e2eCopy = null;
        window.addEventListener('copy', (e) => { window.e2eCopy = e.defaultPrevented; }); }""")
    page.evaluate("() => navigator.clipboard.writeText('clipboard before')")
    page.locator("#question-text").select_text()
    page.keyboard.press("Control+C")
    assert wait_js(page, "() => window.e2eCopy !== null"), "no copy event"
    assert page.evaluate("() => window.e2eCopy") is True
    assert page.evaluate("() => navigator.clipboard.readText()") == "clipboard before"
    assert wait_type(page, server, warn_session, "COPY")["target"] == "question"
    page.keyboard.press("Control+V")
    assert wait_type(page, server, warn_session, "PASTE")["target"] in ("question", "page")
    page.locator("#question-text").click(button="right")
    assert wait_type(page, server, warn_session, "RIGHT_CLICK")["target"] == "question"
    page.keyboard.press("PrintScreen")
    assert wait_type(page, server, warn_session, "PRINT_SCREEN")["key"] == "PrintScreen"
    page.keyboard.press("F12")
    assert wait_type(page, server, warn_session, "DEVTOOLS")["key"] == "F12"
    stored = types_stored(server, warn_session)
    assert {"COPY", "PASTE", "RIGHT_CLICK", "PRINT_SCREEN", "DEVTOOLS", "MULTIPLE_DISPLAYS"} <= set(stored)
    assert "TAB_SWITCH" not in stored, stored
    shots(page, "page-events-warned")
    page.get_by_role("button", name="Submit the exam").click()
    page.locator("#submit-confirm").click()
    page.wait_for_url("**/result")

    # (2) With one display the "block" exam starts; (3) without block_copy_paste a copy reaches the clipboard
    # and is still reported.
    set_flags(page, extended="false")
    page.goto(f"/student/exams/{block_exam}/ready")
    expect(page.locator("#start-exam")).to_be_enabled()
    page.get_by_role("button", name="Start the exam").click()
    block_session = session_of(page)
    question = page.locator("#question-text").inner_text().strip()
    page.locator("#question-text").select_text()
    page.keyboard.press("Control+C")
    assert wait_type(page, server, block_session, "COPY")["target"] == "question"
    assert page.evaluate("() => navigator.clipboard.readText()").strip() == question

    # (4) The camera changes: another device's label and id on the live track, and the browser's devicechange.
    first = page.evaluate("() => document.getElementById('exam').dataset.cameraDevice")
    assert first, "the exam page did not remember its camera"
    set_flags(page, camera_label="USB Camera 2", camera_id="e2e-second-camera")
    page.evaluate("() => navigator.mediaDevices.dispatchEvent(new Event('devicechange'))")
    changed = wait_type(page, server, block_session, "CAMERA_CHANGED")
    # The previous device is the fake camera, its label stored as plain characters (the clip's path, slashes dropped).
    assert changed["device"] == "USB Camera 2", changed
    assert changed["previous_device"] == re.sub(r"[^A-Za-z0-9 _.:()+-]", "", first)[:64].strip(), (changed, first)
    stored = types_stored(server, block_session)
    assert "TAB_SWITCH" not in stored and "MULTIPLE_DISPLAYS" not in stored, stored
    print(f"\nfigures: the fake camera is named {first!r}")
    shots(page, "camera-changed")
