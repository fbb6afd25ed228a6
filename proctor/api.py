"""JSON API under /api/. Every error here is {"error": ..., "code": ...} with the right status."""
from flask import Blueprint, jsonify
from flask_login import current_user
from sqlalchemy import text

from .extensions import db
from .security import LOGIN, PUBLIC, access

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.route("/health")
@access(PUBLIC)
def health():
    try:
        db.session.execute(text("SELECT 1"))
        database = "ok"
    except Exception:  # noqa: BLE001 - reported, not raised: this is the health probe
        database = "unavailable"
    status = 200 if database == "ok" else 503
    return jsonify(status="ok" if status == 200 else "degraded", database=database), status


@bp.route("/me")
@access(LOGIN)
def me():
    return jsonify(id=current_user.id, name=current_user.name, email=current_user.email, role=current_user.role)
