"""What the runtime must not lose when the database blinks: violations it could not store yet, and the
browser events it already took.

ViolationQueue: a violation whose save raised waits here, in order, and the loop retries the oldest
with back-off (RETRY_FIRST_S doubling to RETRY_MAX_S, plus jitter). The queue is also a JSON-lines
file under the data directory (outbox/violations.jsonl, rewritten whole on each change: it holds a
handful of records at most), read back when the runtime is made, so a restart replays it. Each
record carries its client_id (a UUID made when the warning was issued) and the store's insert is
idempotent on it, so a save that reached the database but whose reply was lost is stored once.
A LiveError from the store is definitive (the session was deleted): the record is dropped, logged.

SeenEvents: the client ids of the browser events taken, per session, bounded (the page's outbox
retries an event whose reply it did not get; the repeat must count once). In memory: the runtime
holding a student's stream is the one process that takes that student's events.
"""
from __future__ import annotations

import json
import logging
import os
import random
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .store import LiveError, LiveStore, ViolationRecord

log = logging.getLogger(__name__)

RETRY_FIRST_S = 1.0        # the first retry of a violation the store refused
RETRY_MAX_S = 30.0         # the longest wait between two retries
RETRY_JITTER = 0.2         # up to this fraction of the wait is added at random (many runtimes, one database)
SEEN_EVENTS_PER_SESSION = 512   # browser-event client ids remembered per session (the page retries the newest)
SEEN_SESSIONS_MAX = 4096


@dataclass
class PendingViolation:
    record: ViolationRecord
    attempts: int = 0
    next_mono: float = field(default=0.0)


class ViolationQueue:
    def __init__(self, store: LiveStore, data_dir: str | os.PathLike, on_stored: Callable[[ViolationRecord, int], None],
                 monotonic: Callable[[], float] = time.monotonic):
        self.store = store
        self.on_stored = on_stored
        self.monotonic = monotonic
        self.path = Path(data_dir) / "outbox" / "violations.jsonl"
        self.first_s, self.max_s = RETRY_FIRST_S, RETRY_MAX_S
        self.pending: list[PendingViolation] = self._load()
        self.dropped = 0
        if self.pending:
            log.warning("%d violation(s) from before the restart are queued for storing", len(self.pending))

    def __len__(self) -> int:
        return len(self.pending)

    def submit(self, record: ViolationRecord) -> int | None:
        """Store now when nothing waits before it; else (or when the store fails) queue it. The id, or None if queued."""
        item = PendingViolation(record)
        if not self.pending:
            vid = self._try(item)
            if vid is not None:
                return vid
        if item.record is not None:
            self.pending.append(item)
            self._save()
            log.warning("violation queued for storing session=%s rule=%s client_id=%s (queue %d)",
                        record.session_id, record.type, record.client_id, len(self.pending))
        return None

    def retry_due(self) -> bool:
        """Retry the oldest queued violations whose wait is over, in order; stop at the first that fails."""
        done = False
        while self.pending and self.pending[0].next_mono <= self.monotonic():
            item = self.pending[0]
            vid = self._try(item)
            if vid is None and item.record is not None:
                break
            self.pending.pop(0)
            self._save()
            done = True
            if vid is not None:
                log.info("queued violation stored id=%s session=%s rule=%s after %d attempt(s)", vid,
                         item.record.session_id, item.record.type, item.attempts + 1)
                self.on_stored(item.record, vid)
        return done

    def _try(self, item: PendingViolation) -> int | None:
        try:
            return self.store.save_violation(item.record)
        except LiveError as exc:  # definitive: e.g. the session is gone
            log.error("violation dropped session=%s rule=%s: %s", item.record.session_id, item.record.type, exc)
            self.dropped += 1
            item.record = None
            return None
        except Exception as exc:  # noqa: BLE001 - the database is down or blinked: retry later
            item.attempts += 1
            wait = min(self.max_s, self.first_s * 2 ** (item.attempts - 1))
            item.next_mono = self.monotonic() + wait * (1 + random.uniform(0, RETRY_JITTER))
            log.warning("violation not stored yet session=%s rule=%s (attempt %d, retry in %.1f s): %s",
                        item.record.session_id, item.record.type, item.attempts, wait, exc)
            return None

    def _load(self) -> list[PendingViolation]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.error("violation queue %s not read: %s", self.path, exc)
            return []
        items = []
        for line in lines:
            try:
                items.append(PendingViolation(ViolationRecord(**json.loads(line))))
            except (ValueError, TypeError) as exc:
                log.error("violation queue: a line not read (%s): %.200s", exc, line)
        return items

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(asdict(i.record), default=str) + "\n" for i in self.pending),
                           encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:  # the disk is full: the queue still holds them in memory
            log.error("violation queue not written to %s: %s", self.path, exc)


class SeenEvents:
    def __init__(self, per_session: int = SEEN_EVENTS_PER_SESSION, sessions: int = SEEN_SESSIONS_MAX):
        self.per_session, self.sessions = per_session, sessions
        self._ids: OrderedDict[int, OrderedDict[str, None]] = OrderedDict()

    def __contains__(self, key: tuple[int, str]) -> bool:
        session_id, client_id = key
        return client_id in self._ids.get(session_id, ())

    def add(self, session_id: int, client_id: str) -> None:
        ids = self._ids.setdefault(session_id, OrderedDict())
        self._ids.move_to_end(session_id)
        ids[client_id] = None
        while len(ids) > self.per_session:
            ids.popitem(last=False)
        while len(self._ids) > self.sessions:
            self._ids.popitem(last=False)
