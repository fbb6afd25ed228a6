"""The room scan before an exam that requires one: the page that records it
(/student/exams/<id>/room-scan) and its upload (POST /api/exam/<id>/room-scan, JSON errors).

The clip is checked before anything is stored: the exam open and asking for a scan, a declared
and bounded size (Content-Length), WebM by type and by its first bytes, a length of 10-25 s as the
page says and, when ffmpeg is on the server, as measured (room_scans.finish_clip, off the event
loop). It is written whole or not at all; a full disk is a 507 with nothing stored. Recording
again replaces the student's unattached scan of the exam, and the start attaches it to the session.
"""
from __future__ import annotations

import logging
import uuid

from flask import jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from .. import exam_service as svc
from .. import room_scans
from ..blocking import run_blocking
from ..datafiles import is_storage_full
from ..extensions import db
from ..jsonapi import ApiError
from ..limits import per_user_limit
from ..models import Exam, RoomScan
from ..security import STUDENT, access
from ..uploads import read_file_field, store_file
from . import api_bp, bp
from .journey import _open_exam
from .steps import next_step, setting

log = logging.getLogger(__name__)

MULTIPART_SLACK_BYTES = 16 * 1024  # the form's boundaries, headers and duration_ms around the clip
DURATION_MS_MAX_CHARS = 9


@bp.route("/exams/<int:exam_id>/room-scan")
@access(STUDENT)
def room_scan(exam_id: int):
    exam = _open_exam(exam_id)
    step = next_step(exam)
    here = url_for("student.room_scan", exam_id=exam.id)
    # The page is the step itself, and again for a student who wants to record once more before starting.
    if step not in (here, url_for("student.ready", exam_id=exam.id)) or not exam.require_room_scan:
        return redirect(step)
    scans = room_scans.unattached_scans(current_user.id, exam.id)
    return render_template("student/room_scan.html", exam=exam, facts=room_scans.page_facts(),
                           existing=scans[0] if scans else None)


def _exam_for_scan(exam_id: int) -> Exam:
    exam = db.session.get(Exam, exam_id)
    if exam is None or not exam.is_published:
        raise ApiError("this exam does not exist or is not open", 404)
    if not exam.require_room_scan:
        raise ApiError("this exam does not ask for a room scan", 409)
    return exam


def _duration_s(raw: str) -> float:
    text = raw.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > DURATION_MS_MAX_CHARS:
        raise ApiError("duration_ms must be the recording's length in milliseconds")
    seconds = int(text) / 1000
    if seconds < room_scans.MIN_S:
        raise ApiError(f"the room scan is too short ({seconds:.1f} s): record at least {room_scans.MIN_S} s")
    if seconds > room_scans.ACCEPT_MAX_S:
        raise ApiError(f"the room scan is too long ({seconds:.1f} s): at most {room_scans.RECORD_MAX_S} s")
    return seconds


def _measured(raw: bytes) -> tuple[bytes, float | None]:
    """The clip to store and its measured length (None when the server has no ffmpeg to measure it)."""
    if not room_scans.tools_available():
        return raw, None
    try:
        return run_blocking(room_scans.finish_clip, raw, timeout_s=room_scans.TOOL_TIMEOUT_S * 2 + 5)
    except room_scans.ClipInvalid as exc:
        log.info("room scan of student %s refused: not a readable WebM video (%s)", current_user.id, exc)
        raise ApiError("the clip is not a playable WebM video", 415) from None
    except TimeoutError as exc:
        log.error("room scan of student %s: %s", current_user.id, exc)
        raise ApiError("the server is busy; try the upload again in a moment", 503) from None
    except OSError as exc:
        if not is_storage_full(exc):
            raise
        log.error("room scan of student %s not checked: the temporary folder is full (%s)", current_user.id, exc)
        raise ApiError("the server's storage is full: the room scan was not saved", 507) from None


@api_bp.route("/<int:exam_id>/room-scan", methods=["POST"])
@access(STUDENT)
@per_user_limit("PROCTOR_ROOM_SCAN_LIMIT")
def upload_room_scan(exam_id: int):
    """multipart {clip: video/webm, duration_ms}: the scan of this exam, replacing an earlier unattached one."""
    exam = _exam_for_scan(exam_id)
    limit = int(setting("PROCTOR_ROOM_SCAN_MAX_BYTES"))
    if request.content_length is None:
        raise ApiError("Content-Length is required", 411)
    if request.content_length > limit + MULTIPART_SLACK_BYTES:
        raise ApiError(f"a room scan is limited to {limit} bytes", 413)
    if svc.active_session(current_user.id) is not None:
        raise ApiError("an exam is in progress: the room scan is recorded before it starts", 409)
    claimed_s = _duration_s(request.form.get("duration_ms", ""))
    _, raw = read_file_field("clip", limit, (room_scans.MIME,), "room scan")
    if not raw.startswith(room_scans.WEBM_MAGIC):
        raise ApiError(f"the clip is not a {room_scans.MIME} file", 415)
    data, measured_s = _measured(raw)
    if measured_s is not None and not (room_scans.MIN_S - room_scans.PROBE_SLACK_S <= measured_s
                                       <= room_scans.ACCEPT_MAX_S + room_scans.PROBE_SLACK_S):
        log.info("room scan of student %s refused: the page said %.1f s, the clip is %.1f s", current_user.id,
                 claimed_s, measured_s)
        raise ApiError(f"the clip is {measured_s:.1f} s long: record {room_scans.MIN_S} to {room_scans.RECORD_MAX_S} s")
    rel = room_scans.relative_path(current_user.id, f"{uuid.uuid4().hex}.webm")
    store_file(rel, data, "room scan", f"student {current_user.id}")
    old = room_scans.unattached_scans(current_user.id, exam.id)
    old_paths = [s.path for s in old]
    for s in old:
        db.session.delete(s)
    scan = RoomScan(student_id=current_user.id, exam_id=exam.id, session_id=None, path=rel, mime=room_scans.MIME,
                    bytes=len(data), duration_s=round(measured_s if measured_s is not None else claimed_s, 2))
    db.session.add(scan)
    try:
        db.session.commit()
    except Exception:
        db.session.rollback()
        room_scans.remove_scan_files([rel])  # no row points at it
        raise
    room_scans.remove_scan_files(old_paths)
    log.info("student %s recorded a room scan for exam %s: %.1f s, %s bytes%s", current_user.id, exam.id,
             scan.duration_s, len(data), "" if measured_s is not None else " (not measured: no ffmpeg)")
    return jsonify(ok=True, id=scan.id, duration_s=scan.duration_s, bytes=len(data), measured=measured_s is not None,
                   next=next_step(exam)), 201
