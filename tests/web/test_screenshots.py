"""Screenshots of the shared screen (issue 16): POST /api/exam/sessions/<id>/screenshot stores a real JPEG
of the student's own session in progress, of an exam that requires screen sharing, within the size, pixel,
rate and quota limits; the admin gets the latest one for the live grid and sees them all on the review.

The screenshots are real screen captures (docs/screenshots/*.png, the app's own pages) encoded as the exam
page encodes them: JPEG at quality 0.6, at most 1280 px on the long side."""
from __future__ import annotations

import errno
from datetime import timedelta
from pathlib import Path

import cv2
import pytest
from sqlalchemy import select

from tests.conftest import REPO_ROOT, csrf_token, make_user
from tests.web.test_exam_flow import _started, make_exam

SHOTS = REPO_ROOT / "docs" / "screenshots"


def _jpeg(name: str, quality: int = 60) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.imread(str(SHOTS / name)), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def screen_jpeg() -> bytes:
    data = _jpeg("student-exam.png")  # 1280x900, as the page sends a 16:10 screen
    assert data[:2] == b"\xff\xd8" and 30_000 < len(data) < 600 * 1024
    return data


def _screen_exam(app, required=True) -> int:
    from proctor.extensions import db
    from proctor.models import Exam

    exam_id = make_exam(app)
    with app.app_context():
        db.session.get(Exam, exam_id).screen_share = "required" if required else "off"
        db.session.commit()
    return exam_id


def post_shot(client, token, session_id, data: bytes, mime="image/jpeg"):
    return client.post(f"/api/exam/sessions/{session_id}/screenshot", data=data, content_type=mime,
                       headers={"X-CSRFToken": token})


def _rows(app, session_id=None):
    from proctor.extensions import db
    from proctor.models import Recording

    with app.app_context():
        stmt = select(Recording).where(Recording.kind == "screen")
        if session_id is not None:
            stmt = stmt.where(Recording.session_id == session_id)
        rows = db.session.scalars(stmt.order_by(Recording.id)).all()
        db.session.expunge_all()
        return rows


def _refused(resp, status, *words):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error", "code"} and body["code"] == status, body
    for w in words:
        assert w in body["error"], body
    return body


def _data_files(app):
    root = Path(app.config["PROCTOR_DATA_DIR"]) / "recordings"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_upload_stores_a_row_and_the_file_and_the_admin_sees_it(app, student_client, admin_client, screen_jpeg):
    from proctor.models import utcnow

    session_id = _started(app, exam_id=_screen_exam(app))
    token = csrf_token(student_client, "/student/")
    before = utcnow()
    resp = post_shot(student_client, token, session_id, screen_jpeg)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["ok"] is True and body["bytes"] == len(screen_jpeg)
    [row] = _rows(app, session_id)
    assert row.id == body["id"] and row.mime == "image/jpeg" and row.bytes == len(screen_jpeg) and row.sequence == 0
    assert before - timedelta(seconds=2) <= row.started_at <= utcnow() + timedelta(seconds=2)  # the server's time
    stored = Path(app.config["PROCTOR_DATA_DIR"]) / row.path
    assert stored.read_bytes() == screen_jpeg and stored.suffix == ".jpg"

    # the live grid's route: the image, named; 204 once the page has it; a newer one replaces it
    latest = admin_client.get(f"/admin/sessions/{session_id}/screenshots/latest")
    assert latest.status_code == 200 and latest.mimetype == "image/jpeg" and latest.data == screen_jpeg
    assert latest.headers["X-Screenshot-Id"] == str(row.id) and "no-store" in latest.headers["Cache-Control"]
    same = admin_client.get(f"/admin/sessions/{session_id}/screenshots/latest?after={row.id}")
    assert same.status_code == 204 and same.data == b""
    assert admin_client.get(f"/admin/sessions/{session_id}/screenshots/latest?after=x1").status_code == 400
    second = _jpeg("live-grid.png")
    assert post_shot(student_client, token, session_id, second).status_code == 201
    newer = admin_client.get(f"/admin/sessions/{session_id}/screenshots/latest?after={row.id}")
    assert newer.status_code == 200 and newer.data == second and int(newer.headers["X-Screenshot-Id"]) > row.id

    # each one served by the recordings route as a JPEG; the review shows them on the timeline and as a strip
    img = admin_client.get(f"/admin/recordings/{row.id}")
    assert img.status_code == 200 and img.mimetype == "image/jpeg" and img.data == screen_jpeg
    page = admin_client.get(f"/admin/sessions/{session_id}").get_data(as_text=True)
    assert page.count('class="tl-shot-link"') == 2 and f'href="/admin/recordings/{row.id}"' in page
    assert ">Screen</text>" in page  # the timeline's lane
    assert "Bars on the Screen lane: screenshots of the shared screen" in page
    assert 'id="screenshots"' in page and page.count('class="img-thumbnail screenshot-thumb"') == 2
    recordings = admin_client.get(f"/admin/sessions/{session_id}/recordings").get_data(as_text=True)
    assert "Recordings (0)" in recordings  # screenshots are not played as audio on the recordings page


def test_another_students_session_and_no_session_are_refused(app, student_client, screen_jpeg):
    exam_id = _screen_exam(app)
    make_user(app, "other@example.edu", name="Other Student")
    other_session = _started(app, client_email="other@example.edu", exam_id=exam_id)
    token = csrf_token(student_client, "/student/")
    _refused(post_shot(student_client, token, other_session, screen_jpeg), 403, "another student")
    _refused(post_shot(student_client, token, other_session + 1000, screen_jpeg), 404)
    # the student has no session at all: every id is someone else's or nobody's
    assert _rows(app) == [] and _data_files(app) == []


def test_a_finished_session_and_an_exam_without_screen_sharing_are_409(app, student_client, screen_jpeg):
    from proctor import exam_service as svc

    token = csrf_token(student_client, "/student/")
    plain = _started(app, exam_id=_screen_exam(app, required=False))
    _refused(post_shot(student_client, token, plain, screen_jpeg), 409, "does not record the screen")
    with app.app_context():
        svc.finish_session(plain, "COMPLETED", "submitted by the student")
    session_id = _started(app, exam_id=_screen_exam(app))
    with app.app_context():
        svc.finish_session(session_id, "COMPLETED", "submitted by the student")
    _refused(post_shot(student_client, token, session_id, screen_jpeg), 409, "exam is over")
    assert _rows(app) == []


def test_bad_bodies_are_refused_with_the_right_status(app, student_client, screen_jpeg):
    session_id = _started(app, exam_id=_screen_exam(app))
    token = csrf_token(student_client, "/student/")
    ok, png = cv2.imencode(".png", cv2.imread(str(SHOTS / "student-exam.png")))
    _refused(post_shot(student_client, token, session_id, png.tobytes()), 415, "must be a JPEG", "PNG")
    _refused(post_shot(student_client, token, session_id, b"GIF89a" + b"\0" * 500), 415, "not an image")
    _refused(post_shot(student_client, token, session_id, screen_jpeg, mime="image/png"), 415, "image/jpeg")
    _refused(post_shot(student_client, token, session_id, b""), 400, "empty")
    # a JPEG header on garbage: the header reads, the picture does not
    broken = screen_jpeg[:600] + bytes(range(256)) * 40
    _refused(post_shot(student_client, token, session_id, broken), 400, "could not be decoded")
    # more pixels than the page ever sends (1280x1809): refused from the header
    tall = _jpeg("session-review.png")
    _refused(post_shot(student_client, token, session_id, tall), 400, "1280x1809", "at most 1280 px")
    app.config["PROCTOR_SCREENSHOT_MAX_BYTES"] = len(screen_jpeg) - 1
    _refused(post_shot(student_client, token, session_id, screen_jpeg), 413, f"limited to {len(screen_jpeg) - 1} bytes")
    assert _rows(app) == [] and _data_files(app) == []


def test_quota_per_session_is_413_and_keeps_what_was_stored(app, student_client, screen_jpeg):
    app.config["PROCTOR_SCREENSHOT_MAX_BYTES_PER_SESSION"] = len(screen_jpeg) * 2 + 10
    session_id = _started(app, exam_id=_screen_exam(app))
    token = csrf_token(student_client, "/student/")
    assert post_shot(student_client, token, session_id, screen_jpeg).status_code == 201
    assert post_shot(student_client, token, session_id, screen_jpeg).status_code == 201
    _refused(post_shot(student_client, token, session_id, screen_jpeg), 413, "screenshot limit", str(len(screen_jpeg) * 2 + 10))
    rows = _rows(app, session_id)
    assert [r.sequence for r in rows] == [0, 1] and len(_data_files(app)) == 2


def test_rate_limit_per_account_is_429(app, student_client, screen_jpeg):
    app.config["PROCTOR_SCREENSHOT_LIMIT"] = "2 per minute"
    session_id = _started(app, exam_id=_screen_exam(app))
    token = csrf_token(student_client, "/student/")
    assert [post_shot(student_client, token, session_id, screen_jpeg).status_code for _ in range(3)] == [201, 201, 429]
    assert len(_rows(app, session_id)) == 2


def test_full_disk_is_507_and_stores_nothing(app, student_client, screen_jpeg, monkeypatch):
    from proctor import uploads

    def full(rel, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    session_id = _started(app, exam_id=_screen_exam(app))
    token = csrf_token(student_client, "/student/")
    monkeypatch.setattr(uploads, "write_file", full)  # every upload route stores through proctor/uploads.py
    _refused(post_shot(student_client, token, session_id, screen_jpeg), 507, "storage is full")
    assert _rows(app) == []


def test_anonymous_and_students_are_kept_out(app, client, student_client, screen_jpeg):
    session_id = _started(app, exam_id=_screen_exam(app))
    token = csrf_token(student_client, "/student/")
    assert post_shot(student_client, token, session_id, screen_jpeg).status_code == 201
    [row] = _rows(app)
    anon_token = csrf_token(client, "/login")
    _refused(post_shot(client, anon_token, session_id, screen_jpeg), 401)
    for url in (f"/admin/sessions/{session_id}/screenshots/latest", f"/admin/recordings/{row.id}", f"/admin/sessions/{session_id}"):
        anon = client.get(url)
        assert anon.status_code == 302 and "/login" in anon.headers["Location"], url
        assert student_client.get(url).status_code == 403, url
    assert len(_rows(app)) == 1


def test_latest_is_404_without_screenshots_or_session(app, admin_client):
    make_user(app, "s2@example.edu", name="S2")
    session_id = _started(app, client_email="s2@example.edu", exam_id=_screen_exam(app))
    assert admin_client.get(f"/admin/sessions/{session_id}/screenshots/latest").status_code == 404
    assert admin_client.get(f"/admin/sessions/{session_id + 999}/screenshots/latest").status_code == 404
    page = admin_client.get(f"/admin/sessions/{session_id}").get_data(as_text=True)
    assert 'id="screenshots"' not in page and "tl-shot-link" not in page


def test_the_exam_page_carries_the_screen_settings_only_when_required(app, student_client):
    shared = _started(app, exam_id=_screen_exam(app))
    page = student_client.get(f"/student/sessions/{shared}").get_data(as_text=True)
    assert 'data-screen-share="required"' in page and 'id="screen-panel"' in page and "js/student/screen.js" in page
    assert f'data-screenshot-url="/api/exam/sessions/{shared}/screenshot"' in page
    assert 'data-screenshot-interval-s="15"' in page and 'data-screenshot-max-px="1280"' in page
    from proctor import exam_service as svc

    with app.app_context():
        svc.finish_session(shared, "COMPLETED", "submitted by the student")
    plain = _started(app, exam_id=_screen_exam(app, required=False))
    page = student_client.get(f"/student/sessions/{plain}").get_data(as_text=True)
    assert 'data-screen-share="off"' in page and 'id="screen-panel"' not in page and "js/student/screen.js" not in page


def test_deleting_the_exam_or_the_student_removes_screenshot_files(app, student_client, admin_client, screen_jpeg):
    """Recordings' files (screenshots, audio) go with their rows; they were left on disk before."""
    doomed = _started(app, exam_id=_screen_exam(app))
    token = csrf_token(student_client, "/student/")
    assert post_shot(student_client, token, doomed, screen_jpeg).status_code == 201
    [doomed_file] = _data_files(app)
    from proctor.extensions import db
    from proctor.models import Exam, ExamSession

    with app.app_context():
        exam_id, student_id = db.session.get(ExamSession, doomed).exam_id, db.session.get(ExamSession, doomed).student_id
        title = db.session.get(Exam, exam_id).title
    admin_token = csrf_token(admin_client, "/admin/")
    r = admin_client.post(f"/admin/exams/{exam_id}/delete", data={"csrf_token": admin_token, "confirm_title": title})
    assert r.status_code == 302
    assert not doomed_file.exists() and not doomed_file.parent.exists()  # the session's folder went with it
    assert _rows(app) == []

    kept = _started(app, exam_id=_screen_exam(app))
    assert post_shot(student_client, token, kept, screen_jpeg).status_code == 201
    [kept_file] = _data_files(app)
    with app.app_context():
        email = db.session.get(ExamSession, kept).student.email
    r = admin_client.post(f"/admin/students/{student_id}/delete", data={"csrf_token": admin_token, "confirm_email": email})
    assert r.status_code == 302
    assert not kept_file.exists() and _rows(app) == []
