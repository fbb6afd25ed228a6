"""The admin pages and exports with a term's worth of data: correct counts, and the time each took
(printed as figures, never asserted)."""
from __future__ import annotations

import csv
import io
import json
import time
from datetime import timedelta


N_STUDENTS = 300
VIOLATIONS_PER_SESSION = 12
TYPES = ("NO_FACE", "MULTIPLE_FACES", "PROHIBITED_OBJECT", "TAB_SWITCH")


def _seed(app):
    from proctor.extensions import db
    from proctor.models import Exam, ExamResult, ExamSession, User, Violation, utcnow

    with app.app_context():
        exam = Exam(title="Big exam", duration_minutes=60, is_published=True)
        db.session.add(exam)
        db.session.flush()
        start = utcnow() - timedelta(days=1)
        db.session.execute(User.__table__.insert(), [
            {"Name": f"Student {i:04d}", "Email": f"s{i:04d}@example.edu", "PasswordHash": "x", "Role": "STUDENT",
             "IsActive": True, "CreatedAt": start} for i in range(N_STUDENTS)])
        ids = [sid for (sid,) in db.session.execute(User.__table__.select().with_only_columns(User.__table__.c.ID)
                                                   .where(User.__table__.c.Role == "STUDENT").order_by(User.__table__.c.ID))]
        db.session.execute(ExamSession.__table__.insert(), [
            {"StudentID": sid, "ExamID": exam.id, "Status": "COMPLETED", "StartedAt": start, "Deadline": start + timedelta(hours=1),
             "EndedAt": start + timedelta(minutes=50), "QuestionOrder": "[]", "DisabledRules": ""} for sid in ids])
        sessions = dict(db.session.execute(ExamSession.__table__.select().with_only_columns(
            ExamSession.__table__.c.StudentID, ExamSession.__table__.c.SessionID)).all())
        db.session.execute(ExamResult.__table__.insert(), [
            {"StudentID": sid, "SessionID": sessions[sid], "ExamID": exam.id, "Score": i % 10, "Total": 10,
             "Percentage": (i % 10) * 10.0, "Grade": "", "Status": "PASS" if i % 10 >= 5 else "FAIL", "CreatedAt": start}
            for i, sid in enumerate(ids)])
        db.session.execute(Violation.__table__.insert(), [
            {"StudentID": sid, "SessionID": sessions[sid], "Type": TYPES[k % len(TYPES)], "Severity": "medium",
             "Details": json.dumps({"duration_s": 2.0}), "Timestamp": start + timedelta(seconds=60 * k + 5),
             "ReviewStatus": "PENDING"} for sid in ids for k in range(VIOLATIONS_PER_SESSION)])
        db.session.commit()
        return exam.id, sessions[ids[0]]


def _timed(client, path):
    t0 = time.perf_counter()
    resp = client.get(path)
    return resp, (time.perf_counter() - t0) * 1000


def test_admin_pages_with_many_rows(app, admin_client, database_url):
    exam_id, first_session = _seed(app)
    figures = {}
    resp, figures["results page 1"] = _timed(admin_client, "/admin/results")
    assert resp.status_code == 200 and f"({N_STUDENTS})" in resp.get_data(as_text=True)
    resp, figures["results page 12 (last)"] = _timed(admin_client, "/admin/results?page=12")
    assert resp.status_code == 200 and "Page 12 of 12" in resp.get_data(as_text=True)
    resp, figures["students search"] = _timed(admin_client, "/admin/students?q=0299")
    assert "Student 0299" in resp.get_data(as_text=True)
    resp, figures[f"session review ({VIOLATIONS_PER_SESSION} violations)"] = _timed(admin_client, f"/admin/sessions/{first_session}")
    assert resp.get_data(as_text=True).count('class="card mb-2 violation') == VIOLATIONS_PER_SESSION
    resp, figures["results.csv"] = _timed(admin_client, f"/admin/reports/results.csv?exam={exam_id}")
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert len(rows) == N_STUDENTS and all(r["violations"] == str(VIOLATIONS_PER_SESSION) for r in rows)
    resp, figures["violations.csv"] = _timed(admin_client, "/admin/reports/violations.csv")
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert len(rows) == N_STUDENTS * VIOLATIONS_PER_SESSION
    backend = database_url.split(":", 1)[0]
    print(f"\nadmin pages on {backend}, {N_STUDENTS} results, {N_STUDENTS * VIOLATIONS_PER_SESSION} violations:")
    for name, ms in figures.items():
        print(f"  {name:<40} {ms:8.1f} ms")
