"""Every admin page renders for an admin, is refused (403) for a student and asks an anonymous visitor to sign in;
pages follow the CSP (no inline script or style) and every admin view declares ADMIN access."""
from __future__ import annotations

import re

import pytest

from tests.web.test_admin_results import seed_session


def admin_pages(s):
    return [
        "/admin/", "/admin/students", "/admin/students/new", f"/admin/students/{s['student_id']}/edit",
        f"/admin/students/{s['student_id']}/delete", "/admin/students/import", "/admin/exams", "/admin/exams/new",
        f"/admin/exams/{s['exam_id']}/edit", f"/admin/exams/{s['exam_id']}/questions", f"/admin/exams/{s['exam_id']}/delete",
        "/admin/results", f"/admin/sessions/{s['session_id']}", f"/admin/sessions/{s['session_id']}/report",
        f"/admin/sessions/{s['session_id']}/recordings", "/admin/reports", "/admin/reports/results.csv",
        "/admin/reports/violations.csv", "/admin/monitor", f"/admin/monitor/{s['student_id']}", "/admin/audit",
    ]


# An inline script the CSP would block; a JSON data block (type="application/json") is never executed.
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\b(?:src=|type=\"application/json\"))[^>]*>", re.I)


def test_every_admin_page_renders_for_admin(app, admin_client):
    s = seed_session(app)
    for path in admin_pages(s):
        resp = admin_client.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        if resp.mimetype == "text/html":
            html = resp.get_data(as_text=True)
            assert not INLINE_SCRIPT.search(html), path
            assert " style=" not in html and "<style" not in html, path
            assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html, path  # no CDN


def test_every_admin_page_is_403_for_a_student(app, student_client):
    s = seed_session(app)
    for path in admin_pages(s):
        assert student_client.get(path).status_code == 403, path


def test_anonymous_is_sent_to_login(app, client):
    s = seed_session(app)
    for path in admin_pages(s):
        resp = client.get(path)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], path


def test_admin_posts_are_403_for_a_student(app, student_client):
    from tests.conftest import csrf_token

    s = seed_session(app)
    token = csrf_token(student_client, "/student/")
    for path in ["/admin/students/new", f"/admin/students/{s['student_id']}/delete", f"/admin/students/{s['student_id']}/active",
                 "/admin/exams/new", f"/admin/exams/{s['exam_id']}/delete", f"/admin/violations/{s['violation_ids'][0]}/review",
                 f"/admin/sessions/{s['session_id']}/outcome", "/admin/students/import"]:
        assert student_client.post(path, data={"csrf_token": token, "decision": "dismiss", "outcome": "CLEAR"}).status_code == 403, path


def test_every_admin_view_declares_admin_access(app):
    from proctor.security import ADMIN

    mine = [name for name in app.view_functions if name.startswith("admin.")]
    assert len(mine) >= 25
    for name in mine:
        assert getattr(app.view_functions[name], "access_level", None) == ADMIN, name


@pytest.mark.parametrize("path", ["/admin/sessions/999999", "/admin/students/999999/face", "/admin/recordings/999999",
                                  "/admin/monitor/999999", "/admin/exams/999999/questions", "/admin/questions/999999/edit"])
def test_missing_records_are_404(app, admin_client, path):
    assert admin_client.get(path).status_code == 404


def test_monitor_pages_wire_up_the_live_endpoints(app, admin_client):
    s = seed_session(app, status="IN_PROGRESS", with_result=False)
    grid = admin_client.get("/admin/monitor").get_data(as_text=True)
    assert 'data-poll-url="/api/admin-active-students"' in grid and "vendor/socket.io/socket.io.min.js" in grid
    assert "js/admin/monitor.js" in grid
    page = admin_client.get(f"/admin/monitor/{s['student_id']}").get_data(as_text=True)
    assert f'src="/admin/live/{s["student_id"]}"' in page and f'data-session-id="{s["session_id"]}"' in page
    assert 'id="auto-terminate"' in page and 'id="auto-terminate" checked' not in page  # off by default
    assert 'id="rule-NO_FACE" data-rule="NO_FACE" checked' in page
    # the session's violations so far, newest first, with their evidence
    v_first, v_second, v_third = s["violation_ids"]
    ids = re.findall(r'<li data-violation-id="(\d+)"', page)
    assert ids == [str(v_third), str(v_second), str(v_first)]
    # in words, as the live toasts and the session page say it: titles and the reader's clock, no rule codes
    rows = re.findall(r'<li data-violation-id="\d+"[^>]*>(.*?)</li>', page)
    assert rows and not any(re.search(r"\b[A-Z]{2,}_[A-Z_]+\b", row) for row in rows), rows
    assert all('<time class="local-time" datetime="' in row for row in rows) and "js/admin/local_time.js" in page
    labels = re.findall(r'<label class="form-check-label small" for="rule-[A-Z_]+">([^<]+)</label>', page)
    assert "No face" in labels and not [lb for lb in labels if re.fullmatch(r"[A-Z_]+", lb)], labels
    assert f'href="/admin/evidence/{v_first}/snapshot"' in page
    # a student with no exam running: the page says so instead of failing
    from tests.conftest import make_user

    idle = make_user(app, "idle@example.edu")
    assert "not taking an exam" in admin_client.get(f"/admin/monitor/{idle}").get_data(as_text=True)


def test_home_lists_violations_to_review(app, admin_client):
    s = seed_session(app, student_name="Home <Listed>")
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert 'data-stat="pending_violations">3<' in page
    assert page.count(f"/admin/sessions/{s['session_id']}#v") == 3 and "Home &lt;Listed&gt;" in page
