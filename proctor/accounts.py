"""Account operations shared by the web forms and the CLI."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import EMAIL_MAX, NAME_MAX, PASSWORD_MAX, PASSWORD_MIN, Role, User
from .security import hash_password


class AccountError(ValueError):
    pass


def normalise_email(email: str) -> str:
    return (email or "").strip().lower()


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == normalise_email(email)))


def create_account(name: str, email: str, password: str, role: str = Role.STUDENT.value) -> User:
    name = (name or "").strip()
    email = normalise_email(email)
    if role not in (Role.ADMIN.value, Role.STUDENT.value):
        raise AccountError(f"role must be ADMIN or STUDENT, not {role!r}")
    if not name or len(name) > NAME_MAX:
        raise AccountError(f"name must be 1 to {NAME_MAX} characters")
    if not email or "@" not in email or len(email) > EMAIL_MAX:
        raise AccountError("a valid email address is required")
    if not PASSWORD_MIN <= len(password or "") <= PASSWORD_MAX:
        raise AccountError(f"password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if find_by_email(email) is not None:
        raise AccountError("an account with this email already exists")
    user = User(name=name, email=email, password_hash=hash_password(password), role=role)
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent signup with the same email
        db.session.rollback()
        raise AccountError("an account with this email already exists") from None
    return user
