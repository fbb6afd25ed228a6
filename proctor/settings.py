"""Every app setting in one typed table: name, default, bounds, meaning.

A setting's name is both its environment variable and its app.config key (three exceptions are
marked with `config_key`). `load_settings(env)` reads the environment; `check_config(config)`
validates what ends up in app.config (tests and embedders pass values directly), so a bad value
stops the app at start with a ConfigError that names the setting. The vision tunables
(thresholds, durations, detector) are a separate table in config_vision.py, read the same way.

`flask --app app settings` prints both tables; README.md's table lists exactly the rows here.
"""
from __future__ import annotations

import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote_plus

REPO_ROOT = Path(__file__).resolve().parent.parent
ASYNC_MODES = ("eventlet", "threading", "gevent")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MIB = 1024 * 1024


class ConfigError(ValueError):
    """A configuration value is missing or bad; the message says which."""


@dataclass(frozen=True)
class AppSetting:
    name: str
    kind: str  # int, float, bool, text, choice, rate (a rate limit such as "5 per minute"), json
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    config_key: str | None = None  # app.config key when it differs from the name ("" = read only by load_settings)
    secret: bool = False            # never printed
    testing_min: float | None = None  # a lower bound allowed only when app.config["TESTING"] is on

    @property
    def key(self) -> str:
        return self.name if self.config_key is None else self.config_key

    def bounds(self) -> str:
        if self.choices:
            return " | ".join(self.choices)
        if self.min is not None:
            return f"{self.min:g}..{self.max:g}"
        return ""


def _s(name, kind, default, description, lo=None, hi=None, **kw) -> AppSetting:
    return AppSetting(name, kind, default, description, lo, hi, **kw)


SETTINGS: tuple[AppSetting, ...] = (
    # --- server
    _s("PROCTOR_HOST", "text", "127.0.0.1", "Address the server listens on."),
    _s("PROCTOR_PORT", "int", 5001, "Port the server listens on.", 1, 65535),
    _s("PROCTOR_ASYNC_MODE", "choice", "eventlet", "Socket.IO server mode.", choices=ASYNC_MODES),
    _s("PROCTOR_INSTANCE_PATH", "text", "instance", "Folder for the SQLite file, the secret key and data (relative to the repository).",
       config_key=""),
    _s("PROCTOR_DATA_DIR", "text", "", "Face images, evidence snapshots and clips, audio recordings (empty: INSTANCE_PATH/data)."),
    _s("PROCTOR_HTTPS", "bool", False, "Served over HTTPS: cookies become Secure and external links use https."),
    _s("PROCTOR_PUBLIC_URL", "text", "", "External base URL, e.g. https://exam.school.edu: reset links are built from it and other "
       "hosts are refused (required with MAIL_SERVER)."),
    _s("PROCTOR_PROXY_COUNT", "int", 0, "Reverse proxies whose X-Forwarded-* headers are trusted (0: none).", 0, 5),
    _s("PROCTOR_MAX_UPLOAD_BYTES", "int", 8 * MIB, "Largest request body.", 64 * 1024, 512 * MIB,
       config_key="MAX_CONTENT_LENGTH"),
    # --- secrets and database
    _s("FLASK_SECRET_KEY", "text", "", "Session signing key, 16+ characters (empty: generated once into INSTANCE_PATH/secret_key).",
       config_key="", secret=True),
    _s("DATABASE_URL", "text", "", "Any SQLAlchemy URL; mysql:// uses PyMySQL (empty: MYSQL_* when MYSQL_HOST is set, else SQLite).",
       config_key="", secret=True),
    _s("MYSQL_HOST", "text", "", "Setting it selects MySQL/MariaDB (with the MYSQL_* below).", config_key=""),
    _s("MYSQL_PORT", "int", 3306, "MySQL/MariaDB port.", 1, 65535, config_key=""),
    _s("MYSQL_USER", "text", "root", "MySQL/MariaDB user.", config_key=""),
    _s("MYSQL_PASSWORD", "text", "", "MySQL/MariaDB password.", config_key="", secret=True),
    _s("MYSQL_DB", "text", "examproctordb", "MySQL/MariaDB database name (letters, digits, underscores).", config_key=""),
    # --- accounts
    _s("BCRYPT_LOG_ROUNDS", "int", 12, "bcrypt cost of password hashes (tests may lower it to 4).", 12, 16, testing_min=4),
    _s("PASSWORD_RESET_MAX_AGE_S", "int", 3600, "Lifetime of a password-reset link.", 60, 7 * 86400),
    _s("LOGIN_LIMIT_PER_ADDRESS", "rate", "20 per minute;200 per hour", "Login, signup and reset attempts per client address."),
    _s("LOGIN_LIMIT_PER_ACCOUNT", "rate", "5 per minute;30 per hour", "Login and reset attempts per account."),
    _s("RATELIMIT_STORAGE_URI", "text", "memory://", "Rate-limit store; redis://127.0.0.1:6379 lets several server processes share one budget."),
    _s("RATELIMIT_KEY_PREFIX", "text", "proctor", "Prefix of this installation's keys in the rate-limit store."),
    # --- mail
    _s("MAIL_SERVER", "text", "", "SMTP server for password-reset mail (empty: links go to the log)."),
    _s("MAIL_PORT", "int", 25, "SMTP port.", 1, 65535),
    _s("MAIL_USERNAME", "text", "", "SMTP user."),
    _s("MAIL_PASSWORD", "text", "", "SMTP password.", secret=True),
    _s("MAIL_USE_TLS", "bool", False, "STARTTLS after connecting (exclusive with MAIL_USE_SSL)."),
    _s("MAIL_USE_SSL", "bool", False, "SMTP over TLS from the start."),
    _s("MAIL_DEFAULT_SENDER", "text", "proctor@localhost", "From address of the mail."),
    _s("MAIL_TIMEOUT_S", "int", 10, "SMTP connection timeout.", 1, 120),
    # --- the student's journey
    _s("PROCTOR_RULES_VERSION", "text", "2026-11", "Version of the exam rules; students accept each new version once."),
    _s("PROCTOR_SYSTEM_CHECK_VALID_S", "int", 4 * 3600, "A passed system check is good for this long.", 60, 7 * 86400),
    _s("PROCTOR_MIN_UPLOAD_KBPS", "int", 256, "The system check's upload-speed bar.", 0, 1_000_000),
    _s("PROCTOR_UPLOAD_TEST_MAX_BYTES", "int", 2 * MIB, "Largest upload-speed test body.", 64 * 1024, 64 * MIB),
    _s("PROCTOR_INFERENCE_TIMEOUT_S", "float", 10.0, "One face inference in a request (registration, identity confirmation).", 1, 300),
    _s("PROCTOR_IDENTITY_MATCH_FRAMES", "int", 3, "Matching frames that confirm identity before the exam.", 1, 50),
    _s("PROCTOR_IDENTITY_MISMATCH_FRAMES", "int", 3, "Non-matching frames that refuse the confirmation attempt.", 1, 50),
    _s("PROCTOR_IDENTITY_VALID_S", "int", 1800, "A confirmation is good for starting the exam this long.", 60, 86400),
    _s("PROCTOR_EXAM_MAX_ATTEMPTS", "int", 1, "Finished attempts allowed per exam and student.", 1, 100),
    _s("PROCTOR_EXPIRY_SWEEP_S", "float", 60.0, "Seconds between sweeps that submit sessions past their deadline (0: only when touched).", 0, 3600),
    _s("PROCTOR_CAMERA_FPS", "float", 2.0, "Camera frames per second the exam page uploads.", 0.2, 10),
    _s("PROCTOR_AUDIO_CHUNK_MAX_BYTES", "int", 2 * MIB, "Largest audio recording chunk.", 16 * 1024, 64 * MIB),
    _s("PROCTOR_AUDIO_BITRATE_BPS", "int", 32_000, "Bitrate the exam page asks MediaRecorder to record audio at.", 6_000, 256_000),
    _s("PROCTOR_AUDIO_MAX_BYTES_PER_SESSION", "int", 100 * MIB,
       "Audio stored per exam session; later chunks get 413 (100 MiB: about 7 h at 32 kbps).", MIB, 64 * 1024 * MIB,
       testing_min=1024),
    # --- screenshots of the shared screen (exams with screen_share "required")
    _s("PROCTOR_SCREENSHOT_MAX_BYTES", "int", 600 * 1024, "Largest screenshot of the shared screen (one JPEG).", 32 * 1024, 8 * MIB),
    _s("PROCTOR_SCREENSHOT_MAX_SIDE_PX", "int", 1280, "The exam page scales screenshots to this long side; larger ones are refused.", 640, 1920),
    _s("PROCTOR_SCREENSHOT_MAX_BYTES_PER_SESSION", "int", 500 * MIB,
       "Screenshots stored per exam session; later ones get 413 (500 MiB: about 5 h at one 150 KB screenshot every 5 s).",
       MIB, 64 * 1024 * MIB, testing_min=1024),
    _s("PROCTOR_ROOM_SCAN_MAX_BYTES", "int", 6 * MIB, "Largest room-scan clip (the page records at most 20 s at 400 kbps, about 1 MB; "
       "keep it under PROCTOR_MAX_UPLOAD_BYTES).", 256 * 1024, 64 * MIB),
    # --- per-account request limits on routes that cost CPU or disk
    _s("PROCTOR_IDENTITY_FRAME_LIMIT", "rate", "8 per second;240 per minute", "Identity-confirmation frames per account."),
    _s("PROCTOR_FACE_UPLOAD_LIMIT", "rate", "10 per minute;60 per hour", "Face registrations per account."),
    _s("PROCTOR_UPLOAD_TEST_LIMIT", "rate", "10 per minute", "Upload-speed tests per account."),
    _s("PROCTOR_AUDIO_CHUNK_LIMIT", "rate", "30 per minute", "Audio chunks per account."),
    _s("PROCTOR_SCREENSHOT_LIMIT", "rate", "20 per minute", "Screenshots of the shared screen per account (the page sends at most one every 5 s)."),
    _s("PROCTOR_ROOM_SCAN_LIMIT", "rate", "6 per minute;30 per hour", "Room-scan uploads per account."),
    _s("PROCTOR_FRAME_RATE_LIMIT", "rate", "10 per second", "Camera frames per account."),
    _s("PROCTOR_EVENT_RATE_LIMIT", "rate", "5 per second;120 per minute", "Browser events (tab switch, voice...) per account."),
    _s("PROCTOR_HAND_RAISE_LIMIT", "rate", "3 per minute;20 per hour", "Raised hands (a student asking the proctor) per account."),
    # --- camera frames
    _s("PROCTOR_FRAME_MAX_BYTES", "int", 2 * MIB, "Largest uploaded frame request (base64 JSON included).", 64 * 1024, 32 * MIB),
    _s("PROCTOR_FRAME_MAX_WIDTH_PX", "int", 640, "Frames are scaled down to fit this width, aspect kept.", 160, 1920),
    _s("PROCTOR_FRAME_MAX_HEIGHT_PX", "int", 480, "Frames are scaled down to fit this height, aspect kept.", 120, 1080),
    _s("PROCTOR_FRAME_MIN_SIDE_PX", "int", 32, "Smaller frames are refused.", 8, 256),
    _s("PROCTOR_FRAME_MAX_SIDE_PX", "int", 1920, "Larger frames are refused from their header, before decoding: a webcam frame is at most 1920 px and is scaled to 640x480 anyway, while decoding a 4096 px one costs the server about 100 ms of CPU.", 640, 1920),
    _s("PROCTOR_FRAME_DECODE_TIMEOUT_S", "float", 5.0, "A frame that takes longer to decode (off the event loop) is refused with 503.", 0.5, 60),
    # --- live analysis
    _s("PROCTOR_LIVE_ENABLED", "bool", True, "Run the vision workers at all."),
    _s("PROCTOR_LIVE_WORKERS", "int", 2, "Vision worker processes (one core each).", 1, 16),
    _s("PROCTOR_LIVE_START_WITH_SERVER", "bool", True, "Start the vision workers and load their models when the server starts "
       "(python app.py), so the first student after a restart is analysed at once; off: they start on the first frame. "
       "/api/health's live.ready says when they are warm."),
    _s("PROCTOR_BROKER_URL", "text", "", "Distributed mode: a Redis URL (redis://host:6379/0); frames are analysed by Celery workers "
       "started with scripts/worker on any machine, instead of this process's own (PROCTOR_LIVE_WORKERS is then unused). "
       "Empty: the embedded mode.", secret=True),
    _s("PROCTOR_BROKER_NAMESPACE", "text", "proctor", "Prefix of the distributed mode's Redis keys and Celery queues "
       "(one per installation sharing a Redis; the workers' PROCTOR_BROKER_NAMESPACE must match)."),
    _s("PROCTOR_LIVE_PREROLL_S", "float", 8.0, "A violation's clip starts this many seconds before its condition began.", 2, 30),
    _s("PROCTOR_LIVE_POSTROLL_S", "float", 3.0, "A violation's clip ends this many seconds after its rule fired (the clip is written then; 0: at once).", 0, 30),
    _s("PROCTOR_LIVE_STATUS_EVERY_S", "float", 1.0, "Period of each student's status push to admins.", 0.2, 10),
    _s("PROCTOR_LIVE_STALL_S", "float", 30.0, "No live-loop pass for this long: /api/health answers 503 and logs it (frames are not analysed).", 2, 600),
    _s("PROCTOR_LIVE_LOG_LEVEL", "choice", "INFO", "Log level of the live runtime (per-frame lines are DEBUG).", choices=LOG_LEVELS),
    _s("PROCTOR_VISION_OVERRIDES", "json", {}, "JSON object of vision settings for this app (on top of config_vision's PROCTOR_<NAME>)."),
    # --- the proctor's live view
    _s("PROCTOR_MJPEG_FPS", "float", 5.0, "Cap on live-view frames per second.", 0.5, 30),
    _s("PROCTOR_MJPEG_MAX_S", "int", 900, "A live view ends after this many seconds; the page reconnects.", 10, 86400),
    _s("PROCTOR_MJPEG_KEEPALIVE_S", "float", 1.0, "Resend the last frame this often when nothing is new.", 0.1, 30),
    _s("PROCTOR_MJPEG_FRESH_S", "float", 1.5, "A processed frame older than this gives way to a newer raw one.", 0.2, 30),
    _s("PROCTOR_MJPEG_MAX_STREAMS", "int", 32, "Open live views per server process.", 1, 1024),
)
BY_NAME = {s.name: s for s in SETTINGS}
BY_KEY = {s.key: s for s in SETTINGS if s.key}


def parse(spec: AppSetting, raw: Any, source: str = "environment", testing: bool = False) -> Any:
    """A raw value (text from the environment, or a Python value from app.config) checked and typed."""
    where = f"{spec.name}={raw!r}" + (f" ({source})" if source != "environment" else "")
    if source != "environment" and spec.kind in ("int", "float", "bool") and isinstance(raw, str):
        raise ConfigError(f"{where}: expected {'true or false' if spec.kind == 'bool' else 'a number'}, not text")
    if spec.kind == "bool":
        if isinstance(raw, bool):
            return raw
        low = str(raw).strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false")
    if spec.kind in ("int", "float"):
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected a number")
        try:
            if spec.kind == "int" and isinstance(raw, float) and not raw.is_integer():
                raise ValueError(raw)
            value = int(str(raw).strip()) if spec.kind == "int" and isinstance(raw, str) else int(raw) if spec.kind == "int" else float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {'a whole number' if spec.kind == 'int' else 'a number'}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number")
        lo = spec.testing_min if testing and spec.testing_min is not None else spec.min
        if spec.min is not None and not lo <= value <= spec.max:
            raise ConfigError(f"{where}: must be between {lo:g} and {spec.max:g}")
        return value
    if spec.kind == "json":
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw) if raw.strip() else {}
            except ValueError:
                raise ConfigError(f"{where}: not valid JSON") from None
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a JSON object")
        return dict(value)
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: expected text")
    if spec.kind == "choice" and raw not in spec.choices:
        raise ConfigError(f"{where}: must be one of {', '.join(spec.choices)}")
    if spec.kind == "rate":
        from limits import parse_many

        try:
            parse_many(raw)
        except ValueError:
            raise ConfigError(f"{where}: not a rate limit such as '5 per minute'") from None
    return raw


def read(env: Mapping[str, str], name: str) -> Any:
    """One setting from the environment (empty means unset), else its default."""
    spec = BY_NAME[name]
    raw = env.get(name)
    if raw is None or raw == "":
        return spec.default
    return parse(spec, raw)


def _secret_key(env, instance_path: Path) -> str:
    key = read(env, "FLASK_SECRET_KEY")
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
    url = read(env, "DATABASE_URL")
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
    host = read(env, "MYSQL_HOST")
    if host:
        name = read(env, "MYSQL_DB")
        if not name.replace("_", "").isalnum():
            raise ConfigError(f"MYSQL_DB={name!r}: use letters, digits and underscores only")
        password = read(env, "MYSQL_PASSWORD")
        auth = quote_plus(read(env, "MYSQL_USER")) + (":" + quote_plus(password) if password else "")
        return f"mysql+pymysql://{auth}@{host}:{read(env, 'MYSQL_PORT')}/{name}?charset=utf8mb4"
    instance_path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{instance_path / 'examproctor.db'}"


def instance_path_from(env) -> Path:
    path = Path(read(env, "PROCTOR_INSTANCE_PATH"))
    return path if path.is_absolute() else REPO_ROOT / path


def load_settings(env=None, instance_path: Path | None = None) -> dict:
    """All Flask config values from the environment (a mapping; os.environ by default)."""
    env = os.environ if env is None else env
    instance_path = Path(instance_path) if instance_path else instance_path_from(env)
    settings = {spec.key: read(env, spec.name) for spec in SETTINGS if spec.key}
    https = settings["PROCTOR_HTTPS"]
    settings.update({
        "SECRET_KEY": _secret_key(env, instance_path),
        "SQLALCHEMY_DATABASE_URI": database_url(env, instance_path),
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "pool_recycle": 280},
        "PROCTOR_DATA_DIR": settings["PROCTOR_DATA_DIR"] or str(instance_path / "data"),
        "RATELIMIT_HEADERS_ENABLED": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": https,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SECURE": https,
        "PREFERRED_URL_SCHEME": "https" if https else "http",
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the session
    })
    check_config(settings)
    return settings


def check_config(config: Mapping[str, Any]) -> None:
    """Every table setting present in `config` has a valid value; ConfigError names the first bad one."""
    for key, spec in BY_KEY.items():
        if key in config:
            value = parse(spec, config[key], "app config", testing=bool(config.get("TESTING")))
            if spec.kind == "json":
                from config_vision import VisionConfigError, load_vision_config

                try:
                    load_vision_config(**value)
                except VisionConfigError as exc:
                    raise ConfigError(f"{spec.name}: {exc}") from None
    if config.get("PROCTOR_BROKER_URL") or "PROCTOR_BROKER_NAMESPACE" in config:
        from .live.broker import check_broker_url, check_namespace

        try:
            if config.get("PROCTOR_BROKER_URL"):
                check_broker_url(str(config["PROCTOR_BROKER_URL"]))
            check_namespace(str(config.get("PROCTOR_BROKER_NAMESPACE", "proctor")))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if config.get("MAIL_USE_TLS") and config.get("MAIL_USE_SSL"):
        raise ConfigError("MAIL_USE_TLS and MAIL_USE_SSL are exclusive: set one")
    if config.get("PROCTOR_PUBLIC_URL"):
        check_public_url(config["PROCTOR_PUBLIC_URL"])
    elif config.get("MAIL_SERVER"):
        raise ConfigError("MAIL_SERVER is set but PROCTOR_PUBLIC_URL is not: mailed links need the site's external "
                          "address (e.g. https://exam.school.edu), never the address a request claims")


def check_public_url(url: str) -> None:
    """PROCTOR_PUBLIC_URL: http(s), a host, optionally a port; no path, query or fragment."""
    from urllib.parse import urlsplit

    where = f"PROCTOR_PUBLIC_URL={url!r}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(f"{where}: not a URL") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{where}: must start with http or https://")
    if not parts.hostname:
        raise ConfigError(f"{where}: must name a host")
    if parts.query:
        raise ConfigError(f"{where}: no query string")
    if parts.fragment or url.endswith("#"):
        raise ConfigError(f"{where}: no fragment")
    if parts.path not in ("", "/"):
        raise ConfigError(f"{where}: no path (the app's links add their own)")
    if parts.username or parts.password:
        raise ConfigError(f"{where}: no user or password")


def describe() -> str:
    """The table as text: name, default, bounds, meaning (secrets' defaults are not shown)."""
    rows = []
    for spec in SETTINGS:
        default = "(secret)" if spec.secret and spec.default else json.dumps(spec.default) if spec.kind == "json" else str(spec.default)
        rows.append(f"{spec.name:<32} {default or '-':<28} {spec.bounds():<22} {spec.description}")
    return "\n".join(rows)
