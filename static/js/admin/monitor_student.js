// One student's live page: status from the socket/poll, and the proctor's actions (D2's JSON endpoints).
(function () {
  "use strict";
  var root = document.getElementById("student-monitor");
  if (!root || !window.AdminLive) { return; }
  var Live = window.AdminLive;
  var studentId = String(root.getAttribute("data-student-id"));
  var sessionId = root.getAttribute("data-session-id");
  var resultEl = document.getElementById("action-result");

  function say(text, ok) {
    if (!resultEl) { return; }
    resultEl.textContent = text;
    resultEl.className = "small mt-2 " + (ok ? "text-success" : "text-danger");
  }

  function showStatus(status) {
    var d = Live.describe(status);
    var set = function (field, text) {
      var el = root.querySelector('[data-field="' + field + '"]');
      if (el) { el.textContent = text; }
    };
    set("frame_age", d.ageText);
    set("face", d.faceText);
    set("objects", d.objectText);
    set("warnings", String(d.warnings));
    set("suspicion", d.suspicionText);
    set("active_rules", d.ruleText);
  }

  function ended(reason) {
    root.setAttribute("data-exam-status", "ENDED");
    say("The exam has ended" + (reason ? ": " + reason : "") + ".", true);
    ["clear-warnings", "terminate", "auto-terminate"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) { el.disabled = true; }
    });
  }

  function addViolation(p) {
    var list = document.getElementById("live-violations");
    if (!list) { return; }
    var li = document.createElement("li");
    if (p.violation_id !== undefined && p.violation_id !== null) { li.setAttribute("data-violation-id", String(p.violation_id)); }
    var code = document.createElement("code");
    code.textContent = p.type || p.rule || "VIOLATION";
    li.appendChild(code);
    var when = p.time ? new Date(p.time) : new Date();
    li.appendChild(document.createTextNode(" " + (isNaN(when) ? "" : when.toISOString().substr(11, 8) + " UTC")));
    if (p.evidence_url) {
      li.appendChild(document.createTextNode(" · "));
      var a = document.createElement("a");
      a.href = p.evidence_url;
      a.target = "_blank";
      a.rel = "noopener";
      a.textContent = "snapshot";
      li.appendChild(a);
    }
    list.insertBefore(li, list.firstChild);
    var max = Number(list.getAttribute("data-max")) || 20;
    while (list.children.length > max) { list.removeChild(list.lastChild); }
    var none = document.getElementById("no-violations");
    if (none) { none.classList.add("d-none"); }
  }

  var handlers = {
    snapshot: function (students) {
      var me = students.filter(function (s) { return String(s.id) === studentId; })[0];
      if (me) { showStatus(me.status); }
    },
    student_status: function (p) { if (Live.studentIdOf(p) === studentId) { showStatus(p.status || p); } },
    student_violation: function (p) {
      if (Live.studentIdOf(p) !== studentId) { return; }
      Live.toast("Violation: " + (p.type || p.rule || ""), p.message || "", "warning");
      addViolation(p);
    },
    warnings_cleared: function (p) { if (Live.studentIdOf(p) === studentId) { say("Warnings cleared.", true); } },
    exam_terminated: function (p) {
      if (Live.studentIdOf(p) === studentId || String(p.session_id) === String(sessionId)) { ended(p.reason); }
    },
    student_left: function (p) { if (Live.studentIdOf(p) === studentId) { ended(""); } }
  };
  Live.connect(handlers, root.getAttribute("data-poll-url"), Number(root.getAttribute("data-poll-interval")) || 4);

  if (!sessionId) { return; }
  var clear = document.getElementById("clear-warnings");
  if (clear) {
    clear.addEventListener("click", function () {
      clear.disabled = true;
      Live.postJSON("/api/admin/students/" + encodeURIComponent(studentId) + "/clear-warnings", {})
        .then(function () { say("Warnings cleared.", true); showStatus({ warnings: 0 }); })
        .catch(function (e) { say("Could not clear warnings: " + e.message, false); })
        .then(function () { clear.disabled = false; });
    });
  }
  var terminate = document.getElementById("terminate");
  if (terminate) {
    terminate.addEventListener("click", function () {
      var reason = (document.getElementById("terminate-reason").value || "").trim() || "Terminated by the proctor";
      if (!window.confirm("Terminate this exam now? The student's exam ends and is graded as terminated.")) { return; }
      terminate.disabled = true;
      Live.postJSON("/api/admin/sessions/" + encodeURIComponent(sessionId) + "/terminate", { reason: reason })
        .then(function () { ended(reason); })
        .catch(function (e) { say("Could not terminate: " + e.message, false); terminate.disabled = false; });
    });
  }
  var auto = document.getElementById("auto-terminate");
  if (auto) {
    auto.addEventListener("change", function () {
      var enabled = auto.checked;
      Live.postJSON("/api/admin/sessions/" + encodeURIComponent(sessionId) + "/auto-terminate", { enabled: enabled })
        .then(function () { say("Auto-terminate " + (enabled ? "on" : "off") + ".", true); })
        .catch(function (e) { auto.checked = !enabled; say("Could not change auto-terminate: " + e.message, false); });
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll(".rule-toggle"), function (box) {
    box.addEventListener("change", function () {
      var rule = box.getAttribute("data-rule");
      var enabled = box.checked;
      Live.postJSON("/api/admin/sessions/" + encodeURIComponent(sessionId) + "/rules", { rule: rule, enabled: enabled })
        .then(function () { say(rule + " " + (enabled ? "on" : "off") + " for this student.", true); })
        .catch(function (e) { box.checked = !enabled; say("Could not change " + rule + ": " + e.message, false); });
    });
  });
})();
