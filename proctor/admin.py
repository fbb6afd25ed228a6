"""Admin pages, all under /admin/ (every view is @access(ADMIN)).

The blueprint is defined here; the areas live in admin_students, admin_exams, admin_results,
admin_reports and admin_live, which register their views on it when imported below.
"""
from flask import Blueprint, render_template
from sqlalchemy import func, select

from .extensions import db
from .models import Exam, ExamSession, Role, Student, Violation
from .security import ADMIN, access

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/")
@access(ADMIN)
def home():
    def count(stmt):
        return db.session.scalar(stmt) or 0

    stats = {
        "students": count(select(func.count()).select_from(Student).where(Student.role == Role.STUDENT.value)),
        "exams": count(select(func.count()).select_from(Exam)),
        "active_sessions": count(select(func.count()).select_from(ExamSession).where(ExamSession.status == "IN_PROGRESS")),
        "pending_violations": count(select(func.count()).select_from(Violation).where(Violation.review_status == "PENDING")),
    }
    pending = db.session.execute(
        select(Violation, Student.name).join(Student, Student.id == Violation.student_id)
        .where(Violation.review_status == "PENDING").order_by(Violation.timestamp.desc(), Violation.id.desc()).limit(10)
    ).all()
    return render_template("admin/home.html", stats=stats, pending=pending)


from . import admin_exams, admin_live, admin_reports, admin_results, admin_students  # noqa: E402,F401  (views on bp)
