"""The dashboard's thumbnail route against the real live runtime: a real photo posted by a student
through /api/student-frame comes back to the admin as one JPEG; students are refused."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.live.test_frame_api import FACE_PHOTO, Student, data_url, jpeg_bytes, photo, runtime_of


@pytest.fixture(autouse=True)
def live_without_workers(monkeypatch):
    # The runtime stores frames and serves views; its vision workers are not needed here.
    monkeypatch.setenv("PROCTOR_LIVE_ENABLED", "false")
    monkeypatch.setenv("PROCTOR_LIVE_WORKERS", "1")


@pytest.fixture
def stop_runtime(app):
    yield
    runtime_of(app).stop(timeout=5)


def test_snapshot_serves_the_latest_frame(app, admin_client, stop_runtime):
    student = Student(app, "live-thumb@example.edu", name="Thumb Student")
    assert admin_client.get(f"/admin/monitor/{student.id}/snapshot.jpg").status_code == 404  # no frame yet: 404, not 500
    assert admin_client.get("/admin/monitor/999999/snapshot.jpg").status_code == 404
    img = photo(FACE_PHOTO)
    resp = student.client.post("/api/student-frame", json={"image": data_url(jpeg_bytes(img)), "ts": 1_000},
                               headers={"X-CSRFToken": student.token})
    assert resp.status_code == 202, resp.get_json()
    got = admin_client.get(f"/admin/monitor/{student.id}/snapshot.jpg")
    assert got.status_code == 200 and got.mimetype == "image/jpeg"
    assert got.headers["Cache-Control"] == "no-store" and got.headers["X-Frame-Kind"] in ("raw", "processed")
    frame = cv2.imdecode(np.frombuffer(got.data, np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None and frame.shape[2] == 3
    # the same picture (scaled to the frame limit): compare on a small grey thumbnail
    sent = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (64, 48)).astype(float)
    back = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (64, 48)).astype(float)
    assert np.abs(sent - back).mean() < 25  # a raw frame carries the RAW status overlay
    # the page for this student points at the stream and the session
    page = admin_client.get(f"/admin/monitor/{student.id}").get_data(as_text=True)
    assert f'data-session-id="{student.session_id}"' in page and "Thumb Student" in page
    # students never get another student's picture
    other = Student(app, "other-thumb@example.edu", session=False)
    assert other.client.get(f"/admin/monitor/{student.id}/snapshot.jpg").status_code == 403
