"""The JSON calls of the student's exam pages, under /api/exam/ (errors are {"error", "code"}).

The student and the session always come from the login session and the database: ids in a
request are only looked up and checked against the current account, never trusted. The answer
key never leaves the server.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from flask import jsonify, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from .. import devices
from .. import exam_service as svc
from .. import live_hooks
from ..extensions import db
from ..images import decode_data_url, shrink
from ..jsonapi import ApiError, api_error_response, is_number, json_body, parse_id
from ..limits import per_user_limit
from ..models import Exam, Recording, SessionStatus, utcnow
from ..security import STUDENT, access
from ..uploads import check_session_quota, read_file_field, store_file
from . import api_bp as bp
from . import identity, steps
from .steps import setting

log = logging.getLogger(__name__)

CLIENT_SEQ_MAX = 2 ** 53  # the exam page numbers its saves with JavaScript integers

AUDIO_TYPES = {  # accepted MediaRecorder containers: mime prefix -> (extension, magic bytes at offset 0)
    "audio/webm": (".webm", b"\x1a\x45\xdf\xa3"),
    "audio/ogg": (".ogg", b"OggS"),
}


bp.register_error_handler(svc.ExamError, api_error_response)


# --- system check --------------------------------------------------------------------------

@bp.route("/upload-test", methods=["POST"])
@access(STUDENT)
@per_user_limit("PROCTOR_UPLOAD_TEST_LIMIT")
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
    data = json_body()
    parts = {}
    for name in steps.SYSTEM_CHECK_PARTS:
        value = data.get(name)
        if not isinstance(value, bool):
            raise ApiError(f"{name} must be true or false")
        parts[name] = value
    kbps = data.get("upload_kbps")
    if kbps is not None and (not is_number(kbps) or not 0 <= kbps <= 10**9):
        raise ApiError("upload_kbps must be a positive number")
    advisory = _device_report(data)
    # The selected camera's label names a virtual camera (proctor/devices.py, the list the page has too):
    # the camera part fails whatever the page concluded.
    virtual = devices.virtual_camera(advisory.get("camera_label"))
    if virtual:
        parts["camera"] = False
        log.info("system check: student %s selected a virtual camera (%r)", current_user.id, advisory["camera_label"])
    ok = steps.record_system_check(parts, kbps or 0, advisory)
    failed = [("virtual_camera" if n == "camera" and virtual else n) for n, v in parts.items() if not v]
    return jsonify(ok=ok, failed=failed, virtual_camera=advisory.get("camera_label") if virtual else None,
                   display=advisory.get("display"),
                   next=url_for("student.system_check_failed", problems=",".join(failed)) if failed else None)


def _device_report(data: dict) -> dict:
    """The system check's optional device facts (issue 16): one display or not, the number of screens when the
    page knows it, the selected camera's label. Checked; recorded beside the parts."""
    out = {}
    for name in steps.SYSTEM_CHECK_ADVISORY_PARTS:
        value = data.get(name)
        if value is not None and not isinstance(value, bool):
            raise ApiError(f"{name} must be true or false")
        if value is not None:
            out[name] = value
    screens = data.get("screens")
    if screens is not None:
        if not is_number(screens) or screens != int(screens) or not 1 <= screens <= devices.SCREENS_MAX:
            raise ApiError(f"screens must be a whole number from 1 to {devices.SCREENS_MAX}")
        out["screens"] = int(screens)
    label = data.get("camera_label")
    if label is not None:
        if not isinstance(label, str):
            raise ApiError("camera_label must be a string")
        out["camera_label"] = devices.plain_label(label)
    return out


@bp.route("/<int:exam_id>/displays", methods=["POST"])
@access(STUDENT)
def displays(exam_id: int):
    """What the page says about the displays before the exam starts: {"extended": bool, "screens": 1..16}.
    Kept in the login session for this exam; with the exam's displays_policy "block", start refuses while
    the last report said extended (or when there is none). The browser's word about itself, not a proof."""
    exam = _open_exam(exam_id)
    data = json_body()
    extended = data.get("extended")
    if not isinstance(extended, bool):
        raise ApiError("extended must be true or false")
    screens = data.get("screens", 2 if extended else 1)
    if not is_number(screens) or screens != int(screens) or not 1 <= screens <= devices.SCREENS_MAX:
        raise ApiError(f"screens must be a whole number from 1 to {devices.SCREENS_MAX}")
    if extended != (screens > 1):
        raise ApiError("extended and screens disagree (extended means more than one screen)")
    steps.record_display_report(exam.id, extended, int(screens))
    refusal = steps.display_refusal(exam)
    return jsonify(policy=exam.displays_policy, extended=extended, screens=int(screens),
                   allowed=refusal is None, message=refusal)


# --- identity confirmation before the exam -------------------------------------------------

def _open_exam(exam_id: int) -> Exam:
    exam = db.session.get(Exam, exam_id)
    if exam is None or not exam.is_published:
        raise ApiError("this exam does not exist or is not open", 404)
    return exam


def identity_threshold(exam: Exam) -> float:
    """The exam's IDENTITY_DISTANCE_THRESHOLD when it sets one, else the app's."""
    config = identity.vision()["config"]
    try:
        overrides = json.loads(exam.thresholds or "{}")
        if isinstance(overrides, dict) and "IDENTITY_DISTANCE_THRESHOLD" in overrides:
            config = config.with_overrides(IDENTITY_DISTANCE_THRESHOLD=overrides["IDENTITY_DISTANCE_THRESHOLD"])
    except ValueError as exc:  # VisionConfigError is a ValueError; the exam form validates, so this is old data
        log.error("exam %s has bad vision thresholds (%s); using the defaults", exam.id, exc)
    return float(config.IDENTITY_DISTANCE_THRESHOLD)


# Shown to the student when the camera sees a face on a phone or tablet screen or a printed photo.
SPOOF_REFUSAL = "the camera must see your own face, not a photo or a screen"


def _capture(image, max_chars: int):
    return shrink(decode_data_url(image, max_chars=max_chars), 960)


@bp.route("/<int:exam_id>/identity-frame", methods=["POST"])
@access(STUDENT)
@per_user_limit("PROCTOR_IDENTITY_FRAME_LIMIT")
def identity_frame(exam_id: int):
    """One live capture for the confirmation: matched against the registration, judged for a face on a
    screen or a printed photo (presentation_attack.py; such a frame never matches), fed to liveness.

    JSON {"image": dataURL, "ts": ms since the attempt began (the page's clock), "restart": bool}.
    """
    exam = _open_exam(exam_id)
    max_bytes = int(setting("PROCTOR_FRAME_MAX_BYTES"))
    data = json_body(max_bytes)
    ts = data.get("ts")
    if not is_number(ts) or not 0 <= ts <= 3_600_000:
        raise ApiError("ts must be the milliseconds since the confirmation began (0 to 3600000)")
    restart = data.get("restart", False)
    if not isinstance(restart, bool):
        raise ApiError("restart must be true or false")
    try:  # decoded off the event loop (the header's sizes are checked first, in images.py)
        frame = identity.compute(_capture, data.get("image"), max_bytes)
    except TimeoutError as exc:
        log.error("identity frame for student %s: decoding %s", current_user.id, exc)
        raise ApiError("the server is busy; try again in a moment", 503) from None
    profile = steps.profile()
    if profile is None or not profile.embedding:
        raise ApiError("register your face first", 409)
    from face_identity import embedding_from_bytes

    att = identity.attempt_for(current_user.id, exam_id, restart)
    threshold = identity_threshold(exam)
    try:
        observation, distance, presentation = identity.measure_capture(frame, embedding_from_bytes(profile.embedding))
    except TimeoutError as exc:
        log.error("identity frame for student %s: %s", current_user.id, exc)
        raise ApiError("the server is busy checking faces; try again in a moment", 503) from None
    faces = int(observation.face_count)
    spoof = None if presentation is None else bool(presentation.spoof)
    # A face on a screen or a printed photo is never the student, whatever its distance.
    match = None if distance is None else (distance <= threshold and not spoof)

    with att.lock:
        if att.refused is None:
            if distance is None:
                att.no_face += 1
            elif match:
                att.matched += 1
            else:
                att.mismatched += 1
                att.spoofed += 1 if spoof else 0
            if distance is not None and not spoof:  # a picture's distance says nothing about the student
                att.best_distance = distance if att.best_distance is None else min(att.best_distance, distance)
            if exam.require_liveness:
                state = att.liveness.update(observation, float(ts) / 1000.0)
                att.live_passed, att.live_reason = state.passed, state.reason
            else:
                att.live_passed, att.live_reason = True, "not required for this exam"
            if att.spoofed >= setting("PROCTOR_IDENTITY_MISMATCH_FRAMES") and att.spoofed > att.matched:
                att.refused, att.refused_kind = SPOOF_REFUSAL, "spoof"
                log.warning("identity confirmation refused: student %s exam %s (%s frames show a face on a screen or "
                            "a photo; last: %s)", current_user.id, exam_id, att.spoofed, presentation.reason if spoof else "-")
            elif att.mismatched >= setting("PROCTOR_IDENTITY_MISMATCH_FRAMES") and att.mismatched > att.matched:
                att.refused, att.refused_kind = "the face on camera does not match your registered face", "mismatch"
                log.warning("identity confirmation refused: student %s exam %s (%s mismatching frames, best distance %s)",
                            current_user.id, exam_id, att.mismatched, att.best_distance)
        confirmed = att.refused is None and att.matched >= setting("PROCTOR_IDENTITY_MATCH_FRAMES") and att.live_passed
        body = {
            "face_found": faces >= 1,
            "faces": faces,
            "match": match,
            "spoof": spoof,
            "distance": None if distance is None else round(float(distance), 4),
            "matched_frames": att.matched,
            "needed_frames": setting("PROCTOR_IDENTITY_MATCH_FRAMES"),
            "liveness": {"required": bool(exam.require_liveness), "passed": att.live_passed, "reason": att.live_reason},
            "refused": att.refused,
            "refused_kind": att.refused_kind,
            "confirmed": confirmed,
        }
    if confirmed:
        steps.record_identity_confirmation(exam_id, profile, att.best_distance, att.live_reason)
        body["next"] = url_for("student.ready", exam_id=exam_id)
    return jsonify(body)


# --- the exam ------------------------------------------------------------------------------

def _my_session(session_id: int):
    return svc.session_for_student(session_id, current_user.id)


def _over(sess, message: str):
    return jsonify(error=message, code=409, status=sess.status,
                   result_url=url_for("student.result", session_id=sess.id)), 409


@bp.route("/sessions/<int:session_id>")
@access(STUDENT)
def get_session(session_id: int):
    sess = _my_session(session_id)
    payload = svc.exam_payload(sess)
    payload["result_url"] = url_for("student.result", session_id=sess.id) if sess.status != SessionStatus.IN_PROGRESS.value else None
    return jsonify(payload)


@bp.route("/sessions/<int:session_id>/answers", methods=["POST"])
@access(STUDENT)
def save_answer(session_id: int):
    """JSON {"question_id": int, "selected": int|null, "flagged": bool (optional), "client_seq": int (optional)}.

    client_seq: the page's increasing number of this save (its outbox retries); an older one is ignored."""
    sess = _my_session(session_id)
    data = json_body()
    if "question_id" not in data:
        raise ApiError("question_id is required")
    if "selected" not in data and "flagged" not in data:
        raise ApiError("send selected and/or flagged")
    if sess.status != SessionStatus.IN_PROGRESS.value:
        return _over(sess, "this exam is over: answers can no longer be changed")
    selected = data.get("selected") if "selected" in data else _current_selection(sess.id, data.get("question_id"))
    try:
        answer = svc.save_answer(sess, data.get("question_id"), selected, data.get("flagged"),
                                 client_seq=_client_seq(data.get("client_seq")))
    except svc.ExamError as exc:
        if exc.status == 409:
            return _over(sess, exc.message)
        raise
    return jsonify(ok=True, question_id=answer.question_id, selected=answer.selected_index, flagged=answer.flagged,
                   remaining_s=round(svc.remaining_seconds(sess), 1))


def _client_seq(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= CLIENT_SEQ_MAX:
        raise ApiError(f"client_seq must be a whole number from 0 to {CLIENT_SEQ_MAX}")
    return value


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
    live_hooks.session_ended(sess)
    return jsonify(status=result.status, result_url=url_for("student.result", session_id=sess.id))


# --- audio recording -----------------------------------------------------------------------

@bp.route("/audio-chunk", methods=["POST"])
@access(STUDENT)
@per_user_limit("PROCTOR_AUDIO_CHUNK_LIMIT")
def audio_chunk():
    """A MediaRecorder chunk of the exam's audio: multipart {session_id, seq, started_ms, chunk}."""
    limit = setting("PROCTOR_AUDIO_CHUNK_MAX_BYTES")
    if request.content_length is not None and request.content_length > limit + 4096:
        raise ApiError(f"an audio chunk is limited to {limit} bytes", 413)
    session_id = parse_id(request.form.get("session_id", ""), "session_id")
    seq = parse_id(request.form.get("seq", ""), "seq")
    if not 0 <= seq <= 100_000:
        raise ApiError("seq must be between 0 and 100000")
    started_ms = request.form.get("started_ms", "")
    started_at = None
    if started_ms:
        try:
            if len(started_ms) > 20:
                raise ValueError(started_ms)
            started_at = datetime.fromtimestamp(int(started_ms) / 1000, tz=timezone.utc).replace(tzinfo=None)
        except (ValueError, OverflowError, OSError):
            raise ApiError("started_ms must be milliseconds since 1970") from None
        if abs((started_at - utcnow()).total_seconds()) > 24 * 3600:
            started_at = None  # a client clock a day off is not evidence of anything; keep the chunk
    mime, raw = read_file_field("chunk", limit, AUDIO_TYPES, "audio chunk")
    sess = _my_session(session_id)
    if sess.status != SessionStatus.IN_PROGRESS.value:
        raise ApiError("this exam is over: no more recording", 409)
    ext, magic = AUDIO_TYPES[mime]
    if seq == 0 and not raw.startswith(magic):
        raise ApiError(f"the first chunk is not a {mime} file", 415)
    check_session_quota(sess.id, "audio", len(raw), setting("PROCTOR_AUDIO_MAX_BYTES_PER_SESSION"), "audio")
    rel = Path("recordings") / str(sess.id) / f"audio-{seq:05d}-{uuid.uuid4().hex[:8]}{ext}"
    store_file(rel, raw, "audio chunk", f"session {sess.id} (chunk {seq})")
    rec = Recording(session_id=sess.id, student_id=current_user.id, kind="audio", path=str(rel), mime=mime,
                    bytes=len(raw), sequence=seq, started_at=started_at)
    db.session.add(rec)
    db.session.commit()
    stored = db.session.scalar(select(func.count(Recording.id)).where(Recording.session_id == sess.id, Recording.kind == "audio"))
    return jsonify(ok=True, id=rec.id, bytes=len(raw), chunks=stored), 201
