"""Helpers of bench/http_load.py: the real server in a subprocess, browser-like HTTP sessions that
walk the student's journey, webcam-like frames from the real photos, CPU time from /proc.

Nothing here imports pytest: the bench runs without the test suite's fixtures.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
TESTDATA = Path(os.environ.get("PROCTOR_TESTDATA", REPO_ROOT.parent / "shared" / "testdata"))
PASSWORD = "bench password 123"
CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')
TIMEOUT_S = 120  # one setup request (a sign-up's bcrypt or a face registration on a loaded server)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# What each student's camera shows (the mix of bench/live_load.py): one person, people with phones,
# an empty room, two people. Registration photos: only these two both register and pass the
# liveness check with the mirror-image head turn below (a_6, a_3 and a_7 register but their mirror
# image is no head turn; c_1's face is refused). A student whose camera shows a_1 registers a_1; the
# others register d_3, so the a_6 and c_1 students are someone else than the registered person.
PHOTOS = ("a_1_webcam_woman_T1.jpg", "a_6_grace_hopper.jpg", "c_1_coco446_woman_bookshelf.jpg",
          "b_3_coco536_women_on_phones.jpg", "f_5_living_room_empty.jpg", "e_5_zidane_two_men.jpg")
REGISTRATION = ("a_1_webcam_woman_T1.jpg", "d_3_woman_holding_xo_laptop.jpg")


def registration_photo(stream_photo: str) -> str:
    return stream_photo if stream_photo in REGISTRATION else REGISTRATION[1]


class SetupError(RuntimeError):
    """A step of the setup answered something other than what the browser expects."""


# --- the server ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python app.py` (the way scripts/start runs it) on a free port, with a throw-away SQLite
    database and data folder under `root`; `settings` are extra environment variables."""

    def __init__(self, root: Path, settings: dict[str, str]):
        self.root = Path(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MYSQL_")}
        self.env.update({"PROCTOR_HOST": "127.0.0.1", "PROCTOR_PORT": str(self.port),
                         "DATABASE_URL": f"sqlite:///{self.root / 'bench.db'}",
                         "PROCTOR_INSTANCE_PATH": str(self.root / "instance"),
                         "PROCTOR_DATA_DIR": str(self.root / "data"), "PYTHONUNBUFFERED": "1", **settings})
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / "server.log"

    def start(self, timeout_s: float = 120) -> "Server":
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.3)
        self.stop()
        raise SetupError(f"server did not answer within {timeout_s:.0f} s:\n{self.log_tail()}")

    def cli(self, *args: str) -> str:
        """The real `flask --app app ...` command against the same database."""
        proc = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=REPO_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise SetupError(f"flask {args[0]} failed: {proc.stderr or proc.stdout}")
        return proc.stdout

    def wait_workers_ready(self, timeout_s: float = 300) -> float:
        """Seconds until /api/health says every vision worker has loaded its models."""
        t0 = time.monotonic()
        live: dict = {}
        while time.monotonic() - t0 < timeout_s:
            live = requests.get(self.url + "/api/health", timeout=10).json().get("live", {})
            if live.get("workers", 0) > 0 and live.get("workers_ready") == live.get("workers"):
                return time.monotonic() - t0
            time.sleep(0.5)
        raise SetupError(f"workers not ready after {timeout_s:.0f} s: {live}\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the server stops its worker processes itself
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# --- CPU time from /proc ---------------------------------------------------------------------------

def proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_s(pid: int, reaped_children: bool = False) -> float:
    """utime + stime of the process (and, if asked, of its children it has waited for), in seconds."""
    f = proc_stat(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if reaped_children else 0)
    return ticks / CLK_TCK


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            f = proc_stat(int(entry.name))
            if f is not None:
                parents[int(entry.name)] = int(f[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def cpu_snapshot(server_pid: int, worker_pids: set[int]) -> dict[str, float]:
    """CPU seconds so far: the web process, the vision workers, and every other descendant
    (plus the server's reaped children, e.g. a finished ffmpeg clip encoder)."""
    web = cpu_s(server_pid)
    snap = {"web": web, "workers": 0.0, "other": cpu_s(server_pid, True) - web}
    kids = descendants(server_pid)
    for pid in kids:
        snap["workers" if pid in worker_pids else "other"] += cpu_s(pid)
    for pid in worker_pids - set(kids):  # the distributed mode's Celery workers are not the server's children
        snap["workers"] += cpu_s(pid)
    return snap


class CeleryWorkers:
    """The distributed mode's analysis workers: `scripts/worker` processes (the README's command)."""

    def __init__(self, count: int, root: Path, env: dict[str, str]):
        self.count, self.root, self.env = count, Path(root), env
        self.procs: list[subprocess.Popen] = []

    def start(self) -> "CeleryWorkers":
        self.root.mkdir(parents=True, exist_ok=True)
        for i in range(self.count):
            with open(self.root / f"worker{i}.log", "ab") as log:
                self.procs.append(subprocess.Popen([str(REPO_ROOT / "scripts" / "worker"), "-n", f"bench{i}@%h"],
                                                   cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT))
        return self

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def redis_cpu_s(url: str) -> float:
    """CPU seconds the Redis server has used (INFO cpu), or 0.0 when it cannot be asked."""
    try:
        import redis

        info = redis.Redis.from_url(url, socket_timeout=3).info("cpu")
        return float(info.get("used_cpu_user", 0.0)) + float(info.get("used_cpu_sys", 0.0))
    except Exception:  # noqa: BLE001 - a figure, not a requirement
        return 0.0


# --- a browser: requests with the page's CSRF token --------------------------------------------------

class FormFields(HTMLParser):
    """The fields a browser would submit from each <form> of a page, as it was rendered."""

    def __init__(self, html: str):
        super().__init__()
        self.forms: list[list[tuple[str, str]]] = []
        self._textarea: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append([])
        elif self.forms and tag == "input" and a.get("name") and a.get("type") not in ("file", "submit"):
            if a.get("type") not in ("checkbox", "radio") or "checked" in a:
                self.forms[-1].append((a["name"], a.get("value") or ("on" if a.get("type") == "checkbox" else "")))
        elif self.forms and tag == "textarea":
            self._textarea = a.get("name")
            self.forms[-1].append((self._textarea, ""))

    def handle_data(self, data):
        if self._textarea and self.forms:
            name, value = self.forms[-1][-1]
            self.forms[-1][-1] = (name, value + data)

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None

    def form_with(self, field: str) -> list[tuple[str, str]]:
        return next(f for f in self.forms if any(name == field for name, _ in f))


class Browser:
    """One user's requests.Session: cookies, keep-alive and the CSRF token of the last page it read."""

    def __init__(self, base_url: str):
        self.base = base_url
        self.http = requests.Session()
        self.csrf = ""
        self.last_page = ""

    def get(self, path: str, expect=(200,)) -> requests.Response:
        r = self.http.get(self.base + path, timeout=TIMEOUT_S, allow_redirects=False)
        self._check("GET", path, r, expect)
        if "text/html" in r.headers.get("Content-Type", ""):
            self.last_page = r.text
            m = CSRF_META.search(r.text)
            self.csrf = m.group(1) if m else self.csrf
        return r

    def form(self, path: str, data, files=None, expect=(302,)) -> requests.Response:
        """POST a form with its csrf_token field, as the page's <form> does."""
        fields = list(data.items()) if isinstance(data, dict) else list(data)
        fields = [(k, v) for k, v in fields if k != "csrf_token"] + [("csrf_token", self.csrf)]
        r = self.http.post(self.base + path, data=fields, files=files, timeout=TIMEOUT_S, allow_redirects=False)
        return self._check("POST", path, r, expect)

    def post_json(self, path: str, body: dict, expect=(200,)) -> requests.Response:
        """common.js postJSON: JSON with the X-CSRFToken header."""
        r = self.http.post(self.base + path, json=body, headers={"X-CSRFToken": self.csrf, "Accept": "application/json"},
                           timeout=TIMEOUT_S)
        return self._check("POST", path, r, expect)

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)

    @staticmethod
    def _check(method, path, r, expect):
        if expect and r.status_code not in expect:
            raise SetupError(f"{method} {path}: HTTP {r.status_code} (expected {expect}): {r.text[-300:]!r}")
        return r

    @staticmethod
    def location(r: requests.Response) -> str:
        """The redirect's target as a path (with its query)."""
        parts = urlsplit(r.headers.get("Location", ""))
        return parts.path + (f"?{parts.query}" if parts.query else "")


# --- frames ------------------------------------------------------------------------------------------

def load_photo(name: str):
    import cv2

    img = cv2.imread(str(TESTDATA / name), cv2.IMREAD_COLOR)
    if img is None:
        raise SetupError(f"test photo {name} not found under {TESTDATA} (set PROCTOR_TESTDATA)")
    return img


def webcam_jpegs(name: str, count: int, quality: int, width: int = 640, height: int = 480) -> list[bytes]:
    """`count` frames of a webcam looking at the photo (cover-cropped, shaken a little per frame), as JPEG."""
    import cv2

    from tests.live import live_frame
    from tests.photos import cover

    base = cover(load_photo(name), (width, height))
    return [cv2.imencode(".jpg", live_frame(base, i), [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
            for i in range(count)]


def data_url(jpeg: bytes) -> str:
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def turning_head(name: str) -> list[str]:
    """Identity-confirmation captures (confirm.js: 640 px, quality 0.85): the photo and its mirror
    image in turn, a head turning one way and the other, which is what the liveness check asks for."""
    import cv2

    from tests.photos import cover

    img = cover(load_photo(name), (640, 480))
    return [data_url(cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()) for x in (img, cv2.flip(img, 1))]


# --- the admin's and the students' setup through the real routes --------------------------------------

def admin_login(server: Server, email: str, password: str) -> Browser:
    b = Browser(server.url)
    b.get("/login")
    r = b.form("/login", {"email": email, "password": password})
    b.get(Browser.location(r))
    return b


def create_exam(admin: Browser, title: str, minutes: int = 600) -> int:
    """New exam with the form's defaults (every rule on, liveness required), two questions, published;
    auto-termination off so that no student is sent away during the run."""
    admin.get("/admin/exams/new")
    fields = [(k, v) for k, v in FormFields(admin.last_page).form_with("title")
              if k not in ("title", "duration_minutes", "description", "auto_terminate", "is_published")]
    fields += [("title", title), ("duration_minutes", str(minutes)), ("description", "http_load bench")]
    r = admin.form("/admin/exams/new", fields)
    exam_id = int(re.search(r"/admin/exams/(\d+)/questions", Browser.location(r)).group(1))
    admin.get(f"/admin/exams/{exam_id}/questions")
    for text, options, correct in (("What is 7 x 8?", ["54", "56", "64"], 1), ("Largest ocean?", ["Atlantic", "Pacific"], 1)):
        admin.form(f"/admin/exams/{exam_id}/questions",
                   {"text": text, "correct_index": str(correct), "points": "1",
                    **{f"option_{i}": o for i, o in enumerate(options)}})
    admin.get("/admin/exams")
    admin.form(f"/admin/exams/{exam_id}/publish", {"publish": "1"})
    return exam_id


def enrol_student(server: Server, index: int, exam_id: int, face_photo: str) -> tuple[Browser, int, float]:
    """Sign up -> rules -> system check -> face registration -> identity confirmation (match and a
    head turn) -> start, as the pages do. Returns (browser on the exam page, session id, seconds)."""
    t0 = time.monotonic()
    b = Browser(server.url)
    b.get("/signup")
    b.form("/signup", {"name": f"Bench Student {index}", "email": f"bench{index}@example.edu",
                       "password": PASSWORD, "confirm": PASSWORD})
    b.get(Browser.location(b.get(f"/student/exams/{exam_id}/", expect=(302,))))  # -> the rules
    r = b.form(f"/student/rules?exam={exam_id}", {"accept": "yes"})
    b.get(Browser.location(r))  # the system check page
    blob = bytes(512 * 1024)
    t = time.monotonic()
    b.http.post(server.url + "/api/exam/upload-test", data=blob, timeout=TIMEOUT_S,
                headers={"X-CSRFToken": b.csrf, "Content-Type": "application/octet-stream"}).raise_for_status()
    kbps = len(blob) * 8 / 1000 / max(1e-3, time.monotonic() - t)
    b.post_json("/api/exam/system-check", {"browser": True, "camera": True, "microphone": True, "upload": True,
                                           "upload_kbps": round(kbps, 1)})
    face_page = Browser.location(b.get(f"/student/exams/{exam_id}/", expect=(302,)))
    b.get(face_page)
    kind = "png" if face_photo.endswith(".png") else "jpeg"
    for attempt in range(5):  # 503: "the server is busy", the page says try again
        r = b.form(face_page, {}, files={"photo": (Path(face_photo).name, (TESTDATA / face_photo).read_bytes(),
                                                   f"image/{kind}")}, expect=(302, 503))
        if r.status_code == 302:
            break
        time.sleep(2 + attempt)
    else:
        raise SetupError(f"face registration of student {index}: the server stayed busy")
    b.get(Browser.location(r))  # the confirmation page
    body = {}
    for _ in range(3):  # the page's "Try again" after an attempt that timed out
        body = confirm_identity(b, exam_id, turning_head(face_photo))
        if body.get("confirmed") or body.get("refused"):
            break
    if not body.get("confirmed"):
        raise SetupError(f"identity of student {index} ({face_photo}) not confirmed: {body}")
    b.get(body["next"])  # the ready page
    r = b.form(f"/student/exams/{exam_id}/start", {})
    exam_page = Browser.location(r)
    m = re.fullmatch(r".*/student/sessions/(\d+)", exam_page)
    if not m:
        raise SetupError(f"start of student {index} went to {exam_page!r}, not an exam session")
    b.get(exam_page)  # the exam page: its CSRF token is the one proctor.js sends with frames
    return b, int(m.group(1)), time.monotonic() - t0


def confirm_identity(b: Browser, exam_id: int, captures: list[str], max_s: float = 30) -> dict:
    """One attempt as confirm.js makes it: a capture every 250 ms for at most 30 s, the first one
    restarting the attempt; 503 (the server is busy) is retried. Returns the last answer."""
    t_attempt, body = time.monotonic(), {}
    for i in range(10**6):
        started = time.monotonic()
        if started - t_attempt > max_s:
            break
        r = b.post_json(f"/api/exam/{exam_id}/identity-frame",
                        {"image": captures[i % 2], "ts": int((started - t_attempt) * 1000), "restart": i == 0},
                        expect=(200, 503))
        body = r.json() if r.status_code == 200 else body
        if body.get("confirmed") or body.get("refused"):
            break
        time.sleep(max(0.0, 0.25 - (time.monotonic() - started)))
    return body


def new_admin(server: Server) -> tuple[Browser, str]:
    email, password = "bench-admin@example.edu", secrets.token_urlsafe(12)
    server.cli("create-user", "--role", "ADMIN", "--email", email, "--password", password, "--name", "Bench Admin")
    return admin_login(server, email, password), email


def percentile(values, q: float):
    """Nearest-rank percentile (q in 0..100) of a list; None when empty."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q / 100 * len(v) + 0.5)) - 1))]
