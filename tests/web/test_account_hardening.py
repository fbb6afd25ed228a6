"""Account hardening: reset-link host, email normalisation, session versions, bcrypt off the loop,
security headers. The Flask test client on SQLite and MariaDB (the `app` fixture runs on both)."""
from __future__ import annotations

import re
import threading

import pytest

from tests.conftest import TEST_PASSWORD, _test_config, csrf_token, login, make_user


def _app_with(database_url, tmp_path, **overrides):
    from proctor import create_app

    config = _test_config(database_url, tmp_path / "instance2")
    config.update(overrides)
    return create_app(config)


def _request_reset(client, email, **kw):
    token = csrf_token(client, "/forgot-password")
    return client.post("/forgot-password", data={"email": email, "csrf_token": token}, **kw)


# --- 1. password-reset link poisoning ---------------------------------------------------------

def test_reset_link_is_built_from_the_public_url_not_the_request_host(app, database_url, tmp_path, caplog):
    make_user(app, "s@example.edu")
    public = _app_with(database_url, tmp_path, PROCTOR_PUBLIC_URL="https://exam.school.edu")
    client = public.test_client()
    caplog.set_level("INFO")
    # An unknown host is refused before any view runs: no mail, no token on evil.example.
    evil = client.post("/forgot-password", data={"email": "s@example.edu"}, headers={"Host": "evil.example"})
    assert evil.status_code == 400
    assert client.get("/login", headers={"Host": "evil.example:443"}).status_code == 400
    assert not any("evil.example/reset" in r.getMessage() for r in caplog.records)
    # The site's own host, localhost and 127.0.0.1 are served; the link always names the public URL.
    assert client.get("/login", headers={"Host": "exam.school.edu"}).status_code == 200
    assert client.get("/login", headers={"Host": "127.0.0.1:5001"}).status_code == 200
    assert _request_reset(client, "s@example.edu").status_code == 302
    links = [m.group(0) for r in caplog.records for m in [re.search(r"\S+/reset-password/\S+", r.getMessage())] if m]
    assert links and all(link.startswith("https://exam.school.edu/reset-password/") for link in links), links
    assert any("PROCTOR_PUBLIC_URL" in r.getMessage() for r in caplog.records)


def test_forwarded_host_behind_a_proxy_is_refused_too(app, database_url, tmp_path):
    make_user(app, "s@example.edu")
    public = _app_with(database_url, tmp_path, PROCTOR_PUBLIC_URL="https://exam.school.edu", PROCTOR_PROXY_COUNT=1)
    client = public.test_client()
    assert client.get("/login", headers={"X-Forwarded-Host": "evil.example"}).status_code == 400
    assert client.get("/login", headers={"X-Forwarded-Host": "exam.school.edu"}).status_code == 200


@pytest.mark.parametrize("value, message", [
    ("exam.school.edu", "http or https"),
    ("ftp://exam.school.edu", "http or https"),
    ("https://", "host"),
    ("https://exam.school.edu/?x=1", "query"),
    ("https://exam.school.edu/#top", "fragment"),
    ("https://exam.school.edu/proctor", "path"),
])
def test_public_url_is_validated(tmp_path, value, message):
    from proctor.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match=message):
        load_settings({"PROCTOR_PUBLIC_URL": value}, tmp_path)


def test_mail_server_requires_a_public_url(tmp_path):
    from proctor.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match="PROCTOR_PUBLIC_URL"):
        load_settings({"MAIL_SERVER": "smtp.school.edu"}, tmp_path)
    s = load_settings({"MAIL_SERVER": "smtp.school.edu", "PROCTOR_PUBLIC_URL": "https://exam.school.edu/"}, tmp_path)
    assert s["PROCTOR_PUBLIC_URL"] == "https://exam.school.edu/"


# --- 2. one normal form of an email address -----------------------------------------------------

def test_normalise_email_folds_case_width_and_invisible_characters():
    from proctor.accounts import normalise_email

    assert normalise_email("  ADMIN@X.edu ") == "admin@x.edu"
    assert normalise_email("admin\u200b@x.edu") == "admin@x.edu"
    assert normalise_email("\ufeffad\u200dmin\u2060@x.edu\u200c") == "admin@x.edu"
    assert normalise_email("\uff41dmin@x.edu") == "admin@x.edu"  # fullwidth a (NFKC)
    assert normalise_email("ádmin@x.edu") == "ádmin@x.edu"       # an accent is a different address


def test_account_limit_counts_spellings_of_one_address_as_one_account(app, client):
    make_user(app, "admin@x.edu", role="ADMIN", name="Admin")
    spellings = ["admin@x.edu", "ADMIN@x.edu", "admin\u200b@x.edu", "Admin@X.edu", "\u200badmin@x.edu", "admin@x.edu"]
    codes = [login(client, e, "wrong password!").status_code for e in spellings]
    assert codes == [200] * 5 + [429], codes


def test_accented_address_cannot_sign_up_beside_or_log_into_the_account(app, client):
    make_user(app, "admin@x.edu", role="ADMIN", name="Admin")
    with pytest.raises(Exception, match="already exists"):
        make_user(app, "ádmin@x.edu")
    token = csrf_token(client, "/signup")
    resp = client.post("/signup", data={"name": "Mallory", "email": "ádmin@x.edu", "password": "analytical engine",
                                         "confirm": "analytical engine", "csrf_token": token})
    assert resp.status_code != 302 or not resp.headers["Location"].endswith("/student/")
    assert client.get("/api/me").status_code == 401
    for spelling in ("ádmin@x.edu", "admi\u0301n@x.edu", "admin\u200b@x.edu"):
        assert login(client, spelling).status_code == (302 if "\u200b" in spelling else 200), spelling
        if "\u200b" in spelling:
            assert client.get("/api/me").get_json()["email"] == "admin@x.edu"
        else:
            assert client.get("/api/me").status_code == 401


def test_lookup_uses_the_normal_form(app):
    from proctor.accounts import find_by_email

    uid = make_user(app, "Mixed.Case@Example.edu")
    with app.app_context():
        assert find_by_email("\u200bmixed.case@example.EDU ").id == uid
        assert find_by_email("mixed.cáse@example.edu") is None


# --- 3. session versions ---------------------------------------------------------------------------

def _cookie(client, name):
    cookie = client.get_cookie(name)
    return cookie.value if cookie else None


def _reset_password(app, client, email, new_password):
    from proctor.accounts import find_by_email
    from proctor.security import make_reset_token

    with app.test_request_context():
        token = make_reset_token(find_by_email(email))
    path = f"/reset-password/{token}"
    csrf = csrf_token(client, path)
    return client.post(path, data={"password": new_password, "confirm": new_password, "csrf_token": csrf})


def _replay(app, source, names=("session", "remember_token")):
    """A new browser carrying a copy of `source`'s cookies (as a thief would), same agent and address."""
    thief = app.test_client()
    for name in names:
        value = _cookie(source, name)
        if value:
            thief.set_cookie(name, value, domain="localhost")
    return thief


def test_password_reset_ends_old_sessions_and_remember_cookies(app):
    make_user(app, "s@example.edu")
    victim = app.test_client()
    token = csrf_token(victim, "/login")
    assert victim.post("/login", data={"email": "s@example.edu", "password": TEST_PASSWORD, "remember": "y",
                                       "csrf_token": token}).status_code == 302
    assert _cookie(victim, "remember_token")
    stolen_session = _replay(app, victim, ("session",))
    stolen_remember = _replay(app, victim, ("remember_token",))
    assert stolen_session.get("/api/me").status_code == 200
    assert stolen_remember.get("/api/me").status_code == 200

    assert _reset_password(app, app.test_client(), "s@example.edu", "a brand new secret").status_code == 302
    assert victim.get("/api/me").status_code == 401
    assert _replay(app, victim).get("/api/me").status_code == 401
    assert stolen_session.get("/api/me").status_code == 401
    assert stolen_remember.get("/api/me").status_code == 401
    assert login(app.test_client(), "s@example.edu", "a brand new secret").status_code == 302


def test_logout_ends_the_remember_cookie_even_when_replayed(app):
    make_user(app, "s@example.edu")
    client = app.test_client()
    token = csrf_token(client, "/login")
    client.post("/login", data={"email": "s@example.edu", "password": TEST_PASSWORD, "remember": "y", "csrf_token": token})
    old_remember = _replay(app, client, ("remember_token",))
    old_session = _replay(app, client, ("session",))
    token = csrf_token(client, "/student/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert _cookie(client, "remember_token") is None  # Flask-Login deleted it in this browser
    assert client.get("/api/me").status_code == 401
    assert old_remember.get("/api/me").status_code == 401  # and a copy no longer works
    assert old_session.get("/api/me").status_code == 401


def test_an_admin_password_change_signs_the_student_out(app, admin_client):
    uid = make_user(app, "s@example.edu")
    student = app.test_client()
    assert login(student, "s@example.edu").status_code == 302
    from proctor.extensions import db
    from proctor.models import User
    from proctor.security import hash_password

    with app.app_context():
        user = db.session.get(User, uid)
        before = user.session_version
        user.password_hash = hash_password("changed by an admin")
        db.session.commit()
        assert db.session.get(User, uid).session_version == before + 1
    assert student.get("/api/me").status_code == 401


# --- 4. bcrypt off the event loop ---------------------------------------------------------------

def test_password_work_runs_off_the_callers_thread(app, monkeypatch):
    import bcrypt

    from proctor import security

    seen = []
    real_checkpw, real_hashpw = bcrypt.checkpw, bcrypt.hashpw
    monkeypatch.setattr(security.bcrypt, "checkpw", lambda *a: seen.append(threading.get_ident()) or real_checkpw(*a))
    monkeypatch.setattr(security.bcrypt, "hashpw", lambda *a: seen.append(threading.get_ident()) or real_hashpw(*a))
    with app.app_context():
        stored = security.hash_password("some password 1")
        assert security.check_password("some password 1", stored)
        assert not security.check_password("other password", stored)
    assert len(seen) == 3
    assert threading.get_ident() not in seen


# --- 5. headers --------------------------------------------------------------------------------

@pytest.mark.parametrize("https", [False, True])
def test_security_headers_include_hsts_only_over_https(database_url, tmp_path, https):
    from flask import Response

    from proctor.security import security_headers

    application = _app_with(database_url, tmp_path, PROCTOR_HTTPS=https)
    with application.test_request_context("/login"):
        headers = security_headers(Response("x")).headers
    assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers.get("Strict-Transport-Security") == ("max-age=31536000" if https else None)
    # And on a real response of the app (create_app installs the hook).
    served = application.test_client().get("/login").headers
    assert served.get("Strict-Transport-Security") == ("max-age=31536000" if https else None)
    assert served["X-Frame-Options"] == "DENY"
