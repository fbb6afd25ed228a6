"""The live runtime end to end on SQLite and MariaDB: real worker processes on real photos,
decisions on frame time, violations with evidence JPEG + pre-roll frames (a WebM on the admin's first
open), browser events, admin actions. The tests that drive real workers over whole scenes run on the
first database only (one_database): what they store is ordinary, and the browser-event tests, which
store, restore and terminate through the same code, run on every database."""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import login, make_user
from tests.live import fit, live_frame, load_photo, wait_for

READY_TIMEOUT_S = 240
RESULT_TIMEOUT_S = 120


def _enrol(app, student_id: int, photo: str) -> None:
    """The student's registered face, from a real photo (as the registration page stores it)."""
    from config_vision import load_vision_config
    from face_identity import FaceIdentity, embedding_to_bytes
    from proctor.extensions import db
    from proctor.models import Profile

    enrolment = FaceIdentity(load_vision_config(env={})).enrol(load_photo(photo))
    assert enrolment.ok, enrolment.error
    with app.app_context():
        db.session.add(Profile(student_id=student_id, embedding=embedding_to_bytes(enrolment.embedding)))
        db.session.commit()


def _seed_session(app, *, auto_terminate=False, exam_disabled="", email="live@example.edu", thresholds="{}"):
    from proctor import exam_service
    from proctor.extensions import db
    from proctor.models import Exam, Question

    student_id = make_user(app, email, name="Live Student")
    with app.app_context():
        exam = Exam(title="Live exam", description="", duration_minutes=30, pass_mark_percent=50, is_published=True,
                    auto_terminate=auto_terminate, disabled_rules=exam_disabled, thresholds=thresholds)
        db.session.add(exam)
        db.session.flush()
        q = Question(exam_id=exam.id, text="2+2?", correct_index=1, position=0, points=1)
        q.options = ["3", "4"]
        db.session.add(q)
        db.session.commit()
        session = exam_service.start_session(student_id, exam.id)
        return student_id, session.id, exam.id


@pytest.fixture
def runtime_factory(app):
    from proctor.live import get_runtime

    started = []

    def make(enabled=True, workers=1):
        rt = get_runtime(app)
        rt.enabled = enabled
        rt.worker_count = workers
        events = []
        rt.events.subscribe(lambda name, payload: events.append((name, payload)))
        rt.start()
        started.append(rt)
        if enabled:
            wait_for(lambda: all(w["ready"] for w in rt.pipeline_status()["workers"]["workers"]), READY_TIMEOUT_S,
                     "live workers never became ready")
        return rt, events

    yield make
    for rt in started:
        rt.stop()


def _feed(rt, student_id, session_id, image, t):
    """Submit one frame at frame time t and wait until the runtime has processed it."""
    receipt = rt.submit_frame(student_id, session_id, image, client_ts_ms=int(t * 1000), server_ts=t)
    wait_for(lambda: rt.status(student_id).get("frames", {}).get("processed", 0) >= receipt.seq,
             RESULT_TIMEOUT_S, f"frame {receipt.seq} at t={t} was never processed: {rt.pipeline_status()}")
    return receipt


def _violations(app, session_id):
    from sqlalchemy import select

    from proctor.extensions import db
    from proctor.models import Violation

    with app.app_context():
        rows = db.session.scalars(select(Violation).where(Violation.session_id == session_id).order_by(Violation.id)).all()
        db.session.expunge_all()
        return rows


@pytest.mark.one_database  # real workers on a scene: the runtime and its evidence are the subject
def test_no_face_violation_with_evidence_jpeg_and_clip(app, runtime_factory):
    student_id, session_id, _ = _seed_session(app)
    rt, events = runtime_factory()
    face = fit(load_photo("a_1_webcam_woman_T1.jpg"))
    room = fit(load_photo("f_5_living_room_empty.jpg"))
    t0 = 10_000.0
    for i in range(5):  # 2 s of the student at her desk
        _feed(rt, student_id, session_id, live_frame(face, i), t0 + i * 0.5)
    st = rt.status(student_id)
    assert st["face"]["detected"] and st["faces"] == 1 and st["warnings"] == 0
    assert ("student_joined", {"student_id": student_id, "session_id": session_id, "name": "Live Student",
                               "exam_id": st["exam_id"], "exam_title": "Live exam"}) in events
    # Then the empty room for 4.5 s of frame time (no sleeping: the frames carry their time).
    for i in range(1, 10):
        _feed(rt, student_id, session_id, live_frame(room, i), t0 + 2.0 + i * 0.5)
    rows = wait_for(lambda: _violations(app, session_id), RESULT_TIMEOUT_S, "no violation stored")
    assert [v.type for v in rows] == ["NO_FACE"]
    v = rows[0]
    details = json.loads(v.details)
    assert details["state"] == "started" and details["warning_count"] == 1
    # The session's suspicion when it was stored, for the result page's timeline (0 < score <= 100).
    assert isinstance(details["suspicion"], float) and 0 < details["suspicion"] <= 100
    assert t0 + 2.5 + 3.0 <= details["frame_t"] <= t0 + 6.5  # after TIME_NO_FACE_S of empty frames
    data_dir = Path(app.config["PROCTOR_DATA_DIR"])
    assert v.evidence_path.startswith(f"evidence/{session_id}/") and not Path(v.evidence_path).is_absolute()
    snap = cv2.imread(str(data_dir / v.evidence_path))
    assert snap is not None and snap.shape == (480, 640, 3)

    names = [n for n, _ in events]
    assert "student_violation" in names and "student_warning" in names
    payload = next(p for n, p in events if n == "student_violation")
    assert payload["type"] == "NO_FACE" and payload["violation_id"] == v.id and payload["count"] == 1
    st = rt.status(student_id)
    assert st["warnings"] == 1 and "NO_FACE" in st["active_rules"] and st["suspicion"]["score"] > 0
    assert st["frames"]["received"] == 14 and st["frames"]["processed"] == 14
    # The face stage runs on all 14 frames, the detector by scene (proctor/live/cadence.py): the first
    # frame, the frame after the room replaced the student (t0 + 3.0: face lost, lower-half motion) and
    # 3 s later in the steady empty room (t0 + 6.0). One frame in two would have been 7.
    assert st["frames"]["detector_runs"] == 3
    assert st["frames"]["detector_cadence"]["runs"] == {"first": 1, "motion": 1, "steady": 1}
    assert st["frames"]["identity_checks"] == 0  # nobody enrolled: no identity checks
    pipe = rt.pipeline_status()
    assert pipe["counters"]["violations"] == 1 and pipe["latency_ms"]["samples"] == 14
    assert rt.latest_view(student_id).kind == "processed"
    assert rt.active_students()[0]["student_id"] == student_id

    # The student comes back: NO_FACE ends after TIME_CLEAR_S, no new violation.
    for i in range(1, 5):
        _feed(rt, student_id, session_id, live_frame(face, i), t0 + 6.5 + i * 0.5)
    assert "NO_FACE" not in rt.status(student_id)["active_rules"]
    assert len(_violations(app, session_id)) == 1

    # The clip is stored as the page's JPEG frames (nothing encoded), once its post-roll (PROCTOR_LIVE_POSTROLL_S,
    # 3 s on the student's frame clock) is over: the frames of her coming back took the clock past it.
    clip = data_dir / v.clip_path
    assert clip.suffix == ".frames" and clip.parent == (data_dir / v.evidence_path).parent
    wait_for(clip.is_file, RESULT_TIMEOUT_S, "the clip was never written after its post-roll")
    assert not list(clip.parent.glob("*.webm")) and not list(clip.parent.glob("*.recording"))
    from proctor.live.evidence import read_frames

    stored = read_frames(clip)
    assert len(stored) >= 5 and all(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
                                    for _, j in stored)
    assert [t for t, _ in stored] == sorted(t for t, _ in stored)
    # From the pre-roll (8 s) before NO_FACE's condition began (all since t0) to the post-roll after it fired.
    sent = [t0 + i * 0.5 for i in range(14)] + [t0 + 6.5 + i * 0.5 for i in range(1, 5)]
    assert [t for t, _ in stored] == [t for t in sent if details["since"] - 8.0 <= t <= details["frame_t"] + 3.0]
    assert stored[0][0] == t0 and stored[-1][0] == details["frame_t"] + 3.0
    assert rt.pipeline_status()["counters"]["clips_written"] == 1

    # The admin's first open encodes it (VP8 WebM, cached beside the frames); a second open reuses it.
    make_user(app, "reviewer@example.edu", role="ADMIN", name="Reviewer")
    admin = app.test_client()
    assert login(admin, "reviewer@example.edu").status_code == 302
    resp = admin.get(f"/admin/evidence/{v.id}/clip")
    assert resp.status_code == 200 and resp.mimetype == "video/webm"
    webm = clip.with_suffix(".webm")
    assert resp.data == webm.read_bytes()
    cap = cv2.VideoCapture(str(webm))
    n = 0
    while cap.read()[0]:
        n += 1
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    assert n == len(stored) and size == (640, 480)  # several seconds of pre-roll, face frames and the empty room
    if shutil.which("ffprobe"):
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
                              str(webm)], capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "vp8", out.stderr
    stamp = webm.stat().st_mtime_ns
    again = admin.get(f"/admin/evidence/{v.id}/clip")
    assert again.status_code == 200 and again.data == resp.data and webm.stat().st_mtime_ns == stamp


@pytest.mark.one_database  # real workers: identity checks and a worker restart
def test_identity_checked_against_the_enrolment_and_a_killed_worker_is_replaced(app, runtime_factory):
    import os
    import signal

    student_id, session_id, _ = _seed_session(app)
    _enrol(app, student_id, "identity/obama.jpg")
    rt, events = runtime_factory()
    same = fit(load_photo("identity/obama2.jpg"))
    # A stranger whose face the camera sees whole, sitting further left (biden.jpg fitted to 4:3 keeps
    # only his chin: since presence asks for more than FaceMesh's fit, rightly not a face at all).
    import cv2
    import numpy as np

    stranger = fit(load_photo("a_1_webcam_woman_T1.jpg"))
    other = cv2.warpAffine(stranger, np.float32([[1, 0, -170], [0, 1, 0]]), (stranger.shape[1], stranger.shape[0]),
                           borderMode=cv2.BORDER_REPLICATE)
    t0 = 20_000.0
    for i in range(4):
        _feed(rt, student_id, session_id, live_frame(same, i), t0 + i * 0.5)
    ident = rt.status(student_id)["identity"]
    assert ident["enrolled"] and ident["match"] is True and ident["distance"] is not None

    # Someone else sits down (the face jumps to where the stranger's is): checked at once, not at the
    # next IDENTITY_CHECK_EVERY_S (10 s).
    for i in range(4, 7):
        _feed(rt, student_id, session_id, live_frame(other, i), t0 + i * 0.5)
    st = rt.status(student_id)
    assert st["identity"]["match"] is False and st["frames"]["identity_checks"] == 2
    for i in range(7, 20):
        _feed(rt, student_id, session_id, live_frame(other, i), t0 + i * 0.5)
    st = rt.status(student_id)
    assert st["identity"]["match"] is False
    # Compared at the start and on the change, then not on every frame: should the face stage lose the
    # stranger's face now and then, each return is checked again, at most once in IDENTITY_RECHECK_MIN_S
    # (2 s): 6.5 s of such frames allow 3 more.
    from proctor.live.streams import IDENTITY_RECHECK_MIN_S

    assert 2 <= st["frames"]["identity_checks"] <= 2 + 6.5 // IDENTITY_RECHECK_MIN_S
    assert st["frames"]["identity_attempts"] < 8
    assert "IDENTITY_MISMATCH" in [v.type for v in _violations(app, session_id)]
    wait_for(lambda: any(n == "student_status" and p["student_id"] == student_id for n, p in events), 30,
             "no student_status was published")

    # A worker dies (killed): it is restarted, reported, and the stream goes on.
    pid = rt.pipeline_status()["workers"]["workers"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: rt.pipeline_status()["crashes"], RESULT_TIMEOUT_S, "the crash was not reported")
    assert rt.pipeline_status()["crashes"][0]["pid"] == pid
    processed = rt.status(student_id)["frames"]["processed"]
    _feed(rt, student_id, session_id, live_frame(same, 21), t0 + 10.5)
    assert rt.status(student_id)["frames"]["processed"] == processed + 1
    workers = rt.pipeline_status()["workers"]["workers"]
    assert workers[0]["pid"] != pid and workers[0]["restarts"] == 1 and workers[0]["alive"]


@pytest.mark.one_database  # real workers on whole scenes; incidents on every database: test_one_moment_is_one_incident...
@pytest.mark.parametrize("scene_photo", ["b_3_coco536_women_on_phones.jpg", "e_5_zidane_two_men.jpg"])
def test_a_scene_that_fires_several_rules_is_one_incident(app, runtime_factory, scene_photo):
    """The enrolled student, then a scene of other people (b_3: two women on phones; e_5: two men, where
    looking away fires 5 s after the second face), through the real worker processes: several rules fire
    within a few seconds of each other. Each is stored as its own violation, all of one incident, and the
    warning count is that incident's weight (its most severe part), not the number of rules: with
    auto-terminate on and the threshold 3, the scene used to end the exam."""
    from config_vision import load_vision_config
    from config_vision import rule as registered_rule
    from warning_system import severity_weight

    student_id, session_id, _ = _seed_session(app, auto_terminate=True)
    _enrol(app, student_id, "identity/obama.jpg")
    rt, events = runtime_factory()
    same, scene = fit(load_photo("identity/obama2.jpg")), fit(load_photo(scene_photo))
    t0 = 30_000.0
    for i in range(4):
        _feed(rt, student_id, session_id, live_frame(same, i), t0 + i * 0.5)
    assert _violations(app, session_id) == []
    for i in range(4, 20):  # 8 s of the scene
        _feed(rt, student_id, session_id, live_frame(scene, i), t0 + i * 0.5)
    rows = _violations(app, session_id)
    details = [json.loads(r.details) for r in rows]
    fired = [(r.type, d["frame_t"] - t0 - 2.0, d["incident"]) for r, d in zip(rows, details)]
    print("rules fired (type, s after the scene began, incident):", fired)
    assert len({r.type for r in rows}) >= 2, fired  # a multi-rule moment
    assert {d["incident"] for d in details} == {1}, fired
    assert [d["incident_opened"] for d in details] == [True] + [False] * (len(rows) - 1)
    config = load_vision_config(env={})
    weight = max(severity_weight(config, registered_rule(r.type).severity) for r in rows)
    assert rt.status(student_id)["warnings"] == weight and details[-1]["warning_count"] == weight
    pushed = [p for n, p in events if n == "student_violation"]
    assert [(p["violation_id"], p["incident"]) for p in pushed] == [(r.id, 1) for r in rows]
    assert [p["count"] for p in pushed] == [d["warning_count"] for d in details]
    assert rt.status(student_id)["active"]  # one moment did not end the exam (auto-terminate on, threshold 3)


def test_browser_events_auto_terminate_the_session(app, runtime_factory):
    from proctor.extensions import db
    from proctor.models import AuditLog, ExamResult, ExamSession

    # The events come at once (real time); the exam counts each as its own incident, as an exam may.
    student_id, session_id, _ = _seed_session(app, auto_terminate=True, thresholds='{"INCIDENT_WINDOW_S": 0}')
    rt, events = runtime_factory(enabled=False)
    assert rt.latest_view(student_id) is None
    rt.submit_frame(student_id, session_id, fit(load_photo("a_1_webcam_woman_T1.jpg")), 0)
    view = rt.latest_view(student_id)  # no workers: the raw frame is what an admin can see
    assert view.kind == "raw" and cv2.imdecode(np.frombuffer(view.jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
    assert rt.latest_view(student_id).jpeg is view.jpeg  # encoded once per frame
    issued = []
    for kind in ("TAB_SWITCH", "FULLSCREEN_EXIT", "VOICE_DETECTED"):
        issued += rt.browser_event(student_id, session_id, kind, {"hidden_ms": 1200, "note": "x" * 1000})
    assert [w["type"] for w in issued] == ["TAB_SWITCH", "FULLSCREEN_EXIT", "VOICE_DETECTED"]
    assert [w["count"] for w in issued] == [1, 2, 3] and issued[-1]["terminate"]
    rows = _violations(app, session_id)
    assert [r.type for r in rows] == ["TAB_SWITCH", "FULLSCREEN_EXIT", "VOICE_DETECTED"]
    assert all(r.evidence_path is None and r.clip_path is None for r in rows)  # no camera frames yet
    assert len(json.loads(rows[0].details)["note"]) == 200  # browser text is cut short
    with app.app_context():
        sess = db.session.get(ExamSession, session_id)
        assert sess.status == "TERMINATED" and "auto-terminate" in sess.termination_reason
        assert db.session.query(ExamResult).filter_by(session_id=session_id).one().status == "TERMINATED"
        assert db.session.query(AuditLog).filter_by(action="live.auto_terminate", target_id=session_id).count() == 1
    term = [p for n, p in events if n == "exam_terminated"]
    assert term == [{"student_id": student_id, "session_id": session_id, "reason": term[0]["reason"],
                     "by_admin_id": None, "auto": True}]
    assert ("student_left", {"student_id": student_id, "session_id": session_id, "status": "TERMINATED"}) in events
    from proctor.live import LiveError

    with pytest.raises(LiveError) as err:
        rt.browser_event(student_id, session_id, "TAB_SWITCH", {})
    assert err.value.status == 409


def test_one_moment_is_one_incident_stored_pushed_and_restored(app, runtime_factory):
    """Leaving the exam tab exits full screen at the same moment and the student says something: three
    rules at once. With auto-terminate on and the threshold 3 this used to end the exam ("warning 3 of 3");
    now it is three violations of one incident, warning 1 of 3. A stream opened again from the database
    goes on with the count, the open incident and the numbering."""
    from proctor.extensions import db
    from proctor.models import ExamSession

    student_id, session_id, _ = _seed_session(app, auto_terminate=True)
    admin_id = make_user(app, "boss3@example.edu", role="ADMIN", name="Boss")
    rt, events = runtime_factory(enabled=False)
    issued = []
    for kind in ("TAB_SWITCH", "FULLSCREEN_EXIT", "VOICE_DETECTED"):
        issued += rt.browser_event(student_id, session_id, kind, {})
    assert [(w["count"], w["incident"], w["incident_opened"], w["terminate"]) for w in issued] == [
        (1, 1, True, False), (1, 1, False, False), (1, 1, False, False)]
    rows = _violations(app, session_id)
    details = [json.loads(r.details) for r in rows]
    assert [r.type for r in rows] == ["TAB_SWITCH", "FULLSCREEN_EXIT", "VOICE_DETECTED"]
    assert [(d["incident"], d["incident_part"], d["warning_count"]) for d in details] == [(1, 1, 1), (1, 2, 1), (1, 3, 1)]
    assert "warning 1 of 3" in details[0]["reason"]
    violation_pushes = [p for n, p in events if n == "student_violation"]
    warning_pushes = [p for n, p in events if n == "student_warning"]
    assert [(p["violation_id"], p["incident"], p["incident_opened"], p["count"]) for p in violation_pushes] == [
        (r.id, 1, i == 0, 1) for i, r in enumerate(rows)]
    assert [(p["incident"], p["incident_opened"], p["count"]) for p in warning_pushes] == [(1, True, 1), (1, False, 1),
                                                                                         (1, False, 1)]
    with app.app_context():
        assert db.session.get(ExamSession, session_id).status == "IN_PROGRESS"

    # Another web process takes the student over: the stream is opened again from the stored violations.
    rt.session_ended(student_id, session_id, "MOVED")
    later = rt.browser_event(student_id, session_id, "CAMERA_OFF", {})  # still the same moment
    assert [(w["incident"], w["incident_opened"], w["count"]) for w in later] == [(1, False, 1)]
    assert rt.status(student_id)["warnings"] == 1
    rt.clear_warnings(student_id, admin_id)
    again = rt.browser_event(student_id, session_id, "TAB_SWITCH", {})  # cleared: a new incident, numbers go on
    assert [(w["incident"], w["incident_opened"], w["count"]) for w in again] == [(2, True, 1)]
    rt.session_ended(student_id, session_id, "MOVED")
    # Opened again: incident 1 is not used twice (whether FULLSCREEN_EXIT joins incident 2 or opens 3 depends
    # on whether the database's clock tells the clear from the violation after it within one second).
    assert rt.browser_event(student_id, session_id, "FULLSCREEN_EXIT", {})[0]["incident"] >= 2


def test_no_auto_termination_by_default_cooldown_and_admin_actions(app, runtime_factory):
    from proctor.extensions import db
    from proctor.live import LiveError
    from proctor.models import AuditLog, ExamSession

    student_id, session_id, _ = _seed_session(app, exam_disabled="VOICE_DETECTED", thresholds='{"INCIDENT_WINDOW_S": 0}')
    admin_id = make_user(app, "boss@example.edu", role="ADMIN", name="Boss")
    rt, events = runtime_factory(enabled=False)
    assert rt.browser_event(student_id, session_id, "VOICE_DETECTED", {}) == []  # disabled for the exam
    first = rt.browser_event(student_id, session_id, "TAB_SWITCH", {})
    assert len(first) == 1 and not first[0]["terminate"]
    assert rt.browser_event(student_id, session_id, "TAB_SWITCH", {}) == []  # held by the cooldown
    assert rt.pipeline_status()["counters"]["warnings_held"] == 1
    for kind in ("FULLSCREEN_EXIT", "CAMERA_OFF"):
        rt.browser_event(student_id, session_id, kind, {})
    assert rt.status(student_id)["warnings"] == 3 and rt.status(student_id)["auto_terminate"] is False
    with app.app_context():
        assert db.session.get(ExamSession, session_id).status == "IN_PROGRESS"  # off by default: an admin decides

    rt.clear_warnings(student_id, admin_id)
    assert rt.status(student_id)["warnings"] == 0
    assert ("warnings_cleared", {"student_id": student_id, "session_id": session_id, "by_admin_id": admin_id}) in events

    assert rt.set_rule(session_id, "TAB_SWITCH", False, admin_id) == ["TAB_SWITCH", "VOICE_DETECTED"]
    assert rt.browser_event(student_id, session_id, "TAB_SWITCH", {}) == []
    with pytest.raises(LiveError) as err:
        rt.set_rule(session_id, "VOICE_DETECTED", True, admin_id)
    assert err.value.status == 409
    with pytest.raises(LiveError):
        rt.set_rule(session_id, "DANCING", False, admin_id)
    assert rt.set_auto_terminate(session_id, True, admin_id) is True
    assert rt.status(student_id)["auto_terminate"] is True
    with pytest.raises(LiveError):
        rt.browser_event(student_id, session_id, "LOOKED_AT_CAT", {})
    with pytest.raises(LiveError) as err:
        rt.browser_event(student_id + 999, session_id, "TAB_SWITCH", {})
    assert err.value.status == 404

    rt.terminate(session_id, "Seen using notes", admin_id)
    with app.app_context():
        sess = db.session.get(ExamSession, session_id)
        assert sess.status == "TERMINATED" and sess.termination_reason == "Seen using notes"
        assert sess.disabled_rules == "TAB_SWITCH,VOICE_DETECTED" and sess.auto_terminate is True
        actions = sorted(a.action for a in db.session.query(AuditLog).filter_by(actor_id=admin_id))
        assert actions == ["live.clear_warnings", "live.set_auto_terminate", "live.set_rule", "live.terminate"]
    assert ("exam_terminated", {"student_id": student_id, "session_id": session_id, "reason": "Seen using notes",
                                "by_admin_id": admin_id, "auto": False}) in events
    assert rt.status(student_id)["active"] is False and rt.active_students() == []
    with pytest.raises(LiveError) as err:
        rt.terminate(session_id, "again", admin_id)  # already over: nothing is published twice
    assert err.value.status == 409
    with pytest.raises(LiveError) as err:
        rt.terminate(session_id + 1000, "who?", admin_id)
    assert err.value.status == 404
    assert len([n for n, _ in events if n == "exam_terminated"]) == 1


def test_frames_for_a_finished_session_are_dropped(app, runtime_factory):
    from proctor import exam_service

    student_id, session_id, _ = _seed_session(app)
    with app.app_context():
        exam_service.finish_session(session_id, "COMPLETED")
    rt, events = runtime_factory(enabled=False)
    rt.submit_frame(student_id, session_id, fit(load_photo("a_1_webcam_woman_T1.jpg")), 0)
    rt.enabled = True  # the loop looks at the slot; with no pool it must still refuse the session
    rt.step()
    assert rt.status(student_id)["active"] is False
    assert not [n for n, _ in events if n == "student_joined"]


# ---------------------------------------------------------------------------------------------
# The same runtime inside a real server process running under eventlet (monkey-patched), the
# product's default. The harness feeds frames from a green thread, as the upload route would,
# while this test talks to the server over HTTP.

EVENTLET_HARNESS = r'''
# Patched only when run as the server, like app.py: the spawned workers import this file as
# __mp_main__ and stay unpatched.
if __name__ == "__main__":
    import eventlet
    eventlet.monkey_patch()

import json, os, sys, time

def main():
    sys.path.insert(0, os.environ["HARNESS_REPO"])
    import cv2
    from proctor import create_app, init_db, exam_service
    from proctor.accounts import create_account
    from proctor.extensions import db, socketio
    from proctor.live import get_runtime
    from proctor.models import Exam, Question
    from tests.live import fit, live_frame, load_photo

    app = create_app()
    init_db(app)
    with app.app_context():
        student = create_account("Eventlet Student", "ev@example.edu", "correct horse battery")
        exam = Exam(title="Eventlet exam", description="", duration_minutes=30, is_published=True)
        db.session.add(exam)
        db.session.flush()
        q = Question(exam_id=exam.id, text="1+1?", correct_index=0, position=0, points=1)
        q.options = ["2", "3"]
        db.session.add(q)
        db.session.commit()
        sid, sess_id = student.id, exam_service.start_session(student.id, exam.id).id
    rt = get_runtime(app)
    gaps = []

    def ticker():  # how long the hub goes without running this green thread
        last = time.monotonic()
        while True:
            socketio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    # The upload route hands over decoded or JPEG frames; prepare them before the clock starts.
    face = fit(load_photo("a_1_webcam_woman_T1.jpg"))
    room = fit(load_photo("f_5_living_room_empty.jpg"))
    frames = [live_frame(face, i) for i in range(5)] + [live_frame(room, i) for i in range(17)]  # NO_FACE + post-roll
    jpegs = [cv2.imencode(".jpg", img)[1].tobytes() for img in frames]

    def feeder():
        rt.start()
        while not all(w["ready"] for w in rt.pipeline_status()["workers"]["workers"]):
            socketio.sleep(0.05)
        gaps.clear()
        print("READY", flush=True)
        t0 = 5000.0
        for i, jpeg in enumerate(jpegs):
            seq = rt.submit_frame(sid, sess_id, jpeg, client_ts_ms=0, server_ts=t0 + i * 0.5).seq
            while rt.status(sid).get("frames", {}).get("processed", 0) < seq:
                socketio.sleep(0.01)
        while not rt.pipeline_status()["counters"]["violations"]:
            socketio.sleep(0.05)
        # The clip is written once a frame analysed after its post-roll (3 s after NO_FACE fired) says so.
        while not rt.pipeline_status()["counters"].get("clips_written"):
            socketio.sleep(0.05)
        # Before the encodes below: on a busy machine they may outlast TIME_CAMERA_OFF_S (a second warning).
        status, pipeline = rt.status(sid), rt.pipeline_status()
        # A reviewer's first open encodes the clip (proctor.evidence_files): off the event loop, so the
        # ticker keeps running while it encodes.
        from pathlib import Path
        from sqlalchemy import select
        from proctor.datafiles import stored_file
        from proctor.evidence_files import playable_clip
        from proctor.models import Violation
        with app.app_context():
            clip_path = db.session.scalar(select(Violation.clip_path).where(Violation.session_id == sess_id))
            ticks = len(gaps)
            webm = playable_clip(stored_file(clip_path, "harness"), "harness")
            ticks_while_encoding = len(gaps) - ticks
            encode_gap_ms = round(max(gaps[ticks:], default=0.0) * 1000, 1)
            # The ffmpeg fallback too: a (green) subprocess from eventlet's native thread pool.
            import shutil
            from proctor.live import evidence
            copy = webm.with_name("ffmpeg_copy.frames")
            shutil.copy(webm.with_suffix(".frames"), copy)
            evidence.CLIP_WRITERS = (("ffmpeg", evidence._write_ffmpeg),)
            ticks = len(gaps)
            ffmpeg_webm = playable_clip(copy, "harness ffmpeg")
            ffmpeg_ticks = len(gaps) - ticks
        gaps_sorted = sorted(gaps)
        print("DONE " + json.dumps({"session_id": sess_id, "status": status, "pipeline": pipeline,
                                    "webm": str(webm), "ticks_while_encoding": ticks_while_encoding,
                                    "hub_gap_ms_while_encoding": encode_gap_ms,
                                    "ffmpeg_webm": str(ffmpeg_webm), "ffmpeg_ticks": ffmpeg_ticks,
                                    "hub_gap_ms": {"max": round(max(gaps) * 1000, 1),
                                                   "p99": round(gaps_sorted[int(0.99 * len(gaps_sorted))] * 1000, 1)}},
                                   default=str), flush=True)

    socketio.start_background_task(ticker)
    socketio.start_background_task(feeder)
    socketio.run(app, host="127.0.0.1", port=int(os.environ["PROCTOR_PORT"]))

if __name__ == "__main__":
    main()
'''


@pytest.mark.timeout(600)
def test_runtime_under_a_real_eventlet_server(tmp_path):
    import os
    import select
    import sys
    import time
    import urllib.request

    from tests.conftest import REPO_ROOT, free_port

    script = tmp_path / "harness.py"
    script.write_text(EVENTLET_HARNESS)
    port = free_port()
    data_dir = tmp_path / "data"
    env = {**os.environ, "HARNESS_REPO": str(REPO_ROOT), "PROCTOR_ASYNC_MODE": "eventlet", "PROCTOR_PORT": str(port),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'ev.db'}", "PROCTOR_INSTANCE_PATH": str(tmp_path / "instance"),
           "PROCTOR_DATA_DIR": str(data_dir), "PROCTOR_LIVE_WORKERS": "1", "FLASK_SECRET_KEY": "x" * 32,
           "PYTHONUNBUFFERED": "1"}
    env.pop("MYSQL_HOST", None)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=str(REPO_ROOT))
    lines: list[str] = []
    health: list[int] = []
    try:
        deadline = time.monotonic() + 480
        while not any(line.startswith("DONE ") for line in lines):
            assert proc.poll() is None, f"the eventlet server exited with {proc.returncode}: {lines}"
            assert time.monotonic() < deadline, f"gave up waiting for the eventlet server: {lines}"
            if select.select([proc.stdout], [], [], 0.2)[0]:
                lines.append(proc.stdout.readline().strip())
            if any(line == "READY" for line in lines):
                # The server keeps answering HTTP while the workers run inference and clips are written.
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=30) as resp:
                        health.append(resp.status)
                except OSError:
                    health.append(0)
        result = json.loads(next(line for line in lines if line.startswith("DONE "))[5:])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert health and set(health) == {200}, health
    print(f"eventlet hub gaps while processing: {result['hub_gap_ms']}; /api/health answered {len(health)} times; "
          f"latency {result['pipeline']['latency_ms']}; hub ticks while a clip encoded: {result['ticks_while_encoding']} "
          f"(longest gap {result['hub_gap_ms_while_encoding']} ms), with ffmpeg: {result['ffmpeg_ticks']}")
    assert result["status"]["warnings"] == 1 and "NO_FACE" in result["status"]["active_rules"], result["status"]
    assert result["pipeline"]["async_mode"] == "eventlet" and result["pipeline"]["counters"]["clips_written"] == 1
    # The first open's encode ran in eventlet's thread pool: the hub went on running the ticker meanwhile.
    assert result["ticks_while_encoding"] > 0 and result["ffmpeg_ticks"] > 0, result
    for path in (result["webm"], result["ffmpeg_webm"]):
        cap = cv2.VideoCapture(path)
        frames = 0
        while cap.read()[0]:
            frames += 1
        cap.release()
        assert frames >= 5, path
    import sqlite3

    with sqlite3.connect(tmp_path / "ev.db") as conn:
        rows = conn.execute("SELECT Type, EvidencePath, ClipPath FROM violations WHERE SessionID = ?",
                            (result["session_id"],)).fetchall()
    # NO_FACE; and CAMERA_OFF when the encodes outlast TIME_CAMERA_OFF_S after the last frame (a busy machine).
    assert [r[0] for r in rows] in (["NO_FACE"], ["NO_FACE", "CAMERA_OFF"])
    assert cv2.imread(str(data_dir / rows[0][1])) is not None
    assert rows[0][2].endswith(".frames") and Path(result["webm"]) == (data_dir / rows[0][2]).with_suffix(".webm").resolve()
    cap = cv2.VideoCapture(result["webm"])
    assert cap.read()[0]
    cap.release()


def test_admin_terminates_a_session_the_runtime_has_not_seen(app, runtime_factory):
    from proctor.extensions import db
    from proctor.models import ExamSession

    student_id, session_id, _ = _seed_session(app)
    admin_id = make_user(app, "boss2@example.edu", role="ADMIN", name="Boss")
    rt, events = runtime_factory(enabled=False)
    rt.terminate(session_id, "  ", admin_id)  # blank reason: a default one is recorded
    with app.app_context():
        sess = db.session.get(ExamSession, session_id)
        assert sess.status == "TERMINATED" and sess.termination_reason == "Terminated by the proctor"
    assert events == [("exam_terminated", {"student_id": student_id, "session_id": session_id,
                                           "reason": "Terminated by the proctor", "by_admin_id": admin_id,
                                           "auto": False})]


def test_live_settings_are_validated():
    from proctor.settings import ConfigError, load_settings

    defaults = load_settings({}, Path(tempfile.mkdtemp()))
    assert {k: defaults[k] for k in ("PROCTOR_LIVE_ENABLED", "PROCTOR_LIVE_WORKERS", "PROCTOR_LIVE_PREROLL_S",
                                     "PROCTOR_LIVE_POSTROLL_S", "PROCTOR_LIVE_STATUS_EVERY_S")} == {
        "PROCTOR_LIVE_ENABLED": True, "PROCTOR_LIVE_WORKERS": 2, "PROCTOR_LIVE_PREROLL_S": 8.0,
        "PROCTOR_LIVE_POSTROLL_S": 3.0, "PROCTOR_LIVE_STATUS_EVERY_S": 1.0}
    assert "PROCTOR_MODELS_DIR" not in defaults  # the vision setting MODELS_DIR (config_vision) is the only one
    env = {"PROCTOR_LIVE_WORKERS": "4", "PROCTOR_LIVE_ENABLED": "off"}
    assert load_settings(env, Path(tempfile.mkdtemp()))["PROCTOR_LIVE_WORKERS"] == 4
    for env, name in (({"PROCTOR_LIVE_WORKERS": "0"}, "PROCTOR_LIVE_WORKERS"),
                      ({"PROCTOR_LIVE_WORKERS": "two"}, "PROCTOR_LIVE_WORKERS"),
                      ({"PROCTOR_LIVE_ENABLED": "maybe"}, "PROCTOR_LIVE_ENABLED"),
                      ({"PROCTOR_LIVE_PREROLL_S": "600"}, "PROCTOR_LIVE_PREROLL_S"),
                      ({"PROCTOR_LIVE_POSTROLL_S": "-1"}, "PROCTOR_LIVE_POSTROLL_S"),
                      ({"PROCTOR_LIVE_STATUS_EVERY_S": "nan"}, "PROCTOR_LIVE_STATUS_EVERY_S")):
        with pytest.raises(ConfigError, match=name):
            load_settings(env, Path(tempfile.mkdtemp()))
