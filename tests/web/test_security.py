"""Authorisation matrix over every registered route, CSRF, cookies and password storage."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.conftest import TEST_PASSWORD, csrf_token, login, make_user

DUMMY = {"int": "999999", "string": "x", "path": "x", "default": "x", "float": "1.0", "uuid": "00000000-0000-0000-0000-000000000000"}
CONVERTER_RE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def _concrete(rule) -> str:
    return CONVERTER_RE.sub(lambda m: DUMMY.get(m.group(1) or "default", "x"), rule.rule)


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def _call(client, method, url):
    # Streaming views (MJPEG) are not consumed: the status line is what matters here.
    resp = client.open(url, method=method, json={} if url.startswith("/api/") and method != "GET" else None,
                       buffered=False)
    status, location = resp.status_code, resp.headers.get("Location", "")
    resp.close()
    return status, location


def _refused_as_anonymous(url, status, location):
    if url.startswith("/api/"):
        return status == 401
    return status in (302, 303) and "/login" in location


def test_every_view_declares_its_access_level(app):
    missing = [rule.endpoint for rule in app.url_map.iter_rules()
               if rule.endpoint != "static" and getattr(app.view_functions[rule.endpoint], "access_level", None) is None]
    assert missing == [], f"views without @access(...): {missing}"


def test_authorisation_matrix(app):
    make_user(app, "matrix-student@example.edu")
    make_user(app, "matrix-admin@example.edu", role="ADMIN", name="Matrix Admin")
    anonymous = app.test_client()
    student = app.test_client()
    admin = app.test_client()
    assert login(student, "matrix-student@example.edu").status_code == 302
    assert login(admin, "matrix-admin@example.edu").status_code == 302

    failures = []
    checked = 0
    for rule, method in _routes(app):
        if rule.endpoint == "auth.logout":
            continue  # would end the clients' sessions; covered by test_auth
        url = _concrete(rule)
        level = app.view_functions[rule.endpoint].access_level
        a_status, a_loc = _call(anonymous, method, url)
        s_status, _ = _call(student, method, url)
        m_status, _ = _call(admin, method, url)
        checked += 1
        where = f"{method} {url} ({rule.endpoint}, {level})"
        if level == "public":
            if a_status in (401, 403) or a_status >= 500:
                failures.append(f"{where}: anonymous got {a_status}")
            continue
        if not _refused_as_anonymous(url, a_status, a_loc):
            failures.append(f"{where}: anonymous got {a_status} {a_loc}")
        if level == "admin" and s_status != 403:
            failures.append(f"{where}: student got {s_status}, expected 403")
        if level == "student" and m_status != 403:
            failures.append(f"{where}: admin got {m_status}, expected 403")
        allowed = {"login": (s_status, m_status), "student": (s_status,), "admin": (m_status,)}[level]
        for status in allowed:
            if status in (401, 403) or status >= 500:
                failures.append(f"{where}: an allowed user got {status}")
    assert checked >= 10
    assert failures == [], "\n".join(failures)


def test_post_without_csrf_token_is_refused(app, client):
    make_user(app, "csrf@example.edu")
    resp = client.post("/login", data={"email": "csrf@example.edu", "password": TEST_PASSWORD})
    assert resp.status_code == 400
    assert client.get("/api/me").status_code == 401  # not logged in
    # a wrong token is refused too
    resp = client.post("/login", data={"email": "csrf@example.edu", "password": TEST_PASSWORD, "csrf_token": "forged"})
    assert resp.status_code == 400


def test_logged_in_post_without_token_is_refused(app, student_client):
    resp = student_client.post("/logout")
    assert resp.status_code == 400
    assert student_client.get("/api/me").status_code == 200  # still signed in


def test_session_cookie_flags(app, client):
    make_user(app, "cookie@example.edu")
    resp = login(client, "cookie@example.edu")
    cookies = [h for h in resp.headers.getlist("Set-Cookie") if h.startswith("session=")]
    assert cookies, resp.headers
    flags = cookies[-1].lower()
    assert "httponly" in flags and "samesite=lax" in flags
    assert "secure" not in flags  # plain http here; PROCTOR_HTTPS=1 turns it on (test_settings)


def test_passwords_are_bcrypt_hashed_never_clear(app, client):
    from proctor.extensions import db
    from proctor.models import User

    make_user(app, "pw@example.edu", password="a very secret phrase")
    with app.app_context():
        stored = db.session.scalar(select(User).where(User.email == "pw@example.edu")).password_hash
    assert stored.startswith("$2b$") and "secret" not in stored
    login(client, "pw@example.edu", "a very secret phrase")
    body = client.get("/api/me").get_data(as_text=True)
    assert "secret" not in body and "$2b$" not in body and "password" not in body.lower()


def test_production_bcrypt_cost_is_at_least_12(tmp_path):
    from proctor.settings import ConfigError, load_settings

    assert load_settings({}, tmp_path)["BCRYPT_LOG_ROUNDS"] >= 12
    with pytest.raises(ConfigError):
        load_settings({"BCRYPT_LOG_ROUNDS": "10"}, tmp_path)


def test_security_headers_and_no_cdn(app, client):
    resp = client.get("/login")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    html = resp.get_data(as_text=True)
    assert not re.search(r"""(src|href)=["']https?://""", html), "page loads an asset from another host"
