"""Input that used to reach the database or the parser unbounded: deep JSON, ids past 64 bits,
digits that are not ASCII. Each gets a clear 4xx, never a 500, on both databases."""
from __future__ import annotations

import io
import json

import pytest

from tests.conftest import csrf_token
from tests.web.test_exam_flow import _started, make_exam

HUGE_IDS = [2**31, 2**63, 2**64 + 1, 10**30]


def _post_json(client, url, body: bytes, token):
    return client.post(url, data=body, content_type="application/json", headers={"X-CSRFToken": token})


def test_deeply_nested_json_is_a_clear_400(app, student_client):
    token = csrf_token(student_client, "/student/")
    body = ("[" * 2000 + "]" * 2000).encode()
    wrapped = ('{"camera": ' + "[" * 2000 + "]" * 2000 + "}").encode()
    for raw in (body, wrapped):
        resp = _post_json(student_client, "/api/exam/system-check", raw, token)
        assert resp.status_code == 400, resp.status_code
        assert resp.get_json() == {"error": "the JSON body is nested too deeply", "code": 400}


@pytest.mark.parametrize("big", HUGE_IDS)
def test_ids_past_the_database_range_are_404(app, student_client, admin_client, big):
    token = csrf_token(student_client, "/student/")
    resp = student_client.get(f"/api/exam/sessions/{big}")
    assert resp.status_code == 404 and set(resp.get_json()) == {"error", "code"}
    resp = _post_json(student_client, f"/api/exam/{big}/identity-frame", b"{}", token)
    assert resp.status_code == 404 and set(resp.get_json()) == {"error", "code"}
    assert student_client.get(f"/student/exams/{big}/").status_code == 404
    assert student_client.get(f"/student/sessions/{big}/result").status_code == 404
    assert admin_client.get(f"/admin/students/{big}/edit").status_code == 404
    assert admin_client.get(f"/admin/sessions/{big}").status_code == 404
    admin_token = csrf_token(admin_client, "/admin/")
    resp = _post_json(admin_client, f"/api/admin/sessions/{big}/terminate", b'{"reason": "x"}', admin_token)
    assert resp.status_code == 404 and set(resp.get_json()) == {"error", "code"}


@pytest.mark.parametrize("big", [*HUGE_IDS, -1, "1e3", "\u0661"])
def test_audio_chunk_session_id_is_bounded(app, student_client, big):
    _started(app, exam_id=make_exam(app))
    token = csrf_token(student_client, "/student/")
    resp = student_client.post("/api/exam/audio-chunk", headers={"X-CSRFToken": token}, content_type="multipart/form-data",
                               data={"session_id": str(big), "seq": "0",
                                     "chunk": (io.BytesIO(b"\x1a\x45\xdf\xa3" + bytes(64)), "chunk", "audio/webm")})
    assert resp.status_code in (400, 404), (big, resp.status_code)
    assert set(resp.get_json()) == {"error", "code"}


def test_digits_that_are_not_ascii_are_refused_not_crashed(app, student_client, admin_client):
    for value in ("\u00b2", "\u0661\u0662", "9" * 40):  # superscript two: isdigit() but int() fails
        assert student_client.get("/student/rules", query_string={"exam": value}).status_code in (400, 404)
        assert admin_client.get("/admin/results", query_string={"exam": value}).status_code == 200
        assert admin_client.get("/admin/reports/violations.csv", query_string={"session": value}).status_code == 200
        assert admin_client.get("/admin/audit", query_string={"target_id": value}).status_code == 200


def test_json_numbers_past_any_range_are_400(app, student_client):
    exam_id = make_exam(app)
    session_id = _started(app, exam_id=exam_id)
    token = csrf_token(student_client, "/student/")
    for qid in ("18446744073709551617", "1e400", "-1e400", "NaN", "1" * 5000):
        raw = ('{"question_id": %s, "selected": 0}' % qid).encode()
        resp = _post_json(student_client, f"/api/exam/sessions/{session_id}/answers", raw, token)
        assert resp.status_code == 400, (qid[:30], resp.status_code, resp.get_data(as_text=True)[:200])
        assert set(resp.get_json()) == {"error", "code"}
    body = json.dumps({"camera": True, "microphone": True, "browser": True, "upload": True, "upload_kbps": 10**400})
    resp = _post_json(student_client, "/api/exam/system-check", body.encode(), token)
    assert resp.status_code == 400 and set(resp.get_json()) == {"error", "code"}
