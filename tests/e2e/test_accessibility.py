"""Accessibility in a real browser: axe-core on every page a student and an admin reach, and the
exam and the live grid's actions driven by the keyboard alone.

axe-core (npm devDependency, MPL-2.0; installed into node_modules/ by scripts/install_static.sh,
never served to users) is injected into each page and run with the WCAG 2.0/2.1 A and AA rules.
A page fails on any serious or critical violation; the failure lists them page by page.
The contexts bypass the pages' CSP only so that the injected script may run.
Screenshots of the student's exam page, the live grid and an admin session page go to
test-artifacts/.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.e2e.conftest import E2E_PASSWORD, REPO_ROOT, login_in_browser
from tests.e2e.media import EMPTY_ROOM, FACE, TESTDATA

pytestmark = pytest.mark.timeout(900)

AXE_JS = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING_IMPACTS = ("serious", "critical")
ADMIN_EMAIL = "a11y-admin@example.edu"
STUDENT_EMAIL = "a11y-student@example.edu"
STUDENT_NAME = "Alex Access"
QUESTIONS = [("Which gas do plants take in?", ["Oxygen", "Carbon dioxide", "Helium"], 1),
             ("2 + 3 = ?", ["5", "6"], 0),
             ("Which planet is largest?", ["Mars", "Jupiter", "Venus"], 1)]
WAIT_MS = 60_000  # a wait, not a speed assertion: the server analyses frames on 2 shared CPU cores
MAX_TABS = 80     # more Tab presses than any page here has stops; a page needing more is itself a finding


def axe_violations(page, label: str) -> list[str]:
    """Runs axe on the page as it is now; returns one readable line per serious/critical violation."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE_JS))
    result = page.evaluate("""async (tags) => {
        const r = await window.axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
        return {passed: r.passes.length,
                violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                    targets: v.nodes.slice(0, 5).map(n => n.target.join(' ')),
                                                    count: v.nodes.length}))};
    }""", WCAG_TAGS)
    assert result["passed"] > 0, f"{label}: axe applied no rule (is the page empty?)"
    return [f"{label}: [{v['impact']}] {v['id']}: {v['help']} ({v['count']}x: {'; '.join(v['targets'])})"
            for v in result["violations"] if v["impact"] in BLOCKING_IMPACTS]


class Audit:
    """Collects the violations of every page visited, so that one run reports them all."""

    def __init__(self):
        self.found: list[str] = []
        self.pages: list[str] = []

    def check(self, page, label: str) -> None:
        page.wait_for_load_state()
        self.pages.append(label)
        self.found.extend(axe_violations(page, label))

    def assert_clean(self) -> None:
        assert not self.found, (f"{len(self.found)} serious/critical axe violations on {len(self.pages)} pages:\n"
                                + "\n".join(self.found))


def new_context_page(browser, server):
    ctx = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900},
                              permissions=["camera", "microphone"], bypass_csp=True)
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    page.console_messages = []
    page.on("console", lambda m: page.console_messages.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: page.console_messages.append(f"pageerror: {e}"))
    return page


def tab_to(page, selector: str, max_tabs: int = MAX_TABS, backwards: bool = False) -> int:
    """Presses Tab (or Shift+Tab) until the element matching `selector` has the focus; returns the presses."""
    target = page.locator(selector)
    target.wait_for()
    for n in range(1, max_tabs + 1):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        if target.evaluate("el => el === document.activeElement"):
            return n
    raise AssertionError(f"{selector} not reached in {max_tabs} Tab presses; focus ended on "
                         + page.evaluate("() => document.activeElement.outerHTML.slice(0, 200)"))


def focus_is_visible(page) -> bool:
    """The focused element draws an outline or a box-shadow (Bootstrap's focus ring)."""
    return page.evaluate("""() => {
        const s = getComputedStyle(document.activeElement);
        return (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || s.boxShadow !== 'none';
    }""")


@pytest.fixture(scope="module")
def site(make_live_server):
    if not AXE_JS.exists():
        pytest.fail(f"{AXE_JS} missing: run scripts/install_static.sh --dev (npm ci installs axe-core)")
    server = make_live_server()
    server.create_user(ADMIN_EMAIL, role="ADMIN", name="Ada Admin")
    server.create_user(STUDENT_EMAIL, name=STUDENT_NAME)
    # No liveness gesture: the fake camera shows a still photo (liveness has its own tests).
    exam_id = server.create_exam("Accessible Exam", QUESTIONS, require_liveness=False)
    return server, exam_id


def test_sign_in_pages_pass_axe(site, browser_factory):
    server, _ = site
    page = new_context_page(browser_factory(), server)
    audit = Audit()
    for path, label in [("/login", "login"), ("/signup", "signup"), ("/forgot-password", "forgot password"),
                        ("/reset-password/not-a-token", "reset link invalid"), ("/no-such-page", "error 404")]:
        page.goto(path)
        audit.check(page, label)
    # Forms with their errors shown: each error is tied to its field.
    page.goto("/signup")
    page.get_by_label("Email", exact=True).fill("not an email")
    page.get_by_label("Password", exact=True).fill("short")
    page.get_by_role("button", name=re.compile("sign up|create", re.I)).click()
    page.wait_for_load_state()
    invalid = page.locator("input.is-invalid")
    assert invalid.count() >= 1
    for i in range(invalid.count()):
        field = invalid.nth(i)
        error = field.locator("xpath=..").locator(".invalid-feedback").inner_text().strip()
        described = (field.get_attribute("aria-describedby") or "").split()
        linked = " ".join(page.locator(f"#{d}").inner_text() for d in described if page.locator(f"#{d}").count())
        assert error and error in linked, f"{field.get_attribute('name')}: its error {error!r} is not linked to it"
        assert field.get_attribute("aria-invalid") == "true"
    audit.check(page, "signup with errors")
    page.goto("/login")
    page.get_by_label("Email", exact=True).fill(STUDENT_EMAIL)
    page.get_by_label("Password", exact=True).fill("wrong password 1")
    page.get_by_role("button", name=re.compile("sign in", re.I)).click()
    audit.check(page, "login refused")
    # A real reset link: with no mail server the app writes it to its log.
    page.goto("/forgot-password")
    page.get_by_label("Email", exact=True).fill(STUDENT_EMAIL)
    page.get_by_role("button").filter(has_text=re.compile("send|reset", re.I)).click()
    page.wait_for_load_state()
    audit.check(page, "forgot password sent")
    link = re.findall(r"https?://\S+/reset-password/\S+", server.log_path.read_text(errors="replace"))
    assert link, "no reset link in the server log"
    page.goto(link[-1].replace(re.match(r"https?://[^/]+", link[-1]).group(0), ""))
    audit.check(page, "reset password")
    audit.assert_clean()


def _student_to_exam(page, exam_id: int, audit: Audit, shots) -> int:
    login_in_browser(page, STUDENT_EMAIL)
    audit.check(page, "student home")
    page.goto(f"/student/exams/{exam_id}/")
    page.wait_for_url("**/student/rules**")
    audit.check(page, "student rules")
    page.get_by_label(re.compile("I have read the rules")).check()
    page.get_by_role("button", name=re.compile("Accept and continue")).click()
    page.wait_for_url("**/student/system-check**")
    page.locator("#check-continue:not([disabled])").wait_for(timeout=WAIT_MS)
    audit.check(page, "student system check")
    page.locator("#check-continue").click()
    page.wait_for_url("**/student/face**", timeout=WAIT_MS)
    audit.check(page, "student face registration")
    page.locator("#photo").set_input_files(str(TESTDATA / EMPTY_ROOM))  # refused: no face
    page.locator("#face-upload").click()
    expect(page.locator("#face-error")).to_contain_text("no face found", timeout=WAIT_MS)
    assert page.locator("#photo").get_attribute("aria-describedby") == "face-error"
    audit.check(page, "student face registration refused")
    page.locator("#photo").set_input_files(str(TESTDATA / FACE))
    page.locator("#face-upload").click()
    page.wait_for_url(lambda url: "/face" not in url, timeout=WAIT_MS)
    if "/confirm" in page.url:  # the check starts by itself; the button is there to retry
        audit.check(page, "student identity confirmation")
        ready = re.compile(r"/ready$")
        try:
            page.wait_for_url(ready, timeout=WAIT_MS // 2)
        except PlaywrightTimeout:
            page.locator("#confirm-start:not([disabled])").click(timeout=WAIT_MS)
            page.wait_for_url(ready, timeout=WAIT_MS)
    audit.check(page, "student ready")
    # Start the exam by keyboard.
    tab_to(page, "#start-exam")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/student/sessions/\d+$"), timeout=WAIT_MS)
    page.wait_for_selector("#question-text")
    audit.check(page, "student exam")
    shots(page, "student-exam")
    # The timer changes every second: inside a live region a screen reader would read it every second.
    live = page.locator("#timer").evaluate("""el => {
        for (let n = el; n; n = n.parentElement) {
            const live = n.getAttribute('aria-live'), role = n.getAttribute('role');
            if (live === 'off') return null;
            if (live || ['status', 'alert', 'log', 'marquee'].includes(role)) return n.outerHTML.slice(0, 120);
        }
        return null;
    }""")
    assert live is None, f"the timer is inside a live region: {live}"
    return int(re.search(r"/sessions/(\d+)", page.url).group(1))


def _answer_by_keyboard(page) -> dict[str, str]:
    """Each question (in this student's order): Tab into the options, Space and arrows to choose the right
    one, Tab on to Next and press it. Returns {question: chosen option}."""
    key = {text: options[correct] for text, options, correct in QUESTIONS}
    chosen_by_question = {}
    for i in range(len(QUESTIONS)):
        legend = page.locator("#question-text")
        expect(legend).to_contain_text(f"Question {i + 1} of {len(QUESTIONS)}")
        text = legend.inner_text().split(": ", 1)[1]
        labels = page.locator("#question .form-check-label").all_inner_texts()
        position = labels.index(key[text])
        tab_to(page, "#question input[type=radio] >> nth=0")
        page.keyboard.press("Space")  # the first option; the arrows move the choice within the group
        for _ in range(position):
            page.keyboard.press("ArrowDown")
        chosen = page.get_by_label(key[text], exact=True)
        expect(chosen).to_be_checked()
        assert chosen.evaluate("el => el === document.activeElement")
        assert focus_is_visible(page), "the focused option shows no focus ring"
        expect(page.locator("#save-state")).to_have_text("Saved", timeout=WAIT_MS)
        chosen_by_question[text] = key[text]
        if i < len(QUESTIONS) - 1:
            tab_to(page, "#next")
            assert focus_is_visible(page), "the Next button shows no focus ring"
            page.keyboard.press("Enter")
    # Back one question with the keyboard (Shift+Tab to Previous): its answer is still there.
    tab_to(page, "#prev", backwards=True)
    page.keyboard.press("Enter")
    legend = page.locator("#question-text")
    expect(legend).to_contain_text(f"Question {len(QUESTIONS) - 1} of")
    expect(page.get_by_label(chosen_by_question[legend.inner_text().split(": ", 1)[1]], exact=True)).to_be_checked()
    # The question list: Tab to question 1's button and press it; the list is redrawn, the focus stays on it.
    tab_to(page, "#question-nav button >> nth=0")
    page.keyboard.press("Enter")
    expect(legend).to_contain_text(f"Question 1 of {len(QUESTIONS)}")
    current = page.locator("#question-nav button[aria-current=true]")
    assert current.inner_text() == "1" and current.evaluate("el => el === document.activeElement"), \
        "pressing a question's button took the focus off it"
    assert focus_is_visible(page), "the question button shows no focus ring"
    return chosen_by_question


def _submit_by_keyboard(page, session_id: int, audit: Audit) -> None:
    tab_to(page, "#submit")
    page.keyboard.press("Enter")
    page.wait_for_selector("#submit-modal.show")
    expect(page.locator("#submit-summary")).to_contain_text(f"You answered {len(QUESTIONS)} of {len(QUESTIONS)}")
    # axe measures contrast as drawn: wait for the dialog's fade-in to end.
    modal = page.locator("#submit-modal")
    for _ in range(40):
        if modal.evaluate("el => getComputedStyle(el).opacity === '1'"):
            break
        page.wait_for_timeout(50)
    audit.check(page, "student exam, submit dialog")
    # The dialog takes the focus (Bootstrap's modal); Tab stays inside it and reaches Submit.
    tab_to(page, "#submit-confirm", max_tabs=6)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/student/sessions/{session_id}/result", timeout=WAIT_MS)


def _admin_live_grid_by_keyboard(page, student_id: int, audit: Audit, shots) -> None:
    page.goto("/admin/monitor")
    page.locator('#connection-state[data-state="live"]').wait_for(timeout=WAIT_MS)
    card_link = f'#monitor-grid [data-student-id="{student_id}"] a'
    page.locator(card_link).wait_for(timeout=WAIT_MS)
    audit.check(page, "admin live grid")
    shots(page, "admin-live-grid")
    tab_to(page, card_link)
    assert focus_is_visible(page), "the student's card shows no focus ring"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/admin/monitor/{student_id}$"))
    page.locator("#live-feed").wait_for()
    audit.check(page, "admin live student")
    tab_to(page, "#clear-warnings")
    assert focus_is_visible(page), "Clear warnings shows no focus ring"
    page.keyboard.press("Enter")
    page.locator("#action-result", has_text="Warnings cleared").wait_for(timeout=WAIT_MS)
    tab_to(page, "#terminate-reason")
    tab_to(page, "#terminate", max_tabs=3)
    assert focus_is_visible(page), "Force terminate shows no focus ring"


def test_student_and_admin_pages_pass_axe_and_work_by_keyboard(site, browser_factory, media, shots):
    server, exam_id = site
    student = new_context_page(browser_factory(video=media.face(), audio=media.silence()), server)
    admin = new_context_page(browser_factory(), server)
    audit = Audit()
    try:
        session_id = _student_to_exam(student, exam_id, audit, shots)
        (student_id,) = server.sql("SELECT StudentID FROM exam_sessions WHERE SessionID = :s", s=session_id)[0]
        _answer_by_keyboard(student)
        audit.check(student, "student exam, answered")

        login_in_browser(admin, ADMIN_EMAIL)
        _admin_live_grid_by_keyboard(admin, student_id, audit, shots)

        _submit_by_keyboard(student, session_id, audit)
        audit.check(student, "student result")
        assert server.sql("SELECT Score, Total FROM exam_results WHERE SessionID = :s", s=session_id) == [
            (len(QUESTIONS), len(QUESTIONS))]
        student.goto("/student/")
        audit.check(student, "student home, exam taken")
        # Violations in each review state, as the live runtime records them, for the review pages.
        for kind, review, note in [("NO_FACE", "PENDING", None), ("TAB_SWITCH", "CONFIRMED", "Seen on the clip"),
                                   ("VOICE_DETECTED", "DISMISSED", "Read the question aloud")]:
            server.sql("INSERT INTO violations (StudentID, SessionID, Type, Severity, Details, Timestamp, ReviewStatus, "
                       "ReviewNote) VALUES (:st, :se, :t, 'medium', '{}', CURRENT_TIMESTAMP, :r, :n)",
                       st=student_id, se=session_id, t=kind, r=review, n=note)
        student.goto("/student/system-check/problems")
        audit.check(student, "student system check problems")

        (question_id,) = server.sql("SELECT MIN(QuestionID) FROM questions WHERE ExamID = :e", e=exam_id)[0]
        for path, label in [("/admin/", "admin home"), ("/admin/students", "admin students"),
                            ("/admin/students/new", "admin student new"),
                            (f"/admin/students/{student_id}/edit", "admin student edit"),
                            (f"/admin/students/{student_id}/delete", "admin student delete"),
                            ("/admin/students/import", "admin students import"),
                            ("/admin/exams", "admin exams"), ("/admin/exams/new", "admin exam new"),
                            (f"/admin/exams/{exam_id}/edit", "admin exam edit"),
                            (f"/admin/exams/{exam_id}/questions", "admin questions"),
                            (f"/admin/questions/{question_id}/edit", "admin question edit"),
                            (f"/admin/exams/{exam_id}/delete", "admin exam delete"),
                            ("/admin/results", "admin results"),
                            (f"/admin/sessions/{session_id}", "admin session"),
                            (f"/admin/sessions/{session_id}/report", "admin session report"),
                            (f"/admin/sessions/{session_id}/recordings", "admin recordings"),
                            ("/admin/reports", "admin reports"), ("/admin/audit", "admin audit"),
                            (f"/admin/monitor/{student_id}", "admin live student, no exam")]:
            resp = admin.goto(path)
            assert resp.status == 200, path
            audit.check(admin, label)
            if label == "admin session":
                shots(admin, "admin-session")
        # Forms with their errors shown.
        admin.goto("/admin/exams/new")
        admin.get_by_role("button", name="Save exam").click()
        audit.check(admin, "admin exam new with errors")
        admin.goto("/admin/students/new")
        admin.get_by_role("button").filter(has_text=re.compile("save|create|add", re.I)).first.click()
        audit.check(admin, "admin student new with errors")
        # A bulk import, and its job page.
        admin.goto("/admin/students/import")
        csv_path = Path(server.root) / "a11y-import.csv"
        csv_path.write_text(f"name,email,password\nIan Import,ian.import@example.edu,{E2E_PASSWORD}\n")
        admin.locator("input[type=file]").first.set_input_files(str(csv_path))
        admin.locator("form[enctype] button[type=submit]").first.click()
        admin.wait_for_url(re.compile(r"/admin/students/import/[^/]+$"), timeout=WAIT_MS)
        audit.check(admin, "admin students import job")
    except Exception:
        print("student console:", "\n".join(student.console_messages[-30:]))
        print("admin console:", "\n".join(admin.console_messages[-30:]))
        print("server log:", server.log_tail(60))
        raise
    print(f"\naxe: {len(audit.pages)} page states checked ({', '.join(audit.pages)}), "
          f"{len(audit.found)} serious/critical violations")
    audit.assert_clean()
