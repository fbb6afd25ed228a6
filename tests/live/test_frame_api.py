"""POST /api/student-frame and /api/student-event: real photos, the real runtime, every bad input.

The helpers here (photos, data URLs, exam sessions) are shared by the other tests in tests/live.
"""
from __future__ import annotations

import base64
import json
import os
import struct
import time
import zlib
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import REPO_ROOT, csrf_token, login, make_user

TESTDATA = Path(os.environ.get("PROCTOR_TESTDATA", REPO_ROOT.parent / "shared" / "testdata"))
FACE_PHOTO = "a_1_webcam_woman_T1.jpg"
EMPTY_ROOM = "f_5_living_room_empty.jpg"


# --- helpers shared by tests/live -----------------------------------------------------------

@pytest.fixture(autouse=True)
def live_env(monkeypatch):
    """The real runtime without its vision worker processes (these tests check the web layer);
    tests that need inference ask for `live_inference` before `app`. The runtime stops at test end."""
    monkeypatch.setenv("PROCTOR_LIVE_ENABLED", "false")
    monkeypatch.setenv("PROCTOR_LIVE_WORKERS", "1")  # 2 cores on the test machine
    yield


@pytest.fixture
def live_inference(monkeypatch):
    monkeypatch.setenv("PROCTOR_LIVE_ENABLED", "true")


@pytest.fixture(autouse=True)
def stop_live_runtime(request):
    yield
    app = request.node.funcargs.get("app")
    if app is not None:
        runtime_of(app).stop(timeout=5)


def photo(name: str) -> np.ndarray:
    path = TESTDATA / name
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        pytest.fail(f"test photo {path} not found (set PROCTOR_TESTDATA)")
    return img


def jpeg_bytes(img: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def png_bytes(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def data_url(raw: bytes, kind: str = "jpeg") -> str:
    return f"data:image/{kind};base64," + base64.b64encode(raw).decode("ascii")


def start_exam(app, student_id: int, minutes: int = 30) -> int:
    """A published exam and the student's session in progress (through exam_service); returns the session id."""
    from proctor import exam_service
    from proctor.extensions import db
    from proctor.models import Exam, Question

    with app.app_context():
        exam = Exam(title=f"Live test exam {student_id}", description="", duration_minutes=minutes,
                    pass_mark_percent=50, is_published=True)
        q = Question(text="What is 7 x 8?", correct_index=1, position=0)
        q.options = ["54", "56", "64"]
        exam.questions.append(q)
        db.session.add(exam)
        db.session.commit()
        sess = exam_service.start_session(student_id, exam.id)
        # As the exam page's start route does: the runtime opens the student's live stream.
        runtime_of(app).session_started(student_id, sess.id)
        return sess.id


def runtime_of(app):
    from proctor.live import get_runtime

    return get_runtime(app)


class Student:
    def __init__(self, app, email: str, name: str = "Live Student", session: bool = True):
        self.app = app
        self.email = email
        self.id = make_user(app, email, name=name)
        self.client = app.test_client()
        assert login(self.client, email).status_code == 302
        self.token = csrf_token(self.client, "/student/")
        self.session_id = start_exam(app, self.id) if session else None

    def post_frame(self, image=None, ts=None, raw_body=None, headers=None, token=True, **extra):
        hdrs = {"X-CSRFToken": self.token} if token else {}
        hdrs.update(headers or {})
        if raw_body is not None:
            return self.client.post("/api/student-frame", data=raw_body, headers=hdrs,
                                    content_type=hdrs.pop("Content-Type", "application/json"))
        body = {"image": image, "ts": int(time.time() * 1000) if ts is None else ts, **extra}
        return self.client.post("/api/student-frame", json=body, headers=hdrs)

    def post_event(self, body, token=True):
        hdrs = {"X-CSRFToken": self.token} if token else {}
        return self.client.post("/api/student-event", json=body, headers=hdrs)


@pytest.fixture
def student(app):
    return Student(app, "live-student@example.edu")


def error_of(resp) -> str:
    body = resp.get_json(silent=True)
    assert isinstance(body, dict) and "error" in body, f"not a JSON error: {resp.status_code} {resp.data[:200]!r}"
    assert body["code"] == resp.status_code
    return body["error"]


# --- accepted frames ------------------------------------------------------------------------

def test_jpeg_data_url_frame_is_accepted_with_a_sequence_number(app, student):
    img = photo(FACE_PHOTO)
    first = student.post_frame(data_url(jpeg_bytes(img)))
    assert first.status_code == 202, first.data
    second = student.post_frame(data_url(jpeg_bytes(img)))
    assert second.status_code == 202
    assert second.get_json()["seq"] == first.get_json()["seq"] + 1
    # The runtime holds the frame for this student and this session (from the DB, not the body).
    status = runtime_of(app).status(student.id)
    assert status["session_id"] == student.session_id
    assert status["frame_age_s"] is not None and status["frame_age_s"] >= 0


def test_bare_base64_png_is_accepted(app, student):
    raw = png_bytes(photo("a_3_face_closeup_sergey.png"))
    resp = student.post_frame(base64.b64encode(raw).decode())
    assert resp.status_code == 202, resp.data
    assert resp.get_json()["width"] == 480 and resp.get_json()["height"] == 480  # 600x600 scaled to fit 640x480


@pytest.mark.parametrize("size, expected", [((1920, 1440), (640, 480)), ((1600, 900), (640, 360)),
                                            ((300, 1200), (120, 480)), ((320, 240), (320, 240))])
def test_frames_are_scaled_to_fit_640x480_keeping_the_aspect(app, student, size, expected):
    img = cv2.resize(photo("e_5_zidane_two_men.jpg"), size, interpolation=cv2.INTER_CUBIC)
    resp = student.post_frame(data_url(jpeg_bytes(img)))
    assert resp.status_code == 202, resp.data
    body = resp.get_json()
    assert (body["width"], body["height"]) == expected


def test_the_body_cannot_choose_the_student_or_session(app, student):
    other = Student(app, "other-live@example.edu", name="Other Student")
    resp = student.post_frame(data_url(jpeg_bytes(photo(FACE_PHOTO))), student_id=other.id,
                              session_id=other.session_id)
    assert resp.status_code == 202
    rt = runtime_of(app)
    assert rt.status(student.id)["session_id"] == student.session_id
    assert rt.status(other.id).get("frame_age_s") is None  # nothing arrived for the other student


@pytest.mark.parametrize("key, value", [("PROCTOR_FRAME_RATE_LIMIT", "lots"), ("PROCTOR_MJPEG_FPS", 0),
                                        ("PROCTOR_FRAME_MAX_BYTES", "2MB")])
def test_bad_live_route_settings_stop_the_app_at_start(tmp_path, key, value):
    from proctor import ConfigError, create_app

    with pytest.raises(ConfigError, match=key):
        create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}", "INSTANCE_PATH": tmp_path / "inst",
                    "SECRET_KEY": "s" * 32, "PROCTOR_ASYNC_MODE": "threading", key: value})


def test_image_dimensions_read_from_headers_match_the_decoded_photos():
    from proctor.images import image_dimensions

    for name in (FACE_PHOTO, "a_6_grace_hopper.jpg", "a_7_astronaut.png", "e_2_three_business.jpg"):
        raw = (TESTDATA / name).read_bytes()
        kind, w, h = image_dimensions(raw)
        decoded = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        assert (w, h) == (decoded.shape[1], decoded.shape[0]), name
        assert kind == ("png" if name.endswith(".png") else "jpeg")


# --- refused frames -------------------------------------------------------------------------

def test_body_over_the_route_limit_is_413(app, student):
    resp = student.post_frame("A" * (2 * 1024 * 1024 + 10))
    assert resp.status_code == 413
    assert "limit" in error_of(resp)


def test_a_real_photo_too_big_to_upload_is_413(app, student):
    big = cv2.resize(photo("e_2_three_business.jpg"), (3800, 3800), interpolation=cv2.INTER_CUBIC)
    noisy = cv2.add(big, np.random.default_rng(1).integers(0, 40, big.shape, dtype=np.uint8))
    raw = png_bytes(noisy)
    assert len(raw) > 2 * 1024 * 1024
    resp = student.post_frame(data_url(raw, "png"))
    assert resp.status_code == 413


def _png_with_header_size(raw: bytes, width: int, height: int) -> bytes:
    """A real PNG whose IHDR claims another size (CRC fixed): a decompression-bomb shaped file."""
    ihdr = bytearray(raw[12:29])
    ihdr[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return raw[:12] + bytes(ihdr) + crc + raw[33:]


@pytest.mark.parametrize("case", [
    "not_json", "json_array", "no_image", "image_not_string", "bad_base64", "gif_data_url", "text_as_image",
    "truncated_jpeg", "too_small", "too_wide", "bomb_header", "ts_missing", "ts_string", "ts_nan", "ts_negative",
])
def test_bad_frames_are_400_with_a_json_error(app, student, case):
    img = photo(FACE_PHOTO)
    good = data_url(jpeg_bytes(img))
    if case == "not_json":
        resp = student.post_frame(raw_body=b"image=abc", headers={"Content-Type": "application/x-www-form-urlencoded"})
    elif case == "json_array":
        resp = student.post_frame(raw_body=json.dumps([good]).encode())
    elif case == "no_image":
        resp = student.post_frame(None)
    elif case == "image_not_string":
        resp = student.post_frame({"data": good})
    elif case == "bad_base64":
        resp = student.post_frame("data:image/jpeg;base64,@@@not*base64@@@")
    elif case == "gif_data_url":
        resp = student.post_frame("data:image/gif;base64," + base64.b64encode(jpeg_bytes(img)).decode())
    elif case == "text_as_image":
        resp = student.post_frame(base64.b64encode((REPO_ROOT / "README.md").read_bytes()[:4000]).decode())
    elif case == "truncated_jpeg":
        resp = student.post_frame(data_url((TESTDATA / FACE_PHOTO).read_bytes()[:2000]))
    elif case == "too_small":
        resp = student.post_frame(data_url(jpeg_bytes(img[200:220, 200:220])))
    elif case == "too_wide":
        strip = cv2.resize(img[300:340, :], (4200, 40), interpolation=cv2.INTER_CUBIC)
        resp = student.post_frame(data_url(jpeg_bytes(strip, 60)))
    elif case == "bomb_header":
        resp = student.post_frame(data_url(_png_with_header_size(png_bytes(img), 60000, 60000), "png"))
    elif case == "ts_missing":
        resp = student.post_frame(raw_body=json.dumps({"image": good}).encode())
    elif case == "ts_string":
        resp = student.post_frame(good, ts="yesterday")
    elif case == "ts_nan":
        resp = student.post_frame(raw_body=('{"image": "%s", "ts": NaN}' % good).encode())
    else:
        resp = student.post_frame(good, ts=-5)
    assert resp.status_code == 400, (case, resp.status_code, resp.data[:200])
    message = error_of(resp)
    expected = {
        "not_json": "JSON", "json_array": "JSON object", "no_image": "'image'", "image_not_string": "'image'",
        "bad_base64": "base64", "gif_data_url": "data URL", "text_as_image": "not a JPEG or PNG",
        "truncated_jpeg": ("JPEG", "could not be decoded"), "too_small": "too small", "too_wide": "too large", "bomb_header": "too large",
        "ts_missing": "'ts'", "ts_string": "'ts'", "ts_nan": "'ts'", "ts_negative": "'ts'",
    }[case]
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert any(e in message for e in expected), (case, message)


def test_frame_rate_limit_is_per_student_and_answers_429(app, student):
    app.config["PROCTOR_FRAME_RATE_LIMIT"] = "3 per minute"
    other = Student(app, "rate-other@example.edu", name="Rate Other")
    frame = data_url(jpeg_bytes(photo(FACE_PHOTO)))
    codes = [student.post_frame(frame).status_code for _ in range(4)]
    assert codes == [202, 202, 202, 429]
    limited = student.post_frame(frame)
    assert limited.status_code == 429 and error_of(limited)
    assert other.post_frame(frame).status_code == 202  # another account has its own budget


def test_no_session_is_409(app):
    s = Student(app, "no-session@example.edu", session=False)
    resp = s.post_frame(data_url(jpeg_bytes(photo(FACE_PHOTO))))
    assert resp.status_code == 409
    assert "no exam in progress" in error_of(resp)


@pytest.mark.parametrize("ending", ["completed", "terminated", "deadline_passed"])
def test_finished_or_overdue_session_is_409(app, student, ending):
    from proctor import exam_service
    from proctor.extensions import db
    from proctor.models import ExamSession, utcnow

    with app.app_context():
        if ending == "deadline_passed":
            sess = db.session.get(ExamSession, student.session_id)
            sess.deadline = utcnow() - timedelta(seconds=1)
            db.session.commit()
        else:
            exam_service.finish_session(student.session_id, ending.upper(), "test")
    resp = student.post_frame(data_url(jpeg_bytes(photo(FACE_PHOTO))))
    assert resp.status_code == 409
    if ending == "deadline_passed":
        with app.app_context():
            assert db.session.get(ExamSession, student.session_id).status == "COMPLETED"  # submitted at the deadline


def test_anonymous_is_401_and_admin_is_403(app, admin_client):
    frame = data_url(jpeg_bytes(photo(FACE_PHOTO)))
    anon = app.test_client().post("/api/student-frame", json={"image": frame, "ts": 1})
    assert anon.status_code == 401 and error_of(anon)
    token = csrf_token(admin_client, "/admin/")
    admin = admin_client.post("/api/student-frame", json={"image": frame, "ts": 1}, headers={"X-CSRFToken": token})
    assert admin.status_code == 403


def test_csrf_token_is_required(app, student):
    frame = data_url(jpeg_bytes(photo(FACE_PHOTO)))
    missing = student.post_frame(frame, token=False)
    assert missing.status_code == 400 and "CSRF" in error_of(missing)
    wrong = student.post_frame(frame, token=False, headers={"X-CSRFToken": "forged-token"})
    assert wrong.status_code == 400 and "CSRF" in error_of(wrong)


# --- browser events -------------------------------------------------------------------------

def test_browser_events_reach_the_runtime(app, student):
    rt = runtime_of(app)
    resp = student.post_event({"type": "TAB_SWITCH", "details": {"duration_ms": 4200}})
    assert resp.status_code == 200, resp.data
    body = resp.get_json()
    assert body["accepted"] is True and body["type"] == "TAB_SWITCH" and isinstance(body["warnings"], list)
    # What the exam page sends: dBFS levels, and the camera's own reason for stopping.
    resp = student.post_event({"type": "VOICE_DETECTED", "details": {"level": -31.4, "duration_ms": 1800}})
    assert resp.status_code == 200
    resp = student.post_event({"type": "CAMERA_OFF", "details": {"reason": "ended <script>" + "x" * 100}})
    assert resp.status_code == 200
    from proctor.extensions import db
    from proctor.models import Violation

    with app.app_context():
        stored = {v.type: json.loads(v.details) for v in db.session.scalars(
            db.select(Violation).where(Violation.student_id == student.id))}
    # The browser's details were checked and kept: numbers as numbers, the reason short and plain.
    assert stored["TAB_SWITCH"]["duration_ms"] == 4200
    assert stored["VOICE_DETECTED"]["level"] == -31.4 and stored["VOICE_DETECTED"]["duration_ms"] == 1800
    assert stored["CAMERA_OFF"]["camera_reason"] == "ended script" + "x" * 52  # cut at REASON_WORD_MAX (64)
    status = rt.status(student.id)
    assert status["session_id"] == student.session_id
    assert status["warnings"] >= 1  # a tab switch is an instant violation that issues a warning


@pytest.mark.parametrize("body, status, fragment", [
    ({"type": "SOMETHING_ELSE"}, 400, "'type'"),
    ({"type": "NO_FACE"}, 400, "'type'"),  # frame rules cannot be reported by the browser
    ({}, 400, "'type'"),
    ({"type": "VOICE_DETECTED"}, 400, "level"),
    ({"type": "VOICE_DETECTED", "level": "loud"}, 400, "'level'"),
    ({"type": "VOICE_DETECTED", "level": 1e9}, 400, "'level'"),
    ({"type": "TAB_SWITCH", "details": "hidden"}, 400, "'details'"),
    ({"type": "TAB_SWITCH", "details": {"duration_ms": -1}}, 400, "'duration_ms'"),
    ({"type": "CAMERA_OFF", "details": {"reason": ["denied"]}}, 400, "'reason'"),
])
def test_bad_browser_events_are_400(app, student, body, status, fragment):
    resp = student.post_event(body)
    assert resp.status_code == status
    assert fragment in error_of(resp)


def test_browser_event_guards(app, student, admin_client):
    app.config["PROCTOR_EVENT_RATE_LIMIT"] = "2 per minute"
    assert student.post_event({"type": "FULLSCREEN_EXIT"}).status_code == 200
    assert student.post_event({"type": "FULLSCREEN_EXIT"}).status_code == 200
    assert student.post_event({"type": "FULLSCREEN_EXIT"}).status_code == 429
    assert student.post_event({"type": "CAMERA_OFF"}, token=False).status_code == 400  # CSRF first
    assert app.test_client().post("/api/student-event", json={"type": "TAB_SWITCH"}).status_code == 401
    token = csrf_token(admin_client, "/admin/")
    assert admin_client.post("/api/student-event", json={"type": "TAB_SWITCH"},
                             headers={"X-CSRFToken": token}).status_code == 403
    lone = Student(app, "event-nosession@example.edu", session=False)
    resp = lone.post_event({"type": "TAB_SWITCH"})
    assert resp.status_code == 409 and "no exam in progress" in error_of(resp)


def test_upload_decode_cost_figures():
    """Benchmark (prints, asserts only correctness): what checking a frame costs in the web process
    (a JPEG that fits goes on as bytes; a larger one is decoded and fitted)."""
    from proctor.images import camera_frame, data_url_bytes

    base = photo("e_2_three_business.jpg")
    print()
    for size, quality in (((640, 480), 80), ((1280, 720), 80), ((1920, 1080), 85)):
        raw = jpeg_bytes(cv2.resize(base, size, interpolation=cv2.INTER_AREA), quality)
        text = data_url(raw)
        times = []
        for _ in range(15):
            t0 = time.perf_counter()
            frame = camera_frame(data_url_bytes(text), min_side=32, max_side=4096, max_w=640, max_h=480)
            times.append(time.perf_counter() - t0)
        if size == (640, 480):
            assert frame == raw  # fits: the page's own bytes go on
        else:
            assert frame.shape[1] <= 640 and frame.shape[0] <= 480
        times.sort()
        print(f"camera_frame {size[0]}x{size[1]} JPEG ({len(raw) // 1024} KiB): median {times[7] * 1000:.1f} ms, "
              f"max {times[-1] * 1000:.1f} ms")


def test_frames_are_decoded_off_the_callers_thread(app, student, monkeypatch):
    """Hardening: a camera frame is checked (and decoded when it must be) in run_blocking's pool
    (eventlet's tpool under eventlet), not in the request's own thread, so large frames cannot hold the
    event loop."""
    import threading

    from proctor import images

    real = images.camera_frame
    seen: list[str] = []

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr("proctor.api.frames.camera_frame", spy)
    resp = student.post_frame(data_url(jpeg_bytes(photo(FACE_PHOTO))))
    assert resp.status_code == 202, resp.data[:200]
    assert seen and threading.current_thread().name not in seen


def test_a_repeated_browser_event_with_its_client_id_is_stored_once(app, student):
    """The exam page's outbox retries an event after a database blink: the same client_id counts once."""
    from proctor.extensions import db
    from proctor.models import Violation

    from proctor.models import ExamSession

    with app.app_context():  # no cooldown: each tab switch the runtime takes is a violation of its own
        db.session.get(ExamSession, student.session_id).exam.thresholds = json.dumps({"WARNING_COOLDOWN_S": 0})
        db.session.commit()
    runtime_of(app).session_ended(student.id, student.session_id)
    runtime_of(app).session_started(student.id, student.session_id)
    cid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    first = student.post_event({"type": "TAB_SWITCH", "client_id": cid})
    again = student.post_event({"type": "TAB_SWITCH", "client_id": cid})
    other = student.post_event({"type": "TAB_SWITCH", "client_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7"})
    assert first.status_code == again.status_code == other.status_code == 200, again.data
    assert again.get_json()["duplicate"] is True and again.get_json()["warnings"] == []
    assert first.get_json()["duplicate"] is False
    with app.app_context():
        stored = db.session.scalars(db.select(Violation).where(Violation.session_id == student.session_id,
                                                               Violation.type == "TAB_SWITCH")).all()
    assert len(stored) == 2  # the first and the other one; the repeat stored nothing


@pytest.mark.parametrize("client_id", ["not-a-uuid", 12345, "", "0f8fad5b-d9cb-469f-a165-70867728950e" + "x",
                                       "{0f8fad5b-d9cb-469f-a165-70867728950e}", ["0f8fad5b-d9cb-469f-a165-70867728950e"]])
def test_a_bad_event_client_id_is_400(app, student, client_id):
    resp = student.post_event({"type": "TAB_SWITCH", "client_id": client_id})
    assert resp.status_code == 400
    assert "client_id" in error_of(resp)
