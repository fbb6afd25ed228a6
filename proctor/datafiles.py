"""Files the app keeps under PROCTOR_DATA_DIR (face images, evidence, recordings), found safely."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import current_app

log = logging.getLogger(__name__)


def data_dir() -> Path:
    return Path(current_app.config["PROCTOR_DATA_DIR"]).resolve()


def stored_file(stored: str | None, what: str) -> Path | None:
    """The existing file a stored path names, only if it lies inside the data folder.

    Stored paths are relative to the data folder; whatever a row says (absolute, `..`), nothing
    outside that folder is ever served. `what` names the row in the log line of a refusal."""
    if not stored:
        return None
    root = data_dir()
    raw = Path(stored)
    path = (raw if raw.is_absolute() else root / raw).resolve()
    if not path.is_relative_to(root):
        log.warning("%s: stored path %r is outside the data folder; refused", what, stored)
        return None
    return path if path.is_file() else None
