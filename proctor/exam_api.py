"""JSON API of the student's exam journey, under /api/exam/.

Every error is {"error": ..., "code": ...} with the right status. The student and the session
always come from the login session and the database: ids in a request are only looked up and
checked against the current account, never trusted. The answer key never leaves the server.

Face work (identity confirmation) runs off the event loop: in eventlet's thread pool when the
server runs under eventlet, else in a ThreadPoolExecutor, with a timeout either way.
"""
from __future__ import annotations

import base64
import binascii
import logging
import math
import queue
import re
import threading
import time
import uuid
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from flask import Blueprint, abort, current_app, jsonify, request, session, url_for
from flask_login import current_user
from sqlalchemy import func, select

from . import exam_service as svc
from .extensions import db, limiter
from .models import Exam, ExamSession, Profile, Recording, SessionStatus, utcnow
from .security import STUDENT, access

log = logging.getLogger(__name__)

bp = Blueprint("exam_api", __name__, url_prefix="/api/exam")

# App settings this module reads, with their defaults (app.config overrides each).
DEFAULTS = {
    "PROCTOR_RULES_VERSION": "2026-11",
    "PROCTOR_INFERENCE_TIMEOUT_S": 10.0,        # one face inference in a request
    "PROCTOR_IDENTITY_MATCH_FRAMES": 3,         # matching frames needed to confirm identity
    "PROCTOR_IDENTITY_MISMATCH_FRAMES": 3,      # non-matching frames that refuse the attempt
    "PROCTOR_IDENTITY_VALID_S": 1800,           # a confirmation is good for starting the exam this long
    "PROCTOR_AUDIO_CHUNK_MAX_BYTES": 2 * 1024 * 1024,
    "PROCTOR_UPLOAD_TEST_MAX_BYTES": 2 * 1024 * 1024,
    "PROCTOR_FRAME_UPLOAD_MAX_BYTES": 2 * 1024 * 1024,
    "PROCTOR_PROCTOR_FPS": 2.0,                 # frames per second the exam page sends
    "PROCTOR_SYSTEM_CHECK_VALID_S": 4 * 3600,
    # Per-account request limits on the routes that cost CPU or disk.
    "PROCTOR_IDENTITY_FRAME_LIMIT": "8 per second;240 per minute",
    "PROCTOR_FACE_UPLOAD_LIMIT": "10 per minute;60 per hour",
    "PROCTOR_UPLOAD_TEST_LIMIT": "10 per minute",
    "PROCTOR_AUDIO_CHUNK_LIMIT": "30 per minute",
    # Seconds between sweeps that submit sessions past their deadline (0: only when touched).
    "PROCTOR_EXPIRY_SWEEP_S": 60,
    "PROCTOR_EXAM_MAX_ATTEMPTS": 1,             # finished attempts allowed per exam
    "PROCTOR_MIN_UPLOAD_KBPS": 256,             # the system check's upload-speed bar
}


@bp.record_once
def _read_settings(state) -> None:
    from .settings import apply_module_settings

    apply_module_settings(state.app.config, DEFAULTS)
AUDIO_TYPES = {  # accepted MediaRecorder containers: mime prefix -> (extension, magic bytes at offset 0)
    "audio/webm": (".webm", b"\x1a\x45\xdf\xa3"),
    "audio/ogg": (".ogg", b"OggS"),
}
SYSTEM_CHECK_PARTS = ("camera", "microphone", "browser", "upload")
_DATA_URL = re.compile(r"^data:image/(jpeg|jpg|png|webp);base64,", re.IGNORECASE)


def setting(name: str):
    return current_app.config.get(name, DEFAULTS[name])


def user_key() -> str:
    # Limits are per account: a class behind one NAT address must not share a budget.
    return f"user:{current_user.get_id()}" if current_user.is_authenticated else f"addr:{request.remote_addr}"


def limit(name: str, methods: list[str] | None = None):
    return limiter.limit(lambda: setting(name), key_func=user_key, methods=methods)


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@bp.errorhandler(ApiError)
@bp.errorhandler(svc.ExamError)
def _api_error(exc):
    if exc.status >= 500:
        log.error("exam api %s: %s", request.path, exc.message)
    else:
        log.info("exam api %s refused (%s): %s", request.path, exc.status, exc.message)
    return jsonify(error=exc.message, code=exc.status), exc.status


def _json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError("send a JSON object (Content-Type: application/json)")
    return data


def _int_field(data: dict, name: str, required: bool = True, lo: int = 0, hi: int = 2**31 - 1):
    value = data.get(name)
    if value is None:
        if required:
            raise ApiError(f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(f"{name} must be a whole number")
    if not lo <= value <= hi:
        raise ApiError(f"{name} must be between {lo} and {hi}")
    return value


# --- images and inference helpers ----------------------------------------------------------

def decode_image(raw: bytes, max_side: int = 4096):
    """BGR uint8 image from JPEG/PNG/WebP bytes, or ApiError with what is wrong."""
    import cv2

    if not raw:
        raise ApiError("the image is empty")
    arr = np.frombuffer(raw, dtype=np.uint8)
    img = cv2.imdecode(arr, cv2.IMREAD_COLOR)
    if img is None:
        raise ApiError("the file is not a readable JPEG, PNG or WebP image")
    h, w = img.shape[:2]
    if min(h, w) < 64:
        raise ApiError(f"the image is too small ({w}x{h} px): at least 64 px on each side")
    if max(h, w) > max_side:
        raise ApiError(f"the image is too large ({w}x{h} px): at most {max_side} px on a side")
    return img


def decode_data_url(value) -> np.ndarray:
    if not isinstance(value, str) or not _DATA_URL.match(value):
        raise ApiError("image must be a data URL (data:image/jpeg;base64,...)")
    if len(value) > setting("PROCTOR_FRAME_UPLOAD_MAX_BYTES") * 4 // 3 + 64:
        raise ApiError("the image is too large", 413)
    try:
        raw = base64.b64decode(value.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("image is not valid base64") from None
    return decode_image(raw)


def shrink(img: np.ndarray, max_side: int = 1280) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return img
    return cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def run_blocking(fn, *args, timeout_s: float | None = None):
    """Run CPU-heavy work off the event loop with a timeout; TimeoutError if it takes too long."""
    timeout_s = float(timeout_s or setting("PROCTOR_INFERENCE_TIMEOUT_S"))
    try:
        import eventlet.patcher

        green = eventlet.patcher.is_monkey_patched("thread")
    except ImportError:
        green = False
    if green:
        import eventlet
        from eventlet import tpool

        with eventlet.Timeout(timeout_s, TimeoutError(f"inference took more than {timeout_s:g} s")):
            return tpool.execute(fn, *args)
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="exam-inference")
    future = _executor.submit(fn, *args)
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        raise TimeoutError(f"inference took more than {timeout_s:g} s") from None


class _Pool:
    """A few instances of a non-thread-safe analyser, each lent to one request at a time.

    Instances are borrowed and returned in the request's own context (a green thread under
    eventlet), never inside the worker thread, so no green primitive is touched from a native
    thread. An instance whose work timed out may still be running: it is dropped, not returned.
    """

    def __init__(self, factory, size: int = 2):
        self._factory, self._size = factory, size
        self._free: queue.Queue = queue.Queue()
        self._made = 0
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self, wait_s: float = 30.0):
        try:
            inst = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                make = self._made < self._size
                if make:
                    self._made += 1
            if make:
                try:
                    inst = run_blocking(self._factory, timeout_s=60)
                except BaseException:
                    with self._lock:
                        self._made -= 1
                    raise
            else:
                try:
                    inst = self._free.get(timeout=wait_s)
                except queue.Empty:
                    raise TimeoutError("every face analyser is busy") from None
        healthy = False
        try:
            yield inst
            healthy = True
        finally:
            if healthy:
                self._free.put(inst)
            else:
                with self._lock:
                    self._made -= 1


def vision(app=None):
    """The app's vision config and pools of FaceIdentity / FaceAnalyzer (made on first use)."""
    app = app or current_app._get_current_object()
    state = app.extensions.get("exam_vision")
    if state is None:
        from config_vision import load_vision_config

        cfg = load_vision_config()

        def make_identity():
            from face_identity import FaceIdentity

            return FaceIdentity(cfg)

        def make_analyzer():
            from face_pipeline import FaceAnalyzer

            # Photo mode: requests from different students share these instances, so no tracking
            # state may carry over from one frame to the next.
            return FaceAnalyzer(cfg, static_image_mode=True)

        state = {"config": cfg, "identity": _Pool(make_identity), "analyzer": _Pool(make_analyzer)}
        app.extensions["exam_vision"] = state
    return state


# --- deadline sweep --------------------------------------------------------------------------

@bp.before_app_request
def _start_expiry_sweep():
    """On the first request of a running server, start the background task that submits
    sessions whose deadline passed while nobody touched them (a closed browser)."""
    app = current_app._get_current_object()
    if app.extensions.get("exam_expiry_sweep") or app.testing:
        return
    period = float(setting("PROCTOR_EXPIRY_SWEEP_S"))
    state = app.extensions["exam_expiry_sweep"] = {"running": period > 0, "sweeps": 0}
    if period <= 0:
        return
    from .extensions import socketio

    def sweep():
        while state["running"]:
            socketio.sleep(period)
            if not state["running"]:
                break
            state["sweeps"] += 1
            try:
                with app.app_context():
                    done = svc.expire_overdue()
                    if done:
                        log.info("submitted %d session(s) at their deadline: %s", len(done), done)
                    for session_id in done:
                        sess = db.session.get(ExamSession, session_id)
                        if sess is not None:
                            _notify_live_end(sess, app)
                    db.session.remove()
            except Exception:  # noqa: BLE001 - a failed sweep is retried at the next period
                log.exception("deadline sweep failed")

    state["task"] = socketio.start_background_task(sweep)


# --- system check --------------------------------------------------------------------------

@bp.route("/upload-test", methods=["POST"])
@access(STUDENT)
@limit("PROCTOR_UPLOAD_TEST_LIMIT")
def upload_test():
    """The page times a POST of a known-size blob; the server says how much it received."""
    limit = setting("PROCTOR_UPLOAD_TEST_MAX_BYTES")
    if request.content_length is None:
        raise ApiError("Content-Length is required", 411)
    if request.content_length > limit:
        raise ApiError(f"upload test is limited to {limit} bytes", 413)
    t0 = time.perf_counter()
    received = len(request.get_data(cache=False))
    return jsonify(bytes=received, server_read_ms=round((time.perf_counter() - t0) * 1000, 2))


@bp.route("/system-check", methods=["POST"])
@access(STUDENT)
def system_check():
    """Records the page's system check in the login session; the exam needs a passing one."""
    data = _json_body()
    parts = {}
    for name in SYSTEM_CHECK_PARTS:
        value = data.get(name)
        if not isinstance(value, bool):
            raise ApiError(f"{name} must be true or false")
        parts[name] = value
    kbps = data.get("upload_kbps")
    if kbps is not None and (isinstance(kbps, bool) or not isinstance(kbps, (int, float)) or not math.isfinite(kbps) or kbps < 0):
        raise ApiError("upload_kbps must be a positive number")
    ok = all(parts.values())
    session["system_check"] = {"ok": ok, "at": time.time(), **parts, "upload_kbps": round(float(kbps or 0), 1)}
    failed = [n for n, v in parts.items() if not v]
    return jsonify(ok=ok, failed=failed,
                   next=url_for("exam.system_check_failed", problems=",".join(failed)) if failed else None)


def system_check_passed() -> bool:
    state = session.get("system_check")
    return bool(isinstance(state, dict) and state.get("ok")
                and time.time() - float(state.get("at", 0)) < setting("PROCTOR_SYSTEM_CHECK_VALID_S"))


# --- identity confirmation before the exam -------------------------------------------------

class _Attempt:
    """One student's confirmation attempt for one exam: frames matched, liveness, outcome."""

    def __init__(self, liveness_check):
        self.id = uuid.uuid4().hex
        self.liveness = liveness_check
        self.matched = 0
        self.mismatched = 0
        self.no_face = 0
        self.best_distance: float | None = None
        self.live_reason = ""
        self.live_passed = False
        self.refused: str | None = None
        self.t0: float | None = None
        self.touched = time.monotonic()
        self.lock = threading.Lock()


_attempts: dict[tuple[int, int], _Attempt] = {}
_attempts_lock = threading.Lock()
ATTEMPT_IDLE_S = 600


def _attempt_for(student_id: int, exam_id: int, restart: bool) -> _Attempt:
    from face_pipeline import LivenessCheck

    now = time.monotonic()
    with _attempts_lock:
        for key in [k for k, a in _attempts.items() if now - a.touched > ATTEMPT_IDLE_S]:
            del _attempts[key]
        att = _attempts.get((student_id, exam_id))
        if att is None or restart:
            att = _Attempt(LivenessCheck(vision()["config"]))
            _attempts[(student_id, exam_id)] = att
        att.touched = now
        return att


def _confirmed_key(exam_id: int) -> str:
    return f"identity_confirmed_{exam_id}"


def identity_confirmation(exam_id: int) -> dict | None:
    """The confirmation recorded in this login session for the exam, if still valid."""
    rec = session.get(_confirmed_key(exam_id))
    if not isinstance(rec, dict) or rec.get("student_id") != current_user.id:
        return None
    if time.time() - float(rec.get("at", 0)) > setting("PROCTOR_IDENTITY_VALID_S"):
        return None
    profile = db.session.scalar(select(Profile).where(Profile.student_id == current_user.id))
    if profile is None or rec.get("profile") != _profile_stamp(profile):
        return None  # the face was registered again since: confirm again
    return rec


def _profile_stamp(profile: Profile) -> str:
    return f"{profile.id}:{profile.image_path}"


def _open_exam(exam_id: int) -> Exam:
    exam = db.session.get(Exam, exam_id)
    if exam is None or not exam.is_published:
        raise ApiError("this exam does not exist or is not open", 404)
    return exam


@bp.route("/<int:exam_id>/identity-frame", methods=["POST"])
@access(STUDENT)
@limit("PROCTOR_IDENTITY_FRAME_LIMIT")
def identity_frame(exam_id: int):
    """One live capture for the confirmation: matched against the registration, fed to liveness.

    JSON {"image": dataURL, "ts": ms since the attempt began (the page's clock), "restart": bool}.
    """
    exam = _open_exam(exam_id)
    data = _json_body()
    ts = data.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or not 0 <= ts <= 3_600_000:
        raise ApiError("ts must be the milliseconds since the confirmation began (0 to 3600000)")
    restart = data.get("restart", False)
    if not isinstance(restart, bool):
        raise ApiError("restart must be true or false")
    frame = shrink(decode_data_url(data.get("image")), 960)
    profile = db.session.scalar(select(Profile).where(Profile.student_id == current_user.id))
    if profile is None or not profile.embedding:
        raise ApiError("register your face first", 409)
    from face_identity import embedding_from_bytes

    enrolled = embedding_from_bytes(profile.embedding)
    att = _attempt_for(current_user.id, exam_id, restart)
    pools = vision()

    threshold = float(pools["config"].IDENTITY_DISTANCE_THRESHOLD)

    def work(analyzer, identity):
        # One face analysis serves both checks: its box is embedded (identity) and its pose and
        # eyes feed liveness; a frame with several faces counts for neither.
        observation = analyzer.analyze(frame)
        if observation.face_count != 1 or observation.box is None:
            return observation, None
        return observation, _distance(identity, enrolled, frame, observation.box)

    try:
        with pools["analyzer"].borrow() as analyzer, pools["identity"].borrow() as identity:
            observation, distance = run_blocking(work, analyzer, identity)
    except TimeoutError as exc:
        log.error("identity frame for student %s: %s", current_user.id, exc)
        raise ApiError("the server is busy checking faces; try again in a moment", 503) from None
    faces = int(observation.face_count)
    match = None if distance is None else distance <= threshold

    with att.lock:
        if att.refused is None:
            if distance is None:
                att.no_face += 1
            elif match:
                att.matched += 1
            else:
                att.mismatched += 1
            if distance is not None:
                att.best_distance = distance if att.best_distance is None else min(att.best_distance, distance)
            if exam.require_liveness:
                state = att.liveness.update(observation, float(ts) / 1000.0)
                att.live_passed, att.live_reason = state.passed, state.reason
            else:
                att.live_passed, att.live_reason = True, "not required for this exam"
            if att.mismatched >= setting("PROCTOR_IDENTITY_MISMATCH_FRAMES") and att.mismatched > att.matched:
                att.refused = "the face on camera does not match your registered face"
                log.warning("identity confirmation refused: student %s exam %s (%s mismatching frames, best distance %s)",
                            current_user.id, exam_id, att.mismatched, att.best_distance)
        confirmed = att.refused is None and att.matched >= setting("PROCTOR_IDENTITY_MATCH_FRAMES") and att.live_passed
        body = {
            "face_found": faces >= 1,
            "faces": faces,
            "match": match,
            "distance": None if distance is None else round(float(distance), 4),
            "matched_frames": att.matched,
            "needed_frames": setting("PROCTOR_IDENTITY_MATCH_FRAMES"),
            "liveness": {"required": bool(exam.require_liveness), "passed": att.live_passed, "reason": att.live_reason},
            "refused": att.refused,
            "confirmed": confirmed,
        }
    if confirmed:
        session[_confirmed_key(exam_id)] = {"student_id": current_user.id, "at": time.time(), "profile": _profile_stamp(profile),
                                            "distance": att.best_distance, "liveness": att.live_reason[:64]}
        body["next"] = url_for("exam.ready", exam_id=exam_id)
    return jsonify(body)


def _distance(identity, enrolled, frame, box) -> float | None:
    live = identity.embed(frame, box)
    return None if live is None else identity.distance(enrolled, live)


# --- the exam ------------------------------------------------------------------------------

def _my_session(session_id: int):
    return svc.session_for_student(session_id, current_user.id)


@bp.route("/sessions/<int:session_id>")
@access(STUDENT)
def get_session(session_id: int):
    sess = _my_session(session_id)
    payload = svc.exam_payload(sess)
    payload["result_url"] = url_for("exam.result", session_id=sess.id) if sess.status != SessionStatus.IN_PROGRESS.value else None
    return jsonify(payload)


@bp.route("/sessions/<int:session_id>/answers", methods=["POST"])
@access(STUDENT)
def save_answer(session_id: int):
    """JSON {"question_id": int, "selected": int|null, "flagged": bool (optional)}."""
    sess = _my_session(session_id)
    data = _json_body()
    if "question_id" not in data:
        raise ApiError("question_id is required")
    if "selected" not in data and "flagged" not in data:
        raise ApiError("send selected and/or flagged")
    if sess.status != SessionStatus.IN_PROGRESS.value:
        return jsonify(error="this exam is over: answers can no longer be changed", code=409, status=sess.status,
                       result_url=url_for("exam.result", session_id=sess.id)), 409
    selected = data.get("selected") if "selected" in data else _current_selection(sess.id, data.get("question_id"))
    try:
        answer = svc.save_answer(sess, data.get("question_id"), selected, data.get("flagged"))
    except svc.ExamError as exc:
        if exc.status == 409:
            return jsonify(error=exc.message, code=409, status=sess.status,
                           result_url=url_for("exam.result", session_id=sess.id)), 409
        raise
    return jsonify(ok=True, question_id=answer.question_id, selected=answer.selected_index, flagged=answer.flagged,
                   remaining_s=round(svc.remaining_seconds(sess), 1))


def _current_selection(session_id: int, question_id):
    if isinstance(question_id, bool) or not isinstance(question_id, int):
        return None  # save_answer reports the bad id
    answer = svc.answers_by_question(session_id).get(question_id)
    return answer.selected_index if answer else None


@bp.route("/sessions/<int:session_id>/submit", methods=["POST"])
@access(STUDENT)
def submit(session_id: int):
    sess = _my_session(session_id)
    result = svc.finish_session(sess.id, SessionStatus.COMPLETED.value, "submitted by the student")
    _notify_live_end(sess)
    return jsonify(status=result.status, result_url=url_for("exam.result", session_id=sess.id))


def _notify_live_end(sess, app=None) -> None:
    try:
        from .live import get_runtime
    except ImportError:
        return
    try:
        get_runtime(app or current_app._get_current_object()).session_ended(sess.student_id, sess.id, sess.status)
    except Exception:  # noqa: BLE001 - proctoring bookkeeping must not lose the student's submission
        log.exception("live runtime: session_ended failed for session %s", sess.id)


# --- audio recording -----------------------------------------------------------------------

@bp.route("/audio-chunk", methods=["POST"])
@access(STUDENT)
@limit("PROCTOR_AUDIO_CHUNK_LIMIT")
def audio_chunk():
    """A MediaRecorder chunk of the exam's audio: multipart {session_id, seq, started_ms, chunk}."""
    limit = setting("PROCTOR_AUDIO_CHUNK_MAX_BYTES")
    if request.content_length is not None and request.content_length > limit + 4096:
        raise ApiError(f"an audio chunk is limited to {limit} bytes", 413)
    try:
        session_id = int(request.form.get("session_id", ""))
        seq = int(request.form.get("seq", ""))
    except ValueError:
        raise ApiError("session_id and seq must be whole numbers") from None
    if not 0 <= seq <= 100_000:
        raise ApiError("seq must be between 0 and 100000")
    started_ms = request.form.get("started_ms", "")
    started_at = None
    if started_ms:
        try:
            started_at = datetime.fromtimestamp(int(started_ms) / 1000, tz=timezone.utc).replace(tzinfo=None)
        except (ValueError, OverflowError, OSError):
            raise ApiError("started_ms must be milliseconds since 1970") from None
        if abs((started_at - utcnow()).total_seconds()) > 24 * 3600:
            started_at = None  # a client clock a day off is not evidence of anything; keep the chunk
    upload = request.files.get("chunk")
    if upload is None:
        raise ApiError("the chunk file is required (field 'chunk')")
    mime = (upload.mimetype or "").lower()
    if mime not in AUDIO_TYPES:
        raise ApiError(f"audio type {mime or 'unknown'!r} is not accepted: send audio/webm or audio/ogg", 415)
    raw = upload.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(f"an audio chunk is limited to {limit} bytes", 413)
    if not raw:
        raise ApiError("the chunk is empty")
    sess = _my_session(session_id)
    if sess.status != SessionStatus.IN_PROGRESS.value:
        raise ApiError("this exam is over: no more recording", 409)
    ext, magic = AUDIO_TYPES[mime]
    if seq == 0 and not raw.startswith(magic):
        raise ApiError(f"the first chunk is not a {mime} file", 415)
    rel = Path("recordings") / str(sess.id) / f"audio-{seq:05d}-{uuid.uuid4().hex[:8]}{ext}"
    path = Path(current_app.config["PROCTOR_DATA_DIR"]) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    rec = Recording(session_id=sess.id, student_id=current_user.id, kind="audio", path=str(rel), mime=mime,
                    bytes=len(raw), sequence=seq, started_at=started_at)
    db.session.add(rec)
    db.session.commit()
    stored = db.session.scalar(select(func.count(Recording.id)).where(Recording.session_id == sess.id, Recording.kind == "audio"))
    return jsonify(ok=True, id=rec.id, bytes=len(raw), chunks=stored), 201
