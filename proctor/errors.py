"""Errors: friendly HTML pages for the site, {"error", "code"} for JSON blueprints (jsonapi).

The JSON blueprints handle their own errors; the handlers here serve pages, and requests that
reached no view at all (a 404 or 405 under a JSON blueprint's URLs still gets JSON).
"""
import logging

from flask import jsonify, render_template
from werkzeug.exceptions import HTTPException, InternalServerError

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
    507: ("Storage full", "The server has no room left to store this. It has been logged; try again later."),
    500: ("Something went wrong", "The server hit an error. It has been logged; please try again."),
}
# Codes whose specific description (e.g. which field is wrong) an API client is shown.
SPECIFIC = (400, 404, 409, 413, 429, 507)


def specific_description(exc: HTTPException) -> str | None:
    code = exc.code or 500
    if code not in SPECIFIC or exc.description == type(exc).description:
        return None  # werkzeug's generic text: the friendly one reads better
    return exc.description


def json_error(code: int, description: str | None = None):
    _title, message = MESSAGES.get(code, ("Error", "The request failed."))
    return jsonify(error=description or message, code=code), code


def page_error(code: int):
    title, message = MESSAGES.get(code, ("Error", "The request failed."))
    return render_template("error.html", code=code, title=title, message=message), code


def register_error_handlers(app):
    from .jsonapi import is_json_view

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = exc.code or 500
        if code >= 500:
            log.error("HTTP %s on request: %s", code, exc)
        if is_json_view():
            return json_error(code, specific_description(exc))
        return page_error(code)

    @app.errorhandler(Exception)
    def unhandled(exc: Exception):
        log.exception("unhandled error: %s", exc)
        if is_json_view():
            return json_error(InternalServerError.code)
        return page_error(InternalServerError.code)
