"""The audit trail: one AuditLog row per admin action (who, what, which record, from where, when).

Used by the admin pages and by the live runtime's store (proctor/live_store.py), which records the
proctor's live actions (proctor.api.live_actions) and automatic terminations.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from flask import has_request_context, request

from .extensions import db
from .models import AuditLog

log = logging.getLogger(__name__)

ACTION_MAX = 64
TARGET_TYPE_MAX = 32
ADDRESS_MAX = 64
DETAILS_MAX_CHARS = 8000  # a Text column; long free text (reasons) is cut, never refused


def _client_address() -> str | None:
    # request.remote_addr already honours PROCTOR_PROXY_COUNT (ProxyFix); X-Forwarded-For is not read here.
    if not has_request_context():
        return None
    addr = request.remote_addr
    return addr[:ADDRESS_MAX] if addr else None


def _details_json(details: dict[str, Any]) -> str:
    text = json.dumps(details, default=str, sort_keys=True, ensure_ascii=False)
    if len(text) > DETAILS_MAX_CHARS:
        text = json.dumps({"truncated": True, "text": text[: DETAILS_MAX_CHARS - 100]}, ensure_ascii=False)
    return text


def record(actor_id: int | None, action: str, target_type: str | None = None, target_id: int | None = None,
           *, commit: bool = True, **details: Any) -> AuditLog:
    """Write one audit row and (by default) commit it.

    `actor_id` is the admin's user id (None for the system itself), `action` a short verb such as
    "session.terminate", `target_type`/`target_id` the record acted on, `details` anything JSON-able.
    Pass commit=False to make the row part of the caller's own transaction.
    """
    if not action or len(action) > ACTION_MAX:
        raise ValueError(f"audit action must be 1 to {ACTION_MAX} characters, not {action!r}")
    if target_type is not None and len(target_type) > TARGET_TYPE_MAX:
        raise ValueError(f"audit target_type longer than {TARGET_TYPE_MAX} characters: {target_type!r}")
    row = AuditLog(
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=_details_json(details),
        client_address=_client_address(),
    )
    db.session.add(row)
    if commit:
        db.session.commit()
    log.info("audit: actor=%s %s %s:%s %s", actor_id, action, target_type, target_id, row.details[:200])
    return row
