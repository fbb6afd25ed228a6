"""The exam journey on the server: sessions, answers, deadlines and grading, on SQLite and MariaDB.

Service-level tests drive proctor.exam_service with an explicit `now`; HTTP tests go through
the real routes with a logged-in test client and CSRF tokens, as the browser does.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import csrf_token, login, make_user

QUESTIONS = [
    ("What is 7 x 8?", ["54", "56", "64", "48"], 1),
    ("Closest planet to the Sun?", ["Venus", "Earth", "Mercury", "Mars"], 2),
    ("Symbol for water?", ["H2O", "O2", "CO2", "NaCl"], 0),
    ("Sides of a hexagon?", ["5", "6", "7", "8"], 1),
    ("Gas plants absorb?", ["Oxygen", "Nitrogen", "Carbon dioxide", "Helium"], 2),
    ("Largest ocean?", ["Atlantic", "Indian", "Arctic", "Pacific"], 3),
    ("Minutes in two hours?", ["100", "120", "140", "160"], 1),
    ("A mammal?", ["Shark", "Dolphin", "Trout", "Octopus"], 1),
]


def make_exam(app, questions=QUESTIONS, duration=20, pass_mark=60, published=True, title="Sample exam") -> int:
    from proctor.extensions import db
    from proctor.models import Exam, Question

    with app.app_context():
        exam = Exam(title=title, description="d", duration_minutes=duration, pass_mark_percent=pass_mark,
                    is_published=published)
        for pos, (text, options, correct) in enumerate(questions):
            q = Question(text=text, correct_index=correct, position=pos)
            q.options = options
            exam.questions.append(q)
        db.session.add(exam)
        db.session.commit()
        return exam.id


def key_of(app, exam_id) -> dict[int, int]:
    from proctor.extensions import db
    from proctor.models import Question

    with app.app_context():
        return {q.id: q.correct_index for q in db.session.scalars(select(Question).where(Question.exam_id == exam_id))}


# --- service level ----------------------------------------------------------------------

def test_start_session_is_unique_and_keeps_deadline_and_order(app):
    from proctor import exam_service as svc

    sid = make_user(app, "s1@example.edu")
    exam_id = make_exam(app, duration=20)
    with app.app_context():
        first = svc.start_session(sid, exam_id)
        again = svc.start_session(sid, exam_id)
        assert again.id == first.id
        assert again.deadline == first.deadline
        assert svc.question_order(again) == svc.question_order(first)
        assert sorted(svc.question_order(first)) == sorted(key_of(app, exam_id))
        minutes = (first.deadline - first.started_at).total_seconds() / 60
        assert minutes == pytest.approx(20, abs=0.01)
        assert first.status == "IN_PROGRESS"


def test_question_order_is_shuffled_per_student(app):
    from proctor import exam_service as svc

    many = [(f"Question {i}?", ["a", "b", "c"], i % 3) for i in range(12)]
    exam_id = make_exam(app, questions=many)
    orders = []
    with app.app_context():
        for i in range(4):
            sid = make_user(app, f"shuffle{i}@example.edu")
            orders.append(tuple(svc.question_order(svc.start_session(sid, exam_id))))
    # 12! orders: four students sharing one order would mean no shuffle at all.
    assert len(set(orders)) > 1
    assert all(sorted(o) == sorted(orders[0]) for o in orders)


def test_grading_pass_fail_and_idempotent_finish(app):
    from proctor import exam_service as svc
    from proctor.extensions import db
    from proctor.models import ExamResult, ExamSession

    exam_id = make_exam(app, pass_mark=60)
    key = key_of(app, exam_id)
    ids = list(key)
    good, bad = make_user(app, "good@example.edu"), make_user(app, "bad@example.edu")
    with app.app_context():
        s_good = svc.start_session(good, exam_id)
        for qid in ids[:6]:  # 6 of 8 right = 75 %
            svc.save_answer(s_good, qid, key[qid], False)
        svc.save_answer(s_good, ids[6], (key[ids[6]] + 1) % 4, True)
        r1 = svc.finish_session(s_good.id, "COMPLETED")
        assert (r1.score, r1.total, r1.percentage, r1.status, r1.grade) == (6, 8, 75.0, "PASS", "C")
        r2 = svc.finish_session(s_good.id, "COMPLETED")
        r3 = svc.finish_session(s_good.id, "TERMINATED", "late termination")
        assert r2.id == r1.id == r3.id and r3.status == "PASS"
        assert db.session.scalar(select(ExamSession).where(ExamSession.id == s_good.id)).status == "COMPLETED"
        assert len(db.session.scalars(select(ExamResult).where(ExamResult.session_id == s_good.id)).all()) == 1

        s_bad = svc.start_session(bad, exam_id)
        svc.save_answer(s_bad, ids[0], key[ids[0]], False)
        r = svc.finish_session(s_bad.id, "COMPLETED")
        assert (r.score, r.status, r.grade) == (1, "FAIL", "F")
        sess = db.session.get(ExamSession, s_bad.id)
        assert sess.ended_at is not None and sess.status == "COMPLETED"


def test_terminated_session_result(app):
    from proctor import exam_service as svc
    from proctor.extensions import db
    from proctor.models import ExamSession

    sid = make_user(app, "t@example.edu")
    exam_id = make_exam(app)
    key = key_of(app, exam_id)
    with app.app_context():
        sess = svc.start_session(sid, exam_id)
        for qid, correct in key.items():
            svc.save_answer(sess, qid, correct, False)
        r = svc.finish_session(sess.id, "TERMINATED", "NO_FACE warnings exceeded")
        assert r.status == "TERMINATED" and r.score == len(key)
        s = db.session.get(ExamSession, sess.id)
        assert s.status == "TERMINATED" and s.termination_reason == "NO_FACE warnings exceeded"
        with pytest.raises(svc.ExamError) as err:
            svc.save_answer(s, next(iter(key)), 0, False)
        assert err.value.status == 409
        with pytest.raises(ValueError):
            svc.finish_session(sess.id, "PAUSED")


def test_expire_overdue_submits_at_deadline(app):
    from proctor import exam_service as svc
    from proctor.extensions import db
    from proctor.models import ExamSession

    sid = make_user(app, "late@example.edu")
    exam_id = make_exam(app, duration=10)
    key = key_of(app, exam_id)
    with app.app_context():
        sess = svc.start_session(sid, exam_id)
        qid = next(iter(key))
        svc.save_answer(sess, qid, key[qid], False)
        assert svc.expire_overdue(sess.deadline - timedelta(seconds=1)) == []
        assert svc.expire_overdue(sess.deadline + timedelta(seconds=1)) == [sess.id]
        s = db.session.get(ExamSession, sess.id)
        assert s.status == "COMPLETED" and s.termination_reason == svc.TIME_UP_REASON
        r = svc.result_for_session(sess.id)
        assert r.score == 1 and r.total == len(key)
        with pytest.raises(svc.ExamError) as err:
            svc.start_session(sid, exam_id)
        assert err.value.status == 409


def test_save_answer_validates_input(app):
    from proctor import exam_service as svc

    sid = make_user(app, "v@example.edu")
    exam_id = make_exam(app)
    other_exam = make_exam(app, title="Other")
    other_qid = next(iter(key_of(app, other_exam)))
    qid = next(iter(key_of(app, exam_id)))
    with app.app_context():
        sess = svc.start_session(sid, exam_id)
        for bad_q, bad_sel, flag in [(other_qid, 0, False), (999999, 0, False), ("1", 0, False), (True, 0, False),
                                      (qid, 4, False), (qid, -1, False), (qid, "2", False), (qid, 1.5, False),
                                      (qid, True, False), (qid, 0, "yes")]:
            with pytest.raises(svc.ExamError) as err:
                svc.save_answer(sess, bad_q, bad_sel, flag)
            assert err.value.status == 400, (bad_q, bad_sel, flag)
        a = svc.save_answer(sess, qid, 3, True)
        assert (a.selected_index, a.flagged) == (3, True)
        a = svc.save_answer(sess, qid, None, None)
        assert (a.selected_index, a.flagged) == (None, True)


def test_unpublished_or_empty_exam_cannot_start(app):
    from proctor import exam_service as svc

    sid = make_user(app, "u@example.edu")
    hidden = make_exam(app, published=False)
    empty = make_exam(app, questions=[], title="Empty")
    with app.app_context():
        with pytest.raises(svc.ExamError) as err:
            svc.start_session(sid, hidden)
        assert err.value.status == 404
        with pytest.raises(svc.ExamError) as err:
            svc.start_session(sid, empty)
        assert err.value.status == 409


# --- HTTP: the pages and /api/exam as the browser uses them ---------------------------------

def _post_json(client, url, body, token):
    return client.post(url, data=json.dumps(body), content_type="application/json", headers={"X-CSRFToken": token})


def _started(app, client_email="student@example.edu", exam_id=None):
    """A session started through the service for the logged-in test student (the gates are tested separately)."""
    from proctor import exam_service as svc
    from proctor.accounts import find_by_email

    with app.app_context():
        sid = find_by_email(client_email).id
        return svc.start_session(sid, exam_id).id


def _walk_keys(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _walk_keys(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _walk_keys(v)


def test_exam_payload_has_questions_in_student_order_and_never_the_key(app, student_client):
    exam_id = make_exam(app)
    session_id = _started(app, exam_id=exam_id)
    resp = student_client.get(f"/api/exam/sessions/{session_id}")
    assert resp.status_code == 200
    data = resp.get_json()
    from proctor import exam_service as svc
    from proctor.extensions import db
    from proctor.models import ExamSession

    with app.app_context():
        order = svc.question_order(db.session.get(ExamSession, session_id))
    assert [q["id"] for q in data["questions"]] == order
    assert set(data["questions"][0]) == {"id", "number", "text", "options", "points", "selected", "flagged"}
    assert not [k for k in _walk_keys(data) if "correct" in k.lower() or "key" in k.lower()]
    assert data["remaining_s"] > 19 * 60
    page = student_client.get(f"/student/sessions/{session_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "correct" not in html.lower() and "<script>" not in html  # no inline scripts (CSP)


def test_answers_saved_restored_and_deadline_kept_on_reload(app, student_client):
    exam_id = make_exam(app)
    key = key_of(app, exam_id)
    session_id = _started(app, exam_id=exam_id)
    token = csrf_token(student_client, "/student/")
    first = student_client.get(f"/api/exam/sessions/{session_id}").get_json()
    qids = [q["id"] for q in first["questions"]]
    r = _post_json(student_client, f"/api/exam/sessions/{session_id}/answers", {"question_id": qids[0], "selected": 2}, token)
    assert r.status_code == 200 and r.get_json()["selected"] == 2
    r = _post_json(student_client, f"/api/exam/sessions/{session_id}/answers", {"question_id": qids[1], "flagged": True}, token)
    assert r.get_json() == {**r.get_json(), "selected": None, "flagged": True}
    r = _post_json(student_client, f"/api/exam/sessions/{session_id}/answers", {"question_id": qids[0], "flagged": True}, token)
    assert r.get_json()["selected"] == 2  # flagging keeps the choice
    again = student_client.get(f"/api/exam/sessions/{session_id}").get_json()  # the page reloaded
    by_id = {q["id"]: q for q in again["questions"]}
    assert (by_id[qids[0]]["selected"], by_id[qids[0]]["flagged"]) == (2, True)
    assert (by_id[qids[1]]["selected"], by_id[qids[1]]["flagged"]) == (None, True)
    assert again["deadline"] == first["deadline"]
    assert again["remaining_s"] <= first["remaining_s"]
    # Starting again (a second tab, a reload of the start) returns the same session.
    assert _started(app, exam_id=exam_id) == session_id
    assert set(key)  # the exam exists with its key, which the student never saw


def test_bad_answer_input_is_400_not_500(app, student_client):
    exam_id = make_exam(app)
    other_exam = make_exam(app, title="Other")
    foreign_q = next(iter(key_of(app, other_exam)))
    session_id = _started(app, exam_id=exam_id)
    token = csrf_token(student_client, "/student/")
    qid = student_client.get(f"/api/exam/sessions/{session_id}").get_json()["questions"][0]["id"]
    url = f"/api/exam/sessions/{session_id}/answers"
    for body in [{"question_id": 999999, "selected": 0}, {"question_id": foreign_q, "selected": 0},
                 {"question_id": qid, "selected": 4}, {"question_id": qid, "selected": -1},
                 {"question_id": qid, "selected": "1"}, {"question_id": str(qid), "selected": 1},
                 {"question_id": qid, "flagged": "yes"}, {"question_id": qid}, {"selected": 1}, [1, 2], "x"]:
        r = _post_json(student_client, url, body, token)
        assert r.status_code == 400, (body, r.status_code, r.get_data(as_text=True))
        assert r.get_json()["code"] == 400 and r.get_json()["error"]
    r = student_client.post(url, data="{not json", content_type="application/json", headers={"X-CSRFToken": token})
    assert r.status_code == 400
    r = _post_json(student_client, "/api/exam/sessions/987654/answers", {"question_id": qid, "selected": 1}, token)
    assert r.status_code == 404
    r = student_client.post(url, data=json.dumps({"question_id": qid, "selected": 1}), content_type="application/json")
    assert r.status_code == 400  # no CSRF token


def test_an_older_answer_arriving_late_does_not_replace_a_newer_one(app, student_client):
    """The exam page numbers its saves (client_seq); a retried or late older save leaves the newer answer."""
    exam_id = make_exam(app)
    session_id = _started(app, exam_id=exam_id)
    token = csrf_token(student_client, "/student/")
    qid = student_client.get(f"/api/exam/sessions/{session_id}").get_json()["questions"][0]["id"]
    url = f"/api/exam/sessions/{session_id}/answers"
    assert _post_json(student_client, url, {"question_id": qid, "selected": 1, "client_seq": 10}, token).status_code == 200
    newer = _post_json(student_client, url, {"question_id": qid, "selected": 2, "client_seq": 11}, token)
    assert newer.get_json()["selected"] == 2
    late = _post_json(student_client, url, {"question_id": qid, "selected": 1, "client_seq": 10}, token)
    assert late.status_code == 200 and late.get_json()["selected"] == 2  # the reply says what is stored
    again = _post_json(student_client, url, {"question_id": qid, "selected": 2, "client_seq": 11}, token)
    assert again.status_code == 200 and again.get_json()["selected"] == 2
    by_id = {q["id"]: q for q in student_client.get(f"/api/exam/sessions/{session_id}").get_json()["questions"]}
    assert by_id[qid]["selected"] == 2
    for bad in ("11", -1, 2 ** 60, True, 1.5):
        r = _post_json(student_client, url, {"question_id": qid, "selected": 0, "client_seq": bad}, token)
        assert r.status_code == 400 and "client_seq" in r.get_json()["error"], bad


def test_another_students_session_is_refused(app, student_client):
    exam_id = make_exam(app)
    other = make_user(app, "other@example.edu")
    from proctor import exam_service as svc

    with app.app_context():
        other_session = svc.start_session(other, exam_id).id
    token = csrf_token(student_client, "/student/")
    qid = next(iter(key_of(app, exam_id)))
    assert student_client.get(f"/api/exam/sessions/{other_session}").status_code == 403
    r = _post_json(student_client, f"/api/exam/sessions/{other_session}/answers", {"question_id": qid, "selected": 0}, token)
    assert r.status_code == 403
    assert _post_json(student_client, f"/api/exam/sessions/{other_session}/submit", {}, token).status_code == 403
    assert student_client.get(f"/student/sessions/{other_session}").status_code == 403
    assert student_client.get(f"/student/sessions/{other_session}/result").status_code == 403
    with app.app_context():
        from proctor.extensions import db
        from proctor.models import Answer, ExamSession

        assert db.session.scalars(select(Answer).where(Answer.session_id == other_session)).all() == []
        assert db.session.get(ExamSession, other_session).status == "IN_PROGRESS"


def test_submit_grades_on_server_and_double_submit_is_idempotent(app, student_client):
    exam_id = make_exam(app, pass_mark=60)
    key = key_of(app, exam_id)
    session_id = _started(app, exam_id=exam_id)
    token = csrf_token(student_client, "/student/")
    for qid, correct in list(key.items())[:5]:  # 5 of 8 = 62.5 %
        _post_json(student_client, f"/api/exam/sessions/{session_id}/answers", {"question_id": qid, "selected": correct}, token)
    r1 = _post_json(student_client, f"/api/exam/sessions/{session_id}/submit", {"score": 100, "status": "PASS"}, token)
    r2 = _post_json(student_client, f"/api/exam/sessions/{session_id}/submit", {}, token)
    assert r1.status_code == r2.status_code == 200
    assert r1.get_json() == r2.get_json() and r1.get_json()["status"] == "PASS"
    from proctor.extensions import db
    from proctor.models import ExamResult

    with app.app_context():
        rows = db.session.scalars(select(ExamResult).where(ExamResult.session_id == session_id)).all()
        assert len(rows) == 1 and (rows[0].score, rows[0].total, rows[0].percentage) == (5, 8, 62.5)
    late = _post_json(student_client, f"/api/exam/sessions/{session_id}/answers",
                      {"question_id": next(iter(key)), "selected": 0}, token)
    assert late.status_code == 409 and late.get_json()["result_url"].endswith(f"/sessions/{session_id}/result")
    page = student_client.get(r1.get_json()["result_url"]).get_data(as_text=True)
    assert "Passed" in page and "5 / 8" in page and "62.5 %" in page
    assert student_client.get(f"/student/sessions/{session_id}").status_code == 302  # the exam page sends to the result


def test_autosubmit_after_deadline_on_next_request(app, student_client):
    exam_id = make_exam(app)
    key = key_of(app, exam_id)
    session_id = _started(app, exam_id=exam_id)
    token = csrf_token(student_client, "/student/")
    qid = next(iter(key))
    _post_json(student_client, f"/api/exam/sessions/{session_id}/answers", {"question_id": qid, "selected": key[qid]}, token)
    from proctor.extensions import db
    from proctor.models import ExamResult, ExamSession, utcnow

    with app.app_context():  # the deadline passes (moved in the database, no sleeping)
        sess = db.session.get(ExamSession, session_id)
        sess.deadline = utcnow() - timedelta(seconds=5)
        db.session.commit()
    data = student_client.get(f"/api/exam/sessions/{session_id}").get_json()
    assert data["status"] == "COMPLETED" and data["remaining_s"] == 0 and data["result_url"]
    with app.app_context():
        res = db.session.scalar(select(ExamResult).where(ExamResult.session_id == session_id))
        assert res is not None and res.score == 1
        assert db.session.get(ExamSession, session_id).termination_reason.startswith("time expired")
    r = _post_json(student_client, f"/api/exam/sessions/{session_id}/answers", {"question_id": qid, "selected": 0}, token)
    assert r.status_code == 409


def test_start_refused_until_every_step_is_done(app, student_client):
    exam_id = make_exam(app)
    token = csrf_token(student_client, "/student/")
    r = student_client.get(f"/student/exams/{exam_id}/")
    assert r.status_code == 302 and "/student/rules" in r.headers["Location"]
    r = student_client.post(f"/student/exams/{exam_id}/start", data={"csrf_token": token})
    assert r.status_code == 302 and "/student/rules" in r.headers["Location"]
    r = student_client.post("/student/rules", data={"csrf_token": token, "exam": exam_id})
    assert r.status_code == 400 and "Tick the box" in r.get_data(as_text=True)
    r = student_client.post("/student/rules", data={"csrf_token": token, "exam": exam_id, "accept": "yes"})
    assert r.status_code == 302 and "/student/system-check" in r.headers["Location"]
    from proctor.accounts import find_by_email

    with app.app_context():
        assert find_by_email("student@example.edu").rules_accepted_version == app.config.get("PROCTOR_RULES_VERSION", "2026-11")
    # The system check is recorded from what the page measured; a failing part sends to the advice page.
    bad = _post_json(student_client, "/api/exam/system-check",
                     {"camera": False, "microphone": True, "browser": True, "upload": True, "upload_kbps": 900}, token)
    assert bad.status_code == 200 and bad.get_json()["ok"] is False and "camera" in bad.get_json()["next"]
    advice = student_client.get(bad.get_json()["next"]).get_data(as_text=True)
    assert "Connect a webcam" in advice
    assert _post_json(student_client, "/api/exam/system-check", {"camera": "yes"}, token).status_code == 400
    ok = _post_json(student_client, "/api/exam/system-check",
                    {"camera": True, "microphone": True, "browser": True, "upload": True, "upload_kbps": 5000.0}, token)
    assert ok.get_json()["ok"] is True
    r = student_client.get(f"/student/exams/{exam_id}/")
    assert r.status_code == 302 and "/student/face" in r.headers["Location"]
    r = student_client.post(f"/student/exams/{exam_id}/start", data={"csrf_token": token})
    assert r.status_code == 302 and "/student/face" in r.headers["Location"]
    from proctor.extensions import db
    from proctor.models import ExamSession

    with app.app_context():
        assert db.session.scalars(select(ExamSession)).all() == []


def test_a_second_exam_cannot_start_while_one_is_in_progress(app, student_client):
    """Hardening: with exam E in progress, POST /start for exam X must not start X unproctored
    (no rules, system check, face or identity step): it resumes E, and the service refuses X."""
    from proctor import exam_service as svc
    from proctor.accounts import find_by_email
    from proctor.extensions import db
    from proctor.models import ExamSession

    first = make_exam(app, title="E")
    other = make_exam(app, title="X")
    session_id = _started(app, exam_id=first)
    token = csrf_token(student_client, "/student/")
    r = student_client.post(f"/student/exams/{other}/start", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/student/sessions/{session_id}")
    r = student_client.get(f"/student/exams/{other}/")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/student/sessions/{session_id}")
    with app.app_context():
        rows = db.session.scalars(select(ExamSession)).all()
        assert [(s.id, s.exam_id, s.status) for s in rows] == [(session_id, first, "IN_PROGRESS")]
        with pytest.raises(svc.ExamError) as refused:
            svc.start_session(find_by_email("student@example.edu").id, other)
        assert refused.value.status == 409 and "another exam" in refused.value.message
    # The same exam resumes (a reload, a second tab) without a new session.
    r = student_client.post(f"/student/exams/{first}/start", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/student/sessions/{session_id}")
    # Once E is submitted, X still needs every step (here: the rules first).
    assert _post_json(student_client, f"/api/exam/sessions/{session_id}/submit", {}, token).status_code == 200
    r = student_client.post(f"/student/exams/{other}/start", data={"csrf_token": token})
    assert r.status_code == 302 and "/student/rules" in r.headers["Location"]


def test_upload_speed_endpoint_counts_bytes(app, student_client):
    token = csrf_token(student_client, "/student/")
    body = bytes(256 * 1024)
    r = student_client.post("/api/exam/upload-test", data=body, content_type="application/octet-stream",
                            headers={"X-CSRFToken": token})
    assert r.status_code == 200 and r.get_json()["bytes"] == len(body)
    r = student_client.post("/api/exam/upload-test", data=bytes(3 * 1024 * 1024), content_type="application/octet-stream",
                            headers={"X-CSRFToken": token})
    assert r.status_code == 413


def test_audio_chunks_validated_and_stored(app, student_client, tmp_path):
    import io
    import subprocess

    exam_id = make_exam(app)
    session_id = _started(app, exam_id=exam_id)
    token = csrf_token(student_client, "/student/")
    # A real WebM/Opus file, as MediaRecorder makes: speech from espeak-ng encoded by ffmpeg.
    wav, webm = tmp_path / "s.wav", tmp_path / "s.webm"
    subprocess.run(["espeak-ng", "-w", str(wav), "the answer is four"], check=True, capture_output=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "libopus", str(webm)], check=True)
    raw = webm.read_bytes()

    def send(data, mime="audio/webm", seq="0", sid=None):
        return student_client.post("/api/exam/audio-chunk", headers={"X-CSRFToken": token}, content_type="multipart/form-data",
                                   data={"session_id": str(sid or session_id), "seq": seq, "started_ms": "1700000000000",
                                         "chunk": (io.BytesIO(data), "chunk", mime)})

    r = send(raw)
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()["bytes"] == len(raw) and r.get_json()["chunks"] == 1
    assert send(raw[100:], seq="1").status_code == 201  # a later chunk continues the stream: no header
    assert send(b"not audio at all", seq="0").status_code == 415
    assert send(raw, mime="video/mp4").status_code == 415
    assert send(raw, seq="-3").status_code == 400
    assert send(raw, seq="x").status_code == 400
    assert send(b"").status_code == 400
    assert send(raw, sid=424242).status_code == 404
    from proctor.extensions import db
    from proctor.models import Recording

    with app.app_context():
        recs = db.session.scalars(select(Recording).where(Recording.session_id == session_id).order_by(Recording.sequence)).all()
        assert [(r.kind, r.sequence, r.mime) for r in recs] == [("audio", 0, "audio/webm"), ("audio", 1, "audio/webm")]
        from pathlib import Path

        stored = Path(app.config["PROCTOR_DATA_DIR"]) / recs[0].path
        assert stored.read_bytes() == raw


def test_costly_routes_are_rate_limited_per_account(app, student_client):
    token = csrf_token(student_client, "/student/")
    codes = [student_client.post("/api/exam/upload-test", data=bytes(1024), content_type="application/octet-stream",
                                 headers={"X-CSRFToken": token}).status_code for _ in range(12)]
    assert codes[:10] == [200] * 10 and codes[10:] == [429, 429]
    r = student_client.post("/api/exam/upload-test", data=bytes(10), content_type="application/octet-stream",
                            headers={"X-CSRFToken": token})
    assert r.status_code == 429 and r.get_json()["code"] == 429


def test_concurrent_starts_make_one_session(app):
    """Two tabs pressing Start at the same moment: one IN_PROGRESS session, both get it."""
    import threading

    from proctor import exam_service as svc
    from proctor.extensions import db
    from proctor.models import ExamSession

    sid = make_user(app, "race@example.edu")
    exam_id = make_exam(app)
    barrier = threading.Barrier(4)
    got, errors = [], []

    def start():
        with app.app_context():
            try:
                barrier.wait()
                got.append(svc.start_session(sid, exam_id).id)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with app.app_context():
        rows = db.session.scalars(select(ExamSession).where(ExamSession.student_id == sid)).all()
    if db_is_sqlite(app):
        # SQLite serialises writers; a writer that finds the database locked may fail, never duplicate.
        assert len(rows) == 1 and len(set(got)) == 1, (rows, got, errors)
    else:
        assert errors == [] and len(rows) == 1 and set(got) == {rows[0].id}


def db_is_sqlite(app) -> bool:
    return app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")


def test_background_sweep_submits_abandoned_sessions(database_url, tmp_path):
    """A student who closed the browser still gets a result at the deadline (no request needed)."""
    from proctor import create_app, exam_service as svc
    from proctor.extensions import db
    from proctor.models import ExamSession, utcnow
    from tests.conftest import _empty_all_tables, _test_config

    app = create_app({**_test_config(database_url, tmp_path / "instance"), "TESTING": False, "BCRYPT_LOG_ROUNDS": 12,
                      "PROCTOR_EXPIRY_SWEEP_S": 0.2})
    with app.app_context():
        _empty_all_tables(db)
    try:
        sid = make_user(app, "gone@example.edu")
        exam_id = make_exam(app)
        with app.app_context():
            sess = svc.start_session(sid, exam_id)
            sess.deadline = utcnow() - timedelta(seconds=1)  # the student left; the deadline passed
            db.session.commit()
            session_id = sess.id
        assert app.test_client().get("/api/health").status_code == 200  # the server's first request starts the sweep
        state = app.extensions["exam_expiry_sweep"]
        status = None
        for _ in range(100):  # polls up to ~20 s; asserts the outcome, not the time it took
            with app.app_context():
                status = db.session.get(ExamSession, session_id).status
                db.session.remove()
            if status != "IN_PROGRESS":
                break
            import time

            time.sleep(0.2)
        assert status == "COMPLETED" and state["sweeps"] >= 1
        with app.app_context():
            assert svc.result_for_session(session_id) is not None
    finally:
        sweeper = app.extensions.get("exam_expiry_sweep") or {}
        sweeper["running"] = False
        if sweeper.get("task") is not None:
            sweeper["task"].join(5)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
