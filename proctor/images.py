"""Images from outside (camera frames, identity captures, face photos): checked, then decoded.

The header's width and height are read before any pixel is decoded, so a tiny file that claims
a huge picture (a decompression bomb) is refused without allocating it. Every refusal is an
ImageError (an ApiError, 400 unless said otherwise) whose message says what is wrong.
"""
from __future__ import annotations

import base64
import binascii
import re
import struct

import cv2
import numpy as np

from .jsonapi import ApiError

_DATA_URL = re.compile(r"^data:image/(jpeg|jpg|png|webp);base64,", re.IGNORECASE)
FORMATS = ("jpeg", "png", "webp")


class ImageError(ApiError):
    """The image is not acceptable; the message says why."""


def _webp_dimensions(data: bytes) -> tuple[str, int, int]:
    """("webp", width, height) of a still WebP from its chunks (VP8X canvas, VP8 frame header, VP8L header).

    Every VP8X/VP8/VP8L chunk met before the image data is read and the largest size wins, so a
    canvas that understates its frame gets nowhere. Animated WebP is refused."""
    broken = ImageError("the file is not a readable WebP (broken header)")
    i, n = 12, len(data)
    width = height = 0
    while i + 8 <= n:
        fourcc = data[i:i + 4]
        (size,) = struct.unpack("<I", data[i + 4:i + 8])
        body = data[i + 8:i + 8 + min(size, 32)]
        if fourcc == b"VP8X":
            if len(body) < 10:
                raise broken
            if body[0] & 0x02:
                raise ImageError("animated WebP images are not accepted")
            width = max(width, 1 + int.from_bytes(body[4:7], "little"))
            height = max(height, 1 + int.from_bytes(body[7:10], "little"))
        elif fourcc == b"VP8 ":
            if len(body) < 10 or body[3:6] != b"\x9d\x01\x2a":
                raise broken
            w, h = struct.unpack("<HH", body[6:10])
            return "webp", max(width, w & 0x3FFF), max(height, h & 0x3FFF)
        elif fourcc == b"VP8L":
            if len(body) < 5 or body[0] != 0x2F:
                raise broken
            (bits,) = struct.unpack("<I", body[1:5])
            return "webp", max(width, (bits & 0x3FFF) + 1), max(height, ((bits >> 14) & 0x3FFF) + 1)
        elif fourcc in (b"ANIM", b"ANMF"):
            raise ImageError("animated WebP images are not accepted")
        i += 8 + size + (size & 1)  # chunks are padded to an even size
    raise broken


def image_format(data: bytes) -> str | None:
    """"jpeg", "png" or "webp" from the file's first bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _names(formats) -> str:
    names = [{"jpeg": "JPEG", "png": "PNG", "webp": "WebP"}[f] for f in formats]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def image_dimensions(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) read from a JPEG, PNG or WebP header, before any pixel is decoded."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageError("the file is not a readable PNG (broken header)")
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data.startswith(b"\xff\xd8"):
        i, n = 2, len(data)
        while i < n:
            if data[i] != 0xFF:
                raise ImageError("the file is not a readable JPEG (bad marker)")
            while i < n and data[i] == 0xFF:  # fill bytes
                i += 1
            if i >= n:
                break
            marker = data[i]
            i += 1
            if marker in (0x01, *range(0xD0, 0xD9)):  # markers without a length
                continue
            if i + 2 > n:
                break
            (length,) = struct.unpack(">H", data[i:i + 2])
            if length < 2:
                raise ImageError("the file is not a readable JPEG (bad segment length)")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if i + 7 > n:
                    break
                height, width = struct.unpack(">HH", data[i + 3:i + 7])
                return "jpeg", width, height
            if marker == 0xDA:  # start of scan before any frame header
                break
            i += length
        raise ImageError("the file is not a readable JPEG (no frame header)")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_dimensions(data)
    raise ImageError("not a JPEG, PNG or WebP image")


def _check_sides(width: int, height: int, min_side: int, max_side: int) -> None:
    if min(width, height) < min_side:
        raise ImageError(f"image too small: {width}x{height} (each side must be at least {min_side} px)")
    if max(width, height) > max_side:
        raise ImageError(f"image too large: {width}x{height} (each side must be at most {max_side} px)")


def fit(img: np.ndarray, max_w: int, max_h: int) -> np.ndarray:
    """Scaled down (aspect kept) to fit max_w x max_h; unchanged when it already fits."""
    h, w = img.shape[:2]
    scale = min(max_w / w, max_h / h, 1.0)
    if scale >= 1.0:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    return fit(img, max_side, max_side)


def decode_image(raw: bytes, *, min_side: int = 64, max_side: int = 4096, formats=FORMATS) -> np.ndarray:
    """A BGR uint8 image from JPEG/PNG (or WebP, when allowed) bytes."""
    if not raw:
        raise ImageError("the image is empty")
    kind = image_format(raw)
    if kind is None:
        raise ImageError(f"not a {_names(formats)} image")
    if kind not in formats:
        raise ImageError(f"{_names([kind])} images are not accepted here: send {_names(formats)}")
    kind, width, height = image_dimensions(raw)
    _check_sides(width, height, min_side, max_side)
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise ImageError("the image could not be decoded")
    h, w = img.shape[:2]
    if sorted((w, h)) != sorted((width, height)):  # the header lied (EXIF rotation may swap the sides)
        raise ImageError("the image could not be decoded")
    _check_sides(w, h, min_side, max_side)
    return np.ascontiguousarray(img)


def data_url_bytes(value, *, max_chars: int | None = None, bare_base64: bool = False) -> bytes:
    """The bytes in a data URL (data:image/jpeg;base64,...), or in bare base64 when allowed."""
    if not isinstance(value, str) or not value:
        raise ImageError("'image' must be a non-empty string (a data URL such as data:image/jpeg;base64,...)")
    if max_chars is not None and len(value) > max_chars:
        raise ImageError("the image is too large", 413)
    match = _DATA_URL.match(value)
    if match:
        text = value[match.end():]
    elif bare_base64 and not value.startswith("data:"):
        text = value
    else:
        raise ImageError("'image' must be a data URL: data:image/jpeg;base64,... or data:image/png;base64,...")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("'image' is not valid base64") from None


def decode_data_url(value, *, max_chars: int | None = None, bare_base64: bool = False, **decode_kw) -> np.ndarray:
    """The image in a data URL (data:image/jpeg;base64,...), or bare base64 when allowed."""
    return decode_image(data_url_bytes(value, max_chars=max_chars, bare_base64=bare_base64), **decode_kw)


def camera_frame(raw: bytes, *, min_side: int, max_side: int, max_w: int, max_h: int) -> bytes | np.ndarray:
    """A camera frame for the live runtime, checked: the JPEG bytes themselves when the picture is a
    JPEG that fits max_w x max_h (the workers decode it; here only a 1/8-scale greyscale decode of the
    whole stream proves it is a picture, a fraction of a full decode), else the decoded pixels fitted
    into max_w x max_h (a PNG, or a JPEG larger than that)."""
    if not raw:
        raise ImageError("the image is empty")
    kind = image_format(raw)
    if kind not in ("jpeg", "png"):
        raise ImageError("not a JPEG or PNG image")
    kind, width, height = image_dimensions(raw)
    _check_sides(width, height, min_side, max_side)
    if kind != "jpeg" or width > max_w or height > max_h:
        return np.ascontiguousarray(fit(decode_image(raw, min_side=min_side, max_side=max_side,
                                                     formats=("jpeg", "png")), max_w, max_h))
    small = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if small is None or small.ndim != 2 or sorted(small.shape) != sorted(((height + 7) // 8, (width + 7) // 8)):
        raise ImageError("the image could not be decoded")
    return bytes(raw)
