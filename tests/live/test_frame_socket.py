"""Camera frames over the student's Socket.IO connection (/student "frame"): the real Socket.IO test
client, real photos, the real runtime; every refusal answers in the ack with the HTTP route's status."""
from __future__ import annotations

import time

import cv2
import pytest

from proctor.api.frame_socket import frame_socket
from tests.live.test_frame_api import (FACE_PHOTO, Student, jpeg_bytes, live_env, live_inference, photo, png_bytes,  # noqa: F401
                                       runtime_of, stop_live_runtime)
from tests.live.test_sockets import socket_client

NS = "/student"


def frame_jpeg(name=FACE_PHOTO, size=(640, 480), quality=70) -> bytes:
    return jpeg_bytes(cv2.resize(photo(name), size, interpolation=cv2.INTER_AREA), quality)


@pytest.fixture
def student(app):
    return Student(app, "socket-student@example.edu")


@pytest.fixture
def sock(app, student):
    client = socket_client(app, student.client, NS)
    assert client.is_connected(NS)
    yield client
    if client.is_connected(NS):
        client.disconnect(NS)


def send(client, data):
    return client.emit("frame", data, namespace=NS, callback=True)


def test_a_frame_over_the_socket_reaches_the_runtime_as_the_pages_own_bytes(app, student, sock):
    raw = frame_jpeg()
    ack = send(sock, {"image": raw, "ts": int(time.time() * 1000)})
    assert ack == {"seq": 1, "replaced_older": False, "width": 640, "height": 480}
    latest = runtime_of(app).slots.latest(student.id)
    assert latest.session_id == student.session_id and latest.jpeg == raw and latest.image is None
    assert send(sock, {"image": raw, "ts": 1})["seq"] == 2
    # A larger frame is decoded and fitted (as over HTTP); a PNG too.
    big = send(sock, {"image": frame_jpeg(size=(1280, 960)), "ts": 2})
    assert (big["width"], big["height"]) == (640, 480) and runtime_of(app).slots.latest(student.id).image is not None
    assert send(sock, {"image": png_bytes(cv2.resize(photo(FACE_PHOTO), (320, 240))), "ts": 3})["width"] == 320


@pytest.mark.parametrize("data, status, words", [
    ("not an object", 400, "is an object"),
    ({"ts": 1}, 400, "'image' must be the JPEG's bytes"),
    ({"image": "data:image/jpeg;base64,AAAA", "ts": 1}, 400, "'image' must be the JPEG's bytes"),
    ({"image": b"\xff\xd8 not really a jpeg", "ts": 1}, 400, "JPEG"),
    ({"image": b"GIF89a" + b"\0" * 64, "ts": 1}, 400, "not a JPEG or PNG"),
    ({"image": None, "ts": 1}, 400, "'image'"),
    ({"image": b"\xff\xd8", "ts": None}, 400, "'ts'"),
    ({"image": b"\xff\xd8", "ts": "soon"}, 400, "'ts'"),
    ({"image": b"\xff\xd8", "ts": -5}, 400, "'ts'"),
])
def test_bad_frames_are_refused_in_the_ack_and_nothing_is_stored(app, student, sock, data, status, words):
    ack = send(sock, data)
    assert ack["status"] == status and words in ack["error"], ack
    assert runtime_of(app).slots.latest(student.id) is None
    assert sock.is_connected(NS)  # a bad frame does not cost the student the socket


def test_an_oversized_frame_is_refused_413(app, student, sock):
    app.config["PROCTOR_FRAME_MAX_BYTES"] = 64 * 1024
    ack = send(sock, {"image": b"\xff\xd8" + b"\0" * (64 * 1024), "ts": 1})
    assert ack["status"] == 413


def test_no_exam_in_progress_is_409_and_a_finished_exam_stops_frames_within_the_recheck(app, student, sock):
    from proctor import exam_service
    from proctor.api import frame_socket as fs_module

    assert "seq" in send(sock, {"image": frame_jpeg(), "ts": 1})
    with app.app_context():
        exam_service.finish_session(student.session_id, "COMPLETED", "submitted")
    fs_module.SESSION_RECHECK_S, saved = 0.0, fs_module.SESSION_RECHECK_S
    try:
        ack = send(sock, {"image": frame_jpeg(), "ts": 2})
    finally:
        fs_module.SESSION_RECHECK_S = saved
    assert ack["status"] == 409 and "no exam in progress" in ack["error"]


def test_the_frame_rate_limit_holds_on_the_socket(app, student):
    app.config["PROCTOR_FRAME_RATE_LIMIT"] = "3 per minute"
    frame_socket(app).limits = [(3, 60.0)]
    client = socket_client(app, student.client, NS)
    acks = [send(client, {"image": frame_jpeg(), "ts": i}) for i in range(5)]
    assert ["seq" in a for a in acks] == [True, True, True, False, False]
    assert acks[-1]["status"] == 429


def test_only_a_students_own_socket_sends_frames(app, student, sock, admin_client):
    from proctor.sockets import bridge

    fs = frame_socket(app)
    owners = bridge(app)._owners
    assert student.id in owners.values()
    # An admin cannot open /student at all; a socket the server did not record for a student is refused.
    assert not socket_client(app, admin_client, NS).is_connected(NS)
    assert fs.on_frame("no-such-sid", {"image": frame_jpeg(), "ts": 1})["status"] == 401
    # Signing out closes the student's sockets; the socket's record goes with it.
    student.client.post("/logout", data={"csrf_token": student.token})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and student.id in owners.values():
        time.sleep(0.05)
    assert student.id not in owners.values()
