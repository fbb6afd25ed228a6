"""Room scans: the guided clip of the desk and room a student records before an exam that asks for
one (Exam.require_room_scan), kept with the session and shown first in review.

The facts of a scan live here once (durations, bitrate, size of the picture, the WebM magic) and
the room-scan page gets them rendered into it. A scan is stored under the data folder as
room_scans/<student_id>/<uuid>.webm with a RoomScan row; it is "unattached" (session_id NULL)
until the exam starts, when the student's latest unattached scan of that exam is attached to the
new session. Recording again replaces the unattached scan (its file is removed).

A browser's MediaRecorder writes WebM without a duration or an index (it does not know the
length when it starts writing), so such a clip shows no length and cannot be seeked. When ffmpeg
and ffprobe are on the server, `finish_clip` remuxes it (no re-encode, `-c copy`: a few tens of
milliseconds) into a WebM with both, and measures its real length; the caller runs it off the
event loop with a timeout. Without the tools the clip is kept as sent and the page's duration is
recorded (a deployment without ffmpeg, e.g. the Docker image, still works).
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import select

from .datafiles import stored_path
from .extensions import db
from .models import RoomScan

log = logging.getLogger(__name__)

MIN_S = 10              # shorter recordings are refused, on the page and by the server
RECORD_MAX_S = 20       # the page stops recording by itself after this long
ACCEPT_MAX_S = 25       # the server's upper bound (the page's 20 s plus slack for a slow stop)
PROBE_SLACK_S = 0.5     # the measured length may differ from the bounds by this much (frame timing)
BITRATE_BPS = 400_000   # what the page asks MediaRecorder for: 20 s is about 1 MB
MAX_WIDTH_PX, MAX_HEIGHT_PX = 640, 480
MIME = "video/webm"
WEBM_MAGIC = b"\x1a\x45\xdf\xa3"  # EBML header
FOLDER = "room_scans"
TOOL_TIMEOUT_S = 20.0   # one ffmpeg or ffprobe run on a clip


class ClipInvalid(Exception):
    """The bytes start like WebM but ffmpeg cannot read them as a video."""


def page_facts() -> dict:
    """What the room-scan page needs to know, from here (rendered into data attributes)."""
    return {"min_s": MIN_S, "max_s": RECORD_MAX_S, "bitrate_bps": BITRATE_BPS, "width": MAX_WIDTH_PX,
            "height": MAX_HEIGHT_PX, "mime": MIME}


def relative_path(student_id: int, name: str) -> str:
    return f"{FOLDER}/{int(student_id)}/{name}"


# --- rows ------------------------------------------------------------------------------------

def unattached_scans(student_id: int, exam_id: int) -> list[RoomScan]:
    """The student's scans of the exam not yet attached to a session, newest first."""
    return list(db.session.scalars(select(RoomScan).where(RoomScan.student_id == student_id, RoomScan.exam_id == exam_id,
                                                          RoomScan.session_id.is_(None))
                                   .order_by(RoomScan.created_at.desc(), RoomScan.id.desc())))


def scan_of_session(session_id: int) -> RoomScan | None:
    return db.session.scalar(select(RoomScan).where(RoomScan.session_id == session_id)
                             .order_by(RoomScan.created_at.desc(), RoomScan.id.desc()).limit(1))


def attach_latest(student_id: int, exam_id: int, session_id: int) -> RoomScan | None:
    """Attach the student's latest unattached scan of the exam to the session (the caller commits).
    A session that has one already keeps it; older unattached scans stay for the delete that follows."""
    have = scan_of_session(session_id)
    if have is not None:
        return have
    scans = unattached_scans(student_id, exam_id)
    if not scans:
        return None
    scans[0].session_id = session_id
    return scans[0]


# --- files -----------------------------------------------------------------------------------

def scan_paths(*where) -> list[str]:
    """Stored paths of the scans matching `where`: read before a delete cascades the rows away."""
    return list(db.session.scalars(select(RoomScan.path).where(*where)))


def remove_scan_files(paths) -> int:
    """Delete the files of deleted scans (only inside the data folder); how many went."""
    removed = 0
    for stored in paths:
        path = stored_path(stored, "file of a deleted room scan")
        if path is None:
            continue
        try:
            if path.is_file():
                path.unlink()
                removed += 1
            folder = path.parent
            if folder.parent.name == FOLDER and not any(folder.iterdir()):
                folder.rmdir()  # the student's folder, once empty
        except OSError as exc:
            log.error("room scan file %s not removed: %s", path, exc)
    return removed


# --- the clip --------------------------------------------------------------------------------

def tools_available() -> bool:
    return bool(shutil.which("ffmpeg") and shutil.which("ffprobe"))


def finish_clip(raw: bytes) -> tuple[bytes, float]:
    """(seekable WebM bytes, length in seconds) of an uploaded clip, with ffmpeg and ffprobe.

    Blocking (two subprocesses): run it off the event loop. ClipInvalid when ffmpeg cannot read a
    video in it; TimeoutError when a tool hangs; OSError (a full /tmp) goes to the caller."""
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if not (ffmpeg and ffprobe):
        raise FileNotFoundError("ffmpeg and ffprobe are needed")
    with tempfile.TemporaryDirectory(prefix="room-scan-") as tmp:
        src, out = Path(tmp) / "in.webm", Path(tmp) / "out.webm"
        src.write_bytes(raw)
        try:
            proc = subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "webm", "-i", str(src),
                                   "-map", "0:v:0", "-c", "copy", "-f", "webm", str(out)],
                                  capture_output=True, timeout=TOOL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"ffmpeg took more than {TOOL_TIMEOUT_S:g} s") from None
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size == 0:
            raise ClipInvalid(proc.stderr.decode(errors="replace").strip()[-300:] or "no video stream")
        try:
            probe = subprocess.run([ffprobe, "-v", "error", "-show_entries", "format=duration", "-of",
                                    "default=noprint_wrappers=1:nokey=1", str(out)],
                                   capture_output=True, timeout=TOOL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"ffprobe took more than {TOOL_TIMEOUT_S:g} s") from None
        try:
            seconds = float(probe.stdout.decode().strip().splitlines()[0])
        except (ValueError, IndexError):
            raise ClipInvalid(f"no duration ({probe.stderr.decode(errors='replace').strip()[-200:]})") from None
        if not 0 < seconds < 24 * 3600:
            raise ClipInvalid(f"duration {seconds!r}")
        return out.read_bytes(), seconds


def describe(scan: RoomScan | None, required: bool) -> dict:
    """What the review page says about a session's scan."""
    if scan is not None:
        return {"state": "present", "scan": scan, "duration_s": round(float(scan.duration_s), 1),
                "recorded_at": scan.created_at}
    return {"state": "missing" if required else "not_required", "scan": None, "duration_s": None,
            "recorded_at": None}
