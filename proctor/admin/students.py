"""Admin: students. List/search/paginate, create, edit, deactivate, delete, CSV import, face image."""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy import func, or_, select

from ..accounts import AccountError, create_account, fold_email, normalise_email
from ..datafiles import stored_file
from ..evidence_files import recording_files, remove_evidence_files, violation_files
from ..extensions import db
from ..models import (EMAIL_MAX, NAME_MAX, PASSWORD_MAX, PASSWORD_MIN, ExamSession, Profile, Recording, Role, RoomScan,
                      User, Violation)
from ..room_scans import remove_scan_files, scan_paths
from ..security import ADMIN, access, hash_password
from . import bp
from .import_jobs import job_for, start_import
from .fields import FieldError, audit, bool_field, get_or_404, paginate, query_int, read_upload, text_field

log = logging.getLogger(__name__)

IMPORT_MAX_BYTES = 256 * 1024
IMPORT_MAX_ROWS = 500
IMPORT_REQUIRED = ("name", "email")
IMPORT_OPTIONAL = ("password",)
SEARCH_MAX = 100
IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


def _email_field(form) -> str:
    email = normalise_email(text_field(form, "email", "Email", EMAIL_MAX))
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email:
        raise FieldError("email", "Email must be a valid address such as name@example.edu.")
    return email


def _password_field(form, required: bool) -> str | None:
    raw = form.get("password", "")
    if not raw and not required:
        return None
    if not PASSWORD_MIN <= len(raw) <= PASSWORD_MAX:
        raise FieldError("password", f"Password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters.")
    return raw


@bp.route("/students")
@access(ADMIN)
def students():
    q = request.args.get("q", "").strip()[:SEARCH_MAX]
    status = request.args.get("status", "")
    stmt = select(User).where(User.role == Role.STUDENT.value)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(User.name.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\")))
    if status == "active":
        stmt = stmt.where(User.is_active_account.is_(True))
    elif status == "inactive":
        stmt = stmt.where(User.is_active_account.is_(False))
    page = paginate(stmt.order_by(User.name, User.id), query_int("page", 1))
    ids = [s.id for s in page.items]
    profiles = {p.student_id: p for p in db.session.scalars(select(Profile).where(Profile.student_id.in_(ids)))} if ids else {}
    sessions = dict(db.session.execute(
        select(ExamSession.student_id, func.count()).where(ExamSession.student_id.in_(ids)).group_by(ExamSession.student_id)
    ).all()) if ids else {}
    return render_template("admin/students.html", page=page, q=q, status=status, profiles=profiles, sessions=sessions)


@bp.route("/students/new", methods=["GET", "POST"])
@access(ADMIN)
def student_new():
    errors: dict[str, str] = {}
    values = {"name": "", "email": "", "role": Role.STUDENT.value}
    if request.method == "POST":
        form = request.form
        values = {"name": form.get("name", ""), "email": form.get("email", ""), "role": form.get("role", Role.STUDENT.value)}
        try:
            name = text_field(form, "name", "Name", NAME_MAX)
            email = _email_field(form)
            password = _password_field(form, required=True)
            role = form.get("role", Role.STUDENT.value)
            if role not in (Role.STUDENT.value, Role.ADMIN.value):
                raise FieldError("role", "Role must be STUDENT or ADMIN.")
            student = create_account(name, email, password, role)
        except FieldError as exc:
            errors[exc.field] = exc.message
        except AccountError as exc:
            errors["email"] = str(exc).capitalize() + "."
        else:
            audit("student.create", "student", student.id, email=student.email, role=student.role)
            db.session.commit()
            flash(f"Created {student.role.lower()} account {student.email}.", "success")
            return redirect(url_for("admin.student_edit", student_id=student.id))
    return render_template("admin/student_form.html", student=None, values=values, errors=errors), (400 if errors else 200)


@bp.route("/students/<int:student_id>/edit", methods=["GET", "POST"])
@access(ADMIN)
def student_edit(student_id: int):
    student = get_or_404(User, student_id)
    errors: dict[str, str] = {}
    values = {"name": student.name, "email": student.email, "active": student.is_active_account}
    if request.method == "POST":
        form = request.form
        values = {"name": form.get("name", ""), "email": form.get("email", ""), "active": bool_field(form, "active")}
        try:
            name = text_field(form, "name", "Name", NAME_MAX)
            email = _email_field(form)
            password = _password_field(form, required=False)
            # The accent-folded form: `ádmin@x` beside `admin@x` is refused (one address, one account).
            other = db.session.scalar(select(User).where(User.email_folded == fold_email(email), User.id != student.id))
            if other is not None:
                raise FieldError("email", "An account with this email already exists.")
            active = bool_field(form, "active")
            if student.id == current_user.id and not active:
                raise FieldError("active", "You cannot deactivate your own account.")
        except FieldError as exc:
            errors[exc.field] = exc.message
        else:
            changed = [f for f, old, new in (("name", student.name, name), ("email", student.email, email),
                                              ("active", student.is_active_account, active)) if old != new]
            student.name, student.email, student.is_active_account = name, email, active
            if password:
                student.password_hash = hash_password(password)
                changed.append("password")
            audit("student.update", "student", student.id, fields=changed)
            db.session.commit()
            flash("Saved.", "success")
            return redirect(url_for("admin.student_edit", student_id=student.id))
    profile = db.session.scalar(select(Profile).where(Profile.student_id == student.id))
    quality = {}
    if profile is not None and profile.quality:
        try:
            quality = json.loads(profile.quality)
        except ValueError:
            quality = {"error": "unreadable quality record"}
    session_count = db.session.scalar(select(func.count()).select_from(ExamSession).where(ExamSession.student_id == student.id))
    return render_template("admin/student_form.html", student=student, values=values, errors=errors, profile=profile,
                           quality=quality if isinstance(quality, dict) else {}, session_count=session_count), (400 if errors else 200)


@bp.route("/students/<int:student_id>/active", methods=["POST"])
@access(ADMIN)
def student_set_active(student_id: int):
    student = get_or_404(User, student_id)
    active = bool_field(request.form, "active")
    if student.id == current_user.id and not active:
        flash("You cannot deactivate your own account.", "danger")
        return redirect(url_for("admin.students")), 303
    student.is_active_account = active
    audit("student.activate" if active else "student.deactivate", "student", student.id)
    db.session.commit()
    flash(f"{student.email} is now {'active' if active else 'deactivated'}.", "success")
    return redirect(request.form.get("back") == "edit" and url_for("admin.student_edit", student_id=student.id)
                    or url_for("admin.students"))


@bp.route("/students/<int:student_id>/delete", methods=["GET", "POST"])
@access(ADMIN)
def student_delete(student_id: int):
    student = get_or_404(User, student_id)
    if student.id == current_user.id:
        flash("You cannot delete your own account.", "danger")
        return redirect(url_for("admin.students"))
    if request.method == "POST":
        if request.form.get("confirm_email", "").strip().lower() != student.email.lower():
            flash("Type the account's email address to confirm the deletion.", "danger")
            return render_template("admin/student_delete.html", student=student), 400
        image = _profile_image_path(db.session.scalar(select(Profile).where(Profile.student_id == student.id)))
        evidence = violation_files(Violation.student_id == student.id) + recording_files(Recording.student_id == student.id)
        scans = scan_paths(RoomScan.student_id == student.id)  # the rows cascade; their files are removed below
        audit("student.delete", "student", student.id, email=student.email, name=student.name)
        db.session.delete(student)
        db.session.commit()
        if image is not None:
            image.unlink(missing_ok=True)
        remove_evidence_files(evidence)  # snapshots, clips, audio and screenshots of the deleted sessions
        remove_scan_files(scans)
        flash(f"Deleted {student.email} and all their sessions, results and violations.", "success")
        return redirect(url_for("admin.students"))
    return render_template("admin/student_delete.html", student=student)


def _profile_image_path(profile: Profile | None) -> Path | None:
    """The profile image on disk, only if it lies inside the data folder and is an image file."""
    if profile is None:
        return None
    path = stored_file(profile.image_path, f"profile {profile.id} image")
    return path if path is not None and path.suffix.lower() in IMAGE_TYPES else None


@bp.route("/students/<int:student_id>/face")
@access(ADMIN)
def student_face(student_id: int):
    get_or_404(User, student_id)
    path = _profile_image_path(db.session.scalar(select(Profile).where(Profile.student_id == student_id)))
    if path is None:
        abort(404)
    response = send_file(path, mimetype=IMAGE_TYPES[path.suffix.lower()], max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _import_page(status: int = 200, **kw):
    values = {"job": None, "error": None, "max_rows": IMPORT_MAX_ROWS, "max_kb": IMPORT_MAX_BYTES // 1024}
    values.update(kw)
    return render_template("admin/students_import.html", **values), status


@bp.route("/students/import", methods=["GET", "POST"])
@access(ADMIN)
def students_import():
    """Checks the file here; the rows are imported by a background job (import_jobs) whose page this redirects to."""
    if request.method == "GET":
        return _import_page()
    try:
        rows = parse_students_csv(read_upload("file", IMPORT_MAX_BYTES))
    except FieldError as exc:
        return _import_page(400, error=exc.message)
    job = start_import(current_app._get_current_object(), current_user.id, rows, _email_field)
    return redirect(url_for("admin.students_import_job", job_id=job.id), 303)


@bp.route("/students/import/<job_id>")
@access(ADMIN)
def students_import_job(job_id: str):
    """The job's progress (the page reloads itself while it runs), then its report.

    Generated passwords are shown on the first view of the finished report only."""
    job = job_for(job_id, current_user.id) if len(job_id) == 32 else None
    if job is None:
        abort(404)
    finished = job.finished
    response = _import_page(job=job, finished=finished, show_passwords=finished and not job.passwords_shown)
    if finished:
        job.passwords_shown = True
    return response


def parse_students_csv(text: str) -> list[tuple[int, dict]]:
    """The rows [(line number, cells)] of a students CSV whose header and size are right.

    Columns: name, email (required), password (optional: a random one is made and shown once).
    Each row is checked by the import job, which reports a bad row with its line and reason.
    """
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise FieldError("file", f"The file is not valid CSV: {exc}.") from None
    missing = [c for c in IMPORT_REQUIRED if c not in header]
    unknown = [h for h in header if h not in IMPORT_REQUIRED + IMPORT_OPTIONAL]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing column(s): " + ", ".join(missing))
        if unknown:
            parts.append("unknown column(s): " + ", ".join(unknown))
        raise FieldError("file", f"Bad header ({'; '.join(parts)}). Expected: name,email[,password].")
    reader.fieldnames = header
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise FieldError("file", f"The file is not valid CSV: {exc}.") from None
    if len(rows) > IMPORT_MAX_ROWS:
        raise FieldError("file", f"Too many rows: {len(rows)} (at most {IMPORT_MAX_ROWS} per file).")
    if not rows:
        raise FieldError("file", "The file has a header but no rows.")
    return list(enumerate(rows, start=2))
