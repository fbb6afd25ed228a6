"""GET /admin/live/<student_id>: the MJPEG view, in-process and from the real server."""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pytest

from tests.e2e.conftest import LiveServer  # noqa: F401  (the real server, started by start_server)
from tests.live.test_eventlet_server import WebUser, start_exam_session, start_server
from tests.live.test_frame_api import (FACE_PHOTO, Student, data_url, jpeg_bytes, live_env, photo, runtime_of,  # noqa: F401
                                       stop_live_runtime)

WAIT_S = 30.0  # bound on waiting for a log line or a part, not a performance figure


def decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "a part is not a decodable JPEG"
    return img


def read_parts(chunks, count: int, boundary: bytes = b"--frame") -> list[bytes]:
    """The first `count` JPEG bodies of a multipart/x-mixed-replace stream (Content-Length framed)."""
    buf = b""
    parts: list[bytes] = []
    it = iter(chunks)
    while len(parts) < count:
        start = buf.find(boundary + b"\r\n")
        end_headers = buf.find(b"\r\n\r\n", start) if start >= 0 else -1
        if start >= 0 and end_headers >= 0:
            headers = dict(line.split(b": ", 1) for line in buf[start + len(boundary) + 2:end_headers].split(b"\r\n"))
            assert headers[b"Content-Type"] == b"image/jpeg"
            length = int(headers[b"Content-Length"])
            body_start = end_headers + 4
            if len(buf) >= body_start + length + 2:
                parts.append(buf[body_start:body_start + length])
                assert buf[body_start + length:body_start + length + 2] == b"\r\n"
                buf = buf[body_start + length + 2:]
                continue
        buf += next(it)
    return parts


# --- in-process --------------------------------------------------------------------------------

def test_stream_access(app, admin_client, student_client):
    from tests.conftest import make_user

    student_id = make_user(app, "watched@example.edu", name="Watched")
    url = f"/admin/live/{student_id}"
    anon = app.test_client().get(url)
    assert anon.status_code == 302 and "/login" in anon.headers["Location"]
    assert student_client.get(url).status_code == 403
    assert admin_client.get("/admin/live/999999").status_code == 404
    from proctor.accounts import find_by_email

    with app.app_context():
        admin_id = find_by_email("admin@example.edu").id
    assert admin_client.get(f"/admin/live/{admin_id}").status_code == 404  # not a student


def test_stream_through_the_app_shows_the_raw_frame_marked(app, admin_client):
    student = Student(app, "streamed@example.edu", name="Streamed")
    resp = admin_client.get(f"/admin/live/{student.id}", buffered=False)
    assert resp.status_code == 200
    assert resp.mimetype == "multipart/x-mixed-replace"
    assert resp.headers["Cache-Control"] == "no-store"
    (waiting,) = read_parts(resp.response, 1)
    assert decode(waiting).shape == (240, 320, 3)  # the card shown before any frame
    resp.close()

    img = photo(FACE_PHOTO)
    assert student.post_frame(data_url(jpeg_bytes(img, 95))).status_code == 202
    resp = admin_client.get(f"/admin/live/{student.id}", buffered=False)
    (part,) = read_parts(resp.response, 1)
    resp.close()
    shown = decode(part)
    h, w = img.shape[:2]
    scale = min(640 / w, 480 / h, 1.0)  # the upload route fits frames into 640x480
    img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    assert shown.shape == img.shape
    # No worker ran (live processing is off in this test): the raw frame is shown with the HUD drawn on it.
    diff = cv2.absdiff(shown, img)
    assert diff.max() > 100  # HUD text/panel drawn
    assert np.median(diff) < 12  # but it is the same picture


def test_open_streams_are_capped(app, admin_client):
    student = Student(app, "popular@example.edu", name="Popular")
    app.config["PROCTOR_MJPEG_MAX_STREAMS"] = 2
    open_views = []
    for _ in range(2):
        resp = admin_client.get(f"/admin/live/{student.id}", buffered=False)
        assert resp.status_code == 200
        read_parts(resp.response, 1)  # the stream is open once its first part is out
        open_views.append(resp)
    refused = admin_client.get(f"/admin/live/{student.id}")
    assert refused.status_code == 429
    open_views.pop().close()
    again = admin_client.get(f"/admin/live/{student.id}", buffered=False)
    assert again.status_code == 200
    again.close()
    for resp in open_views:
        resp.close()


def test_generator_respects_the_frame_rate_cap_and_lifetime(app, caplog):
    from proctor.live.mjpeg import LiveViewSource, mjpeg_parts

    student = Student(app, "capped@example.edu", name="Capped")
    rt = runtime_of(app)
    clock = [1000.0]
    sleeps: list[float] = []

    def fake_sleep(s):
        sleeps.append(s)
        clock[0] += s
        # A new frame arrives between two reads, as fast as the student sends them.
        with app.app_context():
            rt.submit_frame(student.id, student.session_id, photo(FACE_PHOTO), int(clock[0] * 1000))

    source = LiveViewSource(rt, student.id, fresh_s=1.5)
    with caplog.at_level(logging.INFO, logger="proctor.live.mjpeg"):
        parts = list(mjpeg_parts(source, fps=5, max_s=4, keepalive_s=1.0, sleep=fake_sleep, clock=lambda: clock[0]))
    assert all(s == pytest.approx(0.2) for s in sleeps)
    assert len(parts) <= 5 * 4 + 1  # never more than the cap, though frames changed every read
    assert len(parts) >= 4 * 4      # and every new frame was shown
    assert any("ended after" in r.getMessage() for r in caplog.records)


def test_generator_keepalive_and_close(app, caplog):
    from proctor.live.mjpeg import LiveViewSource, mjpeg_parts

    student = Student(app, "idle@example.edu", name="Idle")
    rt = runtime_of(app)
    clock = [0.0]

    def fake_sleep(s):
        clock[0] += s

    gen = mjpeg_parts(LiveViewSource(rt, student.id, fresh_s=1.5), fps=5, max_s=3600, keepalive_s=1.0,
                      sleep=fake_sleep, clock=lambda: clock[0])
    first = next(gen)
    start = clock[0]
    second = next(gen)  # nothing new: the same picture again after the keepalive period
    assert clock[0] - start >= 1.0
    assert first == second
    with caplog.at_level(logging.INFO, logger="proctor.live.mjpeg"):
        gen.close()  # what the server does when the viewer leaves
    assert any("ended after 2 parts" in r.getMessage() for r in caplog.records)


# --- the real server ---------------------------------------------------------------------------

@pytest.mark.parametrize("async_mode", ["eventlet", "threading"])
def test_mjpeg_from_the_real_server(tmp_path, async_mode):
    server = start_server(tmp_path / "server", async_mode)
    try:
        server.create_user("admin@example.edu", role="ADMIN", name="Viewer Admin")
        server.create_user("student@example.edu", name="Viewed Student")
        student_id, _ = start_exam_session(server, "student@example.edu", tmp_path)
        admin = WebUser(server, "admin@example.edu")
        student = WebUser(server, "student@example.edu")
        frame = data_url(jpeg_bytes(photo(FACE_PHOTO)))
        for _ in range(3):
            assert student.post_json("/api/student-frame", {"image": frame, "ts": int(time.time() * 1000)}).status_code == 202

        # A student may not watch anyone's stream.
        assert student.http.get(f"{server.url}/admin/live/{student_id}", timeout=30).status_code == 403

        with admin.http.get(f"{server.url}/admin/live/{student_id}", stream=True, timeout=30) as resp:
            assert resp.status_code == 200
            assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            parts = read_parts(resp.iter_content(chunk_size=8192), 2)
        for part in parts:
            img = decode(part)
            assert img.shape[0] >= 100 and img.shape[1] >= 100

        # The viewer left: the server closes the generator (at its next write) and keeps serving.
        def streams():
            return admin.http.get(server.url + "/api/detection-pipeline-status", timeout=30).json()["mjpeg_streams"]

        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and streams()["closed"] < 1:
            time.sleep(0.2)
        counts = streams()
        assert counts["opened"] == 1 and counts["closed"] == 1 and counts["open"] == 0, counts
        assert counts["parts_sent"] >= 2
        assert admin.http.get(server.url + "/api/health", timeout=30).status_code == 200
        with admin.http.get(f"{server.url}/admin/live/{student_id}", stream=True, timeout=30) as again:
            (part,) = read_parts(again.iter_content(chunk_size=8192), 1)
        decode(part)
    finally:
        server.stop()
