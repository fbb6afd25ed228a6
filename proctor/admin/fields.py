"""Helpers shared by the admin pages: form field validation, uploads, paging, CSV safety, audit."""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any, Iterable

from flask import abort, request
from flask_login import current_user
from sqlalchemy import func, select

from ..extensions import db

PER_PAGE = 25
CSV_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class FieldError(ValueError):
    """A submitted field is missing or bad; `field` names it, the message says why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def has_control_chars(text: str, allow_newlines: bool = False) -> bool:
    allowed = {"\n", "\r", "\t"} if allow_newlines else set()
    return any(ord(c) < 32 and c not in allowed for c in text)


def text_field(form, name: str, label: str, max_len: int, required: bool = True, multiline: bool = False) -> str:
    raw = form.get(name, "")
    if not isinstance(raw, str):
        raise FieldError(name, f"{label} must be text.")
    value = raw.strip()
    if required and not value:
        raise FieldError(name, f"{label} is required.")
    if len(value) > max_len:
        raise FieldError(name, f"{label} must be at most {max_len} characters.")
    if has_control_chars(value, allow_newlines=multiline):
        raise FieldError(name, f"{label} must not contain control characters.")
    return value


def int_field(form, name: str, label: str, lo: int, hi: int, default: int | None = None) -> int:
    raw = (form.get(name) or "").strip()
    if raw == "" and default is not None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FieldError(name, f"{label} must be a whole number.") from None
    if not lo <= value <= hi:
        raise FieldError(name, f"{label} must be between {lo} and {hi}.")
    return value


def choice_field(form, name: str, label: str, choices, default: str) -> str:
    """One of `choices` (their values); empty gives the default."""
    raw = (form.get(name) or "").strip() or default
    if raw not in choices:
        raise FieldError(name, f"{label} must be one of: {', '.join(choices)}.")
    return raw


def bool_field(form, name: str) -> bool:
    return (form.get(name) or "").strip().lower() in ("1", "on", "true", "yes", "y")


def query_int(name: str, default: int, lo: int = 1, hi: int = 10**6) -> int:
    """An integer query parameter; junk falls back to the default instead of a 500."""
    raw = request.args.get(name, "")
    try:
        value = int(raw)
    except ValueError:
        return default
    return min(max(value, lo), hi)


@dataclass
class Page:
    items: list
    page: int
    pages: int
    total: int

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def paginate(stmt, page: int, per_page: int = PER_PAGE, scalars: bool = True) -> Page:
    total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    pages = max(1, math.ceil(total / per_page))
    page = min(max(page, 1), pages)
    result = db.session.execute(stmt.limit(per_page).offset((page - 1) * per_page))
    items = list(result.scalars() if scalars else result)
    return Page(items=items, page=page, pages=pages, total=total)


def get_or_404(model, ident: int):
    obj = db.session.get(model, ident)
    if obj is None:
        abort(404)
    return obj


def read_upload(field: str, max_bytes: int) -> str:
    """The uploaded file as text (UTF-8, BOM allowed); FieldError with a clear reason otherwise."""
    upload = request.files.get(field)
    if upload is None or not upload.filename:
        raise FieldError(field, "Choose a file to upload.")
    data = upload.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FieldError(field, f"The file is larger than {max_bytes // 1024} KB.")
    if not data.strip():
        raise FieldError(field, "The file is empty.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FieldError(field, "The file is not UTF-8 text.") from None


def csv_cell(value: Any) -> str:
    """A value for a CSV cell that a spreadsheet will not run as a formula."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(CSV_FORMULA_PREFIXES):
        return "'" + text
    return text


def csv_text(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([csv_cell(h) for h in header])
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return buf.getvalue()


def audit(action: str, target_type: str | None, target_id: int | None, **details: Any) -> None:
    """An audit row in the caller's transaction (committed with the change it describes)."""
    from ..audit import record

    record(current_user.id, action, target_type, target_id, commit=False, **details)
