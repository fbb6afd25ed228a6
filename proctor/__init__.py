"""The web layer: app factory, blueprints, persistence and (later) the live runtime.

Dependencies run one way: this package -> live runtime -> decision/warning -> pipelines -> config.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, redirect, url_for
from flask_login import current_user

from .extensions import csrf, db, limiter, login_manager, migrate, socketio
from .settings import REPO_ROOT, ConfigError, load_settings

__all__ = ["create_app", "init_db", "ConfigError"]

log = logging.getLogger(__name__)
MIGRATIONS_DIR = REPO_ROOT / "migrations"


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def create_app(config: dict | None = None, env=None) -> Flask:
    """Build the app. `config` overrides settings read from the environment (tests use it)."""
    configure_logging()
    config = dict(config or {})
    env = os.environ if env is None else env
    instance_path = Path(config.pop("INSTANCE_PATH", None) or env.get("PROCTOR_INSTANCE_PATH") or REPO_ROOT / "instance")
    app = Flask(
        __name__,
        instance_path=str(instance_path),
        template_folder=str(REPO_ROOT / "templates"),
        static_folder=str(REPO_ROOT / "static"),
    )
    app.config.update(load_settings(env, instance_path))
    app.config.update(config)
    Path(app.config["PROCTOR_DATA_DIR"]).mkdir(parents=True, exist_ok=True)

    if app.config["PROCTOR_PROXY_COUNT"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = app.config["PROCTOR_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)

    from .security import enforce_access

    # Access is checked before anything else (CSRF included), so an anonymous API call gets 401.
    app.before_request(enforce_access)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    # cors_allowed_origins left at its default: only pages of this same origin may open a socket.
    socketio.init_app(app, async_mode=app.config["PROCTOR_ASYNC_MODE"], manage_session=False)

    from .models import Student

    @login_manager.user_loader
    def load_user(user_id: str):
        if not user_id.isdigit():
            return None
        student = db.session.get(Student, int(user_id))
        return student if student is not None and student.is_active else None

    from . import admin, api, auth, student
    from .errors import register_error_handlers
    from .security import PUBLIC, access

    app.register_blueprint(auth.bp)
    app.register_blueprint(student.bp, url_prefix="/student")
    app.register_blueprint(admin.bp)
    app.register_blueprint(api.bp)
    from . import exam, exam_api

    app.register_blueprint(exam.bp, url_prefix="/student")
    app.register_blueprint(exam_api.bp)
    from . import live, live_routes, sockets

    live.init_app(app, socketio)  # the live runtime (starts lazily on first use)
    app.register_blueprint(live_routes.api_bp)
    app.register_blueprint(live_routes.admin_bp)
    sockets.init_app(app, socketio)
    register_error_handlers(app)
    from .page_data import init_app as init_page_data; init_page_data(app)

    @app.route("/")
    @access(PUBLIC)
    def index():
        if current_user.is_authenticated:
            return redirect(auth.home_for(current_user))
        return redirect(url_for("auth.login"))

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
            "connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        )
        return response

    from .cli import register_cli

    register_cli(app)
    return app


def init_db(app: Flask) -> None:
    """Bring the schema up to date (runs the Alembic migrations; creates every table on a new database)."""
    from flask_migrate import upgrade

    root = logging.getLogger()
    level = root.level
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
    # Alembic's logging config (migrations/alembic.ini) lowers the root logger to WARN; the app's
    # structured INFO logs (frames, warnings, violations) must survive the start-up migration.
    root.setLevel(level)
