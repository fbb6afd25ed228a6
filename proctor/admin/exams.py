"""Admin: exams (settings, rules, per-exam vision thresholds) and their question bank (edit, CSV/JSON import)."""
from __future__ import annotations

import csv
import io
import json

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

import config_vision

from ..evidence_files import recording_files, remove_evidence_files, violation_files
from ..extensions import db
from ..models import (DisplaysPolicy, Exam, ExamResult, ExamSession, Question, Recording, RoomScan, ScreenShare,
                      Violation)
from ..room_scans import remove_scan_files, scan_paths
from ..security import ADMIN, access
from . import bp
from .fields import FieldError, audit, bool_field, choice_field, get_or_404, int_field, read_upload, text_field

TITLE_MAX = 200
DESCRIPTION_MAX = 5000
QUESTION_MAX = 2000
OPTION_MAX = 500
OPTIONS_MIN, OPTIONS_MAX = 2, 6
POINTS_MAX = 100
DURATION_MAX_MIN = 600
QUESTIONS_PER_EXAM_MAX = 500
IMPORT_MAX_BYTES = 512 * 1024
SCREENSHOT_INTERVAL_S = (5, 300)  # bounds of the exam's screenshot interval (seconds)
SCREEN_SHARE_CHOICES = tuple(v.value for v in ScreenShare)
DISPLAYS_CHOICES = tuple(v.value for v in DisplaysPolicy)
# The exam's settings beyond the webcam (issue 16), their form defaults.
BEYOND_DEFAULTS = {"screen_share": ScreenShare.OFF.value, "screenshot_interval_s": 15,
                   "displays_policy": DisplaysPolicy.WARN.value, "block_copy_paste": False, "require_room_scan": False}


def _beyond_from_form(form) -> dict:
    return {
        "screen_share": choice_field(form, "screen_share", "Screen sharing", SCREEN_SHARE_CHOICES, ScreenShare.OFF.value),
        "screenshot_interval_s": int_field(form, "screenshot_interval_s", "Screenshot interval", *SCREENSHOT_INTERVAL_S,
                                           default=15),
        "displays_policy": choice_field(form, "displays_policy", "Second display", DISPLAYS_CHOICES,
                                        DisplaysPolicy.WARN.value),
        "block_copy_paste": bool_field(form, "block_copy_paste"),
        "require_room_scan": bool_field(form, "require_room_scan"),
    }

# Vision settings an exam may override (rule timings and thresholds; not detector plumbing).
EXAM_THRESHOLD_NAMES = (
    "YAW_THRESHOLD_DEG", "PITCH_THRESHOLD_DEG", "EAR_THRESHOLD", "EYES_CLOSED_MAX_PITCH_DOWN_DEG",
    "EYES_CLOSED_MIN_FACE_PX", "IRIS_OFFSET_THRESHOLD",
    "TIME_NO_FACE_S", "TIME_HEAD_TURNED_S", "TIME_EYES_CLOSED_S", "TIME_GAZING_S", "TIME_MULTIPLE_PERSONS_S",
    "TIME_BANNED_OBJECT_S", "TIME_IDENTITY_MISMATCH_S", "TIME_CAMERA_OFF_S", "TIME_CLEAR_S",
    "WARNING_COOLDOWN_S", "INSTANT_PENALTY_THRESHOLD", "PERSON_CONFIDENCE", "PHONE_CONFIDENCE", "BOOK_CONFIDENCE",
    "LAPTOP_CONFIDENCE", "IDENTITY_DISTANCE_THRESHOLD", "VOICE_MARGIN_DB", "VOICE_MIN_S", "VOICE_WINDOW_S",
    "INCIDENT_WINDOW_S", "INCIDENT_WEIGHT_LOW", "INCIDENT_WEIGHT_MEDIUM", "INCIDENT_WEIGHT_HIGH", "INCIDENT_WEIGHT_CRITICAL",
)


def threshold_settings() -> list:
    by_name = {s.name: s for s in config_vision.SETTINGS}
    return [by_name[n] for n in EXAM_THRESHOLD_NAMES if n in by_name]


def exam_thresholds(exam: Exam) -> dict:
    try:
        data = json.loads(exam.thresholds or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def exam_disabled_rules(exam: Exam) -> set[str]:
    return {r for r in (exam.disabled_rules or "").split(",") if r}


def validate_thresholds(form) -> dict:
    """Overrides typed on the form ("" = default), each validated against config_vision's bounds."""
    overrides = {}
    for setting in threshold_settings():
        raw = (form.get(f"th_{setting.name}") or "").strip()
        if raw == "":
            continue
        try:
            cfg = config_vision.load_vision_config(env={}, **{setting.name: raw})
        except config_vision.VisionConfigError as exc:
            raise FieldError(f"th_{setting.name}", str(exc).replace(" (from override)", "")) from None
        overrides[setting.name] = getattr(cfg, setting.name)
    return overrides


def _exam_from_form(form, exam: Exam) -> list[str]:
    title = text_field(form, "title", "Title", TITLE_MAX)
    description = text_field(form, "description", "Description", DESCRIPTION_MAX, required=False, multiline=True)
    duration = int_field(form, "duration_minutes", "Duration", 1, DURATION_MAX_MIN)
    pass_mark = int_field(form, "pass_mark_percent", "Pass mark", 0, 100)
    rules_on = set(form.getlist("rules"))
    unknown = rules_on - set(config_vision.RULES)
    if unknown:
        raise FieldError("rules", "Unknown rule(s): " + ", ".join(sorted(unknown)[:5]) + ".")
    thresholds = validate_thresholds(form)
    new = {
        "title": title, "description": description, "duration_minutes": duration, "pass_mark_percent": pass_mark,
        "is_published": bool_field(form, "is_published"), "auto_terminate": bool_field(form, "auto_terminate"),
        "require_liveness": bool_field(form, "require_liveness"),
        **_beyond_from_form(form),
        "disabled_rules": ",".join(r for r in config_vision.RULES if r not in rules_on),
        "thresholds": json.dumps(thresholds, sort_keys=True),
    }
    changed = [k for k, v in new.items() if getattr(exam, k, None) != v]
    for k, v in new.items():
        setattr(exam, k, v)
    return changed


def _render_exam_form(exam: Exam | None, errors: dict, form=None):
    if form is not None:  # echo what was typed
        rules_on = set(form.getlist("rules"))
        values = {k: form.get(k, "") for k in ("title", "description", "duration_minutes", "pass_mark_percent")}
        values.update(is_published=bool_field(form, "is_published"), auto_terminate=bool_field(form, "auto_terminate"),
                      require_liveness=bool_field(form, "require_liveness"))
        values.update({k: form.get(k, "") for k in ("screen_share", "screenshot_interval_s", "displays_policy")},
                      block_copy_paste=bool_field(form, "block_copy_paste"),
                      require_room_scan=bool_field(form, "require_room_scan"))
        thresholds = {s.name: form.get(f"th_{s.name}", "") for s in threshold_settings()}
    elif exam is not None:
        rules_on = set(config_vision.RULES) - exam_disabled_rules(exam)
        values = {"title": exam.title, "description": exam.description, "duration_minutes": exam.duration_minutes,
                  "pass_mark_percent": exam.pass_mark_percent, "is_published": exam.is_published,
                  "auto_terminate": exam.auto_terminate, "require_liveness": exam.require_liveness,
                  **{k: getattr(exam, k) for k in BEYOND_DEFAULTS}}
        thresholds = exam_thresholds(exam)
    else:
        cfg = config_vision.load_vision_config()
        rules_on = set(config_vision.RULES)
        values = {"title": "", "description": "", "duration_minutes": 30, "pass_mark_percent": 50,
                  "is_published": False, "auto_terminate": bool(cfg.AUTO_TERMINATE_DEFAULT), "require_liveness": True,
                  **BEYOND_DEFAULTS}
        thresholds = {}
    try:  # what applies when an exam sets nothing: the defaults as this server's environment changed them
        server = config_vision.load_vision_config().as_dict()
    except config_vision.VisionConfigError:
        server = {s.name: s.default for s in config_vision.SETTINGS}
    return render_template("admin/exam_form.html", exam=exam, values=values, errors=errors, rules=config_vision.RULES,
                           server_values=server, screenshot_bounds=SCREENSHOT_INTERVAL_S,
                           rules_on=rules_on, settings=threshold_settings(), thresholds=thresholds,
                           thresholds_open=any(k.startswith("th_") for k in errors) or any(thresholds.values())), (400 if errors else 200)


@bp.route("/exams")
@access(ADMIN)
def exams():
    counts = dict(db.session.execute(select(Question.exam_id, func.count()).group_by(Question.exam_id)).all())
    sessions = dict(db.session.execute(select(ExamSession.exam_id, func.count()).group_by(ExamSession.exam_id)).all())
    rows = db.session.scalars(select(Exam).order_by(Exam.created_at.desc(), Exam.id.desc())).all()
    return render_template("admin/exams.html", exams=rows, counts=counts, sessions=sessions)


@bp.route("/exams/new", methods=["GET", "POST"])
@access(ADMIN)
def exam_new():
    if request.method == "POST":
        exam = Exam(created_by=current_user.id)
        try:
            _exam_from_form(request.form, exam)
        except FieldError as exc:
            return _render_exam_form(None, {exc.field: exc.message}, request.form)
        db.session.add(exam)
        db.session.flush()
        audit("exam.create", "exam", exam.id, title=exam.title)
        db.session.commit()
        flash("Exam created. Add its questions below.", "success")
        return redirect(url_for("admin.exam_questions", exam_id=exam.id))
    return _render_exam_form(None, {})


@bp.route("/exams/<int:exam_id>/edit", methods=["GET", "POST"])
@access(ADMIN)
def exam_edit(exam_id: int):
    exam = get_or_404(Exam, exam_id)
    if request.method == "POST":
        try:
            changed = _exam_from_form(request.form, exam)
        except FieldError as exc:
            db.session.rollback()
            return _render_exam_form(exam, {exc.field: exc.message}, request.form)
        if exam.is_published and not exam.questions:
            db.session.rollback()
            return _render_exam_form(exam, {"is_published": "Add at least one question before publishing."}, request.form)
        audit("exam.update", "exam", exam.id, fields=changed, disabled_rules=exam.disabled_rules,
              thresholds=exam_thresholds(exam))
        db.session.commit()
        flash("Exam saved.", "success")
        return redirect(url_for("admin.exam_edit", exam_id=exam.id))
    return _render_exam_form(exam, {})


@bp.route("/exams/<int:exam_id>/publish", methods=["POST"])
@access(ADMIN)
def exam_publish(exam_id: int):
    exam = get_or_404(Exam, exam_id)
    publish = bool_field(request.form, "publish")
    if publish and not exam.questions:
        flash("Add at least one question before publishing.", "danger")
        return redirect(url_for("admin.exams"))
    exam.is_published = publish
    audit("exam.publish" if publish else "exam.unpublish", "exam", exam.id)
    db.session.commit()
    flash(f"'{exam.title}' is now {'published' if publish else 'unpublished'}.", "success")
    return redirect(url_for("admin.exams"))


@bp.route("/exams/<int:exam_id>/delete", methods=["GET", "POST"])
@access(ADMIN)
def exam_delete(exam_id: int):
    exam = get_or_404(Exam, exam_id)
    n_sessions = db.session.scalar(select(func.count()).select_from(ExamSession).where(ExamSession.exam_id == exam.id))
    n_results = db.session.scalar(select(func.count()).select_from(ExamResult).where(ExamResult.exam_id == exam.id))
    if request.method == "POST":
        if request.form.get("confirm_title", "").strip() != exam.title:
            flash("Type the exam's title to confirm the deletion.", "danger")
            return render_template("admin/exam_delete.html", exam=exam, n_sessions=n_sessions, n_results=n_results), 400
        sessions = select(ExamSession.id).where(ExamSession.exam_id == exam.id)
        evidence = violation_files(Violation.session_id.in_(sessions)) + recording_files(Recording.session_id.in_(sessions))
        scans = scan_paths(RoomScan.exam_id == exam.id)  # the rows cascade; their files are removed below
        audit("exam.delete", "exam", exam.id, title=exam.title, sessions=n_sessions, results=n_results)
        db.session.delete(exam)
        db.session.commit()
        remove_evidence_files(evidence)  # snapshots, clips, audio and screenshots of the deleted sessions
        remove_scan_files(scans)
        flash(f"Deleted exam '{exam.title}' with its questions, sessions and results.", "success")
        return redirect(url_for("admin.exams"))
    return render_template("admin/exam_delete.html", exam=exam, n_sessions=n_sessions, n_results=n_results)


# --- questions ---------------------------------------------------------------------------

def validate_question(text: str, options: list, correct, points=1) -> tuple[str, list[str], int, int]:
    """(text, options, correct_index 0-based, points) or FieldError naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise FieldError("text", "Question text is required.")
    text = text.strip()
    if len(text) > QUESTION_MAX:
        raise FieldError("text", f"Question text must be at most {QUESTION_MAX} characters.")
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise FieldError("options", "Options must be a list of text.")
    options = [o.strip() for o in options]
    if any(not o for o in options):
        raise FieldError("options", "An option is empty.")
    if not OPTIONS_MIN <= len(options) <= OPTIONS_MAX:
        raise FieldError("options", f"Give {OPTIONS_MIN} to {OPTIONS_MAX} options (got {len(options)}).")
    if any(len(o) > OPTION_MAX for o in options):
        raise FieldError("options", f"Each option must be at most {OPTION_MAX} characters.")
    if len({o.casefold() for o in options}) != len(options):
        raise FieldError("options", "Two options are the same.")
    if isinstance(correct, bool) or not isinstance(correct, int) or not 0 <= correct < len(options):
        raise FieldError("correct_index", f"The correct answer must be one of the {len(options)} options.")
    if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= POINTS_MAX:
        raise FieldError("points", f"Points must be a whole number from 1 to {POINTS_MAX}.")
    return text, options, correct, points


def _question_from_form(form) -> tuple[str, list[str], int, int]:
    raw_options = [form.get(f"option_{i}", "") for i in range(OPTIONS_MAX)]
    # The radio button names a slot; blanks before it shift it down once they are removed.
    slot = int_field(form, "correct_index", "Correct answer", 0, OPTIONS_MAX - 1)
    if not raw_options[slot].strip():
        raise FieldError("correct_index", "The option marked correct is empty.")
    correct = sum(1 for o in raw_options[:slot] if o.strip())
    points = int_field(form, "points", "Points", 1, POINTS_MAX, default=1)
    return validate_question(form.get("text", ""), [o for o in raw_options if o.strip()], correct, points)


def _next_position(exam: Exam) -> int:
    return max((q.position for q in exam.questions), default=-1) + 1


@bp.route("/exams/<int:exam_id>/questions", methods=["GET", "POST"])
@access(ADMIN)
def exam_questions(exam_id: int):
    exam = get_or_404(Exam, exam_id)
    errors, values = {}, {}
    if request.method == "POST":
        try:
            if len(exam.questions) >= QUESTIONS_PER_EXAM_MAX:
                raise FieldError("text", f"An exam holds at most {QUESTIONS_PER_EXAM_MAX} questions.")
            text, options, correct, points = _question_from_form(request.form)
        except FieldError as exc:
            errors[exc.field] = exc.message
            values = request.form
        else:
            q = Question(exam_id=exam.id, text=text, correct_index=correct, points=points, position=_next_position(exam))
            q.options = options
            db.session.add(q)
            db.session.flush()
            audit("question.create", "question", q.id, exam_id=exam.id)
            db.session.commit()
            flash("Question added.", "success")
            return redirect(url_for("admin.exam_questions", exam_id=exam.id))
    return render_template("admin/questions.html", exam=exam, errors=errors, values=values, options_max=OPTIONS_MAX,
                           import_report=None), (400 if errors else 200)


@bp.route("/questions/<int:question_id>/edit", methods=["GET", "POST"])
@access(ADMIN)
def question_edit(question_id: int):
    q = get_or_404(Question, question_id)
    errors = {}
    if request.method == "POST":
        try:
            text, options, correct, points = _question_from_form(request.form)
        except FieldError as exc:
            errors[exc.field] = exc.message
        else:
            q.text, q.options, q.correct_index, q.points = text, options, correct, points
            audit("question.update", "question", q.id, exam_id=q.exam_id)
            db.session.commit()
            flash("Question saved.", "success")
            return redirect(url_for("admin.exam_questions", exam_id=q.exam_id))
        values = request.form
    else:
        values = {"text": q.text, "points": q.points, "correct_index": q.correct_index,
                  **{f"option_{i}": o for i, o in enumerate(q.options)}}
    return render_template("admin/question_form.html", q=q, exam=q.exam, values=values, errors=errors,
                           options_max=OPTIONS_MAX), (400 if errors else 200)


@bp.route("/questions/<int:question_id>/delete", methods=["POST"])
@access(ADMIN)
def question_delete(question_id: int):
    q = get_or_404(Question, question_id)
    exam_id = q.exam_id
    audit("question.delete", "question", q.id, exam_id=exam_id, text=q.text[:200])
    db.session.delete(q)
    db.session.commit()
    flash("Question deleted.", "success")
    return redirect(url_for("admin.exam_questions", exam_id=exam_id))


@bp.route("/exams/<int:exam_id>/questions/import", methods=["POST"])
@access(ADMIN)
def questions_import(exam_id: int):
    exam = get_or_404(Exam, exam_id)
    try:
        text = read_upload("file", IMPORT_MAX_BYTES)
        filename = (request.files["file"].filename or "").lower()
        rows = _parse_question_json(text) if filename.endswith(".json") else _parse_question_csv(text)
    except FieldError as exc:
        report = {"created": 0, "errors": [{"line": None, "error": exc.message}]}
        return render_template("admin/questions.html", exam=exam, errors={}, values={}, options_max=OPTIONS_MAX,
                               import_report=report), 400
    position, created, errors = _next_position(exam), 0, []
    room = QUESTIONS_PER_EXAM_MAX - len(exam.questions)
    for line, item in rows:
        try:
            if isinstance(item, FieldError):
                raise item
            if created >= room:
                raise FieldError("text", f"An exam holds at most {QUESTIONS_PER_EXAM_MAX} questions.")
            text_, options, correct, points = validate_question(*item)
        except FieldError as exc:
            errors.append({"line": line, "error": exc.message})
            continue
        q = Question(exam_id=exam.id, text=text_, correct_index=correct, points=points, position=position)
        q.options = options
        db.session.add(q)
        position += 1
        created += 1
    audit("question.import", "exam", exam.id, created=created, failed=len(errors))
    db.session.commit()
    db.session.refresh(exam)
    report = {"created": created, "errors": errors}
    return render_template("admin/questions.html", exam=exam, errors={}, values={}, options_max=OPTIONS_MAX,
                           import_report=report), (400 if errors and not created else 200)


def _parse_question_csv(text: str) -> list:
    """Columns: text, option_1..option_6 (2-6 filled), correct (1-based), points (optional)."""
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        raw_rows = list(reader)
    except csv.Error as exc:
        raise FieldError("file", f"The file is not valid CSV: {exc}.") from None
    allowed = {"text", "correct", "points"} | {f"option_{i}" for i in range(1, OPTIONS_MAX + 1)}
    missing = [c for c in ("text", "option_1", "option_2", "correct") if c not in header]
    unknown = [h for h in header if h not in allowed]
    if missing or unknown:
        raise FieldError("file", "Bad header" + (f"; missing: {', '.join(missing)}" if missing else "")
                         + (f"; unknown: {', '.join(unknown)}" if unknown else "")
                         + ". Expected: text,option_1,...,option_6,correct[,points] (correct is 1-based).")
    _check_count(len(raw_rows))
    rows = []
    for line, row in enumerate(raw_rows, start=2):
        if None in row:
            rows.append((line, FieldError("file", "too many cells in this row")))
            continue
        options = [(row.get(f"option_{i}") or "") for i in range(1, OPTIONS_MAX + 1)]
        filled = [o for o in options if o.strip()]
        try:
            correct_raw = int((row.get("correct") or "").strip())
            points = int((row.get("points") or "1").strip() or "1")
        except ValueError:
            rows.append((line, FieldError("correct", "correct and points must be whole numbers")))
            continue
        last = max((i for i, o in enumerate(options) if o.strip()), default=-1)
        if len(filled) != last + 1:
            rows.append((line, FieldError("options", "options must be filled from option_1 without gaps")))
            continue
        rows.append((line, (row.get("text") or "", filled, correct_raw - 1, points)))
    return rows


def _parse_question_json(text: str) -> list:
    """A JSON list of {"text": str, "options": [str, ...], "correct_index": int (0-based), "points": int}."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise FieldError("file", f"The file is not valid JSON: {exc}.") from None
    if isinstance(data, dict) and isinstance(data.get("questions"), list):
        data = data["questions"]
    if not isinstance(data, list):
        raise FieldError("file", 'Expected a JSON list of questions (or {"questions": [...]}).')
    _check_count(len(data))
    rows = []
    for i, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            rows.append((i, FieldError("file", "each question must be an object")))
            continue
        unknown = set(item) - {"text", "options", "correct_index", "points"}
        if unknown:
            rows.append((i, FieldError("file", "unknown field(s): " + ", ".join(sorted(map(str, unknown))[:5]))))
            continue
        rows.append((i, (item.get("text"), item.get("options"), item.get("correct_index"), item.get("points", 1))))
    return rows


def _check_count(n: int) -> None:
    if n == 0:
        raise FieldError("file", "The file holds no questions.")
    if n > QUESTIONS_PER_EXAM_MAX:
        raise FieldError("file", f"Too many questions: {n} (at most {QUESTIONS_PER_EXAM_MAX}).")
