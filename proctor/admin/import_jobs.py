"""The CSV import of students as a background job, so bcrypt never runs on the event loop.

The request only parses and checks the file (header, row count) and starts a job; the job runs
as a Socket.IO background task (a green thread under eventlet) in its own app context: each row
is checked, its password hashed off the event loop (blocking.run_blocking: eventlet's native
thread pool) and the account inserted. Progress, created accounts and per-row errors live in
this process's memory for JOB_KEEP_S; the page polls them. The import is audited once, when the
job ends (student.import, with the counts).

One server process owns a job: several processes behind a balancer need sticky sessions for the
progress page (the accounts themselves are in the database either way).
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field


from ..accounts import AccountError, create_account, email_taken, normalise_email
from ..blocking import run_blocking
from ..extensions import db, socketio
from ..models import EMAIL_MAX, NAME_MAX, PASSWORD_MAX, PASSWORD_MIN, Role
from ..security import hash_password
from .fields import FieldError, text_field

log = logging.getLogger(__name__)

JOB_KEEP_S = 3600
HASH_TIMEOUT_S = 60.0


@dataclass
class ImportJob:
    admin_id: int
    total: int
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    done: int = 0
    created: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    finished: bool = False
    failure: str | None = None  # the whole job stopped (e.g. the database went away)
    started: float = field(default_factory=time.monotonic)
    passwords_shown: bool = False

    @property
    def percent(self) -> int:
        return 100 if not self.total else round(100 * self.done / self.total)


_jobs: dict[str, ImportJob] = {}
_lock = threading.Lock()


def job_for(job_id: str, admin_id: int) -> ImportJob | None:
    """The job, only for the admin who started it."""
    with _lock:
        job = _jobs.get(job_id)
    return job if job is not None and job.admin_id == admin_id else None


def start_import(app, admin_id: int, rows: list[tuple[int, dict]], email_check) -> ImportJob:
    """A job for the checked rows [(line, cells)], started in the background; returns at once."""
    job = ImportJob(admin_id=admin_id, total=len(rows))
    now = time.monotonic()
    with _lock:
        for key in [k for k, j in _jobs.items() if j.finished and now - j.started > JOB_KEEP_S]:
            del _jobs[key]
        _jobs[job.id] = job
    rounds = int(app.config["BCRYPT_LOG_ROUNDS"])
    socketio.start_background_task(_run, app, job, rows, rounds, email_check)
    log.info("student import %s started by admin %s: %s rows", job.id, admin_id, len(rows))
    return job


def _run(app, job: ImportJob, rows, rounds: int, email_check) -> None:
    from ..audit import record

    with app.app_context():
        try:
            seen: set[str] = set()
            for line, cells in rows:
                _import_row(job, line, cells, rounds, email_check, seen)
                job.done += 1
        except Exception as exc:  # noqa: BLE001 - the job must end and say so, whatever broke
            db.session.rollback()
            job.failure = "the import stopped on a server error; the rows listed as created were saved"
            log.exception("student import %s stopped at row %s of %s: %s", job.id, job.done + 1, job.total, exc)
        finally:
            try:
                record(job.admin_id, "student.import", "student", None, created=len(job.created), failed=len(job.errors),
                       rows=job.total, stopped=bool(job.failure))
            except Exception:  # noqa: BLE001
                log.exception("student import %s: the audit row could not be written", job.id)
            db.session.remove()
            job.finished = True
            log.info("student import %s finished: %s created, %s rejected", job.id, len(job.created), len(job.errors))


def _import_row(job: ImportJob, line: int, row: dict, rounds: int, email_check, seen: set) -> None:
    if None in row:  # more cells than columns
        job.errors.append({"line": line, "email": (row.get("email") or "")[:EMAIL_MAX], "error": "too many cells in this row"})
        return
    cells = {k: (v or "") for k, v in row.items()}
    try:
        name = text_field(cells, "name", "Name", NAME_MAX)
        email = normalise_email(email_check(cells))
        if email in seen:
            raise FieldError("email", "Email appears twice in this file.")
        seen.add(email)
        password = cells.get("password", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(9)
        elif not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
            raise FieldError("password", f"Password must be {PASSWORD_MIN} to {PASSWORD_MAX} characters.")
        if email_taken(email):
            raise FieldError("email", "An account with this email already exists.")
        # bcrypt is the slow part (cost 12: about 0.4 s a row): off the event loop.
        password_hash = run_blocking(hash_password, password, rounds, timeout_s=HASH_TIMEOUT_S)
        try:
            student = create_account(name, email, None, Role.STUDENT.value, password_hash=password_hash)
        except AccountError as exc:  # an account made meanwhile with the same email, or a bad field
            raise FieldError("email", str(exc).capitalize() + ".") from None
    except FieldError as exc:
        job.errors.append({"line": line, "email": cells.get("email", "")[:EMAIL_MAX], "error": exc.message})
    else:
        job.created.append({"line": line, "id": student.id, "email": student.email, "name": student.name,
                            "password": password if generated else None})
