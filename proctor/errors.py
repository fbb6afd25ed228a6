"""Friendly error pages for HTML, JSON errors under /api/."""
import logging

from flask import jsonify, render_template
from werkzeug.exceptions import HTTPException, InternalServerError

from .security import is_api_request

log = logging.getLogger(__name__)

MESSAGES = {
    400: ("Bad request", "The request could not be understood. Check the form and try again."),
    401: ("Sign in required", "Please sign in to continue."),
    403: ("Not allowed", "Your account does not have access to this page."),
    404: ("Not found", "There is nothing at this address."),
    405: ("Method not allowed", "This address does not accept that kind of request."),
    409: ("Conflict", "The request conflicts with the current state."),
    413: ("Too large", "What you sent is larger than the server accepts."),
    429: ("Too many requests", "Too many attempts. Wait a minute, then try again."),
    500: ("Something went wrong", "The server hit an error. It has been logged; please try again."),
}


def _respond(code: int, description: str | None = None):
    title, message = MESSAGES.get(code, ("Error", "The request failed."))
    if is_api_request():
        return jsonify(error=description or message, code=code), code
    return render_template("error.html", code=code, title=title, message=message), code


def register_error_handlers(app):
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        if code >= 500:
            log.error("HTTP %s on request: %s", code, exc)
        # API clients get the specific description (e.g. which field is wrong); pages get the friendly text.
        description = exc.description if code in (400, 409, 413, 429) else None
        return _respond(code, description)

    @app.errorhandler(Exception)
    def unhandled(exc: Exception):
        log.exception("unhandled error: %s", exc)
        return _respond(InternalServerError.code)
