"""Friendly error pages for HTML, {"error", "code"} JSON for the JSON blueprints (decided by the view's blueprint)."""
from __future__ import annotations

import pytest

from proctor.security import PUBLIC, access
from tests.conftest import csrf_token


@pytest.fixture
def failing_app(app):
    @access(PUBLIC)
    def explode():
        raise RuntimeError("boom: internal detail")

    app.add_url_rule("/test-explode", "test_explode", explode)
    # An endpoint named "<blueprint>.<view>" belongs to that blueprint, errors included.
    app.add_url_rule("/api/test-explode", "api.test_explode", explode)
    app.add_url_rule("/student/test-explode", "student.test_explode", explode)
    return app


def test_404_page_and_json(client):
    page = client.get("/no-such-page")
    assert page.status_code == 404 and "There is nothing at this address" in page.get_data(as_text=True)
    api = client.get("/api/no-such-thing")
    assert api.status_code == 404 and api.get_json()["code"] == 404 and api.get_json()["error"]


def test_403_for_a_student_on_an_admin_page(student_client):
    resp = student_client.get("/admin/")
    assert resp.status_code == 403 and "does not have access" in resp.get_data(as_text=True)


def test_400_page_for_a_bad_form_post(client):
    resp = client.post("/login", data={"email": "x"})
    assert resp.status_code == 400 and "<html" in resp.get_data(as_text=True)


def test_413_for_a_body_over_the_limit(app, client):
    app.config["MAX_CONTENT_LENGTH"] = 1024
    resp = client.post("/login", data={"email": "a" * 4096})
    assert resp.status_code == 413 and "larger than the server accepts" in resp.get_data(as_text=True)


def test_500_is_friendly_and_hides_the_detail(failing_app):
    client = failing_app.test_client()
    page = client.get("/test-explode")
    assert page.status_code == 500
    assert "boom" not in page.get_data(as_text=True) and "Something went wrong" in page.get_data(as_text=True)
    api = client.get("/api/test-explode")
    assert api.status_code == 500 and api.get_json() == {"error": "The server hit an error. It has been logged; please try again.", "code": 500}
    page = client.get("/student/test-explode")
    assert page.status_code == 500 and "Something went wrong" in page.get_data(as_text=True)


def test_405_on_the_api_is_json(client):
    resp = client.delete("/api/health")
    assert resp.status_code == 405 and resp.is_json


def test_json_blueprints_answer_json_for_every_error(client, student_client):
    """The exam API (its own blueprint under /api/exam) and the api blueprint both own JSON errors."""
    anon = client.post("/api/exam/system-check", json={})
    assert anon.status_code == 401 and anon.get_json()["code"] == 401
    no_token = student_client.post("/api/exam/system-check", json={})
    assert no_token.status_code == 400 and "CSRF" in no_token.get_json()["error"]
    token = csrf_token(student_client, "/student/")
    bad = student_client.post("/api/exam/system-check", data="x", content_type="text/plain", headers={"X-CSRFToken": token})
    assert bad.status_code == 400 and "JSON" in bad.get_json()["error"]
    missing = student_client.get("/api/exam/sessions/999999")
    assert missing.status_code == 404 and missing.is_json
    admin_only = student_client.get("/api/detection-pipeline-status")
    assert admin_only.status_code == 403 and admin_only.get_json()["code"] == 403
    page = student_client.get("/admin/")
    assert page.status_code == 403 and not page.is_json
