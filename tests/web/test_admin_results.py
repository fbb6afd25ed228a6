"""Admin results, per-session review (decisions, outcome, audit), recordings and CSV reports, on both databases."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import csrf_token, make_user

TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
HOSTILE = "=HYPERLINK(\"http://evil\",\"x\")<script>alert(1)</script>' OR 1=1 --"


def seed_session(app, student_email="taker@example.edu", student_name="Taker One", violations=None, status="TERMINATED",
                 with_result=True, evidence_photo="a_1_webcam_woman_T1.jpg"):
    """A finished session with answers, a result and violations (evidence is a real photo in the data folder)."""
    from proctor.extensions import db
    from proctor.models import Answer, Exam, ExamResult, ExamSession, Question, Violation, utcnow

    sid = make_user(app, student_email, name=student_name)
    with app.app_context():
        exam = Exam(title="Physics 101", duration_minutes=30, pass_mark_percent=50, is_published=True)
        for i, (text, options, correct) in enumerate([("2+2?", ["3", "4"], 1), ("Speed of light unit?", ["m/s", "kg", "K"], 0)]):
            q = Question(text=text, correct_index=correct, position=i)
            q.options = options
            exam.questions.append(q)
        db.session.add(exam)
        db.session.flush()
        start = utcnow() - timedelta(minutes=20)
        sess = ExamSession(student_id=sid, exam_id=exam.id, status=status, started_at=start, deadline=start + timedelta(minutes=30),
                           ended_at=start + timedelta(minutes=10) if status != "IN_PROGRESS" else None,
                           termination_reason="Too many warnings" if status == "TERMINATED" else None)
        db.session.add(sess)
        db.session.flush()
        db.session.add_all([Answer(session_id=sess.id, question_id=exam.questions[0].id, selected_index=1),
                            Answer(session_id=sess.id, question_id=exam.questions[1].id, selected_index=2)])
        data_dir = Path(app.config["PROCTOR_DATA_DIR"])
        (data_dir / "evidence").mkdir(parents=True, exist_ok=True)
        shutil.copy(TESTDATA / evidence_photo, data_dir / "evidence" / "snap1.jpg")
        vs = violations if violations is not None else [
            ("NO_FACE", 60, {"seconds": 3.4, "suspicion": 20.0}, "evidence/snap1.jpg"),
            ("PROHIBITED_OBJECT", 180, {"object": "cell phone", "suspicion": 55.0}, None),
            ("NO_FACE", 400, {"seconds": 5.0, "suspicion": 70.0}, None),
        ]
        ids = []
        for vtype, offset, details, evidence in vs:
            v = Violation(student_id=sid, session_id=sess.id, type=vtype, details=json.dumps(details),
                          timestamp=start + timedelta(seconds=offset), evidence_path=evidence)
            db.session.add(v)
            db.session.flush()
            ids.append(v.id)
        result_id = None
        if with_result:
            r = ExamResult(student_id=sid, session_id=sess.id, exam_id=exam.id, score=1, total=2, percentage=50.0, grade="C",
                           status="TERMINATED" if status == "TERMINATED" else "PASS")
            db.session.add(r)
            db.session.flush()
            result_id = r.id
        db.session.commit()
        return {"student_id": sid, "exam_id": exam.id, "session_id": sess.id, "violation_ids": ids, "result_id": result_id}


def audit_rows(app, action):
    from proctor.extensions import db
    from proctor.models import AuditLog

    with app.app_context():
        return [(r.actor_id, r.target_type, r.target_id, json.loads(r.details))
                for r in db.session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id))]


def admin_id(app):
    from proctor.accounts import find_by_email

    with app.app_context():
        return find_by_email("admin@example.edu").id


def test_results_list_and_filters(app, admin_client):
    s = seed_session(app)
    page = admin_client.get("/admin/results").get_data(as_text=True)
    assert "Taker One" in page and "Physics 101" in page and f'data-session-id="{s["session_id"]}"' in page
    assert "3 to review" in page
    # filters: status, exam, outcome and dates narrow the list; junk is reported, not a 500
    assert "Taker One" not in admin_client.get("/admin/results?status=PASS").get_data(as_text=True)
    assert "Taker One" in admin_client.get("/admin/results?status=TERMINATED").get_data(as_text=True)
    assert "Taker One" in admin_client.get(f"/admin/results?exam={s['exam_id']}").get_data(as_text=True)
    assert "Taker One" not in admin_client.get(f"/admin/results?exam={s['exam_id'] + 999}").get_data(as_text=True)
    assert "Taker One" not in admin_client.get("/admin/results?from=2999-01-01").get_data(as_text=True)
    assert "Taker One" in admin_client.get("/admin/results?outcome=NONE&q=taker").get_data(as_text=True)
    resp = admin_client.get("/admin/results?from=yesterday&status=BOGUS&exam=x&page=-5")
    assert resp.status_code == 200
    body = resp.get_data(as_text=True)
    assert "must be a date" in body and "Unknown status" in body and "Taker One" in body


def test_session_review_page_shows_everything(app, admin_client):
    s = seed_session(app)
    resp = admin_client.get(f"/admin/sessions/{s['session_id']}")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert 'id="score">1/2<' in page
    by_type = re.search(r'<ul class="list-unstyled mb-0" id="by-type">.*?</ul>', page, re.S).group(0)
    assert re.search(r'data-type="NO_FACE">No face: 2 ', by_type) and re.search(r'data-type="PROHIBITED_OBJECT">Prohibited object: 1 ', by_type)
    v1 = s["violation_ids"][0]
    assert f'src="/admin/evidence/{v1}/snapshot"' in page  # evidence snapshot via the evidence route
    assert "Too many warnings" in page
    # the server-drawn timeline: a marker per violation and the suspicion line
    svg = re.search(r"<svg class=\"timeline\".*?</svg>", page, re.S).group(0)
    assert svg.count("<circle") == 3 and "<polyline" in svg and "suspicion" in page
    # answers: the given answer and the key
    assert "no answer" not in page and "m/s" in page and "K" in page
    # no inline scripts or styles (CSP)
    assert "<script>" not in page and " style=" not in page and "<style" not in page


def test_timeline_recomputes_suspicion_when_none_was_stored(app, admin_client):
    s = seed_session(app, violations=[("TAB_SWITCH", 30, {}, None), ("TAB_SWITCH", 90, {"suspicion": "junk"}, None),
                                      ("NO_FACE", 120, {"duration_s": 4.0}, None)])
    page = admin_client.get(f"/admin/sessions/{s['session_id']}").get_data(as_text=True)
    assert "recomputed from the stored violations" in page and page.count('class="tl-marker') == 3
    # the same formula as the live warning system: two TAB_SWITCH occurrences
    from config_vision import load_vision_config
    from decision_engine import RuleEvent
    from proctor.admin.results import replay_suspicion
    from proctor.extensions import db
    from proctor.models import ExamSession, Violation
    from warning_system import WarningSystem

    ws = WarningSystem(load_vision_config())
    for t in (30.0, 90.0):
        ws.on_event("x", RuleEvent("TAB_SWITCH", "instant", t, "medium", {}))
    after_tabs = ws.suspicion("x", 90.0).score
    ws.on_event("x", RuleEvent("NO_FACE", "started", 120.0, "high", {"since": 116.0}))
    ws.on_event("x", RuleEvent("NO_FACE", "ended", 120.0, "high", {"cleared_at": 120.0}))
    with app.app_context():
        sess = db.session.get(ExamSession, s["session_id"])
        vs = db.session.query(Violation).order_by(Violation.timestamp).all()
        scores = [score for _, score in replay_suspicion(sess, vs)]
    assert scores[1] == after_tabs and scores[2] == ws.suspicion("x", 120.0).score
    assert 0 < scores[0] < scores[1] < scores[2] < 100
    no_face = [c for c in ws.suspicion("x", 120.0).components if c["signal"] == "NO_FACE"]
    assert no_face[0]["seconds"] == 4.0  # the time the condition had held counted


def test_timeline_groups_violations_by_incident(app, admin_client):
    """One row per incident with its parts: the four rules one moment fired are one row counting 2 (its
    critical part), a later warning is a second row, and a violation stored without an incident (before
    incidents, or with a junk number) is a row of its own."""
    def part(n, k, weight):
        return {"incident": n, "incident_part": k, "incident_opened": k == 1, "incident_weight": weight,
                "warning_count": weight, "incident_t": 1_800_000_000.0 + n}
    s = seed_session(app, violations=[
        ("MULTIPLE_FACES", 100, part(1, 1, 1), None), ("PROHIBITED_OBJECT", 100, part(1, 2, 1), None),
        ("DISTRACTION", 101, part(1, 3, 1), None), ("IDENTITY_MISMATCH", 102, part(1, 4, 2), None),
        ("TAB_SWITCH", 300, part(2, 1, 1), None), ("NO_FACE", 500, {"incident": "2; DROP TABLE"}, None),
        ("NO_FACE", 560, {}, None)])
    ids = s["violation_ids"]
    for path in (f"/admin/sessions/{s['session_id']}", f"/admin/sessions/{s['session_id']}/report"):
        page = admin_client.get(path).get_data(as_text=True)
        rows = re.findall(r'<tr class="incident[^"]*" data-incident="(\d*)" data-parts="(\d+)">(.*?)</tr>', page, re.S)
        assert [(n, parts) for n, parts, _ in rows] == [("1", "4"), ("2", "1"), ("", "1"), ("", "1")], path
        first = rows[0][2]
        assert re.findall(r'href="#v(\d+)"', first) == [str(i) for i in ids[:4]]
        assert [t for t in ("MULTIPLE_FACES", "PROHIBITED_OBJECT", "DISTRACTION", "IDENTITY_MISMATCH") if t in first] == [
            "MULTIPLE_FACES", "PROHIBITED_OBJECT", "DISTRACTION", "IDENTITY_MISMATCH"]
        assert "2 warnings" in first and "1:40" in first
        assert "1 warning" in rows[1][2] and "TAB_SWITCH" in rows[1][2]
        assert "DROP TABLE" not in page.split('class="timeline-figure"')[1].split("</table>")[0]
        assert page.count('class="tl-marker') == 7 and "incident 1" in page  # the dots name their incident
    # each violation's card says, in words, which incident it is a part of (no raw incident fields)
    page = admin_client.get(f"/admin/sessions/{s['session_id']}").get_data(as_text=True)
    assert "#1, part 2 (counts as 1 warning)" in page and "#1, part 4 (counts as 2 warnings)" in page
    assert "Incident part" not in page and "Incident weight" not in page and "Incident opened" not in page
    # a session whose violations carry no incident still gets a row per violation
    plain = seed_session(app, student_email="plain@example.edu")
    page = admin_client.get(f"/admin/sessions/{plain['session_id']}").get_data(as_text=True)
    assert page.count('<tr class="incident') == 3


def test_review_decisions_and_outcome_are_saved_and_audited(app, admin_client):
    s = seed_session(app)
    token = csrf_token(admin_client, f"/admin/sessions/{s['session_id']}")
    v1, v2, _ = s["violation_ids"]
    resp = admin_client.post(f"/admin/violations/{v1}/review", data={"csrf_token": token, "decision": "dismiss",
                                                                     "note": "Student bent down to pick up a pen <b>"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith(f"#v{v1}")
    admin_client.post(f"/admin/violations/{v2}/review", data={"csrf_token": token, "decision": "confirm", "note": ""})
    resp = admin_client.post(f"/admin/sessions/{s['session_id']}/outcome", data={"csrf_token": token, "outcome": "VIOLATION",
                                                                                   "note": "phone seen"})
    assert resp.status_code == 302

    from proctor.extensions import db
    from proctor.models import ExamResult, Violation

    with app.app_context():
        a, b = db.session.get(Violation, v1), db.session.get(Violation, v2)
        assert (a.review_status, a.review_note, a.reviewed_by) == ("DISMISSED", "Student bent down to pick up a pen <b>", admin_id(app))
        assert b.review_status == "CONFIRMED" and b.review_note is None and b.reviewed_at is not None
        assert db.session.get(ExamResult, s["result_id"]).outcome == "VIOLATION"
    reviews = audit_rows(app, "violation.review")
    assert [(r[1], r[2], r[3]["before"], r[3]["after"]) for r in reviews] == [
        ("violation", v1, "PENDING", "DISMISSED"), ("violation", v2, "PENDING", "CONFIRMED")]
    assert all(r[0] == admin_id(app) for r in reviews)
    outcome = audit_rows(app, "session.outcome")
    assert outcome[0][2] == s["session_id"] and outcome[0][3]["after"] == "VIOLATION" and outcome[0][3]["note"] == "phone seen"
    page = admin_client.get(f"/admin/sessions/{s['session_id']}").get_data(as_text=True)
    assert 'id="outcome">VIOLATION<' in page
    assert "violation-dismissed" in page and "pick up a pen &lt;b&gt;" in page  # note escaped
    assert "Taker One" in admin_client.get("/admin/results?outcome=VIOLATION").get_data(as_text=True)


@pytest.mark.parametrize("path, data, status", [
    ("/admin/violations/{v}/review", {"decision": "maybe"}, 400),
    ("/admin/violations/999999/review", {"decision": "confirm"}, 404),
    ("/admin/sessions/{s}/outcome", {"outcome": "GUILTY"}, 400),
    ("/admin/sessions/999999/outcome", {"outcome": "CLEAR"}, 404),
    ("/admin/violations/{v}/review", {"decision": "confirm", "note": "x" * 1001}, 303),
])
def test_bad_review_input_is_refused_cleanly(app, admin_client, path, data, status):
    s = seed_session(app)
    token = csrf_token(admin_client, "/admin/")
    resp = admin_client.post(path.format(v=s["violation_ids"][0], s=s["session_id"]), data={"csrf_token": token, **data})
    assert resp.status_code == status
    from proctor.extensions import db
    from proctor.models import Violation

    with app.app_context():
        assert db.session.get(Violation, s["violation_ids"][0]).review_status == "PENDING"


def test_outcome_needs_a_finished_session(app, admin_client):
    s = seed_session(app, status="IN_PROGRESS", with_result=False)
    token = csrf_token(admin_client, "/admin/")
    resp = admin_client.post(f"/admin/sessions/{s['session_id']}/outcome", data={"csrf_token": token, "outcome": "CLEAR"},
                             follow_redirects=True)
    assert "no result yet" in resp.get_data(as_text=True)
    assert audit_rows(app, "session.outcome") == []


def test_review_without_csrf_is_refused(app, admin_client):
    s = seed_session(app)
    resp = admin_client.post(f"/admin/violations/{s['violation_ids'][0]}/review", data={"decision": "dismiss"})
    assert resp.status_code == 400
    assert audit_rows(app, "violation.review") == []


def read_csv(resp):
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))


def test_results_csv_contents_and_formula_escaping(app, admin_client):
    s = seed_session(app, student_name="=cmd|' /C calc'!A0")
    rows = read_csv(admin_client.get("/admin/reports/results.csv"))
    assert len(rows) == 1
    row = rows[0]
    assert row["student_name"] == "'=cmd|' /C calc'!A0"  # a formula is defused with a leading quote
    assert (row["session_id"], row["score"], row["total"], row["status"], row["violations"], row["violations_pending"]) == (
        str(s["session_id"]), "1", "2", "TERMINATED", "3", "3")
    assert row["termination_reason"] == "Too many warnings"
    assert read_csv(admin_client.get("/admin/reports/results.csv?status=PASS")) == []


def test_violations_csv_with_evidence_and_review(app, admin_client):
    s = seed_session(app)
    token = csrf_token(admin_client, "/admin/")
    v1 = s["violation_ids"][0]
    admin_client.post(f"/admin/violations/{v1}/review", data={"csrf_token": token, "decision": "dismiss", "note": "+1 looked down"})
    rows = read_csv(admin_client.get(f"/admin/reports/violations.csv?session={s['session_id']}"))
    assert [r["type"] for r in rows] == ["NO_FACE", "PROHIBITED_OBJECT", "NO_FACE"]
    first = rows[0]
    assert first["violation_id"] == str(v1) and first["review_status"] == "DISMISSED"
    assert first["review_note"] == "'+1 looked down"
    assert first["snapshot_url"].endswith(f"/admin/evidence/{v1}/snapshot") and rows[1]["snapshot_url"] == ""
    assert json.loads(first["details"])["seconds"] == 3.4
    assert [r["type"] for r in read_csv(admin_client.get("/admin/reports/violations.csv?review=DISMISSED"))] == ["NO_FACE"]


def test_csv_escapes_every_formula_prefix():
    from proctor.admin.fields import csv_cell, csv_text

    for bad in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(bad) == "'" + bad
    assert csv_cell("plain") == "plain" and csv_cell(None) == "" and csv_cell(3) == "3"
    text = csv_text(["a", "=b"], [["x,y", '"q"']])
    assert list(csv.reader(io.StringIO(text))) == [["a", "'=b"], ["x,y", '"q"']]


def test_printable_report(app, admin_client):
    s = seed_session(app)
    resp = admin_client.get(f"/admin/sessions/{s['session_id']}/report")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "Proctoring report" in page and "Taker One" in page and "css/admin.css" in page
    assert "<script>" not in page and " style=" not in page
    css = (Path(app.root_path).parent / "static" / "css" / "admin.css").read_text()
    assert "@media print" in css


def test_recordings_page_and_clips(app, admin_client):
    s = seed_session(app)
    from proctor.extensions import db
    from proctor.models import Violation

    with app.app_context():
        v = db.session.get(Violation, s["violation_ids"][1])
        v.clip_path = "evidence/clip1.webm"
        db.session.commit()
    page = admin_client.get(f"/admin/sessions/{s['session_id']}/recordings").get_data(as_text=True)
    assert f'src="/admin/evidence/{s["violation_ids"][1]}/clip"' in page and "<video" in page


def test_recording_streams_with_range_and_is_path_safe(app, admin_client, student_client, tmp_path):
    import shutil as sh
    import subprocess

    from proctor.extensions import db
    from proctor.models import Recording

    s = seed_session(app)
    data_dir = Path(app.config["PROCTOR_DATA_DIR"])
    (data_dir / "audio").mkdir(parents=True, exist_ok=True)
    wav = data_dir / "audio" / "chunk0.wav"
    espeak = sh.which("espeak-ng")
    assert espeak, "espeak-ng is needed (apt-get install espeak-ng)"
    subprocess.run([espeak, "-w", str(wav), "The answer to question two is the speed of light"], check=True, timeout=60)
    size = wav.stat().st_size
    outside = tmp_path / "outside.wav"
    sh.copy(wav, outside)
    with app.app_context():
        good = Recording(session_id=s["session_id"], student_id=s["student_id"], kind="audio", path="audio/chunk0.wav",
                         mime="audio/wav", bytes=size, sequence=0)
        bad = Recording(session_id=s["session_id"], student_id=s["student_id"], kind="audio", path=str(outside),
                        mime="audio/wav", bytes=size, sequence=1)
        db.session.add_all([good, bad])
        db.session.commit()
        good_id, bad_id = good.id, bad.id
    resp = admin_client.get(f"/admin/recordings/{good_id}")
    assert resp.status_code == 200 and resp.mimetype == "audio/wav" and resp.data == wav.read_bytes()
    part = admin_client.get(f"/admin/recordings/{good_id}", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.data == wav.read_bytes()[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{size}"
    assert admin_client.get(f"/admin/recordings/{bad_id}").status_code == 404  # outside the data folder
    assert student_client.get(f"/admin/recordings/{good_id}").status_code == 403
    page = admin_client.get(f"/admin/sessions/{s['session_id']}/recordings").get_data(as_text=True)
    assert f'<audio controls preload="metadata" src="/admin/recordings/{good_id}">' in page


def test_hostile_text_is_rendered_escaped(app, admin_client):
    s = seed_session(app, student_name=HOSTILE[:100], violations=[("NO_FACE", 10, {"note": "<img src=x onerror=alert(1)>"}, None)])
    for path in ("/admin/results", f"/admin/sessions/{s['session_id']}", f"/admin/sessions/{s['session_id']}/report"):
        page = admin_client.get(path).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in page and "<img src=x onerror" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page or "&lt;img src=x onerror" in page


def test_audit_log_page_lists_and_filters_actions(app, admin_client, student_client):
    s = seed_session(app)
    token = csrf_token(admin_client, "/admin/")
    v1 = s["violation_ids"][0]
    admin_client.post(f"/admin/violations/{v1}/review", data={"csrf_token": token, "decision": "confirm", "note": "<i>seen</i>"})
    admin_client.post(f"/admin/sessions/{s['session_id']}/outcome", data={"csrf_token": token, "outcome": "CLEAR"})
    page = admin_client.get("/admin/audit").get_data(as_text=True)
    assert "<code>violation.review</code>" in page and "<code>session.outcome</code>" in page and "Test Admin" in page
    assert "&lt;i&gt;seen&lt;/i&gt;" in page and "<i>seen</i>" not in page
    only = admin_client.get("/admin/audit?action=session.").get_data(as_text=True)
    assert "<code>session.outcome</code>" in only and "<code>violation.review</code>" not in only
    by_target = admin_client.get(f"/admin/audit?target_type=violation&target_id={v1}").get_data(as_text=True)
    assert "(1)" in by_target
    assert admin_client.get("/admin/audit?action=%25&target_id=abc&page=zz").status_code == 200
    assert "No audit entries match" in admin_client.get("/admin/audit?action=%25").get_data(as_text=True)
    assert student_client.get("/admin/audit").status_code == 403
