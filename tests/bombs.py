"""Decompression bombs made by transforming a real photo (../shared/testdata), for the image routes' tests.

Two kinds, as an attacker would send them:
- a real small image whose header is rewritten to claim 16000 x 16000 (a few KB; a decoder that
  trusts the header allocates the claimed size before it finds the data short);
- a real huge image that compresses small: the photo in grey, scaled up (nearest neighbour)
  to 16000 x 16000 for PNG (streamed row by row, so building it never holds the picture) and to
  6000 x 6000 for WebP (libwebp needs the whole picture; build it in another process).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

PHOTO = "a_1_webcam_woman_T1.jpg"
CLAIMED = 16000
HUGE_WEBP_SIDE = 6000


def _photo(testdata: Path):
    import cv2

    img = cv2.imread(str(testdata / PHOTO), cv2.IMREAD_COLOR)
    assert img is not None, testdata / PHOTO
    return img


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_claiming(testdata: Path, side: int = CLAIMED) -> bytes:
    """The real photo as PNG, its IHDR rewritten (CRC fixed) to claim side x side."""
    import cv2

    ok, buf = cv2.imencode(".png", _photo(testdata))
    assert ok
    data = bytearray(buf.tobytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def png_huge_grey(testdata: Path, side: int = CLAIMED) -> bytes:
    """A real side x side greyscale PNG of the photo scaled up, streamed (never held whole)."""
    import cv2
    import numpy as np

    grey = cv2.cvtColor(_photo(testdata), cv2.COLOR_BGR2GRAY)
    grey = cv2.resize(grey, (160, 120), interpolation=cv2.INTER_AREA)
    xs = np.arange(side) * grey.shape[1] // side
    ys = np.arange(side) * grey.shape[0] // side
    comp = zlib.compressobj(6)
    parts, prev = [], None
    for y in range(side):
        row = grey[ys[y], xs].astype(np.uint8)
        if prev is None:
            parts.append(comp.compress(b"\x00" + row.tobytes()))
        else:  # filter "Up": a row equal to the one above is all zeros
            parts.append(comp.compress(b"\x02" + (row - prev).astype(np.uint8).tobytes()))
        prev = row
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b"")


def webp_claiming(testdata: Path, side: int = CLAIMED) -> bytes:
    """The real photo as lossy WebP (VP8), its frame header rewritten to claim side x side."""
    import cv2

    ok, buf = cv2.imencode(".webp", _photo(testdata), [cv2.IMWRITE_WEBP_QUALITY, 80])
    assert ok
    data = bytearray(buf.tobytes())
    assert data[12:16] == b"VP8 " and data[23:26] == b"\x9d\x01\x2a"
    data[26:30] = struct.pack("<HH", side, side)
    return bytes(data)


def webp_canvas_claiming(testdata: Path, side: int = CLAIMED) -> bytes:
    """The real photo's VP8 chunk behind an extended header (VP8X) whose canvas claims side x side."""
    import cv2

    ok, buf = cv2.imencode(".webp", _photo(testdata), [cv2.IMWRITE_WEBP_QUALITY, 80])
    assert ok
    vp8 = buf.tobytes()[12:]
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (side - 1).to_bytes(3, "little") * 2
    body = b"WEBP" + vp8x + vp8
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_huge_grey(testdata: Path, side: int = HUGE_WEBP_SIDE) -> bytes:
    """A real side x side WebP of the photo in grey, scaled up, at low quality (about 100 KB)."""
    import cv2

    grey = cv2.cvtColor(cv2.cvtColor(_photo(testdata), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    big = cv2.resize(grey, (side, side), interpolation=cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(".webp", big, [cv2.IMWRITE_WEBP_QUALITY, 5])
    assert ok
    return buf.tobytes()


BUILDERS = {
    "png_claiming_16000": png_claiming,
    "png_huge_grey_16000": png_huge_grey,
    "webp_claiming_16000": webp_claiming,
    "webp_canvas_claiming_16000": webp_canvas_claiming,
    "webp_huge_grey_6000": webp_huge_grey,
}


def build_all(testdata: Path, out: Path) -> dict[str, Path]:
    """Every bomb written under `out` (made once; later calls reuse the files)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, build in BUILDERS.items():
        path = out / name
        if not path.exists():
            path.write_bytes(build(testdata))
        paths[name] = path
    return paths


if __name__ == "__main__":  # python -m tests.bombs TESTDATA OUT: built in its own process (big pictures)
    import sys

    for name, path in build_all(Path(sys.argv[1]), Path(sys.argv[2])).items():
        print(name, path.stat().st_size)
