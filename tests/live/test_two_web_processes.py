"""Two real web processes (`python app.py`, eventlet) in the distributed mode, one database, one Redis,
one real `scripts/worker`: a student on web A, the admin on web B.

- the admin's socket on B receives the student's statuses and violation (Socket.IO message queue);
- B lists the student, serves its live snapshot (drawn by A) and clears its warnings (applied by A,
  audited by B with the admin's request);
- web A killed outright: the student goes on with B (as its page reconnects through the load
  balancer), whose runtime opens the stream again with the stored warning count and takes it over.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import sqlite3
import threading
import time
import uuid

import pytest
import requests

from bench._http_load_support import (Browser, Server, create_exam, data_url, enrol_student, new_admin,
                                      webcam_jpegs)
from tests.live import wait_for
from tests.live.test_distributed import REDIS_URL, PrivateRedis, Workers, _redis

pytestmark = pytest.mark.timeout(900)

PHOTO = "a_1_webcam_woman_T1.jpg"


class FramePoster(threading.Thread):
    """The exam page's uploads at 2 frames/s to one server (switchable: the page reconnecting elsewhere)."""

    def __init__(self, student: Browser, base: str, jpegs: list[bytes]):
        super().__init__(daemon=True)
        self.http, self.base, self.jpegs, self.stop, self.codes = student.http, base, jpegs, threading.Event(), []
        self.headers = {"Content-Type": "application/json", "X-CSRFToken": student.csrf}

    def run(self):
        i = 0
        while not self.stop.is_set():
            body = json.dumps({"image": data_url(self.jpegs[i % len(self.jpegs)]), "ts": int(time.time() * 1000)})
            try:
                self.codes.append(self.http.post(self.base + "/api/student-frame", data=body, headers=self.headers,
                                                 timeout=10).status_code)
            except Exception as exc:  # noqa: BLE001 - recorded, the test reads it
                self.codes.append(f"{type(exc).__name__}: {exc}")
            i += 1
            self.stop.wait(0.5)


class AdminSocket:
    def __init__(self, admin: Browser):
        import socketio

        self.events: list[tuple[str, dict]] = []
        self.client = socketio.Client(reconnection=False)
        self.client.on("*", lambda event, data=None: self.events.append((event, data)), namespace="/admin")
        self.client.connect(admin.base, namespaces=["/admin"], transports=["websocket"], wait_timeout=20,
                            headers={"Cookie": admin.cookie_header(), "User-Agent": admin.http.headers["User-Agent"]})

    def named(self, name: str, student_id: int | None = None) -> list[dict]:
        return [d for e, d in list(self.events) if e == name and (student_id is None or (d or {}).get("student_id") == student_id)]


def _stop_all(poster, socket, a, b, workers) -> None:
    if poster is not None:
        poster.stop.set()
    if socket is not None:
        socket.client.disconnect()
    b.stop()
    a.stop()
    workers.stop()


def test_admin_on_one_process_student_on_another_and_the_takeover(tmp_path):
    _redis()
    ns = f"t{uuid.uuid4().hex[:10]}"
    env = {"PROCTOR_BROKER_URL": REDIS_URL, "PROCTOR_BROKER_NAMESPACE": ns, "FLASK_SECRET_KEY": secrets.token_urlsafe(32),
           "RATELIMIT_STORAGE_URI": REDIS_URL, "RATELIMIT_KEY_PREFIX": ns, "LOGIN_LIMIT_PER_ADDRESS": "100 per minute"}
    a = Server(tmp_path / "a", env)
    b = Server(tmp_path / "b", {**env, "DATABASE_URL": a.env["DATABASE_URL"], "PROCTOR_DATA_DIR": a.env["PROCTOR_DATA_DIR"]})
    workers = Workers(tmp_path, REDIS_URL, ns)
    socket, poster = None, None
    try:
        workers.start("solo")
        a.start()
        b.start()
        admin, _ = new_admin(b)
        exam_id = create_exam(admin, "Two processes")
        socket = AdminSocket(admin)
        student, session_id, _ = enrol_student(a, 0, exam_id, PHOTO)
        poster = FramePoster(student, a.url, webcam_jpegs(PHOTO, 6, 70))
        poster.start()

        # The admin on B sees the student's analysed frames (statuses pushed by A through Redis).
        try:
            statuses = wait_for(lambda: [d for d in socket.named("student_status") if d["session_id"] == session_id
                                         and ((d["status"].get("frames") or {}).get("processed") or 0) >= 2],
                                120, "no analysed status reached B's admin")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: events {[e for e, _ in socket.events][-10:]} {socket.events[-1:]}\n"
                                 f"posts {poster.codes[-10:]}\nA: {a.log_tail(60)}\nworker: {workers.log('solo')}") from None
        sid = statuses[-1]["student_id"]
        # B's list of active students comes from the shared state, which A refreshes on its own beat: the
        # first answer can come before that (seen: {'count': 0}), so ask until it shows the student.
        def listed():
            active = admin.http.get(b.url + "/api/admin-active-students", timeout=10).json()
            rows = active["students"] if isinstance(active, dict) else active
            return any(r["student_id"] == sid and r["session_id"] == session_id for r in rows)

        wait_for(listed, 20, "B's active-students list never showed the student analysed on A", interval=0.25)

        # A violation on A (a tab switch) reaches B's admin socket.
        r = student.http.post(a.url + "/api/student-event", json={"type": "TAB_SWITCH"},
                              headers={"X-CSRFToken": student.csrf}, timeout=10)
        assert r.status_code == 200, r.text
        wait_for(lambda: socket.named("student_violation", sid), 30, "the violation did not reach B's admin")

        # B serves the live snapshot A draws.
        snap = admin.http.get(f"{b.url}/admin/monitor/{sid}/snapshot.jpg", timeout=15)
        assert snap.status_code == 200 and snap.headers["Content-Type"].startswith("image/jpeg")
        assert snap.content[:2] == b"\xff\xd8" and len(snap.content) > 5000

        # Clear on B: applied by A (its status says 0), audited once by B.
        r = admin.http.post(f"{b.url}/api/admin/students/{sid}/clear-warnings", json={},
                            headers={"X-CSRFToken": admin.csrf}, timeout=15)
        assert r.status_code == 200, r.text
        wait_for(lambda: [d for d in socket.named("student_status", sid) if d["status"].get("warnings") == 0
                          and d["status"].get("alerts") in (None, [])], 30, "A did not clear the warnings")
        with sqlite3.connect(a.env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
            rows = db.execute("SELECT target_id, client_address FROM audit_log WHERE action = 'live.clear_warnings'").fetchall()
        assert rows == [(session_id, "127.0.0.1")], rows

        # Two warnings again, then web A dies without a word.
        for _ in range(2):
            student.http.post(a.url + "/api/student-event", json={"type": "TAB_SWITCH"},
                              headers={"X-CSRFToken": student.csrf}, timeout=10)
            time.sleep(0.2)
        warned = wait_for(lambda: [d for d in socket.named("student_status", sid) if (d["status"].get("warnings") or 0) >= 1],
                          30, "no warning after the clear")
        count = max(d["status"]["warnings"] for d in warned)
        os.kill(a.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        poster.base = b.url  # the page reconnects through the load balancer: now to B
        seen = len(socket.events)

        def analysed_on_b():
            return [d for e, d in socket.events[seen:] if e == "student_status" and d.get("student_id") == sid
                    and ((d["status"].get("frames") or {}).get("processed") or 0) >= 2]
        after = wait_for(analysed_on_b, 60, f"B did not take the student over\nB: {b.log_tail()}")
        assert time.monotonic() - killed < 30
        assert after[-1]["status"]["warnings"] == count  # the count went on from the database
        assert after[-1]["session_id"] == session_id
        assert all(c == 202 for c in poster.codes[-3:]), poster.codes[-10:]
    finally:
        _stop_all(poster, socket, a, b, workers)
        client = _redis()
        for key in client.scan_iter(match=f"{ns}*"):
            client.delete(key)


@pytest.mark.mysql_only
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs the redis-server program for a private Redis")
def test_the_faults_on_mariadb_with_two_workers(tmp_path, mysql_server):
    """MariaDB, a private Redis (so that it can be restarted), two Celery workers, web A and web B: the
    violation with its evidence reaches B's admin and B serves the evidence A wrote; the worker that
    analyses the student is killed; Redis is restarted; web A is killed."""
    from tests.conftest import MYSQL_SERVER_URL

    _, new_database = mysql_server
    redis_server = PrivateRedis().start()
    url = redis_server.url
    data = tmp_path / "shared-data"
    env = {"PROCTOR_BROKER_URL": url, "PROCTOR_BROKER_NAMESPACE": "faults", "FLASK_SECRET_KEY": secrets.token_urlsafe(32),
           "RATELIMIT_STORAGE_URI": url, "LOGIN_LIMIT_PER_ADDRESS": "100 per minute", "PROCTOR_DATA_DIR": str(data),
           "DATABASE_URL": f"{MYSQL_SERVER_URL}/{new_database('twoweb')}?charset=utf8mb4"}
    a, b = Server(tmp_path / "a", env), Server(tmp_path / "b", env)
    a.env.update(env)
    b.env.update(env)
    workers = Workers(tmp_path, url, "faults")
    socket, poster = None, None
    try:
        workers.start("alpha")
        workers.start("beta")
        a.start()
        b.start()
        admin, _ = new_admin(b)
        exam_id = create_exam(admin, "Faults")
        socket = AdminSocket(admin)
        student, session_id, _ = enrol_student(a, 0, exam_id, PHOTO)
        face, empty = webcam_jpegs(PHOTO, 6, 70), webcam_jpegs("f_5_living_room_empty.jpg", 6, 70)
        poster = FramePoster(student, a.url, face)
        poster.start()

        def processed() -> int:
            done = [(d["status"].get("frames") or {}).get("processed") or 0 for d in socket.named("student_status")
                    if d.get("session_id") == session_id]
            return max(done, default=0)
        wait_for(lambda: processed() >= 4, 180, f"no analysed status reached B's admin\nA: {a.log_tail()}")

        # The empty room: NO_FACE on A, its evidence snapshot in the shared folder, served by B.
        poster.jpegs = empty
        v = wait_for(lambda: [d for d in socket.named("student_violation") if d.get("type") == "NO_FACE"], 60,
                     "no NO_FACE violation reached B's admin")[0]
        assert v["session_id"] == session_id and v["evidence_url"]
        shot = wait_for(lambda: (lambda r: r if r.status_code == 200 else None)(
            admin.http.get(b.url + v["evidence_url"], timeout=15)), 30, "B does not serve A's evidence")
        assert shot.content[:2] == b"\xff\xd8"
        poster.jpegs = face

        # Kill the worker that holds the student: the other analyses it within 10 s.
        status = admin.http.get(a.url + "/api/detection-pipeline-status", timeout=15).json()["workers"]
        holder = next(w["name"] for w in status["workers"] if w["streams"])
        os.killpg(workers.procs[holder.split("@")[0]].pid, signal.SIGKILL)
        before, killed = processed(), time.monotonic()
        wait_for(lambda: processed() >= before + 3, 30, f"nobody took the student over\nA: {a.log_tail()}")
        assert time.monotonic() - killed < 10.0 + 2.0  # 10 s, plus up to two status periods to see it

        # Redis restarted (empty): web processes, message queue and the surviving worker carry on.
        redis_server.stop()
        time.sleep(3)
        redis_server.start()
        before = processed()
        wait_for(lambda: processed() >= before + 3, 90, f"no analysis after the Redis restart\nA: {a.log_tail()}")

        # Web A killed: the student goes on with B.
        os.kill(a.proc.pid, signal.SIGKILL)
        poster.base = b.url
        before = processed()
        wait_for(lambda: processed() >= 2 and [d for d in socket.named("student_status")[-3:]
                                               if d.get("session_id") == session_id], 60, "B did not take over")
        assert all(c == 202 for c in poster.codes[-3:]), poster.codes[-10:]
    finally:
        _stop_all(poster, socket, a, b, workers)
        redis_server.stop()
