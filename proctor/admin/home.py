"""Admin home: counts and the newest violations waiting for review."""
from flask import render_template
from sqlalchemy import func, select

from ..extensions import db
from ..models import Exam, ExamSession, Role, User, Violation
from ..security import ADMIN, access
from . import bp


@bp.route("/")
@access(ADMIN)
def home():
    def count(stmt):
        return db.session.scalar(stmt) or 0

    stats = {
        "students": count(select(func.count()).select_from(User).where(User.role == Role.STUDENT.value)),
        "exams": count(select(func.count()).select_from(Exam)),
        "active_sessions": count(select(func.count()).select_from(ExamSession).where(ExamSession.status == "IN_PROGRESS")),
        "pending_violations": count(select(func.count()).select_from(Violation).where(Violation.review_status == "PENDING")),
    }
    pending = db.session.execute(
        select(Violation, User.name).join(User, User.id == Violation.student_id)
        .where(Violation.review_status == "PENDING").order_by(Violation.timestamp.desc(), Violation.id.desc()).limit(10)
    ).all()
    return render_template("admin/home.html", stats=stats, pending=pending)

