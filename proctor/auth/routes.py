"""Signup, login, logout, forgot and reset password (views on the auth blueprint)."""
from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from ..accounts import AccountError, create_account, email_taken, find_by_email, fold_email, normalise_email
from ..extensions import db, limiter
from ..mail import send_mail
from ..models import utcnow
from ..security import (
    LOGIN,
    PUBLIC,
    access,
    burn_password_check,
    check_password,
    external_url,
    hash_password,
    make_reset_token,
    read_reset_token,
)
from . import bp
from .forms import ConfirmForm, ForgotPasswordForm, LoginForm, ResetPasswordForm, SignupForm

log = logging.getLogger(__name__)


def _account_key() -> str:
    # The folded form: every spelling that could reach one account (case, width, invisible
    # characters, accents) shares one budget.
    return "acct:" + fold_email(request.form.get("email", ""))[:254]


def home_for(user) -> str:
    return url_for("admin.home") if user.is_admin else url_for("student.home")


def _safe_next(target: str | None) -> str | None:
    # Only local paths: an absolute URL or //host in ?next= would be an open redirect.
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
@access(PUBLIC)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], key_func=_account_key, methods=["POST"])
def login():
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = LoginForm()
    if form.validate_on_submit():
        user = find_by_email(form.email.data)
        if user is None:
            burn_password_check(form.password.data)
            ok = False
        else:
            ok = check_password(form.password.data, user.password_hash)
        if ok and not user.is_active:
            log.info("login refused: account %s is deactivated", user.id)
            flash("This account is deactivated. Ask your institution's administrator.", "danger")
        elif ok:
            login_user(user, remember=form.remember.data)
            user.last_login_at = utcnow()
            db.session.commit()
            log.info("login: account %s (%s)", user.id, user.role)
            return redirect(_safe_next(request.args.get("next")) or home_for(user))
        else:
            log.info("login failed for %r from %s", normalise_email(form.email.data)[:64], request.remote_addr)
            flash("Wrong email or password.", "danger")
    elif request.method == "POST":
        return render_template("auth/login.html", form=form), 400
    return render_template("auth/login.html", form=form)


@bp.route("/signup", methods=["GET", "POST"])
@access(PUBLIC)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"])
def signup():
    """A new address gets a student account and is signed in at once; a taken one learns nothing.

    Schools hand out exam sign-up links shortly before an exam and many installations send no
    mail, so a new student goes straight to their home page (no confirmation mail). An address
    that already has an account (or differs from one only by case, accents or invisible
    characters) gets no account and no "already exists" message: the answer is the login page
    with a neutral note, and the account's owner is mailed that someone tried (so a real student
    who forgot knows to sign in or reset). The attempt costs a bcrypt hash like a real sign-up,
    and sign-up is rate-limited per address. A determined prober can still tell "signed in" from
    "sent to login"; closing that needs confirmation by mail before the first sign-in.
    """
    if current_user.is_authenticated:
        return redirect(home_for(current_user))
    form = SignupForm()
    if form.validate_on_submit():
        if email_taken(form.email.data):
            return _signup_taken(form)
        try:
            user = create_account(form.name.data, form.email.data, form.password.data)
        except AccountError as exc:
            if "already exists" in str(exc):  # a concurrent sign-up took it
                return _signup_taken(form)
            form.email.errors.append(str(exc).capitalize() + ".")
            return render_template("auth/signup.html", form=form), 400
        log.info("signup: new student %s", user.id)
        login_user(user)
        flash("Welcome! Your account is ready.", "success")
        return redirect(url_for("student.home"))
    if request.method == "POST":
        return render_template("auth/signup.html", form=form), 400
    return render_template("auth/signup.html", form=form)


SIGNUP_TAKEN_NOTE = ("If you already have an account with this address, sign in below or reset your password; "
                     "we have sent a note to that address.")


def _signup_taken(form):
    burn_password_check(form.password.data)  # as long as a real sign-up's hash
    owner = find_by_email(form.email.data)
    log.info("signup refused: address taken (account %s)", owner.id if owner else "with a similar address")
    if owner is not None and owner.is_active:
        link, _ = external_url("auth.forgot_password")
        send_mail(owner.email, "Someone tried to sign up with your address",
                  f"Hello {owner.name},\n\nSomeone tried to create an exam proctoring account with this address, "
                  f"which already has one. If it was you, sign in with your password, or choose a new one here:\n\n"
                  f"{link}\n\nIf it was not you, you need do nothing.\n")
    flash(SIGNUP_TAKEN_NOTE, "info")
    return redirect(url_for("auth.login"))


@bp.route("/logout", methods=["POST"])
@access(LOGIN)
def logout():
    form = ConfirmForm()
    if not form.validate_on_submit():
        return redirect(url_for("auth.login"))
    # Signing out signs out everywhere: every session and remember-me cookie of the account (a
    # copy of the cookie stops working too) and its open sockets (sockets.py, at commit).
    current_user.end_sessions()
    db.session.commit()
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.route("/forgot-password", methods=["GET", "POST"])
@access(PUBLIC)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ACCOUNT"], key_func=_account_key, methods=["POST"])
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        user = find_by_email(form.email.data)
        if user is not None and user.is_active:
            link, source = external_url("auth.reset_password", token=make_reset_token(user))
            log.info("password reset link for account %s built from %s", user.id, source)
            minutes = current_app.config["PASSWORD_RESET_MAX_AGE_S"] // 60
            send_mail(
                user.email,
                "Reset your exam proctoring password",
                f"Hello {user.name},\n\nTo choose a new password, open this link within {minutes} minutes:\n\n"
                f"{link}\n\nIf you did not ask for this, ignore this message.\n",
            )
        # The same answer whether or not the account exists: no account discovery.
        flash("If an account exists for that address, a reset link is on its way.", "info")
        return redirect(url_for("auth.login"))
    if request.method == "POST":
        return render_template("auth/forgot.html", form=form), 400
    return render_template("auth/forgot.html", form=form)


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
@access(PUBLIC)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"])
def reset_password(token: str):
    user = read_reset_token(token)
    if user is None:
        flash("This reset link is invalid, expired or already used. Ask for a new one.", "danger")
        return render_template("auth/reset_invalid.html"), 400
    form = ResetPasswordForm()
    if form.validate_on_submit():
        user.password_hash = hash_password(form.password.data)  # also ends its sessions (models.py)
        db.session.commit()
        log.info("password reset for account %s; its sessions are ended", user.id)
        logout_user()
        flash("Your password is changed. Sign in with the new one.", "success")
        return redirect(url_for("auth.login"))
    if request.method == "POST":
        return render_template("auth/reset.html", form=form, token=token), 400
    return render_template("auth/reset.html", form=form, token=token)
