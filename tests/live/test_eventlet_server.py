"""The real server (`python app.py`) under eventlet and threading, with real Socket.IO clients over websocket.

A logged-in admin's socket gets student_status and a NO_FACE student_violation pushed while a
student posts real photos (a face, then the empty room); the student's own socket gets the
warning; a student's or an anonymous socket to /admin is refused. The helpers here (server,
logins) are shared with test_mjpeg.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests
import socketio

from tests.e2e.conftest import E2E_PASSWORD, LiveServer
from tests.live import live_frame
from tests.live.test_frame_api import EMPTY_ROOM, FACE_PHOTO, data_url, jpeg_bytes, photo

WAIT_S = 150.0  # bound on waiting for the worker to load its models and the rule to fire
CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')


def start_server(root: Path, async_mode: str) -> LiveServer:
    return LiveServer(root, {"PROCTOR_ASYNC_MODE": async_mode, "PROCTOR_LIVE_ENABLED": "true",
                             "PROCTOR_LIVE_WORKERS": "1"}).start()


class WebUser:
    """A requests.Session logged in through the real /login form, with the page's CSRF token."""

    def __init__(self, server: LiveServer, email: str, password: str = E2E_PASSWORD):
        self.server = server
        self.http = requests.Session()
        page = self.http.get(server.url + "/login", timeout=30)
        token = CSRF_META.search(page.text).group(1)
        resp = self.http.post(server.url + "/login", data={"email": email, "password": password, "csrf_token": token},
                              allow_redirects=False, timeout=30)
        assert resp.status_code == 302, f"login failed for {email}: {resp.status_code}"
        home = self.http.get(server.url + resp.headers["Location"], timeout=30)
        self.csrf = CSRF_META.search(home.text).group(1)

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)

    def socket_headers(self) -> dict:
        # What a browser's handshake carries: its cookies and the same user agent.
        return {"Cookie": self.cookie_header(), "User-Agent": self.http.headers["User-Agent"]}

    def post_json(self, path: str, body: dict):
        return self.http.post(self.server.url + path, json=body, headers={"X-CSRFToken": self.csrf}, timeout=30)


def start_exam_session(server: LiveServer, student_email: str, tmp_path: Path) -> tuple[int, int]:
    """(student_id, session_id): the seeded demo exam started for the student, in the server's database."""
    from proctor import create_app, exam_service
    from proctor.accounts import find_by_email
    from proctor.extensions import db
    from proctor.models import Exam

    server.seed_demo()
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{server.db_path}", "INSTANCE_PATH": tmp_path / "cli-inst",
                      "SECRET_KEY": "only-for-this-helper-" + "x" * 16, "PROCTOR_LIVE_ENABLED": False,
                      "PROCTOR_ASYNC_MODE": "threading"})
    with app.app_context():
        student = find_by_email(student_email)
        exam = db.session.scalar(db.select(Exam).where(Exam.is_published.is_(True)).order_by(Exam.id))
        sess = exam_service.start_session(student.id, exam.id)
        ids = (student.id, sess.id)
        db.session.remove()
        db.engine.dispose()
    return ids


class Recorder:
    """Collects events from a python-socketio client (handlers run on the client's thread)."""

    def __init__(self, client: socketio.Client, namespace: str, events: tuple[str, ...]):
        self.items: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        for name in events:
            client.on(name, self._handler(name), namespace=namespace)

    def _handler(self, name):
        def record(data=None):
            with self.lock:
                self.items.append((name, data))
        return record

    def find(self, name, predicate=lambda d: True):
        with self.lock:
            return next((d for n, d in self.items if n == name and predicate(d)), None)

    def names(self) -> list[str]:
        with self.lock:
            return sorted({n for n, _ in self.items})


def disconnect_all(clients: list[socketio.Client]) -> None:
    for c in clients:
        try:
            c.disconnect()
        except Exception:  # noqa: BLE001 - cleaning up after a test, which may have failed half-way
            pass


CONNECT_WAIT_S = 20  # a bound on the server's answer to a socket connection, not a performance figure


def connect(server: LiveServer, namespace: str, headers: dict | None = None) -> socketio.Client:
    client = socketio.Client(reconnection=False)
    client.connect(server.url, namespaces=[namespace], transports=["websocket"], headers=headers or {},
                   wait_timeout=CONNECT_WAIT_S)
    return client


def connect_refused(server: LiveServer, namespace: str, headers: dict, clients: list[socketio.Client]) -> bool:
    """Whether the server refuses a websocket connection to `namespace`, known as soon as it answers.

    Client.connect(wait=True) raises on a refusal only after waiting out its wait_timeout (python-socketio
    5.13 goes on waiting for the namespace after the server's CONNECT_ERROR), 20 s per refusal; so this
    connects without waiting and watches for the server's answer itself. The client joins `clients`, to be
    closed with the others."""
    client = socketio.Client(reconnection=False)
    clients.append(client)
    answers: list[bool] = []
    answered = threading.Event()

    def answer(refused: bool):
        def record(*_):
            answers.append(refused)
            answered.set()
        return record

    client.on("connect_error", answer(True), namespace=namespace)
    client.on("connect", answer(False), namespace=namespace)
    try:
        client.connect(server.url, namespaces=[namespace], transports=["websocket"], headers=headers, wait=False)
    except socketio.exceptions.ConnectionError:
        return True  # refused before the namespace was even asked for
    assert answered.wait(CONNECT_WAIT_S), f"the server did not answer a connection to {namespace} in {CONNECT_WAIT_S} s"
    return answers[0]


@pytest.mark.parametrize("async_mode", ["eventlet", "threading"])
def test_admin_socket_receives_status_and_no_face_from_real_frames(tmp_path, async_mode):
    server = start_server(tmp_path / "server", async_mode)
    clients: list[socketio.Client] = []
    try:
        server.create_user("admin@example.edu", role="ADMIN", name="Live Admin")
        server.create_user("student@example.edu", name="Camera Student")
        student_id, session_id = start_exam_session(server, "student@example.edu", tmp_path)
        admin = WebUser(server, "admin@example.edu")
        student = WebUser(server, "student@example.edu")

        # Refused: a student's socket and an anonymous socket on /admin.
        for headers in (student.socket_headers(), {}):
            assert connect_refused(server, "/admin", headers, clients)

        admin_socket = connect(server, "/admin", admin.socket_headers())
        clients.append(admin_socket)
        admin_events = Recorder(admin_socket, "/admin", ("student_status", "student_violation", "student_joined",
                                                          "exam_terminated"))
        student_socket = connect(server, "/student", student.socket_headers())
        clients.append(student_socket)
        student_events = Recorder(student_socket, "/student", ("warning", "terminated", "student_violation"))

        # A live camera's frames differ a little (live_frame): a pixel-identical stream is a frozen camera
        # (CAMERA_OFF), which the warm worker sees from the first frame on.
        face_img, empty_img = photo(FACE_PHOTO), photo(EMPTY_ROOM)
        face = data_url(jpeg_bytes(face_img))
        deadline = time.monotonic() + WAIT_S
        sent = 0
        status = violation = None
        started = time.monotonic()
        empty_since = None
        while time.monotonic() < deadline and not (status and violation):
            if sent == 8:
                empty_since = time.monotonic()
            image = data_url(jpeg_bytes(live_frame(face_img if sent < 8 else empty_img, sent)))
            resp = student.post_json("/api/student-frame", {"image": image,
                                                            "ts": int(time.time() * 1000)})
            assert resp.status_code == 202, resp.text
            sent += 1
            time.sleep(0.3)
            status = status or admin_events.find("student_status", lambda d: d.get("student_id") == student_id)
            violation = admin_events.find("student_violation",
                                          lambda d: d.get("type") == "NO_FACE" and d.get("student_id") == student_id)
        assert status is not None, f"no student_status ({admin_events.names()})\n{server.log_tail()}"
        assert violation is not None, f"no NO_FACE after {sent} frames ({admin_events.names()})\n{server.log_tail()}"
        assert violation["session_id"] == session_id and violation["name"] == "Camera Student"
        assert violation["evidence_url"].startswith("/admin/evidence/")
        pushed = time.monotonic()
        print(f"\n[{async_mode}] NO_FACE pushed {pushed - started:.1f} s after the first frame (workers warm at "
              f"start), {pushed - empty_since:.1f} s after the first empty-room frame ({sent} frames posted)")

        # The student's own page hears about its warning; never the admin's events.
        wait_until = time.monotonic() + 20
        while time.monotonic() < wait_until and student_events.find("warning") is None:
            time.sleep(0.1)
        warning = student_events.find("warning")
        assert warning is not None and warning["type"] == "NO_FACE" and warning["count"] >= 1
        assert student_events.find("student_violation") is None

        # The evidence snapshot is served to the admin when the runtime stored one (404 until then),
        # never to the student.
        (stored,), = server.sql("SELECT EvidencePath FROM violations WHERE ViolationID = :v", v=violation["violation_id"])
        snap = admin.http.get(server.url + violation["evidence_url"], timeout=30)
        if stored:
            assert snap.status_code == 200 and snap.headers["Content-Type"].startswith("image/")
            assert cv2.imdecode(np.frombuffer(snap.content, np.uint8), cv2.IMREAD_COLOR) is not None
        else:
            assert snap.status_code == 404
        print(f"[{async_mode}] evidence snapshot: {'served' if stored else 'not stored'}")

        # The admin ends the exam: both sockets hear it, and the student's uploads stop.
        resp = admin.post_json(f"/api/admin/sessions/{session_id}/terminate", {"reason": "Proctor ended the exam"})
        assert resp.status_code == 200 and resp.json()["status"] == "TERMINATED", resp.text
        wait_until = time.monotonic() + 20
        while time.monotonic() < wait_until and not (student_events.find("terminated")
                                                     and admin_events.find("exam_terminated")):
            time.sleep(0.1)
        assert student_events.find("terminated") == {"reason": "Proctor ended the exam",
                                                     "result_url": f"/student/sessions/{session_id}/result"}
        assert admin_events.find("exam_terminated")["session_id"] == session_id
        late = student.post_json("/api/student-frame", {"image": face, "ts": int(time.time() * 1000)})
        assert late.status_code == 409
        assert student.http.get(server.url + violation["evidence_url"], timeout=30).status_code == 403
    finally:
        server.stop()  # first: a client's close then returns at once (the threading server never answers it: 3 s each)
        disconnect_all(clients)
