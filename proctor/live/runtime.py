"""The live proctoring runtime: frame slots -> worker processes -> decisions -> warnings -> evidence.

One LiveRuntime per app. Routes call submit_frame / browser_event (they return at once); a
background loop (socketio.start_background_task, so a green thread under eventlet and an OS
thread in threading mode) moves frames from the latest-frame slots to idle worker processes,
collects results with non-blocking polls, runs the pure DecisionEngine and WarningSystem,
writes evidence files, and publishes events on `runtime.events`.

It does no database work: sessions are read and violations, clips, terminations, the proctor's
switches and the audit trail are written through the LiveStore it is given (store.py). Its
settings come in as a LiveSettings (settings.py); it imports nothing from the web layer.

Rules run on frame time (the server's receive time of each frame, or the caller's `server_ts`),
never on the time a result happens to arrive.
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Callable

from .actions import ProctorActions
from .events import EventBus
from .capture import EvidenceCapture, condition_span_s
from .evidence import ClipRecorder, EvidenceStore, PrerollBuffer
from .frames import FrameReceipt, FrameSlots
from .health import LoopHeartbeat, read_lock
from .outbox import SeenEvents, ViolationQueue
from .pipeline import FrameResult
from .settings import LiveSettings
from .stats import PipelineStats
from .store import IN_PROGRESS, LiveError, LiveStore, ViolationRecord
from .streams import ExamRulesCache, Stream, clean_details
from .cluster import ClusterMixin
from .views import LiveView, LiveViews, frame_jpeg
from .workers import WorkerPool

__all__ = ["LiveRuntime", "LiveView", "LiveError"]

log = logging.getLogger(__name__)

SESSION_RECHECK_S = 10.0   # how often active sessions are re-read (ended elsewhere, deadline passed)
REFUSED_RETRY_S = 10.0     # a frame for a session that is not in progress is dropped; retried after this
READ_LOCK_WAIT_S = 0.25    # views and status wait this long for the runtime's lock, then read without it
IDLE_PASS_S = 0.1          # the loop's pause between passes while no student is streaming


class LiveRuntime(ClusterMixin, LiveViews, ProctorActions, EvidenceCapture):
    """The loop and the students' streams; their views and status come from LiveViews (views.py), the
    proctor's actions from ProctorActions (actions.py), a violation's snapshot and clip from
    EvidenceCapture (capture.py), and, with several web processes, ClusterMixin
    (cluster.py) sends a call about a student another process holds to that process.
    With `autostart=False`, submit_frame and browser_event do not start
    the loop: the caller calls start(), or drives step() itself (tests with a fake pool)."""

    def __init__(self, settings: LiveSettings, store: LiveStore, socketio=None, *,
                 clock: Callable[[], float] = time.time, autostart: bool = True):
        from config_vision import load_vision_config
        from person_pipeline import ObjectEvidence

        self.settings = settings
        self.store = store
        self.socketio = socketio
        self.clock = clock
        self.autostart = autostart
        self.enabled = bool(settings.enabled)
        self.worker_count = int(settings.workers)
        self.config = load_vision_config(**dict(settings.vision_overrides))
        ObjectEvidence.from_config(self.config)  # OBJECT_EVIDENCE_* must agree: fail at start, not on a frame
        self.status_every_s = float(settings.status_every_s)
        self.events = EventBus()
        self.slots = FrameSlots(clock=clock)
        span_s = float(settings.preroll_s) + condition_span_s(self.config)
        self.preroll = PrerollBuffer(span_s, max_frames=max(240, int(span_s * 12)))  # up to 12 frames a second
        self.evidence = EvidenceStore(settings.data_dir)
        self.clips = ClipRecorder(self.evidence, self.preroll, float(settings.preroll_s), float(settings.postroll_s))
        self.pool: WorkerPool | None = None
        self._streams: dict[int, Stream] = {}
        self._exam_rules = ExamRulesCache(self.config)
        self._lock = threading.RLock()
        self._refused: dict[tuple[int, int], float] = {}
        self.stats = PipelineStats()
        self._raw_cache: dict[int, tuple] = {}
        self._running = False
        self._loop_alive = False
        self._started = False
        self._start_lock = threading.Lock()
        self._last_recheck_mono = time.monotonic()
        self.heartbeat = LoopHeartbeat(settings.loop_stall_s)
        self.violation_queue = ViolationQueue(store, settings.data_dir, self._violation_stored)  # replays the disk's
        self.seen_events = SeenEvents()

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
                live_log.setLevel(self.settings.log_level)
            if self.enabled and self.settings.broker_url:
                from .cluster import Cluster
                from .remote import RemotePool

                self.pool = RemotePool(self.settings.broker_url, self.config, self.settings.broker_namespace)
                self.pool.start()
                self.cluster = Cluster(self.pool.redis, self.pool.ns, self.pool.runtime_id, self.pool.blocking_redis())
            elif self.enabled:
                self.pool = WorkerPool(self.worker_count, self.config, on_crash=self._on_worker_crash)
                self.pool.start()
            self._running = True
            for target in (self._run, self._serve_commands) if self.cluster is not None else (self._run,):
                if self._green():
                    self.socketio.start_background_task(target)
                else:
                    threading.Thread(target=target, name=f"proctor-live{target.__name__}", daemon=True).start()
            log.info("live runtime started: enabled=%s workers=%s mode=%s", self.enabled,
                     "celery via " + self.pool.status()["broker"] if self.settings.broker_url and self.pool else self.worker_count,
                     self.settings.async_mode)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop and the processes (tests, shutdown). Idempotent."""
        with self._start_lock:
            if not self._started:
                self._finish_all_clips()  # a runtime driven by step() alone (tests) has them too
                return
            self._running = False
            deadline = time.monotonic() + timeout
            while self._loop_alive and time.monotonic() < deadline:
                self._sleep(0.01)
            if self.pool is not None:
                self.pool.stop()
            self._finish_all_clips()
            self._started = False
            log.info("live runtime stopped")

    def _autostart(self) -> None:
        if self.autostart:
            self.start()

    def _green(self) -> bool:
        return self.socketio is not None and getattr(self.socketio, "server", None) is not None

    def _sleep(self, seconds: float) -> None:
        if self._green():
            self.socketio.sleep(seconds)
        else:
            time.sleep(seconds)

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        self._loop_alive = True
        self.heartbeat.loop_started()
        try:
            while self._running:
                pass_started = time.monotonic()
                try:
                    busy = self.step()
                except Exception:  # noqa: BLE001 - the loop must survive anything one step does
                    self.stats.count("loop_errors")
                    log.exception("live runtime loop step failed")
                    self._sleep(1.0)  # e.g. the database is down: retry calmly, do not spin and flood the log
                    continue
                self.heartbeat.beat(pass_started)
                # Nobody in an exam: a calm pass rate (the loop now runs from the server's start, and a
                # first frame waits at most IDLE_PASS_S for it).
                self._sleep(0.004 if busy else 0.02 if self._streams else IDLE_PASS_S)
        finally:
            self._loop_alive = False
            self.heartbeat.loop_stopped()

    def step(self) -> bool:
        """One pass: dispatch waiting frames, collect results, tick and publish status."""
        busy = self.violation_queue.retry_due()
        busy |= self._dispatch()
        self._cluster_step()
        if self.pool is not None:
            results = self.pool.results()
            for result in results:
                self._handle_result(result)
            busy |= bool(results)
        self._finish_clips()
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
                job = stream.frame_job(frame, self.config)
            if self.pool.submit(job):
                sent = True
                log.debug("frame dispatched student=%s session=%s seq=%s detector=%s identity=%s",
                          sid, frame.session_id, frame.seq, job.run_detector, job.identity_embedding is not None)
        return sent

    def _open_stream_for_frame(self, student_id: int, session_id: int) -> Stream | None:
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
                self.stats.count("results_dropped")
                return
            self.stats.result(now_mono - r.received_mono, r.timings_ms, now_mono)
            if r.errors:
                log.warning("inference errors student=%s session=%s seq=%s: %s", r.student_id, r.session_id, r.seq, r.errors)
            log.debug("inference result student=%s session=%s seq=%s worker=%s objects=%s ms=%s",
                      r.student_id, r.session_id, r.seq, r.worker_id,
                      None if r.detections is None else [d.label for d in r.detections.items],
                      {k: round(v, 1) for k, v in r.timings_ms.items()})
            obs = stream.absorb(r, now_mono)
            if stream.last_frame is not None and stream.last_frame.seq == r.seq:
                jpeg = frame_jpeg(stream.last_frame)  # the page's own bytes: nothing encoded
                if jpeg:
                    self.preroll.add(r.student_id, r.frame_ts, jpeg)
                    self.clips.add(r.student_id, r.frame_ts, jpeg)
                self._keep_detector_frame(stream, r)
            for event in stream.engine.evaluate(r.student_id, obs, r.frame_ts):
                self._on_rule_event(stream, event, r.seq)

    def _tick_and_publish(self) -> None:
        now_mono = time.monotonic()
        with self._lock:
            streams = list(self._streams.values())
        for stream in streams:
            if stream.terminated or now_mono - stream.last_status_mono < self.status_every_s:
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
                        self._on_rule_event(stream, event, None)
            if stream.terminated:
                continue
            self.events.publish("student_status", {"student_id": stream.student_id, "session_id": stream.session_id,
                                                   "status": self.status(stream.student_id)})
        if now_mono - self._last_recheck_mono >= SESSION_RECHECK_S:
            self._last_recheck_mono = now_mono
            self._recheck_sessions()

    def _recheck_sessions(self) -> None:
        """End streams whose session was finished elsewhere (submitted, expired, deleted)."""
        with self._lock:
            ids = {s.session_id: s.student_id for s in self._streams.values()}
        if not ids:
            return
        states = self.store.session_states(list(ids))
        for session_id, student_id in ids.items():
            status = states.get(session_id)
            if status != IN_PROGRESS:
                self.session_ended(student_id, session_id, status or "DELETED")

    def _student_now(self, stream: Stream) -> float:
        """The student's frame clock now: the last frame's time plus the real time since it arrived."""
        frame = self.slots.latest(stream.student_id)
        if frame is None or frame.session_id != stream.session_id:
            return self.clock()
        return frame.server_ts + max(0.0, time.monotonic() - frame.received_mono)

    # ------------------------------------------------------------------ decisions -> warnings -> violations
    def _on_rule_event(self, stream: Stream, event, seq: int | None) -> dict | None:
        sid = stream.student_id
        decision = stream.warnings.on_event(sid, event, stream.auto_terminate)
        if event.state == "ended":
            log.info("rule ended student=%s session=%s rule=%s t=%.3f", sid, stream.session_id, event.rule, event.t)
            return None
        if decision.held_by_cooldown:
            self.stats.count("warnings_held")
            log.info("warning held by cooldown student=%s session=%s rule=%s: %s", sid, stream.session_id, event.rule,
                     decision.reason)
        if not decision.issued:
            return None
        log.info("warning generated student=%s session=%s rule=%s count=%s incident=%s part=%s: %s", sid,
                 stream.session_id, event.rule, decision.count, decision.incident, decision.incident_part,
                 decision.reason)
        violation_id = self._store_violation(stream, event, decision, seq)
        message = decision.message or event.rule
        # A later part of an incident is stored and shown as part of it; it is not a new warning.
        incident = {"incident": decision.incident, "incident_opened": decision.opened_incident,
                    "incident_part": decision.incident_part, "incident_weight": decision.incident_weight}
        payload = {
            "student_id": sid, "session_id": stream.session_id, "violation_id": violation_id, "type": event.rule,
            "severity": event.severity, "state": event.state, "count": decision.count, "message": message,
            "t": event.t, "details": dict(event.details), "name": stream.name, **incident,
        }
        self.events.publish("student_violation", payload)
        self.events.publish("student_warning", {"student_id": sid, "session_id": stream.session_id,
                                                "type": event.rule, "message": message, "count": decision.count,
                                                **incident})
        issued = {"type": event.rule, "message": message, "count": decision.count, "violation_id": violation_id,
                  "terminate": bool(decision.terminate), **incident}
        if decision.terminate and not stream.terminated:
            self._terminate_stream(stream, f"Automatically terminated: {decision.reason}", None, auto=True)
        return issued

    def _store_violation(self, stream: Stream, event, decision, seq: int | None) -> int | None:
        stem = self.evidence.stem(event.rule, event.t, seq or 0)
        evidence_rel = self._save_snapshot(stream, stem, event)
        clip_rel = self._save_clip_frames(stream, stem, event)
        # The session's suspicion score when this violation was stored: the result page's timeline draws it.
        suspicion = stream.warnings.suspicion(stream.student_id, event.t).score
        details = {"state": event.state, "frame_t": round(event.t, 3), "warning_count": decision.count,
                   "reason": decision.reason, "seq": seq, **{k: v for k, v in event.details.items()},
                   "suspicion": round(float(suspicion), 1),
                   # the incident this violation is a part of (restore() and the session page read these)
                   "incident": decision.incident, "incident_opened": decision.opened_incident,
                   "incident_part": decision.incident_part, "incident_weight": decision.incident_weight,
                   "incident_t": None if decision.incident_t is None else round(decision.incident_t, 3)}
        record = ViolationRecord(stream.student_id, stream.session_id, event.rule, event.severity, details, evidence_rel,
                                 client_id=str(uuid.uuid4()), clip_path=clip_rel)
        violation_id = self.violation_queue.submit(record)  # None: queued (the store failed), stored later
        if violation_id is not None:
            self._violation_stored(record, violation_id)
        return violation_id

    def _violation_stored(self, record: ViolationRecord, violation_id: int) -> None:
        self.stats.count("violations")
        log.info("violation stored student=%s session=%s id=%s rule=%s evidence=%s clip=%s", record.student_id,
                 record.session_id, violation_id, record.type, record.evidence_path, record.clip_path)

    def _on_worker_crash(self, crash: dict) -> None:
        log.error("live worker crashed and is being restarted: %s", crash)

    # ------------------------------------------------------------------ public API: students
    def submit_frame(self, student_id: int, session_id: int, frame_bgr, client_ts_ms=None, *,
                     server_ts: float | None = None) -> FrameReceipt:
        """Store the frame in the student's latest-frame slot; returns at once (no inference here)."""
        self._autostart()
        receipt = self.slots.put(student_id, session_id, frame_bgr, client_ts_ms, server_ts)
        log.debug("frame received student=%s session=%s seq=%s replaced_older=%s", student_id, session_id,
                  receipt.seq, receipt.replaced_older)
        return receipt

    def browser_event(self, student_id: int, session_id: int, type: str, details: dict | None = None,
                      client_id: str | None = None) -> list[dict] | None:
        """A browser-reported event (TAB_SWITCH, FULLSCREEN_EXIT, VOICE_DETECTED, CAMERA_OFF) -> warnings issued;
        None for a repeat of a `client_id` already taken for this session (the page's outbox retried it)."""
        from config_vision import BROWSER_EVENT_RULES
        from decision_engine import BrowserEvent

        if type not in BROWSER_EVENT_RULES:
            raise LiveError(f"unknown event type {type!r}; expected one of {', '.join(BROWSER_EVENT_RULES)}")
        self._autostart()
        with self._lock:
            stream = self._streams.get(student_id)
            if stream is None or stream.session_id != session_id:
                stream = self.session_started(student_id, session_id)
            if stream.terminated:
                raise LiveError("this exam session has been terminated", 409)
            if client_id is not None and (session_id, client_id) in self.seen_events:
                return None  # the page's outbox sent it again (it missed our reply): taken once
            t = self._student_now(stream)
            issued = []
            log.info("browser event student=%s session=%s type=%s", student_id, session_id, type)
            for event in stream.engine.browser_event(student_id, BrowserEvent(type, t, clean_details(details))):
                out = self._on_rule_event(stream, event, None)
                if out is not None:
                    issued.append(out)
            if client_id is not None:
                self.seen_events.add(session_id, client_id)
            return issued

    def session_started(self, student_id: int, session_id: int) -> Stream:
        """Load the session's settings (auto-terminate, disabled rules, thresholds, enrolment) and open its stream."""
        with self._lock:
            info = self.store.load_session(session_id)
            if info is None or info.student_id != student_id:
                raise LiveError("no such exam session for this student", 404)
            if info.status != IN_PROGRESS:
                raise LiveError(f"exam session {session_id} is {info.status}, not in progress", 409)
            old = self._streams.get(student_id)
            if old is not None and old.session_id == session_id:
                return old
            if old is not None:
                self._close_stream(old, "REPLACED")
            stream = Stream.open(info, self._exam_rules.for_exam(info.exam_thresholds, info.exam_id))
            stream.forget()
            stream.engine.set_disabled_rules(student_id, set(stream.disabled_rules))
            stream.warnings.restore(student_id, info.warning_count, info.warned_at, info.last_incident, info.open_incident)
            self._streams[student_id] = stream
            self._cluster_claim(student_id, session_id)
            self._refused.pop((student_id, session_id), None)
            log.info("session started student=%s session=%s exam=%s auto_terminate=%s disabled=%s enrolled=%s warnings=%s",
                     student_id, session_id, info.exam_id, stream.auto_terminate, sorted(stream.disabled_rules),
                     stream.embedding is not None, info.warning_count)
        self.events.publish("student_joined", {"student_id": student_id, "session_id": session_id, "name": stream.name,
                                               "exam_id": stream.exam_id, "exam_title": stream.exam_title})
        return stream

    def session_ended(self, student_id: int, session_id: int, status: str = "COMPLETED") -> None:
        with self._lock:
            stream = self._streams.get(student_id)
            if stream is None or stream.session_id != session_id:
                return
            self._close_stream(stream, status)

    def _close_stream(self, stream: Stream, status: str) -> None:
        sid = stream.student_id
        self._streams.pop(sid, None)
        stream.forget()
        self.slots.forget(sid)
        self._finish_all_clips(sid)  # the session ended during a post-roll: the clip keeps what it has
        self.preroll.forget(sid)
        self._raw_cache.pop(sid, None)
        if self.pool is not None:
            self.pool.forget(sid)
        log.info("session ended student=%s session=%s status=%s", sid, stream.session_id, status)
        if status == "MOVED":  # another web process holds the student now (cluster.py): admins still see it
            return
        self._cluster_release(sid)
        self.events.publish("student_left", {"student_id": sid, "session_id": stream.session_id, "status": status})

    # ------------------------------------------------------------------ public API: views and status
    def _reading(self):  # the runtime's lock for a reader, waited for at most READ_LOCK_WAIT_S
        return read_lock(self._lock, READ_LOCK_WAIT_S, lambda: self.stats.count("reads_without_lock"))

    def loop_health(self) -> dict:  # the loop's heartbeat and the workers for /api/health; takes no lock
        return self.heartbeat.report(self._started, self.pool.health() if self.pool is not None else None)

    def pipeline_status(self) -> dict:
        return {
            "enabled": self.enabled,
            "running": self._loop_alive,
            "async_mode": self.settings.async_mode,
            "workers": self.pool.status() if self.pool is not None else None,
            "frames": self.slots.totals(),
            "violations_waiting": len(self.violation_queue),  # not stored yet (the database is down): retried
            **self.stats.as_dict(time.monotonic()),
            "active_students": len(self._streams),
            "crashes": list(self.pool.crashes[-10:]) if self.pool is not None else [],
        }

    def detector_status(self) -> dict:
        info = self.pool.detector_info() if self.pool is not None else {"loaded": False, "reason": "live processing disabled"}
        c = self.config
        cadence = {"steady_interval_s": c.DETECTOR_STEADY_INTERVAL_S, "fast_interval_s": c.DETECTOR_FAST_INTERVAL_S,
                   "change_min_interval_s": c.DETECTOR_CHANGE_MIN_INTERVAL_S, "motion_diff": c.DETECTOR_MOTION_DIFF,
                   "pose_change_deg": c.DETECTOR_POSE_CHANGE_DEG}
        return {**info, "cadence": cadence, "backend_setting": c.DETECTOR_BACKEND}
