"""Talking to the student (issue 16): the proctor's messages, the student's raised hand and extra time,
through the real routes on SQLite and MariaDB: validated, stored, audited once, own session only."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import csrf_token, login, make_user
from tests.live.test_admin_actions import admin  # noqa: F401  (fixture: the admin client with its CSRF token and id)
from tests.live.test_frame_api import live_env, stop_live_runtime, Student  # noqa: F401  (fixtures)


@pytest.fixture
def student(app):
    return Student(app, "talk-student@example.edu", name="Ana Lima")


def post(client, url, body=None, token=None):
    return client.post(url, json=body if body is not None else {}, headers={"X-CSRFToken": token or client.csrf})


def spost(student, url, body=None):
    return student.client.post(url, json=body if body is not None else {}, headers={"X-CSRFToken": student.token})


def rows(app, model, **where):
    from proctor.extensions import db

    with app.app_context():
        db.session.expire_all()
        q = select(model)
        for k, v in where.items():
            q = q.where(getattr(model, k) == v)
        return db.session.scalars(q.order_by(model.id)).all()


def audits(app, action):
    from proctor.models import AuditLog

    return [(a.actor_id, a.target_id, json.loads(a.details)) for a in rows(app, AuditLog, action=action)]


def messages(app, session_id):
    from proctor.models import SessionMessage

    return rows(app, SessionMessage, session_id=session_id)


def session_row(app, session_id):
    from proctor.extensions import db
    from proctor.models import ExamSession

    with app.app_context():
        db.session.expire_all()
        return db.session.get(ExamSession, session_id)


def set_session(app, session_id, **values):
    from proctor.extensions import db
    from proctor.models import ExamSession

    with app.app_context():
        sess = db.session.get(ExamSession, session_id)
        for k, v in values.items():
            setattr(sess, k, v)
        db.session.commit()


def error(resp, status):
    body = resp.get_json(silent=True)
    assert resp.status_code == status, (resp.status_code, body)
    assert isinstance(body, dict) and body["code"] == status and body["error"], body
    return body["error"]


# --- the proctor's message -------------------------------------------------------------------------

def test_a_preset_and_a_free_text_are_stored_audited_and_read_back(app, admin, student):
    url = f"/api/admin/sessions/{student.session_id}/messages"
    resp = post(admin, url, {"preset": "remove_phone"})
    assert resp.status_code == 201, resp.get_json()
    first = resp.get_json()
    assert first["body"] == "Please remove the phone from the desk." and first["preset"] == "remove_phone"
    resp = post(admin, url, {"text": "  Ana, please sit where the camera sees you.  "})
    assert resp.status_code == 201
    stored = messages(app, student.session_id)
    assert [(m.sender, m.author_id, m.student_id, m.preset, m.body, m.acknowledged_at) for m in stored] == [
        ("proctor", admin.user_id, student.id, "remove_phone", "Please remove the phone from the desk.", None),
        ("proctor", admin.user_id, student.id, None, "Ana, please sit where the camera sees you.", None)]
    logged = audits(app, "live.message")
    assert [(a, t, d["message_id"], d["preset"], d["body"]) for a, t, d in logged] == [
        (admin.user_id, student.session_id, stored[0].id, "remove_phone", stored[0].body),
        (admin.user_id, student.session_id, stored[1].id, None, stored[1].body)]
    # the student's page reads its unread messages at load, oldest first
    unread = student.client.get(f"/api/exam/sessions/{student.session_id}/messages").get_json()["messages"]
    assert [m["message_id"] for m in unread] == [m.id for m in stored] and unread[0]["body"] == stored[0].body


@pytest.mark.parametrize("body", [
    {"text": ""}, {"text": "   "}, {"text": "x" * 501}, {"text": "look\nhere"}, {"text": "bell\x07"},
    {"text": "\u202eevil"}, {"text": 42}, {"preset": "dance"}, {"preset": None}, {}, {"preset": "keep_quiet", "text": "hi"},
    {"text": "ok", "sender": "student"},
])
def test_bad_messages_are_refused_and_nothing_is_stored(app, admin, student, body):
    error(post(admin, f"/api/admin/sessions/{student.session_id}/messages", body), 400)
    assert messages(app, student.session_id) == [] and audits(app, "live.message") == []


def test_500_characters_is_the_limit_and_not_json_is_refused(app, admin, student):
    url = f"/api/admin/sessions/{student.session_id}/messages"
    assert post(admin, url, {"text": "é" * 500}).status_code == 201
    error(admin.post(url, data="text=hi", headers={"X-CSRFToken": admin.csrf}), 400)
    assert len(messages(app, student.session_id)) == 1


def test_only_admins_send_and_any_admin_may(app, admin, student):
    url = f"/api/admin/sessions/{student.session_id}/messages"
    error(spost(student, url, {"preset": "keep_quiet"}), 403)
    error(app.test_client().post(url, json={"preset": "keep_quiet"}), 401)
    assert messages(app, student.session_id) == []
    make_user(app, "second-admin@example.edu", role="ADMIN", name="Second Admin")
    other = app.test_client()
    assert login(other, "second-admin@example.edu").status_code == 302
    resp = post(other, url, {"preset": "keep_quiet"}, token=csrf_token(other, "/admin/"))
    assert resp.status_code == 201
    assert messages(app, student.session_id)[0].author_id != admin.user_id


def test_a_session_not_in_progress_gets_409_and_an_unknown_one_404(app, admin, student):
    from proctor import exam_service

    error(post(admin, "/api/admin/sessions/987654/messages", {"preset": "keep_quiet"}), 404)
    with app.app_context():
        exam_service.finish_session(student.session_id, "COMPLETED", "submitted by the student")
    error(post(admin, f"/api/admin/sessions/{student.session_id}/messages", {"preset": "keep_quiet"}), 409)
    assert messages(app, student.session_id) == [] and audits(app, "live.message") == []


def test_acknowledge_own_message_once_and_nobody_else_s(app, admin, student):
    msg_id = post(admin, f"/api/admin/sessions/{student.session_id}/messages", {"preset": "look_at_screen"}).get_json()["message_id"]
    intruder = Student(app, "intruder@example.edu", name="Intruder")
    ack = f"/api/exam/sessions/{student.session_id}/messages/{msg_id}/ack"
    error(spost(intruder, ack), 404)                                                   # another student's session
    error(spost(intruder, f"/api/exam/sessions/{intruder.session_id}/messages/{msg_id}/ack"), 404)  # not in theirs
    error(intruder.client.get(f"/api/exam/sessions/{student.session_id}/messages"), 404)
    error(post(admin, ack), 403)                                                       # admins do not acknowledge
    assert messages(app, student.session_id)[0].acknowledged_at is None

    first = spost(student, ack)
    assert first.status_code == 200, first.get_json()
    stored = messages(app, student.session_id)[0].acknowledged_at
    assert stored is not None and first.get_json()["acknowledged_at"].startswith(stored.isoformat()[:19])
    again = spost(student, ack)
    assert again.status_code == 200 and again.get_json()["acknowledged_at"] == first.get_json()["acknowledged_at"]
    assert messages(app, student.session_id)[0].acknowledged_at == stored               # the first time is kept
    assert student.client.get(f"/api/exam/sessions/{student.session_id}/messages").get_json()["messages"] == []
    error(spost(student, f"/api/exam/sessions/{student.session_id}/messages/{msg_id + 999}/ack"), 404)


# --- the raised hand -------------------------------------------------------------------------------

def test_a_raised_hand_is_stored_answered_by_a_message_or_dismissed(app, admin, student):
    url = f"/api/exam/sessions/{student.session_id}/hand"
    resp = spost(student, url, {"reason": "technical", "text": "My camera froze"})
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["body"] == "Technical problem: My camera froze"
    hand = messages(app, student.session_id)[0]
    assert (hand.sender, hand.author_id, hand.preset, hand.acknowledged_at) == ("student", student.id, "technical", None)
    # the student cannot acknowledge their own hand as if it were the proctor's message
    error(spost(student, f"/api/exam/sessions/{student.session_id}/messages/{hand.id}/ack"), 404)
    state = admin.get(f"/api/admin/sessions/{student.session_id}/messages").get_json()
    assert [h["message_id"] for h in state["open_hands"]] == [hand.id]
    # answered by the proctor's message
    post(admin, f"/api/admin/sessions/{student.session_id}/messages", {"text": "Reload the page, please."})
    assert messages(app, student.session_id)[0].acknowledged_at is not None
    assert audits(app, "live.message")[0][2]["answered_hands"] == [hand.id]
    # another one dismissed: audited once; dismissing again changes nothing
    second = spost(student, url, {"reason": "question"}).get_json()["message_id"]
    assert post(admin, f"/api/admin/sessions/{student.session_id}/hand/dismiss").get_json()["dismissed"] == [second]
    assert post(admin, f"/api/admin/sessions/{student.session_id}/hand/dismiss").get_json()["dismissed"] == []
    assert [d["message_ids"] for _, _, d in audits(app, "live.hand_dismissed")] == [[second]]
    error(spost(student, f"/api/admin/sessions/{student.session_id}/hand/dismiss"), 403)


@pytest.mark.parametrize("body", [{}, {"text": ""}, {"text": "x" * 301}, {"text": "a\tb"}, {"reason": "bored"},
                                  {"reason": 1}, {"text": ["x"]}, {"text": "hi", "to": "everyone"}])
def test_bad_hands_are_refused(app, student, body):
    error(spost(student, f"/api/exam/sessions/{student.session_id}/hand", body), 400)
    assert messages(app, student.session_id) == []


def test_hands_are_rate_limited_per_account_and_only_in_ones_own_running_session(app, student):
    app.config["PROCTOR_HAND_RAISE_LIMIT"] = "2 per minute"
    url = f"/api/exam/sessions/{student.session_id}/hand"
    assert [spost(student, url, {"text": f"help {i}"}).status_code for i in range(2)] == [201, 201]
    error(spost(student, url, {"text": "help 3"}), 429)
    assert len(messages(app, student.session_id)) == 2
    other = Student(app, "other-hand@example.edu", name="Other")
    error(spost(other, url, {"text": "not mine"}), 404)
    from proctor import exam_service

    with app.app_context():
        exam_service.finish_session(other.session_id, "COMPLETED", "submitted by the student")
    error(spost(other, f"/api/exam/sessions/{other.session_id}/hand", {"text": "too late"}), 409)
    assert len(messages(app, student.session_id)) == 2 and messages(app, other.session_id) == []


# --- extra time ------------------------------------------------------------------------------------

def test_extra_time_moves_the_deadline_exactly_and_the_server_enforces_the_new_one(app, admin, student):
    from proctor import exam_service
    from proctor.extensions import db
    from proctor.models import ExamSession

    before = session_row(app, student.session_id)
    resp = post(admin, f"/api/admin/sessions/{student.session_id}/extra-time", {"minutes": 10})
    assert resp.status_code == 200, resp.get_json()
    post(admin, f"/api/admin/sessions/{student.session_id}/extra-time", {"minutes": 5})
    after = session_row(app, student.session_id)
    assert after.deadline - before.deadline == timedelta(minutes=15)
    assert (after.extra_minutes, after.started_at) == (15, before.started_at)
    logged = audits(app, "live.extra_time")
    assert [(a, t, d["minutes"], d["extra_minutes"]) for a, t, d in logged] == [
        (admin.user_id, student.session_id, 10, 10), (admin.user_id, student.session_id, 5, 15)]
    assert logged[-1][2]["deadline"] == after.deadline.replace(microsecond=0).isoformat() + "Z"
    remaining = student.client.get(f"/api/exam/sessions/{student.session_id}").get_json()["remaining_s"]
    assert 30 * 60 + 15 * 60 - 30 < remaining <= 45 * 60  # a 30-minute exam and 15 extra minutes

    # An answer after the old deadline but before the new one is accepted; after the new one refused.
    with app.app_context():
        sess = db.session.get(ExamSession, student.session_id)
        qid = exam_service.question_order(sess)[0]
        saved = exam_service.save_answer(sess, qid, 1, now=before.deadline + timedelta(minutes=1))
        assert saved.selected_index == 1
        assert sess.status == "IN_PROGRESS"
        with pytest.raises(exam_service.ExamError) as late:
            exam_service.save_answer(sess, qid, 0, now=after.deadline + timedelta(seconds=1))
        assert late.value.status == 409
    assert session_row(app, student.session_id).status == "COMPLETED"


@pytest.mark.parametrize("body", [{}, {"minutes": 0}, {"minutes": 121}, {"minutes": -5}, {"minutes": "5"},
                                  {"minutes": 5.5}, {"minutes": True}, {"minutes": None}])
def test_bad_minutes_are_refused(app, admin, student, body):
    before = session_row(app, student.session_id)
    error(post(admin, f"/api/admin/sessions/{student.session_id}/extra-time", body), 400)
    after = session_row(app, student.session_id)
    assert (after.deadline, after.extra_minutes) == (before.deadline, 0) and audits(app, "live.extra_time") == []


def test_extra_time_is_refused_to_students_and_for_sessions_out_of_time(app, admin, student):
    from proctor.models import utcnow

    url = f"/api/admin/sessions/{student.session_id}/extra-time"
    error(spost(student, url, {"minutes": 30}), 403)
    error(post(admin, "/api/admin/sessions/987654/extra-time", {"minutes": 5}), 404)
    past = utcnow() - timedelta(seconds=5)
    set_session(app, student.session_id, deadline=past)            # out of time, not yet swept
    error(post(admin, url, {"minutes": 5}), 409)
    assert abs(session_row(app, student.session_id).deadline - past) < timedelta(seconds=1)  # unchanged
    set_session(app, student.session_id, deadline=utcnow() + timedelta(minutes=5), status="COMPLETED")
    error(post(admin, url, {"minutes": 5}), 409)
    assert session_row(app, student.session_id).extra_minutes == 0 and audits(app, "live.extra_time") == []


def test_the_session_page_lists_messages_and_extra_time(app, admin, student):
    post(admin, f"/api/admin/sessions/{student.session_id}/messages", {"preset": "keep_quiet"})
    msg_id = messages(app, student.session_id)[0].id
    spost(student, f"/api/exam/sessions/{student.session_id}/messages/{msg_id}/ack")
    spost(student, f"/api/exam/sessions/{student.session_id}/hand", {"text": "May I have water?"})
    post(admin, f"/api/admin/sessions/{student.session_id}/extra-time", {"minutes": 7})
    page = admin.get(f"/admin/sessions/{student.session_id}").get_data(as_text=True)
    assert 'id="session-messages"' in page
    assert page.index("Please keep quiet.") < page.index("May I have water?")
    assert "Test Admin" in page and "Ana Lima" in page and "+7 min" in page
    assert page.count('class="message-ack"') == 1
