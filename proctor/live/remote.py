"""The distributed mode's worker pool: analysis on Celery workers through Redis (proctor/tasks.py).

    pool = RemotePool("redis://10.0.0.5:6379/0", vision_config)
    pool.start()                 # publishes the vision settings the workers use
    pool.submit(job) -> bool     # False: the student has a job out, or no worker is alive
    pool.results() -> list[FrameResult]   # never waits long; gives up jobs that got no answer

It answers the runtime exactly as WorkerPool does (submit, can_take, results, forget, status,
health, detector_info), so LiveRuntime does not know which one it drives. proctor/tasks.py
describes the way a frame travels. Here:

- one job out per student (the next frame waits in the runtime's latest-frame slot);
- students are placed on workers by measured cost, as WorkerPool places them: a new student on
  the least loaded worker (the sum of its students' CPU ms per frame), a student's frames to the
  worker that analysed its last one (its face tracker is there) unless moving it lowers the busier
  worker's load enough (and it was not moved lately); a worker whose heartbeat is gone, or whose
  frame waited longer than STICKY_MAX_WAIT_S, loses the student to the shared queue;
- a job with no answer after JOB_TIMEOUT_S is given up (its worker died or Redis lost it): the
  student's next frame goes to the shared queue;
- when Redis cannot be reached, submit() says False and results() returns nothing; both retry
  at most every REDIS_RETRY_S, and the runtime's frames keep waiting in their slots (the latest
  replaces the older), so the exam goes on and analysis resumes when Redis is back.

Nothing here imports Flask or the database.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from .pipeline import FrameJob, FrameResult
from .broker import check_broker_url, check_namespace, config_key, job_key, make_celery, results_key, worker_key
from .wire import WireError, dump_job, load_message

log = logging.getLogger(__name__)

JOB_TTL_S = 10              # a job key nobody takes expires
JOB_TIMEOUT_S = 8.0         # no answer for this long: the job is given up (the worker died, Redis lost it)
STICKY_MAX_WAIT_S = 3.0     # a frame that waited longer than this for its student's worker: the next goes to the shared queue
COST_DEFAULT_MS = 60.0      # a student's assumed CPU ms per frame before its first result (as WorkerPool)
COST_SMOOTHING = 0.2
MOVE_MIN_GAIN = 0.15        # move a student only when that lowers the busier worker's load by this share at least
MOVE_COOLDOWN_S = 30.0      # a student moved is not moved again for this long (each move costs its face tracker)
WORKERS_REFRESH_S = 1.0     # how often the worker heartbeats are read
REDIS_RETRY_S = 2.0         # after a Redis error, calls wait this long before trying again
RESULTS_PER_POLL = 64
REPUBLISH_EVERY_S = 30.0    # the vision settings are written again this often (Redis may have restarted empty)


class RemotePool:
    """Celery workers behind Redis, driven like WorkerPool."""

    def __init__(self, broker_url: str, config, namespace: str = "proctor", redis_client=None, celery_app=None):
        self.broker_url = check_broker_url(broker_url)
        self.config = config
        self.ns = check_namespace(namespace)
        self.runtime_id = uuid.uuid4().hex[:16]
        self.results_key = results_key(self.ns, self.runtime_id)
        self._redis = redis_client
        self._celery = celery_app
        self._lock = threading.RLock()
        self._inflight: dict[int, tuple[float, str | None, float]] = {}  # student -> (deadline, worker, sent mono)
        self._sticky: dict[int, str] = {}      # student -> worker node that analysed its last frame
        self._cost: dict[int, float] = {}      # student -> moving average CPU ms per frame (what workers report)
        self._moved: dict[int, float] = {}     # student -> when last moved between workers
        self._worker_ids: dict[str, int] = {}  # worker node -> small number for statuses
        self._workers: dict[str, dict] = {}    # worker node -> its last heartbeat
        self._workers_read = 0.0
        self._published = 0.0
        self._redis_down_until = 0.0
        self.redis_errors = 0
        self.jobs_sent = self.jobs_done = self.jobs_lost = self.jobs_skipped = 0
        self.crashes: list[dict] = []
        self.started = False
        self.last_error: str | None = None

    # -- connections
    @property
    def redis(self):
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(self.broker_url, socket_timeout=3, socket_connect_timeout=3,
                                               health_check_interval=10)
        return self._redis

    def blocking_redis(self):
        """A client for calls that wait on Redis (BLPOP) longer than `redis`'s socket timeout."""
        import redis

        return redis.Redis.from_url(self.broker_url, socket_timeout=15, socket_connect_timeout=3, health_check_interval=10)

    @property
    def celery(self):
        if self._celery is None:
            self._celery = make_celery(self.broker_url, self.ns)
        return self._celery

    def _redis_ok(self) -> bool:
        return time.monotonic() >= self._redis_down_until

    def _redis_failed(self, exc: BaseException, what: str) -> None:
        self.redis_errors += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        if self._redis_ok():
            log.error("distributed mode: %s failed (%s); retrying in %.0f s", what, exc, REDIS_RETRY_S)
        self._redis_down_until = time.monotonic() + REDIS_RETRY_S

    # -- lifecycle
    def start(self) -> None:
        self.started = True
        self._publish_config()

    def _publish_config(self) -> bool:
        self._published = time.monotonic()
        try:
            self.redis.set(config_key(self.ns), json.dumps(self.config.as_dict(), sort_keys=True))
            return True
        except Exception as exc:  # noqa: BLE001 - Redis down at start: published on the next attempt
            self._redis_failed(exc, "publishing the vision settings")
            return False

    def stop(self) -> None:
        self.started = False
        try:
            self.redis.delete(self.results_key)
        except Exception:  # noqa: BLE001
            pass

    def wait_ready(self, timeout: float = 180.0, sleep=time.sleep) -> bool:
        """Blocking helper for scripts and tests: some worker alive and ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read_workers(force=True)
            if any(w.get("ready") for w in self._workers.values()):
                return True
            sleep(0.2)
        return False

    # -- workers
    def _read_workers(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._workers_read < WORKERS_REFRESH_S:
            return
        if not self._redis_ok() and not force:
            return
        self._workers_read = now
        try:
            keys = sorted(self.redis.scan_iter(match=worker_key(self.ns), count=200))
            values = self.redis.mget(keys) if keys else []
        except Exception as exc:  # noqa: BLE001
            self._redis_failed(exc, "reading the worker heartbeats")
            self._workers = {}
            return
        workers = {}
        for value in values:
            try:
                info = json.loads(value) if value else None
            except ValueError:
                continue
            if isinstance(info, dict) and isinstance(info.get("node"), str) and info["node"]:
                workers[info["node"]] = info
        gone = set(self._workers) - set(workers)
        for node in gone:
            # Its jobs went with it: the students' next frames go to the shared queue now, not after JOB_TIMEOUT_S.
            lost = [sid for sid, (_d, n, _s) in self._inflight.items() if n == node]
            for sid in lost:
                del self._inflight[sid]
            for sid in [sid for sid, n in self._sticky.items() if n == node]:
                del self._sticky[sid]
            self.jobs_lost += len(lost)
            log.warning("distributed mode: worker %s stopped answering (no heartbeat); %d job(s) lost with it",
                        node, len(lost))
            self.crashes.append({"worker": node, "at": time.time(), "why": "heartbeat gone", "jobs_lost": len(lost)})
            del self.crashes[:-50]
        self._workers = workers
        if any(not w.get("ready") for w in workers.values()) or now - self._published >= REPUBLISH_EVERY_S:
            self._publish_config()  # a new worker waits for it; a restarted Redis lost it

    def _worker_id(self, node: str) -> int:
        if node not in self._worker_ids:
            self._worker_ids[node] = len(self._worker_ids)
        return self._worker_ids[node]

    def _alive(self) -> bool:
        self._read_workers()
        return bool(self._workers)

    # -- dispatch
    def worker_for(self, student_id: int) -> int | None:
        node = self._sticky.get(student_id)
        return None if node is None else self._worker_id(node)

    def can_take(self, student_id: int) -> bool:
        with self._lock:
            self._expire(time.monotonic())
            return self.started and student_id not in self._inflight and self._redis_ok() and self._alive()

    def submit(self, job: FrameJob) -> bool:
        with self._lock:
            if not self.can_take(job.student_id):
                return False
            if job.jpeg is None:
                job = _with_jpeg(job)
                if job is None:
                    return False
            key = job_key(self.ns, self.runtime_id, job.student_id)
            node = self._place(job.student_id)
            try:
                self.redis.set(key, dump_job(job, time.time()), ex=JOB_TTL_S)
                queue = None
                if node is not None:
                    from celery.utils import worker_direct

                    queue = worker_direct(node)
                self.celery.send_task("proctor.analyse", args=[self.runtime_id, job.student_id, key], queue=queue,
                                      expires=JOB_TTL_S)
            except Exception as exc:  # noqa: BLE001
                self._redis_failed(exc, "sending a frame")
                return False
            now = time.monotonic()
            self._inflight[job.student_id] = (now + JOB_TIMEOUT_S, node, now)
            self.jobs_sent += 1
            return True

    def _load(self, node: str) -> float:
        return sum(self._cost.get(sid, COST_DEFAULT_MS) for sid, n in self._sticky.items() if n == node)

    def _place(self, student_id: int) -> str | None:
        """The worker for this student's next frame, by measured cost as WorkerPool places students:
        its own worker (its face tracker is there) unless moving it to the least loaded worker lowers
        the busier one's load by MOVE_MIN_GAIN at least (and it was not moved in the last
        MOVE_COOLDOWN_S); a new student goes to the least loaded worker. Without known workers, the
        shared queue (None). Loads count this process's students only."""
        if not self._workers:
            return None
        node = self._sticky.get(student_id)
        if node not in self._workers:
            node = None
        cost = self._cost.get(student_id, COST_DEFAULT_MS)
        loads = {n: self._load(n) - (cost if n == node else 0.0) for n in self._workers}
        best = min(loads, key=lambda n: (loads[n], n))
        now = time.monotonic()
        if node is not None and (best == node or now - self._moved.get(student_id, -MOVE_COOLDOWN_S) < MOVE_COOLDOWN_S
                                 or loads[best] + cost > (loads[node] + cost) * (1.0 - MOVE_MIN_GAIN)):
            return node
        if node is not None:
            self._moved[student_id] = now
        self._sticky[student_id] = best
        return best

    def forget(self, student_id: int) -> None:
        with self._lock:
            for table in (self._sticky, self._inflight, self._cost, self._moved):
                table.pop(student_id, None)

    def _expire(self, now: float) -> None:
        for sid, (deadline, node, _sent) in list(self._inflight.items()):
            if now >= deadline:
                del self._inflight[sid]
                self._sticky.pop(sid, None)
                self.jobs_lost += 1
                log.warning("distributed mode: no answer for student %s's frame within %.0f s (worker %s); "
                            "the next frame goes to any worker", sid, JOB_TIMEOUT_S, node or "any")

    # -- collection
    def results(self) -> list[FrameResult]:
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            if not self._redis_ok():
                return []
            try:
                raw = self.redis.lpop(self.results_key, RESULTS_PER_POLL) or []
            except Exception as exc:  # noqa: BLE001
                self._redis_failed(exc, "collecting results")
                return []
            out = []
            for data in raw:
                res = self._take(data, now)
                if res is not None:
                    out.append(res)
            return out

    def _take(self, data: bytes, now: float) -> FrameResult | None:
        try:
            kind, body, node = load_message(data)
        except WireError as exc:
            log.warning("distributed mode: a result that does not read was dropped: %s", exc)
            return None
        if kind == "skipped":
            self._inflight.pop(body, None)
            self.jobs_skipped += 1
            return None
        res = body
        sid = res.student_id
        out = self._inflight.pop(sid, None)
        if out is not None:
            waited = now - out[2] - res.timings_ms.get("total", 0.0) / 1000.0
            if waited > STICKY_MAX_WAIT_S:
                self._sticky.pop(sid, None)  # its worker is backed up past reason: the shared queue next
            else:
                self._sticky[sid] = node
        cost = res.timings_ms.get("cpu", res.timings_ms.get("total"))
        if isinstance(cost, (int, float)):
            old = self._cost.get(sid)
            self._cost[sid] = float(cost) if old is None else old + COST_SMOOTHING * (float(cost) - old)
        res.worker_id = self._worker_id(node)
        res.done_mono = now  # this process's clock (the worker's is another machine's)
        self.jobs_done += 1
        return res

    # -- reports
    def status(self) -> dict:
        with self._lock:
            self._read_workers()
            workers = [
                {"worker_id": self._worker_id(node), "name": node, "host": info.get("host"), "pid": info.get("pid"),
                 "alive": True, "ready": bool(info.get("ready")), "jobs_done": info.get("jobs_done"),
                 "skipped": info.get("skipped"), "streams": sum(1 for n in self._sticky.values() if n == node),
                 "errors": list(info.get("errors") or [])}
                for node, info in sorted(self._workers.items())
            ]
            return {"mode": "distributed", "broker": _redact(self.broker_url), "namespace": self.ns,
                    "size": len(workers), "started": self.started, "workers": workers,
                    "jobs_out": len(self._inflight), "jobs_sent": self.jobs_sent, "jobs_done": self.jobs_done,
                    "jobs_lost": self.jobs_lost, "jobs_skipped": self.jobs_skipped,
                    "redis_errors": self.redis_errors, "last_error": self.last_error,
                    "restarts": 0, "moves": 0}

    def health(self) -> dict:
        """Read without the lock (the health probe must answer even when a pass hangs)."""
        workers = dict(self._workers)
        return {"workers": len(workers), "workers_alive": len(workers),
                "workers_ready": sum(1 for w in workers.values() if w.get("ready")), "restarts": 0,
                "broker_ok": self._redis_ok()}

    def detector_info(self) -> dict:
        with self._lock:
            self._read_workers()
            for info in self._workers.values():
                if info.get("ready") and isinstance(info.get("detector"), dict):
                    return dict(info["detector"])
        return {"loaded": False, "reason": "no analysis worker ready (distributed mode: start one with scripts/worker)"}

    def pids(self) -> list[Any]:
        return [info.get("pid") for info in self._workers.values()]


def _with_jpeg(job: FrameJob) -> FrameJob | None:
    """A job made from pixels (tests, the CLI) gets the JPEG bytes a remote worker needs."""
    import cv2
    from dataclasses import replace

    if job.image is None:
        return None
    ok, buf = cv2.imencode(".jpg", job.image, [int(cv2.IMWRITE_JPEG_QUALITY), 90])
    return replace(job, jpeg=buf.tobytes(), image=None) if ok else None


def _redact(url: str) -> str:
    """The broker URL without its password, for statuses."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"

