"""Account operations shared by the web forms, the admin pages and the CLI.

Every email address goes through `normalise_email` (models.py) before it is stored, looked up or
used as a rate-limit key, so one address has one spelling everywhere.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import EMAIL_MAX, NAME_MAX, PASSWORD_MAX, PASSWORD_MIN, Role, User, fold_email, normalise_email
from .security import hash_password

__all__ = ["AccountError", "create_account", "find_by_email", "fold_email", "normalise_email", "email_taken"]


class AccountError(ValueError):
    pass


def find_by_email(email: str) -> User | None:
    """The account whose address has exactly this normal form (accents count: `ádmin@x` is not `admin@x`).

    The database narrows by the folded form (indexed); the comparison itself is made here, in
    Python, because MariaDB's collation would also call accented or invisible variants equal.
    """
    key = normalise_email(email)
    if not key:
        return None
    candidates = db.session.scalars(select(User).where(User.email_folded == fold_email(key)))
    return next((u for u in candidates if normalise_email(u.email) == key), None)


def email_taken(email: str) -> bool:
    """An account exists whose address has the same accent-folded form."""
    return db.session.scalar(select(User.id).where(User.email_folded == fold_email(email)).limit(1)) is not None


def create_account(name: str, email: str, password: str | None, role: str = Role.STUDENT.value, *,
                   password_hash: str | None = None) -> User:
    """A new account. `password_hash` instead of `password`: the caller hashed it already (off the
    event loop, e.g. the admin's CSV import job)."""
    name = (name or "").strip()
    email = normalise_email(email)
    if role not in (Role.ADMIN.value, Role.STUDENT.value):
        raise AccountError(f"role must be ADMIN or STUDENT, not {role!r}")
    if not name or len(name) > NAME_MAX:
        raise AccountError(f"name must be 1 to {NAME_MAX} characters")
    if not email or "@" not in email or len(email) > EMAIL_MAX:
        raise AccountError("a valid email address is required")
    if password_hash is None and not PASSWORD_MIN <= len(password or "") <= PASSWORD_MAX:
        raise AccountError(f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if email_taken(email):
        raise AccountError("an account with this email already exists")
    user = User(name=name, email=email, password_hash=password_hash or hash_password(password), role=role)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent signup with the same email
        db.session.rollback()
        raise AccountError("an account with this email already exists") from None
    return user
