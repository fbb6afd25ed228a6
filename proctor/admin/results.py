"""Admin: results (filters), per-session review (answers, violations, timeline, evidence, decisions, outcome),
recordings and the printable per-session report."""
from __future__ import annotations

import json
import logging
import mimetypes
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from flask import abort, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user
from sqlalchemy import func, select

from .. import wording
from ..datafiles import stored_file
from ..extensions import db
from ..models import (
    Answer,
    Exam,
    ExamResult,
    ExamSession,
    Question,
    Recording,
    ResultStatus,
    ReviewStatus,
    User,
    Violation,
    utcnow,
)
from ..security import ADMIN, access
from . import bp
from .fields import FieldError, audit, get_or_404, paginate, query_int, text_field
from .screens import screenshots_for

log = logging.getLogger(__name__)

OUTCOMES = ("CLEAR", "SUSPICIOUS", "VIOLATION")
DECISIONS = {"confirm": ReviewStatus.CONFIRMED.value, "dismiss": ReviewStatus.DISMISSED.value,
             "reopen": ReviewStatus.PENDING.value}
NOTE_MAX = 1000
MEDIA_TYPES = {".webm": "audio/webm", ".ogg": "audio/ogg", ".oga": "audio/ogg", ".wav": "audio/wav", ".mp3": "audio/mpeg",
               ".m4a": "audio/mp4", ".mp4": "video/mp4", ".opus": "audio/ogg"}


# --- filters shared by the results page and the CSV export --------------------------------

@dataclass
class ResultFilters:
    exam_id: int | None = None
    status: str = ""
    outcome: str = ""
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    errors: tuple = ()

    def as_args(self) -> dict:
        """The filters as query arguments (the pager keeps them from page to page)."""
        args = {"exam": self.exam_id or "", "status": self.status, "outcome": self.outcome,
                "from": self.date_from.isoformat() if self.date_from else "",
                "to": self.date_to.isoformat() if self.date_to else "", "q": self.q}
        return {k: v for k, v in args.items() if v}



def _parse_date(name: str, errors: list) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        errors.append(f"'{name}' must be a date like 2026-01-31; ignored.")
        return None


def read_filters() -> ResultFilters:
    errors: list[str] = []
    exam_raw = request.args.get("exam", "").strip()
    exam_id = int(exam_raw) if exam_raw.isascii() and exam_raw.isdigit() and len(exam_raw) < 10 else None
    if exam_raw and exam_id is None:
        errors.append("'exam' must be an exam id; ignored.")
    status = request.args.get("status", "").strip().upper()
    if status and status not in {s.value for s in ResultStatus}:
        errors.append(f"Unknown status {status[:20]!r}; ignored.")
        status = ""
    outcome = request.args.get("outcome", "").strip().upper()
    if outcome and outcome not in OUTCOMES + ("NONE",):
        errors.append(f"Unknown outcome {outcome[:20]!r}; ignored.")
        outcome = ""
    f = ResultFilters(exam_id=exam_id, status=status, outcome=outcome, date_from=_parse_date("from", errors),
                      date_to=_parse_date("to", errors), q=request.args.get("q", "").strip()[:100])
    f.errors = tuple(errors)
    return f


def results_query(f: ResultFilters):
    """(ExamResult, User, Exam, ExamSession) rows matching the filters, newest first."""
    stmt = (select(ExamResult, User, Exam, ExamSession)
            .join(User, User.id == ExamResult.student_id)
            .join(Exam, Exam.id == ExamResult.exam_id)
            .join(ExamSession, ExamSession.id == ExamResult.session_id))
    if f.exam_id:
        stmt = stmt.where(ExamResult.exam_id == f.exam_id)
    if f.status:
        stmt = stmt.where(ExamResult.status == f.status)
    if f.outcome == "NONE":
        stmt = stmt.where(ExamResult.outcome.is_(None))
    elif f.outcome:
        stmt = stmt.where(ExamResult.outcome == f.outcome)
    if f.date_from:
        stmt = stmt.where(ExamSession.started_at >= datetime.combine(f.date_from, time.min))
    if f.date_to:
        stmt = stmt.where(ExamSession.started_at < datetime.combine(f.date_to + timedelta(days=1), time.min))
    if f.q:
        pattern = "%" + f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(User.name.ilike(pattern, escape="\\") | User.email.ilike(pattern, escape="\\"))
    return stmt.order_by(ExamResult.created_at.desc(), ExamResult.id.desc())


def violation_counts(session_ids: list[int]) -> dict[int, dict]:
    """session id -> {"total", "pending", "confirmed", "dismissed"}."""
    out: dict[int, dict] = {sid: {"total": 0, "PENDING": 0, "CONFIRMED": 0, "DISMISSED": 0} for sid in session_ids}
    if not session_ids:
        return out
    rows = db.session.execute(select(Violation.session_id, Violation.review_status, func.count())
                              .where(Violation.session_id.in_(session_ids))
                              .group_by(Violation.session_id, Violation.review_status)).all()
    for sid, status, n in rows:
        out[sid][status] = n
        out[sid]["total"] += n
    return out


@bp.route("/results")
@access(ADMIN)
def results():
    f = read_filters()
    page = paginate(results_query(f), query_int("page", 1), scalars=False)
    counts = violation_counts([row.ExamSession.id for row in page.items])
    exams = db.session.execute(select(Exam.id, Exam.title).order_by(Exam.title)).all()
    in_progress = db.session.execute(
        select(ExamSession, User, Exam).join(User, User.id == ExamSession.student_id)
        .join(Exam, Exam.id == ExamSession.exam_id).where(ExamSession.status == "IN_PROGRESS")
        .order_by(ExamSession.started_at.desc()).limit(50)).all()
    return render_template("admin/results.html", page=page, f=f, counts=counts, exams=exams, statuses=[s.value for s in ResultStatus],
                           outcomes=OUTCOMES, in_progress=in_progress)


# --- one session ---------------------------------------------------------------------------

def stored_details(v: Violation) -> dict:
    """A violation's stored details as a dict; unreadable JSON becomes a marker, never an error on a page."""
    try:
        data = json.loads(v.details or "{}")
    except ValueError:
        return {"unreadable": v.details[:200]}
    return data if isinstance(data, dict) else {"value": data}


def _session_end(session: ExamSession, violations: list[Violation]) -> datetime:
    end = session.ended_at or min(max(utcnow(), session.started_at), session.deadline)
    if violations:
        end = max(end, violations[-1].timestamp)
    return max(end, session.started_at + timedelta(seconds=1))


def build_timeline(session: ExamSession, violations: list[Violation], width: int = 760, screenshots=()) -> dict:
    """Coordinates for the server-drawn SVG: a lane per violation type and the suspicion line
    (and, when the session has screenshots of the shared screen, a "Screen" lane of them).

    Suspicion is the score the live runtime recorded with each violation (details["suspicion"]);
    if it recorded none, the line shows the running count of violations instead, and says so.
    """
    left, right, lane_h, top = 150, 20, 26, 20
    start, end = session.started_at, _session_end(session, violations)
    span = (end - start).total_seconds()
    plot_w = width - left - right

    def x(ts: datetime) -> float:
        return round(left + plot_w * min(max((ts - start).total_seconds() / span, 0.0), 1.0), 1)

    types = sorted({v.type for v in violations})
    lanes = [{"type": t, "title": wording.violation_wording(t).title, "y": top + i * lane_h + lane_h / 2}
             for i, t in enumerate(types)]
    # --- screen sharing (issue 16): one lane of the screenshots at their capture times
    shots = []
    if screenshots:
        lanes.append({"type": "SCREEN", "title": "Screen", "y": top + len(lanes) * lane_h + lane_h / 2})
        shots = [{"x": x(r.started_at or r.created_at), "y": lanes[-1]["y"], "id": r.id,
                  "label": f"Screenshot at {wording.format_offset(((r.started_at or r.created_at) - start).total_seconds())}"}
                 for r in screenshots]
    # --- end of screen sharing
    lane_y = {lane["type"]: lane["y"] for lane in lanes}
    incidents = group_incidents(session, violations)
    incident_of = {p["id"]: inc["number"] for inc in incidents for p in inc["parts"] if inc["number"]}
    markers = [{"x": x(v.timestamp), "y": lane_y[v.type], "id": v.id, "status": v.review_status.lower(),
                "label": f"{wording.violation_wording(v.type).title} at "
                         f"{wording.format_offset((v.timestamp - start).total_seconds())} ({v.review_status.lower()})"
                         + (f", incident {incident_of[v.id]}" if v.id in incident_of else "")}
               for v in violations]
    chart_top = top + max(len(lanes), 1) * lane_h + 16
    chart_h = 90
    scores = []
    for v in violations:
        s = stored_details(v).get("suspicion")
        if isinstance(s, dict):
            s = s.get("score")
        if isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= 100:
            scores.append((v.timestamp, float(s)))
    replayed = None if scores else replay_suspicion(session, violations)
    if scores:
        mode, top_value = "suspicion", 100.0
        series = [(start, 0.0)] + scores
    elif replayed is not None:
        mode, top_value = "replayed", 100.0
        series = [(start, 0.0)] + replayed
    else:
        mode = "count"
        series = [(start, 0.0)] + [(v.timestamp, float(i + 1)) for i, v in enumerate(violations)]
        top_value = max(1.0, float(len(violations)))
    points = []
    for i, (ts, value) in enumerate(series):  # a step line: a value holds until the next one
        y = round(chart_top + chart_h - chart_h * value / top_value, 1)
        if i:
            points.append((x(ts), points[-1][1]))
        points.append((x(ts), y))
    points.append((x(end), points[-1][1]))
    ticks = []
    for i in range(6):
        seconds = span * i / 5
        ticks.append({"x": round(left + plot_w * i / 5, 1), "label": _fmt_offset(seconds)})
    return {"width": width, "height": chart_top + chart_h + 30, "left": left, "right": width - right, "lanes": lanes,
            "markers": markers, "shots": shots, "line": " ".join(f"{px},{py}" for px, py in points), "mode": mode,
            "top_value": top_value, "chart_top": chart_top, "chart_bottom": chart_top + chart_h, "ticks": ticks,
            "axis_y": chart_top + chart_h + 16, "start": start, "end": end, "incidents": incidents}


SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def _incident_number(details: dict) -> int | None:
    n = details.get("incident")
    return n if isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 10**9 else None


def group_incidents(session: ExamSession, violations: list[Violation]) -> list[dict]:
    """The violations as incidents, in the order they began: one row per incident with its parts.

    The live runtime stores each violation with the incident it is a part of (details["incident"],
    warning_system.py): rules that fired together are one incident, one warning at the weight of its
    most severe part. A violation stored without one (before incidents, or by hand) is a row of its own.
    """
    rows: list[dict] = []
    by_number: dict[int, dict] = {}
    for v in violations:
        d = stored_details(v)
        number = _incident_number(d)
        row = by_number.get(number) if number is not None else None
        if row is None:
            row = {"number": number, "start": v.timestamp, "parts": [], "weight": None, "severity": "low",
                   "offset": _fmt_offset(max(0.0, (v.timestamp - session.started_at).total_seconds()))}
            rows.append(row)
            if number is not None:
                by_number[number] = row
        weight = d.get("incident_weight")
        if isinstance(weight, (int, float)) and not isinstance(weight, bool) and 0 <= weight <= 100:
            row["weight"] = max(weight, row["weight"] or 0)  # it only rises as parts join
        severity = v.severity if v.severity in SEVERITY_RANK else "medium"
        if SEVERITY_RANK[severity] > SEVERITY_RANK[row["severity"]] or not row["parts"]:
            row["severity"] = severity
        w = wording.violation_wording(v.type)
        row["parts"].append({"id": v.id, "type": v.type, "title": w.title, "severity": severity,
                             "severity_label": wording.severity_label(severity), "status": v.review_status.lower(),
                             "offset": _fmt_offset(max(0.0, (v.timestamp - session.started_at).total_seconds()))})
    return sorted(rows, key=lambda r: r["start"])


def replay_suspicion(session: ExamSession, violations: list[Violation]) -> list[tuple[datetime, float]] | None:
    """The suspicion score after each stored violation, recomputed with the warning system's own formula.

    Only what was stored counts: each violation is one occurrence of its rule and, when the runtime
    recorded how long the condition had held when it fired (details["duration_s"]), that time too.
    How long it went on afterwards is not stored, so this is a lower bound of the live score.
    """
    from decision_engine import RuleEvent
    from warning_system import WarningSystem

    from ..page_data import server_vision_config

    ws = WarningSystem(server_vision_config())  # the server's settings, as the live runtime scored
    out = []
    for v in violations:
        t = (v.timestamp - session.started_at).total_seconds()
        held = stored_details(v).get("duration_s")
        severity = v.severity or "medium"
        try:
            if isinstance(held, (int, float)) and not isinstance(held, bool) and 0 <= held < 86400:
                ws.on_event("s", RuleEvent(v.type, "started", t, severity, {"since": t - held}))
                ws.on_event("s", RuleEvent(v.type, "ended", t, severity, {"cleared_at": t}))
            else:
                ws.on_event("s", RuleEvent(v.type, "instant", t, severity, {}))
        except ValueError:  # a rule this version does not know: shown as a dot, not scored
            continue
        out.append((v.timestamp, float(ws.suspicion("s", t).score)))
    return out


def _fmt_offset(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def recordings_for(session_id: int) -> list:
    return db.session.scalars(select(Recording).where(Recording.session_id == session_id, Recording.kind != "screen")
                              .order_by(Recording.kind, Recording.sequence, Recording.created_at, Recording.id)).all()


def session_review_data(session_id: int) -> dict:
    session = get_or_404(ExamSession, session_id)
    result = db.session.scalar(select(ExamResult).where(ExamResult.session_id == session.id))
    violations = db.session.scalars(select(Violation).where(Violation.session_id == session.id)
                                    .order_by(Violation.timestamp, Violation.id)).all()
    answers = db.session.execute(
        select(Question, Answer).outerjoin(Answer, (Answer.question_id == Question.id) & (Answer.session_id == session.id))
        .where(Question.exam_id == session.exam_id).order_by(Question.position, Question.id)).all()
    by_type = Counter(v.type for v in violations)
    reviewers = {}
    ids = {v.reviewed_by for v in violations if v.reviewed_by}
    if ids:
        reviewers = dict(db.session.execute(select(User.id, User.name).where(User.id.in_(ids))).all())
    details = {v.id: stored_details(v) for v in violations}
    screenshots = screenshots_for(session.id)  # issue 16: the shared screen, on the timeline and as a strip
    return {"session": session, "student": session.student, "exam": session.exam, "result": result,
            "violations": violations, "details": details, "answers": answers,
            # what a reviewer reads (proctor/wording.py): a sentence, times from the start, no internals
            "sentences": {v.id: wording.admin_sentence(v.type, session.student.name, details[v.id]) for v in violations},
            "readable": {v.id: wording.describe_details(details[v.id], session.started_at) for v in violations},
            "moments": {v.id: wording.moment(v.timestamp, session.started_at) for v in violations},
            "started": wording.moment(session.started_at, session.started_at),
            "ended": wording.moment(session.ended_at, session.started_at) if session.ended_at else None,
            "ending": wording.termination_sentence(session.termination_reason, audience="admin"),
            "by_type": sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0])), "timeline": build_timeline(session, violations, screenshots=screenshots),
            "screenshots": screenshots, "shot_moments": {r.id: wording.moment(r.started_at or r.created_at, session.started_at)
                                                         for r in screenshots},
            "recordings": recordings_for(session.id), "reviewers": reviewers, "outcomes": OUTCOMES,
            "review_counts": Counter(v.review_status for v in violations)}


@bp.route("/sessions/<int:session_id>")
@access(ADMIN)
def session_review(session_id: int):
    from .room_scans import review_block  # the room scan, shown first (admin/_room_scan.html)

    data = session_review_data(session_id)
    return render_template("admin/session.html", room_scan=review_block(data["session"]), **data)


@bp.route("/sessions/<int:session_id>/report")
@access(ADMIN)
def session_report(session_id: int):
    return render_template("admin/session_report.html", generated=utcnow(), **session_review_data(session_id))


@bp.route("/violations/<int:violation_id>/review", methods=["POST"])
@access(ADMIN)
def violation_review(violation_id: int):
    v = get_or_404(Violation, violation_id)
    decision = request.form.get("decision", "")
    if decision not in DECISIONS:
        abort(400, description="decision must be confirm, dismiss or reopen")
    try:
        note = text_field(request.form, "note", "Note", NOTE_MAX, required=False, multiline=True)
    except FieldError as exc:
        flash(exc.message, "danger")
        return redirect(url_for("admin.session_review", session_id=v.session_id, _anchor=f"v{v.id}")), 303
    before = v.review_status
    v.review_status = DECISIONS[decision]
    v.review_note = note or None
    v.reviewed_by = current_user.id
    v.reviewed_at = utcnow()
    audit("violation.review", "violation", v.id, session_id=v.session_id, type=v.type, before=before,
          after=v.review_status, note=note)
    db.session.commit()
    flash(f"Violation #{v.id} ({v.type}) marked {v.review_status.lower()}.", "success")
    return redirect(url_for("admin.session_review", session_id=v.session_id, _anchor=f"v{v.id}"))


@bp.route("/sessions/<int:session_id>/outcome", methods=["POST"])
@access(ADMIN)
def session_outcome(session_id: int):
    session = get_or_404(ExamSession, session_id)
    outcome = request.form.get("outcome", "").strip().upper()
    if outcome not in OUTCOMES:
        abort(400, description="outcome must be CLEAR, SUSPICIOUS or VIOLATION")
    try:
        note = text_field(request.form, "note", "Note", NOTE_MAX, required=False, multiline=True)
    except FieldError as exc:
        flash(exc.message, "danger")
        return redirect(url_for("admin.session_review", session_id=session.id)), 303
    result = db.session.scalar(select(ExamResult).where(ExamResult.session_id == session.id))
    if result is None:
        flash("This session has no result yet (still in progress): decide its outcome after it ends.", "danger")
        return redirect(url_for("admin.session_review", session_id=session.id)), 303
    before = result.outcome
    result.outcome = outcome
    audit("session.outcome", "exam_session", session.id, result_id=result.id, before=before, after=outcome, note=note)
    db.session.commit()
    flash(f"Outcome for session #{session.id}: {outcome}.", "success")
    return redirect(url_for("admin.session_review", session_id=session.id))


# --- recordings ---------------------------------------------------------------------------------

def _recording_file(rec: Recording) -> Path | None:
    """The recording on disk, only if it lies inside the data folder."""
    return stored_file(rec.path, f"recording {rec.id}")


def recording_mime(rec: Recording, path: Path) -> str:
    declared = (rec.mime or "").split(";")[0].strip().lower()
    if (declared.split("/")[0] in ("audio", "video") or declared == "image/jpeg") and len(declared) < 64:
        return declared
    return MEDIA_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


@bp.route("/recordings/<int:recording_id>")
@access(ADMIN)
def recording_file(recording_id: int):
    rec = get_or_404(Recording, recording_id)
    path = _recording_file(rec)
    if path is None:
        abort(404)
    # conditional=True answers Range requests (206) so the <audio> element can seek.
    response = send_file(path, mimetype=recording_mime(rec, path), conditional=True, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.route("/sessions/<int:session_id>/recordings")
@access(ADMIN)
def session_recordings(session_id: int):
    data = session_review_data(session_id)
    clips = [v for v in data["violations"] if v.clip_path]
    return render_template("admin/recordings.html", clips=clips, **data)
