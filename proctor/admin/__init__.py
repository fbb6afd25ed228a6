"""Admin pages, all under /admin/ (every view is @access(ADMIN)): home, students, exams and
questions, the live dashboard and feeds, results and review, reports."""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin")

from . import exams, home, live, reports, results, room_scans, screens, students  # noqa: E402,F401  (views on bp)
