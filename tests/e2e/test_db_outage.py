"""The database blinks mid-exam, in a real browser: nothing the student did is lost.

The server runs on a MariaDB of its own (a throw-away instance this test starts on another port,
never the shared one on 3306). Mid-exam that MariaDB is stopped for PROCTOR_E2E_OUTAGE_S seconds
(default 25) while the student answers every question and leaves full screen; then it is started
again on the same data folder. The page must say "Not saved yet — retrying" during the outage and
"Saved" after it, and afterwards every answer is stored with the student's choice and the browser
event once (as one FULLSCREEN_EXIT violation).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import free_port, stop_process
from tests.e2e.media import FACE
from tests.e2e.test_student_proctoring import QUESTIONS, start_proctored_exam, wait_js

pytestmark = pytest.mark.timeout(900)
# 25 s: the page's outbox retries after 1, 2, 4, 8, 16 s (+ up to 20 % jitter; common.js), so its fifth try,
# 31-37 s after the first failure, finds the database back (restarted within a few seconds) and the
# test waits ~35 s in all; 60 (the default until issue 16) also reaches the 30 s cap of the waits but
# costs ~30 s more of CI's budget. Set PROCTOR_E2E_OUTAGE_S=60 to run that longer blink.
OUTAGE_S = float(os.environ.get("PROCTOR_E2E_OUTAGE_S", "25"))
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
DB_NAME = "proctor_outage"


class ThrowawayMariaDB:
    """A MariaDB server of this test's own: its own data folder, port and socket."""

    def __init__(self, root: Path):
        self.root = root
        self.datadir = root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = root / "mariadbd.log"

    def install(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run([INSTALL_DB, "--no-defaults", "--user=root", f"--datadir={self.datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, timeout=180)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [MARIADBD, "--no-defaults", "--user=root", f"--datadir={self.datadir}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.root / 'mysqld.sock'}", f"--pid-file={self.root / 'mysqld.pid'}",
             "--skip-log-bin", "--innodb-buffer-pool-size=32M", f"--log-error={self.log}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ping = subprocess.run(["mariadb-admin", "--no-defaults", "-h", "127.0.0.1", "-P", str(self.port), "-u", "root",
                                   "ping"], capture_output=True, timeout=10)
            if ping.returncode == 0:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.3)
        raise RuntimeError("mariadbd did not answer within 60 s")

    def stop(self) -> None:
        stop_process(self.proc, timeout_s=60)
        self.proc = None

    def query(self, statement: str) -> None:
        subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(self.port), "-u", "root", "-e", statement],
                       check=True, capture_output=True, timeout=30)

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{DB_NAME}?charset=utf8mb4"


@pytest.fixture
def outage_db(tmp_path):
    if not INSTALL_DB or not Path(MARIADBD).exists():
        pytest.fail("MariaDB server binaries are missing (apt-get install mariadb-server)")
    db = ThrowawayMariaDB(tmp_path / "mariadb")
    db.install()
    db.start()
    db.query(f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    yield db
    db.stop()


def use_database(server, url: str) -> None:
    """Point the LiveServer's test-side SQL (server.sql, used by create_exam) at the server's MariaDB."""
    from sqlalchemy import create_engine, text

    def sql(statement: str, **params) -> list[tuple]:
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()

    server.sql = sql


def test_a_database_outage_mid_exam_loses_no_answer_and_no_event(outage_db, make_live_server, new_page, media, shots):
    server = make_live_server(DATABASE_URL=outage_db.url)
    use_database(server, outage_db.url)
    page = new_page(video=media.face(FACE), audio=media.silence(), server=server)
    session_id = start_proctored_exam(page, server, "outage@example.edu", "Outage: nothing lost")
    page.get_by_role("button", name="Full screen").click()  # a real click: the gesture full screen needs
    assert wait_js(page, "() => document.fullscreenElement !== null"), "full screen was not entered"

    outage_db.stop()
    t_down = time.monotonic()
    chosen = {}  # question text -> the option index the student picked (questions come shuffled)
    for step in range(len(QUESTIONS)):
        shown = page.locator("#question-text").inner_text()
        text, options, correct = next(q for q in QUESTIONS if q[0] in shown)
        choice = (correct + 1) % len(options) if step == 0 else correct  # one wrong answer, to see it kept
        page.get_by_label(options[choice], exact=True).check()
        chosen[text] = choice
        if step < len(QUESTIONS) - 1:
            page.locator("#next").click()
    page.evaluate("() => document.exitFullscreen()")  # what Esc does: FULLSCREEN_EXIT goes to the outbox
    expect(page.locator("#save-state")).to_have_text("Not saved yet — retrying", timeout=60_000)
    saw_retrying_s = time.monotonic() - t_down
    shots(page, "retrying-during-outage")
    queued = page.evaluate("() => window.ExamPage.outbox.state().queued.length")
    assert queued >= len(QUESTIONS), f"only {queued} items queued during the outage"
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_down)))

    outage_db.start()
    t_up = time.monotonic()
    expect(page.locator("#save-state")).to_have_text("Saved", timeout=120_000)
    assert wait_js(page, "() => window.ExamPage.outbox.state().queued.length === 0", timeout_s=120), \
        "the page outbox never emptied after the database came back"
    confirmed_s = time.monotonic() - t_up
    shots(page, "saved-after-outage")

    rows = server.sql("SELECT q.Text, a.SelectedIndex FROM answers a JOIN questions q ON q.QuestionID = a.QuestionID "
                      "WHERE a.SessionID = :s", s=session_id)
    assert sorted(rows) == sorted(chosen.items()), rows  # one row per question (a unique key), each the choice made
    events = []
    end = time.monotonic() + 60
    while time.monotonic() < end:  # the violation may still be in the runtime's retry queue for a moment
        events = server.sql("SELECT COUNT(*) FROM violations WHERE SessionID = :s AND Type = 'FULLSCREEN_EXIT'",
                            s=session_id)
        if events and events[0][0] >= 1:
            break
        time.sleep(1.0)
    assert events == [(1,)], f"FULLSCREEN_EXIT stored {events} times\n{server.log_tail(40)}"
    print(f"\nfigures: outage {OUTAGE_S:.0f} s; the page said 'retrying' {saw_retrying_s:.1f} s after the database "
          f"stopped; {queued} items queued; everything confirmed {confirmed_s:.1f} s after it was back")
