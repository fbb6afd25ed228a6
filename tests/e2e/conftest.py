"""End-to-end fixtures: the real server in a subprocess and a real Chromium with a fake camera/mic.

- `live_server` (session): `python app.py` (eventlet, the production server) on a free port with
  a fresh SQLite database and data dir in the pytest tmp. `make_live_server(**env)` starts
  another one with extra environment (call .stop() or let the session end).
- `LiveServer.cli(...)`, `.create_user(...)`, `.seed_demo()`: the real `flask --app app` commands
  against the same database (run in this process: see cli); `.sql(...)` reads that database for assertions.
- `browser_factory(video=..., audio=...)`: Chromium (Debian's /usr/bin/chromium) whose webcam
  plays the given .y4m and whose microphone plays the given .wav; closed at test end.
- `media` (session): tests.e2e.media.MediaCache, clips made from ../shared/testdata.
- `shots`: shots(page, "name") saves a screenshot to test-artifacts/<test name>/ (git-ignored).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest

from tests.conftest import free_port, stop_process
from tests.e2e.media import MediaCache

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("PROCTOR_E2E_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
E2E_PASSWORD = "e2e password 123"
SERVER_START_TIMEOUT_S = 90


class LiveServer:
    """The real app (`python app.py`) in a subprocess, with its own database and data dir."""

    def __init__(self, root: Path, extra_env: dict | None = None):
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = self.root / "e2e.db"
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self.env = {
            **os.environ,
            "PROCTOR_HOST": "127.0.0.1",
            "PROCTOR_PORT": str(self.port),
            "PROCTOR_ASYNC_MODE": "eventlet",
            "DATABASE_URL": f"sqlite:///{self.db_path}",
            "PROCTOR_INSTANCE_PATH": str(self.root / "instance"),
            "PROCTOR_DATA_DIR": str(self.data_dir),
            "FLASK_SECRET_KEY": secrets.token_urlsafe(32),
            "LOGIN_LIMIT_PER_ADDRESS": "1000 per minute",
            "LOGIN_LIMIT_PER_ACCOUNT": "100 per minute",
            "PYTHONUNBUFFERED": "1",
            # One vision worker unless a test asks for more: the server now starts (and warms) its
            # workers with itself, and the test machine has 2 cores for the server, the browser and pytest.
            "PROCTOR_LIVE_WORKERS": "1",
            **{k: str(v) for k, v in (extra_env or {}).items()},
        }
        self.proc: subprocess.Popen | None = None
        self._log = None

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> "LiveServer":
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urlopen(self.url + "/api/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (URLError, OSError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not answer within {SERVER_START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.proc)
        if self._log:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- the real CLI against the same database ----------------------------------------
    def cli(self, *args: str) -> str:
        """`flask --app app <args>`: the app built as app.py builds it (create_app with this server's
        environment) and the command run through Flask's CLI runner, in this process. A new `flask`
        process spent about 2.5 s importing the app for each of the suite's ~45 calls; cli_process
        runs the entry point itself (test_student_journey's fixture smoke test does)."""
        from proctor import create_app
        from proctor.extensions import db

        # threading: the CLI serves nothing (eventlet mode would patch this process's websocket code).
        app = create_app({"PROCTOR_ASYNC_MODE": "threading"}, env=self.env)
        try:
            result = app.test_cli_runner().invoke(args=list(args))
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()
        if result.exit_code != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed ({result.exit_code}): {result.output}"
                               f"{'' if result.exception is None else repr(result.exception)}")
        return result.stdout

    def cli_process(self, *args: str) -> str:
        """The same command in its own `python -m flask --app app` process, as an administrator runs it."""
        proc = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=REPO_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed: {proc.stderr or proc.stdout}")
        return proc.stdout

    def create_user(self, email: str, password: str = E2E_PASSWORD, role: str = "STUDENT", name: str = "E2E Student") -> str:
        self.cli("create-user", "--role", role, "--email", email, "--password", password, "--name", name)
        return email

    def seed_demo(self) -> dict[str, str]:
        """Runs seed-demo; returns {email: password} for accounts it created."""
        out = self.cli("seed-demo")
        return dict(re.findall(r"^\w+\s+(\S+@\S+)\s+password: (\S+)$", out, flags=re.M))

    def create_exam(self, title: str, questions: list[tuple[str, list[str], int]], duration_minutes: int = 30,
                    pass_mark_percent: int = 50, require_liveness: bool = True, auto_terminate: bool = False) -> int:
        """A published exam written straight into the database (as an admin would make it); returns its id."""
        self.sql("INSERT INTO exams (Title, Description, DurationMinutes, PassMarkPercent, IsPublished, AutoTerminate, "
                 "DisabledRules, Thresholds, RequireLiveness, CreatedAt) VALUES (:t, 'e2e', :d, :p, 1, :a, '', '{}', :l, "
                 "CURRENT_TIMESTAMP)", t=title, d=duration_minutes, p=pass_mark_percent, a=int(auto_terminate),
                 l=int(require_liveness))
        exam_id = self.sql("SELECT MAX(ExamID) FROM exams WHERE Title = :t", t=title)[0][0]
        for pos, (text, options, correct) in enumerate(questions):
            self.sql("INSERT INTO questions (ExamID, Text, Options, CorrectIndex, Position, Points) "
                     "VALUES (:e, :x, :o, :c, :p, 1)", e=exam_id, x=text, o=json.dumps(options), c=correct, p=pos)
        return exam_id

    def sql(self, statement: str, **params) -> list[tuple]:
        from sqlalchemy import create_engine, text

        engine = create_engine(f"sqlite:///{self.db_path}")
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params)
                return [tuple(r) for r in result] if result.returns_rows else []
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def make_live_server(tmp_path_factory):
    started: list[LiveServer] = []

    def _make(**extra_env) -> LiveServer:
        server = LiveServer(tmp_path_factory.mktemp("live"), extra_env).start()
        started.append(server)
        return server

    yield _make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def live_server(make_live_server) -> LiveServer:
    return make_live_server()


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaCache:
    return MediaCache(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def playwright_instance():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def chromium_args(video: Path | None, audio: Path | None) -> list[str]:
    args = [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--autoplay-policy=no-user-gesture-required",
    ]
    if video:
        args.append(f"--use-file-for-fake-video-capture={video}")
    if audio:
        args.append(f"--use-file-for-fake-audio-capture={audio}")
    return args


@pytest.fixture
def browser_factory(playwright_instance):
    """browser_factory(video=path.y4m, audio=path.wav) -> a Playwright Browser (closed after the test)."""
    browsers = []

    def _launch(video: Path | None = None, audio: Path | None = None):
        browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                      args=chromium_args(video, audio))
        browsers.append(browser)
        return browser

    yield _launch
    for b in browsers:
        try:
            b.close()
        except Exception:  # noqa: BLE001 - already gone
            pass


@pytest.fixture
def new_page(browser_factory, live_server):
    """new_page(video=..., audio=..., server=...) -> a page in a fresh context with the server as base URL."""

    def _page(video: Path | None = None, audio: Path | None = None, server: LiveServer | None = None):
        server = server or live_server
        browser = browser_factory(video=video, audio=audio)
        context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900},
                                      permissions=["camera", "microphone"])
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.console_messages = []  # what the page logged, for failure messages
        page.on("console", lambda m: page.console_messages.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: page.console_messages.append(f"pageerror: {e}"))
        return page

    return _page


@pytest.fixture
def shots(request):
    """shots(page, "name") -> saves test-artifacts/<test>/<NN>-name.png."""
    folder = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    counter = {"n": 0}

    def _shot(page, name: str) -> Path:
        counter["n"] += 1
        safe = re.sub(r"[^\w.-]+", "_", name)
        path = folder / f"{counter['n']:02d}-{safe}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return _shot


def login_in_browser(page, email: str, password: str = E2E_PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name=re.compile("sign in", re.I)).click()
    page.wait_for_load_state()
