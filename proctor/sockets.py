"""Socket.IO: live pushes to admins (/admin) and to each student about their own exam (/student).

The live runtime publishes events on its bus from whatever thread produced them (a worker, a
request). The bridge here only appends them to a bounded queue; one background task started by
Socket.IO (a green thread under eventlet, a thread otherwise) drains the queue and emits, so
every emit happens in the server's own concurrency model. Clients cannot change any state through
these namespaces: their events are ignored (but for a student's camera frames, which go to the live
runtime exactly as the upload route's do); admin actions go through the audited HTTP routes.

/admin (admins only; room "admins"): on connect `active_students` {students: [...]} to that admin,
then student_violation {student_id, name, session_id, type, details, time, evidence_url, clip_url,
violation_id, severity, count, message}, student_status, student_joined, student_left,
exam_terminated {student_id, name, session_id, reason, reason_text, by_admin_id, auto}, warnings_cleared
(the runtime's payloads; the bridge adds names, URLs and the sentences a proctor reads); and from
proctor/messages.py message_sent, message_acknowledged, hand_raised, hand_cleared, extra_time_granted.
/student (students only; room "student:<id>"): warning {type, message, count},
terminated {reason, result_url}, proctor_message {message_id, session_id, body, preset, created_at} and
time_extended {session_id, minutes, extra_minutes, deadline, remaining_s}, for that student only; the page sends its camera frames on it
(event "frame", handled by api/frame_socket.py).
"/" (the default namespace) is closed: the pages use only /admin and /student.

A socket outlives the HTTP session it was opened with, so each account's sockets are kept by sid;
when the account's session version rises (logout, a password change; see models.User) its
sockets are disconnected as the change is committed.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from datetime import datetime, timezone

from flask import current_app, has_app_context, request
from flask_login import current_user
from flask_socketio import ConnectionRefusedError, Namespace, emit, join_room
from sqlalchemy import event
from sqlalchemy import inspect as orm_inspect
from sqlalchemy.orm import Session

from . import wording
from .live.events import ADMIN_EVENTS

log = logging.getLogger(__name__)

DEFAULT_NS = "/"
ADMIN_NS = "/admin"
STUDENT_NS = "/student"
ADMIN_ROOM = "admins"
QUEUE_MAX = 5000          # events kept while the emitter catches up; the oldest go first
POLL_S = 0.05             # how often the emitter looks at the queue
IDLE_STOP_S = 30.0        # the emitter stops this long after the last client left
EXTENSION_KEY = "proctor_socket_bridge"


def student_room(student_id: int) -> str:
    return f"student:{int(student_id)}"


def _iso(t) -> str | None:
    try:
        return datetime.fromtimestamp(float(t), tz=timezone.utc).isoformat().replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


class SocketBridge:
    """Runtime events -> Socket.IO emits, for one app."""

    def __init__(self, app, socketio):
        self.app = app
        self.socketio = socketio
        self.queue: deque = deque(maxlen=QUEUE_MAX)
        self._lock = threading.Lock()
        self._running = False
        self._subscribed = False
        self._clients = 0
        self._idle_since: float | None = None
        self._names: dict[int, str] = {}
        self._sids: dict[int, set[tuple[str, str]]] = {}  # account id -> {(sid, namespace)}
        self._owners: dict[tuple[str, str], int] = {}      # (sid, namespace) -> account id
        self.emitted = 0
        # Several web processes (a message queue): admins connected to another process listen to this
        # one's events, so the bridge runs from the first event on, with or without clients here.
        self.always = bool(app.config.get("PROCTOR_BROKER_URL"))
        if self.always:
            self._subscribe()

    # -- called from any thread --------------------------------------------------------
    def on_event(self, name: str, payload: dict) -> None:
        if not self._running and self.always:
            with self._lock:
                start, self._running = not self._running, True
            if start:
                self.socketio.start_background_task(self._run)
        if self._running:
            self.queue.append((name, dict(payload)))

    # -- called in the server's context (socket handlers) --------------------------------
    def client_connected(self) -> None:
        with self._lock:
            self._clients += 1
            self._idle_since = None
            if self._running:
                return
            self._running = True
        self._subscribe()
        self.socketio.start_background_task(self._run)

    def client_disconnected(self) -> None:
        with self._lock:
            self._clients = max(0, self._clients - 1)
            if self._clients == 0:
                self._idle_since = time.monotonic()

    # -- each account's open sockets ------------------------------------------------------
    def track(self, user_id: int, sid: str, namespace: str) -> None:
        with self._lock:
            self._sids.setdefault(int(user_id), set()).add((sid, namespace))
            self._owners[(sid, namespace)] = int(user_id)

    def owner(self, sid: str, namespace: str) -> int | None:
        """The account that opened this socket (recorded at its authenticated handshake); None once closed."""
        return self._owners.get((sid, namespace))

    def untrack(self, sid: str, namespace: str) -> None:
        with self._lock:
            self._owners.pop((sid, namespace), None)
            for user_id, sids in list(self._sids.items()):
                sids.discard((sid, namespace))
                if not sids:
                    del self._sids[user_id]

    def disconnect_user(self, user_id: int) -> int:
        """Close every socket of this account (in this server process); returns how many."""
        with self._lock:
            sids = self._sids.pop(int(user_id), set())
            for key in sids:
                self._owners.pop(key, None)
        for sid, namespace in sids:
            try:
                self.socketio.server.disconnect(sid, namespace=namespace)
            except Exception:  # noqa: BLE001 - a socket that is already gone
                log.debug("socket %s on %s was already closed", sid, namespace)
        if sids:
            log.info("closed %d socket(s) of account %s (signed out)", len(sids), user_id)
        return len(sids)

    def _subscribe(self) -> None:
        if self._subscribed:
            return
        from .live import get_runtime

        get_runtime(self.app).events.subscribe(self.on_event)
        self._subscribed = True

    def _run(self) -> None:
        log.info("socket bridge started")
        try:
            while True:
                while self.queue:
                    name, payload = self.queue.popleft()
                    try:
                        with self.app.app_context():
                            self.dispatch(name, payload)
                    except Exception:  # noqa: BLE001 - one bad event must not stop the pushes
                        log.exception("socket bridge could not emit %s", name)
                with self._lock:
                    if self._clients == 0 and self._idle_since is not None and not self.always \
                            and time.monotonic() - self._idle_since > IDLE_STOP_S:
                        self._running = False
                        self.queue.clear()
                        break
                self.socketio.sleep(POLL_S)
        finally:
            log.info("socket bridge stopped")

    # -- what each runtime event becomes ------------------------------------------------
    def dispatch(self, name: str, payload: dict) -> None:
        if name == "student_joined" and payload.get("name"):
            self._names[int(payload["student_id"])] = str(payload["name"])
        if name in ADMIN_EVENTS:
            data = (self.violation_payload(payload) if name == "student_violation"
                    else self.terminated_payload(payload) if name == "exam_terminated" else payload)
            self._emit(name, data, namespace=ADMIN_NS, to=ADMIN_ROOM)
        if name == "student_warning" and payload.get("student_id") is not None:
            self._emit("warning", {"type": payload.get("type"), "message": payload.get("message"),
                                   "count": payload.get("count")},
                       namespace=STUDENT_NS, to=student_room(payload["student_id"]))
        if name == "exam_terminated" and payload.get("student_id") is not None:
            self._emit("terminated", {"reason": payload.get("reason"), "result_url": self.result_url(payload)},
                       namespace=STUDENT_NS, to=student_room(payload["student_id"]))
        # Issue 16: the proctor's message and extra time reach the student's own room (proctor/messages.py).
        if name == "message_sent" and payload.get("student_id") is not None:
            self._emit("proctor_message", {k: payload.get(k) for k in ("message_id", "session_id", "body", "preset",
                                                                         "created_at")},
                       namespace=STUDENT_NS, to=student_room(payload["student_id"]))
        if name == "extra_time_granted" and payload.get("student_id") is not None:
            self._emit("time_extended", {k: payload.get(k) for k in ("session_id", "minutes", "extra_minutes",
                                                                       "deadline", "remaining_s")},
                       namespace=STUDENT_NS, to=student_room(payload["student_id"]))

    def _emit(self, event: str, data: dict, namespace: str, to: str) -> None:
        self.socketio.emit(event, data, namespace=namespace, to=to)
        self.emitted += 1

    def student_name(self, student_id) -> str | None:
        if student_id is None:
            return None
        sid = int(student_id)
        if sid not in self._names:
            from .extensions import db
            from .models import User

            student = db.session.get(User, sid)
            if student is None:
                return None
            self._names[sid] = student.name
        return self._names[sid]

    def terminated_payload(self, payload: dict) -> dict:
        """exam_terminated for admins: the raw reason kept (what is stored, what tools match on) and beside it
        the sentence the toast shows (proctor/wording.py), so a proctor never reads a coded reason. The runtime
        cannot build it: proctor/live imports nothing from the web layer."""
        data = dict(payload)
        data["name"] = payload.get("name") or self.student_name(payload.get("student_id"))
        data["reason_text"] = (wording.termination_sentence(payload.get("reason"), audience="admin")
                               or "No reason was given.")
        return data

    def violation_payload(self, payload: dict) -> dict:
        vid = payload.get("violation_id")
        t = payload.get("t")
        data = dict(payload)
        data.update(
            student_id=payload.get("student_id"),
            name=payload.get("name") or self.student_name(payload.get("student_id")),
            session_id=payload.get("session_id"),
            type=payload.get("type"),
            details=payload.get("details") or {},
            time=payload.get("time") or _iso(t),
            evidence_url=self.evidence_url(vid, "snapshot"),
            clip_url=self.evidence_url(vid, "clip"),
        )
        return data

    def evidence_url(self, violation_id, kind: str) -> str | None:
        """The admin URL of a violation's snapshot or clip (None before the violation is stored)."""
        if violation_id is None:
            return None
        from flask import url_for

        with self.app.test_request_context("/"):
            return url_for("admin.evidence", violation_id=int(violation_id), kind=kind)

    def result_url(self, payload: dict) -> str:
        if payload.get("result_url"):
            return str(payload["result_url"])
        from flask import url_for

        with self.app.test_request_context("/"):
            return url_for("student.result", session_id=int(payload["session_id"]))


def bridge(app=None) -> SocketBridge:
    app = app or current_app._get_current_object()
    return app.extensions[EXTENSION_KEY]


# --- sign-outs reach the sockets: after the commit that raised an account's session version ----

_SIGNED_OUT_KEY = "proctor_signed_out_accounts"


@event.listens_for(Session, "after_flush")
def _note_signed_out_accounts(session, _flush_context):
    from .models import User

    for obj in session.dirty:
        if isinstance(obj, User) and orm_inspect(obj).attrs.session_version.history.has_changes():
            session.info.setdefault(_SIGNED_OUT_KEY, set()).add(obj.id)


@event.listens_for(Session, "after_commit")
def _close_sockets_of_signed_out_accounts(session):
    ids = session.info.pop(_SIGNED_OUT_KEY, None)
    if not ids or not has_app_context():
        return
    b = current_app.extensions.get(EXTENSION_KEY)
    if b is not None:
        for user_id in ids:
            b.disconnect_user(user_id)


@event.listens_for(Session, "after_rollback")
def _forget_signed_out_accounts(session):
    session.info.pop(_SIGNED_OUT_KEY, None)


class DefaultNamespace(Namespace):
    """The default namespace "/" is not used by any page: every connection is refused."""

    def on_connect(self, auth=None):
        log.info("refused a socket on the default namespace from %s", request.remote_addr)
        raise ConnectionRefusedError("use /admin or /student")


class AdminNamespace(Namespace):
    """Admins only: a connection from anyone else is refused at the handshake."""

    def on_connect(self, auth=None):
        if not (current_user.is_authenticated and current_user.is_admin):
            log.info("refused /admin socket from %s (not an admin)", request.remote_addr)
            raise ConnectionRefusedError("admin login required")
        join_room(ADMIN_ROOM)
        b = bridge()
        b.track(current_user.id, request.sid, ADMIN_NS)
        b.client_connected()
        from .live import get_runtime

        try:
            students = get_runtime(current_app._get_current_object()).active_students()
        except Exception:  # noqa: BLE001 - the snapshot is a convenience; live events still flow
            log.exception("active_students() failed for a connecting admin")
            students = []
        emit("active_students", {"students": list(students)})  # to the connecting admin only
        return True

    def on_disconnect(self, reason=None):
        bridge().untrack(request.sid, ADMIN_NS)
        bridge().client_disconnected()


class StudentNamespace(Namespace):
    """Each student gets their own warnings and termination notice, in a room of their own."""

    def on_connect(self, auth=None):
        if not current_user.is_authenticated or current_user.is_admin:
            log.info("refused /student socket from %s (not a student)", request.remote_addr)
            raise ConnectionRefusedError("student login required")
        join_room(student_room(current_user.id))
        bridge().track(current_user.id, request.sid, STUDENT_NS)
        bridge().client_connected()
        return True

    def on_disconnect(self, reason=None):
        bridge().untrack(request.sid, STUDENT_NS)
        bridge().client_disconnected()


def init_app(app, socketio) -> SocketBridge:
    """Register the namespaces on the app's Socket.IO server and attach the event bridge."""
    b = SocketBridge(app, socketio)
    app.extensions[EXTENSION_KEY] = b
    socketio.on_namespace(DefaultNamespace(DEFAULT_NS))
    socketio.on_namespace(AdminNamespace(ADMIN_NS))
    socketio.on_namespace(StudentNamespace(STUDENT_NS))
    return b
