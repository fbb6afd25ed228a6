"""What the student's upload routes share (audio chunks, screenshots, room scans): reading a
multipart file within its limit, the per-session quota of one kind of recording, and writing the
file with a clear 507 when the data folder is full. Errors are ApiErrors ({"error", "code"})."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import request
from sqlalchemy import func, select

from .datafiles import is_storage_full, write_file
from .extensions import db
from .jsonapi import ApiError
from .models import Recording

log = logging.getLogger(__name__)


def read_file_field(field: str, limit: int, accepted, what: str) -> tuple[str, bytes]:
    """(mime, bytes) of the multipart file `field`: 400 when missing or empty, 415 when its type is not
    one of `accepted`, 413 over `limit` bytes (read no further than one byte past it)."""
    upload = request.files.get(field)
    if upload is None:
        raise ApiError(f"the {what} file is required (field '{field}')")
    mime = (upload.mimetype or "").lower()
    if mime not in accepted:
        raise ApiError(f"type {mime or 'unknown'!r} is not accepted for the {what}: send {' or '.join(accepted)}", 415)
    raw = upload.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(f"the {what} is limited to {limit} bytes", 413)
    if not raw:
        raise ApiError(f"the {what} is empty")
    return mime, raw


def check_session_quota(session_id: int, kind: str, size: int, quota: int, what: str) -> None:
    """413 when the session's stored recordings of `kind` plus `size` bytes would pass `quota`."""
    stored = db.session.scalar(select(func.coalesce(func.sum(Recording.bytes), 0))
                               .where(Recording.session_id == session_id, Recording.kind == kind))
    if stored + size > quota:
        log.warning("%s quota reached: session %s has %s bytes, %s bytes more refused", kind, session_id, stored, size)
        raise ApiError(f"this exam session reached its {what} limit of {quota} bytes: no more are stored", 413)


def store_file(rel: Path | str, data: bytes, what: str, owner: str) -> None:
    """Write the upload under the data folder; 507 (nothing stored) when the disk is full."""
    try:
        write_file(rel, data)
    except OSError as exc:
        if not is_storage_full(exc):
            raise
        log.error("%s of %s not stored: the data folder is full (%s)", what, owner, exc)
        raise ApiError(f"the server's storage is full: the {what} was not saved", 507) from None
