"""The WebSocket unmasking that replaces eventlet's byte-by-byte one gives the same bytes."""
import os

import pytest

from proctor.websocket_mask import apply_mask, install

eventlet_websocket = pytest.importorskip("eventlet.websocket")


def _reference(data, mask, length=None, offset=0):
    # eventlet 0.40's RFC6455WebSocket._apply_mask, copied here as the reference
    if length is None:
        length = len(data)
    return b"".join(bytes((data[i] ^ mask[(offset + i) % 4],)) for i in range(length))


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 125, 126, 4096, 37_123])
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 7, 65_536])
def test_same_bytes_as_eventlets_own(length, offset):
    data = os.urandom(length + 9)
    mask = tuple(os.urandom(4))
    assert apply_mask(data, mask, length=length, offset=offset) == _reference(data, mask, length, offset)
    assert apply_mask(data[:length], list(mask)) == _reference(data[:length], list(mask))


def test_a_real_jpeg_round_trips():
    from tests.live import fit, load_photo
    import cv2

    jpeg = cv2.imencode(".jpg", fit(load_photo("a_1_webcam_woman_T1.jpg")), [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()
    mask = (0x37, 0xFA, 0x21, 0x3D)
    # Unmasked in pieces as a socket delivers them, each piece at its offset in the frame.
    masked = apply_mask(jpeg, mask)
    assert masked != jpeg
    pieces, pos = [], 0
    for size in (1000, 1, 7, 16_384, len(jpeg)):
        chunk = masked[pos:pos + size]
        pieces.append(apply_mask(chunk, mask, length=len(chunk), offset=pos))
        pos += len(chunk)
    assert b"".join(pieces) == jpeg


def test_installed_by_the_eventlet_app(monkeypatch):
    original = eventlet_websocket.RFC6455WebSocket.__dict__["_apply_mask"]
    try:
        assert install()
        assert eventlet_websocket.RFC6455WebSocket._apply_mask is apply_mask
        data, mask = os.urandom(300), (1, 2, 3, 4)
        assert eventlet_websocket.RFC6455WebSocket._apply_mask(data, mask, 300, 5) == _reference(data, mask, 300, 5)
    finally:
        eventlet_websocket.RFC6455WebSocket._apply_mask = original
