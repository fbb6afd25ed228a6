"""Admin actions on live sessions, diagnostics and evidence: audited, validated, admin-only."""
from __future__ import annotations

import json
import shutil
import time

import pytest
from sqlalchemy import select

from tests.conftest import csrf_token, make_user
from tests.live.test_frame_api import live_env, live_inference, stop_live_runtime, FACE_PHOTO, TESTDATA, Student, data_url, error_of, jpeg_bytes, photo, runtime_of


@pytest.fixture
def admin(app, admin_client):
    admin_client.csrf = csrf_token(admin_client, "/admin/")
    with app.app_context():
        from proctor.accounts import find_by_email

        admin_client.user_id = find_by_email("admin@example.edu").id
    return admin_client


@pytest.fixture
def student(app):
    return Student(app, "acted-on@example.edu", name="Acted On")


def post(client, url, body=None, token=True):
    headers = {"X-CSRFToken": client.csrf} if token else {}
    return client.post(url, json=body if body is not None else {}, headers=headers)


def audit_rows(app, action):
    from proctor.extensions import db
    from proctor.models import AuditLog

    with app.app_context():
        rows = db.session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)).all()
        return [(r.actor_id, r.target_type, r.target_id, json.loads(r.details), r.client_address) for r in rows]


def violation_rows(app, session_id):
    from proctor.extensions import db
    from proctor.models import Violation

    with app.app_context():
        return db.session.scalars(select(Violation).where(Violation.session_id == session_id)).all()


def session_row(app, session_id):
    from proctor.extensions import db
    from proctor.models import ExamSession

    with app.app_context():
        db.session.expire_all()
        return db.session.get(ExamSession, session_id)


# --- clear warnings -------------------------------------------------------------------------

def test_clear_warnings_resets_the_count_and_is_audited(app, admin, student):
    rt = runtime_of(app)
    assert student.post_event({"type": "TAB_SWITCH"}).status_code == 200
    assert rt.status(student.id)["warnings"] >= 1
    resp = post(admin, f"/api/admin/students/{student.id}/clear-warnings")
    assert resp.status_code == 200, resp.data
    assert resp.get_json() == {"ok": True, "student_id": student.id}
    assert rt.status(student.id)["warnings"] == 0
    # One audit row, written by the runtime inside this request: this admin, from this address.
    rows = audit_rows(app, "live.clear_warnings")
    assert len(rows) == 1
    actor, target_type, target_id, details, address = rows[0]
    assert (actor, target_type, target_id, address) == (admin.user_id, "exam_session", student.session_id, "127.0.0.1")
    assert details["student_id"] == student.id


def test_clear_warnings_for_unknown_or_admin_account_is_404(app, admin):
    assert post(admin, "/api/admin/students/987654/clear-warnings").status_code == 404
    resp = post(admin, f"/api/admin/students/{admin.user_id}/clear-warnings")
    assert resp.status_code == 404 and error_of(resp)
    assert audit_rows(app, "live.clear_warnings") == []


def test_the_warning_count_survives_a_stream_opened_again(app, admin, student):
    """A restart (or another process taking the student over) opens the stream again from the
    database: the count goes on from the last stored violation, and a clear after it still counts."""
    rt = runtime_of(app)
    for _ in range(2):
        assert student.post_event({"type": "TAB_SWITCH"}).status_code == 200
        time.sleep(0.01)
    count = rt.status(student.id)["warnings"]
    assert count >= 1
    rt.session_ended(student.id, student.session_id, "RESTARTED")  # the process's state is gone
    assert "warnings" not in rt.status(student.id)
    rt.session_started(student.id, student.session_id)
    assert rt.status(student.id)["warnings"] == count
    # The tab switch's cooldown went on too: the same warning at once is held, not stored again.
    violations = len(violation_rows(app, student.session_id))
    assert student.post_event({"type": "TAB_SWITCH"}).status_code == 200
    assert rt.status(student.id)["warnings"] == count and len(violation_rows(app, student.session_id)) == violations
    assert post(admin, f"/api/admin/students/{student.id}/clear-warnings").status_code == 200
    rt.session_ended(student.id, student.session_id, "RESTARTED")
    rt.session_started(student.id, student.session_id)
    assert rt.status(student.id)["warnings"] == 0  # cleared after the last violation: stays cleared


# --- terminate ------------------------------------------------------------------------------

def test_terminate_ends_the_session_grades_it_and_is_audited(app, admin, student):
    from proctor.extensions import db
    from proctor.models import ExamResult

    resp = post(admin, f"/api/admin/sessions/{student.session_id}/terminate", {"reason": "  phone on the desk  "})
    assert resp.status_code == 200, resp.data
    assert resp.get_json()["status"] == "TERMINATED"
    sess = session_row(app, student.session_id)
    assert sess.status == "TERMINATED" and "phone on the desk" in (sess.termination_reason or "")
    with app.app_context():
        result = db.session.scalar(select(ExamResult).where(ExamResult.session_id == student.session_id))
        assert result is not None and result.status == "TERMINATED"
    rows = audit_rows(app, "live.terminate")
    assert len(rows) == 1
    actor, target_type, target_id, details, address = rows[0]
    assert (actor, target_type, target_id, address) == (admin.user_id, "exam_session", student.session_id, "127.0.0.1")
    assert details["reason"] == "phone on the desk"
    # A finished session cannot be terminated again, and the student's uploads stop.
    again = post(admin, f"/api/admin/sessions/{student.session_id}/terminate", {"reason": "again"})
    assert again.status_code == 409 and "terminated" in error_of(again)
    assert student.post_frame(data_url(jpeg_bytes(photo(FACE_PHOTO)))).status_code == 409


@pytest.mark.parametrize("body, fragment", [
    ({}, "'reason'"), ({"reason": "   "}, "'reason'"), ({"reason": 42}, "'reason'"),
    ({"reason": "x" * 256}, "at most 255"),
])
def test_terminate_needs_a_reason(app, admin, student, body, fragment):
    resp = post(admin, f"/api/admin/sessions/{student.session_id}/terminate", body)
    assert resp.status_code == 400 and fragment in error_of(resp)
    assert session_row(app, student.session_id).status == "IN_PROGRESS"


def test_terminate_unknown_session_is_404_and_non_json_is_400(app, admin):
    assert post(admin, "/api/admin/sessions/424242/terminate", {"reason": "x"}).status_code == 404
    resp = admin.post("/api/admin/sessions/1/terminate", data="reason=x",
                      content_type="application/x-www-form-urlencoded", headers={"X-CSRFToken": admin.csrf})
    assert resp.status_code == 400 and "JSON" in error_of(resp)


# --- auto-terminate and rules -----------------------------------------------------------------

def test_auto_terminate_switch(app, admin, student):
    resp = post(admin, f"/api/admin/sessions/{student.session_id}/auto-terminate", {"enabled": True})
    assert resp.status_code == 200, resp.data
    assert resp.get_json()["auto_terminate"] is True
    assert session_row(app, student.session_id).auto_terminate is True
    assert post(admin, f"/api/admin/sessions/{student.session_id}/auto-terminate", {"enabled": False}).status_code == 200
    assert session_row(app, student.session_id).auto_terminate is False
    rows = audit_rows(app, "live.set_auto_terminate")
    assert [r[3]["enabled"] for r in rows] == [True, False]
    assert {(r[0], r[2], r[4]) for r in rows} == {(admin.user_id, student.session_id, "127.0.0.1")}
    for bad in ({}, {"enabled": "yes"}, {"enabled": 1}, {"enabled": None}):
        resp = post(admin, f"/api/admin/sessions/{student.session_id}/auto-terminate", bad)
        assert resp.status_code == 400 and "'enabled'" in error_of(resp)
    assert post(admin, "/api/admin/sessions/999999/auto-terminate", {"enabled": True}).status_code == 404


def test_rule_switch(app, admin, student):
    url = f"/api/admin/sessions/{student.session_id}/rules"
    resp = post(admin, url, {"rule": "DISTRACTION", "enabled": False})
    assert resp.status_code == 200, resp.data
    assert "DISTRACTION" in (session_row(app, student.session_id).disabled_rules or "")
    assert post(admin, url, {"rule": "DISTRACTION", "enabled": True}).status_code == 200
    assert "DISTRACTION" not in (session_row(app, student.session_id).disabled_rules or "")
    rows = audit_rows(app, "live.set_rule")
    assert [(r[3]["rule"], r[3]["enabled"]) for r in rows] == [("DISTRACTION", False), ("DISTRACTION", True)]
    assert {(r[0], r[2], r[4]) for r in rows} == {(admin.user_id, student.session_id, "127.0.0.1")}
    for bad, fragment in (({"rule": "BOGUS", "enabled": False}, "'rule'"), ({"enabled": False}, "'rule'"),
                          ({"rule": "NO_FACE"}, "'enabled'"), ({"rule": ["NO_FACE"], "enabled": True}, "'rule'")):
        resp = post(admin, url, bad)
        assert resp.status_code == 400 and fragment in error_of(resp)


def test_actions_on_a_finished_session_are_409(app, admin, student):
    from proctor import exam_service

    with app.app_context():
        exam_service.finish_session(student.session_id, "COMPLETED", "submitted")
    base = f"/api/admin/sessions/{student.session_id}"
    assert post(admin, base + "/auto-terminate", {"enabled": True}).status_code == 409
    assert post(admin, base + "/rules", {"rule": "NO_FACE", "enabled": False}).status_code == 409
    assert post(admin, base + "/terminate", {"reason": "late"}).status_code == 409
    assert audit_rows(app, "live.set_rule") == [] and audit_rows(app, "live.terminate") == []


def test_actions_are_refused_to_students_anonymous_and_without_csrf(app, admin, student):
    urls = [f"/api/admin/students/{student.id}/clear-warnings",
            f"/api/admin/sessions/{student.session_id}/terminate",
            f"/api/admin/sessions/{student.session_id}/auto-terminate",
            f"/api/admin/sessions/{student.session_id}/rules"]
    body = {"reason": "x", "enabled": True, "rule": "NO_FACE"}
    anon = app.test_client()
    for url in urls:
        assert anon.post(url, json=body).status_code == 401
        assert student.client.post(url, json=body, headers={"X-CSRFToken": student.token}).status_code == 403
        resp = post(admin, url, body, token=False)
        assert resp.status_code == 400 and "CSRF" in error_of(resp)
    assert session_row(app, student.session_id).status == "IN_PROGRESS"


# --- diagnostics ------------------------------------------------------------------------------

@pytest.mark.one_database  # waits for a real worker to load its detector; reads no stored row
def test_diagnostics_for_admins_only(live_inference, app, admin, student):
    assert student.post_frame(data_url(jpeg_bytes(photo(FACE_PHOTO)))).status_code == 202
    deadline = time.monotonic() + 120  # the worker process loads its models first
    while True:
        det = admin.get("/api/object-detection-status")
        assert det.status_code == 200 and "loaded" in det.get_json()
        if "class_map" in det.get_json() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {"loaded", "backend", "model_path", "device", "class_map"} <= set(det.get_json()), det.get_json()
    pipe = admin.get("/api/detection-pipeline-status")
    assert pipe.status_code == 200 and isinstance(pipe.get_json(), dict)
    assert "frames" in json.dumps(pipe.get_json())
    active = admin.get("/api/admin-active-students")
    assert active.status_code == 200
    body = active.get_json()
    assert body["count"] == len(body["students"])
    for url in ("/api/object-detection-status", "/api/detection-pipeline-status", "/api/admin-active-students"):
        assert student.client.get(url).status_code == 403
        assert app.test_client().get(url).status_code == 401


# --- evidence ---------------------------------------------------------------------------------

def _violation(app, student, evidence_path=None, clip_path=None) -> int:
    from proctor.extensions import db
    from proctor.models import Violation

    with app.app_context():
        v = Violation(student_id=student.id, session_id=student.session_id, type="NO_FACE", severity="high",
                      details="{}", evidence_path=evidence_path, clip_path=clip_path)
        db.session.add(v)
        db.session.commit()
        return v.id


def test_evidence_is_served_from_the_data_dir_only(app, admin, student, tmp_path):
    from pathlib import Path

    data_dir = Path(app.config["PROCTOR_DATA_DIR"])
    (data_dir / "evidence").mkdir(parents=True, exist_ok=True)
    shutil.copy(TESTDATA / FACE_PHOTO, data_dir / "evidence" / "snap.jpg")
    vid = _violation(app, student, evidence_path="evidence/snap.jpg")
    resp = admin.get(f"/admin/evidence/{vid}/snapshot")
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
    assert resp.data == (TESTDATA / FACE_PHOTO).read_bytes()
    assert admin.get(f"/admin/evidence/{vid}/clip").status_code == 404  # no clip recorded
    assert admin.get(f"/admin/evidence/{vid}/passwd").status_code == 404  # unknown kind
    assert admin.get("/admin/evidence/999999/snapshot").status_code == 404
    outside = tmp_path / "outside.jpg"
    shutil.copy(TESTDATA / FACE_PHOTO, outside)
    for sneaky in ("../../outside.jpg", str(outside), "/etc/passwd", "evidence/../../../etc/passwd",
                   "evidence/missing.jpg"):
        v2 = _violation(app, student, evidence_path=sneaky)
        assert admin.get(f"/admin/evidence/{v2}/snapshot").status_code == 404, sneaky
    assert student.client.get(f"/admin/evidence/{vid}/snapshot").status_code == 403
    anon = app.test_client().get(f"/admin/evidence/{vid}/snapshot")
    assert anon.status_code == 302 and "/login" in anon.headers["Location"]


def test_audit_record_outside_a_request_has_no_address(app):
    from proctor import audit

    admin_id = make_user(app, "auditor@example.edu", role="ADMIN", name="Auditor")
    with app.app_context():
        audit.record(admin_id, "system.check", "student", None, note="x" * 10)
    assert audit_rows(app, "system.check") == [(admin_id, "student", None, {"note": "xxxxxxxxxx"}, None)]
    with app.app_context(), pytest.raises(ValueError):
        audit.record(admin_id, "", None, None)
