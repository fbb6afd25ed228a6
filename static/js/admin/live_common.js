// Shared by the live dashboard and the per-student page: Socket.IO /admin with a polling fallback,
// toasts, JSON POSTs with the CSRF token, and formatting of a student's status.
(function (global) {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), "Accept": "application/json" },
      body: JSON.stringify(body || {})
    }).then(function (resp) {
      return resp.json().catch(function () { return {}; }).then(function (data) {
        if (!resp.ok) {
          var err = new Error((data && data.error) || ("HTTP " + resp.status));
          err.status = resp.status;
          throw err;
        }
        return data;
      });
    });
  }

  function toast(title, message, level) {
    var box = document.getElementById("toasts");
    if (!box) { return; }
    var el = document.createElement("div");
    el.className = "toast show admin-toast toast-" + (level || "info");
    el.setAttribute("role", "alert");
    var head = document.createElement("div");
    head.className = "toast-header";
    var strong = document.createElement("strong");
    strong.className = "me-auto";
    strong.textContent = title;
    var close = document.createElement("button");
    close.type = "button";
    close.className = "btn-close";
    close.setAttribute("aria-label", "Close");
    close.addEventListener("click", function () { el.remove(); });
    head.appendChild(strong);
    head.appendChild(close);
    var body = document.createElement("div");
    body.className = "toast-body";
    body.textContent = message;
    el.appendChild(head);
    el.appendChild(body);
    box.appendChild(el);
    while (box.children.length > 6) { box.removeChild(box.firstChild); }
    setTimeout(function () { el.remove(); }, 15000);
  }

  // The API may answer a list or {students: [...]}; each entry has an id and a status dict.
  function studentsFrom(data) {
    var list = Array.isArray(data) ? data : (data && (data.students || data.active || data.items)) || [];
    return list.map(function (s) {
      var status = s.status || {};
      return {
        id: s.student_id !== undefined ? s.student_id : s.id,
        name: s.name || s.student_name || ("Student " + (s.student_id || s.id)),
        sessionId: s.session_id !== undefined ? s.session_id : status.session_id,
        exam: s.exam_title || (s.exam && (s.exam.title || s.exam)) || "",
        status: status
      };
    });
  }

  function studentIdOf(payload) {
    if (!payload) { return null; }
    if (payload.student_id !== undefined) { return String(payload.student_id); }
    if (payload.student && payload.student.id !== undefined) { return String(payload.student.id); }
    return null;
  }

  function num(value, digits) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : null;
  }

  function describe(status) {
    status = status || {};
    var faces = status.faces !== undefined ? status.faces : null;
    var face = status.face;
    var faceText = faces !== null ? (faces === 0 ? "no face" : faces === 1 ? "1 face" : faces + " faces")
      : (typeof face === "string" ? face : face && face.state ? face.state : face ? "face" : "—");
    var objects = status.objects || [];
    var objectText = Array.isArray(objects) ? (objects.length ? objects.map(function (o) {
      return typeof o === "string" ? o : (o.name || o.label || o.class_name || "object");
    }).join(", ") : "none") : String(objects);
    var suspicion = status.suspicion;
    var suspicionValue = typeof suspicion === "number" ? suspicion : suspicion && typeof suspicion.score === "number" ? suspicion.score : null;
    var rules = status.active_rules || [];
    var ruleText = Array.isArray(rules) ? rules.join(", ") : Object.keys(rules).join(", ");
    var age = num(status.frame_age_s, 1);
    return {
      faceText: faceText,
      faceBad: faces !== null ? faces !== 1 : false,
      objectText: objectText,
      objectBad: Array.isArray(objects) && objects.length > 0,
      warnings: status.warnings !== undefined ? (typeof status.warnings === "object" && status.warnings !== null ? (status.warnings.count || 0) : status.warnings) : 0,
      suspicion: suspicionValue,
      suspicionText: suspicionValue === null ? "—" : suspicionValue.toFixed(0),
      ruleText: ruleText || "none",
      ageText: age === null ? "no frames" : age + " s",
      stale: age === null || status.frame_age_s > 5
    };
  }

  // Socket.IO /admin with polling kept running whenever the socket is down.
  function connect(handlers, pollUrl, intervalS) {
    var stateEl = document.getElementById("connection-state");
    var timer = null;
    var socketUp = false;

    function setState(text, cls) {
      if (!stateEl) { return; }
      stateEl.textContent = text;
      stateEl.className = "badge " + cls;
      stateEl.setAttribute("data-state", socketUp ? "live" : "polling");
    }

    function poll() {
      fetch(pollUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (data) {
          handlers.snapshot(studentsFrom(data));
          if (!socketUp) { setState("live updates lost: refreshing every " + intervalS + " s", "text-bg-warning"); }
        })
        .catch(function () { setState("server unreachable: retrying", "text-bg-danger"); });
    }

    function startPolling() {
      if (timer === null) { timer = setInterval(poll, intervalS * 1000); }
    }
    function stopPolling() {
      if (timer !== null) { clearInterval(timer); timer = null; }
    }

    poll();
    startPolling();
    if (typeof global.io !== "function") {
      setState("live updates unavailable: refreshing every " + intervalS + " s", "text-bg-warning");
      return;
    }
    var socket = global.io("/admin", { transports: ["websocket", "polling"] });
    socket.on("connect", function () {
      socketUp = true;
      setState("live", "text-bg-success");
      poll();
      // A slow poll still runs so a missed event cannot leave the grid wrong for long.
      stopPolling();
      timer = setInterval(poll, intervalS * 3000);
    });
    socket.on("disconnect", function () {
      socketUp = false;
      setState("live updates lost: refreshing every " + intervalS + " s", "text-bg-warning");
      stopPolling();
      startPolling();
    });
    socket.on("connect_error", function () {
      socketUp = false;
      setState("live updates lost: refreshing every " + intervalS + " s", "text-bg-warning");
    });
    socket.on("active_students", function (payload) { handlers.snapshot(studentsFrom(payload)); });
    ["student_violation", "student_status", "student_joined", "student_left", "exam_terminated", "warnings_cleared"].forEach(function (name) {
      socket.on(name, function (payload) { if (handlers[name]) { handlers[name](payload || {}); } });
    });
    global.adminSocket = socket;
  }

  global.AdminLive = { postJSON: postJSON, toast: toast, connect: connect, describe: describe, studentIdOf: studentIdOf, studentsFrom: studentsFrom };
})(window);
