"""Evidence for violations: the processed frame (with HUD) as JPEG and a pre-roll clip.

Files live under <PROCTOR_DATA_DIR>/evidence/<session_id>/; the database stores paths relative
to the data directory. Clips are WebM (VP8), written by OpenCV's VideoWriter when it can, else
by piping raw frames to Debian's ffmpeg, else not at all (logged). Encoding runs in its own
process (ClipWriter), never on the event loop.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .workers import ChildProcess

log = logging.getLogger(__name__)

CLIP_FPS_MIN, CLIP_FPS_MAX = 1.0, 30.0
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class ClipError(RuntimeError):
    pass


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


def _safe(text: str) -> str:
    return _SAFE.sub("_", str(text))[:60] or "x"


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
        abs_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = abs_path.with_suffix(".jpg.part")
        tmp.write_bytes(jpeg)
        os.replace(tmp, abs_path)
        return rel

    def resolve(self, rel: str) -> Path:
        """The absolute path of a stored relative path; refuses anything outside the evidence folder."""
        root = (self.data_dir / "evidence").resolve()
        path = (self.data_dir / rel).resolve()
        if root not in path.parents:
            raise ValueError(f"evidence path {rel!r} is outside the evidence folder")
        return path


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


def write_clip(path: str | Path, frames: list[tuple[float, bytes]]) -> dict:
    """Encode (frame_time, jpeg) pairs to a WebM (VP8) file. Returns {codec, writer, frames, fps, seconds}."""
    path = Path(path)
    images = _decode_frames(frames)
    if not images:
        raise ClipError("no decodable frames for the clip")
    fps = clip_fps(frames)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part" + path.suffix)
    for writer_name, writer in (("opencv", _write_opencv), ("ffmpeg", _write_ffmpeg)):
        try:
            if writer(tmp, images, fps):
                os.replace(tmp, path)
                return {"codec": "vp8", "container": "webm", "writer": writer_name, "frames": len(images),
                        "fps": round(fps, 3), "seconds": round(len(images) / fps, 3)}
        except Exception as exc:  # noqa: BLE001 - try the next writer
            log.warning("clip writer %s failed for %s: %s", writer_name, path, exc)
        tmp.unlink(missing_ok=True)
    raise ClipError("neither OpenCV's VideoWriter nor ffmpeg could write a WebM clip")


@dataclass
class ClipJob:
    violation_id: int
    abs_path: str
    rel_path: str
    frames: list = field(repr=False)  # [(t, jpeg)]


@dataclass
class ClipDone:
    violation_id: int
    rel_path: str | None
    error: str | None
    meta: dict = field(default_factory=dict)
    seconds_to_write: float = 0.0


def clip_writer_main(job_conn, result_conn) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s clip-writer %(name)s: %(message)s")
    import cv2

    cv2.setNumThreads(1)
    result_conn.send(("ready", {"pid": os.getpid()}))
    while True:
        try:
            msg = job_conn.recv()
        except (EOFError, OSError):
            break
        if msg[0] == "stop":
            break
        job: ClipJob = msg[1]
        t0 = time.perf_counter()
        try:
            meta = write_clip(job.abs_path, job.frames)
            done = ClipDone(job.violation_id, job.rel_path, None, meta)
        except Exception as exc:  # noqa: BLE001 - reported back; the violation keeps its snapshot
            done = ClipDone(job.violation_id, None, f"{type(exc).__name__}: {exc}")
        done.seconds_to_write = time.perf_counter() - t0
        result_conn.send(("clip_done", done))


CLIP_SEND_STALL_S = 30.0  # an encoder that takes no byte of its job for this long is stopped or hung: restarted


class ClipWriter:
    """One encoding process; jobs wait in the parent and go over one at a time, written without
    blocking (a clip job is larger than the pipe: the rest goes on later polls)."""

    def __init__(self, ctx=None, max_waiting: int = 50):
        self._ctx = ctx
        self.child: ChildProcess | None = None
        self._waiting: deque[ClipJob] = deque()
        self._in_flight: ClipJob | None = None
        self.max_waiting = max_waiting
        self.ready = False
        self.restarts = 0
        self.written = 0
        self.failed = 0
        self.skipped = 0

    def start(self) -> None:
        self.child = ChildProcess("proctor-clip-writer", clip_writer_main, (), self._ctx)
        self.child.start()
        self.ready = False

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()

    def submit(self, job: ClipJob) -> bool:
        if len(self._waiting) >= self.max_waiting:
            self.skipped += 1
            log.warning("clip queue full: no clip for violation %s", job.violation_id)
            return False
        self._waiting.append(job)
        return True

    def poll(self) -> list[ClipDone]:
        """Finished clips; sends the next job; restarts a dead encoder. Never blocks for long."""
        out: list[ClipDone] = []
        if self.child is None:
            return out
        self.child.flush()
        for msg in self.child.poll_messages():
            if msg[0] == "ready":
                self.ready = True
            elif msg[0] == "clip_done":
                self._in_flight = None
                done: ClipDone = msg[1]
                if done.error:
                    self.failed += 1
                else:
                    self.written += 1
                out.append(done)
        if not self.child.alive() or self.child.pipe_broken or self.child.send_stalled_s() > CLIP_SEND_STALL_S:
            lost = self._in_flight
            log.error("clip writer (pid %s) exited with %s or stopped reading its jobs; restarting", self.child.pid,
                      self.child.exitcode)
            self.child.stop(timeout=1.0)
            self.restarts += 1
            self._in_flight = None
            if lost is not None:
                self.failed += 1
                out.append(ClipDone(lost.violation_id, None, "clip writer process died"))
            self.start()
            return out
        if self.ready and self._in_flight is None and self._waiting:
            job = self._waiting.popleft()
            if self.child.send(("clip", job)):
                self._in_flight = job
            else:
                self._waiting.appendleft(job)
        return out

    def pending(self) -> int:
        return len(self._waiting) + (1 if self._in_flight is not None else 0)

    def status(self) -> dict:
        return {"pid": self.child.pid if self.child else None, "alive": bool(self.child and self.child.alive()),
                "ready": self.ready, "pending": self.pending(), "written": self.written, "failed": self.failed,
                "skipped": self.skipped, "restarts": self.restarts}
