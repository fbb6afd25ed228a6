"""The parent's ends of a child process's pipes: writes and reads that never block and never spin.

A frame job is about 900 KB and a pipe holds 64 KiB, so a job cannot be written in one go to a
worker that is slow, stopped (SIGSTOP) or dead. multiprocessing's Connection.send would block
there (and under eventlet its green os.write retries EPIPE forever, holding the pool's lock), and
Connection.recv would block on a half-written result. Here a message is pickled and framed the way
Connection does it (4-byte big-endian length, or -1 and an 8-byte length), queued, and written with
non-blocking writes as far as the pipe takes it; the rest goes on the next flush(). The owner
calls flush() every pass and treats `stalled_s()` above its deadline as a hung child. A dead peer
raises PeerGone at once. The child keeps its ordinary blocking Connection ends.

The writes and reads go through the `posix` module's own functions: eventlet's monkey patching
replaces os.write/os.read with green versions (the spinning ones), never posix.write/posix.read.
"""
from __future__ import annotations

import errno
import os
import struct
import time
from multiprocessing.reduction import ForkingPickler

try:  # the C functions, untouched by eventlet.monkey_patch
    from posix import read as _read
    from posix import write as _write
except ImportError:  # pragma: no cover - not a POSIX system
    _read, _write = os.read, os.write

_AGAIN = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)
READ_CHUNK = 256 * 1024


class PeerGone(OSError):
    """The child's end of the pipe is closed: it exited or was killed."""


def frame(msg) -> bytes:
    """msg pickled and framed as multiprocessing.Connection.send_bytes frames it."""
    payload = ForkingPickler.dumps(msg)
    n = len(payload)
    header = struct.pack("!i", n) if n <= 0x7FFFFFFF else struct.pack("!i", -1) + struct.pack("!Q", n)
    return header + bytes(payload)


class PipeWriter:
    def __init__(self, conn):
        self._conn = conn          # kept so that close() closes the fd once
        self._fd = conn.fileno()
        os.set_blocking(self._fd, False)
        self._out = bytearray()
        self._waiting_since: float | None = None  # the last time a write made progress, while bytes wait

    def send(self, msg) -> None:
        """Queue msg and write as much as the pipe takes now. PeerGone when the child is gone."""
        self._out += frame(msg)
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()
        self.flush()

    def flush(self) -> int:
        """Write what waits, without blocking; returns the bytes still waiting. PeerGone: child gone."""
        while self._out:
            try:
                n = _write(self._fd, self._out[:READ_CHUNK])
            except OSError as exc:
                if exc.errno in _AGAIN:
                    break
                raise PeerGone(exc.errno, f"pipe to the child broke: {exc.strerror}") from None
            del self._out[:n]
            self._waiting_since = time.monotonic()
        if not self._out:
            self._waiting_since = None
        return len(self._out)

    @property
    def pending(self) -> int:
        return len(self._out)

    def stalled_s(self, now: float | None = None) -> float:
        """Seconds since the last write progress while bytes wait (0 when nothing waits)."""
        if self._waiting_since is None:
            return 0.0
        return max(0.0, (now if now is not None else time.monotonic()) - self._waiting_since)

    def close(self) -> None:
        self._out.clear()
        self._waiting_since = None
        self._conn.close()


class PipeReader:
    def __init__(self, conn):
        self._conn = conn
        self._fd = conn.fileno()
        os.set_blocking(self._fd, False)
        self._in = bytearray()
        self.eof = False

    def messages(self, limit: int = 50) -> list:
        """Complete messages received so far (at most `limit`); a partial one waits for the next call."""
        out: list = []
        while not self.eof and len(self._in) < 64 * 1024 * 1024:
            try:
                chunk = _read(self._fd, READ_CHUNK)
            except OSError as exc:
                if exc.errno in _AGAIN:
                    break
                self.eof = True
                break
            if not chunk:
                self.eof = True
                break
            self._in += chunk
            if len(chunk) < READ_CHUNK:
                break
        while len(out) < limit:
            msg = self._take_one()
            if msg is None:
                break
            out.append(msg)
        return out

    def _take_one(self):
        if len(self._in) < 4:
            return None
        (n,) = struct.unpack("!i", self._in[:4])
        start = 4
        if n == -1:
            if len(self._in) < 12:
                return None
            (n,) = struct.unpack("!Q", self._in[4:12])
            start = 12
        if len(self._in) < start + n:
            return None
        payload = bytes(self._in[start:start + n])
        del self._in[:start + n]
        return ForkingPickler.loads(payload)

    def close(self) -> None:
        self._in.clear()
        self._conn.close()
