"""Two server processes on one database share the login rate limit through Redis.

With RATELIMIT_STORAGE_URI=redis://..., attempts spread over two `python app.py` processes add up to
one budget; with the default memory:// store each process counts alone (the control, which shows
the first assertion is about Redis and not about something else in the setup).
"""
from __future__ import annotations

import os
import re
import uuid

import pytest
import requests

from tests.e2e.conftest import LiveServer

REDIS_URL = os.environ.get("PROCTOR_TEST_REDIS_URL", "redis://127.0.0.1:6379")
CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
EMAIL = "limit@example.edu"


@pytest.fixture
def redis_client():
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc} (scripts/test starts it)")
    return client


def _pair(tmp_path, storage: str, prefix: str):
    env = {"RATELIMIT_STORAGE_URI": storage, "RATELIMIT_KEY_PREFIX": prefix,
           "LOGIN_LIMIT_PER_ACCOUNT": "5 per minute", "LOGIN_LIMIT_PER_ADDRESS": "100 per minute"}
    first = LiveServer(tmp_path / "one", env)
    second = LiveServer(tmp_path / "two", {**env, "DATABASE_URL": first.env["DATABASE_URL"],
                                           "FLASK_SECRET_KEY": first.env["FLASK_SECRET_KEY"]})
    first.start()
    first.create_user(EMAIL)
    second.start()
    return first, second


def _failed_login(server: LiveServer) -> int:
    with requests.Session() as web:
        token = CSRF.search(web.get(server.url + "/login", timeout=10).text).group(1)
        return web.post(server.url + "/login", data={"email": EMAIL, "password": "wrong password", "csrf_token": token},
                        allow_redirects=False, timeout=30).status_code


@pytest.mark.parametrize("store", ["redis", "memory"])
def test_login_limit_across_two_server_processes(tmp_path, redis_client, store):
    prefix = f"proctor-test-{uuid.uuid4().hex[:8]}"
    first, second = _pair(tmp_path, REDIS_URL if store == "redis" else "memory://", prefix)
    try:
        statuses = [_failed_login(server) for server in (first, second, first, second, first)]
        assert statuses == [200] * 5, statuses  # the form again with its error, five times in all
        sixth = _failed_login(second)
        keys = list(redis_client.scan_iter(f"*{prefix}*"))
        if store == "redis":
            assert sixth == 429, "the second process did not see the first one's attempts"
            assert keys, "no rate-limit counters in Redis"
        else:
            assert sixth == 200 and not keys  # each process counts alone: 2 attempts on the second
    finally:
        first.stop()
        second.stop()
        for key in redis_client.scan_iter(f"*{prefix}*"):
            redis_client.delete(key)
