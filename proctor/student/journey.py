"""The student's exam journey (pages under /student/): rules, system check, face registration,
identity confirmation, the exam and the result.

`begin` sends the student to the first step they still need (steps.next_step); `start` refuses
to open an exam until every step is done, so skipping a page in the address bar gets nowhere.
The JSON calls these pages make live in exam_api.py.
"""
from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from .. import exam_service as svc
from .. import live_hooks, room_scans
from ..datafiles import is_storage_full, write_file
from ..extensions import db
from ..images import ImageError, decode_image, shrink
from ..limits import per_user_limit
from ..models import Exam, ExamSession, Profile, SessionStatus, utcnow
from ..security import STUDENT, access
from . import bp, identity, steps
from .steps import identity_confirmation, next_step, rules_version, setting
from .steps import profile as current_profile

log = logging.getLogger(__name__)

PHOTO_TYPES = {"image/jpeg", "image/png", "image/webp"}
PHOTO_MAX_BYTES = 5 * 1024 * 1024
SYSTEM_PROBLEMS = {
    "camera": ("Camera", "No camera picture. Connect a webcam, allow this site to use it (the camera icon in the "
                         "address bar), and close other programs that use it."),
    "microphone": ("Microphone", "No microphone signal. Connect a microphone, allow this site to use it, and check "
                                 "it is not muted."),
    "browser": ("Browser", "This browser lacks something the exam needs (camera access, audio processing, "
                           "recording, or a secure connection). Use a current Chrome, Edge or Firefox over https "
                           "or on this computer."),
    "upload": ("Upload speed", "The connection to the server is too slow or failed. Move closer to the Wi-Fi "
                               "router or use a cable, and stop large downloads."),
    # {device}: the selected camera's label, as the system check recorded it (steps.system_check_state).
    "virtual_camera": ("Camera", "The selected camera, \u201c{device}\u201d, is a virtual camera (software that can "
                                 "show any picture). Close that program or choose your real webcam in the browser's "
                                 "camera settings (the camera icon in the address bar)."),
}


def _exam_arg(required: bool = True) -> Exam | None:
    raw = request.values.get("exam", "")
    if not raw:
        if required:
            abort(400, description="which exam? (?exam=<id>)")
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        abort(400, description="exam must be a number")
    return _open_exam(int(raw))


def _open_exam(exam_id: int) -> Exam:
    exam = db.session.get(Exam, exam_id)
    if exam is None or not exam.is_published:
        abort(404)
    return exam


@bp.route("/exams/<int:exam_id>/")
@access(STUDENT)
def begin(exam_id: int):
    return redirect(next_step(_open_exam(exam_id)))


# --- rules -----------------------------------------------------------------------------------

@bp.route("/rules", methods=["GET", "POST"])
@access(STUDENT)
def rules():
    exam = _exam_arg(required=False)
    if request.method == "POST":
        if request.form.get("accept") != "yes":
            flash("Tick the box to confirm you have read and accept the rules.", "warning")
            return render_template("student/rules.html", exam=exam, version=rules_version(), error=True), 400
        current_user.rules_accepted_version = rules_version()
        current_user.rules_accepted_at = utcnow()
        db.session.commit()
        log.info("student %s accepted rules version %s", current_user.id, rules_version())
        return redirect(next_step(exam) if exam else url_for("student.home"))
    return render_template("student/rules.html", exam=exam, version=rules_version(), error=False)


# --- system check ----------------------------------------------------------------------------

@bp.route("/system-check")
@access(STUDENT)
def system_check():
    exam = _exam_arg(required=False)
    return render_template("student/system_check.html", exam=exam,
                           min_upload_kbps=setting("PROCTOR_MIN_UPLOAD_KBPS"))


@bp.route("/system-check/problems")
@access(STUDENT)
def system_check_failed():
    codes = [c for c in request.args.get("problems", "").split(",") if c in SYSTEM_PROBLEMS]
    exam = _exam_arg(required=False)
    device = steps.system_check_state().get("camera_label") or "unnamed camera"
    problems = [(title, advice.replace("{device}", device)) for title, advice in (SYSTEM_PROBLEMS[c] for c in codes)] or [("Unknown", "The check did not finish. Reload the page and try again.")]
    return render_template("student/system_check_failed.html", problems=problems, exam=exam), 200


# --- face registration -----------------------------------------------------------------------

def _face_dir() -> Path:
    path = Path(current_app.config["PROCTOR_DATA_DIR"]) / "faces"
    path.mkdir(parents=True, exist_ok=True)
    return path


def register_face(image_bgr) -> tuple[bool, str, dict]:
    """Enrol the image for the current student; (ok, message, quality)."""
    import cv2

    from face_identity import embedding_to_bytes

    image_bgr = shrink(image_bgr, 1280)
    try:
        enrolment = identity.enrol(image_bgr)
    except TimeoutError:
        return False, "The server is busy; try again in a moment.", {}
    quality = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in (enrolment.quality or {}).items()
               if isinstance(v, (int, float, str, bool)) or v is None}
    if not enrolment.ok or enrolment.embedding is None:
        return False, enrolment.error or "the photo could not be used", quality
    name = f"{current_user.id}-{uuid.uuid4().hex[:12]}.jpg"
    ok, jpeg = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        return False, "the photo could not be stored", quality
    try:
        write_file(f"faces/{name}", jpeg.tobytes())  # whole or not at all
    except OSError as exc:
        if not is_storage_full(exc):
            raise
        log.error("face photo of student %s not stored: the data folder is full (%s)", current_user.id, exc)
        return False, "the server's storage is full; try again later", quality
    profile = current_profile()
    old = None
    if profile is None:
        profile = Profile(student_id=current_user.id)
        db.session.add(profile)
    else:
        old = profile.image_path
    profile.image_path = f"faces/{name}"
    profile.embedding = embedding_to_bytes(enrolment.embedding)
    profile.quality = json.dumps(quality)
    profile.updated_at = utcnow()
    db.session.commit()
    if old and old != profile.image_path:
        try:
            (Path(current_app.config["PROCTOR_DATA_DIR"]) / old).unlink(missing_ok=True)
        except OSError:
            log.warning("could not remove old face image %s", old)
    log.info("student %s registered a face (quality %s)", current_user.id, quality)
    return True, "Your face is registered.", quality


def _photo(raw: bytes):
    return shrink(decode_image(raw), 1280)


@bp.route("/face", methods=["GET", "POST"])
@access(STUDENT)
@per_user_limit("PROCTOR_FACE_UPLOAD_LIMIT", methods=["POST"])
def face():
    exam = _exam_arg(required=False)
    profile = current_profile()
    if request.method == "GET":
        return render_template("student/face.html", exam=exam, profile=profile, error=None)

    def refuse(message: str, status: int = 400):
        log.info("face registration refused for student %s: %s", current_user.id, message)
        return render_template("student/face.html", exam=exam, profile=profile, error=message), status

    if svc.active_session(current_user.id) is not None:
        return refuse("You cannot change your registered face while an exam is in progress.", 409)
    upload = request.files.get("photo")
    if upload is None or not upload.filename:
        return refuse("Choose a photo or take one with the camera first.")
    if (upload.mimetype or "").lower() not in PHOTO_TYPES:
        return refuse("The photo must be a JPEG, PNG or WebP image.", 415)
    raw = upload.read(PHOTO_MAX_BYTES + 1)
    if len(raw) > PHOTO_MAX_BYTES:
        return refuse(f"The photo is larger than {PHOTO_MAX_BYTES // (1024 * 1024)} MB.", 413)
    try:  # decoded off the event loop (the header's sizes are checked first, in images.py)
        image = identity.compute(_photo, raw)
    except ImageError as exc:
        return refuse(exc.message[0].upper() + exc.message[1:] + ".", exc.status)
    except TimeoutError:
        return refuse("The server is busy; try again in a moment.", 503)
    ok, message, _quality = register_face(image)
    if not ok:
        return refuse(f"This photo cannot be used: {message}.", 422)
    flash(message, "success")
    return redirect(next_step(exam) if exam else url_for("student.face"))


# --- identity confirmation and start -------------------------------------------------------

@bp.route("/exams/<int:exam_id>/confirm")
@access(STUDENT)
def confirm(exam_id: int):
    exam = _open_exam(exam_id)
    profile = current_profile()
    if profile is None or not profile.embedding:
        return redirect(url_for("student.face", exam=exam.id))
    return render_template("student/confirm.html", exam=exam)


@bp.route("/exams/<int:exam_id>/ready")
@access(STUDENT)
def ready(exam_id: int):
    exam = _open_exam(exam_id)
    step = next_step(exam)
    if step != url_for("student.ready", exam_id=exam.id):
        return redirect(step)
    return render_template("student/ready.html", exam=exam, confirmation=identity_confirmation(exam.id))


@bp.route("/exams/<int:exam_id>/start", methods=["POST"])
@access(STUDENT)
def start(exam_id: int):
    exam = _open_exam(exam_id)
    active = svc.active_session(current_user.id)
    if active is not None:
        # Resuming is only ever the exam in progress; nothing new starts while one runs.
        if active.exam_id != exam.id:
            flash("You have another exam in progress: finish it before starting this one.", "warning")
        return redirect(url_for("student.take", session_id=active.id))
    step = next_step(exam)
    if step != url_for("student.ready", exam_id=exam.id):
        flash("Finish the steps before the exam first.", "warning")
        return redirect(step)
    refusal = steps.display_refusal(exam)  # displays_policy "block": the page's last report for this exam
    if refusal is not None:
        log.info("start refused: student %s exam %s: %s", current_user.id, exam.id, refusal)
        flash(refusal, "danger")
        return redirect(url_for("student.ready", exam_id=exam.id))
    try:
        sess = svc.start_session(current_user.id, exam.id)
    except svc.ExamError as exc:
        flash(exc.message, "danger")
        return redirect(url_for("student.home"))
    confirmation = identity_confirmation(exam.id)
    if sess.identity_confirmed_at is None and confirmation is not None:
        sess.identity_confirmed_at = utcnow()
        sess.identity_distance = confirmation.get("distance")
        sess.identity_liveness = str(confirmation.get("liveness") or "")[:64]
        db.session.commit()
    if exam.require_room_scan and room_scans.attach_latest(current_user.id, exam.id, sess.id) is not None:
        db.session.commit()  # the scan recorded before the start now belongs to this session
    live_hooks.session_started(sess)
    return redirect(url_for("student.take", session_id=sess.id))


# --- the exam and its result -----------------------------------------------------------------

def _my_session(session_id: int) -> ExamSession:
    try:
        return svc.session_for_student(session_id, current_user.id)
    except svc.ExamError as exc:
        abort(exc.status)


@bp.route("/sessions/<int:session_id>")
@access(STUDENT)
def take(session_id: int):
    sess = _my_session(session_id)
    if sess.status != SessionStatus.IN_PROGRESS.value:
        return redirect(url_for("student.result", session_id=sess.id))
    return render_template("student/exam.html", sess=sess, exam=sess.exam,
                           fps=float(setting("PROCTOR_CAMERA_FPS")), audio_bps=int(setting("PROCTOR_AUDIO_BITRATE_BPS")))


@bp.route("/sessions/<int:session_id>/result")
@access(STUDENT)
def result(session_id: int):
    sess = _my_session(session_id)
    if sess.status == SessionStatus.IN_PROGRESS.value:
        return redirect(url_for("student.take", session_id=sess.id))
    res = svc.result_for_session(sess.id)
    return render_template("student/result.html", sess=sess, exam=sess.exam, result=res,
                           violations=svc.violation_summary(sess.id))
