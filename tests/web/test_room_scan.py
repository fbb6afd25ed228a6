"""The room scan before an exam that requires one, on SQLite and MariaDB: the upload's checks
(404/409/411/413/415/400/429/507), what is stored, re-recording, the step and the start, the
admin's stream (Range) and the session page.

The clips are real WebM/VP8 made by ffmpeg written to a pipe, so like a browser's MediaRecorder
output they carry no duration and no index; the server measures and remuxes them.
"""
from __future__ import annotations

import errno
import io
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import csrf_token, login, make_user
from tests.web.test_exam_flow import make_exam

URL = "/api/exam/{}/room-scan"


def _clip(folder: Path, seconds: float) -> bytes:
    if not shutil.which("ffmpeg"):
        pytest.fail("ffmpeg is needed to make the test clips (apt-get install ffmpeg)")
    out = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
                          f"testsrc=size=160x120:rate=5:duration={seconds}", "-c:v", "libvpx", "-b:v", "100k",
                          "-deadline", "realtime", "-cpu-used", "8",
                          "-f", "webm", "pipe:1"], check=True, capture_output=True, timeout=60).stdout
    assert out.startswith(b"\x1a\x45\xdf\xa3")
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("room-scan-clips")
    return {"ok": _clip(d, 12), "other": _clip(d, 11), "short": _clip(d, 4), "long": _clip(d, 30)}


@pytest.fixture(autouse=True)
def generous_limit(app):
    app.config["PROCTOR_ROOM_SCAN_LIMIT"] = "1000 per minute"  # the rate limit has its own test


def room_scan_exam(app, require=True, published=True, title="Scan exam") -> int:
    from proctor.extensions import db
    from proctor.models import Exam

    exam_id = make_exam(app, published=published, title=title)
    with app.app_context():
        db.session.get(Exam, exam_id).require_room_scan = require
        db.session.commit()
    return exam_id


def send(client, exam_id, data: bytes, duration_ms="12000", mime="video/webm", token=None, **kw):
    token = token or csrf_token(client, "/student/")
    return client.post(URL.format(exam_id), headers={"X-CSRFToken": token}, content_type="multipart/form-data",
                       data={"duration_ms": duration_ms, "clip": (io.BytesIO(data), "room-scan.webm", mime)}, **kw)


def scans(app, **where):
    from proctor.extensions import db
    from proctor.models import RoomScan

    with app.app_context():
        rows = db.session.scalars(select(RoomScan).filter_by(**where).order_by(RoomScan.id)).all()
        return [(r.id, r.student_id, r.exam_id, r.session_id, r.path, r.bytes, r.duration_s) for r in rows]


def data_file(app, rel: str) -> Path:
    return Path(app.config["PROCTOR_DATA_DIR"]) / rel


def user_id(app, email="student@example.edu") -> int:
    from proctor.accounts import find_by_email

    with app.app_context():
        return find_by_email(email).id


def steps_done(app, client, exam_id, email="student@example.edu") -> None:
    """Rules, system check, face and identity check done (each is tested in test_exam_flow / identity tests)."""
    from proctor.accounts import find_by_email
    from proctor.extensions import db
    from proctor.models import Profile, utcnow

    with app.app_context():
        user = find_by_email(email)
        user.rules_accepted_version = app.config["PROCTOR_RULES_VERSION"]
        user.rules_accepted_at = utcnow()
        profile = Profile(student_id=user.id, image_path=f"faces/{user.id}.jpg", embedding=b"\x01" * 512, quality="{}")
        db.session.add(profile)
        db.session.commit()
        uid, stamp = user.id, f"{profile.id}:{profile.image_path}"
    with client.session_transaction() as s:
        s["system_check"] = {"ok": True, "at": time.time(), "camera": True, "microphone": True, "browser": True,
                             "upload": True, "upload_kbps": 5000}
        s[f"identity_confirmed_{exam_id}"] = {"student_id": uid, "at": time.time(), "profile": stamp, "distance": 0.3,
                                              "liveness": "blink"}


def ffprobe_duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip())


# --- the upload --------------------------------------------------------------------------------

def test_upload_stores_a_measured_seekable_clip_and_a_row(app, student_client, clips):
    exam_id = room_scan_exam(app)
    resp = send(student_client, exam_id, clips["ok"], duration_ms="12340")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    # The next step is the first one still missing (this student has done none of the others).
    assert body["ok"] is True and body["measured"] is True and body["next"].endswith(f"/student/rules?exam={exam_id}")
    [(scan_id, sid, eid, session_id, path, size, duration)] = scans(app)
    assert (sid, eid, session_id) == (user_id(app), exam_id, None) and scan_id == body["id"]
    assert path.startswith(f"room_scans/{sid}/") and path.endswith(".webm")
    stored = data_file(app, path)
    assert stored.is_file() and stored.stat().st_size == size == body["bytes"]
    assert stored.read_bytes().startswith(b"\x1a\x45\xdf\xa3")
    # Measured by the server (12 s), not the page's 12.34 s; the stored file now states its length.
    assert 11.5 <= duration <= 12.5 and duration == body["duration_s"]
    assert 11.5 <= ffprobe_duration(stored) <= 12.5


def test_exam_must_be_open_and_ask_for_a_scan(app, student_client, clips):
    plain = room_scan_exam(app, require=False, title="No scan")
    hidden = room_scan_exam(app, published=False, title="Hidden")
    resp = send(student_client, plain, clips["ok"])
    assert resp.status_code == 409 and resp.get_json() == {"error": "this exam does not ask for a room scan", "code": 409}
    for exam_id in (hidden, 999_999):
        resp = send(student_client, exam_id, clips["ok"])
        assert resp.status_code == 404 and resp.get_json()["code"] == 404
    assert scans(app) == []


def test_length_is_checked_as_claimed_and_as_measured(app, student_client, clips):
    exam_id = room_scan_exam(app)
    token = csrf_token(student_client, "/student/")
    for claimed, words in (("9999", "too short"), ("25001", "too long"), ("", "milliseconds"), ("12.5", "milliseconds"),
                           ("-12000", "milliseconds"), ("1" * 30, "milliseconds")):
        resp = send(student_client, exam_id, clips["ok"], duration_ms=claimed, token=token)
        assert resp.status_code == 400 and words in resp.get_json()["error"], (claimed, resp.get_json())
    # The page cannot claim its way past the real length.
    for clip, words in (("short", "4.0 s long"), ("long", "30.0 s long")):
        resp = send(student_client, exam_id, clips[clip], duration_ms="15000", token=token)
        assert resp.status_code == 400 and words in resp.get_json()["error"], resp.get_json()
    assert scans(app) == []


def test_type_and_magic_bytes_are_checked(app, student_client, clips):
    exam_id = room_scan_exam(app)
    token = csrf_token(student_client, "/student/")
    resp = send(student_client, exam_id, clips["ok"], mime="video/mp4", token=token)
    assert resp.status_code == 415 and "video/mp4" in resp.get_json()["error"]
    resp = send(student_client, exam_id, b"RIFF....AVI LIST" + bytes(2000), token=token)
    assert resp.status_code == 415 and resp.get_json()["error"] == "the clip is not a video/webm file"
    resp = send(student_client, exam_id, b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 40, token=token)  # WebM magic, no video
    assert resp.status_code == 415 and resp.get_json()["error"] == "the clip is not a playable WebM video"
    resp = client_post_without_clip(student_client, exam_id, token)
    assert resp.status_code == 400 and "field 'clip'" in resp.get_json()["error"]
    assert scans(app) == []
    assert not (Path(app.config["PROCTOR_DATA_DIR"]) / "room_scans").exists()


def client_post_without_clip(client, exam_id, token):
    return client.post(URL.format(exam_id), headers={"X-CSRFToken": token}, content_type="multipart/form-data",
                       data={"duration_ms": "12000"})


def test_size_is_limited_and_declared(app, student_client, clips):
    exam_id = room_scan_exam(app)
    token = csrf_token(student_client, "/student/")
    limit = app.config["PROCTOR_ROOM_SCAN_MAX_BYTES"]
    assert limit == 6 * 1024 * 1024  # the declared default
    app.config["PROCTOR_ROOM_SCAN_MAX_BYTES"] = len(clips["ok"]) - 1
    resp = send(student_client, exam_id, clips["ok"], token=token)  # within the form's slack: read, then refused
    assert resp.status_code == 413 and resp.get_json()["error"] == f"the room scan is limited to {len(clips['ok']) - 1} bytes"
    app.config["PROCTOR_ROOM_SCAN_MAX_BYTES"] = limit
    resp = send(student_client, exam_id, b"\x1a\x45\xdf\xa3" + bytes(limit + 20_000), token=token)  # refused from its length
    assert resp.status_code == 413 and resp.get_json()["code"] == 413
    # No Content-Length (a chunked body): refused before anything is read.
    resp = student_client.post(URL.format(exam_id), headers={"X-CSRFToken": token, "Transfer-Encoding": "chunked",
                                                             "Content-Type": "multipart/form-data; boundary=x"},
                               input_stream=io.BytesIO(b"--x--\r\n"))
    assert resp.status_code == 411 and resp.get_json() == {"error": "Content-Length is required", "code": 411}
    assert scans(app) == []


def test_recording_again_replaces_the_unattached_scan(app, student_client, clips):
    exam_id = room_scan_exam(app)
    other_exam = room_scan_exam(app, title="Second scan exam")
    token = csrf_token(student_client, "/student/")
    assert send(student_client, exam_id, clips["ok"], token=token).status_code == 201
    assert send(student_client, other_exam, clips["ok"], token=token).status_code == 201
    [first, kept] = scans(app)
    assert send(student_client, exam_id, clips["other"], duration_ms="11000", token=token).status_code == 201
    rows = scans(app)
    assert len(rows) == 2 and kept in rows and first not in rows
    new = [r for r in rows if r[2] == exam_id][0]
    assert not data_file(app, first[4]).exists()  # the old file is gone
    assert data_file(app, new[4]).is_file() and data_file(app, kept[4]).is_file()  # the other exam's scan stays
    assert 10.5 <= new[6] <= 11.5


def test_full_disk_is_507_and_stores_nothing(app, student_client, clips, monkeypatch):
    from proctor import uploads

    exam_id = room_scan_exam(app)
    token = csrf_token(student_client, "/student/")

    def full(rel, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(uploads, "write_file", full)  # every upload route stores through proctor/uploads.py
    resp = send(student_client, exam_id, clips["ok"], token=token)
    assert resp.status_code == 507
    assert resp.get_json() == {"error": "the server's storage is full: the room scan was not saved", "code": 507}
    assert scans(app) == []
    monkeypatch.undo()
    assert send(student_client, exam_id, clips["ok"], token=token).status_code == 201
    assert len(scans(app)) == 1


def test_without_ffmpeg_the_clip_is_kept_as_sent(app, student_client, clips, monkeypatch):
    from proctor import room_scans

    monkeypatch.setattr(room_scans, "tools_available", lambda: False)
    exam_id = room_scan_exam(app)
    resp = send(student_client, exam_id, clips["ok"], duration_ms="12500")
    assert resp.status_code == 201 and resp.get_json()["measured"] is False
    [(_, _, _, _, path, size, duration)] = scans(app)
    assert data_file(app, path).read_bytes() == clips["ok"] and size == len(clips["ok"]) and duration == 12.5


def test_uploads_are_rate_limited_per_account(app, student_client, clips):
    app.config["PROCTOR_ROOM_SCAN_LIMIT"] = "3 per minute"
    exam_id = room_scan_exam(app, require=False)
    token = csrf_token(student_client, "/student/")
    codes = [send(student_client, exam_id, b"x", token=token).status_code for _ in range(4)]
    assert codes == [409, 409, 409, 429]


# --- the step, the start, who sees it ----------------------------------------------------------

def test_start_needs_the_scan_and_attaches_it(app, student_client, clips):
    from proctor.extensions import db
    from proctor.models import ExamSession

    exam_id = room_scan_exam(app)
    plain = room_scan_exam(app, require=False, title="No scan")
    steps_done(app, student_client, exam_id)
    token = csrf_token(student_client, "/student/")
    scan_page = f"/student/exams/{exam_id}/room-scan"
    for url in (f"/student/exams/{exam_id}/", f"/student/exams/{exam_id}/ready"):
        r = student_client.get(url)
        assert r.status_code == 302 and r.headers["Location"].endswith(scan_page), url
    r = student_client.post(f"/student/exams/{exam_id}/start", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"].endswith(scan_page)
    with app.app_context():
        assert db.session.scalars(select(ExamSession)).all() == []
    page = student_client.get(scan_page)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'aria-current="step"' in html and "Room scan" in html
    assert 'data-min-s="10"' in html and 'data-max-s="20"' in html and 'data-bitrate-bps="400000"' in html
    assert "under the desk" in html and "wall behind your screen" in html
    # An exam without a scan has no such step or page.
    assert student_client.get(f"/student/exams/{plain}/room-scan").status_code == 302
    resp = send(student_client, exam_id, clips["ok"], token=token)
    assert resp.status_code == 201 and resp.get_json()["next"].endswith(f"/student/exams/{exam_id}/ready")
    ready = student_client.get(f"/student/exams/{exam_id}/ready")
    assert ready.status_code == 200 and "Room scan" in ready.get_data(as_text=True)  # in the step list
    again = student_client.get(scan_page).get_data(as_text=True)
    assert 'id="scan-existing"' in again  # recording again is offered
    r = student_client.post(f"/student/exams/{exam_id}/start", data={"csrf_token": token})
    assert r.status_code == 302 and "/student/sessions/" in r.headers["Location"]
    session_id = int(r.headers["Location"].rsplit("/", 1)[1])
    [(_, _, _, attached, path, _, _)] = scans(app)
    assert attached == session_id and data_file(app, path).is_file()
    # During the exam nothing new is recorded.
    resp = send(student_client, exam_id, clips["ok"], token=token)
    assert resp.status_code == 409 and "in progress" in resp.get_json()["error"]


def test_another_student_neither_counts_nor_sees_the_scan(app, student_client, clips):
    exam_id = room_scan_exam(app)
    assert send(student_client, exam_id, clips["ok"]).status_code == 201
    make_user(app, "other@example.edu", name="Other Student")
    other = app.test_client()
    assert login(other, "other@example.edu").status_code == 302
    steps_done(app, other, exam_id, email="other@example.edu")
    r = other.get(f"/student/exams/{exam_id}/")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/student/exams/{exam_id}/room-scan")
    token = csrf_token(other, "/student/")
    r = other.post(f"/student/exams/{exam_id}/start", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"].endswith("/room-scan")
    # Students never reach the admin stream, their own scan's or another's.
    session_id = _session_with_scan(app, student_client, exam_id, None)
    for c in (student_client, other):
        assert c.get(f"/admin/sessions/{session_id}/room-scan").status_code == 403
        assert c.get(f"/admin/sessions/{session_id}").status_code == 403


# --- review ---------------------------------------------------------------------------------------

def _session_with_scan(app, client, exam_id, clip) -> int:
    from proctor import exam_service as svc
    from proctor.extensions import db
    from proctor.room_scans import attach_latest

    if clip is not None:
        assert send(client, exam_id, clip).status_code == 201
    with app.app_context():
        sess = svc.start_session(user_id(app), exam_id)
        assert attach_latest(user_id(app), exam_id, sess.id) is not None
        db.session.commit()
        return sess.id


def test_admin_streams_the_scan_with_range(app, student_client, admin_client, clips):
    from proctor import exam_service as svc

    exam_id = room_scan_exam(app)
    session_id = _session_with_scan(app, student_client, exam_id, clips["ok"])
    [(_, _, _, _, path, size, _)] = scans(app)
    whole = admin_client.get(f"/admin/sessions/{session_id}/room-scan")
    assert whole.status_code == 200 and whole.mimetype == "video/webm"
    assert whole.data == data_file(app, path).read_bytes() and len(whole.data) == size
    assert "no-store" in whole.headers["Cache-Control"]
    part = admin_client.get(f"/admin/sessions/{session_id}/room-scan", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert part.data == whole.data[100:200]
    assert admin_client.get("/admin/sessions/999999/room-scan").status_code == 404
    plain = room_scan_exam(app, require=False, title="No scan")
    with app.app_context():
        svc.finish_session(session_id, "COMPLETED", "test")
        no_scan = svc.start_session(user_id(app), plain).id
    assert admin_client.get(f"/admin/sessions/{no_scan}/room-scan").status_code == 404


def test_session_page_shows_the_scan_first(app, student_client, admin_client, clips):
    from proctor import exam_service as svc

    exam_id = room_scan_exam(app)
    session_id = _session_with_scan(app, student_client, exam_id, clips["ok"])
    html = admin_client.get(f"/admin/sessions/{session_id}").get_data(as_text=True)
    assert 'id="room-scan-video"' in html and f'src="/admin/sessions/{session_id}/room-scan"' in html
    first = html.index('id="room-scan"')
    assert first < html.index('<h2 class="h6">Score</h2>') < html.index('id="tl-h"') < html.index('id="v-h"')
    facts = html[html.index('id="room-scan-facts"'):][:400]
    assert "12.0 s" in facts and "recorded" in facts and "datetime=" in facts
    # Required but missing; not required.
    missing_exam = room_scan_exam(app, title="Scan never recorded")
    plain = room_scan_exam(app, require=False, title="No scan")
    with app.app_context():
        svc.finish_session(session_id, "COMPLETED", "test")
        missing = svc.start_session(user_id(app), missing_exam).id
        svc.finish_session(missing, "COMPLETED", "test")
        not_required = svc.start_session(user_id(app), plain).id
    html = admin_client.get(f"/admin/sessions/{missing}").get_data(as_text=True)
    assert "Room scan required but missing." in html and "room-scan-video" not in html
    assert html.index('id="room-scan"') < html.index('id="v-h"')
    html = admin_client.get(f"/admin/sessions/{not_required}").get_data(as_text=True)
    assert "No room scan (the exam did not require one)." in html


def test_deleting_the_exam_or_the_student_removes_the_files(app, student_client, admin_client, clips):
    exam_id = room_scan_exam(app, title="Doomed exam")
    kept_exam = room_scan_exam(app, title="Kept exam")
    assert send(student_client, kept_exam, clips["other"]).status_code == 201  # an unattached one
    _session_with_scan(app, student_client, exam_id, clips["ok"])  # an attached one (the session is in progress)
    paths = {r[2]: data_file(app, r[4]) for r in scans(app)}
    assert all(p.is_file() for p in paths.values())
    token = csrf_token(admin_client, "/admin/")
    r = admin_client.post(f"/admin/exams/{exam_id}/delete", data={"csrf_token": token, "confirm_title": "Doomed exam"})
    assert r.status_code == 302
    assert not paths[exam_id].exists() and paths[kept_exam].is_file()
    assert [row[2] for row in scans(app)] == [kept_exam]
    r = admin_client.post(f"/admin/students/{user_id(app)}/delete",
                          data={"csrf_token": token, "confirm_email": "student@example.edu"})
    assert r.status_code == 302
    assert scans(app) == [] and not paths[kept_exam].exists()
    assert not paths[kept_exam].parent.exists()  # the student's folder went with its last file
