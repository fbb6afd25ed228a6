"""What the browser says about the student's devices: virtual cameras and extra displays (issue 16).

Both are the page's own report about itself (a camera's label, `screen.isExtended`): a signal, not a
proof. A renamed virtual camera driver or a patched browser says what it likes; the server records
what it was told, refuses what it can from it, and the proctor judges the rest.

The list of virtual camera names lives here, once: the system check's route and the pages (rendered
through page_data.py as ``virtual_cameras``) match a label against the same words.
"""
from __future__ import annotations

import re

# Known virtual camera drivers, matched case-insensitively anywhere in a camera's label (a plain
# substring test, so that static/js/student's `includes` agrees exactly); "virtual" covers "OBS Virtual
# Camera", "Virtual Webcam" and unnamed drivers that say what they are.
VIRTUAL_CAMERA_NAMES: tuple[str, ...] = (
    "virtual", "obs", "manycam", "snap camera", "xsplit", "camtwist", "e2esoft", "vcam",
)

LABEL_MAX = 64  # what is kept of a device's label (as the browser events' detail words)
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9 _.:()+-]")

SCREENS_MAX = 16


def plain_label(label: str) -> str:
    """A device label as it is stored and shown: plain characters, at most LABEL_MAX."""
    return _LABEL_UNSAFE.sub("", label)[:LABEL_MAX].strip()


def virtual_camera(label: str | None) -> str | None:
    """The known virtual camera name the label contains, or None."""
    lowered = (label or "").lower()
    return next((name for name in VIRTUAL_CAMERA_NAMES if name in lowered), None)
