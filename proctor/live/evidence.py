"""Evidence for violations: the frame that shows the reason (drawn by views.py) as JPEG, and a clip.

Files live under <PROCTOR_DATA_DIR>/evidence/<session_id>/; the database stores paths relative
to the data directory. A violation's clip spans from PROCTOR_LIVE_PREROLL_S before its condition
began to PROCTOR_LIVE_POSTROLL_S after it fired (ClipRecorder): the violation is stored at once
with the clip's path, the frames so far are taken from the PrerollBuffer, the post-roll's frames
are added as they are analysed, and the file is written when the post-roll is over (or when the
session ends or the runtime stops, with what there is). Meanwhile a `<stem>.recording` marker beside
it says so (recording_ends_at), so that a reviewer opening it early is told it is not ready yet. The
clip is stored as what it already is: the page's JPEG frames with their frame times, in one
uncompressed frames file (`<stem>.frames`, FRAMES_MAGIC then (time, length, JPEG) records), written
whole or not at all. No encoding runs then. A reviewer's first open encodes it (encode_frames_file)
to a WebM (VP8) cached beside it (`<stem>.webm`), by OpenCV's VideoWriter when it can, else by
piping raw frames to Debian's ffmpeg; the web layer runs that off the event loop
(proctor/evidence_files.py). Clips from before this scheme are WebM files stored at violation time
and are served as they are.
"""
from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import shutil
import struct
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CLIP_FPS_MIN, CLIP_FPS_MAX = 1.0, 30.0
FRAMES_SUFFIX = ".frames"             # the stored clip: JPEG frames with their times
RECORDING_SUFFIX = ".recording"       # beside a clip still recording its post-roll: {"ends_at": frame time}
FRAMES_MAGIC = b"PROCTOR-FRAMES1\n"   # 16 bytes, then records: <d time><I length><length bytes of JPEG>
_RECORD = struct.Struct("<dI")
FRAME_MAX_BYTES = 16 * 1024 * 1024    # one JPEG larger than this is not a frame the page sent: the file is damaged
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class ClipError(RuntimeError):
    """No clip can be made from these frames (none decodes, or the frames file is damaged)."""


class NoEncoderError(ClipError):
    """Neither OpenCV's VideoWriter nor ffmpeg can write VP8 WebM on this machine."""


class PrerollBuffer:
    """The last `seconds` of processed frames (JPEG bytes) per student, by frame time."""

    def __init__(self, seconds: float = 8.0, max_frames: int = 240):
        if not 0 < seconds <= 120:
            raise ValueError(f"pre-roll seconds must be in (0, 120], got {seconds!r}")
        self.seconds = float(seconds)
        self.max_frames = int(max_frames)
        self._lock = threading.Lock()
        self._frames: dict[int, deque] = {}

    def add(self, student_id: int, t: float, jpeg: bytes) -> None:
        with self._lock:
            buf = self._frames.setdefault(student_id, deque(maxlen=self.max_frames))
            if buf and t < buf[-1][0]:
                buf.clear()  # time went backwards: a new stream; the old frames are not its pre-roll
            buf.append((t, jpeg))
            while buf and buf[-1][0] - buf[0][0] > self.seconds:
                buf.popleft()

    def clip(self, student_id: int) -> list[tuple[float, bytes]]:
        with self._lock:
            return list(self._frames.get(student_id, ()))

    def forget(self, student_id: int) -> None:
        with self._lock:
            self._frames.pop(student_id, None)


@dataclass
class ClipRecording:
    """One violation's clip while its post-roll is recorded: frames with start_t <= t <= end_t."""

    student_id: int
    session_id: int
    stem: str
    rel: str                 # the frames file, relative to the data directory (the violation stores it at once)
    start_t: float           # the condition's start minus the pre-roll
    end_t: float             # the firing plus the post-roll
    frames: list = field(default_factory=list)

    def add(self, t: float, jpeg: bytes) -> None:
        if self.start_t <= t <= self.end_t and (not self.frames or t > self.frames[-1][0]):
            self.frames.append((t, jpeg))


class ClipRecorder:
    """Violations' clips: [condition start - pre-roll, fired + post-roll] of the analysed frames.

    begin() takes what the PrerollBuffer holds of that span and returns the clip's path at once;
    add() gives every analysed frame to the student's clips still recording; finish_due() writes
    those whose post-roll is over by the student's frame clock; finish() writes a student's (the
    session ended) or everyone's (the runtime stops) with what they have. Called under the runtime's
    lock; the files are small (the page's JPEGs, no encoding)."""

    def __init__(self, store: "EvidenceStore", preroll: PrerollBuffer, preroll_s: float, postroll_s: float):
        if not 0 < preroll_s <= preroll.seconds:
            raise ValueError(f"pre-roll {preroll_s!r} s must be in (0, the buffer's {preroll.seconds:g} s]")
        if not 0 <= postroll_s <= 60:
            raise ValueError(f"post-roll seconds must be in [0, 60], got {postroll_s!r}")
        self.store, self.preroll = store, preroll
        self.preroll_s, self.postroll_s = float(preroll_s), float(postroll_s)
        self._open: dict[int, list[ClipRecording]] = {}

    def begin(self, student_id: int, session_id: int, stem: str, began_t: float | None, fired_t: float) -> str | None:
        """Start a violation's clip; its path relative to the data directory (the file comes once the
        post-roll is over), or None when no camera frame of the student was analysed lately (the camera
        is off, or no worker runs: a browser event's violation then has no clip, as before)."""
        if began_t is None or not math.isfinite(began_t) or began_t > fired_t:
            began_t = fired_t  # an instant event (the browser's): from the pre-roll before it to the post-roll after
        buffered = self.preroll.clip(student_id)
        if not buffered:
            return None
        # The buffer holds preroll.seconds: a condition that began earlier than that starts the clip at its oldest frame.
        rec = ClipRecording(student_id, session_id, stem, self.store.paths(session_id, stem, "frames")[1],
                            began_t - self.preroll_s, fired_t + self.postroll_s)
        for t, jpeg in buffered:
            rec.add(t, jpeg)
        if self.postroll_s <= 0:
            return self._write(rec)
        marker, _ = self.store.paths(session_id, stem, RECORDING_SUFFIX.lstrip("."))
        _write_whole(marker, (json.dumps({"ends_at": rec.end_t}).encode(),))
        self._open.setdefault(student_id, []).append(rec)
        return rec.rel

    def add(self, student_id: int, t: float, jpeg: bytes) -> None:
        for rec in self._open.get(student_id, ()):
            rec.add(t, jpeg)

    def recording(self) -> list[int]:
        """Students with a clip still recording (usually none: the loop's check is then free)."""
        return list(self._open)

    def finish_due(self, student_id: int, now_t: float) -> list[str]:
        """Write the student's clips whose post-roll is over at frame time `now_t`; their paths."""
        recs = self._open.get(student_id, [])
        due = [r for r in recs if now_t >= r.end_t]
        if not due:
            return []
        rest = [r for r in recs if now_t < r.end_t]
        if rest:
            self._open[student_id] = rest
        else:
            del self._open[student_id]
        return [rel for rel in map(self._write, due) if rel]

    def finish(self, student_id: int | None = None) -> list[str]:
        """Write a student's clips (or everyone's) now with the frames they have."""
        ids = list(self._open) if student_id is None else [student_id]
        written = []
        for sid in ids:
            for rec in self._open.pop(sid, []):
                rel = self._write(rec)
                if rel:
                    written.append(rel)
        return written

    def _write(self, rec: ClipRecording) -> str | None:
        marker, _ = self.store.paths(rec.session_id, rec.stem, RECORDING_SUFFIX.lstrip("."))
        try:
            if not rec.frames:
                log.warning("no clip student=%s session=%s stem=%s: no analysed frame in [%.3f, %.3f]",
                            rec.student_id, rec.session_id, rec.stem, rec.start_t, rec.end_t)
                return None
            self.store.save_clip_frames(rec.session_id, rec.stem, rec.frames)
            log.info("clip written student=%s session=%s %s: %d frames over %.1f s", rec.student_id, rec.session_id,
                     rec.rel, len(rec.frames), rec.frames[-1][0] - rec.frames[0][0])
            return rec.rel
        except OSError as exc:
            log.error("clip frames not written student=%s session=%s: %s", rec.student_id, rec.session_id, exc)
            return None
        finally:
            marker.unlink(missing_ok=True)


def recording_ends_at(clip_path: str | Path) -> float | None:
    """When the clip at `clip_path` (its frames file) will have been recorded, if it is still being
    recorded (its marker is there); None otherwise. A marker that cannot be read counts as ended now."""
    marker = Path(clip_path).with_suffix(RECORDING_SUFFIX)
    try:
        ends_at = float(json.loads(marker.read_text())["ends_at"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0
    return ends_at if math.isfinite(ends_at) else 0.0


def _safe(text: str) -> str:
    return _SAFE.sub("_", str(text))[:60] or "x"


def _temp_beside(path: Path) -> Path:
    """A temporary name beside `path`, unique to this writer, keeping its suffix (a writer picks
    its container by the suffix); hidden, so nothing mistakes it for evidence."""
    return path.with_name(f".{path.stem}.{os.urandom(4).hex()}.part{path.suffix}")


def _write_whole(path: Path, chunks) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        with open(tmp, "xb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class EvidenceStore:
    """Paths and files under <data_dir>/evidence/<session_id>/."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)

    def stem(self, rule: str, t: float, seq: int) -> str:
        return f"{int(t * 1000)}_{_safe(rule.lower())}_{int(seq)}_{os.urandom(3).hex()}"

    def paths(self, session_id: int, stem: str, ext: str) -> tuple[Path, str]:
        rel = Path("evidence") / str(int(session_id)) / f"{stem}.{ext}"
        return self.data_dir / rel, rel.as_posix()

    def save_snapshot(self, session_id: int, stem: str, jpeg: bytes) -> str:
        abs_path, rel = self.paths(session_id, stem, "jpg")
        _write_whole(abs_path, (jpeg,))
        return rel

    def save_clip_frames(self, session_id: int, stem: str, frames: list[tuple[float, bytes]]) -> str:
        """The pre-roll as a frames file (no decoding, no encoding); its path relative to the data directory."""
        abs_path, rel = self.paths(session_id, stem, FRAMES_SUFFIX.lstrip("."))
        write_frames(abs_path, frames)
        return rel

    def resolve(self, rel: str) -> Path:
        """The absolute path of a stored relative path; refuses anything outside the evidence folder."""
        root = (self.data_dir / "evidence").resolve()
        path = (self.data_dir / rel).resolve()
        if root not in path.parents:
            raise ValueError(f"evidence path {rel!r} is outside the evidence folder")
        return path


# ------------------------------------------------------------------------------ frames files

def write_frames(path: str | Path, frames: list[tuple[float, bytes]]) -> None:
    """(frame_time, jpeg) records to `path`, whole or not at all (a temporary file renamed into place)."""
    def chunks():
        yield FRAMES_MAGIC
        for t, jpeg in frames:
            yield _RECORD.pack(float(t), len(jpeg))
            yield jpeg

    _write_whole(Path(path), chunks())


def read_frames(path: str | Path) -> list[tuple[float, bytes]]:
    """The (frame_time, jpeg) records of a frames file; ClipError when it is not one or is cut short."""
    data = Path(path).read_bytes()
    if not data.startswith(FRAMES_MAGIC):
        raise ClipError(f"{Path(path).name} is not a frames file")
    frames, pos = [], len(FRAMES_MAGIC)
    while pos < len(data):
        if pos + _RECORD.size > len(data):
            raise ClipError(f"{Path(path).name} is cut short in a record header at byte {pos}")
        t, n = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        if n > FRAME_MAX_BYTES or pos + n > len(data) or not np.isfinite(t):
            raise ClipError(f"{Path(path).name} has a damaged record at byte {pos - _RECORD.size}")
        frames.append((t, data[pos:pos + n]))
        pos += n
    if not frames:
        raise ClipError(f"{Path(path).name} holds no frames")
    return frames


def cached_webm(frames_path: str | Path) -> Path:
    """Where the WebM encoded from a frames file is cached: beside it, same stem."""
    return Path(frames_path).with_suffix(".webm")


def clip_files(clip_path: str | Path) -> list[Path]:
    """Every file a stored clip may have on disk: its frames file or old WebM, the cached encode,
    the marker of a recording that never finished, and temporary files an interrupted write left
    beside them. Those that exist."""
    path = Path(clip_path)
    found = [p for p in {path, cached_webm(path), path.with_suffix(FRAMES_SUFFIX), path.with_suffix(RECORDING_SUFFIX)}
             if p.is_file()]
    if path.parent.is_dir():
        found += [p for p in path.parent.glob(f".{glob.escape(path.stem)}.*.part.*") if p.is_file()]
    return sorted(found)


def remove_clip_files(clip_path: str | Path) -> int:
    """Delete a clip's files (clip_files); how many were removed. A file that is already gone is no error."""
    removed = 0
    for p in clip_files(clip_path):
        try:
            p.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


# ------------------------------------------------------------------------------ clip encoding

def _decode_frames(frames: list[tuple[float, bytes]]) -> list[np.ndarray]:
    import cv2

    images = []
    size = None
    for _, jpeg in frames:
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            continue
        if size is None:
            h, w = img.shape[:2]
            size = (w - w % 2, h - h % 2)  # VP8 via ffmpeg wants even sizes
        if (img.shape[1], img.shape[0]) != size:
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        images.append(img)
    return images


def clip_fps(frames: list[tuple[float, bytes]]) -> float:
    if len(frames) < 2:
        return CLIP_FPS_MIN
    span = frames[-1][0] - frames[0][0]
    if span <= 0:
        return CLIP_FPS_MAX
    return float(min(CLIP_FPS_MAX, max(CLIP_FPS_MIN, (len(frames) - 1) / span)))


def _write_opencv(path: Path, images: list[np.ndarray], fps: float) -> bool:
    import cv2

    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP80"), fps, (w, h))
    if not writer.isOpened():
        return False
    try:
        for img in images:
            writer.write(img)
    finally:
        writer.release()
    return path.exists() and path.stat().st_size > 0


def _write_ffmpeg(path: Path, images: list[np.ndarray], fps: float) -> bool:
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        return False
    h, w = images[0].shape[:2]
    cmd = [ffmpeg, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
           "-r", f"{fps:.3f}", "-i", "-", "-c:v", "libvpx", "-b:v", "1M", "-deadline", "realtime",
           "-pix_fmt", "yuv420p", str(path)]
    proc = subprocess.run(cmd, input=b"".join(img.tobytes() for img in images), capture_output=True, timeout=120)
    if proc.returncode != 0:
        log.error("ffmpeg could not write %s: %s", path, proc.stderr.decode(errors="replace")[-500:])
        return False
    return path.exists() and path.stat().st_size > 0


CLIP_WRITERS = (("opencv", _write_opencv), ("ffmpeg", _write_ffmpeg))


def write_clip(path: str | Path, frames: list[tuple[float, bytes]], writers=None) -> dict:
    """Encode (frame_time, jpeg) pairs to a WebM (VP8) file, whole or not at all (each attempt writes
    its own temporary file, renamed into place). Returns {codec, writer, frames, fps, seconds}.
    ClipError when no frame decodes; NoEncoderError when no writer can write VP8 WebM."""
    path = Path(path)
    images = _decode_frames(frames)
    if not images:
        raise ClipError("no decodable frames for the clip")
    fps = clip_fps(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    for writer_name, writer in (CLIP_WRITERS if writers is None else writers):
        tmp = _temp_beside(path)
        try:
            if writer(tmp, images, fps):
                os.replace(tmp, path)
                return {"codec": "vp8", "container": "webm", "writer": writer_name, "frames": len(images),
                        "fps": round(fps, 3), "seconds": round(len(images) / fps, 3)}
        except Exception as exc:  # noqa: BLE001 - try the next writer
            log.warning("clip writer %s failed for %s: %s", writer_name, path, exc)
        finally:
            tmp.unlink(missing_ok=True)
    raise NoEncoderError("neither OpenCV's VideoWriter nor ffmpeg could write a WebM (VP8) clip")


def encode_frames_file(frames_path: str | Path, writers=None) -> dict:
    """Encode a frames file to its cached WebM (cached_webm) unless that exists already. Blocking and
    CPU-heavy: call it off the event loop. Returns write_clip's figures, or {"cached": True}."""
    out = cached_webm(frames_path)
    if out.is_file() and out.stat().st_size > 0:
        return {"cached": True}
    return write_clip(out, read_frames(frames_path), writers)
