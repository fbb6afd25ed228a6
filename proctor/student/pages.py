"""The student's home: open exams, exams in progress, past results."""
from flask import render_template
from flask_login import current_user
from sqlalchemy import select

from ..extensions import db
from ..models import Exam, ExamResult, ExamSession
from ..security import STUDENT, access
from . import bp


@bp.route("/")
@access(STUDENT)
def home():
    exams = db.session.scalars(select(Exam).where(Exam.is_published.is_(True)).order_by(Exam.title)).all()
    results = db.session.execute(
        select(ExamResult, Exam.title)
        .join(Exam, Exam.id == ExamResult.exam_id)
        .where(ExamResult.student_id == current_user.id)
        .order_by(ExamResult.created_at.desc())
    ).all()
    active = db.session.scalars(
        select(ExamSession).where(ExamSession.student_id == current_user.id, ExamSession.status == "IN_PROGRESS")
    ).all()
    return render_template("student/home.html", exams=exams, results=results, active=active)
