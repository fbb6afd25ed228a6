"""Signup, login, logout, forgot/reset password: the real forms with CSRF, on both databases."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.conftest import TEST_PASSWORD, csrf_token, free_port, login, make_user


def signup(client, name="Ada Lovelace", email="ada@example.edu", password="analytical engine", confirm=None):
    token = csrf_token(client, "/signup")
    return client.post("/signup", data={"name": name, "email": email, "password": password,
                                         "confirm": password if confirm is None else confirm, "csrf_token": token})


def test_signup_creates_student_and_logs_in(app, client):
    resp = signup(client)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/student/")
    me = client.get("/api/me").get_json()
    assert me["email"] == "ada@example.edu" and me["role"] == "STUDENT"
    assert "password" not in str(me).lower() and "analytical" not in str(me)


def test_signup_with_a_taken_email_reveals_nothing_and_tells_the_owner(app, client, caplog):
    """No "already exists": the login page with a neutral note, no session, and a note to the owner."""
    make_user(app, "ada@example.edu")
    caplog.set_level("WARNING", logger="proctor.mail")
    resp = signup(client, email="ADA@example.edu")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/login")
    page = client.get("/login").get_data(as_text=True)
    assert "already exists" not in page and "If you already have an account with this address" in page
    assert client.get("/api/me").status_code == 401
    notes = [r.getMessage() for r in caplog.records if "tried to sign up" in r.getMessage()]
    assert len(notes) == 1 and "ada@example.edu" in notes[0] and "/forgot-password" in notes[0]
    from proctor.extensions import db
    from proctor.models import User

    with app.app_context():
        assert db.session.scalar(select(db.func.count(User.id))) == 1
    # The answer for a new address is the one the page has always given.
    assert signup(client, email="new@example.edu").headers["Location"].endswith("/student/")


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"name": ""}, "This field is required"),
        ({"email": "not-an-email"}, "Invalid email"),
        ({"password": "short"}, "Use 8 to 128 characters"),
        ({"password": "x" * 129}, "Use 8 to 128 characters"),
        ({"name": "n" * 101}, "between 1 and 100"),
        ({"email": "a" * 250 + "@example.edu"}, "longer than 254"),
        ({"confirm": "something else"}, "do not match"),
    ],
)
def test_signup_bad_fields_are_form_errors_not_500(app, client, fields, message):
    data = {"name": "Ada", "email": "ada@example.edu", "password": "analytical engine", "confirm": None}
    data.update(fields)
    resp = signup(client, **data)
    assert resp.status_code == 400
    assert message in resp.get_data(as_text=True)


def test_missing_fields_entirely(app, client):
    token = csrf_token(client, "/signup")
    resp = client.post("/signup", data={"csrf_token": token})
    assert resp.status_code == 400
    assert "This field is required" in resp.get_data(as_text=True)


def test_sql_and_html_are_stored_verbatim_and_rendered_escaped(app, client):
    name = "Robert'); DROP TABLE students;-- <script>alert(1)</script>"
    resp = signup(client, name=name, email="bobby@example.edu")
    assert resp.status_code == 302
    from proctor.extensions import db
    from proctor.models import User

    with app.app_context():
        stored = db.session.scalar(select(User).where(User.email == "bobby@example.edu"))
        assert stored.name == name  # verbatim, and the table is still there
    page = client.get("/student/").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_login_wrong_password_and_unknown_account_look_the_same(app, client):
    make_user(app, "s@example.edu")
    wrong = login(client, "s@example.edu", "wrong password!")
    unknown = login(client, "nobody@example.edu", "wrong password!")
    assert wrong.status_code == unknown.status_code == 200
    assert "Wrong email or password." in wrong.get_data(as_text=True)
    assert "Wrong email or password." in unknown.get_data(as_text=True)
    assert client.get("/api/me").status_code == 401


def test_login_logout_roundtrip_and_role_homes(app, client):
    make_user(app, "a@example.edu", role="ADMIN")
    resp = login(client, "a@example.edu")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/admin/")
    assert client.get("/admin/").status_code == 200
    token = csrf_token(client, "/admin/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/api/me").status_code == 401


def test_deactivated_account_cannot_log_in(app, client):
    uid = make_user(app, "gone@example.edu")
    from proctor.extensions import db
    from proctor.models import User

    with app.app_context():
        db.session.get(User, uid).is_active_account = False
        db.session.commit()
    resp = login(client, "gone@example.edu")
    assert resp.status_code == 200 and "deactivated" in resp.get_data(as_text=True)
    assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"])
def test_login_next_cannot_redirect_off_site(app, client, target):
    make_user(app, "s@example.edu")
    token = csrf_token(client, "/login")
    resp = client.post("/login?next=" + target, data={"email": "s@example.edu", "password": TEST_PASSWORD, "csrf_token": token})
    assert resp.status_code == 302
    assert resp.headers["Location"].endswith("/student/")


def test_login_next_local_path_is_followed(app, client):
    make_user(app, "s@example.edu")
    token = csrf_token(client, "/login")
    resp = client.post("/login?next=/api/me", data={"email": "s@example.edu", "password": TEST_PASSWORD, "csrf_token": token})
    assert resp.headers["Location"].endswith("/api/me")


def test_login_rate_limited_per_account(app, client):
    make_user(app, "s@example.edu")
    codes = [login(client, "s@example.edu", "wrong password!").status_code for _ in range(6)]
    assert codes[:5] == [200] * 5 and codes[5] == 429
    # Another account from the same address is not locked by this one's limit.
    make_user(app, "t@example.edu")
    assert login(client, "t@example.edu").status_code == 302


def test_login_rate_limited_per_address_and_forwarded_for_not_trusted(app, client):
    app.config["LOGIN_LIMIT_PER_ADDRESS"] = "3 per minute"
    codes = []
    for i in range(4):
        token = csrf_token(client, "/login")
        codes.append(client.post("/login", data={"email": f"u{i}@example.edu", "password": "wrong password!", "csrf_token": token},
                                 headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code)
    assert codes == [200, 200, 200, 429]


def test_rate_limit_page_is_friendly(app, client):
    app.config["LOGIN_LIMIT_PER_ADDRESS"] = "1 per minute"
    login(client, "x@example.edu", "wrong password!")
    resp = login(client, "y@example.edu", "wrong password!")
    assert resp.status_code == 429
    assert "Too many attempts" in resp.get_data(as_text=True)


# --- password reset ---------------------------------------------------------------------

def _request_reset(client, email):
    token = csrf_token(client, "/forgot-password")
    return client.post("/forgot-password", data={"email": email, "csrf_token": token})


def _reset_link_from_log(caplog) -> str:
    for record in caplog.records:
        match = re.search(r"http://localhost(/reset-password/\S+)", record.getMessage())
        if match:
            return match.group(1)
    raise AssertionError("no reset link in the log")


def test_reset_without_mail_server_logs_the_link_and_works_once(app, client, caplog):
    make_user(app, "s@example.edu")
    caplog.set_level("WARNING", logger="proctor.mail")
    resp = _request_reset(client, "s@example.edu")
    assert resp.status_code == 302
    path = _reset_link_from_log(caplog)
    assert client.get(path).status_code == 200
    token = csrf_token(client, path)
    resp = client.post(path, data={"password": "brand new secret", "confirm": "brand new secret", "csrf_token": token})
    assert resp.status_code == 302
    assert login(client, "s@example.edu", "brand new secret").status_code == 302
    # single use: the same link is now refused
    resp = client.get(path)
    assert resp.status_code == 400 and "cannot be used" in resp.get_data(as_text=True)


def test_reset_for_unknown_email_gives_the_same_answer(app, client, caplog):
    caplog.set_level("WARNING", logger="proctor.mail")
    resp = _request_reset(client, "nobody@example.edu")
    assert resp.status_code == 302
    assert not any("reset-password" in r.getMessage() for r in caplog.records)


def test_tampered_and_expired_tokens_are_refused(app, client):
    uid = make_user(app, "s@example.edu")
    from proctor.extensions import db
    from proctor.models import User
    from proctor.security import make_reset_token

    with app.test_request_context():
        token = make_reset_token(db.session.get(User, uid))
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(f"/reset-password/{tampered}").status_code == 400
    assert client.get("/reset-password/" + "x" * 600).status_code == 400
    app.config["PASSWORD_RESET_MAX_AGE_S"] = -1  # every token is now past its age
    assert client.get(f"/reset-password/{token}").status_code == 400
    app.config["PASSWORD_RESET_MAX_AGE_S"] = 3600
    assert client.get(f"/reset-password/{token}").status_code == 200


def test_reset_mail_goes_through_a_real_smtp_server(app, client):
    from aiosmtpd.controller import Controller

    received = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=port, PROCTOR_PUBLIC_URL="http://localhost")
        make_user(app, "mail@example.edu")
        assert _request_reset(client, "mail@example.edu").status_code == 302
    finally:
        controller.stop()
    assert len(received) == 1
    assert received[0].rcpt_tos == ["mail@example.edu"]
    import email
    from email import policy

    body = email.message_from_bytes(received[0].content, policy=policy.default).get_content()
    path = re.search(r"http://localhost(/reset-password/\S+)", body).group(1)
    token = csrf_token(client, path)
    resp = client.post(path, data={"password": "via smtp secret", "confirm": "via smtp secret", "csrf_token": token})
    assert resp.status_code == 302
    assert login(client, "mail@example.edu", "via smtp secret").status_code == 302
