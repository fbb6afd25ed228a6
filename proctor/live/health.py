"""Is the live loop alive? A heartbeat the loop records each pass, read without any lock.

The loop (runtime.py) calls beat() at the end of every pass. report() is what /api/health shows:
whether the loop runs, the age of its last pass, the pool's workers and `ready` (a worker has warmed
its models, so a frame sent now is analysed at once); `stalled` is true when a
started loop has not completed a pass for longer than PROCTOR_LIVE_STALL_S (a pass stuck on a
worker pipe, the store or a lock analyses nobody's frames), and the first report that sees it
logs an error. Nothing here takes a lock, so the health probe answers even when the loop hangs
holding the runtime's or the pool's lock. read_lock() is how the runtime's readers wait for its lock.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager

log = logging.getLogger(__name__)


class LoopHeartbeat:
    def __init__(self, stall_after_s: float):
        self.stall_after_s = float(stall_after_s)
        self.started_mono: float | None = None   # when the loop began; None: not running
        self.last_pass_mono: float | None = None
        self.passes = 0
        self.slowest_pass_s = 0.0
        self._stall_logged = False

    def loop_started(self) -> None:
        self.started_mono = self.last_pass_mono = time.monotonic()

    def loop_stopped(self) -> None:
        self.started_mono = None

    def beat(self, pass_started_mono: float) -> None:
        now = time.monotonic()
        self.slowest_pass_s = max(self.slowest_pass_s, now - pass_started_mono)
        self.last_pass_mono = now
        self.passes += 1

    def report(self, expected: bool, pool: dict | None) -> dict:
        """`expected`: the runtime was started, so a loop should be running."""
        now = time.monotonic()
        running = self.started_mono is not None
        age = None if self.last_pass_mono is None else now - self.last_pass_mono
        stalled = expected and (not running or (age is not None and age > self.stall_after_s))
        if stalled and not self._stall_logged:
            self._stall_logged = True
            log.error("live loop stalled: running=%s, last pass %s s ago (threshold %.0f s); frames are not analysed",
                      running, None if age is None else round(age, 1), self.stall_after_s)
        elif not stalled and self._stall_logged:
            self._stall_logged = False
            log.warning("live loop passes again (last pass %.1f s ago)", age or 0.0)
        # Ready: the loop runs and at least one worker has loaded and warmed its models, so a frame
        # sent now is analysed at once (with live analysis off there is nothing to warm).
        ready = running and not stalled and (pool is None or pool.get("workers_ready", 0) > 0)
        return {
            "started": bool(expected), "running": running, "stalled": bool(stalled), "ready": bool(ready),
            "loop_age_s": None if age is None else round(age, 3), "stall_after_s": self.stall_after_s,
            "passes": self.passes, "slowest_pass_s": round(self.slowest_pass_s, 3),
            **(pool or {"workers": 0, "workers_alive": 0, "workers_ready": 0, "restarts": 0}),
        }


@contextmanager
def read_lock(lock, wait_s: float, on_miss=None):
    """`lock` for a reader, waited for at most wait_s; yields whether it was taken.

    A loop pass or an action stuck in a store call (the database) holds the runtime's lock; the live
    view, the dashboard and the status pushes must not hang behind it. Past the wait the reader goes
    on without the lock: it only reads (under eventlet nothing switches inside a read; in threading
    mode the reader catches a torn read)."""
    got = lock.acquire(timeout=wait_s)
    if not got and on_miss is not None:
        on_miss()
    try:
        yield got
    finally:
        if got:
            lock.release()
