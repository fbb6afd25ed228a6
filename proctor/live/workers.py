"""Worker processes that run the vision pipelines on frames, behind a small job/result interface.

    pool = WorkerPool(size=2, config=vision_config)
    pool.start()
    pool.submit(FrameJob(...)) -> bool      # False: that student's worker is full or not ready yet
    pool.results() -> list[FrameResult]     # never blocks; also notices crashed workers and restarts them

Each worker is a real OS process (multiprocessing "spawn" context) running one FramePipeline
(proctor/live/pipeline.py: the per-process models, the per-student trackers). A student's frames
go to the same worker (sticky assignment) so that the tracking state follows the stream.

A worker holds at most PIPELINE_DEPTH jobs (one running, one waiting in its pipe so that it never
sits idle while the loop collects a result and picks the next frame), and a student has at most
one job out: together with the latest-frame slots that means no backlog anywhere.

Students are placed by measured cost, not by count: each student's CPU ms per frame (a moving
average of what the worker reports) is summed per worker, a new student goes to the lightest
ready worker, and every REBALANCE_EVERY_S the pool moves students (with no job out) from the
heaviest worker to the lightest while that narrows the gap (a moved student's face tracker starts
again on its new worker). So students already streaming when the workers come up, who all land
on the first worker ready, are spread out within a few seconds.

Pipes are one-way os.pipe() pairs (not socketpairs): eventlet's monkey-patched socket module
would hand multiprocessing non-blocking sockets. The parent's ends are non-blocking (pipes.py):
a job is written as far as the pipe takes it and the rest on later passes, results are read only
when complete, so the event loop never waits on a worker. A worker whose pipe broke (it died, even
mid-write) or that takes nothing for SEND_STALL_S is restarted, and the crash logged.

Nothing here imports Flask or the database.
"""
from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .pipeline import FrameJob, FramePipeline, FrameResult, worker_main
from .pipes import PeerGone, PipeReader, PipeWriter

__all__ = ["WorkerPool", "ChildProcess", "FrameJob", "FrameResult", "FramePipeline", "worker_main"]

log = logging.getLogger(__name__)

JOB_TIMEOUT_S = 60.0          # a job running longer than this means the worker hangs: it is restarted
READY_TIMEOUT_S = 180.0       # model loading longer than this means the worker is stuck at start
RESTART_WINDOW_S = 60.0
RESTARTS_BEFORE_BACKOFF = 5   # more crashes than this within RESTART_WINDOW_S -> wait before restarting
RESTART_BACKOFF_S = 10.0
SEND_STALL_S = 10.0           # a worker that takes no byte of its job for this long is stopped or hung: restarted
PIPELINE_DEPTH = 2            # jobs a worker holds: one running, one waiting in its pipe
COST_DEFAULT_MS = 60.0        # a student's assumed CPU ms per frame before the first result
COST_SMOOTHING = 0.2          # weight of the newest result in a student's moving average cost
REBALANCE_EVERY_S = 5.0
REBALANCE_MIN_GAP = 0.15      # move students only while the heaviest worker's load exceeds the lightest's by this share
REBALANCE_MAX_MOVES = 8       # students moved in one pass at most
MOVE_COOLDOWN_S = 30.0        # a student moved is not moved again for this long


class ChildProcess:
    """A spawn-context process with a one-way pipe each way; the parent never blocks on it.

    The parent's ends are non-blocking (pipes.py): send() queues and writes what the pipe takes,
    flush() writes more on each pass, poll_messages() returns only complete messages. A child that
    died makes send()/flush() return False and sets `pipe_broken`; one that stops reading shows in
    `send_stalled_s()`: the owner restarts it (never waits for it)."""

    def __init__(self, name: str, target: Callable, args: tuple, ctx=None):
        self.name = name
        self._target = target
        self._args = args
        self._ctx = ctx or multiprocessing.get_context("spawn")
        self.proc = None
        self._writer: PipeWriter | None = None
        self._reader: PipeReader | None = None
        self.started_mono: float | None = None
        self.pipe_broken = False

    def start(self) -> None:
        job_r, job_w = self._ctx.Pipe(duplex=False)
        res_r, res_w = self._ctx.Pipe(duplex=False)
        self.proc = self._ctx.Process(target=self._target, args=self._args + (job_r, res_w), name=self.name, daemon=True)
        self.proc.start()
        # The child holds its own copies; closing ours lets EOF reach each side when the other dies.
        job_r.close()
        res_w.close()
        self._writer, self._reader = PipeWriter(job_w), PipeReader(res_r)
        self.started_mono = time.monotonic()
        self.pipe_broken = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.exitcode is None

    @property
    def exitcode(self) -> int | None:
        return self.proc.exitcode if self.proc is not None else None

    def send(self, msg) -> bool:
        """Queue msg for the child (written now as far as the pipe takes it); False if the child is gone."""
        if self._writer is None or self.pipe_broken:
            return False
        try:
            self._writer.send(msg)
            return True
        except PeerGone as exc:
            self._broke(exc)
            return False

    def flush(self) -> bool:
        """Write more of what waits for the child, without blocking; False if the child is gone."""
        if self._writer is None or self.pipe_broken:
            return not self.pipe_broken
        try:
            self._writer.flush()
            return True
        except PeerGone as exc:
            self._broke(exc)
            return False

    def _broke(self, exc: OSError) -> None:
        self.pipe_broken = True
        log.error("%s (pid %s): %s", self.name, self.pid, exc)

    def send_stalled_s(self, now: float | None = None) -> float:
        """Seconds the child has taken none of the bytes waiting for it (0 when nothing waits)."""
        return self._writer.stalled_s(now) if self._writer is not None else 0.0

    def poll_messages(self, limit: int = 50) -> list:
        return self._reader.messages(limit) if self._reader is not None else []

    def stop(self, timeout: float = 3.0) -> None:
        if self.proc is None:
            return
        if self.alive() and not self.pipe_broken and self.send(("stop",)) and self._writer.pending == 0:
            self.proc.join(timeout)
        if self.alive():
            self.proc.kill()
            self.proc.join(timeout)
        for end in (self._writer, self._reader):
            try:
                if end is not None:
                    end.close()
            except Exception:  # noqa: BLE001
                pass
        self._writer = self._reader = None


@dataclass
class _WorkerSlot:
    worker_id: int
    child: ChildProcess | None = None
    ready: bool = False
    jobs: deque = field(default_factory=deque)   # FrameJobs sent, oldest (running) first
    busy_since: float | None = None              # when the oldest job started
    info: dict = field(default_factory=dict)
    restarts: int = 0
    crash_times: deque = field(default_factory=lambda: deque(maxlen=32))
    restart_at: float | None = None   # when a crashed worker is due to be started again
    last_crash: dict | None = None
    jobs_done: int = 0
    streams: set = field(default_factory=set)


def _locked(method):
    def wrapper(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class WorkerPool:
    """A fixed number of worker processes; sticky student -> worker assignment; one job in flight per worker."""

    def __init__(self, size: int, config, models_dir: str | Path | None = None, ctx=None,
                 on_crash: Callable[[dict], None] | None = None):
        if not 1 <= int(size) <= 64:
            raise ValueError(f"worker pool size must be 1..64, got {size!r}")
        self.size = int(size)
        self.config = config
        self.models_dir = str(models_dir) if models_dir else None
        self._ctx = ctx or multiprocessing.get_context("spawn")
        self._workers = [_WorkerSlot(i) for i in range(self.size)]
        self._assign: dict[int, int] = {}
        self._inflight: set[int] = set()          # students with a job out
        self._cost: dict[int, float] = {}         # student -> moving average CPU ms per frame
        self._moved: dict[int, float] = {}        # student -> when last moved between workers
        self._next_rebalance = 0.0
        self.moves = 0
        self._on_crash = on_crash
        self.crashes: list[dict] = []
        self.started = False
        # The runtime loop submits and collects; admin requests may call forget() from other threads.
        self._lock = threading.RLock()

    # -- lifecycle
    def start(self) -> None:
        for w in self._workers:
            self._spawn(w)
        self.started = True

    def _spawn(self, w: _WorkerSlot) -> None:
        w.child = ChildProcess(f"proctor-live-worker-{w.worker_id}", worker_main,
                               (w.worker_id, self.config, self.models_dir), self._ctx)
        w.child.start()
        w.ready = False
        self._drop_jobs(w)
        w.restart_at = None
        w.streams = set()
        log.info("live worker %s started (pid %s)", w.worker_id, w.child.pid)

    def stop(self) -> None:
        for w in self._workers:
            if w.child is not None:
                w.child.stop()
        self.started = False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S, sleep: Callable[[float], None] = time.sleep) -> bool:
        """Blocking helper for scripts and tests (never used by the event loop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.results()
            if all(w.ready for w in self._workers):
                return True
            sleep(0.05)
        return False

    # -- dispatch
    def _load(self, w: _WorkerSlot) -> float:
        return sum(self._cost.get(sid, COST_DEFAULT_MS) for sid in w.streams)

    def _move(self, student_id: int, w: _WorkerSlot) -> None:
        old = self._assign.get(student_id)
        if old is not None and old != w.worker_id:
            prev = self._workers[old]
            prev.streams.discard(student_id)
            if prev.ready:
                prev.child.send(("forget", student_id))
        self._assign[student_id] = w.worker_id
        w.streams.add(student_id)

    @_locked
    def worker_for(self, student_id: int) -> int | None:
        """The student's worker (assigned on first use to the ready worker with the least load)."""
        wid = self._assign.get(student_id)
        if wid is not None and self._workers[wid].ready:
            return wid
        ready = [w for w in self._workers if w.ready]
        if not ready:
            return None
        best = min(ready, key=lambda w: (self._load(w), len(w.jobs), w.worker_id))
        self._move(student_id, best)
        return best.worker_id

    @_locked
    def can_take(self, student_id: int) -> bool:
        wid = self.worker_for(student_id)
        return wid is not None and student_id not in self._inflight and len(self._workers[wid].jobs) < PIPELINE_DEPTH

    @_locked
    def submit(self, job: FrameJob) -> bool:
        """Hand the job to the student's worker if it has room and the student has no job out; False otherwise."""
        if not self.can_take(job.student_id):
            return False
        w = self._workers[self._assign[job.student_id]]
        if not w.child.send(("job", job)):
            return False
        if not w.jobs:
            w.busy_since = time.monotonic()
        w.jobs.append(job)
        self._inflight.add(job.student_id)
        return True

    @_locked
    def forget(self, student_id: int) -> None:
        wid = self._assign.pop(student_id, None)
        self._cost.pop(student_id, None)
        self._moved.pop(student_id, None)
        if wid is not None:
            w = self._workers[wid]
            w.streams.discard(student_id)
            if w.ready:
                w.child.send(("forget", student_id))

    def _rebalance(self, now: float) -> None:
        """Move students from the heaviest ready worker to the lightest while that narrows the gap."""
        if now < self._next_rebalance:
            return
        self._next_rebalance = now + REBALANCE_EVERY_S
        ready = [w for w in self._workers if w.ready]
        for _ in range(REBALANCE_MAX_MOVES if len(ready) > 1 else 0):
            heavy = max(ready, key=self._load)
            light = min(ready, key=self._load)
            gap = self._load(heavy) - self._load(light)
            if gap <= REBALANCE_MIN_GAP * max(self._load(heavy), 1.0):
                return
            movable = [sid for sid in heavy.streams if sid not in self._inflight
                       and now - self._moved.get(sid, -MOVE_COOLDOWN_S) >= MOVE_COOLDOWN_S
                       and self._cost.get(sid, COST_DEFAULT_MS) < gap]
            if not movable:
                return
            # The move that leaves the two loads closest: a cost near half the gap.
            sid = min(movable, key=lambda s: abs(gap / 2 - self._cost.get(s, COST_DEFAULT_MS)))
            self._move(sid, light)
            self._moved[sid] = now
            self.moves += 1
            log.info("student %s moved from live worker %s to %s (loads %.0f / %.0f ms per frame round)",
                     sid, heavy.worker_id, light.worker_id, self._load(heavy), self._load(light))

    def _drop_jobs(self, w: _WorkerSlot) -> list[FrameJob]:
        lost = list(w.jobs)
        for job in lost:
            self._inflight.discard(job.student_id)
        w.jobs.clear()
        w.busy_since = None
        return lost

    # -- collection and supervision
    @_locked
    def results(self) -> list[FrameResult]:
        """Finished results from every worker; never blocks. Restarts crashed or hung workers."""
        out: list[FrameResult] = []
        now = time.monotonic()
        for w in self._workers:
            if w.child is None:
                continue
            w.child.flush()
            for msg in w.child.poll_messages():
                kind = msg[0]
                if kind == "result":
                    result = msg[1]
                    if w.jobs:
                        w.jobs.popleft()
                    w.busy_since = now if w.jobs else None
                    w.jobs_done += 1
                    self._inflight.discard(result.student_id)
                    cost = result.timings_ms.get("cpu", result.timings_ms.get("total"))
                    if cost is not None and result.student_id in self._assign:
                        old = self._cost.get(result.student_id)
                        self._cost[result.student_id] = cost if old is None else old + COST_SMOOTHING * (cost - old)
                    out.append(result)
                elif kind == "ready":
                    w.ready = True
                    w.info = msg[1]
                    log.info("live worker %s ready (pid %s): %s", w.worker_id, w.child.pid, msg[1])
                elif kind == "fatal":
                    log.error("live worker %s failed to start: %s", w.worker_id, msg[1])
                    w.info = {"errors": [msg[1]]}
            if w.restart_at is not None:
                if now >= w.restart_at:
                    self._spawn(w)
                continue
            hung = bool(w.jobs) and w.busy_since is not None and now - w.busy_since > JOB_TIMEOUT_S
            stuck = not w.ready and w.child.started_mono is not None and now - w.child.started_mono > READY_TIMEOUT_S
            stalled = w.child.send_stalled_s(now) > SEND_STALL_S
            if not w.child.alive() or w.child.pipe_broken or hung or stuck or stalled:
                why = ("exited" if not w.child.alive() else "closed its job pipe" if w.child.pipe_broken
                       else "hung on a job" if hung else "stuck loading models" if stuck else "stopped reading its jobs")
                self._crashed(w, now, why)
        self._rebalance(now)
        return out

    def _crashed(self, w: _WorkerSlot, now: float, why: str) -> None:
        lost = self._drop_jobs(w)
        job = lost[0] if lost else None
        if w.child.alive():
            w.child.proc.kill()
        exitcode = w.child.exitcode
        w.child.stop(timeout=1.0)
        crash = {
            "worker_id": w.worker_id, "pid": w.child.pid, "exitcode": exitcode, "why": why,
            "at": time.time(), "lost_job": None if job is None else {"student_id": job.student_id, "seq": job.seq},
        }
        w.last_crash = crash
        self.crashes.append(crash)
        del self.crashes[:-50]
        w.crash_times.append(now)
        w.restarts += 1
        # Streams on this worker lose their tracker state; they are reassigned on their next frame.
        for sid in list(w.streams):
            self._assign.pop(sid, None)
        w.ready = False
        recent = [t for t in w.crash_times if now - t < RESTART_WINDOW_S]
        delay = RESTART_BACKOFF_S if len(recent) > RESTARTS_BEFORE_BACKOFF else 0.0
        w.restart_at = now + delay
        log.error("live worker %s (pid %s) %s with exit code %s; lost job %s; restarting in %.0f s (restart #%d)",
                  w.worker_id, crash["pid"], why, exitcode, crash["lost_job"], delay, w.restarts)
        if self._on_crash is not None:
            try:
                self._on_crash(crash)
            except Exception:  # noqa: BLE001
                log.exception("on_crash callback failed")
        if delay == 0.0:
            self._spawn(w)

    @_locked
    def status(self) -> dict:
        return {
            "size": self.size,
            "started": self.started,
            "workers": [
                {
                    "worker_id": w.worker_id,
                    "pid": w.child.pid if w.child else None,
                    "alive": bool(w.child and w.child.alive()),
                    "ready": w.ready,
                    "busy": bool(w.jobs),
                    "jobs_out": len(w.jobs),
                    "jobs_done": w.jobs_done,
                    "streams": len(w.streams),
                    "load_ms": round(self._load(w), 1),
                    "restarts": w.restarts,
                    "restart_in_s": None if w.restart_at is None else round(max(0.0, w.restart_at - time.monotonic()), 1),
                    "last_crash": w.last_crash,
                    "errors": list(w.info.get("errors", [])),
                }
                for w in self._workers
            ],
            "restarts": sum(w.restarts for w in self._workers),
            "moves": self.moves,
        }

    def health(self) -> dict:
        """Workers alive/ready and restarts, read WITHOUT the pool's lock (the health probe must answer
        even when a pass hangs holding it); plain attribute reads, at worst one pass old."""
        workers = list(self._workers)
        alive = 0
        for w in workers:
            child = w.child
            proc = child.proc if child is not None else None
            alive += bool(proc is not None and proc.exitcode is None and not child.pipe_broken)
        return {"workers": len(workers), "workers_alive": alive, "workers_ready": sum(1 for w in workers if w.ready),
                "restarts": sum(w.restarts for w in workers)}

    @_locked
    def detector_info(self) -> dict:
        for w in self._workers:
            if w.ready and "detector" in w.info:
                return dict(w.info["detector"])
        return {"loaded": False, "reason": "no worker ready yet"}

    @_locked
    def pids(self) -> list[int | None]:
        return [w.child.pid if w.child else None for w in self._workers]
