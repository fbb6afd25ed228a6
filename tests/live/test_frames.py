"""Latest-frame-wins slots: replace + dropped counter, sequence numbers, server time, validation."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from proctor.live.frames import FrameSlots
from tests.vision.conftest import TESTDATA


@pytest.fixture(scope="module")
def photo():
    import cv2

    img = cv2.imread(str(TESTDATA / "a_1_webcam_woman_T1.jpg"), cv2.IMREAD_COLOR)
    assert img is not None, f"test photo missing under {TESTDATA}"
    return img


def test_new_frame_replaces_waiting_one_and_counts_a_drop(photo):
    slots = FrameSlots(clock=lambda: 1000.0)
    r1 = slots.put(7, 70, photo, client_ts_ms=1)
    r2 = slots.put(7, 70, np.ascontiguousarray(photo[:, ::-1]), client_ts_ms=2)
    assert (r1.seq, r1.replaced_older) == (1, False)
    assert (r2.seq, r2.replaced_older) == (2, True)
    assert slots.stats(7).dropped == 1 and slots.stats(7).received == 2
    frame = slots.take(7)
    assert frame.seq == 2 and frame.client_ts_ms == 2 and frame.server_ts == 1000.0
    assert np.array_equal(frame.image, photo[:, ::-1])  # the newest frame won
    assert slots.take(7) is None  # no backlog: the older frame is gone
    r3 = slots.put(7, 70, photo)
    assert (r3.seq, r3.replaced_older) == (3, False)  # slot was empty: nothing dropped
    assert slots.stats(7).dropped == 1 and slots.stats(7).taken == 1


def test_slots_are_per_student_and_fair(photo):
    t = iter([1.0, 2.0, 3.0])
    slots = FrameSlots(clock=lambda: next(t))
    slots.put(2, 20, photo)
    slots.put(1, 10, photo)
    slots.put(2, 20, photo)  # replaces student 2's waiting frame: it is now the newest arrival
    assert set(slots.waiting_students()) == {1, 2}
    assert slots.waiting_students()[0] == 1  # student 1's frame has waited longest now
    assert slots.stats(1).dropped == 0 and slots.stats(2).dropped == 1
    assert slots.totals() == {"received": 3, "dropped": 1, "taken": 0, "waiting": 2}


def test_server_ts_given_by_caller_is_kept_and_latest_survives_take(photo):
    slots = FrameSlots()
    slots.put(3, 30, photo, server_ts=12.5)
    assert slots.take(3).server_ts == 12.5
    assert slots.latest(3).server_ts == 12.5  # the newest frame is still known for live views


def test_jpeg_bytes_are_accepted_and_bad_input_is_refused(photo):
    import cv2

    slots = FrameSlots()
    ok, buf = cv2.imencode(".jpg", photo)
    assert ok
    slots.put(4, 40, buf.tobytes())
    assert slots.take(4).jpeg == buf.tobytes()
    with pytest.raises(ValueError, match="not a JPEG"):
        slots.put(4, 40, b"GIF89a....")
    with pytest.raises(ValueError, match="BGR uint8"):
        slots.put(4, 40, photo.astype(np.float32))
    with pytest.raises(ValueError, match="BGR uint8"):
        slots.put(4, 40, cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    with pytest.raises(ValueError, match="too small"):
        slots.put(4, 40, photo[:8, :8])
    with pytest.raises(TypeError):
        slots.put(4, 40, "a string")
    for bad in (0, -1, "5", True, 2.0):
        with pytest.raises(ValueError, match="student_id"):
            slots.put(bad, 40, photo)
    with pytest.raises(ValueError, match="session_id"):
        slots.put(4, None, photo)
    assert slots.stats(4).received == 1  # refused frames are not counted


def test_concurrent_writers_never_lose_count(photo):
    slots = FrameSlots()
    small = photo[:64, :64].copy()

    def writer():
        for _ in range(200):
            slots.put(9, 90, small)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    st = slots.stats(9)
    assert st.received == 800 and st.last_seq == 800
    assert st.dropped == 799  # nobody took any: every frame but the last was replaced
    assert slots.take(9).seq == 800


def test_under_overload_every_student_is_served_in_turn(photo):
    """Round robin: the student served longest ago goes first, however often their frame was replaced.
    Student 1's page posts three times as often as the others; all are served equally."""
    mono = iter(float(i) for i in range(10_000))
    slots = FrameSlots(clock=lambda: 0.0, monotonic=lambda: next(mono))
    served = {1: 0, 2: 0, 3: 0}
    for _round in range(30):
        for sid in (1, 1, 1, 2, 3):   # the fast page posts 3 frames per round
            slots.put(sid, sid * 10, photo)
        first = slots.waiting_students()[0]  # one frame analysed per round: the server is 5x overloaded
        slots.take(first)
        served[first] += 1
    assert served == {1: 10, 2: 10, 3: 10}
