"""A violation's clip through the console: stored as JPEG frames, encoded to WebM on the admin's first
open and cached, admin-only, clear answers for damaged or unplayable clips, old WebM clips still served,
and every file removed when the student or the exam is deleted. Real photos, real encoders."""
from __future__ import annotations

import logging
import threading
from pathlib import Path

import cv2
import pytest

from tests.conftest import csrf_token, login
from tests.live import fit, live_frame, load_photo, wait_for
from tests.live.test_admin_actions import _violation, admin, student  # noqa: F401 - fixtures
from tests.live.test_frame_api import Student, live_env, stop_live_runtime  # noqa: F401 - autouse fixtures

N_FRAMES = 12


def preroll(n: int = N_FRAMES, t0: float = 500.0) -> list[tuple[float, bytes]]:
    """n seconds/2 of a webcam stream: the student, then the empty room, at 2 frames a second."""
    face, room = fit(load_photo("a_1_webcam_woman_T1.jpg")), fit(load_photo("f_5_living_room_empty.jpg"))
    out = []
    for i in range(n):
        img = live_frame(face if i < n // 2 else room, i)
        out.append((t0 + i * 0.5, cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()))
    return out


def stored_clip(app, student, frames=None, snapshot=True) -> tuple[int, Path]:
    """A violation with its snapshot and its pre-roll stored as the runtime stores them; (id, frames file)."""
    from proctor.live.evidence import EvidenceStore

    data_dir = Path(app.config["PROCTOR_DATA_DIR"])
    store = EvidenceStore(data_dir)
    stem = store.stem("NO_FACE", 503.0, 7)
    frames = preroll() if frames is None else frames
    snap = store.save_snapshot(student.session_id, stem, frames[-1][1]) if snapshot else None
    rel = store.save_clip_frames(student.session_id, stem, frames)
    return _violation(app, student, evidence_path=snap, clip_path=rel), (data_dir / rel).resolve()


def count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    return n, size


def test_the_first_open_encodes_a_webm_and_the_next_reuses_it(app, admin, student):
    vid, frames_file = stored_clip(app, student)
    webm = frames_file.with_suffix(".webm")
    assert frames_file.is_file() and not webm.exists()  # nothing encoded when the violation was stored

    first = admin.get(f"/admin/evidence/{vid}/clip")
    assert first.status_code == 200 and first.mimetype == "video/webm"
    assert first.headers["Cache-Control"] == "private, no-store"
    assert first.data == webm.read_bytes() and first.data[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a WebM
    assert count_frames(webm) == (N_FRAMES, (640, 480))
    stamp = webm.stat().st_mtime_ns

    second = admin.get(f"/admin/evidence/{vid}/clip")
    assert second.status_code == 200 and second.data == first.data and webm.stat().st_mtime_ns == stamp
    part = admin.get(f"/admin/evidence/{vid}/clip", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == first.data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(first.data)}"
    assert webm.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in frames_file.parent.iterdir()) == sorted(
        [frames_file.name, webm.name, frames_file.with_suffix(".jpg").name])  # no temporary file left


def test_the_clip_is_for_admins_only_and_nothing_is_encoded_for_others(app, admin, student):
    vid, frames_file = stored_clip(app, student)
    assert student.client.get(f"/admin/evidence/{vid}/clip").status_code == 403
    anon = app.test_client().get(f"/admin/evidence/{vid}/clip")
    assert anon.status_code == 302 and "/login" in anon.headers["Location"]
    assert not frames_file.with_suffix(".webm").exists()


def test_two_first_opens_at_once_encode_once(app, admin, student, caplog):
    from proctor import evidence_files

    caplog.set_level(logging.INFO, logger="proctor.evidence_files")
    vid, frames_file = stored_clip(app, student)
    key = str(frames_file.with_suffix(".webm"))
    clients = []
    for _ in range(2):
        c = app.test_client()
        assert login(c, "admin@example.edu").status_code == 302
        clients.append(c)
    answers: list = [None, None]

    def open_clip(i):
        answers[i] = clients[i].get(f"/admin/evidence/{vid}/clip")

    threads = [threading.Thread(target=open_clip, args=(i,)) for i in range(2)]
    with evidence_files._one_encode_at_a_time(key):  # both requests arrive before any encode starts
        for t in threads:
            t.start()
        wait_for(lambda: evidence_files._locks[key][1] == 3, 60, "the two requests never reached the clip's lock")
    for t in threads:
        t.join(120)
    assert [a.status_code for a in answers] == [200, 200] and answers[0].data == answers[1].data
    encodes = [r for r in caplog.records if "clip encoded on first open" in r.getMessage()]
    assert len(encodes) == 1, [r.getMessage() for r in encodes]
    assert key not in evidence_files._locks  # nothing kept once nobody waits


def test_one_encode_at_a_time_and_a_first_open_that_gets_no_turn_is_a_503(app, admin, student, monkeypatch):
    from proctor import evidence_files

    vid, frames_file = stored_clip(app, student)
    monkeypatch.setattr(evidence_files, "CLIP_QUEUE_WAIT_S", 0.2)
    assert evidence_files._encoding.acquire(timeout=5)  # another clip is encoding
    try:
        resp = admin.get(f"/admin/evidence/{vid}/clip")
    finally:
        evidence_files._encoding.release()
    assert resp.status_code == 503 and "busy preparing other clips" in resp.get_data(as_text=True)
    assert resp.headers["Retry-After"] == "30" and not frames_file.with_suffix(".webm").exists()
    assert admin.get(f"/admin/evidence/{vid}/clip").status_code == 200


def test_damaged_or_missing_frames_are_a_clear_404(app, admin, student):
    vid, frames_file = stored_clip(app, student)
    frames_file.write_bytes(frames_file.read_bytes()[:-500])  # cut short (a disk fault; writes are whole)
    resp = admin.get(f"/admin/evidence/{vid}/clip")
    assert resp.status_code == 404 and resp.mimetype == "text/plain"
    assert "stored frames are damaged" in resp.get_data(as_text=True)
    assert not frames_file.with_suffix(".webm").exists()

    vid2, frames2 = stored_clip(app, student)
    frames2.write_bytes(b"\xff\xd8 not a frames file at all")
    assert "damaged" in admin.get(f"/admin/evidence/{vid2}/clip").get_data(as_text=True)

    vid3, frames3 = stored_clip(app, student)
    frames3.unlink()
    assert admin.get(f"/admin/evidence/{vid3}/clip").status_code == 404

    # Frames that are no JPEG at all: nothing to encode.
    vid4, _ = stored_clip(app, student, frames=[(1.0, b"\xff\xd8 broken"), (1.5, b"\xff\xd8 broken too")])
    resp = admin.get(f"/admin/evidence/{vid4}/clip")
    assert resp.status_code == 404 and "no decodable frames" in resp.get_data(as_text=True)


def test_without_an_encoder_the_answer_is_503_with_a_message_and_then_it_works(app, admin, student, monkeypatch):
    from proctor.live import evidence

    vid, frames_file = stored_clip(app, student)
    monkeypatch.setattr(evidence, "CLIP_WRITERS", ())  # a server whose OpenCV and ffmpeg lack VP8
    resp = admin.get(f"/admin/evidence/{vid}/clip")
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "30" and resp.mimetype == "text/plain"
    assert "no VP8 (WebM) encoder" in resp.get_data(as_text=True)
    assert sorted(p.suffix for p in frames_file.parent.iterdir()) == [".frames", ".jpg"]
    assert admin.get(f"/admin/evidence/{vid}/snapshot").status_code == 200
    monkeypatch.undo()
    assert admin.get(f"/admin/evidence/{vid}/clip").status_code == 200


def test_an_old_webm_clip_is_served_as_it_is(app, admin, student):
    from proctor.live.evidence import write_clip

    data_dir = Path(app.config["PROCTOR_DATA_DIR"])
    rel = f"evidence/{student.session_id}/1000_no_face_3_abcdef.webm"
    write_clip(data_dir / rel, preroll(6))
    stamp = (data_dir / rel).stat().st_mtime_ns
    vid = _violation(app, student, clip_path=rel)
    resp = admin.get(f"/admin/evidence/{vid}/clip")
    assert resp.status_code == 200 and resp.mimetype == "video/webm" and resp.data == (data_dir / rel).read_bytes()
    assert (data_dir / rel).stat().st_mtime_ns == stamp and count_frames(data_dir / rel)[0] == 6


def _evidence_of(app, session_id) -> list[str]:
    folder = Path(app.config["PROCTOR_DATA_DIR"]) / "evidence" / str(session_id)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_deleting_a_student_removes_their_snapshots_frames_and_encodes(app, admin, student):
    from proctor.live.evidence import write_clip

    vid, frames_file = stored_clip(app, student)
    assert admin.get(f"/admin/evidence/{vid}/clip").status_code == 200  # the cached encode exists too
    old = f"evidence/{student.session_id}/1_old_clip.webm"
    write_clip(Path(app.config["PROCTOR_DATA_DIR"]) / old, preroll(4))
    _violation(app, student, clip_path=old)
    other = Student(app, "bystander@example.edu", name="Bystander")
    stored_clip(app, other)
    kept = _evidence_of(app, other.session_id)
    assert len(_evidence_of(app, student.session_id)) == 4 and len(kept) == 2

    url = f"/admin/students/{student.id}/delete"
    resp = admin.post(url, data={"csrf_token": csrf_token(admin, url), "confirm_email": student.email})
    assert resp.status_code == 302
    assert not (Path(app.config["PROCTOR_DATA_DIR"]) / "evidence" / str(student.session_id)).exists()
    assert _evidence_of(app, other.session_id) == kept  # another student's evidence stays


def test_deleting_an_exam_removes_its_sessions_evidence(app, admin, student):
    from proctor.extensions import db
    from proctor.models import ExamSession

    vid, frames_file = stored_clip(app, student)
    assert admin.get(f"/admin/evidence/{vid}/clip").status_code == 200
    with app.app_context():
        exam = db.session.get(ExamSession, student.session_id).exam
        exam_id, title = exam.id, exam.title
    url = f"/admin/exams/{exam_id}/delete"
    resp = admin.post(url, data={"csrf_token": csrf_token(admin, url), "confirm_title": title})
    assert resp.status_code == 302
    assert not frames_file.exists() and not frames_file.with_suffix(".webm").exists()
    assert _evidence_of(app, student.session_id) == []


@pytest.mark.parametrize("stored", ["../../outside.frames", "/etc/passwd.frames", "evidence/../../../x.frames"])
def test_a_clip_path_outside_the_data_folder_is_refused(app, admin, student, stored):
    vid = _violation(app, student, clip_path=stored)
    assert admin.get(f"/admin/evidence/{vid}/clip").status_code == 404


def test_a_clip_still_recording_its_post_roll_is_a_clear_503_then_plays(app, admin, student):
    """The violation is stored at once with its clip's path; the frames file comes when the post-roll is
    over. A reviewer opening it meanwhile is told so (503, a short Retry-After), not 'gone'."""
    import time

    from proctor.live.evidence import ClipRecorder, EvidenceStore, PrerollBuffer

    data_dir = Path(app.config["PROCTOR_DATA_DIR"])
    store, buf = EvidenceStore(data_dir), PrerollBuffer(seconds=20.0)
    now = time.time()
    frames = preroll(t0=now - 5.0)  # 6 s of frames, around the violation
    for t, jpeg in frames:
        buf.add(7, t, jpeg)
    recorder = ClipRecorder(store, buf, preroll_s=8.0, postroll_s=3.0)
    rel = recorder.begin(7, student.session_id, store.stem("NO_FACE", now, 9), began_t=now - 3.0, fired_t=now)
    vid = _violation(app, student, clip_path=rel)
    early = admin.get(f"/admin/evidence/{vid}/clip")
    assert early.status_code == 503 and early.headers["Retry-After"] == "5" and early.mimetype == "text/plain"
    assert "still being recorded" in early.get_data(as_text=True)
    assert early.headers["Cache-Control"] == "no-store"
    assert recorder.finish(7) == [rel]  # the post-roll is over (or the session ended): what there is
    ready = admin.get(f"/admin/evidence/{vid}/clip")
    assert ready.status_code == 200 and ready.mimetype == "video/webm"
    assert count_frames(data_dir / Path(rel).with_suffix(".webm"))[0] == N_FRAMES


def test_a_recording_the_server_never_finished_is_a_clear_404(app, admin, student):
    from proctor.live.evidence import ClipRecorder, EvidenceStore, PrerollBuffer

    data_dir = Path(app.config["PROCTOR_DATA_DIR"])
    store, buf = EvidenceStore(data_dir), PrerollBuffer(seconds=10.0)
    for t, jpeg in preroll(t0=995.0):
        buf.add(7, t, jpeg)
    recorder = ClipRecorder(store, buf, preroll_s=8.0, postroll_s=3.0)
    rel = recorder.begin(7, student.session_id, store.stem("NO_FACE", 1000.0, 9), began_t=990.0, fired_t=1000.0)
    vid = _violation(app, student, clip_path=rel)  # its post-roll ended in 1970: the server stopped while recording
    resp = admin.get(f"/admin/evidence/{vid}/clip")
    assert resp.status_code == 404 and "was not completed: the server stopped" in resp.get_data(as_text=True)
    assert [p.suffix for p in (data_dir / rel).parent.iterdir()] == [".recording"]
    url = f"/admin/students/{student.id}/delete"  # deleting the student removes the marker with the rest
    resp = admin.post(url, data={"csrf_token": csrf_token(admin, url), "confirm_email": student.email})
    assert resp.status_code == 302 and not (data_dir / rel).parent.exists()
