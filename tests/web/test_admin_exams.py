"""Admin exams and the question bank: CRUD with CSRF, rules and threshold overrides validated against
config_vision, publish rules, deletes that cascade, CSV/JSON import with per-row errors."""
from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

import config_vision
from tests.conftest import csrf_token
from tests.web.test_admin_results import audit_rows, seed_session


def exam_form(token, **fields):
    data = {"csrf_token": token, "title": "Chemistry", "description": "Line one\nline two", "duration_minutes": "45",
            "pass_mark_percent": "60", "rules": [r for r in config_vision.RULES if r != "VOICE_DETECTED"]}
    data.update(fields)
    return data


def load_exam(app, exam_id):
    from proctor.extensions import db
    from proctor.models import Exam

    with app.app_context():
        e = db.session.get(Exam, exam_id)
        if e is None:
            return None
        return {c: getattr(e, c) for c in ("title", "description", "duration_minutes", "pass_mark_percent", "is_published",
                                            "auto_terminate", "disabled_rules", "thresholds", "require_liveness")} | {
            "questions": [(q.text, q.options, q.correct_index, q.points) for q in e.questions]}


def create_exam(client, **fields) -> int:
    token = csrf_token(client, "/admin/exams/new")
    resp = client.post("/admin/exams/new", data=exam_form(token, **fields))
    assert resp.status_code == 302, resp.get_data(as_text=True)[:2000]
    return int(resp.headers["Location"].rstrip("/").split("/")[-2])


def test_new_exam_form_defaults(app, admin_client, monkeypatch):
    monkeypatch.setenv("PROCTOR_TIME_NO_FACE_S", "4.5")  # the server's own setting is shown beside each override
    page = admin_client.get("/admin/exams/new").get_data(as_text=True)
    assert "<td>4.5</td>" in page
    for rule in config_vision.RULES:
        assert f'id="rule-{rule}" name="rules" value="{rule}" checked' in page
    assert 'name="auto_terminate" value="1">' in page  # auto-terminate is OFF by default
    assert "TIME_NO_FACE_S" in page and "0.0–120" in page


def test_create_exam_with_rules_and_thresholds(app, admin_client):
    exam_id = create_exam(admin_client, th_TIME_NO_FACE_S="7.5", th_INSTANT_PENALTY_THRESHOLD="5", th_YAW_THRESHOLD_DEG="",
                          require_liveness="1")
    e = load_exam(app, exam_id)
    assert (e["title"], e["description"], e["duration_minutes"], e["pass_mark_percent"]) == ("Chemistry", "Line one\nline two", 45, 60)
    assert e["disabled_rules"] == "VOICE_DETECTED" and e["auto_terminate"] is False and e["is_published"] is False
    assert e["require_liveness"] is True
    assert json.loads(e["thresholds"]) == {"TIME_NO_FACE_S": 7.5, "INSTANT_PENALTY_THRESHOLD": 5}
    # the overrides are usable as they are by the vision config
    cfg = config_vision.load_vision_config(env={}).with_overrides(**json.loads(e["thresholds"]))
    assert cfg.TIME_NO_FACE_S == 7.5 and cfg.INSTANT_PENALTY_THRESHOLD == 5
    assert audit_rows(app, "exam.create")[0][2] == exam_id
    page = admin_client.get(f"/admin/exams/{exam_id}/edit").get_data(as_text=True)
    assert 'value="7.5"' in page and 'id="rule-VOICE_DETECTED" name="rules" value="VOICE_DETECTED">' in page


@pytest.mark.parametrize("fields, message", [
    ({"title": ""}, "Title is required"),
    ({"title": "t" * 201}, "at most 200"),
    ({"duration_minutes": "0"}, "between 1 and 600"),
    ({"duration_minutes": "ten"}, "whole number"),
    ({"pass_mark_percent": "101"}, "between 0 and 100"),
    ({"rules": ["NO_FACE", "TELEPATHY"]}, "Unknown rule(s): TELEPATHY"),
    ({"th_TIME_NO_FACE_S": "500"}, "must be between 0.0 and 120"),
    ({"th_YAW_THRESHOLD_DEG": "abc"}, "expected a number"),
    ({"th_YAW_THRESHOLD_DEG": "nan"}, "finite"),
    ({"th_INSTANT_PENALTY_THRESHOLD": "2.5"}, "expected an integer"),
    ({"th_VOICE_MIN_S": "5", "th_VOICE_WINDOW_S": "2"}, "must not exceed"),  # the exam page's voice rule
])
def test_exam_bad_input_is_a_form_error(app, admin_client, fields, message):
    token = csrf_token(admin_client, "/admin/exams/new")
    resp = admin_client.post("/admin/exams/new", data=exam_form(token, **fields))
    body = resp.get_data(as_text=True)
    assert resp.status_code == 400 and message in body
    from proctor.extensions import db
    from proctor.models import Exam

    with app.app_context():
        assert db.session.query(Exam).count() == 0


def question(token, text="What is H2O?", options=("Water", "Salt", "", ""), correct=0, points="1"):
    data = {"csrf_token": token, "text": text, "correct_index": str(correct), "points": points}
    for i, o in enumerate(options):
        data[f"option_{i}"] = o
    return data


def test_question_crud_and_publish(app, admin_client):
    exam_id = create_exam(admin_client)
    token = csrf_token(admin_client, f"/admin/exams/{exam_id}/questions")
    # publishing an exam without questions is refused
    admin_client.post(f"/admin/exams/{exam_id}/publish", data={"csrf_token": token, "publish": "1"})
    assert load_exam(app, exam_id)["is_published"] is False
    # blanks between options are squeezed out and the correct mark follows its option
    resp = admin_client.post(f"/admin/exams/{exam_id}/questions", data=question(token, options=("A", "", "C", "D"), correct=2, points="3"))
    assert resp.status_code == 302
    assert load_exam(app, exam_id)["questions"] == [("What is H2O?", ["A", "C", "D"], 1, 3)]
    for fields, message in [({"options": ("Only one", "", "", "")}, "Give 2 to 6 options"),
                            ({"options": ("A", "B", "", ""), "correct": 3}, "marked correct is empty"),
                            ({"options": ("Same", "same", "", "")}, "Two options are the same"),
                            ({"text": ""}, "Question text is required"),
                            ({"points": "0"}, "between 1 and 100"),
                            ({"correct": 9}, "between 0 and 5")]:
        resp = admin_client.post(f"/admin/exams/{exam_id}/questions", data=question(token, **fields))
        assert resp.status_code == 400 and message in resp.get_data(as_text=True), fields
    assert len(load_exam(app, exam_id)["questions"]) == 1
    from proctor.extensions import db
    from proctor.models import Question

    with app.app_context():
        qid = db.session.scalar(select(Question.id).where(Question.exam_id == exam_id))
    assert admin_client.get(f"/admin/questions/{qid}/edit").status_code == 200
    resp = admin_client.post(f"/admin/questions/{qid}/edit", data=question(token, text="Edited", options=("X", "Y", "Z", ""), correct=1))
    assert resp.status_code == 302
    assert load_exam(app, exam_id)["questions"] == [("Edited", ["X", "Y", "Z"], 1, 1)]
    admin_client.post(f"/admin/exams/{exam_id}/publish", data={"csrf_token": token, "publish": "1"})
    assert load_exam(app, exam_id)["is_published"] is True
    assert "Chemistry" in _student_home(app)
    admin_client.post(f"/admin/exams/{exam_id}/publish", data={"csrf_token": token, "publish": "0"})
    assert load_exam(app, exam_id)["is_published"] is False
    admin_client.post(f"/admin/questions/{qid}/delete", data={"csrf_token": token})
    assert load_exam(app, exam_id)["questions"] == []
    actions = [a for a in ("question.create", "question.update", "exam.publish", "exam.unpublish", "question.delete")
               if audit_rows(app, a)]
    assert actions == ["question.create", "question.update", "exam.publish", "exam.unpublish", "question.delete"]


def _student_home(app):
    from tests.conftest import login, make_user

    make_user(app, "viewer@example.edu")
    c = app.test_client()
    login(c, "viewer@example.edu")
    return c.get("/student/").get_data(as_text=True)


def test_question_post_without_csrf_is_refused(app, admin_client):
    exam_id = create_exam(admin_client)
    data = question("x")
    data.pop("csrf_token")
    assert admin_client.post(f"/admin/exams/{exam_id}/questions", data=data).status_code == 400
    assert load_exam(app, exam_id)["questions"] == []


def upload(client, exam_id, content: bytes, filename: str):
    token = csrf_token(client, f"/admin/exams/{exam_id}/questions")
    return client.post(f"/admin/exams/{exam_id}/questions/import", content_type="multipart/form-data",
                       data={"csrf_token": token, "file": (io.BytesIO(content), filename)})


def test_question_csv_import_with_row_errors(app, admin_client):
    exam_id = create_exam(admin_client)
    content = ("text,option_1,option_2,option_3,option_4,option_5,option_6,correct,points\n"
               "Capital of France?,Paris,Rome,Madrid,,,,1,2\n"
               "\"<script>alert('x')</script> =1+1?\",2,11,,,,,1,\n"
               "One option only,A,,,,,,1,1\n"
               "Gap,A,,C,,,,1,1\n"
               "Bad correct,A,B,,,,,3,1\n"
               "Not a number,A,B,,,,,first,1\n"
               ",A,B,,,,,1,1\n").encode()
    resp = upload(admin_client, exam_id, content, "bank.csv")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Imported 2 question(s)" in page and "5 rejected" in page
    for line, reason in [(4, "Give 2 to 6 options"), (5, "without gaps"), (6, "one of the 2 options"), (7, "whole numbers"),
                         (8, "Question text is required")]:
        assert f"Item {line}: " in page and reason in page, (line, reason)
    qs = load_exam(app, exam_id)["questions"]
    assert qs == [("Capital of France?", ["Paris", "Rome", "Madrid"], 0, 2), ("<script>alert('x')</script> =1+1?", ["2", "11"], 0, 1)]
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page and "<script>alert('x')" not in page


def test_question_json_import(app, admin_client):
    exam_id = create_exam(admin_client)
    items = [{"text": "JSON q", "options": ["a", "b", "c"], "correct_index": 2, "points": 4},
             {"text": "bad index", "options": ["a", "b"], "correct_index": 2},
             {"text": "bool index", "options": ["a", "b"], "correct_index": True},
             {"text": "extra", "options": ["a", "b"], "correct_index": 0, "answer": "a"},
             "not an object",
             {"text": "seven", "options": list("abcdefg"), "correct_index": 0}]
    resp = upload(admin_client, exam_id, json.dumps(items).encode(), "bank.json")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Imported 1 question(s)" in page and "5 rejected" in page
    assert "unknown field(s): answer" in page and "must be an object" in page and "Give 2 to 6 options (got 7)" in page
    assert load_exam(app, exam_id)["questions"] == [("JSON q", ["a", "b", "c"], 2, 4)]


@pytest.mark.parametrize("content, filename, message", [
    (b"{not json", "q.json", "not valid JSON"),
    (b'{"a": 1}', "q.json", "Expected a JSON list"),
    (b"[]", "q.json", "holds no questions"),
    (b"question,answer\nx,y\n", "q.csv", "Bad header"),
    (b"\xff\xfe\x00", "q.csv", "not UTF-8"),
])
def test_question_import_bad_files(app, admin_client, content, filename, message):
    exam_id = create_exam(admin_client)
    resp = upload(admin_client, exam_id, content, filename)
    assert resp.status_code == 400 and message in resp.get_data(as_text=True)
    assert load_exam(app, exam_id)["questions"] == []


def test_delete_exam_needs_title_and_cascades(app, admin_client):
    s = seed_session(app)
    from proctor.extensions import db
    from proctor.models import Answer, ExamResult, ExamSession, Question, Violation

    token = csrf_token(admin_client, f"/admin/exams/{s['exam_id']}/delete")
    resp = admin_client.post(f"/admin/exams/{s['exam_id']}/delete", data={"csrf_token": token, "confirm_title": "physics"})
    assert resp.status_code == 400 and load_exam(app, s["exam_id"]) is not None
    resp = admin_client.post(f"/admin/exams/{s['exam_id']}/delete", data={"csrf_token": token, "confirm_title": "Physics 101"})
    assert resp.status_code == 302 and load_exam(app, s["exam_id"]) is None
    with app.app_context():
        for model in (Question, ExamSession, ExamResult, Answer, Violation):
            assert db.session.query(model).count() == 0, model.__name__
    row = audit_rows(app, "exam.delete")[0]
    assert row[3]["title"] == "Physics 101" and row[3]["sessions"] == 1


def test_edit_exam_records_changes(app, admin_client):
    exam_id = create_exam(admin_client)
    token = csrf_token(admin_client, f"/admin/exams/{exam_id}/edit")
    resp = admin_client.post(f"/admin/exams/{exam_id}/edit", data=exam_form(token, title="Chemistry II", auto_terminate="1",
                                                                            rules=list(config_vision.RULES)))
    assert resp.status_code == 302
    e = load_exam(app, exam_id)
    assert e["title"] == "Chemistry II" and e["auto_terminate"] is True and e["disabled_rules"] == ""
    assert set(audit_rows(app, "exam.update")[0][3]["fields"]) == {"title", "auto_terminate", "disabled_rules"}
    # publishing from the edit form without questions is refused, nothing saved
    resp = admin_client.post(f"/admin/exams/{exam_id}/edit", data=exam_form(token, title="Renamed", is_published="1"))
    assert resp.status_code == 400 and "at least one question" in resp.get_data(as_text=True)
    assert load_exam(app, exam_id)["title"] == "Chemistry II"
    assert admin_client.get("/admin/exams/999999/edit").status_code == 404
