"""The live runtime never waits on a worker or behind a stuck store call, and says when its loop stalls.

- pipes.py: a write to a child that stopped reading queues instead of blocking; a dead child raises
  PeerGone at once (eventlet's green write spun on EPIPE forever); a result arriving in pieces is
  returned only when whole.
- WorkerPool: a real worker stopped with SIGSTOP while a ~900 KB job is written, then killed, is
  logged and restarted and its lost job reported (the process test in test_server_resilience.py
  does this under the real eventlet server).
- LiveRuntime: while a store call hangs holding the runtime's lock, the live view, the status, the
  dashboard list and loop_health() still answer within about a second.
- /api/health: 503 with the live loop's state when no loop pass happened for PROCTOR_LIVE_STALL_S.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

from proctor.live import FrameJob, LiveRuntime, LiveSettings
from proctor.live.pipes import PeerGone, PipeReader, PipeWriter, frame
from proctor.live.workers import ChildProcess, WorkerPool
from tests.live.test_runtime_unit import SESSION, STUDENT, MemoryStore, make_runtime

BIG_JOB = ("job", np.zeros((480, 640, 3), np.uint8))  # the size of a real frame job, 14x a pipe's buffer


def _pipe():
    return multiprocessing.get_context("spawn").Pipe(duplex=False)


def test_a_write_nobody_reads_queues_instead_of_blocking_and_a_gone_reader_raises():
    r, w = _pipe()
    writer = PipeWriter(w)
    t0 = time.monotonic()
    writer.send(BIG_JOB)
    assert time.monotonic() - t0 < 0.5
    assert 0 < writer.pending < len(frame(BIG_JOB))      # the pipe took what it holds, the rest waits
    time.sleep(0.05)
    assert writer.stalled_s() >= 0.05
    r.close()                                              # the reader dies with the job half written
    with pytest.raises(PeerGone):
        writer.flush()
    writer.close()


def test_a_message_is_read_only_when_whole_and_in_order():
    r, w = _pipe()
    reader, writer = PipeReader(r), PipeWriter(w)
    writer.send(("small", 1))
    writer.send(BIG_JOB)
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:  # the writer's flushes and the reader's reads interleave
        writer.flush()
        got += reader.messages()
    assert got[0] == ("small", 1) and got[1][0] == "job" and got[1][1].shape == (480, 640, 3)
    assert writer.pending == 0 and writer.stalled_s() == 0.0
    writer.close()
    assert reader.messages() == [] and reader.eof
    reader.close()


def _sleeper(job_conn, result_conn):
    """A child that never reads its jobs."""
    result_conn.send(("ready", {}))
    time.sleep(600)


def test_a_child_killed_while_its_job_is_half_written_says_so_without_blocking():
    child = ChildProcess("test-sleeper", _sleeper, ())
    child.start()
    try:
        deadline = time.monotonic() + 30
        while not child.poll_messages() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGSTOP)
        assert child.send(BIG_JOB)             # queued; the stopped child takes only the pipe's buffer
        os.kill(child.pid, signal.SIGKILL)
        child.proc.join(10)
        t0 = time.monotonic()
        assert child.flush() is False and child.pipe_broken
        assert child.send(("job", 1)) is False
        assert time.monotonic() - t0 < 0.5
    finally:
        child.stop(timeout=2)


def test_the_pool_restarts_a_worker_stopped_then_killed_mid_write_and_reports_the_lost_job(caplog):
    import config_vision

    pool = WorkerPool(1, config_vision.load_vision_config())
    pool.start()
    try:
        assert pool.wait_ready(timeout=150), pool.status()
        old_pid = pool.pids()[0]
        os.kill(old_pid, signal.SIGSTOP)
        job = FrameJob(STUDENT, SESSION, 1, 100.0, time.monotonic(), image=np.zeros((480, 640, 3), np.uint8))
        t0 = time.monotonic()
        assert pool.submit(job)                           # written as far as the stopped worker's pipe takes it
        assert time.monotonic() - t0 < 0.5
        assert pool.results() == [] and pool.health()["restarts"] == 0
        os.kill(old_pid, signal.SIGKILL)
        with caplog.at_level(logging.ERROR, logger="proctor.live"):
            deadline = time.monotonic() + 10
            while pool.health()["restarts"] == 0 and time.monotonic() < deadline:
                pool.results()
                time.sleep(0.05)
        assert pool.health()["restarts"] == 1
        crash = pool.crashes[-1]
        assert crash["pid"] == old_pid and crash["lost_job"] == {"student_id": STUDENT, "seq": 1}
        assert any(f"live worker 0 (pid {old_pid})" in r.getMessage() for r in caplog.records), caplog.text
        assert pool.pids()[0] != old_pid
        assert pool.wait_ready(timeout=150)
        assert pool.health() == {"workers": 1, "workers_alive": 1, "workers_ready": 1, "restarts": 1}
    finally:
        pool.stop()


class StuckStore(MemoryStore):
    """load_session hangs until released (a database that stopped answering)."""

    def __init__(self):
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def load_session(self, session_id):
        if session_id == 99:
            self.entered.set()
            self.release.wait(30)
        return super().load_session(session_id)


def test_readers_do_not_hang_behind_a_store_call_stuck_under_the_runtime_lock(tmp_path):
    store = StuckStore()
    store.add_session()
    store.add_session(99, student_id=8, name="Stuck Student")
    rt, _ = make_runtime(store, tmp_path)
    rt.session_started(STUDENT, SESSION)
    rt.submit_frame(STUDENT, SESSION, np.full((480, 640, 3), 90, np.uint8), server_ts=10.0)
    stuck = threading.Thread(target=rt.session_started, args=(8, 99), daemon=True)
    stuck.start()
    try:
        assert store.entered.wait(5)
        t0 = time.monotonic()
        view = rt.latest_view(STUDENT)
        status = rt.status(STUDENT)
        rows = rt.active_students()
        health = rt.loop_health()
        took = time.monotonic() - t0
        assert view is not None and view.kind == "raw"
        assert status["active"] and status["session_id"] == SESSION
        assert [r["student_id"] for r in rows] == [STUDENT]
        assert health["started"] is False and health["stalled"] is False
        assert took < 3.0, f"readers took {took:.2f} s behind the stuck store call"
        assert rt.stats.counters["reads_without_lock"] >= 3
        print(f"\nfour readers answered in {took:.2f} s while a store call held the runtime's lock")
    finally:
        store.release.set()
        stuck.join(10)


def test_loop_health_reports_a_stalled_loop(tmp_path, caplog):
    rt = LiveRuntime(LiveSettings(data_dir=str(tmp_path), enabled=False, loop_stall_s=2.0), MemoryStore(),
                     autostart=False)
    rt.start()
    try:
        deadline = time.monotonic() + 5
        while rt.heartbeat.passes < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        live = rt.loop_health()
        assert live["running"] and not live["stalled"] and live["loop_age_s"] < 1.0
        rt.heartbeat.last_pass_mono -= 10.0    # as if the last pass ended 10 s ago and none came since
        real_beat, rt.heartbeat.beat = rt.heartbeat.beat, lambda started: None
        with caplog.at_level(logging.ERROR, logger="proctor.live"):
            stalled = rt.loop_health()
        assert stalled["stalled"] and stalled["loop_age_s"] >= 10.0
        assert "live loop stalled" in caplog.text
        rt.heartbeat.beat = real_beat
    finally:
        rt.stop()


def test_health_answers_503_with_the_loop_state_when_the_loop_stalls(app, client):
    from proctor.live_hooks import current_runtime

    with app.app_context():
        rt = current_runtime(app)
    resp = client.get("/api/health")
    assert resp.status_code == 200 and resp.json["live"]["stalled"] is False
    rt._started = True                       # a started runtime whose loop is not running: stalled
    try:
        resp = client.get("/api/health")
        assert resp.status_code == 503
        assert resp.json["status"] == "degraded" and resp.json["live"]["stalled"] is True
        assert resp.json["live"]["running"] is False
    finally:
        rt._started = False
