"""Configuration from the environment: defaults, database selection, validation with clear messages."""
from __future__ import annotations

import os
import stat

import pytest

from proctor.settings import ConfigError, load_settings


def test_defaults_use_sqlite_in_the_instance_folder(tmp_path):
    s = load_settings({}, tmp_path)
    assert s["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'examproctor.db'}"
    assert (s["PROCTOR_HOST"], s["PROCTOR_PORT"], s["PROCTOR_ASYNC_MODE"]) == ("127.0.0.1", 5001, "eventlet")
    assert s["SESSION_COOKIE_HTTPONLY"] and s["SESSION_COOKIE_SAMESITE"] == "Lax" and not s["SESSION_COOKIE_SECURE"]


def test_secret_key_is_generated_once_and_kept_private(tmp_path):
    first = load_settings({}, tmp_path)["SECRET_KEY"]
    second = load_settings({}, tmp_path)["SECRET_KEY"]
    assert first == second and len(first) >= 32
    mode = stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode)
    assert mode == 0o600
    assert load_settings({"FLASK_SECRET_KEY": "s" * 40}, tmp_path)["SECRET_KEY"] == "s" * 40


def test_mysql_variables_select_pymysql(tmp_path):
    url = load_settings({"MYSQL_HOST": "db.internal", "MYSQL_PASSWORD": "p@ss:word"}, tmp_path)["SQLALCHEMY_DATABASE_URI"]
    assert url == "mysql+pymysql://root:p%40ss%3Aword@db.internal:3306/examproctordb?charset=utf8mb4"
    url = load_settings({"DATABASE_URL": "mysql://u:p@h/x"}, tmp_path)["SQLALCHEMY_DATABASE_URI"]
    assert url.startswith("mysql+pymysql://u:p@h/x")


def test_https_makes_cookies_secure(tmp_path):
    s = load_settings({"PROCTOR_HTTPS": "true"}, tmp_path)
    assert s["SESSION_COOKIE_SECURE"] and s["REMEMBER_COOKIE_SECURE"] and s["PREFERRED_URL_SCHEME"] == "https"


@pytest.mark.parametrize("env, words", [
    ({"PROCTOR_PORT": "eighty"}, "PROCTOR_PORT"),
    ({"PROCTOR_PORT": "70000"}, "between 1 and 65535"),
    ({"PROCTOR_ASYNC_MODE": "tornado"}, "eventlet, threading, gevent"),
    ({"FLASK_SECRET_KEY": "short"}, "too short"),
    ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
    ({"MYSQL_HOST": "h", "MYSQL_DB": "bad;name"}, "MYSQL_DB"),
    ({"PROCTOR_HTTPS": "maybe"}, "true or false"),
    ({"MAIL_USE_TLS": "1", "MAIL_USE_SSL": "1"}, "exclusive"),
    ({"LOGIN_LIMIT_PER_ACCOUNT": "lots"}, "LOGIN_LIMIT_PER_ACCOUNT"),
])
def test_bad_values_fail_at_start_with_a_clear_message(tmp_path, env, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        load_settings(env, tmp_path)


def test_module_settings_come_from_the_environment(tmp_path, monkeypatch):
    from proctor import create_app

    monkeypatch.setenv("PROCTOR_RULES_VERSION", "2027-01")
    monkeypatch.setenv("PROCTOR_CAMERA_FPS", "1.5")
    monkeypatch.setenv("PROCTOR_MJPEG_FPS", "2")
    app = create_app({"INSTANCE_PATH": tmp_path, "SECRET_KEY": "k" * 32})
    assert app.config["PROCTOR_RULES_VERSION"] == "2027-01"
    assert app.config["PROCTOR_CAMERA_FPS"] == 1.5 and app.config["PROCTOR_MJPEG_FPS"] == 2.0
    monkeypatch.setenv("PROCTOR_AUDIO_CHUNK_LIMIT", "plenty")
    with pytest.raises(ConfigError, match="PROCTOR_AUDIO_CHUNK_LIMIT"):
        create_app({"INSTANCE_PATH": tmp_path, "SECRET_KEY": "k" * 32})


def test_one_table_holds_every_setting_the_code_reads():
    """Every app.config key the web layer reads is a row of the table (or a Flask/derived key)."""
    import re

    from proctor import settings

    derived = {"SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "TESTING"}
    root = settings.REPO_ROOT / "proctor"
    read = set()
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        read |= set(re.findall(r"config\[\"([A-Z_]+)\"\]", text))
        read |= set(re.findall(r"config\.get\(\"([A-Z_]+)\"", text))
        read |= set(re.findall(r"(?:setting|per_user_limit)\(\"([A-Z_]+)\"", text))
    missing = sorted(read - set(settings.BY_KEY) - derived)
    assert not missing, f"settings read but not in the table: {missing}"
    assert len(read & set(settings.BY_KEY)) > 30


def test_the_readme_lists_exactly_the_settings_of_the_table():
    import re

    from proctor import settings

    text = (settings.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    listed = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            listed |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    listed.discard("PROCTOR_VISION_SETTINGS")  # the vision table's own file setting (config_vision)
    assert listed == {s.name for s in settings.SETTINGS}, (
        f"missing from README: {sorted({s.name for s in settings.SETTINGS} - listed)}; "
        f"not settings: {sorted(listed - {s.name for s in settings.SETTINGS})}")


def test_bad_values_passed_in_app_config_stop_the_app(tmp_path):
    from proctor import create_app

    base = {"INSTANCE_PATH": tmp_path, "SECRET_KEY": "k" * 32}
    for key, value, words in (("PROCTOR_MJPEG_FPS", 0, "PROCTOR_MJPEG_FPS"), ("PROCTOR_LIVE_WORKERS", "2", "not text"), ("PROCTOR_LIVE_WORKERS", 2.5, "whole number"),
                              ("PROCTOR_FRAME_RATE_LIMIT", "fast", "rate limit"),
                              ("PROCTOR_VISION_OVERRIDES", {"YAW_THRESHOLD_DEG": 500}, "YAW_THRESHOLD_DEG"),
                              ("MAX_CONTENT_LENGTH", 10, "PROCTOR_MAX_UPLOAD_BYTES")):
        with pytest.raises(ConfigError, match=words):
            create_app({**base, key: value})


def test_flask_settings_prints_both_tables(app):
    result = app.test_cli_runner().invoke(args=["settings"])
    assert result.exit_code == 0, result.output
    assert "PROCTOR_CAMERA_FPS" in result.output and "PROCTOR_MJPEG_MAX_STREAMS" in result.output
    assert "PROCTOR_YAW_THRESHOLD_DEG" in result.output  # the vision table
    assert "PROCTOR_PROCTOR_FPS" not in result.output
