"""Files the app keeps under PROCTOR_DATA_DIR (face images, evidence, recordings): found safely,
written whole or not at all, and the folder checked writable at start."""
from __future__ import annotations

import errno
import logging
import os
import uuid
from pathlib import Path

from flask import current_app

log = logging.getLogger(__name__)


def data_dir() -> Path:
    return Path(current_app.config["PROCTOR_DATA_DIR"]).resolve()


def stored_path(stored: str | None, what: str) -> Path | None:
    """The path a stored path names (it may not exist), only if it lies inside the data folder.

    Stored paths are relative to the data folder; whatever a row says (absolute, `..`), nothing
    outside that folder is ever served or removed. `what` names the row in the log line of a refusal."""
    if not stored:
        return None
    root = data_dir()
    raw = Path(stored)
    path = (raw if raw.is_absolute() else root / raw).resolve()
    if not path.is_relative_to(root) or path == root:
        log.warning("%s: stored path %r is outside the data folder; refused", what, stored)
        return None
    return path


def stored_file(stored: str | None, what: str) -> Path | None:
    """The existing file a stored path names, only if it lies inside the data folder (stored_path)."""
    path = stored_path(stored, what)
    return path if path is not None and path.is_file() else None


STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_storage_full(exc: OSError) -> bool:
    return exc.errno in STORAGE_FULL


def write_file(rel: str | Path, data: bytes) -> Path:
    """`data` stored at `rel` (relative to the data folder) whole or not at all.

    The bytes go to a temporary file beside the target, which is renamed into place only once
    every byte is written; on any error (ENOSPC: the disk is full) the temporary file is removed
    and the OSError goes to the caller (`is_storage_full` tells a full disk)."""
    path = data_dir() / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            log.error("could not remove the temporary file %s", tmp)
        raise
    return path


def check_writable(path: str | Path) -> None:
    """At start: the data folder exists (made if missing) and takes a file; ConfigError otherwise."""
    from .settings import ConfigError

    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{uuid.uuid4().hex[:8]}"
        with open(probe, "xb") as fh:
            fh.write(b"ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"PROCTOR_DATA_DIR={str(folder)!r} is not a writable folder ({exc.strerror or exc}): "
                          "face images, evidence and recordings are stored there; point it at a folder "
                          "this server's user may write") from None
