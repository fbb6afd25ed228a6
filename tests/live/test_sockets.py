"""Socket.IO namespaces /admin and /student with the real Socket.IO test client and the real runtime."""
from __future__ import annotations

import time

import pytest

from tests.conftest import login, make_user
from tests.live.test_frame_api import live_env, live_inference, stop_live_runtime, EMPTY_ROOM, FACE_PHOTO, Student, data_url, jpeg_bytes, photo, runtime_of

WAIT_S = 20.0  # a bound on waiting for a push, not a performance figure


def socket_client(app, flask_client, namespace):
    """A Socket.IO test client sharing flask_client's cookies, from the same browser and address.

    Flask-Login's strong session protection ties the session to the user agent and address, as a
    real browser's handshake would carry them; the Socket.IO test client sends neither by itself.
    """
    from proctor.extensions import socketio

    base = flask_client.environ_base
    headers = {"User-Agent": base["HTTP_USER_AGENT"], "X-Forwarded-For": base["REMOTE_ADDR"]}
    return socketio.test_client(app, namespace=namespace, flask_test_client=flask_client, headers=headers)


def wait_for(client, namespace, event, predicate=lambda args: True, timeout=WAIT_S, collected=None):
    """Received packets until one `event` whose first argument satisfies predicate; fails after timeout."""
    collected = [] if collected is None else collected
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for packet in client.get_received(namespace):
            collected.append(packet)
            if packet["name"] == event and predicate(packet["args"][0] if packet["args"] else None):
                return packet["args"][0] if packet["args"] else None, collected
        time.sleep(0.05)
    names = sorted({p["name"] for p in collected})
    pytest.fail(f"no {event} on {namespace} within {timeout:.0f} s (got: {names})")


@pytest.fixture
def admin_socket(app, admin_client):
    client = socket_client(app, admin_client, "/admin")
    yield client
    if client.is_connected("/admin"):
        client.disconnect("/admin")


def test_admin_namespace_admits_only_admins(app, admin_client, student_client):
    admin = socket_client(app, admin_client, "/admin")
    assert admin.is_connected("/admin")
    snapshot = [p for p in admin.get_received("/admin") if p["name"] == "active_students"]
    assert len(snapshot) == 1 and isinstance(snapshot[0]["args"][0]["students"], list)
    admin.disconnect("/admin")

    student = socket_client(app, student_client, "/admin")
    assert not student.is_connected("/admin")
    anonymous = socket_client(app, app.test_client(), "/admin")
    assert not anonymous.is_connected("/admin")


def test_student_namespace_admits_only_students(app, admin_client, student_client):
    student = socket_client(app, student_client, "/student")
    assert student.is_connected("/student")
    student.disconnect("/student")
    assert not socket_client(app, admin_client, "/student").is_connected("/student")
    assert not socket_client(app, app.test_client(), "/student").is_connected("/student")


def test_a_session_cookie_from_another_browser_is_refused(app, admin_client):
    from proctor.extensions import socketio

    stolen = socketio.test_client(app, namespace="/admin", flask_test_client=admin_client,
                                  headers={"User-Agent": "curl/8.0", "X-Forwarded-For": "127.0.0.1"})
    assert not stolen.is_connected("/admin")


def test_a_logged_out_session_cookie_is_refused(app):
    make_user(app, "gone-admin@example.edu", role="ADMIN", name="Gone Admin")
    client = app.test_client()
    assert login(client, "gone-admin@example.edu").status_code == 302
    from tests.conftest import csrf_token

    token = csrf_token(client, "/admin/")
    assert client.post("/logout", data={"csrf_token": token}).status_code in (302, 303)
    assert not socket_client(app, client, "/admin").is_connected("/admin")


def test_runtime_events_are_pushed_to_admins_and_to_the_right_student_only(app, admin_socket):
    alice = Student(app, "alice@example.edu", name="Alice Example")
    bob = Student(app, "bob@example.edu", name="Bob Example")
    alice_socket = socket_client(app, alice.client, "/student")
    bob_socket = socket_client(app, bob.client, "/student")
    assert alice_socket.is_connected("/student") and bob_socket.is_connected("/student")
    events = runtime_of(app).events

    events.publish("student_violation", {"student_id": alice.id, "session_id": alice.session_id, "violation_id": 77,
                                         "type": "NO_FACE", "severity": "high", "count": 1, "message": "no face",
                                         "t": 1_700_000_000.5, "details": {"seconds": 3.2}})
    violation, _ = wait_for(admin_socket, "/admin", "student_violation", lambda a: a["violation_id"] == 77)
    assert violation["name"] == "Alice Example"  # looked up on the server
    assert violation["student_id"] == alice.id and violation["session_id"] == alice.session_id
    assert violation["type"] == "NO_FACE" and violation["details"] == {"seconds": 3.2}
    assert violation["evidence_url"] == "/admin/evidence/77/snapshot"
    assert violation["clip_url"] == "/admin/evidence/77/clip"
    assert violation["time"] == "2023-11-14T22:13:20.500000Z"

    events.publish("student_warning", {"student_id": alice.id, "session_id": alice.session_id, "type": "NO_FACE",
                                       "message": "Stay in front of the camera", "count": 1})
    warning, _ = wait_for(alice_socket, "/student", "warning")
    assert warning == {"type": "NO_FACE", "message": "Stay in front of the camera", "count": 1}

    events.publish("exam_terminated", {"student_id": alice.id, "session_id": alice.session_id, "reason": "phone",
                                       "by_admin_id": None, "auto": True})
    terminated, _ = wait_for(alice_socket, "/student", "terminated")
    assert terminated == {"reason": "phone", "result_url": f"/student/sessions/{alice.session_id}/result"}
    admin_view, _ = wait_for(admin_socket, "/admin", "exam_terminated")
    assert admin_view["student_id"] == alice.id

    events.publish("warnings_cleared", {"student_id": alice.id, "session_id": alice.session_id, "by_admin_id": 1})
    wait_for(admin_socket, "/admin", "warnings_cleared")
    # Bob's socket got nothing meant for Alice; students never see admin events.
    bob_names = {p["name"] for p in bob_socket.get_received("/student")}
    assert bob_names == set()
    alice_names = {p["name"] for p in alice_socket.get_received("/student")}
    assert not alice_names & {"student_violation", "student_status", "exam_terminated", "warnings_cleared"}
    alice_socket.disconnect("/student")
    bob_socket.disconnect("/student")


def test_client_events_change_nothing(app, admin_socket):
    student = Student(app, "sneaky@example.edu", name="Sneaky")
    s_socket = socket_client(app, student.client, "/student")
    s_socket.emit("warning", {"type": "NO_FACE", "count": 0}, namespace="/student")
    s_socket.emit("clear_warnings", {"student_id": student.id}, namespace="/student")
    admin_socket.emit("terminate", {"session_id": student.session_id, "reason": "x"}, namespace="/admin")
    assert student.post_event({"type": "TAB_SWITCH"}).status_code == 200
    rt = runtime_of(app)
    assert rt.status(student.id)["warnings"] >= 1
    from proctor.extensions import db
    from proctor.models import ExamSession

    with app.app_context():
        assert db.session.get(ExamSession, student.session_id).status == "IN_PROGRESS"
    s_socket.disconnect("/student")


@pytest.mark.one_database  # real workers to the admin socket; the socket tests above run on every database
def test_admin_sees_status_and_a_no_face_violation_from_real_frames(live_inference, app, admin_socket):
    """A student's real frames (a face, then the empty room) through the real runtime to the admin socket."""
    student = Student(app, "frames@example.edu", name="Frame Sender")
    face = data_url(jpeg_bytes(photo(FACE_PHOTO)))
    empty = data_url(jpeg_bytes(photo(EMPTY_ROOM)))
    collected: list = []
    deadline = time.monotonic() + 90
    got_status = got_violation = None
    sent = 0
    while time.monotonic() < deadline and not (got_status and got_violation):
        image = face if sent < 6 else empty
        resp = student.post_frame(image)
        assert resp.status_code == 202, resp.data
        sent += 1
        time.sleep(0.25)
        for packet in admin_socket.get_received("/admin"):
            collected.append(packet)
            arg = packet["args"][0] if packet["args"] else {}
            if packet["name"] == "student_status" and arg.get("student_id") == student.id:
                got_status = arg
            if packet["name"] == "student_violation" and arg.get("type") == "NO_FACE" \
                    and arg.get("student_id") == student.id:
                got_violation = arg
    names = sorted({p["name"] for p in collected})
    assert got_status is not None, f"no student_status (got {names})"
    assert got_violation is not None, f"no NO_FACE violation after {sent} frames (got {names})"
    assert got_violation["name"] == "Frame Sender" and got_violation["session_id"] == student.session_id
    print(f"\nNO_FACE pushed after {sent} frames posted")
