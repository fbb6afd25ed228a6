"""The exam itself: sessions, answers, deadlines and grading, all decided on the server.

The answer key (Question.correct_index) is read here only to grade; nothing in this module
returns it to a caller that renders for the student (see `exam_payload`).

Every function commits its own transaction. Times are naive UTC (see models.utcnow); tests
pass `now` to move the clock instead of sleeping.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from .extensions import db
from .models import (
    Answer,
    Exam,
    ExamResult,
    ExamSession,
    Question,
    ResultStatus,
    SessionStatus,
    User,
    Violation,
    utcnow,
)

log = logging.getLogger(__name__)

FINISH_STATUSES = (SessionStatus.COMPLETED.value, SessionStatus.TERMINATED.value)
# Letter grade by percentage, first band whose floor the score reaches.
GRADE_BANDS = ((90.0, "A"), (80.0, "B"), (70.0, "C"), (60.0, "D"), (50.0, "E"), (0.0, "F"))
TERMINATED_GRADE = "-"
TIME_UP_REASON = "time expired: submitted automatically at the deadline"


class ExamError(Exception):
    """A request about an exam that cannot be honoured; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Grade:
    score: int
    total: int
    percentage: float
    grade: str
    status: str


def _max_attempts() -> int:
    try:
        return int(current_app.config.get("PROCTOR_EXAM_MAX_ATTEMPTS", 1))
    except RuntimeError:  # outside an app context (never in practice: the DB needs one)
        return 1


def letter_grade(percentage: float) -> str:
    for floor, letter in GRADE_BANDS:
        if percentage >= floor:
            return letter
    return "F"


# --- sessions ---------------------------------------------------------------------------

def start_session(student_id: int, exam_id: int, now: datetime | None = None) -> ExamSession:
    """The student's IN_PROGRESS session for this exam, created if there is none.

    One IN_PROGRESS session per student: starting the same exam again (a reload, a second tab)
    returns the same session with the same deadline and question order; starting another exam
    while one is in progress is refused (409).
    """
    now = now or utcnow()
    # Serialise starts per student: a no-op write on the student's row takes its row lock on
    # MariaDB and the database write lock on SQLite (whose transactions otherwise begin at the
    # first write, after the check below), so two simultaneous starts cannot both create a session.
    db.session.execute(update(User).where(User.id == student_id)
                       .values(rules_accepted_version=User.rules_accepted_version))
    student = db.session.scalar(select(User).where(User.id == student_id).with_for_update())
    if student is None or not student.is_active:
        db.session.rollback()
        raise ExamError("unknown student", 404)
    exam = db.session.get(Exam, exam_id)
    if exam is None or not exam.is_published:
        db.session.rollback()
        raise ExamError("this exam does not exist or is not open", 404)
    in_progress = db.session.scalars(
        select(ExamSession)
        .where(ExamSession.student_id == student_id, ExamSession.status == SessionStatus.IN_PROGRESS.value)
        .order_by(ExamSession.id)
    ).all()
    for sess in in_progress:
        if _expire_if_overdue(sess, now, commit=False):
            continue
        if sess.exam_id != exam_id:
            # One exam at a time: frames and violations go to the session in progress, so a second
            # one would run unproctored.
            db.session.commit()
            raise ExamError("you have another exam in progress: finish it before starting this one", 409)
        db.session.commit()
        return sess
    finished = db.session.scalar(
        select(func.count(ExamSession.id)).where(ExamSession.student_id == student_id, ExamSession.exam_id == exam_id,
                                                 ExamSession.status.in_(FINISH_STATUSES))
    )
    if finished >= _max_attempts():
        db.session.commit()
        raise ExamError("you have already taken this exam", 409)
    question_ids = [q.id for q in exam.questions]
    if not question_ids:
        db.session.rollback()
        raise ExamError("this exam has no questions yet", 409)
    random.SystemRandom().shuffle(question_ids)
    sess = ExamSession(
        student_id=student_id,
        exam_id=exam_id,
        status=SessionStatus.IN_PROGRESS.value,
        started_at=now,
        deadline=now + timedelta(minutes=exam.duration_minutes),
        question_order=json.dumps(question_ids),
        disabled_rules=exam.disabled_rules or "",
    )
    db.session.add(sess)
    db.session.commit()
    log.info("exam session %s started: student %s, exam %s, deadline %s", sess.id, student_id, exam_id, sess.deadline)
    return sess


def question_order(session: ExamSession) -> list[int]:
    try:
        order = json.loads(session.question_order or "[]")
    except ValueError:
        order = []
    return [int(q) for q in order]


def session_for_student(session_id: int, student_id: int, now: datetime | None = None) -> ExamSession:
    """The session if it belongs to this student (else 404/403); an overdue one is submitted first."""
    sess = db.session.get(ExamSession, session_id)
    if sess is None:
        raise ExamError("no such exam session", 404)
    if sess.student_id != student_id:
        log.warning("student %s asked for session %s of student %s", student_id, session_id, sess.student_id)
        raise ExamError("this exam session belongs to another student", 403)
    _expire_if_overdue(sess, now or utcnow())
    return sess


def active_session(student_id: int, now: datetime | None = None) -> ExamSession | None:
    """The student's IN_PROGRESS session (any exam), after submitting overdue ones."""
    now = now or utcnow()
    for sess in db.session.scalars(
        select(ExamSession).where(ExamSession.student_id == student_id,
                                  ExamSession.status == SessionStatus.IN_PROGRESS.value).order_by(ExamSession.id)
    ).all():
        if not _expire_if_overdue(sess, now):
            return sess
    return None


def remaining_seconds(session: ExamSession, now: datetime | None = None) -> float:
    if session.status != SessionStatus.IN_PROGRESS.value:
        return 0.0
    return max(0.0, (session.deadline - (now or utcnow())).total_seconds())


def _expire_if_overdue(session: ExamSession, now: datetime, commit: bool = True) -> bool:
    """Submit the session if its deadline has passed; True when it is (now) finished."""
    if session.status != SessionStatus.IN_PROGRESS.value:
        return True
    if now < session.deadline:
        return False
    if commit:
        finish_session(session.id, SessionStatus.COMPLETED.value, TIME_UP_REASON, now=now)
    else:
        _finish(session, SessionStatus.COMPLETED.value, TIME_UP_REASON, now)
    return True


def expire_overdue(now: datetime | None = None) -> list[int]:
    """Submit every IN_PROGRESS session whose deadline has passed; returns their ids."""
    now = now or utcnow()
    ids = db.session.scalars(
        select(ExamSession.id).where(ExamSession.status == SessionStatus.IN_PROGRESS.value, ExamSession.deadline <= now)
    ).all()
    for sid in ids:
        finish_session(sid, SessionStatus.COMPLETED.value, TIME_UP_REASON, now=now)
    return list(ids)


# --- answers ----------------------------------------------------------------------------

def save_answer(session: ExamSession, question_id, selected_index, flagged=None, now: datetime | None = None,
                client_seq: int | None = None) -> Answer:
    """Store the student's current choice for one question (None clears it) and its flag.

    `flagged=None` keeps the stored flag. `client_seq` is the exam page's increasing number of this save
    (its outbox retries after a database blink): a save whose number is not above the stored one is
    an old or repeated save arriving late, and leaves the newer answer as it is. Raises ExamError(400) for a question that is not in
    this session or an option out of range, ExamError(409) once the session is over.
    """
    now = now or utcnow()
    if _expire_if_overdue(session, now):
        raise ExamError("this exam is over: answers can no longer be changed", 409)
    if isinstance(question_id, bool) or not isinstance(question_id, int):
        raise ExamError("question_id must be a whole number", 400)
    if question_id not in question_order(session):
        raise ExamError("question_id is not a question of this exam", 400)
    question = db.session.get(Question, question_id)
    if question is None:
        raise ExamError("question_id is not a question of this exam", 400)
    if selected_index is not None:
        if isinstance(selected_index, bool) or not isinstance(selected_index, int):
            raise ExamError("selected must be a whole number or null", 400)
        if not 0 <= selected_index < len(question.options):
            raise ExamError(f"selected must be between 0 and {len(question.options) - 1} for this question", 400)
    if flagged is not None and not isinstance(flagged, bool):
        raise ExamError("flagged must be true or false", 400)
    # FOR UPDATE (MariaDB; SQLite writes one at a time anyway): two saves of one answer are compared in turn.
    mine = select(Answer).where(Answer.session_id == session.id, Answer.question_id == question_id).with_for_update()
    answer = db.session.scalar(mine)
    if answer is None:
        answer = Answer(session_id=session.id, question_id=question_id, flagged=bool(flagged))
        db.session.add(answer)
    elif _stale(answer, client_seq):
        db.session.rollback()
        return answer
    _apply(answer, selected_index, flagged, client_seq, now)
    try:
        db.session.commit()
    except IntegrityError:  # the same answer saved twice at once: the other write won, apply ours on top unless older
        db.session.rollback()
        answer = db.session.scalar(mine)
        if _stale(answer, client_seq):
            db.session.rollback()
            return answer
        _apply(answer, selected_index, flagged, client_seq, now)
        db.session.commit()
    return answer


def _stale(answer: Answer, client_seq: int | None) -> bool:
    """A save numbered at or below the stored one: a repeat or an older save arriving late."""
    return client_seq is not None and answer.client_seq is not None and client_seq <= answer.client_seq


def _apply(answer: Answer, selected_index, flagged, client_seq: int | None, now: datetime) -> None:
    answer.selected_index = selected_index
    if flagged is not None:
        answer.flagged = flagged
    if client_seq is not None:
        answer.client_seq = client_seq
    answer.answered_at = now


def answers_by_question(session_id: int) -> dict[int, Answer]:
    return {a.question_id: a for a in db.session.scalars(select(Answer).where(Answer.session_id == session_id))}


# --- grading ----------------------------------------------------------------------------

def grade_session(session: ExamSession, status: str) -> Grade:
    questions = db.session.scalars(select(Question).where(Question.id.in_(question_order(session)))).all()
    answers = answers_by_question(session.id)
    total = sum(q.points for q in questions)
    score = sum(q.points for q in questions if q.id in answers and answers[q.id].selected_index == q.correct_index)
    percentage = round(100.0 * score / total, 2) if total else 0.0
    if status == SessionStatus.TERMINATED.value:
        return Grade(score, total, percentage, TERMINATED_GRADE, ResultStatus.TERMINATED.value)
    passed = percentage >= session.exam.pass_mark_percent
    return Grade(score, total, percentage, letter_grade(percentage),
                 ResultStatus.PASS.value if passed else ResultStatus.FAIL.value)


def _finish(session: ExamSession, status: str, reason: str | None, now: datetime) -> ExamResult:
    existing = db.session.scalar(select(ExamResult).where(ExamResult.session_id == session.id))
    if existing is not None:
        return existing
    g = grade_session(session, status)
    session.status = status
    session.ended_at = now
    if reason:
        session.termination_reason = reason[:255]
    result = ExamResult(student_id=session.student_id, session_id=session.id, exam_id=session.exam_id,
                        score=g.score, total=g.total, percentage=g.percentage, grade=g.grade, status=g.status,
                        created_at=now)
    db.session.add(result)
    log.info("exam session %s finished %s (%s): %s/%s %s", session.id, status, reason or "-", g.score, g.total, g.status)
    return result


def finish_session(session_id: int, status: str, reason: str | None = None, now: datetime | None = None) -> ExamResult:
    """Grade and close the session; idempotent (a finished session returns its result unchanged).

    status is "COMPLETED" (submitted, or the deadline passed) or "TERMINATED" (proctoring).
    """
    if status not in FINISH_STATUSES:
        raise ValueError(f"status must be one of {FINISH_STATUSES}, not {status!r}")
    now = now or utcnow()
    session = db.session.scalar(select(ExamSession).where(ExamSession.id == session_id).with_for_update())
    if session is None:
        db.session.rollback()
        raise ExamError("no such exam session", 404)
    result = _finish(session, status, reason, now)
    try:
        db.session.commit()
    except IntegrityError:  # finished at the same moment by another worker: theirs stands
        db.session.rollback()
        result = db.session.scalar(select(ExamResult).where(ExamResult.session_id == session_id))
        if result is None:
            raise
    return result


# --- what the student's page may see ----------------------------------------------------

def exam_payload(session: ExamSession, now: datetime | None = None) -> dict:
    """Questions and options in this student's order, their saved answers and the time left.

    Never includes the answer key.
    """
    now = now or utcnow()
    order = question_order(session)
    by_id = {q.id: q for q in db.session.scalars(select(Question).where(Question.id.in_(order)))}
    answers = answers_by_question(session.id)
    questions = []
    for number, qid in enumerate(order, start=1):
        q = by_id.get(qid)
        if q is None:  # deleted by an admin mid-exam: skip it rather than fail the student
            continue
        a = answers.get(qid)
        questions.append({
            "id": q.id,
            "number": number,
            "text": q.text,
            "options": q.options,
            "points": q.points,
            "selected": a.selected_index if a else None,
            "flagged": bool(a.flagged) if a else False,
        })
    return {
        "session_id": session.id,
        "exam": {"id": session.exam.id, "title": session.exam.title, "duration_minutes": session.exam.duration_minutes,
                 "pass_mark_percent": session.exam.pass_mark_percent, **exam_page_settings(session.exam)},
        "status": session.status,
        "deadline": session.deadline.isoformat() + "Z",
        "remaining_s": round(remaining_seconds(session, now), 1),
        "questions": questions,
    }


def exam_page_settings(exam: Exam) -> dict:
    """What the exam page enforces beyond the webcam (issue 16); the server checks what it receives anyway."""
    return {"screen_share": exam.screen_share, "screenshot_interval_s": int(exam.screenshot_interval_s),
            "displays_policy": exam.displays_policy, "block_copy_paste": bool(exam.block_copy_paste),
            "require_room_scan": bool(exam.require_room_scan)}


def violation_summary(session_id: int) -> list[dict]:
    """The student's own violations in this session: type, count, first and last time."""
    rows = db.session.execute(
        select(Violation.type, func.count(Violation.id), func.min(Violation.timestamp), func.max(Violation.timestamp))
        .where(Violation.session_id == session_id)
        .group_by(Violation.type)
        .order_by(func.count(Violation.id).desc(), Violation.type)
    ).all()
    return [{"type": t, "count": n, "first": first, "last": last} for t, n, first, last in rows]


def result_for_session(session_id: int) -> ExamResult | None:
    return db.session.scalar(select(ExamResult).where(ExamResult.session_id == session_id))
