"""What the proctor sees, part two (issue 15): the printable report and the CSV exports in words, the
"exam ended" toast with a sentence instead of the coded reason, and toasts that wait their turn (polite)
unless critical. The scripts run in Node against a small fake DOM, with the wording the server renders."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import csrf_token, make_user
from tests.live.test_frame_api import Student, live_env, stop_live_runtime  # noqa: F401 (autouse fixtures)
from tests.live.test_sockets import socket_client, wait_for
from tests.web.test_page_data import rendered_facts

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")

# Just enough DOM for static/js/admin/live.js (toast) and monitor.js (its handlers): elements keep their
# attributes, children and text; AdminLive.connect is caught so the test can call the page's handlers.
HARNESS = r"""
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
function el(tag) {
  return {tagName: tag, attrs: {}, children: [], className: "", textContent: "", parent: null,
    classList: {add() {}, remove() {}},
    setAttribute(k, v) { this.attrs[k] = String(v); }, getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; },
    hasAttribute(k) { return k in this.attrs; },
    appendChild(c) { if (c.parent) c.parent.removeChild(c); this.children.push(c); c.parent = this; return c; },
    append(...cs) { cs.forEach((c) => this.appendChild(c)); },
    removeChild(c) { this.children = this.children.filter((x) => x !== c); c.parent = null; },
    remove() { if (this.parent) this.parent.removeChild(this); },
    get firstChild() { return this.children[0]; }, addEventListener() {}, querySelector() { return null; }};
}
const byId = {toasts: el("div"), "monitor-grid": el("div")};
byId["monitor-grid"].setAttribute("data-monitor-base", "/admin/monitor");
global.window = global;
global.document = {getElementById: (id) => byId[id] || null, createElement: el, querySelectorAll: () => []};
global.setTimeout = () => 0;
global.setInterval = () => 0;
global.Image = function () {};
window.Proctor = {rules: () => input.facts};
const run = (path) => new Function(fs.readFileSync(path, "utf8"))();
run(input.root + "/static/js/admin/live.js");
let handlers = null;
window.AdminLive.connect = (h) => { handlers = h; };
run(input.root + "/static/js/admin/monitor.js");
input.calls.forEach((c) => {
  if (c.toast) window.AdminLive.toast(c.toast[0], c.toast[1], c.toast[2]);
  else handlers[c.handler](c.payload);
});
const text = (e) => e.textContent + e.children.map(text).join(" ");
console.log(JSON.stringify(byId.toasts.children.map((t) => ({
  role: t.getAttribute("role"), severity: t.getAttribute("data-severity"),
  title: text(t.children[0]), body: text(t.children[1])}))));
"""


def run_admin_scripts(facts: dict, calls: list[dict]) -> list[dict]:
    """The toasts static/js/admin/live.js + monitor.js put on the page after `calls` (toasts or handler calls)."""
    assert NODE, "node is needed to run the admin scripts (apt-get install nodejs)"
    out = subprocess.run([NODE, "-e", HARNESS], input=json.dumps({"facts": facts, "calls": calls, "root": str(ROOT)}),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# --------------------------------------------------------------------------- toasts: polite unless critical

def test_toast_containers_are_polite_and_only_a_critical_toast_interrupts(app, admin_client):
    student_id = make_user(app, "watched@example.edu", name="Watched One")
    pages = {"/admin/monitor": None, f"/admin/monitor/{student_id}": None}
    for path in pages:
        pages[path] = admin_client.get(path).get_data(as_text=True)
        containers = re.findall(r'<div id="toasts"[^>]*>', pages[path])
        assert len(containers) == 1, path
        assert 'aria-live="polite"' in containers[0] and "assertive" not in pages[path], path
    facts = rendered_facts(pages["/admin/monitor"])
    toasts = run_admin_scripts(facts, [{"toast": ["Looked away", "Ana looked away", {"severity": "medium"}]},
                                       {"toast": ["Exam ended", "Ended by a proctor", {"severity": "critical"}]},
                                       {"toast": ["Notice", "Something small", {"severity": "low"}]}])
    assert [(t["severity"], t["role"]) for t in toasts] == [("medium", "status"), ("critical", "alert"), ("low", "status")]
    assert [t["title"].split()[-1] for t in toasts] == ["away", "ended", "Notice"]


# --------------------------------------------------------------------------- exam_terminated: a sentence

@pytest.fixture
def admin(app, admin_client):
    admin_client.csrf = csrf_token(admin_client, "/admin/")
    return admin_client


def _post(admin, url, body):
    return admin.post(url, json=body, headers={"X-CSRFToken": admin.csrf})


@pytest.fixture
def one_warning_per_event(monkeypatch):
    """Three page events in a row are one incident (one warning) by default; here each is its own, so
    three of them reach the auto-terminate threshold (the app reads the setting when it is made)."""
    monkeypatch.setenv("PROCTOR_INCIDENT_WINDOW_S", "0")


def test_exam_terminated_carries_the_sentence_beside_the_raw_reason(one_warning_per_event, app, admin):
    admin_socket = socket_client(app, admin, "/admin")
    assert admin_socket.is_connected("/admin")
    try:
        # a proctor's termination, through the audited route
        typed = Student(app, "typed@example.edu", name="Ana Lima")
        assert _post(admin, f"/api/admin/sessions/{typed.session_id}/terminate", {"reason": "phone on the desk"}).status_code == 200
        by_hand, _ = wait_for(admin_socket, "/admin", "exam_terminated", lambda p: p["session_id"] == typed.session_id)
        assert by_hand["reason"] == "phone on the desk"  # the raw reason stays for tools
        assert by_hand["reason_text"] == "Ended by a proctor: phone on the desk"
        assert by_hand["name"] == "Ana Lima" and by_hand["auto"] is False

        # an automatic one: three warnings from the exam page with auto-terminate on, through the real runtime
        auto = Student(app, "auto@example.edu", name="Bo Chen")
        assert _post(admin, f"/api/admin/sessions/{auto.session_id}/auto-terminate", {"enabled": True}).status_code == 200
        for kind in ("TAB_SWITCH", "FULLSCREEN_EXIT", "VOICE_DETECTED"):
            assert auto.post_event({"type": kind, "level": 0.4, "duration_ms": 1500}).status_code == 200
        ended, _ = wait_for(admin_socket, "/admin", "exam_terminated", lambda p: p["session_id"] == auto.session_id)
        assert ended["auto"] is True and ended["reason"].startswith("Automatically terminated: warning 3 of 3: VOICE_DETECTED opens incident 3")
        assert ended["reason_text"] == "Ended automatically after 3 warnings; the last: voice."
        assert not re.search(r"[A-Z]+_[A-Z]+", ended["reason_text"]), "a rule code in the sentence"
    finally:
        admin_socket.disconnect("/admin")

    # the dashboard's toast shows the sentence, with the student's name, not the coded reason
    facts = rendered_facts(admin.get("/admin/monitor").get_data(as_text=True))
    [toast] = run_admin_scripts(facts, [{"handler": "exam_terminated", "payload": ended}])
    assert toast["role"] == "alert" and toast["severity"] == "critical"
    assert "Bo Chen" in toast["title"] and toast["body"] == "Ended automatically after 3 warnings; the last: voice."
    assert "VOICE_DETECTED" not in json.dumps(toast)


def test_a_termination_with_no_typed_reason_reads_as_such():
    from proctor import wording
    from proctor.live.actions import DEFAULT_REASON

    assert wording.PROCTOR_DEFAULT_REASON == DEFAULT_REASON
    assert wording.termination_sentence(DEFAULT_REASON, audience="admin") == "Ended by a proctor (no reason given)."
    assert wording.termination_sentence(DEFAULT_REASON, audience="student") == "A proctor ended your exam."
    js = (ROOT / "static/js/admin/monitor_student.js").read_text()
    assert f'"{DEFAULT_REASON}"' in js, "the student monitor's empty-reason fallback changed: update proctor/wording.py"


# --------------------------------------------------------------------------- the printable report

LOCAL_TIME_HARNESS = r"""
const fs = require("fs");
const input = JSON.parse(fs.readFileSync(0, "utf8"));
const els = input.times.map((t) => ({attrs: t.attrs, textContent: t.text, title: "",
  getAttribute(k) { return k in this.attrs ? this.attrs[k] : null; }, hasAttribute(k) { return k in this.attrs; }}));
global.document = {querySelectorAll: () => els};
new Function(fs.readFileSync(input.root + "/static/js/admin/local_time.js", "utf8"))();
console.log(JSON.stringify(els.map((e) => ({text: e.textContent, title: e.title}))));
"""


def _time_elements(html: str) -> list[dict]:
    """Every <time class="local-time"> of a page: its attributes (valueless ones as "") and its text."""
    out = []
    for attrs, text in re.findall(r'<time class="local-time"([^>]*)>([^<]*)</time>', html):
        parsed = {k: v or "" for k, v in re.findall(r'([\w-]+)(?:="([^"]*)")?', attrs)}
        out.append({"attrs": parsed, "text": text})
    return out


def _report_without_codes_in_attributes(page: str) -> str:
    # data-type attributes keep the code for scripts and tests, never as text (the timeline included).
    return re.sub(r' data-type="[A-Z_]+"', "", page)


def test_printable_report_reads_as_words_and_times(app, admin_client):
    from tests.web.test_wording import _live_like_session

    s, start = _live_like_session(app)
    resp = admin_client.get(f"/admin/sessions/{s['session_id']}/report")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    text = _report_without_codes_in_attributes(page)
    # no rule codes, no coded termination reason, no raw internals
    import config_vision

    for code in list(config_vision.RULES) + ["Automatically terminated", "warning 1 of 3", "head_turned", "PENDING",
                                             "TERMINATED", "4411", "frame_t"]:
        assert code not in text, code
    assert not re.search(r"\b1[0-9]{9}(\.\d+)?\b", text), "an epoch float is on the report"
    # the wording module's sentences, titles and severity labels (icon hidden, label in words)
    rows = re.search(r'<table class="table table-sm" id="report-violations">.*?</table>', page, re.S).group(0)
    assert "<strong>Looking away</strong><div>Ana Lima looked away from the screen for 6 s.</div>" in rows
    assert "Ana Lima: a prohibited object is in view (cell phone 0.82)." in rows
    assert "Cause: head turned away" in rows and "Head turned: left/right 38°" in rows
    assert '<span aria-hidden="true">⚠</span> Warning' in rows and '<span aria-hidden="true">✖</span> Critical' in rows
    assert '<td id="report-ending">Ended automatically after 3 warnings; the last: identity mismatch.</td>' in page
    assert "looking away 1, identity mismatch 1, prohibited object 1" in page
    # times from the start, then the clock time; without JavaScript that is UTC, and says so
    at = start.replace(microsecond=0) + timedelta(seconds=754)
    assert (f'<span class="moment-offset">+12:34</span> <time class="local-time" data-with-zone '
            f'datetime="{at.isoformat()}Z">{at:%H:%M:%S} UTC</time>') in rows
    assert '<span class="moment-offset">+1:02:05</span>' in rows and '<span class="moment-offset">+12:28</span>' in rows
    assert f'datetime="{start.replace(microsecond=0).isoformat()}Z">{start:%Y-%m-%d %H:%M:%S} UTC</time>' in page
    assert "js/admin/local_time.js" in page and "<script>" not in page


def test_report_times_name_the_readers_zone(app, admin_client):
    """In a browser the report's times become local ones, and the zone is named (paper travels); the session
    page's times, which stay on screen, keep the short "local"."""
    from tests.web.test_wording import _live_like_session

    s, start = _live_like_session(app)
    report = _time_elements(admin_client.get(f"/admin/sessions/{s['session_id']}/report").get_data(as_text=True))
    review = _time_elements(admin_client.get(f"/admin/sessions/{s['session_id']}").get_data(as_text=True))
    assert len(report) >= 8 and all("data-with-zone" in t["attrs"] for t in report)
    assert review and not any("data-with-zone" in t["attrs"] for t in review)
    assert NODE, "node is needed to run the admin scripts (apt-get install nodejs)"
    for tz, zone, hours in (("America/New_York", "EST", -5), ("Asia/Kolkata", "GMT+5:30", 5.5)):
        out = subprocess.run([NODE, "-e", LOCAL_TIME_HARNESS], input=json.dumps({"times": report + review, "root": str(ROOT)}),
                             capture_output=True, text=True, timeout=60, env={"TZ": tz, "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr
        shown = json.loads(out.stdout)
        first = start.replace(microsecond=0) + timedelta(seconds=754)  # the first violation
        local = (first + timedelta(hours=hours)).strftime("%H:%M:%S")
        assert [t["text"] for t, sent in zip(shown, report) if sent["attrs"]["datetime"] == first.isoformat() + "Z"] == [
            f"{local} {zone}"], (tz, shown)
        assert all(t["text"].endswith(" " + zone) and t["title"].endswith(" UTC") for t in shown[:len(report)])
        assert all(t["text"].endswith(" local") for t in shown[len(report):])


# --------------------------------------------------------------------------- CSV exports: codes kept, words added

def test_csv_exports_keep_the_codes_and_add_readable_columns(app, admin_client):
    from tests.web.test_admin_results import read_csv
    from tests.web.test_wording import _live_like_session

    s, _ = _live_like_session(app)
    rows = read_csv(admin_client.get(f"/admin/reports/violations.csv?session={s['session_id']}"))
    assert [r["type"] for r in rows] == ["DISTRACTION", "PROHIBITED_OBJECT", "IDENTITY_MISMATCH"]  # tools match on these
    assert [r["severity"] for r in rows] == ["medium", "high", "critical"]
    assert [r["severity_label"] for r in rows] == ["Warning", "Serious", "Critical"]
    assert [r["time_from_start"] for r in rows] == ["12:34", "13:20", "1:02:05"]
    assert rows[0]["description"] == "Ana Lima looked away from the screen for 6 s"
    assert rows[1]["description"] == "Ana Lima: a prohibited object is in view (cell phone 0.82)"
    assert json.loads(rows[0]["details"])["seq"] == 4411  # the raw details stay whole for tools
    # the new columns come after the old ones, so a tool reading by position still finds them
    header = list(rows[0])
    assert header[:15] == ["violation_id", "session_id", "student_id", "student_name", "student_email", "exam_title",
                           "timestamp_utc", "type", "severity", "details", "review_status", "review_note",
                           "reviewed_at_utc", "snapshot_url", "clip_url"]
    [result] = read_csv(admin_client.get("/admin/reports/results.csv"))
    assert result["termination_reason"].startswith("Automatically terminated: warning 3 of 3 for IDENTITY_MISMATCH")
    assert result["how_it_ended"] == "Ended automatically after 3 warnings; the last: identity mismatch."
    assert list(result)[-1] == "how_it_ended" and list(result)[14] == "termination_reason"
