"""The real server (`python app.py` under eventlet) when a worker dies mid-write, and under large frames.

- A worker stopped (SIGSTOP) while the parent writes it a frame job, then killed (SIGKILL): the
  crash is logged, the worker is replaced, the student's frames are analysed again, and
  /api/health answers all along and reports the live loop (running, heartbeat age, workers).
- A student posting large frames does not stall another request: frames are decoded off the event
  loop and anything larger than PROCTOR_FRAME_MAX_SIDE_PX is refused from its header.

Every wait is bounded; the measured times are printed (`pytest -s` shows them).
"""
from __future__ import annotations

import os
import signal
import statistics
import threading
import time

import cv2
import numpy as np
import requests

from tests.e2e.conftest import LiveServer
from tests.live.test_eventlet_server import WebUser, start_exam_session
from tests.live.test_frame_api import FACE_PHOTO, data_url, jpeg_bytes, photo

READY_WAIT_S = 150.0   # the worker loads its models
RECOVER_WAIT_S = 60.0  # crash noticed, worker replaced and analysing again


class Poller:
    """GETs a URL every `every_s` in a thread and records each answer's status and latency."""

    def __init__(self, http: requests.Session, url: str, every_s: float = 0.2, timeout_s: float = 10.0):
        self.http, self.url, self.every_s, self.timeout_s = http, url, every_s, timeout_s
        self.samples: list[tuple[float, float, int | None, dict | None]] = []  # (at, latency, status, json)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                resp = self.http.get(self.url, timeout=self.timeout_s)
                status, body = resp.status_code, resp.json()
            except (requests.RequestException, ValueError):
                status, body = None, None
            self.samples.append((t0, time.monotonic() - t0, status, body))
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(self.timeout_s + 5)

    def latest(self) -> dict | None:
        return next((body for _, _, _, body in reversed(self.samples) if body is not None), None)


class FramePoster:
    """Posts the same frame from one student at `fps` in a thread, recording statuses and latencies."""

    def __init__(self, user: WebUser, image_url: str, fps: float):
        self.user, self.image_url, self.period_s = user, image_url, 1.0 / fps
        self.latencies: list[float] = []
        self.statuses: list[int | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                status = self.user.post_json("/api/student-frame", {"image": self.image_url,
                                                                    "ts": int(time.time() * 1000)}).status_code
            except requests.RequestException:
                status = None
            self.latencies.append(time.monotonic() - t0)
            self.statuses.append(status)
            self._stop.wait(max(0.0, self.period_s - (time.monotonic() - t0)))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(40)


def worker_row(admin: WebUser) -> dict | None:
    """Worker 0 from the admins' pipeline status, or None when that route does not answer in 5 s."""
    try:
        resp = admin.http.get(admin.server.url + "/api/detection-pipeline-status", timeout=5)
        return resp.json()["workers"]["workers"][0]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None


def wait_for(predicate, timeout_s: float, every_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    return None


def test_a_worker_killed_mid_write_is_logged_replaced_and_health_keeps_answering(tmp_path):
    server = LiveServer(tmp_path / "server", {"PROCTOR_ASYNC_MODE": "eventlet", "PROCTOR_LIVE_ENABLED": "true",
                                              "PROCTOR_LIVE_WORKERS": "1"}).start()
    try:
        server.create_user("admin@example.edu", role="ADMIN", name="Live Admin")
        server.create_user("student@example.edu", name="Camera Student")
        start_exam_session(server, "student@example.edu", tmp_path)
        admin = WebUser(server, "admin@example.edu")
        student = WebUser(server, "student@example.edu")
        face = data_url(jpeg_bytes(photo(FACE_PHOTO)))

        with FramePoster(student, face, fps=5) as poster, Poller(requests.Session(), server.url + "/api/health") as health:
            row = wait_for(lambda: (r := worker_row(admin)) and r["ready"] and r["jobs_done"] >= 3 and r, READY_WAIT_S)
            assert row, f"the worker never analysed frames\n{server.log_tail()}"
            pid, done_before = row["pid"], row["jobs_done"]

            os.kill(pid, signal.SIGSTOP)  # the next frame job is written into a pipe nobody reads
            time.sleep(2.0)
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()

            logged = wait_for(lambda: f"live worker 0 (pid {pid})" in server.log_path.read_text(errors="replace"),
                              RECOVER_WAIT_S)
            logged_s = time.monotonic() - killed
            assert logged, f"the crash of worker pid {pid} was never logged\n{server.log_tail()}"
            again = wait_for(lambda: (r := worker_row(admin)) and r["pid"] != pid and r["ready"]
                             and r["jobs_done"] > done_before and r, RECOVER_WAIT_S)
            again_s = time.monotonic() - killed
            assert again, f"no frame analysed by a new worker\n{server.log_tail()}"
            time.sleep(1.0)  # a few more health samples after the recovery

        answered = [s for s in health.samples if s[2] in (200, 503)]
        assert len(answered) == len(health.samples), f"/api/health did not answer: {health.samples[-5:]}"
        worst = max(lat for _, lat, _, _ in health.samples)
        live = health.latest()["live"]
        assert live["running"] is True and live["loop_age_s"] < 5
        assert live["workers_alive"] == 1 and live["workers_ready"] == 1 and live["restarts"] >= 1
        assert again["restarts"] >= 1
        accepted = sum(1 for s in poster.statuses if s == 202)
        print(f"\ncrash logged {logged_s:.2f} s after SIGKILL; new worker analysing {again_s:.2f} s after; "
              f"/api/health: {len(health.samples)} answers, worst {worst * 1000:.0f} ms; "
              f"frames accepted {accepted}/{len(poster.statuses)}")
    finally:
        server.stop()


def noisy_frame(width: int, height: int) -> str:
    """A JPEG data URL of a noisy image (noise keeps the JPEG large and its decoding slow)."""
    rng = np.random.default_rng(7)
    small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return data_url(jpeg_bytes(img, quality=70))


def test_large_frames_from_one_student_do_not_stall_other_requests(tmp_path):
    server = LiveServer(tmp_path / "server", {"PROCTOR_ASYNC_MODE": "eventlet", "PROCTOR_LIVE_ENABLED": "false",
                                              "PROCTOR_FRAME_MAX_BYTES": str(16 * 1024 * 1024),
                                              "PROCTOR_FRAME_RATE_LIMIT": "100 per second"}).start()
    try:
        server.create_user("big@example.edu", name="Big Frames")
        start_exam_session(server, "big@example.edu", tmp_path)
        big = WebUser(server, "big@example.edu")
        huge = noisy_frame(4096, 4096)       # refused from its header when over PROCTOR_FRAME_MAX_SIDE_PX
        large = noisy_frame(1920, 1080)      # accepted: decoded and scaled down off the event loop

        probe = requests.Session()
        baseline = []
        for _ in range(10):
            t0 = time.monotonic()
            assert probe.get(server.url + "/api/health", timeout=30).status_code == 200
            baseline.append(time.monotonic() - t0)

        with FramePoster(big, huge, fps=10) as huge_poster, FramePoster(big, large, fps=10) as large_poster:
            time.sleep(1.0)
            loaded = []
            for _ in range(30):
                t0 = time.monotonic()
                assert probe.get(server.url + "/api/health", timeout=30).status_code == 200
                loaded.append(time.monotonic() - t0)
                time.sleep(0.1)

        print(f"\n/api/health idle median {statistics.median(baseline) * 1000:.0f} ms; while one student posts "
              f"4096x4096 and 1920x1080 frames at 10/s each: median {statistics.median(loaded) * 1000:.0f} ms, "
              f"worst {max(loaded) * 1000:.0f} ms; 4096 posts {huge_poster.statuses[:3]}... median "
              f"{statistics.median(huge_poster.latencies) * 1000:.0f} ms, 1920 posts median "
              f"{statistics.median(large_poster.latencies) * 1000:.0f} ms")
        assert all(s == 400 for s in huge_poster.statuses), huge_poster.statuses
        assert large_poster.statuses and all(s == 202 for s in large_poster.statuses), large_poster.statuses
        # The latencies are printed above, not asserted (a shared 2-core machine is noisy): what
        # holds the loop free is asserted - 4096 px frames refused from the header, 1920 px ones
        # decoded off the loop (test_frames_are_decoded_off_the_callers_thread).
        assert len(loaded) == 30
    finally:
        server.stop()
