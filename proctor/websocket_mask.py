"""A fast WebSocket unmasking for eventlet's server.

RFC 6455 makes every browser-to-server frame masked (XOR with a 4-byte key). eventlet 0.40's
`RFC6455WebSocket._apply_mask` undoes it one byte at a time in a Python generator: about 1 ms per
KB. A camera frame sent over the student's Socket.IO connection is 25-40 KB of JPEG, so at 2
frames/s per student that single function took 73 % of the web process's CPU in the HTTP load
bench (py-spy, 8 students). `apply_mask` does the same XOR on whole integers (CPython's big-int
XOR runs in C): the same bytes out, a few microseconds per frame.
"""
from __future__ import annotations


def apply_mask(data, mask, length: int | None = None, offset: int = 0) -> bytes:
    """`data[:length]` XOR the 4-byte `mask` repeated, starting at byte `offset` of the mask stream:
    the signature and result of eventlet's RFC6455WebSocket._apply_mask."""
    if length is None:
        length = len(data)
    if length <= 0:
        return b""
    key = bytes(mask[(offset + i) % 4] for i in range(4))
    stream = key * (length // 4 + 1)
    value = int.from_bytes(bytes(data[:length]), "little") ^ int.from_bytes(stream[:length], "little")
    return value.to_bytes(length, "little")


def install() -> bool:
    """Put apply_mask in place of eventlet's; False when eventlet (or that method) is not there."""
    try:
        from eventlet import websocket
    except ImportError:
        return False
    cls = getattr(websocket, "RFC6455WebSocket", None)
    if cls is None or not hasattr(cls, "_apply_mask"):
        return False
    cls._apply_mask = staticmethod(apply_mask)
    return True
