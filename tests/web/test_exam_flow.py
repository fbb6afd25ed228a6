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
