"""Decompression bombs on every image route: refused with 400 from the header, before any large
allocation, and images decoded off the event loop (tests/bombs.py makes them from a real photo).

Routes that take an image from outside: /student/face (upload: JPEG, PNG, WebP),
/api/exam/<id>/identity-frame (data URL: JPEG, PNG, WebP), /api/student-frame (camera frame:
JPEG, PNG). No admin route takes an image (the admin only views the student's stored face).
"""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, csrf_token
from tests.vision.conftest import TESTDATA
from tests.web.test_exam_flow import _started, make_exam

pytestmark = pytest.mark.timeout(300)

RSS_GROWTH_MAX_MB = 100
MIME = {"png": "image/png", "webp": "image/webp"}


@pytest.fixture(scope="session")
def bombs(tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("bombs")
    # Built in another process: the 6000 x 6000 WebP needs the whole picture in memory to encode.
    subprocess.run([sys.executable, "-m", "tests.bombs", str(TESTDATA), str(out)], cwd=REPO_ROOT, check=True,
                   capture_output=True, timeout=120)
    return {p.name: p.read_bytes() for p in out.iterdir()}


def _kind(name: str) -> str:
    return name.split("_", 1)[0]


def _expected_size(name: str) -> str:
    side = name.rsplit("_", 1)[1]
    return f"{side}x{side}"


def post_face(client, data: bytes, mime: str):
    token = csrf_token(client, "/student/face")
    return client.post("/student/face", data={"csrf_token": token, "photo": (io.BytesIO(data), "me." + mime.split("/")[1], mime)},
                       content_type="multipart/form-data")


def post_identity(client, exam_id: int, data: bytes, mime: str):
    token = csrf_token(client, "/student/")
    url = f"data:{mime};base64," + base64.b64encode(data).decode()
    return client.post(f"/api/exam/{exam_id}/identity-frame", data=json.dumps({"image": url, "ts": 0}),
                       content_type="application/json", headers={"X-CSRFToken": token})


def post_frame(client, data: bytes, mime: str):
    token = csrf_token(client, "/student/")
    url = f"data:{mime};base64," + base64.b64encode(data).decode()
    return client.post("/api/student-frame", data=json.dumps({"image": url, "ts": 1}),
                       content_type="application/json", headers={"X-CSRFToken": token})


@pytest.mark.parametrize("name", ["png_claiming_16000", "png_huge_grey_16000", "webp_claiming_16000",
                                  "webp_canvas_claiming_16000", "webp_huge_grey_6000"])
def test_bombs_refused_from_the_header_on_student_routes(app, student_client, bombs, name):
    exam_id = make_exam(app)
    mime = MIME[_kind(name)]
    size = _expected_size(name)
    face = post_face(student_client, bombs[name], mime)
    assert face.status_code == 400, face.status_code
    assert f"too large: {size}" in face.get_data(as_text=True)
    ident = post_identity(student_client, exam_id, bombs[name], mime)
    assert ident.status_code == 400 and set(ident.get_json()) == {"error", "code"}
    assert f"too large: {size}" in ident.get_json()["error"]


@pytest.mark.parametrize("name", ["png_claiming_16000", "png_huge_grey_16000"])
def test_bombs_refused_on_camera_frames(app, student_client, bombs, name):
    _started(app, exam_id=make_exam(app))
    resp = post_frame(student_client, bombs[name], "image/png")
    assert resp.status_code == 400 and "too large: 16000x16000" in resp.get_json()["error"]
    resp = post_frame(student_client, bombs["webp_claiming_16000"], "image/webp")  # not a camera format at all
    assert resp.status_code == 400 and set(resp.get_json()) == {"error", "code"}


def test_webp_header_sizes_match_the_decoded_picture():
    import cv2

    from proctor.images import image_dimensions

    photo = cv2.imread(str(TESTDATA / "a_3_face_closeup_sergey.png"), cv2.IMREAD_COLOR)
    h, w = photo.shape[:2]
    lossy = cv2.imencode(".webp", photo, [cv2.IMWRITE_WEBP_QUALITY, 80])[1].tobytes()
    lossless = cv2.imencode(".webp", photo, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
    assert lossy[12:16] == b"VP8 " and lossless[12:16] == b"VP8L"
    assert image_dimensions(lossy) == ("webp", w, h)
    assert image_dimensions(lossless) == ("webp", w, h)
    from tests.bombs import webp_canvas_claiming

    assert image_dimensions(webp_canvas_claiming(TESTDATA, 5000)) == ("webp", 5000, 5000)


def test_images_are_decoded_off_the_request_thread(app, student_client, monkeypatch):
    """The decode of an identity capture and of a face upload runs in a worker thread (run_blocking)."""
    import cv2

    from proctor.student import identity

    threads: list[str] = []
    real = cv2.imdecode

    def spy(*args):
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(cv2, "imdecode", spy)

    def busy(_image):
        raise TimeoutError("no analyser in this test")

    monkeypatch.setattr(identity, "enrol", busy)
    exam_id = make_exam(app)
    photo = (TESTDATA / "a_1_webcam_woman_T1.jpg").read_bytes()
    here = threading.current_thread().name
    resp = post_identity(student_client, exam_id, photo, "image/jpeg")
    assert resp.status_code == 409 and "register your face" in resp.get_json()["error"]
    resp = post_face(student_client, photo, "image/jpeg")
    assert resp.status_code == 422 and "busy" in resp.get_data(as_text=True)
    assert len(threads) == 2 and here not in threads, threads


# --- memory: measured in a fresh process, where the peak RSS is not hidden by earlier tests ------

CHILD = r'''
import base64, io, json, resource, sys, time
from pathlib import Path
import cv2, numpy as np
sys.path.insert(0, sys.argv[1])
from proctor import create_app, init_db
from proctor.accounts import create_account
from proctor.extensions import db
from proctor.models import Exam, Question
from proctor import exam_service as svc

bombs = {p.name: p.read_bytes() for p in Path(sys.argv[2]).iterdir()}
inst = Path(sys.argv[3])
app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{inst / 'db.sqlite'}", "INSTANCE_PATH": inst,
                  "SECRET_KEY": "x" * 32, "PROCTOR_DATA_DIR": str(inst / "data"), "BCRYPT_LOG_ROUNDS": 4,
                  "PROCTOR_ASYNC_MODE": "threading", "SERVER_NAME": "localhost", "PROCTOR_LIVE_ENABLED": False})
init_db(app)
with app.app_context():
    sid = create_account("Bomb Tester", "bomb@example.edu", "correct horse battery").id
    exam = Exam(title="t", description="d", duration_minutes=20, pass_mark_percent=50, is_published=True)
    q = Question(text="q", correct_index=0, position=0); q.options = ["a", "b"]; exam.questions.append(q)
    db.session.add(exam); db.session.commit(); exam_id = exam.id
c = app.test_client()
import re
tok = lambda path: re.search(r'name="csrf-token" content="([^"]+)"', c.get(path).get_data(as_text=True)).group(1)
c.post("/login", data={"email": "bomb@example.edu", "password": "correct horse battery", "csrf_token": tok("/login")})
small = cv2.imread(sys.argv[4])
for ext in (".png", ".webp", ".jpg"):  # the codecs loaded before the baseline
    cv2.imdecode(cv2.imencode(ext, small)[1], cv2.IMREAD_COLOR)

def face(data, mime):
    return c.post("/student/face", data={"csrf_token": tok("/student/face"), "photo": (io.BytesIO(data), "x", mime)},
                  content_type="multipart/form-data")

def as_url(data, mime):
    return "data:" + mime + ";base64," + base64.b64encode(data).decode()

def ident(data, mime):
    return c.post(f"/api/exam/{exam_id}/identity-frame", json={"image": as_url(data, mime), "ts": 0},
                  headers={"X-CSRFToken": tok("/student/")})

def frame(data, mime):
    return c.post("/api/student-frame", json={"image": as_url(data, mime), "ts": 1}, headers={"X-CSRFToken": tok("/student/")})

def run(route, call, name):
    mime = "image/png" if name.startswith("png") else "image/webp"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    resp = call(bombs[name], mime)
    elapsed = time.perf_counter() - t0
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    results.append({"route": route, "bomb": name, "status": resp.status_code, "rss_growth_mb": round(growth, 1),
                    "s": round(elapsed, 3)})

results = []
for name in sorted(bombs):
    run("/student/face", face, name)
    run("/api/exam/<id>/identity-frame", ident, name)
with app.app_context():
    svc.start_session(sid, exam_id)
for name in sorted(bombs):
    run("/api/student-frame", frame, name)
print(json.dumps(results))
'''


def test_bombs_never_allocate_their_picture(bombs, tmp_path):
    """Peak RSS of a fresh server process grows less than 100 MB over every bomb on every route."""
    bomb_dir = tmp_path / "bombs"
    bomb_dir.mkdir()
    for name, data in bombs.items():
        (bomb_dir / name).write_bytes(data)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(REPO_ROOT), str(bomb_dir), str(tmp_path / "inst"),
                           str(TESTDATA / "a_1_webcam_woman_T1.jpg")], capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for row in results:
        print(row)
    assert len(results) == 3 * len(bombs)
    assert all(r["status"] == 400 for r in results), [r for r in results if r["status"] != 400]
    worst = max(results, key=lambda r: r["rss_growth_mb"])
    assert worst["rss_growth_mb"] < RSS_GROWTH_MAX_MB, worst
    assert max(r["s"] for r in results) < 1.0, results
