/* One student's live page: status from the socket/poll, and the proctor's actions (audited JSON endpoints). */
(function () {
  "use strict";
  const root = document.getElementById("student-monitor");
  if (!root) return;
  const P = window.Proctor, Live = window.AdminLive;
  const studentId = String(root.getAttribute("data-student-id"));
  const sessionId = root.getAttribute("data-session-id");
  const resultEl = document.getElementById("action-result");
  const mine = (p) => Live.studentIdOf(p) === studentId;

  function say(text, ok) {
    if (!resultEl) return;
    resultEl.textContent = text;
    resultEl.className = "small mt-2 " + (ok ? "text-success" : "text-danger");
  }

  function showStatus(status) {
    const d = Live.describe(status);
    const set = (field, text) => {
      const el = root.querySelector('[data-field="' + field + '"]');
      if (el) el.textContent = text;
    };
    set("frame_age", d.ageText);
    set("load", d.degraded ? d.loadText : "every frame analysed");
    set("face", d.faceText);
    set("objects", d.objectText);
    set("persons", d.persons === null ? "—" : String(d.persons));
    set("warnings", String(d.warnings));
    set("suspicion", d.suspicionText);
    set("active_rules", d.ruleText);
  }

  // how: a sentence (the server's reason_text) or a reason the proctor just typed; either may end with a full stop.
  function ended(how) {
    root.setAttribute("data-exam-status", "ENDED");
    say("The exam has ended." + (how ? " " + how.replace(/\.?$/, ".") : ""), true);
    ["clear-warnings", "terminate", "auto-terminate"].forEach((id) => {
      const el = document.getElementById(id);
      if (el) el.disabled = true;
    });
  }

  function addViolation(p) {
    const list = document.getElementById("live-violations");
    if (!list) return;
    const li = document.createElement("li");
    if (p.violation_id !== undefined && p.violation_id !== null) li.setAttribute("data-violation-id", String(p.violation_id));
    const w = Live.violationWords(p.type);
    li.setAttribute("data-type", String(p.type || ""));
    li.setAttribute("data-severity", w.severity);
    const title = document.createElement("strong");
    title.textContent = w.title;
    li.appendChild(title);
    const sev = P.rules().wording.severities[w.severity];
    if (sev) li.appendChild(document.createTextNode(" (" + sev.label.toLowerCase() + ")"));
    const when = p.time ? new Date(p.time) : new Date();
    li.appendChild(document.createTextNode(" " + (isNaN(when) ? "" : when.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"}) + " local")));  // as local_time.js shows the rows the page came with
    if (p.evidence_url) {
      li.appendChild(document.createTextNode(" · "));
      const a = document.createElement("a");
      a.href = p.evidence_url;
      a.target = "_blank";
      a.rel = "noopener";
      a.textContent = "snapshot";
      li.appendChild(a);
    }
    list.insertBefore(li, list.firstChild);
    const max = Number(list.getAttribute("data-max")) || 20;
    while (list.children.length > max) list.removeChild(list.lastChild);
    const none = document.getElementById("no-violations");
    if (none) none.classList.add("d-none");
  }

  const handlers = {
    snapshot(students) {
      const me = students.filter((s) => String(s.id) === studentId)[0];
      if (me) showStatus(me.status);
    },
    student_status(p) { if (mine(p)) showStatus(p.status || {}); },
    student_violation(p) {
      if (!mine(p)) return;
      Live.violationToast(p, p.name || root.getAttribute("data-student-name"));
      addViolation(p);
    },
    warnings_cleared(p) { if (mine(p)) say("Warnings cleared.", true); },
    exam_terminated(p) { if (mine(p) || String(p.session_id) === String(sessionId)) ended(p.reason_text || p.reason); },
    student_left(p) { if (mine(p)) ended(""); },
  };
  Live.connect(handlers, root.getAttribute("data-poll-url"), Number(root.getAttribute("data-poll-interval")) || 4);

  if (!sessionId) return;
  const sessionApi = "/api/admin/sessions/" + encodeURIComponent(sessionId);

  // An action's reply: {ok, status, data}; a network failure becomes a reply too.
  async function act(url, body) {
    try {
      return await P.postJSON(url, body);
    } catch (e) {
      return {ok: false, status: 0, data: {error: "the server is unreachable"}};
    }
  }
  const why = (r) => r.data.error || ("HTTP " + r.status);

  const clear = document.getElementById("clear-warnings");
  if (clear) {
    clear.addEventListener("click", async () => {
      clear.disabled = true;
      const r = await act("/api/admin/students/" + encodeURIComponent(studentId) + "/clear-warnings", {});
      if (r.ok) { say("Warnings cleared.", true); showStatus({warnings: 0}); } else say("Could not clear warnings: " + why(r), false);
      clear.disabled = false;
    });
  }
  const terminate = document.getElementById("terminate");
  if (terminate) {
    terminate.addEventListener("click", async () => {
      const reason = (document.getElementById("terminate-reason").value || "").trim() || "Terminated by the proctor";
      if (!window.confirm("Terminate this exam now? The student's exam ends and is graded as terminated.")) return;
      terminate.disabled = true;
      const r = await act(sessionApi + "/terminate", {reason: reason});
      if (r.ok) ended("Reason: " + reason); else { say("Could not terminate: " + why(r), false); terminate.disabled = false; }
    });
  }
  const auto = document.getElementById("auto-terminate");
  if (auto) {
    auto.addEventListener("change", async () => {
      const enabled = auto.checked;
      const r = await act(sessionApi + "/auto-terminate", {enabled: enabled});
      if (r.ok) say("Auto-terminate " + (enabled ? "on" : "off") + ".", true);
      else { auto.checked = !enabled; say("Could not change auto-terminate: " + why(r), false); }
    });
  }
  document.querySelectorAll(".rule-toggle").forEach((box) => {
    box.addEventListener("change", async () => {
      const rule = box.getAttribute("data-rule");
      const enabled = box.checked;
      const r = await act(sessionApi + "/rules", {rule: rule, enabled: enabled});
      if (r.ok) say(rule + " " + (enabled ? "on" : "off") + " for this student.", true);
      else { box.checked = !enabled; say("Could not change " + rule + ": " + why(r), false); }
    });
  });
})();
