"""The app settings the live runtime reads, handed in by the web layer (proctor.live.init_app).

They are validated where every app setting is (proctor/settings.py, the PROCTOR_LIVE_* rows and
their neighbours); this is only the runtime's own view of them, so the runtime never reads an
app's config itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class LiveSettings:
    data_dir: str                      # PROCTOR_DATA_DIR: evidence snapshots and clips go under it
    enabled: bool = True               # PROCTOR_LIVE_ENABLED: run the vision workers at all
    workers: int = 2                   # PROCTOR_LIVE_WORKERS
    preroll_s: float = 8.0             # PROCTOR_LIVE_PREROLL_S: a clip starts this long before its condition began
    postroll_s: float = 3.0            # PROCTOR_LIVE_POSTROLL_S: ... and ends this long after its rule fired
    status_every_s: float = 1.0        # PROCTOR_LIVE_STATUS_EVERY_S
    loop_stall_s: float = 30.0         # PROCTOR_LIVE_STALL_S: no loop pass for longer -> /api/health 503
    log_level: str = "INFO"            # PROCTOR_LIVE_LOG_LEVEL
    vision_overrides: Mapping[str, Any] = field(default_factory=dict)  # PROCTOR_VISION_OVERRIDES
    async_mode: str = "threading"      # PROCTOR_ASYNC_MODE (reported in the pipeline status)
    broker_url: str = ""               # PROCTOR_BROKER_URL: set -> analysis on Celery workers (remote.py)
    broker_namespace: str = "proctor"  # PROCTOR_BROKER_NAMESPACE

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "LiveSettings":
        """From an app's validated settings (the keys of proctor/settings.py)."""
        return cls(
            data_dir=str(config["PROCTOR_DATA_DIR"]),
            enabled=bool(config["PROCTOR_LIVE_ENABLED"]),
            workers=int(config["PROCTOR_LIVE_WORKERS"]),
            preroll_s=float(config["PROCTOR_LIVE_PREROLL_S"]),
            postroll_s=float(config["PROCTOR_LIVE_POSTROLL_S"]),
            status_every_s=float(config["PROCTOR_LIVE_STATUS_EVERY_S"]),
            loop_stall_s=float(config["PROCTOR_LIVE_STALL_S"]),
            log_level=str(config["PROCTOR_LIVE_LOG_LEVEL"]),
            vision_overrides=dict(config.get("PROCTOR_VISION_OVERRIDES") or {}),
            async_mode=str(config.get("PROCTOR_ASYNC_MODE") or "threading"),
            broker_url=str(config.get("PROCTOR_BROKER_URL") or ""),
            broker_namespace=str(config.get("PROCTOR_BROKER_NAMESPACE") or "proctor"),
        )
