"""Issue 16 over the real Socket.IO test client: the proctor's message and extra time reach the student's
own room only; raised hands and acknowledgements reach the admins."""
from __future__ import annotations

from tests.conftest import csrf_token
from tests.live.test_frame_api import live_env, stop_live_runtime, Student  # noqa: F401  (fixtures)
from tests.live.test_sockets import socket_client, wait_for


def test_messages_and_extra_time_reach_only_their_student_and_admins_hear_back(app, admin_client):
    ana = Student(app, "ana-socket@example.edu", name="Ana Lima")
    ben = Student(app, "ben-socket@example.edu", name="Ben Other")
    admin_token = csrf_token(admin_client, "/admin/")
    admin = socket_client(app, admin_client, "/admin")
    ana_sock = socket_client(app, ana.client, "/student")
    ben_sock = socket_client(app, ben.client, "/student")
    try:
        assert admin.is_connected("/admin") and ana_sock.is_connected("/student") and ben_sock.is_connected("/student")

        def admin_post(url, body):
            resp = admin_client.post(url, json=body, headers={"X-CSRFToken": admin_token})
            assert resp.status_code in (200, 201), resp.get_json()
            return resp.get_json()

        sent = admin_post(f"/api/admin/sessions/{ana.session_id}/messages", {"preset": "look_at_screen"})
        msg, _ = wait_for(ana_sock, "/student", "proctor_message")
        assert msg == {"message_id": sent["message_id"], "session_id": ana.session_id,
                       "body": "Please look at the screen.", "preset": "look_at_screen", "created_at": sent["created_at"]}
        echo, _ = wait_for(admin, "/admin", "message_sent", lambda p: p["message_id"] == sent["message_id"])
        assert echo["student_id"] == ana.id and echo["author"] == "Test Admin"

        granted = admin_post(f"/api/admin/sessions/{ana.session_id}/extra-time", {"minutes": 10})
        ext, _ = wait_for(ana_sock, "/student", "time_extended")
        assert (ext["session_id"], ext["minutes"], ext["extra_minutes"], ext["deadline"]) == (
            ana.session_id, 10, 10, granted["deadline"])
        assert abs(ext["remaining_s"] - granted["remaining_s"]) < 5 and ext["remaining_s"] > 39 * 60
        card, _ = wait_for(admin, "/admin", "extra_time_granted")
        assert (card["student_id"], card["extra_minutes"]) == (ana.id, 10)

        ack = ana.client.post(f"/api/exam/sessions/{ana.session_id}/messages/{sent['message_id']}/ack",
                              headers={"X-CSRFToken": ana.token})
        assert ack.status_code == 200
        read, _ = wait_for(admin, "/admin", "message_acknowledged")
        assert (read["message_id"], read["student_id"], read["name"], read["acknowledged_at"]) == (
            sent["message_id"], ana.id, "Ana Lima", ack.get_json()["acknowledged_at"])

        hand = ben.client.post(f"/api/exam/sessions/{ben.session_id}/hand", json={"reason": "question", "text": "Is Q2 right?"},
                               headers={"X-CSRFToken": ben.token})
        assert hand.status_code == 201
        raised, _ = wait_for(admin, "/admin", "hand_raised")
        assert (raised["student_id"], raised["name"], raised["body"], raised["message_id"]) == (
            ben.id, "Ben Other", "Question about the exam: Is Q2 right?", hand.get_json()["message_id"])
        admin_post(f"/api/admin/sessions/{ben.session_id}/hand/dismiss", {})
        cleared, _ = wait_for(admin, "/admin", "hand_cleared")
        assert (cleared["student_id"], cleared["message_ids"], cleared["answered"]) == (
            ben.id, [hand.get_json()["message_id"]], False)

        # Ben's room heard none of Ana's: the bridge emits in order from one queue, and the admins already got
        # the last event, so every push to the students was emitted before it.
        ben_names = [p["name"] for p in ben_sock.get_received("/student")]
        assert "proctor_message" not in ben_names and "time_extended" not in ben_names, ben_names
        # and Ana's room none of the admins' events
        assert not {"hand_raised", "message_acknowledged"} & {p["name"] for p in ana_sock.get_received("/student")}
    finally:
        for client, ns in ((admin, "/admin"), (ana_sock, "/student"), (ben_sock, "/student")):
            if client.is_connected(ns):
                client.disconnect(ns)
