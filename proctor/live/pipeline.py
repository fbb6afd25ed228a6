"""The per-frame work of a live worker: FrameJob in, FrameResult out (no I/O, no Flask, no database).

    pipeline = FramePipeline(vision_config)
    result = pipeline.process(FrameJob(...))   # JPEG decode, face stage, detector, identity (+ spoof check)

FramePipeline holds one process's model instances: one FaceAnalyzer in tracking mode per
student stream, one object detector and one FaceIdentity. An exam's threshold overrides travel
with each job (`FrameJob.vision_overrides`) and apply to that job's detector and identity check.
`worker_main` runs it in a worker process (proctor/live/workers.py); it can run anywhere else.

A worker draws nothing: the web process sends the camera's JPEG bytes (not pixels) and gets back
observations only; the HUD is drawn where somebody looks at it (proctor/live/views.py), so a
student nobody watches costs no drawing or JPEG encoding.
"""
from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MAX_STREAMS_PER_WORKER = 64   # face trackers kept per worker (least recently used dropped beyond)


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
    identity_skipped: str | None = None  # the face was too small or turned to judge: no verdict (face_identity.unjudgeable_reason)
    identity_spoof: bool | None = None   # the checked face is on a screen or a printed photo (None: not judged)
    identity_details: dict = field(default_factory=dict)  # why, when identity_spoof (presentation_attack.py's reason and score)
    frame_mean: float | None = None  # mean luma 0-255
    frame_diff: float | None = None  # mean abs luma difference to this stream's previous frame
    lower_motion: float | None = None  # lower-half thumbnail change since the previous frame (cadence.py)
    frame_size: tuple[int, int] | None = None
    timings_ms: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)
    done_mono: float = 0.0


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
        self._prev_thumb: dict[int, np.ndarray] = {}
        self._face_cls = self._detector = self._identity = self._presentation = None
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
            from presentation_attack import PresentationAttackCheck

            self._presentation = PresentationAttackCheck(self.config)
        except Exception as exc:  # noqa: BLE001
            self._note("presentation-attack check unavailable", exc)

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
        self._prev_thumb.pop(student_id, None)
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
        cpu0 = time.process_time()
        frame = job.image
        if frame is None and job.jpeg is not None:
            frame = cv2.imdecode(np.frombuffer(job.jpeg, np.uint8), cv2.IMREAD_COLOR)
            res.timings_ms["decode"] = (time.perf_counter() - t0) * 1000
        if frame is None:
            # A picture nobody can see counts as a black camera (CAMERA_OFF after its hold time): a page
            # sending bytes that are not a picture must not slip past proctoring.
            res.errors.append("could not decode frame")
            res.frame_mean, res.frame_diff = 0.0, 0.0
            res.done_mono = time.monotonic()
            return res
        res.frame_size = (int(frame.shape[1]), int(frame.shape[0]))

        # Frame statistics for CAMERA_OFF (black or frozen picture), and lower-half motion for the
        # detector's cadence (proctor/live/cadence.py).
        from face_pipeline import camera_activity, lower_half_motion

        sid = job.student_id
        res.frame_mean, res.frame_diff, grey = camera_activity(frame, self._prev_small.get(sid))
        self._prev_small[sid] = grey
        res.lower_motion, self._prev_thumb[sid] = lower_half_motion(grey, self._prev_thumb.get(sid))

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
            self._check_identity(job, frame, res)

        res.timings_ms["total"] = (time.perf_counter() - t0) * 1000
        res.timings_ms["cpu"] = (time.process_time() - cpu0) * 1000  # the whole worker process's CPU for this job
        res.done_mono = time.monotonic()
        return res

    def _check_identity(self, job: FrameJob, frame, res: FrameResult) -> None:
        """Compare the frame's main face (the one the face stage found: no second search) with the enrolment.

        Only a face large and frontal enough is judged (IDENTITY_MIN_FACE_PX, IDENTITY_MAX_YAW_DEG,
        IDENTITY_MAX_PITCH_DEG): otherwise `identity_skipped` says why, with no verdict and no embedding
        cost, and the stream asks again on its next frame (streams.py)."""
        if res.face is not None and not res.face.face_detected:
            # The face stage (FaceMesh and the independent counter) found no face: nothing to check, and
            # a face search of the identity model's own would cost ~100 ms on every such frame.
            res.identity_ran, res.identity_face_found = True, False
            return
        t = time.perf_counter()
        try:
            from face_identity import embedding_from_bytes

            face = res.face  # None: the face stage failed, and verify searches the frame itself
            ver = self._identity.verify(embedding_from_bytes(job.identity_embedding), frame,
                                        config=self._config_for(job.vision_overrides), gate=True,
                                        box=None if face is None else face.box,
                                        yaw_deg=None if face is None else face.yaw_deg,
                                        pitch_deg=None if face is None else face.pitch_deg)
            res.identity_ran = True
            res.identity_face_found = bool(ver.face_found)
            res.identity_skipped = ver.skipped
            res.identity_distance = None if ver.distance is None else float(ver.distance)
            res.identity_match = None if ver.match is None else bool(ver.match)
        except Exception as exc:  # noqa: BLE001
            res.errors.append(f"identity: {type(exc).__name__}: {exc}")
            log.exception("worker %s: identity check failed (student %s)", self.worker_id, job.student_id)
        res.timings_ms["identity"] = (time.perf_counter() - t) * 1000
        if (res.identity_face_found and res.identity_skipped is None and res.face is not None
                and res.face.box is not None):
            self._check_presentation(job, frame, res)

    def _check_presentation(self, job: FrameJob, frame, res: FrameResult) -> None:
        """A face on a screen or a printed photo is not the student: identity_spoof, and no match.

        Runs only with an identity check (every IDENTITY_CHECK_EVERY_S, 50-100 ms), on the face the
        face stage found; never per frame."""
        config = self._config_for(job.vision_overrides)
        if self._presentation is None or not bool(config.PA_CHECK_ENABLED):
            return
        t = time.perf_counter()
        try:
            verdict = self._presentation.assess(frame, res.face.box, res.face.landmarks)
            res.identity_spoof = bool(verdict.spoof)
            if verdict.spoof:
                res.identity_match = False
                res.identity_details = {"spoof_reason": verdict.reason, "spoof_score": round(float(verdict.score), 3)}
        except Exception as exc:  # noqa: BLE001 - identity's own verdict stands
            res.errors.append(f"presentation attack: {type(exc).__name__}: {exc}")
            log.exception("worker %s: presentation-attack check failed (student %s)", self.worker_id, job.student_id)
        res.timings_ms["presentation"] = (time.perf_counter() - t) * 1000


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
