"""bench/http_load.py runs end to end: the real server, one student set up through the real routes
posting frames over HTTP for a few seconds, the admin's socket receiving its status pushes.

Slow (a server start, the workers' model loading, a face registration): marked with a long timeout
like the other slow tests. Checks the figures are sane, not how fast the machine is.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(600)

STEP_KEYS = {"students", "seconds", "target_fps", "offered_fps", "received_fps", "analysed_fps", "analysed_share",
             "dropped_share", "latency_ms", "result_age_s", "per_student_fps", "http_ms", "http_errors", "cpu_pct",
             "cpu_ms_per_frame", "stage_ms", "admin_events", "violations", "worker_restarts", "within_capacity"}


def test_http_load_bench_one_student_gives_sane_figures():
    proc = subprocess.run([sys.executable, "bench/http_load.py", "--students", "1", "--warmup", "3", "--seconds", "6",
                           "--workers", "1", "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    assert "error" not in report, report.get("error")
    assert {"date", "machine", "options", "server_settings", "notes", "setup", "steps", "capacity"} <= set(report)
    assert report["machine"]["cores"] >= 1 and len(report["machine"]["load_average_end"]) == 3
    assert report["server_settings"] == {"PROCTOR_LIVE_WORKERS": "1"}  # 2 fps and one sign-up need no limit raised
    assert report["setup"][0]["added"] == 1 and report["setup"][0]["workers_ready_after_s"] >= 0
    [step] = report["steps"]
    assert STEP_KEYS <= set(step), STEP_KEYS - set(step)
    assert step["students"] == 1 and step["target_fps"] == 2.0
    assert step["offered_fps"] > 0 and step["http_ms"]["requests"] >= 1
    assert step["analysed_fps"] * step["seconds"] >= 1  # at least one frame analysed in the window
    assert 0 < step["analysed_share"] <= 1.5 and 0 <= step["dropped_share"] <= 1
    assert step["http_errors"] == {}, step["http_errors"]  # every frame accepted (202)
    assert step["latency_ms"]["p50"] > 0 and step["latency_ms"]["p95"] >= step["latency_ms"]["p50"]
    assert step["admin_events"].get("student_status", 0) >= 2  # the admin's socket got the pushes
    assert step["per_student_fps"]["without_status"] == 0 and step["per_student_fps"]["median"] > 0
    assert step["cpu_pct"]["workers"] > 0 and step["cpu_pct"]["web"] > 0 and step["cpu_ms_per_frame"] > 0
    assert {"face", "total"} <= set(step["stage_ms"])


def test_http_load_bench_distributed_mode_one_student(tmp_path):
    """The same journey with the distributed mode: the server hands frames to a real `scripts/worker`
    Celery process through the real Redis, and the admin's socket gets the student's statuses."""
    proc = subprocess.run([sys.executable, "bench/http_load.py", "--students", "1", "--warmup", "3", "--seconds", "6",
                           "--celery-workers", "1", "--broker", "redis://127.0.0.1:6379/12", "--json"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    assert "error" not in report, report.get("error")
    settings = report["server_settings"]
    assert settings["PROCTOR_BROKER_URL"] == "redis://127.0.0.1:6379/12" and settings["PROCTOR_BROKER_NAMESPACE"]
    [step] = report["steps"]
    assert step["analysed_fps"] * step["seconds"] >= 1 and step["http_errors"] == {}
    assert step["admin_events"].get("student_status", 0) >= 2
    assert step["cpu_pct"]["workers"] > 0  # the Celery worker's CPU, found through its heartbeat's pid
    assert {"face", "total"} <= set(step["stage_ms"])
