"""The steps before an exam and what the student has done of them.

Rules accepted (a version on the account), a passed system check and a confirmed identity (in
the login session, each with a time limit), a registered face (the profile), and for an exam that
requires one a room scan (a RoomScan row waiting for the start). `next_step` is the
one place that decides where a student must go next; starting an exam asks it too.
"""
from __future__ import annotations

import time

from flask import current_app, session, url_for
from flask_login import current_user
from sqlalchemy import select

from .. import exam_service as svc
from .. import room_scans
from ..extensions import db
from ..models import DisplaysPolicy, Exam, ExamSession, Profile, SessionStatus

SYSTEM_CHECK_PARTS = ("camera", "microphone", "browser", "upload")
# Reported and shown, but not a failure by itself: a second display only matters for an exam whose
# displays_policy says so, and that is checked when the exam starts (display_refusal).
SYSTEM_CHECK_ADVISORY_PARTS = ("display",)


def setting(name: str):
    return current_app.config[name]


def rules_version() -> str:
    return setting("PROCTOR_RULES_VERSION")


def profile() -> Profile | None:
    return db.session.scalar(select(Profile).where(Profile.student_id == current_user.id))


# --- system check ----------------------------------------------------------------------------

def record_system_check(parts: dict[str, bool], upload_kbps: float, advisory: dict | None = None) -> bool:
    ok = all(parts.values())
    session["system_check"] = {"ok": ok, "at": time.time(), **parts, "upload_kbps": round(float(upload_kbps), 1),
                               **(advisory or {})}
    return ok


def system_check_state() -> dict:
    state = session.get("system_check")
    return state if isinstance(state, dict) else {}


def system_check_passed() -> bool:
    state = session.get("system_check")
    return bool(isinstance(state, dict) and state.get("ok")
                and time.time() - float(state.get("at", 0)) < setting("PROCTOR_SYSTEM_CHECK_VALID_S"))


# --- identity confirmation -------------------------------------------------------------------

def _confirmed_key(exam_id: int) -> str:
    return f"identity_confirmed_{exam_id}"


def profile_stamp(p: Profile) -> str:
    return f"{p.id}:{p.image_path}"


def record_identity_confirmation(exam_id: int, p: Profile, distance: float | None, liveness: str) -> None:
    session[_confirmed_key(exam_id)] = {"student_id": current_user.id, "at": time.time(), "profile": profile_stamp(p),
                                        "distance": distance, "liveness": liveness[:64]}


def identity_confirmation(exam_id: int) -> dict | None:
    """The confirmation recorded in this login session for the exam, if still valid."""
    rec = session.get(_confirmed_key(exam_id))
    if not isinstance(rec, dict) or rec.get("student_id") != current_user.id:
        return None
    if time.time() - float(rec.get("at", 0)) > setting("PROCTOR_IDENTITY_VALID_S"):
        return None
    p = profile()
    if p is None or rec.get("profile") != profile_stamp(p):
        return None  # the face was registered again since: confirm again
    return rec


# --- displays (issue 16) ----------------------------------------------------------------------
# What the page said about the screens (screen.isExtended, or the Window Management API's count):
# the browser's word about itself, a signal and not a proof. Kept per exam in the login session.

DISPLAY_REPORT_VALID_S = 600  # the ready page reports again when Start is pressed; an older report is stale


def _displays_key(exam_id: int) -> str:
    return f"displays_{exam_id}"


def record_display_report(exam_id: int, extended: bool, screens: int) -> None:
    session[_displays_key(exam_id)] = {"student_id": current_user.id, "extended": bool(extended),
                                       "screens": int(screens), "at": time.time()}


def display_report(exam_id: int) -> dict | None:
    rec = session.get(_displays_key(exam_id))
    if not isinstance(rec, dict) or rec.get("student_id") != current_user.id:
        return None
    if time.time() - float(rec.get("at", 0)) > DISPLAY_REPORT_VALID_S:
        return None
    return rec


SECOND_DISPLAY = ("A second display is connected. This exam does not start until only one display is "
                  "connected: unplug or switch off the other screen (or stop extending the desktop), then press "
                  "Start again.")
NO_DISPLAY_REPORT = ("This page did not check your displays (an old page, or scripts are blocked). Reload the page, "
                     "then press Start again.")


def display_refusal(exam: Exam) -> str | None:
    """Why the exam must not start because of the displays (its displays_policy is "block"), or None."""
    if exam.displays_policy != DisplaysPolicy.BLOCK.value:
        return None
    report = display_report(exam.id)
    if report is None:
        return NO_DISPLAY_REPORT
    return SECOND_DISPLAY if report["extended"] else None


# --- room scan (only for exams that require one) --------------------------------------------

def room_scan_done(exam: Exam) -> bool:
    """An unattached scan of this exam is waiting for the start, or the session in progress has one."""
    if room_scans.unattached_scans(current_user.id, exam.id):
        return True
    active = svc.active_session(current_user.id)
    return active is not None and active.exam_id == exam.id and room_scans.scan_of_session(active.id) is not None


# --- where next ------------------------------------------------------------------------------

def sessions_for(exam_id: int) -> list[ExamSession]:
    return db.session.scalars(select(ExamSession).where(ExamSession.student_id == current_user.id,
                                                        ExamSession.exam_id == exam_id).order_by(ExamSession.id)).all()


def next_step(exam: Exam) -> str:
    """URL of the first step this student still needs for the exam."""
    active = svc.active_session(current_user.id)
    if active is not None:
        return url_for("student.take", session_id=active.id)
    done = [s for s in sessions_for(exam.id) if s.status != SessionStatus.IN_PROGRESS.value]
    if done and len(done) >= setting("PROCTOR_EXAM_MAX_ATTEMPTS"):
        return url_for("student.result", session_id=done[-1].id)
    if current_user.rules_accepted_version != rules_version():
        return url_for("student.rules", exam=exam.id)
    if not system_check_passed():
        return url_for("student.system_check", exam=exam.id)
    p = profile()
    if p is None or not p.embedding:
        return url_for("student.face", exam=exam.id)
    if identity_confirmation(exam.id) is None:
        return url_for("student.confirm", exam_id=exam.id)
    if exam.require_room_scan and not room_scan_done(exam):
        return url_for("student.room_scan", exam_id=exam.id)
    return url_for("student.ready", exam_id=exam.id)
