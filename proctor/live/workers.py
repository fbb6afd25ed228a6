"""Worker processes that run the vision pipelines on frames, behind a small job/result interface.

    pool = WorkerPool(size=2, config=vision_config)
    pool.start()
    pool.submit(FrameJob(...)) -> bool      # False: that student's worker is busy or not ready yet
    pool.results() -> list[FrameResult]     # never blocks; also notices crashed workers and restarts them

Each worker is a real OS process (multiprocessing "spawn" context) with its own model
instances: one FaceAnalyzer in tracking mode per student stream, one object detector, one
FaceIdentity. A student's frames always go to the same worker (sticky assignment) so that
the tracking state follows the stream. A worker holds at most one job at a time: together
with the latest-frame slots that means no backlog anywhere.

Pipes are one-way os.pipe() pairs (not socketpairs): eventlet's monkey-patched socket module
would hand multiprocessing non-blocking sockets. The parent only ever polls with timeout 0,
so the event loop never waits on a worker.

Nothing here imports Flask or the database; a later step can run `process_frame` on a task engine.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

JOB_TIMEOUT_S = 60.0          # a job running longer than this means the worker hangs: it is restarted
READY_TIMEOUT_S = 180.0       # model loading longer than this means the worker is stuck at start
RESTART_WINDOW_S = 60.0
RESTARTS_BEFORE_BACKOFF = 5   # more crashes than this within RESTART_WINDOW_S -> wait before restarting
RESTART_BACKOFF_S = 10.0
MAX_STREAMS_PER_WORKER = 64   # face trackers kept per worker (least recently used dropped beyond)
PROCESSED_JPEG_QUALITY = 80


@dataclass
class FrameJob:
    """One frame to analyse. `image` (BGR) or `jpeg` is set."""

    student_id: int
    session_id: int
    seq: int
    frame_ts: float
    received_mono: float
    image: np.ndarray | None = field(default=None, repr=False)
    jpeg: bytes | None = field(default=None, repr=False)
    run_detector: bool = True
    identity_embedding: bytes | None = field(default=None, repr=False)  # set when an identity check is due
    hud_status: dict = field(default_factory=dict)  # drawn on the processed frame (last known state)
    hud_alerts: list = field(default_factory=list)
    jpeg_quality: int = PROCESSED_JPEG_QUALITY
    vision_overrides: dict = field(default_factory=dict)  # the exam's thresholds (validated by the runtime)


@dataclass
class FrameResult:
    student_id: int
    session_id: int
    seq: int
    frame_ts: float
    received_mono: float
    worker_id: int
    face: Any = None                 # FaceObservation | None (None: the face stage failed)
    detections: Any = None           # Detections | None (None: not run this frame, or no detector)
    detector_ran: bool = False
    identity_ran: bool = False
    identity_face_found: bool | None = None
    identity_distance: float | None = None
    identity_match: bool | None = None
    frame_mean: float | None = None  # mean luma 0-255
    frame_diff: float | None = None  # mean abs luma difference to this stream's previous frame
    frame_size: tuple[int, int] | None = None
    processed_jpeg: bytes | None = field(default=None, repr=False)
    timings_ms: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    done_mono: float = 0.0


# ------------------------------------------------------------------------------ child side

class FramePipeline:
    """The per-process model set and per-stream state. Runs in a worker (or anywhere: no I/O)."""

    def __init__(self, config, models_dir: str | None = None, worker_id: int = 0):
        self.config = config
        self._exam_configs: dict = {}
        self.worker_id = worker_id
        self.models_dir = Path(models_dir) if models_dir else None
        self.info: dict[str, Any] = {"worker_id": worker_id, "pid": os.getpid(), "errors": []}
        self._analyzers: dict[int, Any] = {}
        self._last_used: dict[int, float] = {}
        self._prev_small: dict[int, np.ndarray] = {}
        self._face_cls = self._detector = self._identity = self._draw_hud = None
        self._load()

    def _note(self, what: str, exc: BaseException) -> None:
        msg = f"{what}: {type(exc).__name__}: {exc}"
        self.info["errors"].append(msg)
        log.error("worker %s: %s", self.worker_id, msg)

    def _load(self) -> None:
        import cv2

        cv2.setNumThreads(1)  # one core per worker; the pool size decides the parallelism
        try:
            from face_pipeline import FaceAnalyzer

            self._face_cls = FaceAnalyzer
            self.info["face"] = "FaceAnalyzer"
        except Exception as exc:  # noqa: BLE001 - reported in info and on every result
            self._note("face stage unavailable", exc)
        try:
            from person_pipeline import create_detector

            self._detector = create_detector(self.config, self.models_dir)
            self.info["detector"] = self._detector.info() if self._detector is not None else {"loaded": False, "reason": "no model file"}
        except Exception as exc:  # noqa: BLE001
            self.info["detector"] = {"loaded": False, "reason": f"{type(exc).__name__}: {exc}"}
            self._note("object detector unavailable", exc)
        try:
            from face_identity import FaceIdentity

            self._identity = FaceIdentity(self.config)
            self.info["identity"] = "FaceIdentity"
        except Exception as exc:  # noqa: BLE001
            self._note("identity stage unavailable", exc)
        try:
            from vision_ui import draw_hud

            self._draw_hud = draw_hud
        except Exception as exc:  # noqa: BLE001
            self._note("HUD drawing unavailable (processed frames are plain)", exc)

    def _analyzer(self, student_id: int):
        analyzer = self._analyzers.get(student_id)
        if analyzer is None:
            if len(self._analyzers) >= MAX_STREAMS_PER_WORKER:
                oldest = min(self._last_used, key=self._last_used.get)
                self.forget(oldest)
            analyzer = self._face_cls(self.config, static_image_mode=False)
            self._analyzers[student_id] = analyzer
        self._last_used[student_id] = time.monotonic()
        return analyzer

    def forget(self, student_id: int) -> None:
        analyzer = self._analyzers.pop(student_id, None)
        self._last_used.pop(student_id, None)
        self._prev_small.pop(student_id, None)
        if analyzer is not None:
            try:
                analyzer.close()
            except Exception:  # noqa: BLE001
                log.exception("closing face analyzer for student %s", student_id)

    def _config_for(self, overrides: dict):
        """The vision config with an exam's threshold overrides (cached: exams share few distinct sets)."""
        if not overrides:
            return self.config
        key = json.dumps(overrides, sort_keys=True)
        config = self._exam_configs.get(key)
        if config is None:
            config = self.config.with_overrides(**overrides)
            self._exam_configs[key] = config
        return config

    def warm_up(self) -> None:
        """Run each model once on a blank frame so the first real frame is not slow (lazy init, JIT)."""
        blank = np.zeros((480, 640, 3), np.uint8)
        t = time.perf_counter()
        try:
            if self._face_cls is not None:
                analyzer = self._face_cls(self.config, static_image_mode=False)
                analyzer.analyze(blank)
                analyzer.close()
            if self._detector is not None:
                self._detector.detect(blank)
        except Exception as exc:  # noqa: BLE001 - a real frame will report the same problem
            self._note("warm-up failed", exc)
        self.info["warm_up_ms"] = round((time.perf_counter() - t) * 1000, 1)

    def close(self) -> None:
        for sid in list(self._analyzers):
            self.forget(sid)

    def process(self, job: FrameJob) -> FrameResult:
        import cv2

        res = FrameResult(job.student_id, job.session_id, job.seq, job.frame_ts, job.received_mono, self.worker_id)
        t0 = time.perf_counter()
        frame = job.image
        if frame is None and job.jpeg is not None:
            frame = cv2.imdecode(np.frombuffer(job.jpeg, np.uint8), cv2.IMREAD_COLOR)
            res.timings_ms["decode"] = (time.perf_counter() - t0) * 1000
        if frame is None:
            res.errors.append("could not decode frame")
            res.done_mono = time.monotonic()
            return res
        res.frame_size = (int(frame.shape[1]), int(frame.shape[0]))

        # Frame statistics for CAMERA_OFF (black or frozen picture).
        from face_pipeline import camera_activity

        res.frame_mean, res.frame_diff, self._prev_small[job.student_id] = camera_activity(
            frame, self._prev_small.get(job.student_id))

        if self._face_cls is not None:
            t = time.perf_counter()
            try:
                res.face = self._analyzer(job.student_id).analyze(frame)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not kill the stream
                res.errors.append(f"face stage: {type(exc).__name__}: {exc}")
                log.exception("worker %s: face stage failed (student %s seq %s)", self.worker_id, job.student_id, job.seq)
            res.timings_ms["face"] = (time.perf_counter() - t) * 1000
        else:
            res.errors.append("face stage unavailable")

        if job.run_detector and self._detector is not None:
            t = time.perf_counter()
            try:
                res.detections = self._detector.detect(frame, config=self._config_for(job.vision_overrides))
                res.detector_ran = True
            except Exception as exc:  # noqa: BLE001
                res.errors.append(f"detector: {type(exc).__name__}: {exc}")
                log.exception("worker %s: detector failed (student %s seq %s)", self.worker_id, job.student_id, job.seq)
            res.timings_ms["detector"] = (time.perf_counter() - t) * 1000

        if job.identity_embedding is not None and self._identity is not None:
            t = time.perf_counter()
            try:
                from face_identity import embedding_from_bytes

                ver = self._identity.verify(embedding_from_bytes(job.identity_embedding), frame)
                res.identity_ran = True
                res.identity_face_found = bool(ver.face_found)
                res.identity_distance = None if ver.distance is None else float(ver.distance)
                res.identity_match = None if ver.match is None else bool(ver.match)
            except Exception as exc:  # noqa: BLE001
                res.errors.append(f"identity: {type(exc).__name__}: {exc}")
                log.exception("worker %s: identity check failed (student %s)", self.worker_id, job.student_id)
            res.timings_ms["identity"] = (time.perf_counter() - t) * 1000

        t = time.perf_counter()
        shown = frame
        if self._draw_hud is not None:
            try:
                shown = self._draw_hud(frame, res.face, res.detections, dict(job.hud_status), list(job.hud_alerts))
            except Exception as exc:  # noqa: BLE001
                res.errors.append(f"hud: {type(exc).__name__}: {exc}")
                shown = frame
        ok, buf = cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, int(job.jpeg_quality)])
        res.processed_jpeg = buf.tobytes() if ok else None
        res.timings_ms["hud_jpeg"] = (time.perf_counter() - t) * 1000
        res.timings_ms["total"] = (time.perf_counter() - t0) * 1000
        res.done_mono = time.monotonic()
        return res


def worker_main(worker_id: int, config, models_dir: str | None, job_conn, result_conn) -> None:
    """Entry point of a worker process: load models, then answer jobs until the pipe closes."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s worker-{worker_id} %(name)s: %(message)s")
    try:
        pipeline = FramePipeline(config, models_dir, worker_id)
    except BaseException as exc:  # noqa: BLE001
        result_conn.send(("fatal", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
        return
    pipeline.warm_up()
    result_conn.send(("ready", pipeline.info))
    while True:
        try:
            msg = job_conn.recv()
        except (EOFError, OSError):
            break
        kind = msg[0]
        if kind == "job":
            result_conn.send(("result", pipeline.process(msg[1])))
        elif kind == "forget":
            pipeline.forget(msg[1])
        elif kind == "stop":
            break
    pipeline.close()


# ------------------------------------------------------------------------------ parent side

class ChildProcess:
    """A spawn-context process with a one-way pipe each way; the parent never blocks on it."""

    def __init__(self, name: str, target: Callable, args: tuple, ctx=None):
        self.name = name
        self._target = target
        self._args = args
        self._ctx = ctx or multiprocessing.get_context("spawn")
        self.proc = None
        self._send_conn = self._recv_conn = None
        self.started_mono: float | None = None

    def start(self) -> None:
        job_r, job_w = self._ctx.Pipe(duplex=False)
        res_r, res_w = self._ctx.Pipe(duplex=False)
        self.proc = self._ctx.Process(target=self._target, args=self._args + (job_r, res_w), name=self.name, daemon=True)
        self.proc.start()
        # The child holds its own copies; closing ours lets EOF reach each side when the other dies.
        job_r.close()
        res_w.close()
        self._send_conn, self._recv_conn = job_w, res_r
        self.started_mono = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.exitcode is None

    @property
    def exitcode(self) -> int | None:
        return self.proc.exitcode if self.proc is not None else None

    def send(self, msg) -> bool:
        try:
            self._send_conn.send(msg)
            return True
        except (OSError, EOFError, AttributeError):
            return False

    def poll_messages(self, limit: int = 50) -> list:
        out = []
        conn = self._recv_conn
        if conn is None:
            return out
        try:
            while len(out) < limit and conn.poll(0):
                out.append(conn.recv())
        except (EOFError, OSError):
            pass
        return out

    def stop(self, timeout: float = 3.0) -> None:
        if self.proc is None:
            return
        if self.alive():
            self.send(("stop",))
            self.proc.join(timeout)
        if self.alive():
            self.proc.kill()
            self.proc.join(timeout)
        for conn in (self._send_conn, self._recv_conn):
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        self._send_conn = self._recv_conn = None


@dataclass
class _WorkerSlot:
    worker_id: int
    child: ChildProcess | None = None
    ready: bool = False
    busy_job: FrameJob | None = None
    busy_since: float | None = None
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
        w.busy_job = None
        w.busy_since = None
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
    @_locked
    def worker_for(self, student_id: int) -> int | None:
        """The student's worker (assigned on first use to the least-loaded ready worker)."""
        wid = self._assign.get(student_id)
        if wid is not None and self._workers[wid].ready:
            return wid
        ready = [w for w in self._workers if w.ready]
        if not ready:
            return None
        best = min(ready, key=lambda w: (len(w.streams), w.busy_job is not None, w.worker_id))
        if wid is not None:
            self._workers[wid].streams.discard(student_id)
        self._assign[student_id] = best.worker_id
        best.streams.add(student_id)
        return best.worker_id

    @_locked
    def can_take(self, student_id: int) -> bool:
        wid = self.worker_for(student_id)
        return wid is not None and self._workers[wid].busy_job is None

    @_locked
    def submit(self, job: FrameJob) -> bool:
        """Hand the job to the student's worker if it is ready and idle; False otherwise (nothing queued)."""
        wid = self.worker_for(job.student_id)
        if wid is None:
            return False
        w = self._workers[wid]
        if w.busy_job is not None:
            return False
        if not w.child.send(("job", job)):
            return False
        w.busy_job = job
        w.busy_since = time.monotonic()
        return True

    @_locked
    def forget(self, student_id: int) -> None:
        wid = self._assign.pop(student_id, None)
        if wid is not None:
            w = self._workers[wid]
            w.streams.discard(student_id)
            if w.ready:
                w.child.send(("forget", student_id))

    # -- collection and supervision
    @_locked
    def results(self) -> list[FrameResult]:
        """Finished results from every worker; never blocks. Restarts crashed or hung workers."""
        out: list[FrameResult] = []
        now = time.monotonic()
        for w in self._workers:
            if w.child is None:
                continue
            for msg in w.child.poll_messages():
                kind = msg[0]
                if kind == "result":
                    w.busy_job = None
                    w.busy_since = None
                    w.jobs_done += 1
                    out.append(msg[1])
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
            hung = w.busy_job is not None and w.busy_since is not None and now - w.busy_since > JOB_TIMEOUT_S
            stuck = not w.ready and w.child.started_mono is not None and now - w.child.started_mono > READY_TIMEOUT_S
            if not w.child.alive() or hung or stuck:
                self._crashed(w, now, "hung on a job" if hung else "stuck loading models" if stuck else "exited")
        return out

    def _crashed(self, w: _WorkerSlot, now: float, why: str) -> None:
        job = w.busy_job
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
        w.busy_job = None
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
                    "busy": w.busy_job is not None,
                    "jobs_done": w.jobs_done,
                    "streams": len(w.streams),
                    "restarts": w.restarts,
                    "restart_in_s": None if w.restart_at is None else round(max(0.0, w.restart_at - time.monotonic()), 1),
                    "last_crash": w.last_crash,
                    "errors": list(w.info.get("errors", [])),
                }
                for w in self._workers
            ],
            "restarts": sum(w.restarts for w in self._workers),
        }

    @_locked
    def detector_info(self) -> dict:
        for w in self._workers:
            if w.ready and "detector" in w.info:
                return dict(w.info["detector"])
        return {"loaded": False, "reason": "no worker ready yet"}

    @_locked
    def pids(self) -> list[int | None]:
        return [w.child.pid if w.child else None for w in self._workers]
