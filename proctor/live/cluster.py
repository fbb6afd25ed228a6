"""Several web processes in the distributed mode: one owner per student, calls sent to it.

A student's stream (rule timers, warning count, last frames, what the proctor sees) lives in the
web process that receives the student's frames: its **owner**, written in Redis as
`<ns>:owner:<student id>` = {"runtime": id, "session": id} with a lease of OWNER_TTL_S that the
owner renews every CLUSTER_EVERY_S. The load balancer keeps a student's requests and socket on one
process (sticky sessions, docs/deploy-nginx.md); when that process dies, the student's page
reconnects to another, whose runtime opens the stream again from the database (the warning count
included, store.SessionInfo.warning_count) and takes the ownership over. A process that finds its
student owned by another drops its stream quietly (MOVED: no student_left for the admins).

An admin may be connected to any process. Admin events reach every process's admins through
Flask-SocketIO's message queue on the same Redis (proctor/__init__.py). A call about a student
another process holds goes to that process as a command on its list `<ns>:cmd:<runtime>`,
answered on `<ns>:reply:<call id>` within CALL_TIMEOUT_S:

- views and status: "view", "status" (the owner draws the HUD and answers with the JPEG);
- the proctor's actions are written to the database by the process the admin talks to (so the
  audit row carries that request's admin and address), then the owner is told to apply them to
  its stream in memory: "clear", "refresh" (auto-terminate, rule switches), "ended" (terminated).

Each process also lists its students under `<ns>:active:<runtime>` (refreshed every
CLUSTER_EVERY_S, expiring after ACTIVE_TTL_S), so every admin's grid starts with all of them.
Nothing here imports Flask or the database.
"""
from __future__ import annotations

import base64
import json
import logging
import time
import uuid

from .store import AuditEntry, LiveError

log = logging.getLogger(__name__)

OWNER_TTL_S = 10           # a dead owner's students are free for another process after this at the latest
CLUSTER_EVERY_S = 2.0      # leases renewed and the student list published this often
ACTIVE_TTL_S = 10
CALL_TIMEOUT_S = 3.0       # an owner that does not answer a call within this is taken for busy or gone
COMMANDS = ("view", "status", "clear", "refresh", "ended")


class Cluster:
    """The Redis side: leases, the student lists and the command lists of one web process."""

    def __init__(self, redis, ns: str, runtime_id: str, blocking_redis=None):
        self.redis, self.ns, self.runtime_id = redis, ns, runtime_id
        # BLPOP waits longer than the short socket timeout of `redis`: its own connection settings.
        self.blocking = blocking_redis or redis

    def _owner_key(self, student_id: int) -> str:
        return f"{self.ns}:owner:{int(student_id)}"

    def claim(self, student_id: int, session_id: int) -> None:
        value = json.dumps({"runtime": self.runtime_id, "session": int(session_id)})
        self.redis.set(self._owner_key(student_id), value, ex=OWNER_TTL_S)

    def owner(self, student_id: int) -> dict | None:
        raw = self.redis.get(self._owner_key(student_id))
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) and isinstance(value.get("runtime"), str) else None

    def renew(self, owned: dict[int, int]) -> list[int]:
        """Renew the leases of `owned` (student -> session); the students another process has taken."""
        if not owned:
            return []
        ids = list(owned)
        values = self.redis.mget([self._owner_key(s) for s in ids])
        lost, pipe = [], self.redis.pipeline(transaction=False)
        for sid, raw in zip(ids, values):
            try:
                holder = json.loads(raw) if raw else None
            except ValueError:
                holder = None
            if holder is not None and holder.get("runtime") != self.runtime_id:
                lost.append(sid)
            else:  # ours, or expired (Redis restarted empty): ours again
                pipe.set(self._owner_key(sid), json.dumps({"runtime": self.runtime_id, "session": owned[sid]}),
                         ex=OWNER_TTL_S)
        pipe.execute()
        return lost

    def release(self, student_id: int) -> None:
        holder = self.owner(student_id)
        if holder is not None and holder["runtime"] == self.runtime_id:
            self.redis.delete(self._owner_key(student_id))

    def publish_active(self, rows: list[dict]) -> None:
        self.redis.set(f"{self.ns}:active:{self.runtime_id}", json.dumps(rows, default=str), ex=ACTIVE_TTL_S)

    def active_elsewhere(self) -> list[dict]:
        keys = [k for k in self.redis.scan_iter(match=f"{self.ns}:active:*", count=200)
                if not k.decode().endswith(":" + self.runtime_id)]
        rows = []
        for raw in self.redis.mget(keys) if keys else []:
            try:
                rows += [r for r in json.loads(raw or "[]") if isinstance(r, dict)]
            except ValueError:
                continue
        return rows

    def call(self, runtime: str, command: str, timeout_s: float = CALL_TIMEOUT_S, **args) -> dict | None:
        """Send a command to another process and wait for its answer; None when none comes in time."""
        call_id = uuid.uuid4().hex
        reply_key = f"{self.ns}:reply:{call_id}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(f"{self.ns}:cmd:{runtime}", json.dumps({"id": call_id, "command": command, "args": args}))
        pipe.expire(f"{self.ns}:cmd:{runtime}", 60)
        pipe.execute()
        got = self.blocking.blpop([reply_key], timeout=max(1, round(timeout_s)))
        if got is None:
            return None
        try:
            return json.loads(got[1])
        except ValueError:
            return None

    def next_command(self, timeout_s: int = 5) -> dict | None:
        got = self.blocking.blpop([f"{self.ns}:cmd:{self.runtime_id}"], timeout=timeout_s)
        if got is None:
            return None
        try:
            cmd = json.loads(got[1])
        except ValueError:
            return None
        ok = isinstance(cmd, dict) and cmd.get("command") in COMMANDS and isinstance(cmd.get("id"), str) \
            and cmd["id"].isalnum() and isinstance(cmd.get("args"), dict)
        return cmd if ok else None

    def answer(self, call_id: str, body: dict) -> None:
        key = f"{self.ns}:reply:{call_id}"
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(key, json.dumps(body, default=str))
        pipe.expire(key, 30)
        pipe.execute()


class ClusterMixin:
    """LiveRuntime's side of several web processes (does nothing unless `cluster` is set)."""

    cluster: Cluster | None = None
    _cluster_next = 0.0

    # -- ownership, from the runtime's own steps
    def _cluster_claim(self, student_id: int, session_id: int) -> None:
        if self.cluster is not None:
            self._cluster_safe("claiming a student", self.cluster.claim, student_id, session_id)

    def _cluster_release(self, student_id: int) -> None:
        if self.cluster is not None:
            self._cluster_safe("releasing a student", self.cluster.release, student_id)

    def _cluster_safe(self, what: str, fn, *args, default=None):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - Redis away: the exam goes on, this process keeps its students
            log.warning("several web processes: %s failed: %s", what, exc)
            return default

    def _cluster_step(self) -> None:
        """Renew the leases, drop students another process took, publish this process's students."""
        now = time.monotonic()
        if self.cluster is None or now < self._cluster_next:
            return
        self._cluster_next = now + CLUSTER_EVERY_S
        with self._lock:
            owned = {s.student_id: s.session_id for s in self._streams.values() if not s.terminated}
        for sid in self._cluster_safe("renewing leases", self.cluster.renew, owned, default=[]):
            with self._lock:
                stream = self._streams.get(sid)
                if stream is not None:
                    log.info("student %s moved to another web process: its stream here is closed", sid)
                    self._close_stream(stream, "MOVED")
        rows = [{**r, "runtime": self.cluster.runtime_id} for r in self._local_active()]
        self._cluster_safe("publishing the student list", self.cluster.publish_active, rows)

    def _serve_commands(self) -> None:
        """Answer other processes' calls (a green thread or daemon thread of its own; blocks on Redis)."""
        while self._running and self.cluster is not None:
            try:
                cmd = self.cluster.next_command()
            except Exception as exc:  # noqa: BLE001 - Redis away: wait, then listen again
                log.warning("several web processes: reading calls failed: %s", exc)
                self._sleep(2.0)
                continue
            if cmd is None:
                continue
            try:
                body = {"ok": True, "value": self._run_command(cmd["command"], cmd["args"])}
            except LiveError as exc:
                body = {"ok": False, "error": str(exc), "status": getattr(exc, "status", 400)}
            except Exception as exc:  # noqa: BLE001 - the caller gets an answer, the thread goes on
                log.exception("several web processes: call %s failed", cmd["command"])
                body = {"ok": False, "error": f"{type(exc).__name__}", "status": 500}
            self._cluster_safe("answering a call", self.cluster.answer, cmd["id"], body)

    def _run_command(self, command: str, args: dict):
        sid = int(args.get("student_id", 0))
        if command == "view":
            view = super().latest_view(sid)
            return None if view is None else {"jpeg": base64.b64encode(view.jpeg).decode("ascii"), "kind": view.kind,
                                              "age_s": view.age_s, "status": view.status}
        if command == "status":
            return super().status(sid)
        stream = self._streams.get(sid)
        if stream is None or stream.session_id != int(args.get("session_id", -1)):
            return False
        if command == "clear":
            with self._lock:
                stream.warnings.clear(sid, self._student_now(stream))
        elif command == "refresh":
            info = self.store.load_session(stream.session_id)
            if info is not None:
                with self._lock:
                    stream.session_auto_terminate = info.session_auto_terminate
                    stream.session_disabled = frozenset(info.session_disabled_rules)
                    stream.exam_disabled = frozenset(info.exam_disabled_rules)
                    stream.engine.set_disabled_rules(sid, set(stream.disabled_rules))
        elif command == "ended":
            self.session_ended(sid, stream.session_id, str(args.get("status") or "TERMINATED"))
        return True

    def _clustered(self) -> bool:
        """In the distributed mode the runtime must run to answer about other processes' students,
        even in a process no student has sent a frame to yet (it starts lazily otherwise)."""
        if self.cluster is None and self.settings.broker_url:
            self._autostart()
        return self.cluster is not None

    def _elsewhere(self, student_id: int) -> dict | None:
        """The owner of a student this process does not hold, or None (held here, or nobody's)."""
        if student_id in self._streams or not self._clustered():
            return None
        holder = self._cluster_safe("finding a student's process", self.cluster.owner, student_id)
        return holder if holder is not None and holder["runtime"] != self.cluster.runtime_id else None

    def _tell(self, holder: dict, command: str, **args):
        got = self._cluster_safe("calling another process", lambda: self.cluster.call(holder["runtime"], command, **args))
        if got is None:
            log.warning("several web processes: %s for student %s got no answer from its process", command,
                        args.get("student_id"))
            return None
        if not got.get("ok"):
            raise LiveError(str(got.get("error") or "the call failed"), int(got.get("status") or 500))
        return got.get("value")

    # -- views and status
    def latest_view(self, student_id: int):
        holder = self._elsewhere(student_id)
        if holder is None:
            return super().latest_view(student_id)
        from .views import LiveView

        value = self._tell(holder, "view", student_id=student_id)
        if not value:
            return None
        return LiveView(base64.b64decode(value["jpeg"]), value["kind"], float(value["age_s"]), value["status"])

    def status(self, student_id: int) -> dict:
        holder = self._elsewhere(student_id)
        if holder is None:
            return super().status(student_id)
        value = self._tell(holder, "status", student_id=student_id)
        return value if isinstance(value, dict) else {"student_id": student_id, "session_id": holder.get("session"),
                                                      "active": True, "stale": True}

    def _local_active(self) -> list[dict]:
        return super().active_students()

    def active_students(self) -> list[dict]:
        rows = self._local_active()
        if self._clustered():
            here = {r["student_id"] for r in rows}
            for r in self._cluster_safe("reading other processes' students", self.cluster.active_elsewhere, default=[]):
                if r.get("student_id") not in here:
                    here.add(r.get("student_id"))
                    rows.append({k: v for k, v in r.items() if k != "runtime"})
            from .views import risk_order

            rows.sort(key=risk_order)
        return rows

    # -- the proctor's actions: written here (audited with this request), applied by the owner
    def clear_warnings(self, student_id: int, by_admin_id: int | None) -> None:
        holder = self._elsewhere(student_id)
        if holder is None:
            return super().clear_warnings(student_id, by_admin_id)
        session_id = int(holder["session"])
        self._tell(holder, "clear", student_id=student_id, session_id=session_id)
        # Written even when the owner did not answer: the stream opened again anywhere starts from 0.
        self.store.audit(AuditEntry(by_admin_id, "live.clear_warnings", "exam_session", session_id,
                                    {"student_id": student_id}))
        self.events.publish("warnings_cleared", {"student_id": student_id, "session_id": session_id,
                                                 "by_admin_id": by_admin_id})

    def terminate(self, session_id: int, reason: str, by_admin_id: int | None) -> None:
        super().terminate(session_id, reason, by_admin_id)
        self._tell_session_owner(session_id, "ended", status="TERMINATED")

    def set_auto_terminate(self, session_id: int, enabled, by_admin_id: int | None) -> bool:
        effective = super().set_auto_terminate(session_id, enabled, by_admin_id)
        self._tell_session_owner(session_id, "refresh")
        return effective

    def set_rule(self, session_id: int, rule: str, enabled: bool, by_admin_id: int | None) -> list[str]:
        disabled = super().set_rule(session_id, rule, enabled, by_admin_id)
        self._tell_session_owner(session_id, "refresh")
        return disabled

    def _tell_session_owner(self, session_id: int, command: str, **args) -> None:
        if self._stream_for_session(session_id) is not None or not self._clustered():
            return
        info = self.store.load_session(session_id)
        holder = None if info is None else self._elsewhere(info.student_id)
        if holder is not None and int(holder.get("session", -1)) == session_id:
            self._tell(holder, command, student_id=info.student_id, session_id=session_id, **args)
