"""Application settings, read from the environment and validated at start.

Every setting has a default that works on one small server with SQLite. A bad value
raises ConfigError with a message that names the variable; the app refuses to start.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote_plus

REPO_ROOT = Path(__file__).resolve().parent.parent
ASYNC_MODES = ("eventlet", "threading", "gevent")


class ConfigError(ValueError):
    """A configuration value is missing or bad; the message says which."""


def _int(env, name, default, lo, hi):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r}: must be between {lo} and {hi}")
    return value


def _bool(env, name, default):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: expected true or false")


def _secret_key(env, instance_path: Path) -> str:
    key = env.get("FLASK_SECRET_KEY")
    if key:
        if len(key) < 16:
            raise ConfigError("FLASK_SECRET_KEY is too short: use at least 16 random characters")
        return key
    # Generated once per installation and kept in the instance folder (never in the repository).
    path = instance_path / "secret_key"
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if len(key) >= 16:
            return key
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key)
    return key


def database_url(env, instance_path: Path) -> str:
    """DATABASE_URL, else MySQL from MYSQL_* when MYSQL_HOST is set, else SQLite in the instance folder."""
    url = env.get("DATABASE_URL")
    if url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"DATABASE_URL is not a valid SQLAlchemy URL: {url!r}") from None
        if parsed.drivername in ("mysql", "mariadb"):
            # The product's driver is PyMySQL; a bare mysql:// would look for MySQLdb.
            parsed = parsed.set(drivername="mysql+pymysql")
        return parsed.render_as_string(hide_password=False)
    if env.get("MYSQL_HOST"):
        host = env["MYSQL_HOST"]
        port = _int(env, "MYSQL_PORT", 3306, 1, 65535)
        user = env.get("MYSQL_USER", "root")
        password = env.get("MYSQL_PASSWORD", "")
        name = env.get("MYSQL_DB", "examproctordb")
        if not name.replace("_", "").isalnum():
            raise ConfigError(f"MYSQL_DB={name!r}: use letters, digits and underscores only")
        auth = quote_plus(user) + (":" + quote_plus(password) if password else "")
        return f"mysql+pymysql://{auth}@{host}:{port}/{name}?charset=utf8mb4"
    instance_path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{instance_path / 'examproctor.db'}"


# Numeric settings of the live routes (frame upload, MJPEG): name -> (type, default, min, max, meaning).
LIVE_ROUTE_SETTINGS = {
    "PROCTOR_FRAME_MAX_BYTES": (int, 2 * 1024 * 1024, 64 * 1024, 32 * 1024 * 1024, "largest uploaded frame request (base64 JSON included)"),
    "PROCTOR_FRAME_MAX_WIDTH_PX": (int, 640, 160, 1920, "frames are scaled down to fit this width, aspect kept"),
    "PROCTOR_FRAME_MAX_HEIGHT_PX": (int, 480, 120, 1080, "frames are scaled down to fit this height, aspect kept"),
    "PROCTOR_FRAME_MIN_SIDE_PX": (int, 32, 8, 256, "smaller frames are refused"),
    "PROCTOR_FRAME_MAX_SIDE_PX": (int, 4096, 640, 8192, "larger frames are refused"),
    "PROCTOR_MJPEG_FPS": (float, 5.0, 0.5, 30.0, "cap on live-view frames per second"),
    "PROCTOR_MJPEG_MAX_S": (int, 900, 10, 86400, "a live view ends after this many seconds; the page reconnects"),
    "PROCTOR_MJPEG_KEEPALIVE_S": (float, 1.0, 0.1, 30.0, "resend the last frame this often when nothing is new"),
    "PROCTOR_MJPEG_FRESH_S": (float, 1.5, 0.2, 30.0, "a processed frame older than this gives way to a newer raw one"),
    "PROCTOR_MJPEG_MAX_STREAMS": (int, 32, 1, 1024, "open live views per server process"),
}
RATE_SETTINGS = {
    "LOGIN_LIMIT_PER_ADDRESS": "20 per minute;200 per hour",
    "LOGIN_LIMIT_PER_ACCOUNT": "5 per minute;30 per hour",
    "PROCTOR_FRAME_RATE_LIMIT": "10 per second",
    "PROCTOR_EVENT_RATE_LIMIT": "5 per second;120 per minute",
}


def _float(env, name, default, lo, hi):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r}: must be between {lo} and {hi}")
    return value


def load_settings(env=None, instance_path: Path | None = None) -> dict:
    """All Flask config values from the environment (a mapping; os.environ by default)."""
    env = os.environ if env is None else env
    instance_path = Path(instance_path or env.get("PROCTOR_INSTANCE_PATH") or REPO_ROOT / "instance")
    https = _bool(env, "PROCTOR_HTTPS", False)
    async_mode = env.get("PROCTOR_ASYNC_MODE", "eventlet")
    if async_mode not in ASYNC_MODES:
        raise ConfigError(f"PROCTOR_ASYNC_MODE={async_mode!r}: must be one of {', '.join(ASYNC_MODES)}")
    mail_port = _int(env, "MAIL_PORT", 25, 1, 65535)
    settings = {
        "SECRET_KEY": _secret_key(env, instance_path),
        "SQLALCHEMY_DATABASE_URI": database_url(env, instance_path),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_recycle": 280},
        "PROCTOR_HOST": env.get("PROCTOR_HOST", "127.0.0.1"),
        "PROCTOR_PORT": _int(env, "PROCTOR_PORT", 5001, 1, 65535),
        "PROCTOR_ASYNC_MODE": async_mode,
        # Number of reverse proxies in front of the app whose X-Forwarded-* headers are trusted.
        "PROCTOR_PROXY_COUNT": _int(env, "PROCTOR_PROXY_COUNT", 0, 0, 5),
        "PROCTOR_DATA_DIR": str(Path(env.get("PROCTOR_DATA_DIR") or instance_path / "data")),
        "BCRYPT_LOG_ROUNDS": _int(env, "BCRYPT_LOG_ROUNDS", 12, 12, 16),
        "PASSWORD_RESET_MAX_AGE_S": _int(env, "PASSWORD_RESET_MAX_AGE_S", 3600, 60, 7 * 86400),
        "RATELIMIT_STORAGE_URI": env.get("RATELIMIT_STORAGE_URI", "memory://"),
        "RATELIMIT_KEY_PREFIX": env.get("RATELIMIT_KEY_PREFIX", "proctor"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "MAX_CONTENT_LENGTH": _int(env, "PROCTOR_MAX_UPLOAD_BYTES", 8 * 1024 * 1024, 64 * 1024, 512 * 1024 * 1024),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": https,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": https,
        "PREFERRED_URL_SCHEME": "https" if https else "http",
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
        "MAIL_SERVER": env.get("MAIL_SERVER", ""),
        "MAIL_PORT": mail_port,
        "MAIL_USERNAME": env.get("MAIL_USERNAME", ""),
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD", ""),
        "MAIL_USE_TLS": _bool(env, "MAIL_USE_TLS", False),
        "MAIL_USE_SSL": _bool(env, "MAIL_USE_SSL", False),
        "MAIL_DEFAULT_SENDER": env.get("MAIL_DEFAULT_SENDER", "proctor@localhost"),
        "MAIL_TIMEOUT_S": _int(env, "MAIL_TIMEOUT_S", 10, 1, 120),
    }
    for name, default in RATE_SETTINGS.items():
        settings[name] = env.get(name) or default
    for name, (kind, default, lo, hi, _meaning) in LIVE_ROUTE_SETTINGS.items():
        settings[name] = (_int if kind is int else _float)(env, name, default, lo, hi)
    if settings["MAIL_USE_TLS"] and settings["MAIL_USE_SSL"]:
        raise ConfigError("MAIL_USE_TLS and MAIL_USE_SSL are exclusive: set one")
    from flask_limiter.util import get_remote_address  # noqa: F401 (import check)
    from limits import parse_many

    for name in RATE_SETTINGS:
        try:
            parse_many(settings[name])
        except ValueError:
            raise ConfigError(f"{name}={settings[name]!r}: not a rate limit such as '5 per minute'") from None
    return settings


def apply_module_settings(config, defaults: dict, env=None) -> None:
    """Fill app config with a module's settings: environment value (typed like its default), else the
    config's own value, else the default. A bad value raises ConfigError naming the variable."""
    from limits import parse_many

    env = os.environ if env is None else env
    for name, default in defaults.items():
        raw = env.get(name)
        if raw not in (None, ""):
            if isinstance(default, bool):
                value = _bool(env, name, default)
            elif isinstance(default, int):
                value = _int(env, name, default, 0, 2**31)
            elif isinstance(default, float):
                value = _float(env, name, default, 0.0, 1e9)
            else:
                value = raw
            config[name] = value
        value = config.setdefault(name, default)
        if name.endswith("_LIMIT") and isinstance(default, str):
            try:
                parse_many(value)
            except (ValueError, TypeError):
                raise ConfigError(f"{name}={value!r}: not a rate limit such as '10 per minute'") from None
