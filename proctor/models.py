"""Database tables. Column names follow the product's schema (examproctordb.sql).

Every foreign key that ties a row to a student or a session cascades on delete, so
removing a student removes their sessions, answers, results, violations and profile.
"""
from __future__ import annotations

import enum
import json
import unicodedata
from datetime import datetime, timezone

from flask_login import UserMixin
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


def utcnow() -> datetime:
    """Naive UTC (MySQL DATETIME has no zone); every timestamp in the database is UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Role(str, enum.Enum):
    ADMIN = "ADMIN"
    STUDENT = "STUDENT"


class SessionStatus(str, enum.Enum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    TERMINATED = "TERMINATED"


class ResultStatus(str, enum.Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    TERMINATED = "TERMINATED"


class ScreenShare(str, enum.Enum):
    """Whether the exam page must share the student's entire screen."""
    OFF = "off"
    REQUIRED = "required"


class DisplaysPolicy(str, enum.Enum):
    """What a second display does: nothing, a MULTIPLE_DISPLAYS warning, or no start until it is gone."""
    OFF = "off"
    WARN = "warn"
    BLOCK = "block"


class MessageSender(str, enum.Enum):
    PROCTOR = "proctor"
    STUDENT = "student"


class ReviewStatus(str, enum.Enum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    DISMISSED = "DISMISSED"


def _in(values) -> str:
    return ", ".join(f"'{v.value}'" for v in values)


# Field length limits shared by the forms and the tables.
NAME_MAX = 100
EMAIL_MAX = 254
PASSWORD_MIN = 8
PASSWORD_MAX = 128  # bcrypt reads 72 bytes; longer passwords are pre-hashed (see security.py)


def normalise_email(email: str | None) -> str:
    """The one normal form of an email address: stored, looked up, and the rate-limit key.

    NFKC (fullwidth and compatibility forms become plain letters), invisible format characters
    (Unicode category Cf: U+200B..U+200D, U+2060, U+FEFF...) removed, spaces trimmed, lower case.
    MariaDB's utf8mb4_unicode_ci ignores those characters in comparisons, so without this
    `admin\u200b@x` would reach admin@x's account under a rate-limit key of its own.
    """
    text = unicodedata.normalize("NFKC", email or "")
    return "".join(c for c in text if unicodedata.category(c) != "Cf").strip().lower()


def fold_email(email: str | None) -> str:
    """The normal form with accents dropped (NFKD, combining marks removed): `ádmin@x` -> `admin@x`.

    Two addresses with the same fold may not both have an account (MariaDB's collation would
    confuse them, and so would a person reading them); lookups still compare the normal form.
    """
    text = unicodedata.normalize("NFKD", normalise_email(email))
    return unicodedata.normalize("NFC", "".join(c for c in text if not unicodedata.combining(c)))


class User(UserMixin, db.Model):
    """An account: a student or an admin (the `Role` column). The table keeps the product's name, `students`."""

    __tablename__ = "students"
    __table_args__ = (CheckConstraint(f"Role IN ({_in(Role)})", name="role"),)

    id: Mapped[int] = mapped_column("ID", Integer, primary_key=True)
    name: Mapped[str] = mapped_column("Name", String(NAME_MAX), nullable=False)
    email: Mapped[str] = mapped_column("Email", String(EMAIL_MAX), nullable=False, unique=True)
    # fold_email(email): the index for lookups and for refusing a second account whose address
    # differs only by accents. Kept in step by the "set" listener below (ORM) and the insert default
    # (bulk inserts through the table).
    email_folded: Mapped[str] = mapped_column("EmailFolded", String(EMAIL_MAX), nullable=False, index=True,
                                              default=lambda ctx: fold_email(ctx.get_current_parameters()["Email"]))
    password_hash: Mapped[str] = mapped_column("PasswordHash", String(100), nullable=False)
    role: Mapped[str] = mapped_column("Role", String(16), nullable=False, default=Role.STUDENT.value)
    is_active_account: Mapped[bool] = mapped_column("IsActive", Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column("CreatedAt", DateTime, nullable=False, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column("LastLoginAt", DateTime)
    rules_accepted_version: Mapped[str | None] = mapped_column("RulesAcceptedVersion", String(32))
    rules_accepted_at: Mapped[datetime | None] = mapped_column("RulesAcceptedAt", DateTime)
    # Part of the login id (get_id): raising it ends every session and remember-me cookie of the
    # account. Raised when the password changes (listener below) and at logout.
    session_version: Mapped[int] = mapped_column("SessionVersion", Integer, nullable=False, default=0, server_default="0")

    profile: Mapped["Profile | None"] = relationship(back_populates="student", cascade="all, delete-orphan", passive_deletes=True, uselist=False)

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive accounts
        return bool(self.is_active_account)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN.value

    def get_id(self) -> str:
        """Flask-Login's id in the session and the remember cookie: "<id>:<session version>"."""
        return f"{self.id}:{self.session_version or 0}"

    def end_sessions(self) -> None:
        """Sign the account out everywhere (takes effect at commit)."""
        self.session_version = (self.session_version or 0) + 1


@event.listens_for(User.email, "set")
def _fold_email_on_set(user, value, _old, _initiator):
    user.email_folded = fold_email(value)


@event.listens_for(User.password_hash, "set", active_history=True)
def _end_sessions_on_new_password(user, value, old, _initiator):
    # A new account's first hash has no old value (a symbol, not text): nothing to end then.
    if isinstance(old, str) and old != value:
        user.end_sessions()


class Profile(db.Model):
    """Face registration: the image on disk and its 128-d embedding."""

    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.ID", ondelete="CASCADE"), nullable=False, unique=True)
    image_path: Mapped[str | None] = mapped_column(String(255))
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # float64 little-endian, 128 values
    quality: Mapped[str | None] = mapped_column(Text)  # JSON: size, brightness, blur measured at registration
    registered_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow, onupdate=utcnow)

    student: Mapped[User] = relationship(back_populates="profile")


class Exam(db.Model):
    __tablename__ = "exams"

    id: Mapped[int] = mapped_column("ExamID", Integer, primary_key=True)
    title: Mapped[str] = mapped_column("Title", String(200), nullable=False)
    description: Mapped[str] = mapped_column("Description", Text, nullable=False, default="")
    duration_minutes: Mapped[int] = mapped_column("DurationMinutes", Integer, nullable=False, default=30)
    pass_mark_percent: Mapped[int] = mapped_column("PassMarkPercent", Integer, nullable=False, default=50)
    is_published: Mapped[bool] = mapped_column("IsPublished", Boolean, nullable=False, default=False)
    auto_terminate: Mapped[bool] = mapped_column("AutoTerminate", Boolean, nullable=False, default=False)
    disabled_rules: Mapped[str] = mapped_column("DisabledRules", String(500), nullable=False, default="")
    # JSON object of config_vision overrides for this exam ({"TIME_NO_FACE_S": 5.0}), validated against its bounds.
    thresholds: Mapped[str] = mapped_column("Thresholds", Text, nullable=False, default="{}")
    # Identity confirmation before the exam must include a liveness step (blink or head turn).
    require_liveness: Mapped[bool] = mapped_column("RequireLiveness", Boolean, nullable=False, default=True, server_default="1")
    # Beyond the webcam (issue 16): the entire screen shared and captured every N seconds; a second
    # display warned about or blocking the start; copy/cut/paste blocked on the exam page; a room scan
    # recorded before the exam.
    screen_share: Mapped[str] = mapped_column("ScreenShare", String(16), nullable=False, default=ScreenShare.OFF.value,
                                              server_default=ScreenShare.OFF.value)
    screenshot_interval_s: Mapped[int] = mapped_column("ScreenshotIntervalS", Integer, nullable=False, default=15, server_default="15")
    displays_policy: Mapped[str] = mapped_column("DisplaysPolicy", String(16), nullable=False, default=DisplaysPolicy.WARN.value,
                                                 server_default=DisplaysPolicy.WARN.value)
    block_copy_paste: Mapped[bool] = mapped_column("BlockCopyPaste", Boolean, nullable=False, default=False, server_default="0")
    require_room_scan: Mapped[bool] = mapped_column("RequireRoomScan", Boolean, nullable=False, default=False, server_default="0")
    created_by: Mapped[int | None] = mapped_column("CreatedBy", ForeignKey("students.ID", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column("CreatedAt", DateTime, nullable=False, default=utcnow)

    questions: Mapped[list["Question"]] = relationship(
        back_populates="exam", cascade="all, delete-orphan", passive_deletes=True, order_by="Question.position"
    )


class Question(db.Model):
    """A multiple-choice question. `correct_index` is the answer key: it never leaves the server."""

    __tablename__ = "questions"

    id: Mapped[int] = mapped_column("QuestionID", Integer, primary_key=True)
    exam_id: Mapped[int] = mapped_column("ExamID", ForeignKey("exams.ExamID", ondelete="CASCADE"), nullable=False, index=True)
    text: Mapped[str] = mapped_column("Text", Text, nullable=False)
    options_json: Mapped[str] = mapped_column("Options", Text, nullable=False)  # JSON list of 2-6 strings
    correct_index: Mapped[int] = mapped_column("CorrectIndex", Integer, nullable=False)
    position: Mapped[int] = mapped_column("Position", Integer, nullable=False, default=0)
    points: Mapped[int] = mapped_column("Points", Integer, nullable=False, default=1)

    exam: Mapped[Exam] = relationship(back_populates="questions")

    @property
    def options(self) -> list[str]:
        return json.loads(self.options_json)

    @options.setter
    def options(self, values: list[str]) -> None:
        self.options_json = json.dumps(list(values))


class ExamSession(db.Model):
    __tablename__ = "exam_sessions"
    __table_args__ = (CheckConstraint(f"Status IN ({_in(SessionStatus)})", name="status"),)

    id: Mapped[int] = mapped_column("SessionID", Integer, primary_key=True)
    student_id: Mapped[int] = mapped_column("StudentID", ForeignKey("students.ID", ondelete="CASCADE"), nullable=False, index=True)
    exam_id: Mapped[int] = mapped_column("ExamID", ForeignKey("exams.ExamID", ondelete="CASCADE"), nullable=False, index=True)
    status: Mapped[str] = mapped_column("Status", String(16), nullable=False, default=SessionStatus.IN_PROGRESS.value)
    started_at: Mapped[datetime] = mapped_column("StartedAt", DateTime, nullable=False, default=utcnow)
    deadline: Mapped[datetime] = mapped_column("Deadline", DateTime, nullable=False)
    ended_at: Mapped[datetime | None] = mapped_column("EndedAt", DateTime)
    termination_reason: Mapped[str | None] = mapped_column("TerminationReason", String(255))
    question_order: Mapped[str] = mapped_column("QuestionOrder", Text, nullable=False, default="[]")
    auto_terminate: Mapped[bool | None] = mapped_column("AutoTerminate", Boolean)  # None: the exam's setting
    disabled_rules: Mapped[str] = mapped_column("DisabledRules", String(500), nullable=False, default="")
    identity_confirmed_at: Mapped[datetime | None] = mapped_column("IdentityConfirmedAt", DateTime)
    identity_distance: Mapped[float | None] = mapped_column("IdentityDistance", Float)  # face distance at confirmation
    identity_liveness: Mapped[str | None] = mapped_column("IdentityLiveness", String(64))  # how liveness passed, or "not required"
    # Minutes a proctor granted during the exam (the deadline already includes them; audited as live.extra_time).
    extra_minutes: Mapped[int] = mapped_column("ExtraMinutes", Integer, nullable=False, default=0, server_default="0")

    student: Mapped[User] = relationship()
    exam: Mapped[Exam] = relationship()


class Answer(db.Model):
    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("SessionID", "QuestionID"),)

    id: Mapped[int] = mapped_column("AnswerID", Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column("SessionID", ForeignKey("exam_sessions.SessionID", ondelete="CASCADE"), nullable=False)
    question_id: Mapped[int] = mapped_column("QuestionID", ForeignKey("questions.QuestionID", ondelete="CASCADE"), nullable=False, index=True)
    selected_index: Mapped[int | None] = mapped_column("SelectedIndex", Integer)
    flagged: Mapped[bool] = mapped_column("Flagged", Boolean, nullable=False, default=False)
    answered_at: Mapped[datetime] = mapped_column("AnsweredAt", DateTime, nullable=False, default=utcnow, onupdate=utcnow)
    # The exam page's increasing number of the save that wrote this row: an older save arriving late is ignored.
    client_seq: Mapped[int | None] = mapped_column("ClientSeq", BigInteger)


class ExamResult(db.Model):
    __tablename__ = "exam_results"
    __table_args__ = (CheckConstraint(f"Status IN ({_in(ResultStatus)})", name="status"),)

    id: Mapped[int] = mapped_column("ResultID", Integer, primary_key=True)
    student_id: Mapped[int] = mapped_column("StudentID", ForeignKey("students.ID", ondelete="CASCADE"), nullable=False, index=True)
    session_id: Mapped[int] = mapped_column("SessionID", ForeignKey("exam_sessions.SessionID", ondelete="CASCADE"), nullable=False, unique=True)
    exam_id: Mapped[int] = mapped_column("ExamID", ForeignKey("exams.ExamID", ondelete="CASCADE"), nullable=False, index=True)
    score: Mapped[int] = mapped_column("Score", Integer, nullable=False, default=0)
    total: Mapped[int] = mapped_column("Total", Integer, nullable=False, default=0)
    percentage: Mapped[float] = mapped_column("Percentage", Float, nullable=False, default=0.0)
    grade: Mapped[str] = mapped_column("Grade", String(8), nullable=False, default="")
    status: Mapped[str] = mapped_column("Status", String(16), nullable=False)
    outcome: Mapped[str | None] = mapped_column("Outcome", String(16))  # reviewer's: CLEAR / SUSPICIOUS / VIOLATION
    created_at: Mapped[datetime] = mapped_column("CreatedAt", DateTime, nullable=False, default=utcnow)


class Violation(db.Model):
    __tablename__ = "violations"
    __table_args__ = (CheckConstraint(f"ReviewStatus IN ({_in(ReviewStatus)})", name="review_status"),)

    id: Mapped[int] = mapped_column("ViolationID", Integer, primary_key=True)
    student_id: Mapped[int] = mapped_column("StudentID", ForeignKey("students.ID", ondelete="CASCADE"), nullable=False, index=True)
    session_id: Mapped[int] = mapped_column("SessionID", ForeignKey("exam_sessions.SessionID", ondelete="CASCADE"), nullable=False, index=True)
    type: Mapped[str] = mapped_column("Type", String(40), nullable=False)
    severity: Mapped[str] = mapped_column("Severity", String(16), nullable=False, default="medium")
    details: Mapped[str] = mapped_column("Details", Text, nullable=False, default="{}")
    timestamp: Mapped[datetime] = mapped_column("Timestamp", DateTime, nullable=False, default=utcnow, index=True)
    evidence_path: Mapped[str | None] = mapped_column("EvidencePath", String(255))
    clip_path: Mapped[str | None] = mapped_column("ClipPath", String(255))
    review_status: Mapped[str] = mapped_column("ReviewStatus", String(16), nullable=False, default=ReviewStatus.PENDING.value)
    review_note: Mapped[str | None] = mapped_column("ReviewNote", Text)
    reviewed_by: Mapped[int | None] = mapped_column("ReviewedBy", ForeignKey("students.ID", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None] = mapped_column("ReviewedAt", DateTime)
    # The live runtime's UUID for this violation, made when the warning was issued: a retried save stores it once.
    client_id: Mapped[str | None] = mapped_column("ClientID", String(36), unique=True, index=True)


class Recording(db.Model):
    """A stored media file of a session: an audio chunk from the exam page, or evidence."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("exam_sessions.SessionID", ondelete="CASCADE"), nullable=False, index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.ID", ondelete="CASCADE"), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # audio, evidence, screen (a screenshot of the shared screen)
    path: Mapped[str] = mapped_column(String(255), nullable=False)  # relative to PROCTOR_DATA_DIR
    mime: Mapped[str] = mapped_column(String(64), nullable=False)
    bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    sequence: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # chunk number from the page
    started_at: Mapped[datetime | None] = mapped_column(DateTime)  # when the chunk's recording began (client clock)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class RoomScan(db.Model):
    """The guided clip of the desk and room a student records before an exam that asks for one.

    Recorded before the session exists (on the ready page); the session's start attaches the
    student's latest unattached scan of that exam (session_id), and review shows it first."""

    __tablename__ = "room_scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.ID", ondelete="CASCADE"), nullable=False, index=True)
    exam_id: Mapped[int] = mapped_column(ForeignKey("exams.ExamID", ondelete="CASCADE"), nullable=False, index=True)
    session_id: Mapped[int | None] = mapped_column(ForeignKey("exam_sessions.SessionID", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(255), nullable=False)  # relative to PROCTOR_DATA_DIR
    mime: Mapped[str] = mapped_column(String(64), nullable=False)
    bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class SessionMessage(db.Model):
    """A message between a proctor and a student during a session: the proctor's text (free or a
    preset) that the student acknowledges, or the student's raised hand."""

    __tablename__ = "session_messages"
    __table_args__ = (CheckConstraint(f"sender IN ({_in(MessageSender)})", name="sender"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("exam_sessions.SessionID", ondelete="CASCADE"), nullable=False, index=True)
    student_id: Mapped[int] = mapped_column(ForeignKey("students.ID", ondelete="CASCADE"), nullable=False, index=True)
    sender: Mapped[str] = mapped_column(String(16), nullable=False)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("students.ID", ondelete="SET NULL"))  # who wrote it
    preset: Mapped[str | None] = mapped_column(String(32))  # the preset's key when one was chosen
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow, index=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime)  # the student's "understood" (proctor messages)


class AuditLog(db.Model):
    """One row per admin action: who did what to which record, and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("students.ID", ondelete="SET NULL"), index=True)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    client_address: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow, index=True)
