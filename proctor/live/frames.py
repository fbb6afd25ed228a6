"""Latest-frame-wins slots: one waiting frame per student, never a backlog.

A new frame replaces the one still waiting in the student's slot (the older one is counted as
dropped). Each frame carries the server's time (the frame time the rules use) and a
per-student sequence number. Thread-safe; nothing here blocks or does CPU work on pixels.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class FrameReceipt:
    seq: int
    replaced_older: bool  # True when a frame still waiting in the slot was dropped for this one


@dataclass(frozen=True)
class Frame:
    student_id: int
    session_id: int
    seq: int
    server_ts: float            # seconds (server clock or the caller's frame time); the rules' time
    client_ts_ms: int | None    # what the browser said; informational only, never trusted
    received_mono: float        # time.monotonic() at arrival, for latency figures
    image: np.ndarray | None = field(default=None, repr=False)  # BGR uint8 HxWx3
    jpeg: bytes | None = field(default=None, repr=False)        # or the encoded frame

    @property
    def size(self) -> tuple[int, int] | None:
        if self.image is not None:
            return int(self.image.shape[1]), int(self.image.shape[0])
        return None


@dataclass
class SlotStats:
    received: int = 0
    dropped: int = 0   # replaced while still waiting
    taken: int = 0     # handed to a worker
    last_seq: int = 0

    def as_dict(self) -> dict:
        return {"received": self.received, "dropped": self.dropped, "taken": self.taken, "last_seq": self.last_seq}


def validate_frame(image: np.ndarray | bytes | bytearray | memoryview) -> tuple[np.ndarray | None, bytes | None]:
    """(image, jpeg): exactly one set. Raises ValueError/TypeError with a clear message."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"frame must be a BGR uint8 HxWx3 array, got dtype={image.dtype} shape={image.shape}")
        if image.shape[0] < 16 or image.shape[1] < 16:
            raise ValueError(f"frame is too small: {image.shape[1]}x{image.shape[0]}")
        return image, None
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if len(data) < 4 or not data.startswith(b"\xff\xd8"):
            raise ValueError("frame bytes are not a JPEG image")
        return None, data
    raise TypeError(f"frame must be a numpy BGR array or JPEG bytes, not {type(image).__name__}")


class FrameSlots:
    """One latest-frame slot per student."""

    def __init__(self, clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._mono = monotonic
        self._lock = threading.Lock()
        self._waiting: dict[int, Frame] = {}
        self._latest: dict[int, Frame] = {}
        self._stats: dict[int, SlotStats] = {}
        self._served: dict[int, float] = {}  # student -> when a frame of theirs was last taken (fair dispatch)

    def put(
        self,
        student_id: int,
        session_id: int,
        image,
        client_ts_ms: int | None = None,
        server_ts: float | None = None,
    ) -> FrameReceipt:
        """Store the frame in the student's slot, replacing a waiting one. Returns at once."""
        for name, value in (("student_id", student_id), ("session_id", session_id)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if client_ts_ms is not None and (isinstance(client_ts_ms, bool) or not isinstance(client_ts_ms, (int, float))):
            raise ValueError(f"client_ts_ms must be a number or None, got {client_ts_ms!r}")
        pixels, jpeg = validate_frame(image)
        mono = self._mono()
        ts = self._clock() if server_ts is None else float(server_ts)
        with self._lock:
            stats = self._stats.setdefault(student_id, SlotStats())
            stats.received += 1
            stats.last_seq += 1
            frame = Frame(student_id, session_id, stats.last_seq, ts,
                          int(client_ts_ms) if client_ts_ms is not None else None, mono, pixels, jpeg)
            replaced = student_id in self._waiting
            if replaced:
                stats.dropped += 1
            self._waiting[student_id] = frame
            self._latest[student_id] = frame
            return FrameReceipt(frame.seq, replaced)

    def take(self, student_id: int) -> Frame | None:
        """Remove and return the student's waiting frame (None when the slot is empty)."""
        with self._lock:
            frame = self._waiting.pop(student_id, None)
            if frame is not None:
                self._stats[student_id].taken += 1
                self._served[student_id] = self._mono()
            return frame

    def waiting_students(self) -> list[int]:
        """Students with a frame waiting, the one served longest ago first (round robin).

        Ordered by when each student's last frame was taken, not by when the waiting frame came: a
        frame replaced by a newer one must not send its student to the back of the line, or under
        overload the students whose pages post most often would be the ones never served."""
        with self._lock:
            return sorted(self._waiting, key=lambda sid: (self._served.get(sid, float("-inf")),
                                                          self._waiting[sid].received_mono))

    def latest(self, student_id: int) -> Frame | None:
        """The newest frame received (waiting or already taken)."""
        with self._lock:
            return self._latest.get(student_id)

    def stats(self, student_id: int) -> SlotStats:
        with self._lock:
            s = self._stats.get(student_id)
            return SlotStats(**vars(s)) if s else SlotStats()

    def totals(self) -> dict:
        with self._lock:
            return {
                "received": sum(s.received for s in self._stats.values()),
                "dropped": sum(s.dropped for s in self._stats.values()),
                "taken": sum(s.taken for s in self._stats.values()),
                "waiting": len(self._waiting),
            }

    def forget(self, student_id: int) -> None:
        with self._lock:
            self._waiting.pop(student_id, None)
            self._latest.pop(student_id, None)
            self._stats.pop(student_id, None)
            self._served.pop(student_id, None)
