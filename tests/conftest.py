"""Shared fixtures: the app on every configured database, clients and a login helper.

PROCTOR_TEST_DATABASES (comma-separated, default "sqlite,mysql") picks the databases.
MySQL/MariaDB comes from PROCTOR_TEST_MYSQL_URL (default root@127.0.0.1:3306); each test
run creates a fresh database there and drops it at the end.
"""
from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATABASES = [d.strip() for d in os.environ.get("PROCTOR_TEST_DATABASES", "sqlite,mysql").split(",") if d.strip()]
MYSQL_SERVER_URL = os.environ.get("PROCTOR_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
TEST_PASSWORD = "correct horse battery"


def pytest_configure(config):
    config.addinivalue_line("markers", "mysql_only: needs the MariaDB/MySQL server")
    config.addinivalue_line("markers", "one_database: what the test checks is not the database (its storing is "
                            "ordinary, covered on every database by other tests): run on the first of "
                            "PROCTOR_TEST_DATABASES only")


def pytest_collection_modifyitems(config, items):
    """Tests marked one_database keep only their first database's parametrisation (they show as deselected).
    Every test of storage, migrations, constraints and concurrency stays on all databases."""
    first = DATABASES[0] if DATABASES else None
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.get_closest_marker("one_database") and params.get("database_url", first) != first:
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _mysql_admin_connection():
    import pymysql
    from sqlalchemy.engine import make_url

    url = make_url(MYSQL_SERVER_URL)
    return pymysql.connect(host=url.host or "127.0.0.1", port=url.port or 3306, user=url.username or "root",
                           password=url.password or "", autocommit=True)


@pytest.fixture(scope="session")
def mysql_server():
    """A way to make fresh MariaDB databases for this run; dropped at the end."""
    if "mysql" not in DATABASES:
        pytest.skip("MariaDB not selected (PROCTOR_TEST_DATABASES)")
    try:
        conn = _mysql_admin_connection()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"MariaDB is not reachable at {MYSQL_SERVER_URL}: {exc} (scripts/test starts it)")
    made: list[str] = []

    def new_database(tag: str) -> str:
        name = f"proctor_test_{tag}_{uuid.uuid4().hex[:8]}"
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        made.append(name)
        return name

    yield conn, new_database
    with conn.cursor() as cur:
        for name in made:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


def _database_url(backend: str, tmp_path_factory, request) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'test.db'}"
    _, new_database = request.getfixturevalue("mysql_server")
    return f"{MYSQL_SERVER_URL}/{new_database('app')}?charset=utf8mb4"


@pytest.fixture(scope="session", params=DATABASES)
def database_url(request, tmp_path_factory):
    """One database per backend for the whole run, brought up to date by the real migrations."""
    from proctor import create_app, init_db

    url = _database_url(request.param, tmp_path_factory, request)
    app = create_app(_test_config(url, tmp_path_factory.mktemp("instance")))
    init_db(app)
    with app.app_context():
        from proctor.extensions import db

        db.engine.dispose()
    return url


def _test_config(url: str, instance: Path) -> dict:
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "INSTANCE_PATH": instance,
        "SECRET_KEY": "test-secret-key-" + uuid.uuid4().hex,
        "PROCTOR_DATA_DIR": str(instance / "data"),
        "BCRYPT_LOG_ROUNDS": 4,  # tests only: production is at least 12 (checked in test_security)
        "PROCTOR_ASYNC_MODE": "threading",
        "SERVER_NAME": "localhost",
    }


@pytest.fixture
def app(database_url, tmp_path):
    from proctor import create_app
    from proctor.extensions import db, limiter

    application = create_app(_test_config(database_url, tmp_path / "instance"))
    with application.app_context():
        _empty_all_tables(db)
        limiter.reset()
    yield application
    from proctor.live import get_runtime

    get_runtime(application).stop()  # worker processes of a test that used the runtime end with it
    with application.app_context():
        db.session.remove()
        db.engine.dispose()


def _empty_all_tables(db) -> None:
    from sqlalchemy import text

    with db.engine.begin() as conn:
        if conn.dialect.name == "mysql":
            conn.execute(text("SET FOREIGN_KEY_CHECKS=0"))
        for table in reversed(db.metadata.sorted_tables):
            conn.execute(table.delete())
        if conn.dialect.name == "mysql":
            conn.execute(text("SET FOREIGN_KEY_CHECKS=1"))


@pytest.fixture
def client(app):
    return app.test_client()


CSRF_RE = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_token(client, path: str = "/login") -> str:
    """The CSRF token for this client's session, read from a page as a browser would."""
    resp = client.get(path)
    match = CSRF_RE.search(resp.get_data(as_text=True))
    assert match, f"no csrf token on {path} (status {resp.status_code})"
    return match.group(1)


def stop_process(proc, timeout_s: float = 10.0) -> None:
    """Terminate a child process, killing it if it has not ended within timeout_s."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_user(app, email="student@example.edu", password=TEST_PASSWORD, role="STUDENT", name="Test Student"):
    from proctor.accounts import create_account

    with app.app_context():
        user = create_account(name, email, password, role)
        return user.id


def login(client, email, password=TEST_PASSWORD, follow=False):
    token = csrf_token(client, "/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token}, follow_redirects=follow)


@pytest.fixture
def student_client(app):
    make_user(app, "student@example.edu")
    c = app.test_client()
    resp = login(c, "student@example.edu")
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    return c


@pytest.fixture
def admin_client(app):
    make_user(app, "admin@example.edu", role="ADMIN", name="Test Admin")
    c = app.test_client()
    resp = login(c, "admin@example.edu")
    assert resp.status_code == 302
    return c
