"""Violations' evidence files for the console: a clip made playable on its first open, and a
violation's files removed with its rows.

The live runtime stores a violation's pre-roll as a frames file (the page's JPEGs with their
times; proctor.live.evidence), which costs no encoding while the exam runs. The first reviewer to
open the clip pays for the WebM (VP8) encode: it runs off the event loop (blocking.run_blocking:
eventlet's native thread pool, else a thread pool) and is cached beside the frames (a temporary
file renamed into place). Requests for one clip wait for each other here, so a second open that
comes during the first one's encode reuses it; servers that share the data folder each write their
own temporary file, so they cannot corrupt the cache either. One encode runs at a time per process
(CLIP_ENCODES_AT_ONCE): reviewers opening many clips during an exam cannot take the cores the live
analysis needs. Clips stored before this scheme are
WebM files already and are served as they are.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .blocking import run_blocking
from .datafiles import data_dir, is_storage_full, stored_path
from .extensions import db
from .live.evidence import (FRAMES_SUFFIX, ClipError, NoEncoderError, cached_webm, encode_frames_file,
                            remove_clip_files)
from .models import Recording, Violation

log = logging.getLogger(__name__)

CLIP_ENCODE_TIMEOUT_S = 120.0   # a first open waits this long for the encode; it goes on (and is cached) after
CLIP_ENCODES_AT_ONCE = 1        # encodes running at once in this process: reviewers cannot take the live analysis' cores
CLIP_QUEUE_WAIT_S = 60.0        # a first open waits this long for its turn to encode, then answers 503
RETRY_AFTER_S = 30


class ClipUnavailable(Exception):
    """The clip cannot be served now (`status` 503, with Retry-After) or at all (404, 507); `message` says why."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message, self.status = message, status


_locks: dict[str, list] = {}     # cached clip path -> [lock, requests holding or waiting for it]
_locks_guard = threading.Lock()
_encoding = threading.BoundedSemaphore(CLIP_ENCODES_AT_ONCE)  # green under eventlet (monkey-patched at start)


@contextmanager
def _one_encode_at_a_time(key: str):
    """Requests for the same clip take turns (a green lock under eventlet: a waiter yields to the hub)."""
    with _locks_guard:
        entry = _locks.setdefault(key, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _locks_guard:
            entry[1] -= 1
            if entry[1] == 0:
                _locks.pop(key, None)


RECORDING_GRACE_S = 60.0  # a clip whose post-roll ended longer ago and was never written: the server stopped


def clip_not_ready(path: Path | None, what: str, now: float | None = None) -> ClipUnavailable | None:
    """For a clip whose file is not there: a 503 while the runtime is still recording its post-roll
    (evidence.recording_ends_at), a clear 404 when the recording never finished; None when nothing says
    it is being recorded (the caller's plain 404)."""
    from .live.evidence import recording_ends_at

    ends_at = None if path is None else recording_ends_at(path)
    if ends_at is None:
        return None
    left = ends_at - (time.time() if now is None else now)
    if left > -RECORDING_GRACE_S:
        return ClipUnavailable("This clip is still being recorded (it runs on a few seconds after the violation); "
                               f"try again in {max(1, math.ceil(left) + 1)} s.", 503)
    log.warning("%s: the clip's recording never finished (the server stopped while recording it)", what)
    return ClipUnavailable("This clip was not completed: the server stopped while recording it. The snapshot is "
                           "still available.", 404)


def playable_clip(path: Path, what: str) -> Path:
    """The WebM to serve for a stored clip at `path`: an old clip as it is; for a frames file its cached
    encode, made now on the first open. Raises ClipUnavailable with a message a reviewer can read."""
    if path.suffix != FRAMES_SUFFIX:
        return path
    out = cached_webm(path)
    if out.is_file():
        return out
    with _one_encode_at_a_time(str(out)):
        if out.is_file():  # another request encoded it while this one waited
            return out
        if not _encoding.acquire(timeout=CLIP_QUEUE_WAIT_S):
            log.warning("%s: no turn to encode the clip within %g s (other clips are encoding)", what, CLIP_QUEUE_WAIT_S)
            raise ClipUnavailable("The server is busy preparing other clips; try again in a minute.", 503)
        started = time.perf_counter()
        try:
            meta = run_blocking(encode_frames_file, path, timeout_s=CLIP_ENCODE_TIMEOUT_S)
        except NoEncoderError as exc:
            log.error("%s: the clip cannot be encoded on this server: %s", what, exc)
            raise ClipUnavailable("This clip cannot be played: the server has no VP8 (WebM) encoder (OpenCV's "
                                  "VideoWriter or ffmpeg with libvpx). The snapshot is still available.", 503) from None
        except ClipError as exc:
            log.error("%s: the clip's frames are damaged: %s", what, exc)
            raise ClipUnavailable(f"This clip cannot be played: its stored frames are damaged ({exc}).", 404) from None
        except TimeoutError:
            log.warning("%s: the clip's encode took more than %g s; it goes on in the background", what,
                        CLIP_ENCODE_TIMEOUT_S)
            raise ClipUnavailable("This clip is still being prepared; try again in a minute.", 503) from None
        except FileNotFoundError:
            raise ClipUnavailable("This clip's stored frames are gone.", 404) from None
        except OSError as exc:
            if not is_storage_full(exc):
                raise
            log.error("%s: no room to cache the encoded clip: %s", what, exc)
            raise ClipUnavailable("This clip cannot be prepared: the server's storage is full.", 507) from None
        finally:
            _encoding.release()
    log.info("%s: clip encoded on first open in %.2f s: %s", what, time.perf_counter() - started, meta)
    return out


def violation_files(*where) -> list[tuple[str | None, str | None]]:
    """(evidence_path, clip_path) of the violations matching `where`: read before a delete cascades them away."""
    from sqlalchemy import select

    return [tuple(r) for r in db.session.execute(select(Violation.evidence_path, Violation.clip_path).where(*where))]


def recording_files(*where) -> list[tuple[str | None, None]]:
    """The recordings matching `where` (audio chunks, screenshots) as (path, None) pairs for
    remove_evidence_files: read before a delete cascades the rows away."""
    from sqlalchemy import select

    return [(path, None) for path in db.session.scalars(select(Recording.path).where(*where))]


def remove_evidence_files(rows) -> int:
    """Delete the files of deleted violations and recordings: each (evidence_path, clip_path) pair's
    snapshot and its clip's frames file, cached encode or old WebM (recording_files gives a recording's
    file as the first of its pair). Only files inside the data folder; how many went."""
    removed = 0
    folders = set()
    for evidence_path, clip_path in rows:
        for stored, kind in ((evidence_path, "snapshot"), (clip_path, "clip")):
            path = stored_path(stored, f"{kind} of a deleted violation")
            if path is None:
                continue
            folders.add(path.parent)
            try:
                if kind == "clip":
                    removed += remove_clip_files(path)
                elif path.is_file():
                    path.unlink()
                    removed += 1
            except OSError as exc:
                log.error("evidence file %s not removed: %s", path, exc)
    session_roots = (data_dir() / "evidence", data_dir() / "recordings")
    for folder in folders:
        if folder.parent in session_roots:
            try:
                folder.rmdir()  # a session's folder, once empty
            except OSError:
                pass
    return removed
