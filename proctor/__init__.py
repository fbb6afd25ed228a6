"""The web layer: the app factory, one package per area (auth, student, admin, api), the shared
helpers they use, persistence, Socket.IO, and the live runtime (proctor.live).

Dependencies run one way: web areas -> live runtime -> decision/warning -> pipelines -> config.
docs/architecture.md says who may import whom.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask, redirect, url_for
from flask_login import current_user
from werkzeug.routing import IntegerConverter

from .datafiles import check_writable
from .extensions import csrf, db, limiter, login_manager, migrate, socketio
from .jsonapi import ID_MAX
from .settings import REPO_ROOT, ConfigError, check_config, instance_path_from, load_settings

__all__ = ["create_app", "init_db", "ConfigError"]

log = logging.getLogger(__name__)
MIGRATIONS_DIR = REPO_ROOT / "migrations"


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` from 0 to jsonapi.ID_MAX (a larger number matches no route: 404)."""

    def __init__(self, url_map, fixed_digits=0, min=None, max=None, signed=False):
        super().__init__(url_map, fixed_digits=fixed_digits, min=min, max=ID_MAX if max is None else max, signed=signed)


def create_app(config: dict | None = None, env=None) -> Flask:
    """Build the app. `config` overrides settings read from the environment (tests use it)."""
    configure_logging()
    config = dict(config or {})
    env = os.environ if env is None else env
    instance_path = Path(config.pop("INSTANCE_PATH", None) or instance_path_from(env))
    app = Flask(
        __name__,
        instance_path=str(instance_path),
        template_folder=str(REPO_ROOT / "templates"),
        static_folder=str(REPO_ROOT / "static"),
    )
    # Every <int:...> in a URL is bounded: an id past any row's range is a 404, never an
    # OverflowError from the database driver (SQLite refuses integers past 2**63).
    app.url_map.converters["int"] = BoundedIntConverter
    app.config.update(load_settings(env, instance_path))
    app.config.update(config)
    check_config(app.config)
    check_writable(app.config["PROCTOR_DATA_DIR"])

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
    if app.config["PROCTOR_ASYNC_MODE"] == "eventlet":
        from . import websocket_mask

        websocket_mask.install()  # eventlet unmasks client frames byte by byte in Python (see the module)
    queue = {}
    if app.config.get("PROCTOR_BROKER_URL"):
        # Several web processes: an event emitted in one reaches the sockets of all (proctor/live/cluster.py).
        queue = {"message_queue": app.config["PROCTOR_BROKER_URL"],
                 "channel": f"{app.config.get('PROCTOR_BROKER_NAMESPACE') or 'proctor'}-socketio"}
    socketio.init_app(app, async_mode=app.config["PROCTOR_ASYNC_MODE"], manage_session=False, **queue)

    from .models import User

    @login_manager.user_loader
    def load_user(user_id: str):
        if not (user_id.isascii() and user_id.isdigit()) or len(user_id) > 10:
            return None
        user = db.session.get(User, int(user_id))
        return user if user is not None and user.is_active else None

    from . import admin, api, auth, expiry, live, page_data, sockets, student
    from .errors import register_error_handlers
    from .live_store import SqlLiveStore
    from .security import PUBLIC, access

    for blueprint in (auth.bp, student.bp, student.api_bp, admin.bp, api.bp):
        app.register_blueprint(blueprint)
    live.init_app(app, socketio, store=SqlLiveStore(app))  # the live runtime (starts lazily on first use)
    sockets.init_app(app, socketio)
    api.frame_socket.init_app(app, socketio)  # camera frames on the students' sockets
    expiry.init_app(app)
    page_data.init_app(app)
    register_error_handlers(app)

    @app.route("/")
    @access(PUBLIC)
    def index():
        if current_user.is_authenticated:
            return redirect(auth.home_for(current_user))
        return redirect(url_for("auth.login"))

    from .security import security_headers

    app.after_request(security_headers)

    from .cli import register_cli

    register_cli(app)
    return app


def start_live(app: Flask) -> None:
    """The server's start: the live runtime's workers load and warm their models now rather than on
    the first frame (12-22 s during which the first student would not be analysed)."""
    if app.config["PROCTOR_LIVE_START_WITH_SERVER"]:
        from .live import get_runtime

        get_runtime(app).start()


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
