"""JSON APIs: blueprints that own their errors, and checked request bodies.

`json_blueprint(...)` makes a blueprint whose every error - a refused field, an abort(), a 404
from a lookup, an unhandled exception - is {"error": ..., "code": ...} with the right status.
Pages keep the friendly HTML errors of errors.py; which one a request gets is decided by the
blueprint of the view it reached, not by its path.
"""
from __future__ import annotations

import json
import logging
import math

from flask import Blueprint, current_app, request
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A request the API refuses: `message` for the client, `status` the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def api_error_response(exc):
    """The JSON answer for an ApiError (or any error with .message and .status)."""
    if exc.status >= 500:
        log.error("api %s: %s", request.path, exc.message)
    else:
        log.info("api %s refused (%s): %s", request.path, exc.status, exc.message)
    from .errors import json_error

    return json_error(exc.status, exc.message)


def _http_error(exc: HTTPException):
    from .errors import json_error, specific_description

    code = exc.code or 500
    if code >= 500:
        log.error("HTTP %s on %s: %s", code, request.path, exc)
    return json_error(code, specific_description(exc))


def _unhandled(exc: Exception):
    from .errors import json_error

    log.exception("unhandled error on %s: %s", request.path, exc)
    return json_error(InternalServerError.code)


def json_blueprint(name: str, import_name: str, url_prefix: str) -> Blueprint:
    """A blueprint whose errors are JSON (see the module docstring)."""
    bp = Blueprint(name, import_name, url_prefix=url_prefix)
    bp.json_errors = True
    bp.register_error_handler(ApiError, api_error_response)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(Exception, _unhandled)
    return bp


def is_json_view() -> bool:
    """True when the request reached a view of a JSON blueprint; for a URL that matched no view,
    when it lies under a JSON blueprint's prefix or the client asks for JSON first."""
    if request.blueprint is not None:
        bp = current_app.blueprints.get(request.blueprint)
        return bool(getattr(bp, "json_errors", False))
    if request.url_rule is not None:
        return False  # a view registered on the app itself: a page
    for bp in current_app.blueprints.values():
        prefix = (getattr(bp, "url_prefix", None) or "").rstrip("/")
        if getattr(bp, "json_errors", False) and prefix and (request.path == prefix or request.path.startswith(prefix + "/")):
            return True
    return request.accept_mimetypes.best == "application/json"


# --- request bodies and fields -------------------------------------------------------------

def json_body(max_bytes: int | None = None) -> dict:
    """The request body as a JSON object: 413 when over max_bytes, 400 when it is not a JSON object."""
    too_big = f"request body over the {max_bytes // 1024 if max_bytes else 0} KiB limit for this address"
    if max_bytes is not None and request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(too_big, 413)
    if not request.is_json:
        raise ApiError("send a JSON object (Content-Type: application/json)")
    if max_bytes is not None and request.content_length is None:
        data = request.stream.read(max_bytes + 1)
    else:
        data = request.get_data(cache=True)
    if max_bytes is not None and len(data) > max_bytes:
        raise ApiError(too_big, 413)
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ApiError("the body is not valid JSON") from None
    except RecursionError:  # e.g. [[[[...]]]] 2,000 deep: the parser's recursion, not a server fault
        raise ApiError("the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError("send a JSON object (Content-Type: application/json)")
    return body


ID_MAX = 2**31 - 1  # the largest id a row can have (INT on MariaDB; SQLite's 64-bit rowid goes further)


def parse_id(raw, name: str) -> int:
    """An id sent as text (a form field): ASCII digits only, at most ID_MAX; ApiError otherwise."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(ID_MAX)) or int(text) > ID_MAX:
        raise ApiError(f"{name} must be a whole number between 0 and {ID_MAX}")
    return int(text)


def is_number(value) -> bool:
    """A finite JSON number (not a bool). Whole numbers of any size are numbers: their range is
    checked by the caller without converting them to float (which overflows past 1e308)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


def number_field(value, name: str, lo: float, hi: float) -> float:
    if not is_number(value):
        raise ApiError(f"'{name}' must be a number")
    if not lo <= value <= hi:
        raise ApiError(f"'{name}' must be between {lo:g} and {hi:g}")
    return float(value)


def bool_field(body: dict, name: str) -> bool:
    value = body.get(name)
    if not isinstance(value, bool):
        raise ApiError(f"'{name}' must be true or false")
    return value
