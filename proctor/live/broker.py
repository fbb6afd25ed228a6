"""The distributed mode's shared names: the Celery app and the Redis keys both sides use.

Web side: proctor/live/remote.py; worker side: proctor/tasks.py. Keys and queues all start with
the namespace (PROCTOR_BROKER_NAMESPACE, default "proctor"), so that several installations or
test runs can share one Redis.
"""
from __future__ import annotations

import os

BROKER_ENV = "PROCTOR_BROKER_URL"
NAMESPACE_ENV = "PROCTOR_BROKER_NAMESPACE"


def check_namespace(ns: str) -> str:
    ns = (ns or "").strip()
    if not ns or len(ns) > 64 or not all(c.isalnum() or c in "-_." for c in ns):
        raise ValueError(f"broker namespace {ns!r}: use 1-64 letters, digits, '-', '_' or '.'")
    return ns


def namespace(env=None) -> str:
    return check_namespace((env if env is not None else os.environ).get(NAMESPACE_ENV, "proctor"))


def check_broker_url(url: str) -> str:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("PROCTOR_BROKER_URL must be a Redis URL (redis://, rediss:// or unix://)")
    return url


def config_key(ns: str) -> str:
    return f"{ns}:vision-config"


def worker_key(ns: str, node: str = "*") -> str:
    return f"{ns}:worker:{node}"


def job_key(ns: str, runtime_id: str, student_id: int | str = "") -> str:
    return f"{ns}:job:{runtime_id}:{student_id}"


def results_key(ns: str, runtime_id: str) -> str:
    return f"{ns}:results:{runtime_id}"


def make_celery(broker_url: str, ns: str):
    """The Celery app both sides use (the web process only sends with it)."""
    from celery import Celery

    app = Celery("proctor", broker=check_broker_url(broker_url), set_as_current=False)
    app.conf.update(
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_ignore_result=True,              # results travel in Redis lists of our own (one per web process)
        task_default_queue=f"{check_namespace(ns)}.analysis",
        worker_direct=True,                   # every worker also reads its own queue: sticky students
        worker_prefetch_multiplier=1,         # a worker reserves one task at a time: the rest stay shareable
        task_acks_late=False,                 # a frame lost with a dead worker is not redone: a newer one comes
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,   # Redis restarted: keep trying, the exam goes on meanwhile
        worker_hijack_root_logger=False,
        broker_transport_options={"visibility_timeout": 60, "socket_timeout": 5, "socket_connect_timeout": 5},
    )
    return app
