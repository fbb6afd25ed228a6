"""Friendly error pages for HTML, {"error", "code"} JSON under /api/."""
from __future__ import annotations

import pytest

from proctor.security import PUBLIC, access


@pytest.fixture
def failing_app(app):
    @access(PUBLIC)
    def explode():
        raise RuntimeError("boom: internal detail")

    app.add_url_rule("/test-explode", "test_explode", explode)
    app.add_url_rule("/api/test-explode", "api_test_explode", explode)
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


def test_405_on_the_api_is_json(client):
    resp = client.delete("/api/health")
    assert resp.status_code == 405 and resp.is_json
