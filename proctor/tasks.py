"""Analysis workers of the distributed mode: Celery workers that run the vision pipeline.

    PROCTOR_BROKER_URL=redis://10.0.0.5:6379/0 .venv/bin/celery -A proctor.tasks worker --pool solo -n w1@%h

(`scripts/worker` runs exactly that.) A worker needs the code, the models and the broker's URL:
no database, no data folder. It takes the vision settings the web process publishes in Redis
(`<ns>:vision-config`), so web and workers judge by the same numbers, and loads its models once,
when it starts. One worker process uses one core: start one per core (`--pool solo`, so that the
models and the per-student face trackers live in the process that takes the tasks).

How a frame travels (proctor/live/remote.py is the web side):

1. The web process writes the job (proctor/live/wire.py: JSON head + the camera's JPEG) to one
   Redis key per student, `<ns>:job:<runtime>:<student>`, with a short expiry, and sends the
   Celery task `proctor.analyse` naming that key: to the worker that analysed the student's last
   frame (its own queue: Celery's `worker_direct`), or to the shared queue `<ns>.analysis` for a
   new student, a student whose worker is gone, or one whose frames waited too long there.
2. The worker takes the key (GETDEL: a task whose key is gone finds nothing and ends), refuses a
   frame handed over more than MAX_JOB_AGE_S ago (answers "skipped"), else analyses it and pushes
   the result (JSON) onto `<ns>:results:<runtime>`, the list the web process drains.

The web process keeps at most one job out per student (the next frame waits in its latest-frame
slot and newer ones replace it), so no queue of stale frames grows anywhere: the Celery queues
hold at most one task per student. Each worker writes a heartbeat, `<ns>:worker:<name>`, every
HEARTBEAT_EVERY_S with an expiry of HEARTBEAT_TTL_S: the web side routes around a worker whose
heartbeat is gone, and a job that got no answer in time is given up and the student's next frame
goes to the shared queue, so a killed worker's students are analysed by the others within seconds.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

# The vision modules live at the repository root. `celery -A proctor.tasks` puts the working folder
# on the path only while it imports this module (and takes it off after), so add the root for good.
_ROOT = str(Path(__file__).resolve().parents[1])
sys.path.append(_ROOT)

from celery import signals

from .live.broker import BROKER_ENV, config_key, job_key, make_celery, namespace, results_key, worker_key
from .live.pipeline import FramePipeline
from .live.wire import WireError, dump_result, dump_skipped, load_job

log = logging.getLogger(__name__)

MAX_JOB_AGE_S = 3.0        # a frame handed over longer ago than this is not analysed (a newer one is coming)
HEARTBEAT_EVERY_S = 2.0
HEARTBEAT_TTL_S = 6.0      # a worker silent this long is taken for gone
RESULT_LIST_TTL_S = 120    # a results list nobody drains (its web process died) expires
CONFIG_WAIT_S = 60.0       # how long a task waits for the web's vision settings to appear

celery = make_celery(os.environ.get(BROKER_ENV) or "redis://127.0.0.1:6379/0", namespace())
# Two lines per task ("received", "succeeded") at 2 frames a second per student drown the log.
for _name in ("celery.app.trace", "celery.worker.strategy"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class _Worker:
    """This process's pipeline, Redis client and heartbeat (one per worker process)."""

    def __init__(self) -> None:
        self.ns = namespace()
        self.name = f"{socket.gethostname()}-{os.getpid()}"
        self.pipeline: FramePipeline | None = None
        self.config_key: str | None = None
        self.jobs_done = 0
        self.skipped = 0
        self._redis = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def redis(self):
        if self._redis is None:
            import redis

            self._redis = redis.Redis.from_url(celery.conf.broker_url, socket_timeout=5, socket_connect_timeout=5,
                                               health_check_interval=10)
        return self._redis

    def ensure_pipeline(self, wait_s: float = CONFIG_WAIT_S) -> FramePipeline | None:
        """The pipeline built with the web process's vision settings (rebuilt if they change)."""
        deadline = time.monotonic() + wait_s
        while True:
            raw = self.redis.get(config_key(self.ns))
            if raw is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        with self._lock:  # the task thread and the heartbeat thread both come here
            if raw is not None and (raw != self.config_key or self.pipeline is None):
                from config_vision import load_vision_config

                config = load_vision_config(env={}, **json.loads(raw))
                if self.pipeline is not None:
                    self.pipeline.close()
                    self.pipeline = None
                pipeline = FramePipeline(config, None, worker_id=os.getpid())
                pipeline.warm_up()
                self.pipeline, self.config_key = pipeline, raw
                log.info("worker %s: pipeline ready %s", self.node or self.name, pipeline.info)
            return self.pipeline

    def beat(self) -> None:
        info = {"name": self.name, "node": self.node, "host": socket.gethostname(), "pid": os.getpid(),
                "jobs_done": self.jobs_done, "skipped": self.skipped, "at": time.time(),
                "ready": self.pipeline is not None,
                "detector": (self.pipeline.info.get("detector") if self.pipeline is not None else None),
                "errors": (list(self.pipeline.info.get("errors", [])) if self.pipeline is not None else [])}
        self.redis.set(worker_key(self.ns, self.node), json.dumps(info), ex=int(HEARTBEAT_TTL_S))

    def heartbeat_forever(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            try:
                if self.pipeline is None:
                    self.ensure_pipeline(wait_s=0.0)  # load as soon as a web process has published its settings
                self.beat()
            except Exception as exc:  # noqa: BLE001 - Redis away: keep trying, say so once a beat
                log.warning("worker %s: heartbeat not written: %s", self.name, exc)

    node = ""


WORKER = _Worker()


@signals.worker_ready.connect
def _on_ready(sender=None, **_kw) -> None:
    WORKER.node = getattr(sender, "hostname", "") or WORKER.name
    try:
        WORKER.ensure_pipeline(wait_s=0.0)  # load now if the web has published its settings already
        WORKER.beat()
    except Exception as exc:  # noqa: BLE001 - Redis not there yet: the heartbeat thread retries
        log.warning("worker %s: not ready at start: %s", WORKER.node, exc)
    threading.Thread(target=WORKER.heartbeat_forever, name="proctor-heartbeat", daemon=True).start()


@signals.worker_shutdown.connect
def _on_shutdown(**_kw) -> None:
    WORKER._stop.set()
    try:
        WORKER.redis.delete(worker_key(WORKER.ns, WORKER.node))
    except Exception:  # noqa: BLE001
        pass


@celery.task(name="proctor.analyse", ignore_result=True)
def analyse(runtime_id: str, student_id: int, key: str) -> str:
    """Analyse the frame waiting under ``key`` and push the result to the runtime's list."""
    ns = WORKER.ns
    if not (isinstance(runtime_id, str) and runtime_id.isalnum() and isinstance(student_id, int)
            and key == job_key(ns, runtime_id, student_id)):
        log.warning("task refused: job key %r is not student %r's of runtime %r", key, student_id, runtime_id)
        return "refused"
    r = WORKER.redis
    out_key = results_key(ns, runtime_id)
    data = r.getdel(key)
    if data is None:
        return "gone"  # expired, or taken already
    try:
        job, sent_wall = load_job(data)
    except WireError as exc:
        log.warning("task for student %s: bad job dropped: %s", student_id, exc)
        return "bad"
    if job.student_id != student_id:
        log.warning("task for student %s carried student %s's job: dropped", student_id, job.student_id)
        return "bad"
    node = WORKER.node or WORKER.name
    if time.time() - sent_wall > MAX_JOB_AGE_S:
        WORKER.skipped += 1
        _push(r, out_key, dump_skipped(job.student_id, job.seq, node))
        return "stale"
    pipeline = WORKER.ensure_pipeline(CONFIG_WAIT_S if WORKER.pipeline is None else 0.0)
    if pipeline is None:
        raise RuntimeError("no vision settings published by any web process yet")
    result = pipeline.process(job)
    WORKER.jobs_done += 1
    _push(r, out_key, dump_result(result, node))
    return "done"


def _push(r, key: str, data: bytes) -> None:
    pipe = r.pipeline(transaction=False)
    pipe.rpush(key, data)
    pipe.expire(key, RESULT_LIST_TTL_S)
    pipe.execute()
