"""The student's area: pages under /student/ (home, rules, system check, face registration,
identity confirmation, the exam, the result) and the JSON calls those pages make, under
/api/exam/ (a JSON blueprint: every error is {"error", "code"}).

`steps.next_step` sends the student to the first step they still need; starting an exam is
refused until every step is done, so skipping a page in the address bar gets nowhere.
"""
from flask import Blueprint

from ..jsonapi import json_blueprint

bp = Blueprint("student", __name__, url_prefix="/student")
api_bp = json_blueprint("exam_api", __name__, "/api/exam")

from . import exam_api, journey, pages, room_scan, screen_api  # noqa: E402,F401  (views on bp and api_bp)
