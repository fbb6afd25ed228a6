"""Passwords, access levels, trusted hosts, password-reset tokens and response headers.

Access is declared on every view with @access(...) and enforced in one place
(enforce_access, a before_request hook): a view that declares nothing is refused,
so a new route cannot be forgotten. The same hook first refuses requests for a host other than
PROCTOR_PUBLIC_URL's (when it is set). bcrypt runs off the event loop (blocking.run_blocking).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging

from urllib.parse import urlsplit

import bcrypt
from flask import abort, current_app, redirect, request, url_for
from flask_login import current_user
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from werkzeug.sansio.utils import host_is_trusted

from .blocking import run_blocking

log = logging.getLogger(__name__)

PUBLIC, LOGIN, STUDENT, ADMIN = "public", "login", "student", "admin"
LEVELS = (PUBLIC, LOGIN, STUDENT, ADMIN)


def _prehash(password: str) -> bytes:
    # bcrypt reads only 72 bytes; a SHA-256 digest first lets every character count.
    return base64.b64encode(hashlib.sha256(password.encode("utf-8")).digest())


# bcrypt at cost 12 takes a quarter to half a second of CPU; under eventlet that would hold the hub
# (every request and socket of the process) for as long, so it runs in a native thread
# (blocking.run_blocking: eventlet's tpool, else a thread pool). The bound only catches a stuck pool.
PASSWORD_WORK_TIMEOUT_S = 60.0


def hash_password(password: str, rounds: int | None = None) -> str:
    rounds = rounds or current_app.config["BCRYPT_LOG_ROUNDS"]
    hashed = run_blocking(bcrypt.hashpw, _prehash(password), bcrypt.gensalt(rounds), timeout_s=PASSWORD_WORK_TIMEOUT_S)
    return hashed.decode("ascii")


def _checkpw(prehashed: bytes, stored: bytes) -> bool:
    try:
        return bcrypt.checkpw(prehashed, stored)
    except ValueError:  # not a bcrypt hash
        return False


def check_password(password: str, password_hash: str) -> bool:
    try:
        stored = password_hash.encode("ascii")
    except (AttributeError, UnicodeEncodeError):
        return False
    return run_blocking(_checkpw, _prehash(password), stored, timeout_s=PASSWORD_WORK_TIMEOUT_S)


# A fixed hash to compare against when the account does not exist, so a login attempt
# for an unknown email costs as much time as one for a real account.
_DUMMY_HASH: dict[int, str] = {}


def burn_password_check(password: str) -> None:
    rounds = current_app.config["BCRYPT_LOG_ROUNDS"]
    if rounds not in _DUMMY_HASH:
        _DUMMY_HASH[rounds] = hash_password("not-a-real-password", rounds)
    check_password(password, _DUMMY_HASH[rounds])


def access(level: str):
    """Declare who may call a view: public, login (any account), student or admin."""
    if level not in LEVELS:
        raise ValueError(f"unknown access level {level!r}")

    def mark(view):
        view.access_level = level
        return view

    return mark


def _refuse_anonymous():
    from .jsonapi import is_json_view

    if is_json_view():
        abort(401, description="authentication required")
    return redirect(url_for("auth.login", next=request.full_path if request.query_string else request.path))


# --- the site's own host ------------------------------------------------------------------

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def public_host() -> str | None:
    url = current_app.config.get("PROCTOR_PUBLIC_URL")
    return urlsplit(url).hostname if url else None


def check_host() -> None:
    """400 for a request whose Host (or trusted X-Forwarded-Host) is not the public URL's host.

    Only when PROCTOR_PUBLIC_URL is set; localhost and 127.0.0.1 stay allowed for health checks
    and tools on the machine itself. A host that is not ours never reaches a view, so nothing can
    be built from it.
    """
    host = public_host()
    if host is None:
        return
    if not host_is_trusted(request.host, [host, *LOCAL_HOSTS]):
        log.warning("refused request for host %r (PROCTOR_PUBLIC_URL is %s)", request.host[:100],
                    current_app.config["PROCTOR_PUBLIC_URL"])
        abort(400, description="unknown host")


def external_url(endpoint: str, **values) -> tuple[str, str]:
    """(absolute URL for mail, where its host came from). PROCTOR_PUBLIC_URL when set, never the
    request; without it (allowed only when mail is not configured) the request's host."""
    base = current_app.config.get("PROCTOR_PUBLIC_URL")
    if base:
        return base.rstrip("/") + url_for(endpoint, **values), "PROCTOR_PUBLIC_URL"
    return url_for(endpoint, _external=True, **values), "the request's host (PROCTOR_PUBLIC_URL is not set)"


def enforce_access():
    """before_request: refuse unknown hosts, then check the current user against the view's level."""
    check_host()
    if request.endpoint is None:
        return None  # 404 or 405 follows
    view = current_app.view_functions.get(request.endpoint)
    level = getattr(view, "access_level", None)
    if request.endpoint == "static":
        level = PUBLIC
    if level is None:
        log.error("view %s declares no access level; refusing", request.endpoint)
        abort(403)
    if level == PUBLIC:
        return None
    if not current_user.is_authenticated:
        return _refuse_anonymous()
    if level == ADMIN and not current_user.is_admin:
        abort(403)
    if level == STUDENT and current_user.is_admin:
        abort(403)
    return None


# --- password reset tokens: signed, expiring, single-use -------------------------------

def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="password-reset")


def _password_fingerprint(password_hash: str) -> str:
    # Binds the token to the current password hash: once the password changes (the token
    # was used, or the user reset it another way) every earlier token stops working.
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, password_hash.encode(), hashlib.sha256).hexdigest()[:32]


def make_reset_token(student) -> str:
    return _serializer().dumps({"sid": student.id, "fp": _password_fingerprint(student.password_hash)})


def read_reset_token(token: str):
    """The account the token is for, or None if it is tampered, expired or already used."""
    from .extensions import db
    from .models import User

    if not token or len(token) > 512:
        return None
    try:
        data = _serializer().loads(token, max_age=current_app.config["PASSWORD_RESET_MAX_AGE_S"])
    except SignatureExpired:
        log.info("password reset refused: token expired")
        return None
    except BadSignature:
        log.info("password reset refused: bad signature")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sid"), int):
        return None
    student = db.session.get(User, data["sid"])
    if student is None or not student.is_active:
        return None
    if not hmac.compare_digest(str(data.get("fp", "")), _password_fingerprint(student.password_hash)):
        log.info("password reset refused: token already used for student %s", student.id)
        return None
    return student


# --- response headers ------------------------------------------------------------------------

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)
HSTS_MAX_AGE_S = 31536000  # one year, the usual preload-list minimum


def security_headers(response):
    """after_request: the headers every response carries (HSTS only when served over HTTPS)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    if current_app.config.get("PROCTOR_HTTPS"):
        response.headers.setdefault("Strict-Transport-Security", f"max-age={HSTS_MAX_AGE_S}")
    return response
