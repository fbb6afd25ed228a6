"""`python app.py` on an empty instance folder creates the schema and serves (the README's first start)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import requests

from tests.conftest import REPO_ROOT, free_port


def test_first_start_on_an_empty_sqlite_database(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "MYSQL_", "FLASK_SECRET"))}
    env.update(PROCTOR_PORT=str(port), PROCTOR_INSTANCE_PATH=str(tmp_path / "instance"), PROCTOR_LIVE_WORKERS="1")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.3)
        assert health is not None, f"server did not start; exit code {proc.poll()}"
        assert health.status_code == 200 and health.json()["database"] == "ok"
        page = requests.get(f"http://127.0.0.1:{port}/login", timeout=5)
        assert page.status_code == 200 and "Sign in" in page.text
        assert (tmp_path / "instance" / "examproctor.db").exists()
        assert (tmp_path / "instance" / "secret_key").exists()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_bad_configuration_stops_the_server_with_a_message(tmp_path):
    env = dict(os.environ, PROCTOR_PORT="not-a-port", PROCTOR_INSTANCE_PATH=str(tmp_path))
    proc = subprocess.run([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "configuration error: PROCTOR_PORT='not-a-port': expected a whole number" in proc.stderr
