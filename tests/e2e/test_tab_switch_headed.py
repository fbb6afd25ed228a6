"""The exam page's own TAB_SWITCH trigger, in a real (headed) Chromium under Xvfb.

proctor.js reports TAB_SWITCH from `document.addEventListener("visibilitychange", ...)`. Headless
Chromium never hides a page, and neither does headed Chromium while Playwright is attached to the
page: Playwright turns on `Emulation.setFocusEmulationEnabled` for every page it drives, and Chromium
implements that by holding a capture handle on the tab (IncrementCapturerCount, stay_hidden=false),
which keeps the page "visible" whatever happens to its tab or window. Tried by hand (Chromium 156,
headed under Xvfb, 2026-12-03): with Playwright attached the page stayed visible and no
visibilitychange fired after a second tab in the same window (context.new_page + bring_to_front),
a second tab opened from outside Playwright (DevTools' PUT /json/new), a second window (another
context) and minimising (CDP Browser.setWindowBounds, windowState "minimized"). Turning focus
emulation off in a CDP session of our own does not help: the handle belongs to Playwright's session.

What works, and what this test does: Chromium is started by the test itself (not by Playwright's
launch, whose browser cannot outlive Playwright's connection), headed, with DISPLAY set to an Xvfb of
the test's own and DevTools on a port it picks. Playwright connects over CDP to walk the student to
the exam page, then DISCONNECTS: its sessions end, the capture handle goes, and the exam tab is an
ordinary foreground tab. A second tab opened then (PUT /json/new, a plain HTTP request to DevTools
that attaches to no page) comes to the front of the same window; the exam tab is really hidden and
the page's own listener fires (the report is stored about 0.6 s later). Between the disconnect and
the check nothing in this test touches the exam page: it waits, opens that tab and reads the database.

Xvfb is Debian's `xvfb` package (scripts/test installs it).
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from urllib.error import URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

import pytest
from playwright.sync_api import expect

from tests.conftest import stop_process
from tests.e2e.conftest import CHROMIUM, chromium_args
from tests.e2e.media import FACE
from tests.e2e.test_student_proctoring import start_proctored_exam, wait_rows

pytestmark = pytest.mark.timeout(300)
XVFB = shutil.which("Xvfb") or "/usr/bin/Xvfb"
START_TIMEOUT_S = 30
IN_FRONT_S = 5  # the exam page in front, untouched: a report from the page takes well under a second
TAB_SWITCH_COUNT = "SELECT COUNT(*) FROM violations WHERE SessionID = :s AND Type = 'TAB_SWITCH'"


@pytest.fixture(scope="module")
def xvfb_display(tmp_path_factory):
    """An X server of this test's own; Xvfb picks a free display number itself (-displayfd)."""
    if not Path(XVFB).exists():
        pytest.fail(f"Xvfb not found at {XVFB}: the headed tab-switch test needs it "
                    "(apt-get install xvfb; scripts/test installs it)")
    log_path = tmp_path_factory.mktemp("xvfb") / "xvfb.log"
    read_fd, write_fd = os.pipe()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([XVFB, "-displayfd", str(write_fd), "-screen", "0", "1280x1024x24", "-nolisten", "tcp",
                                 "-noreset"],
                                pass_fds=(write_fd,), stdout=log, stderr=subprocess.STDOUT)
    os.close(write_fd)
    try:
        number = _read_line(read_fd, START_TIMEOUT_S)
    finally:
        os.close(read_fd)  # only after the newline: Xvfb writes it separately and dies if the pipe is gone
    if not number.isdigit() or proc.poll() is not None:
        stop_process(proc)
        pytest.fail(f"Xvfb did not start within {START_TIMEOUT_S} s: {log_path.read_text(errors='replace')[-500:]}")
    yield f":{number}"
    stop_process(proc)


def _read_line(fd: int, timeout_s: float) -> str:
    data, deadline = b"", time.monotonic() + timeout_s
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 64) if ready else b""
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


class HeadedChromium:
    """/usr/bin/chromium with a window on the given X display and DevTools on a port of its choosing."""

    def __init__(self, display: str, profile: Path, video: Path, audio: Path):
        self.profile = profile
        self.log_path = profile.parent / "chromium.log"
        args = [*chromium_args(video, audio), f"--user-data-dir={profile}", "--remote-debugging-port=0",
                "--window-size=1280,900", "--no-default-browser-check", "about:blank"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([CHROMIUM, *args], env={**os.environ, "DISPLAY": display},
                                         stdout=log, stderr=subprocess.STDOUT)
        self.url = self._devtools_url(display)

    def _devtools_url(self, display: str) -> str:
        port_file = self.profile / "DevToolsActivePort"  # Chromium writes the port it took here
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Chromium exited with {self.proc.returncode} (DISPLAY={display}): {self.log_tail()}")
            if port_file.exists() and port_file.read_text().split("\n")[0].strip().isdigit():
                url = f"http://127.0.0.1:{port_file.read_text().split()[0]}"
                try:
                    with urlopen(url + "/json/version", timeout=2):
                        return url
                except (URLError, OSError):
                    pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Chromium's DevTools did not answer within {START_TIMEOUT_S} s: {self.log_tail()}")

    def log_tail(self, chars: int = 1500) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else "(no log)"

    def open_tab(self, url: str) -> dict:
        """A new foreground tab in the same window, opened by DevTools' HTTP API (no page session)."""
        with urlopen(Request(f"{self.url}/json/new?{quote(url, safe=':/?=&')}", method="PUT"), timeout=10) as resp:
            return json.load(resp)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def headed_chromium(xvfb_display, tmp_path):
    browsers: list[HeadedChromium] = []

    def _launch(video: Path, audio: Path) -> HeadedChromium:
        browser = HeadedChromium(xvfb_display, tmp_path / "chromium-profile", video, audio)
        browsers.append(browser)
        return browser

    yield _launch
    for browser in browsers:
        browser.stop()


def test_a_real_second_tab_hides_the_exam_page_and_the_page_reports_it(live_server, headed_chromium, media,
                                                                       playwright_instance, shots):
    chromium = headed_chromium(media.face(FACE), media.silence())
    attached = playwright_instance.chromium.connect_over_cdp(chromium.url)
    page = attached.contexts[0].pages[0]  # the window's own first tab
    page.context.set_default_timeout(15_000)
    page.context.grant_permissions(["camera", "microphone"], origin=live_server.url)
    log: list[str] = []
    page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
    # The steps every proctoring e2e test takes (log in, rules, system check, face, start).
    session_id = start_proctored_exam(_AbsoluteUrls(page, live_server.url), live_server, "headed-tabber@example.edu",
                                      "Proctoring: tab switch in a headed browser")
    assert page.evaluate("() => document.visibilityState") == "visible"
    attached.close()  # disconnect only: Chromium and the exam tab stay; Playwright's focus emulation goes

    # The exam page alone in front for a while: real visibility tracking reports nothing.
    time.sleep(IN_FRONT_S)
    assert live_server.sql(TAB_SWITCH_COUNT, s=session_id) == [(0,)], "TAB_SWITCH stored with the exam page in front"

    # The student opens another tab: the exam tab is hidden and its own listener reports it.
    switched = time.monotonic()
    chromium.open_tab(live_server.url + "/api/health")
    rows = wait_rows(live_server, TAB_SWITCH_COUNT + " HAVING COUNT(*) > 0", timeout_s=30, s=session_id)
    assert rows, f"no TAB_SWITCH stored after a second tab came to the front; page log: {log[-10:]}\n" \
                 f"{live_server.log_tail(30)}"
    print(f"\nfigures: TAB_SWITCH stored {time.monotonic() - switched:.1f} s after the second tab opened")

    # Back on the exam page (Playwright attached again): the student is warned there too.
    attached = playwright_instance.chromium.connect_over_cdp(chromium.url)
    try:
        exam = next(p for p in attached.contexts[0].pages if p.url.endswith(f"/student/sessions/{session_id}"))
        exam.bring_to_front()
        expect(exam.locator('.exam-alert[data-key="TAB_SWITCH"]')).to_be_visible(timeout=30_000)
        shots(exam, "tab-switch-warning")
    finally:
        attached.close()
    assert live_server.sql(TAB_SWITCH_COUNT, s=session_id) == [(1,)], "one tab switch, one report"


class _AbsoluteUrls:
    """The page, with goto('/path') made absolute (the default context of connect_over_cdp has no base_url)."""

    def __init__(self, page, base_url: str):
        self._page, self._base = page, base_url

    def goto(self, url: str, **kwargs):
        return self._page.goto(self._base + url if url.startswith("/") else url, **kwargs)

    def __getattr__(self, name):
        return getattr(self._page, name)
