"""The live proctoring runtime: frame slots -> worker processes -> decisions -> warnings -> evidence.

One LiveRuntime per app. Routes call submit_frame / browser_event (they return at once); a
background loop (socketio.start_background_task, so a green thread under eventlet and an OS
thread in threading mode) moves frames from the latest-frame slots to idle worker processes,
collects results with non-blocking polls, runs the pure DecisionEngine and WarningSystem,
stores violations with evidence, and publishes events on `runtime.events`.

Rules run on frame time (the server's receive time of each frame, or the caller's `server_ts`),
never on the time a result happens to arrive.
"""
from __future__ import annotations

import json
import logging
import math
import statistics
import threading
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

from .events import EventBus
from .evidence import ClipJob, ClipWriter, EvidenceStore, PrerollBuffer
from .frames import FrameReceipt, FrameSlots
from .workers import FrameJob, FrameResult, WorkerPool

log = logging.getLogger(__name__)

DETAILS_MAX_ITEMS = 20
DETAILS_MAX_TEXT = 200
SESSION_RECHECK_S = 10.0   # how often active sessions are re-read (ended elsewhere, deadline passed)
REFUSED_RETRY_S = 10.0     # a frame for a session that is not in progress is dropped; retried after this


class LiveError(ValueError):
    """A bad request to the runtime (unknown session, wrong student, bad event type); `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LiveView:
    jpeg: bytes
    kind: str        # "processed" (with HUD overlays) or "raw"
    age_s: float
    status: dict


@dataclass
class _Stream:
    """Everything the runtime holds for one student's active session."""

    student_id: int
    session_id: int
    name: str
    exam_id: int
    exam_title: str
    engine: Any
    warnings: Any
    exam_auto_terminate: bool
    session_auto_terminate: bool | None
    exam_disabled: frozenset
    session_disabled: frozenset
    embedding: bytes | None
    vision_overrides: dict = field(default_factory=dict)  # the exam's thresholds, also applied by the detector
    joined_mono: float = field(default_factory=time.monotonic)
    dispatched: int = 0
    processed: int = 0
    detector_runs: int = 0
    identity_attempts: int = 0
    identity_checks: int = 0   # attempts that found a face to compare
    last_identity_dispatch_t: float | None = None
    last_detections: Any = None
    last_detections_t: float | None = None
    identity_match: bool | None = None
    identity_distance: float | None = None
    identity_t: float | None = None
    last_face: Any = None
    last_result_t: float | None = None
    last_result_mono: float | None = None
    last_errors: list = field(default_factory=list)
    processed_jpeg: bytes | None = None
    processed_mono: float | None = None
    alerts: deque = field(default_factory=lambda: deque(maxlen=3))
    last_status_mono: float = 0.0
    terminated: bool = False
    face_state: str | None = None

    @property
    def auto_terminate(self) -> bool:
        return self.exam_auto_terminate if self.session_auto_terminate is None else bool(self.session_auto_terminate)

    @property
    def disabled_rules(self) -> frozenset:
        return self.exam_disabled | self.session_disabled


def parse_rules(text: str | None) -> frozenset:
    from config_vision import RULES

    out = set()
    for part in (text or "").split(","):
        name = part.strip().upper()
        if not name:
            continue
        if name in RULES:
            out.add(name)
        else:
            log.warning("ignoring unknown rule %r in a disabled-rules list", name)
    return frozenset(out)


def _clean_details(details: Any) -> dict:
    """Browser-sent details, reduced to a few short JSON scalars (never trusted, never large)."""
    if not isinstance(details, dict):
        return {}
    out = {}
    for key, value in list(details.items())[:DETAILS_MAX_ITEMS]:
        key = str(key)[:40]
        if isinstance(value, bool) or value is None:
            out[key] = value
        elif isinstance(value, (int, float)):
            out[key] = value if math.isfinite(float(value)) else None
        else:
            out[key] = str(value)[:DETAILS_MAX_TEXT]
    return out


def _face_summary(face) -> dict | None:
    if face is None:
        return None

    def r(v, n=1):
        return None if v is None else round(float(v), n)

    return {
        "detected": bool(face.face_detected), "count": int(face.face_count), "yaw_deg": r(face.yaw_deg),
        "pitch_deg": r(face.pitch_deg), "ear": r(face.ear, 3), "iris_offset": r(face.iris_offset, 3),
        "brightness": r(face.brightness), "normalised": bool(face.normalised), "detector": face.detector,
    }


def _objects_summary(dets) -> list[dict]:
    if dets is None:
        return []
    return [{"label": d.label, "class_id": d.class_id, "score": round(float(d.score), 3),
             "box": [round(float(v), 1) for v in d.box]} for d in dets.items]


class LiveRuntime:
    def __init__(self, app, socketio=None, *, clock: Callable[[], float] = time.time):
        from config_vision import load_vision_config

        self.app = app
        self.socketio = socketio
        self.clock = clock
        cfg = app.config
        self.enabled = bool(cfg["PROCTOR_LIVE_ENABLED"])
        self.worker_count = int(cfg["PROCTOR_LIVE_WORKERS"])
        self.config = load_vision_config(**dict(cfg.get("PROCTOR_VISION_OVERRIDES") or {}))
        self.status_every_s = float(cfg["PROCTOR_LIVE_STATUS_EVERY_S"])
        self.events = EventBus()
        self.slots = FrameSlots(clock=clock)
        self.preroll = PrerollBuffer(float(cfg["PROCTOR_LIVE_PREROLL_S"]))
        self.evidence = EvidenceStore(cfg["PROCTOR_DATA_DIR"])
        self.pool: WorkerPool | None = None
        self.clips: ClipWriter | None = None
        self._streams: dict[int, _Stream] = {}
        self._engines: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.RLock()
        self._refused: dict[tuple[int, int], float] = {}
        self._latencies: deque = deque(maxlen=500)
        self._results_mono: deque = deque(maxlen=500)
        self._stage_ms: deque = deque(maxlen=500)
        self._raw_cache: dict[int, tuple] = {}
        self._counters = {"processed": 0, "results_dropped": 0, "violations": 0, "warnings_held": 0,
                          "clips_written": 0, "clips_failed": 0, "loop_errors": 0}
        self._running = False
        self._loop_alive = False
        self._started = False
        self._start_lock = threading.Lock()
        self._last_recheck_mono = time.monotonic()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LiveRuntime":
        """Start the worker processes and the background loop (idempotent)."""
        with self._start_lock:
            if self._started:
                return self
            self._started = True
            # Import the decision modules now, not on the first frame (an import is CPU on the event loop).
            import decision_engine  # noqa: F401
            import warning_system  # noqa: F401

            live_log = logging.getLogger("proctor.live")
            if live_log.level == logging.NOTSET:
                # The migrations' logging config sets the root to WARN; the runtime's INFO lines are its record.
                live_log.setLevel(self.app.config["PROCTOR_LIVE_LOG_LEVEL"])
            if self.enabled:
                self.pool = WorkerPool(self.worker_count, self.config, on_crash=self._on_worker_crash)
                self.pool.start()
            self.clips = ClipWriter()
            self.clips.start()
            self._running = True
            if self.socketio is not None and getattr(self.socketio, "server", None) is not None:
                self.socketio.start_background_task(self._run)
            else:
                threading.Thread(target=self._run, name="proctor-live-loop", daemon=True).start()
            log.info("live runtime started: enabled=%s workers=%s mode=%s", self.enabled, self.worker_count, self._mode())
        return self


    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and the processes (tests, shutdown). Idempotent."""
        with self._start_lock:
            if not self._started:
                return
            self._running = False
            deadline = time.monotonic() + timeout
            while self._loop_alive and time.monotonic() < deadline:
                self._sleep(0.01)
            if self.pool is not None:
                self.pool.stop()
            if self.clips is not None:
                self.clips.stop()
            self._started = False
            log.info("live runtime stopped")

    def _mode(self) -> str:
        return self.app.config.get("PROCTOR_ASYNC_MODE", "threading")

    def _sleep(self, seconds: float) -> None:
        if self.socketio is not None and getattr(self.socketio, "server", None) is not None:
            self.socketio.sleep(seconds)
        else:
            time.sleep(seconds)

    def _app_ctx(self):
        from flask import current_app, has_app_context

        if has_app_context() and current_app._get_current_object() is self.app:
            return nullcontext()
        return self.app.app_context()

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        self._loop_alive = True
        try:
            while self._running:
                try:
                    busy = self.step()
                except Exception:  # noqa: BLE001 - the loop must survive anything one step does
                    self._counters["loop_errors"] += 1
                    log.exception("live runtime loop step failed")
                    self._sleep(1.0)  # e.g. the database is down: retry calmly, do not spin and flood the log
                    continue
                self._sleep(0.004 if busy else 0.02)
        finally:
            self._loop_alive = False

    def step(self) -> bool:
        """One pass: dispatch waiting frames, collect results and clips, tick and publish status."""
        busy = False
        # A fresh app context per pass: Flask-SQLAlchemy ends its session when the context ends.
        with self._app_ctx():
            busy |= self._dispatch()
            if self.pool is not None:
                results = self.pool.results()
                for result in results:
                    self._handle_result(result)
                busy |= bool(results)
            if self.clips is not None:
                for done in self.clips.poll():
                    self._clip_done(done)
            self._tick_and_publish()
        return busy

    def _dispatch(self) -> bool:
        sent = False
        for sid in self.slots.waiting_students():
            frame_head = self.slots.latest(sid)
            if frame_head is None:
                continue
            stream = self._streams.get(sid)
            if stream is None or stream.session_id != frame_head.session_id:
                stream = self._open_stream_for_frame(sid, frame_head.session_id)
                if stream is None:
                    self.slots.take(sid)  # not an active session: the frame is dropped
                    continue
            if stream.terminated or self.pool is None or not self.pool.can_take(sid):
                continue
            frame = self.slots.take(sid)
            if frame is None:
                continue
            with self._lock:
                run_detector = stream.dispatched % int(self.config.DETECTOR_EVERY_N_FRAMES) == 0
                embedding = None
                if stream.embedding is not None and (
                    stream.last_identity_dispatch_t is None
                    or frame.server_ts - stream.last_identity_dispatch_t >= float(self.config.IDENTITY_CHECK_EVERY_S)
                ):
                    embedding = stream.embedding
                    stream.last_identity_dispatch_t = frame.server_ts
                stream.dispatched += 1
                hud_status = {"student": stream.name, "session_id": stream.session_id,
                              "warnings": stream.warnings.count(sid), "seq": frame.seq}
                alerts = list(stream.alerts)
            job = FrameJob(sid, frame.session_id, frame.seq, frame.server_ts, frame.received_mono, frame.image,
                           frame.jpeg, run_detector, embedding, hud_status, alerts,
                           vision_overrides=stream.vision_overrides)
            if self.pool.submit(job):
                sent = True
                log.debug("frame dispatched student=%s session=%s seq=%s detector=%s identity=%s",
                          sid, frame.session_id, frame.seq, run_detector, embedding is not None)
        return sent

    def _open_stream_for_frame(self, student_id: int, session_id: int) -> _Stream | None:
        key = (student_id, session_id)
        refused_at = self._refused.get(key)
        if refused_at is not None and time.monotonic() - refused_at < REFUSED_RETRY_S:
            return None
        try:
            return self.session_started(student_id, session_id)
        except LiveError as exc:
            self._refused[key] = time.monotonic()
            log.warning("frames refused student=%s session=%s: %s", student_id, session_id, exc)
            return None

    def _handle_result(self, r: FrameResult) -> None:
        now_mono = time.monotonic()
        with self._lock:
            stream = self._streams.get(r.student_id)
            if stream is None or stream.session_id != r.session_id or stream.terminated:
                self._counters["results_dropped"] += 1
                return
            self._counters["processed"] += 1
            self._latencies.append(now_mono - r.received_mono)
            self._stage_ms.append(dict(r.timings_ms))
            self._results_mono.append(now_mono)
            stream.processed += 1
            stream.last_errors = list(r.errors)
            if r.errors:
                log.warning("inference errors student=%s session=%s seq=%s: %s", r.student_id, r.session_id, r.seq, r.errors)
            if r.detector_ran:
                stream.detector_runs += 1
                stream.last_detections, stream.last_detections_t = r.detections, r.frame_ts
            if r.identity_ran:
                stream.identity_attempts += 1
                stream.identity_checks += 1 if r.identity_face_found else 0
            if r.identity_ran and not r.identity_face_found:
                stream.last_identity_dispatch_t = None  # no face to check: try again on the next frame
            if r.identity_ran:
                stream.identity_match = r.identity_match if r.identity_face_found else None
                stream.identity_distance = r.identity_distance
                stream.identity_t = r.frame_ts
            stream.last_face = r.face
            stream.last_result_t = r.frame_ts
            stream.last_result_mono = now_mono
            if r.processed_jpeg:
                stream.processed_jpeg = r.processed_jpeg
                stream.processed_mono = now_mono
                self.preroll.add(r.student_id, r.frame_ts, r.processed_jpeg)
            face_state = None if r.face is None else ("no_face" if not r.face.face_detected else f"faces={r.face.face_count}")
            log.debug("inference result student=%s session=%s seq=%s worker=%s face=%s objects=%s ms=%s",
                      r.student_id, r.session_id, r.seq, r.worker_id, face_state,
                      None if r.detections is None else [d.label for d in r.detections.items],
                      {k: round(v, 1) for k, v in r.timings_ms.items()})
            if face_state != stream.face_state:
                log.info("face status student=%s session=%s seq=%s: %s -> %s", r.student_id, r.session_id, r.seq,
                         stream.face_state, face_state)
                stream.face_state = face_state
            from decision_engine import FrameObservation

            obs = FrameObservation(
                t=r.frame_ts, face=r.face, detections=stream.last_detections, detections_t=stream.last_detections_t,
                identity_match=stream.identity_match, identity_t=stream.identity_t,
                frame_mean=r.frame_mean, frame_diff=r.frame_diff,
            )
            events = stream.engine.evaluate(r.student_id, obs, r.frame_ts)
            for event in events:
                self._on_rule_event(stream, event, r.processed_jpeg, r.seq)

    def _tick_and_publish(self) -> None:
        now_mono = time.monotonic()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            if stream.terminated:
                continue
            if now_mono - stream.last_status_mono < self.status_every_s:
                continue
            stream.last_status_mono = now_mono
            with self._lock:
                if self._streams.get(stream.student_id) is not stream:
                    continue
                # CAMERA_OFF from silence only when no frame *arrived* for that long: a slow worker
                # (frames received but not yet processed) must not look like a dead camera.
                latest = self.slots.latest(stream.student_id)
                silent_s = now_mono - (latest.received_mono if latest is not None else stream.joined_mono)
                if silent_s >= float(stream.engine.config.TIME_CAMERA_OFF_S):
                    for event in stream.engine.tick(stream.student_id, self._student_now(stream)):
                        self._on_rule_event(stream, event, stream.processed_jpeg, None)
            if stream.terminated:
                continue
            self.events.publish("student_status", {"student_id": stream.student_id, "session_id": stream.session_id,
                                                   "status": self.status(stream.student_id)})
        if now_mono - self._last_recheck_mono >= SESSION_RECHECK_S:
            self._last_recheck_mono = now_mono
            self._recheck_sessions()

    def _recheck_sessions(self) -> None:
        """End streams whose session was finished elsewhere (submitted, expired, deleted)."""
        from sqlalchemy import select

        from ..extensions import db
        from ..models import ExamSession

        with self._lock:
            ids = {s.session_id: s.student_id for s in self._streams.values()}
        if not ids:
            return
        rows = dict(db.session.execute(select(ExamSession.id, ExamSession.status).where(ExamSession.id.in_(list(ids)))).all())
        for session_id, student_id in ids.items():
            status = rows.get(session_id)
            if status != "IN_PROGRESS":
                self.session_ended(student_id, session_id, status or "DELETED")

    def _student_now(self, stream: _Stream) -> float:
        """The student's frame clock now: the last frame's time plus the real time since it arrived."""
        frame = self.slots.latest(stream.student_id)
        if frame is None or frame.session_id != stream.session_id:
            return self.clock()
        return frame.server_ts + max(0.0, time.monotonic() - frame.received_mono)

    # ------------------------------------------------------------------ decisions -> warnings -> violations
    def _on_rule_event(self, stream: _Stream, event, jpeg: bytes | None, seq: int | None) -> dict | None:
        sid = stream.student_id
        decision = stream.warnings.on_event(sid, event, stream.auto_terminate)
        if event.state == "ended":
            log.info("rule ended student=%s session=%s rule=%s t=%.3f", sid, stream.session_id, event.rule, event.t)
            return None
        if decision.held_by_cooldown:
            self._counters["warnings_held"] += 1
            log.info("warning held by cooldown student=%s session=%s rule=%s: %s", sid, stream.session_id, event.rule,
                     decision.reason)
        if not decision.issued:
            return None
        log.info("warning generated student=%s session=%s rule=%s count=%s: %s", sid, stream.session_id, event.rule,
                 decision.count, decision.reason)
        violation_id = self._store_violation(stream, event, decision, jpeg, seq)
        message = decision.message or event.rule
        stream.alerts.append(f"{event.rule}: {message}")
        payload = {
            "student_id": sid, "session_id": stream.session_id, "violation_id": violation_id, "type": event.rule,
            "severity": event.severity, "state": event.state, "count": decision.count, "message": message,
            "t": event.t, "details": dict(event.details), "name": stream.name,
        }
        self.events.publish("student_violation", payload)
        self.events.publish("student_warning", {"student_id": sid, "session_id": stream.session_id,
                                                "type": event.rule, "message": message, "count": decision.count})
        issued = {"type": event.rule, "message": message, "count": decision.count, "violation_id": violation_id,
                  "terminate": bool(decision.terminate)}
        if decision.terminate and not stream.terminated:
            self._terminate_stream(stream, f"Automatically terminated: {decision.reason}", None, auto=True)
        return issued

    def _store_violation(self, stream: _Stream, event, decision, jpeg: bytes | None, seq: int | None) -> int | None:
        from ..extensions import db
        from ..models import Violation

        stem = self.evidence.stem(event.rule, event.t, seq or 0)
        evidence_rel = None
        if jpeg:
            try:
                evidence_rel = self.evidence.save_snapshot(stream.session_id, stem, jpeg)
            except OSError as exc:
                log.error("evidence snapshot not written student=%s session=%s: %s", stream.student_id, stream.session_id, exc)
        # The session's suspicion score when this violation was stored: the result page's timeline draws it.
        suspicion = stream.warnings.suspicion(stream.student_id, event.t).score
        details = {"state": event.state, "frame_t": round(event.t, 3), "warning_count": decision.count,
                   "reason": decision.reason, "seq": seq, **{k: v for k, v in event.details.items()},
                   "suspicion": round(float(suspicion), 1)}
        violation = Violation(student_id=stream.student_id, session_id=stream.session_id, type=event.rule,
                              severity=event.severity, details=json.dumps(details, default=str)[:8000],
                              evidence_path=evidence_rel)
        db.session.add(violation)
        try:
            db.session.commit()
        except Exception:  # noqa: BLE001 - e.g. the session row was deleted meanwhile
            db.session.rollback()
            log.exception("violation not stored student=%s session=%s rule=%s", stream.student_id, stream.session_id, event.rule)
            return None
        self._counters["violations"] += 1
        log.info("violation stored student=%s session=%s id=%s rule=%s evidence=%s", stream.student_id,
                 stream.session_id, violation.id, event.rule, evidence_rel)
        frames = self.preroll.clip(stream.student_id)
        if len(frames) >= 2 and self.clips is not None:
            abs_path, rel = self.evidence.paths(stream.session_id, stem, "webm")
            self.clips.submit(ClipJob(violation.id, str(abs_path), rel, frames))
        elif frames:
            log.info("no clip for violation %s: only %d processed frame(s) in the pre-roll", violation.id, len(frames))
        return violation.id

    def _clip_done(self, done) -> None:
        from ..extensions import db
        from ..models import Violation

        if done.error or not done.rel_path:
            self._counters["clips_failed"] += 1
            log.warning("no clip for violation %s: %s", done.violation_id, done.error)
            return
        violation = db.session.get(Violation, done.violation_id)
        if violation is None:
            return
        violation.clip_path = done.rel_path
        db.session.commit()
        self._counters["clips_written"] += 1
        log.info("clip stored violation=%s path=%s %s (%.2f s to write)", done.violation_id, done.rel_path, done.meta,
                 done.seconds_to_write)

    def _on_worker_crash(self, crash: dict) -> None:
        log.error("live worker crashed and is being restarted: %s", crash)

    # ------------------------------------------------------------------ public API: students
    def submit_frame(self, student_id: int, session_id: int, frame_bgr, client_ts_ms=None, *,
                     server_ts: float | None = None) -> FrameReceipt:
        """Store the frame in the student's latest-frame slot; returns at once (no inference here)."""
        self.start()
        receipt = self.slots.put(student_id, session_id, frame_bgr, client_ts_ms, server_ts)
        log.debug("frame received student=%s session=%s seq=%s replaced_older=%s", student_id, session_id,
                  receipt.seq, receipt.replaced_older)
        return receipt

    def browser_event(self, student_id: int, session_id: int, type: str, details: dict | None = None) -> list[dict]:
        """A browser-reported event (TAB_SWITCH, FULLSCREEN_EXIT, VOICE_DETECTED, CAMERA_OFF) -> warnings issued."""
        from config_vision import BROWSER_EVENT_RULES
        from decision_engine import BrowserEvent

        if type not in BROWSER_EVENT_RULES:
            raise LiveError(f"unknown event type {type!r}; expected one of {', '.join(BROWSER_EVENT_RULES)}")
        self.start()
        with self._app_ctx(), self._lock:
            stream = self._streams.get(student_id)
            if stream is None or stream.session_id != session_id:
                stream = self.session_started(student_id, session_id)
            if stream.terminated:
                raise LiveError("this exam session has been terminated", 409)
            t = self._student_now(stream)
            issued = []
            log.info("browser event student=%s session=%s type=%s", student_id, session_id, type)
            for event in stream.engine.browser_event(student_id, BrowserEvent(type, t, _clean_details(details))):
                out = self._on_rule_event(stream, event, stream.processed_jpeg, None)
                if out is not None:
                    issued.append(out)
            return issued

    def session_started(self, student_id: int, session_id: int) -> _Stream:
        """Load the session's settings (auto-terminate, disabled rules, thresholds, enrolment) and open its stream."""
        from sqlalchemy import select

        from ..extensions import db
        from ..models import Exam, ExamSession, Profile, User

        with self._app_ctx(), self._lock:
            session = db.session.get(ExamSession, session_id)
            if session is None or session.student_id != student_id:
                raise LiveError("no such exam session for this student", 404)
            if session.status != "IN_PROGRESS":
                raise LiveError(f"exam session {session_id} is {session.status}, not in progress", 409)
            exam = db.session.get(Exam, session.exam_id)
            student = db.session.get(User, student_id)
            profile = db.session.scalar(select(Profile).where(Profile.student_id == student_id))
            old = self._streams.get(student_id)
            if old is not None and old.session_id == session_id:
                return old
            if old is not None:
                self._close_stream(old, "REPLACED")
            engine, warnings, overrides = self._engines_for(getattr(exam, "thresholds", "{}") or "{}", exam.id)
            engine.forget(student_id)
            warnings.forget(student_id)
            stream = _Stream(
                student_id=student_id, session_id=session_id, name=student.name if student else f"#{student_id}",
                exam_id=exam.id, exam_title=exam.title, engine=engine, warnings=warnings,
                exam_auto_terminate=bool(exam.auto_terminate), session_auto_terminate=session.auto_terminate,
                exam_disabled=parse_rules(exam.disabled_rules), session_disabled=parse_rules(session.disabled_rules),
                embedding=profile.embedding if profile is not None and profile.embedding else None,
                vision_overrides=overrides,
            )
            engine.set_disabled_rules(student_id, set(stream.disabled_rules))
            self._streams[student_id] = stream
            self._refused.pop((student_id, session_id), None)
            log.info("session started student=%s session=%s exam=%s auto_terminate=%s disabled=%s enrolled=%s",
                     student_id, session_id, exam.id, stream.auto_terminate, sorted(stream.disabled_rules),
                     stream.embedding is not None)
        self.events.publish("student_joined", {"student_id": student_id, "session_id": session_id, "name": stream.name,
                                               "exam_id": stream.exam_id, "exam_title": stream.exam_title})
        return stream

    def _engines_for(self, thresholds_json: str, exam_id: int):
        """One DecisionEngine + WarningSystem per distinct set of exam threshold overrides."""
        from decision_engine import DecisionEngine
        from warning_system import WarningSystem

        try:
            overrides = json.loads(thresholds_json) if thresholds_json else {}
            if not isinstance(overrides, dict):
                raise ValueError("not a JSON object")
            config = self.config.with_overrides(**overrides) if overrides else self.config
        except ValueError as exc:
            log.error("exam %s has bad vision thresholds (%s); using the defaults", exam_id, exc)
            overrides, config = {}, self.config
        key = json.dumps(overrides, sort_keys=True)
        pair = self._engines.get(key)
        if pair is None:
            pair = (DecisionEngine(config), WarningSystem(config))
            self._engines[key] = pair
        return pair[0], pair[1], overrides

    def session_ended(self, student_id: int, session_id: int, status: str = "COMPLETED") -> None:
        with self._lock:
            stream = self._streams.get(student_id)
            if stream is None or stream.session_id != session_id:
                return
            self._close_stream(stream, status)

    def _close_stream(self, stream: _Stream, status: str) -> None:
        sid = stream.student_id
        self._streams.pop(sid, None)
        stream.engine.forget(sid)
        stream.warnings.forget(sid)
        self.slots.forget(sid)
        self.preroll.forget(sid)
        self._raw_cache.pop(sid, None)
        if self.pool is not None:
            self.pool.forget(sid)
        log.info("session ended student=%s session=%s status=%s", sid, stream.session_id, status)
        self.events.publish("student_left", {"student_id": sid, "session_id": stream.session_id, "status": status})

    # ------------------------------------------------------------------ public API: views and status
    def latest_view(self, student_id: int) -> LiveView | None:
        """The newest processed frame (HUD drawn), else the newest raw JPEG; None when there is nothing yet."""
        with self._lock:
            stream = self._streams.get(student_id)
            if stream is not None and stream.processed_jpeg is not None:
                return LiveView(stream.processed_jpeg, "processed", time.monotonic() - stream.processed_mono,
                                self.status(student_id))
        frame = self.slots.latest(student_id)
        if frame is None:
            return None
        jpeg = frame.jpeg or self._raw_jpeg(frame)
        if jpeg is None:
            return None
        return LiveView(jpeg, "raw", time.monotonic() - frame.received_mono, self.status(student_id))

    def _raw_jpeg(self, frame) -> bytes | None:
        """The raw frame as JPEG, encoded at most once per frame (only until processed frames exist)."""
        import cv2

        key = (frame.student_id, frame.seq)
        cached = self._raw_cache.get(frame.student_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 75])
        if not ok:
            return None
        self._raw_cache[frame.student_id] = (key, buf.tobytes())
        return self._raw_cache[frame.student_id][1]

    def status(self, student_id: int) -> dict:
        with self._lock:
            stream = self._streams.get(student_id)
            if stream is None:
                return {"student_id": student_id, "session_id": None, "active": False}
            now_mono = time.monotonic()
            frame = self.slots.latest(student_id)
            t = self._student_now(stream)
            susp = stream.warnings.suspicion(student_id, t)
            face = stream.last_face
            dets = stream.last_detections
            return {
                "student_id": student_id,
                "session_id": stream.session_id,
                "active": True,
                "name": stream.name,
                "exam_id": stream.exam_id,
                "frame_age_s": None if frame is None else round(now_mono - frame.received_mono, 2),
                "result_age_s": None if stream.last_result_mono is None else round(now_mono - stream.last_result_mono, 2),
                "face": _face_summary(face),
                "faces": None if face is None else int(face.face_count),
                "persons": None if dets is None else dets.person_count,
                "objects": _objects_summary(dets),
                "identity": {"match": stream.identity_match, "distance": stream.identity_distance,
                             "enrolled": stream.embedding is not None},
                "warnings": stream.warnings.count(student_id),
                "suspicion": {"score": susp.score, "components": susp.components, "explanation": susp.explanation},
                "active_rules": {k: round(v, 3) for k, v in stream.engine.active_conditions(student_id).items()},
                "auto_terminate": stream.auto_terminate,
                "disabled_rules": sorted(stream.disabled_rules),
                "frames": self.slots.stats(student_id).as_dict() | {
                    "processed": stream.processed, "detector_runs": stream.detector_runs,
                    "identity_checks": stream.identity_checks, "identity_attempts": stream.identity_attempts},
                "errors": list(stream.last_errors),
                "terminated": stream.terminated,
            }

    def active_students(self) -> list[dict]:
        with self._lock:
            streams = list(self._streams.values())
            rows = []
            for s in streams:
                st = self.status(s.student_id)
                rows.append({"student_id": s.student_id, "name": s.name, "session_id": s.session_id,
                             "exam_id": s.exam_id, "exam_title": s.exam_title, "status": st})
        rows.sort(key=lambda r: (-r["status"]["suspicion"]["score"], -r["status"]["warnings"], r["name"]))
        return rows

    def pipeline_status(self) -> dict:
        lat = sorted(self._latencies)
        now = time.monotonic()
        recent = [m for m in self._results_mono if now - m <= 10.0]
        return {
            "enabled": self.enabled,
            "running": self._loop_alive,
            "async_mode": self._mode(),
            "workers": self.pool.status() if self.pool is not None else None,
            "clip_writer": self.clips.status() if self.clips is not None else None,
            "frames": self.slots.totals(),
            "counters": dict(self._counters),
            "processed_per_s": round(len(recent) / 10.0, 2),
            "latency_ms": None if not lat else {
                "median": round(statistics.median(lat) * 1000, 1),
                "p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1000, 1), "samples": len(lat)},
            "stage_ms": self._stage_medians(),
            "active_students": len(self._streams),
            "crashes": list(self.pool.crashes[-10:]) if self.pool is not None else [],
        }

    def _stage_medians(self) -> dict:
        """Median worker milliseconds per stage over the recent results."""
        samples = list(self._stage_ms)
        out = {}
        for stage in ("decode", "face", "detector", "identity", "hud_jpeg", "total"):
            values = [t[stage] for t in samples if stage in t]
            if values:
                out[stage] = round(statistics.median(values), 1)
        return out

    def detector_status(self) -> dict:
        info = self.pool.detector_info() if self.pool is not None else {"loaded": False, "reason": "live processing disabled"}
        return {**info, "every_n_frames": int(self.config.DETECTOR_EVERY_N_FRAMES),
                "backend_setting": self.config.DETECTOR_BACKEND}

    # ------------------------------------------------------------------ public API: admin actions
    def _stream_for_session(self, session_id: int) -> _Stream | None:
        for s in self._streams.values():
            if s.session_id == session_id:
                return s
        return None

    def clear_warnings(self, student_id: int, by_admin_id: int | None) -> None:
        with self._app_ctx(), self._lock:
            stream = self._streams.get(student_id)
            if stream is None:
                raise LiveError("this student has no active exam session", 404)
            stream.warnings.clear(student_id, self._student_now(stream))
            stream.alerts.clear()
            self._audit(by_admin_id, "live.clear_warnings", "exam_session", stream.session_id, student_id=student_id)
            log.info("warnings cleared student=%s session=%s by=%s", student_id, stream.session_id, by_admin_id)
        self.events.publish("warnings_cleared", {"student_id": student_id, "session_id": stream.session_id,
                                                 "by_admin_id": by_admin_id})

    def terminate(self, session_id: int, reason: str, by_admin_id: int | None) -> None:
        """End the session now (graded as TERMINATED), publish exam_terminated, drop the stream."""
        reason = (str(reason or "").strip() or "Terminated by the proctor")[:255]
        with self._app_ctx(), self._lock:
            stream = self._stream_for_session(session_id)
            if stream is None:
                from ..extensions import db
                from ..models import ExamSession

                row = db.session.get(ExamSession, session_id)
                if row is None:
                    raise LiveError("no such exam session", 404)
                if row.status != "IN_PROGRESS":
                    raise LiveError(f"exam session {session_id} is already {row.status}", 409)
                student_id = row.student_id
                self._finish_session(session_id, reason)
                self._audit(by_admin_id, "live.terminate", "exam_session", session_id, reason=reason)
                self.events.publish("exam_terminated", {"student_id": student_id, "session_id": session_id,
                                                        "reason": reason, "by_admin_id": by_admin_id, "auto": False})
                return
            self._terminate_stream(stream, reason, by_admin_id, auto=False)

    def _terminate_stream(self, stream: _Stream, reason: str, by_admin_id: int | None, auto: bool) -> None:
        stream.terminated = True
        self._finish_session(stream.session_id, reason)
        self._audit(by_admin_id, "live.auto_terminate" if auto else "live.terminate", "exam_session", stream.session_id,
                    student_id=stream.student_id, reason=reason, warnings=stream.warnings.count(stream.student_id))
        log.warning("session terminated student=%s session=%s auto=%s by=%s: %s", stream.student_id, stream.session_id,
                    auto, by_admin_id, reason)
        self.events.publish("exam_terminated", {"student_id": stream.student_id, "session_id": stream.session_id,
                                                "reason": reason, "by_admin_id": by_admin_id, "auto": auto})
        self._close_stream(stream, "TERMINATED")

    def _finish_session(self, session_id: int, reason: str) -> None:
        from ..exam_service import ExamError, finish_session

        try:
            finish_session(session_id, "TERMINATED", reason)
        except ExamError as exc:
            raise LiveError(str(exc), getattr(exc, "status", 404)) from None

    def set_auto_terminate(self, session_id: int, enabled: bool | None, by_admin_id: int | None) -> bool:
        """Session override (True/False; None: back to the exam's setting). Returns the effective value."""
        from ..extensions import db
        from ..models import Exam, ExamSession

        if enabled is not None and not isinstance(enabled, bool):
            raise LiveError("enabled must be true, false or null")
        with self._app_ctx(), self._lock:
            session = db.session.get(ExamSession, session_id)
            if session is None:
                raise LiveError("no such exam session", 404)
            session.auto_terminate = enabled
            exam_setting = bool(db.session.get(Exam, session.exam_id).auto_terminate)
            self._audit(by_admin_id, "live.set_auto_terminate", "exam_session", session_id, enabled=enabled, commit=False)
            db.session.commit()
            stream = self._stream_for_session(session_id)
            if stream is not None:
                stream.session_auto_terminate = enabled
            effective = exam_setting if enabled is None else enabled
            log.info("auto-terminate session=%s set to %s (effective %s) by=%s", session_id, enabled, effective, by_admin_id)
            return effective

    def set_rule(self, session_id: int, rule: str, enabled: bool, by_admin_id: int | None) -> list[str]:
        """Enable or disable one rule for this session. Returns the session's disabled rules (exam + session)."""
        from config_vision import RULES

        from ..extensions import db
        from ..models import Exam, ExamSession

        if rule not in RULES:
            raise LiveError(f"unknown rule {rule!r}")
        if not isinstance(enabled, bool):
            raise LiveError("enabled must be true or false")
        with self._app_ctx(), self._lock:
            session = db.session.get(ExamSession, session_id)
            if session is None:
                raise LiveError("no such exam session", 404)
            exam = db.session.get(Exam, session.exam_id)
            session_rules = set(parse_rules(session.disabled_rules))
            exam_rules = parse_rules(exam.disabled_rules)
            if enabled:
                session_rules.discard(rule)
                if rule in exam_rules:
                    raise LiveError(f"{rule} is disabled for the whole exam; change it in the exam's settings", 409)
            else:
                session_rules.add(rule)
            session.disabled_rules = ",".join(sorted(session_rules))
            self._audit(by_admin_id, "live.set_rule", "exam_session", session_id, rule=rule, enabled=enabled, commit=False)
            db.session.commit()
            stream = self._stream_for_session(session_id)
            if stream is not None:
                stream.session_disabled = frozenset(session_rules)
                stream.exam_disabled = exam_rules
                stream.engine.set_disabled_rules(stream.student_id, set(stream.disabled_rules))
            log.info("rule %s %s for session=%s by=%s", rule, "enabled" if enabled else "disabled", session_id, by_admin_id)
            return sorted(exam_rules | session_rules)

    def _audit(self, actor_id, action, target_type, target_id, commit: bool = True, **details) -> None:
        from .. import audit

        audit.record(actor_id, action, target_type, target_id, commit=commit, **details)
