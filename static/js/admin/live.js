/* The admin live pages (dashboard and one student): Socket.IO /admin with a polling fallback, toasts,
   and the formatting of a student's status. The event names come from the page (Proctor.rules()). */
(function () {
  "use strict";
  const P = window.Proctor;

  // A toast: opts.severity ("low".."critical", from the page's wording) gives it a style, an icon and a
  // label in words, so severity is never colour alone; a critical one interrupts (role=alert), others wait.
  function toast(title, message, opts) {
    opts = opts || {};
    const box = document.getElementById("toasts");
    if (!box) return null;
    const sev = wording().severities[opts.severity] ? opts.severity : "medium";
    const sevWords = wording().severities[sev];
    const el = document.createElement("div");
    el.className = "toast show admin-toast toast-sev-" + sev;
    el.setAttribute("role", sev === "critical" ? "alert" : "status");
    el.setAttribute("data-severity", sev);
    if (opts.type) el.setAttribute("data-type", opts.type);
    const head = document.createElement("div");
    head.className = "toast-header";
    const icon = document.createElement("span");
    icon.className = "toast-icon me-2";
    icon.setAttribute("aria-hidden", "true");
    icon.textContent = sevWords.icon;
    const label = document.createElement("span");
    label.className = "toast-severity me-2";
    label.textContent = sevWords.label;
    const strong = document.createElement("strong");
    strong.className = "me-auto";
    strong.textContent = title;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "btn-close";
    close.setAttribute("aria-label", "Close");
    close.addEventListener("click", () => el.remove());
    head.appendChild(icon);
    head.appendChild(label);
    head.appendChild(strong);
    head.appendChild(close);
    const body = document.createElement("div");
    body.className = "toast-body";
    body.textContent = message;
    el.appendChild(head);
    el.appendChild(body);
    box.appendChild(el);
    while (box.children.length > 6) box.removeChild(box.firstChild);
    // A critical toast stays until the proctor closes it; the rest go after a while.
    if (sev !== "critical") setTimeout(() => el.remove(), 15000);
    return el;
  }

  // The wording of every violation, rendered into the page from proctor/wording.py.
  function wording() { return P.rules().wording; }

  function violationWords(type) {
    return wording().violations[type] || {title: String(type || "Violation"), severity: "medium",
                                           admin: "{name}: " + String(type || "a violation"), student: ""};
  }

  // Same formats as proctor/wording.py (format_duration, format_objects).
  function duration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds) || seconds < 0) return "";
    const s = Math.round(seconds);
    if (s < 60) return s + " s";
    return Math.floor(s / 60) + " min" + (s % 60 ? " " + (s % 60) + " s" : "");
  }

  function objectsText(objects) {
    if (!Array.isArray(objects)) return "";
    return objects.slice(0, 10).filter((o) => o && typeof o.label === "string")
      .map((o) => o.label.slice(0, 40) + (typeof o.score === "number" && isFinite(o.score) ? " " + o.score.toFixed(2) : ""))
      .join(", ");
  }

  // The admin sentence: its template (proctor/wording.py) filled with the name, duration and objects.
  function violationSentence(type, name, details) {
    details = details || {};
    const d = duration(details.duration_s);
    const fill = {name: name || "The student", for_duration: d ? " for " + d : "", objects: objectsText(details.objects) || "not named"};
    return violationWords(type).admin.replace(/\{(\w+)\}/g, (m, key) => (key in fill ? fill[key] : m));
  }

  // The toast of a student_violation payload, in the third person. A later part of an incident (rules
  // one moment fired together: one warning, warning_system.py) joins the toast of its first part instead
  // of looking like a new warning; a part more severe than that toast gets its own, marked as the same
  // incident, so that its severity shows (and a critical one still interrupts).
  const incidentToasts = {};  // "student:session:incident" -> {el, titles}
  function severityRank(sev) { return Object.keys(wording().severities).indexOf(sev); }
  function violationToast(p, name) {
    const w = violationWords(p.type);
    const sentence = violationSentence(p.type, name || p.name, p.details);
    const key = [p.student_id, p.session_id, p.incident].join(":");
    const later = Boolean(p.incident) && p.incident_opened === false;
    const open = later ? incidentToasts[key] : null;
    if (open && open.el.isConnected && severityRank(w.severity) <= severityRank(open.el.getAttribute("data-severity"))) {
      open.titles.push(w.title);
      open.el.querySelector(".toast-header strong").textContent = "Incident " + p.incident + ": " + open.titles.join(", ");
      const line = document.createElement("div");
      line.className = "incident-part";
      line.setAttribute("data-type", String(p.type || ""));
      line.textContent = "Same incident: " + sentence;
      open.el.querySelector(".toast-body").appendChild(line);
      return open.el;
    }
    const el = toast(later ? "Incident " + p.incident + " (continued): " + w.title : w.title, sentence,
                     {severity: w.severity, type: p.type});
    for (const k of Object.keys(incidentToasts)) if (!incidentToasts[k].el.isConnected) delete incidentToasts[k];
    if (el && p.incident) {
      el.setAttribute("data-incident", String(p.incident));
      incidentToasts[key] = {el: el, titles: [w.title]};
    }
    return el;
  }

  // The API answers {students: [...]} in the server's order; each entry has an id and a status dict.
  function studentsFrom(data) {
    const list = Array.isArray(data) ? data : (data && data.students) || [];
    return list.map((s) => {
      const status = s.status || {};
      return {
        id: s.student_id !== undefined ? s.student_id : s.id,
        name: s.name || ("Student " + s.student_id),
        sessionId: s.session_id !== undefined ? s.session_id : status.session_id,
        exam: s.exam_title || "",
        status: status,
      };
    });
  }

  function studentIdOf(payload) {
    if (!payload || payload.student_id === undefined || payload.student_id === null) return null;
    return String(payload.student_id);
  }

  function num(value, digits) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : null;
  }

  // Identity in a word: the last verdict, or why there has been none for a while (a face too small or
  // turned is not judged: after IDENTITY_UNCHECKED_WARN_S of that the proctor should look).
  const IDENTITY_UNCHECKED_WARN_S = 30;
  function identityOf(identity) {
    const i = identity || {};
    if (i.enrolled === false) return {text: "identity: no registered face", level: "warn"};
    if (i.spoof === true) return {text: "identity: a photo or screen", level: "bad"};
    if (i.match === false) return {text: "identity: mismatch", level: "bad"};
    if (typeof i.skipped === "string" && i.skipped && typeof i.skipped_for_s === "number"
        && i.skipped_for_s >= IDENTITY_UNCHECKED_WARN_S) {
      return {text: "identity: unchecked " + Math.round(i.skipped_for_s) + " s (" + i.skipped.split(":")[0] + ")", level: "warn"};
    }
    if (i.match === true) return {text: "identity: matches", level: "ok"};
    return {text: "identity: not checked yet", level: "none"};
  }

  function describe(status) {
    status = status || {};
    const faces = typeof status.faces === "number" ? status.faces : null;
    const face = status.face;
    const faceText = faces !== null ? (faces === 0 ? "no face" : faces === 1 ? "1 face" : faces + " faces")
      : (typeof face === "string" ? face : face && face.state ? face.state : face ? "face" : "—");
    // Persons are context, not objects: the face chip and the persons count speak for them. An object
    // is red only when the server says this exam prohibits it.
    const objects = (Array.isArray(status.objects) ? status.objects : [])
      .filter((o) => typeof o === "string" || (o.class_id !== 0 && o.label !== "person"));
    const objectText = objects.length
      ? objects.map((o) => (typeof o === "string" ? o : (o.name || o.label || "object"))).join(", ") : "none";
    const persons = typeof status.persons === "number" ? status.persons : null;
    const suspicion = status.suspicion && typeof status.suspicion.score === "number" ? status.suspicion.score : null;
    const rules = status.active_rules || {};
    const ruleText = (Array.isArray(rules) ? rules : Object.keys(rules)).join(", ");
    const idn = identityOf(status.identity);
    const age = num(status.frame_age_s, 1);
    const load = status.load || {};
    // Overloaded server: every student is still analysed, at a reduced equal rate; say how much.
    const degraded = load.degraded === true && typeof load.one_in === "number";
    return {
      degraded: degraded,
      loadText: degraded ? "degraded: 1 frame in " + load.one_in.toFixed(1)
        + (typeof load.result_age_p95_s === "number" ? " · results " + load.result_age_p95_s.toFixed(1) + " s old" : "") : "",
      faceText: faceText,
      faceBad: faces !== null ? faces !== 1 : false,
      faceKnown: faces !== null,  // no analysed frame yet: neither green nor red
      objectText: objectText,
      objectBad: objects.some((o) => typeof o === "object" && o.prohibited === true),
      persons: persons,
      personsBad: persons !== null && persons > 1,
      warnings: typeof status.warnings === "number" ? status.warnings : 0,
      suspicion: suspicion,
      suspicionText: suspicion === null ? "—" : suspicion.toFixed(0),
      ruleText: ruleText || "none",
      identityText: idn.text,
      identityLevel: idn.level,
      ageText: age === null ? "no frames" : age + " s",
      stale: age === null || status.frame_age_s > 5,
    };
  }

  // --- Issue 16: talking to the student. static/js/admin/messages.js adds its own event handlers and
  // its buttons to each student card here (monitor.js calls cardMade for every new card). ------------
  const extensions = {handlers: [], cardHooks: []};
  function extend(handlers) { extensions.handlers.push(handlers); }
  function onCard(hook) { extensions.cardHooks.push(hook); }
  function cardMade(el, data) { extensions.cardHooks.forEach((hook) => { hook(el, data); }); }
  function extraHandlers(name, payload) {
    extensions.handlers.forEach((h) => { if (typeof h[name] === "function") h[name](payload); });
  }
  // --- end of issue 16 -------------------------------------------------------------------------------

  // Socket.IO /admin with polling kept running whenever the socket is down.
  function connect(handlers, pollUrl, intervalS) {
    const stateEl = document.getElementById("connection-state");
    let timer = null;
    let socketUp = false;

    function setState(text, cls) {
      if (!stateEl) return;
      stateEl.textContent = text;
      stateEl.className = "badge " + cls;
      stateEl.setAttribute("data-state", socketUp ? "live" : "polling");
    }
    const lost = () => setState("live updates lost: refreshing every " + intervalS + " s", "text-bg-warning");

    async function poll() {
      try {
        const r = await P.getJSON(pollUrl);
        if (!r.ok) throw new Error("HTTP " + r.status);
        handlers.snapshot(studentsFrom(r.data));
        if (!socketUp) lost();
      } catch (e) {
        setState("server unreachable: retrying", "text-bg-danger");
      }
    }
    function startPolling() { if (timer === null) timer = setInterval(poll, intervalS * 1000); }
    function stopPolling() { if (timer !== null) { clearInterval(timer); timer = null; } }

    poll();
    startPolling();
    if (typeof window.io !== "function") {
      setState("live updates unavailable: refreshing every " + intervalS + " s", "text-bg-warning");
      return;
    }
    const socket = window.io("/admin", {transports: ["websocket", "polling"]});
    socket.on("connect", () => {
      socketUp = true;
      setState("live", "text-bg-success");
      poll();
      // A slow poll still runs so a missed event cannot leave the page wrong for long.
      stopPolling();
      timer = setInterval(poll, intervalS * 3000);
    });
    socket.on("disconnect", () => { socketUp = false; lost(); stopPolling(); startPolling(); });
    socket.on("connect_error", () => { socketUp = false; lost(); });
    socket.on("active_students", (payload) => handlers.snapshot(studentsFrom(payload)));
    P.rules().admin_events.forEach((name) => {
      socket.on(name, (payload) => { if (handlers[name]) handlers[name](payload || {}); extraHandlers(name, payload || {}); });
    });
    window.adminSocket = socket;
  }

  window.AdminLive = {toast, violationToast, violationWords, violationSentence, connect, describe, studentIdOf, studentsFrom,
                      extend, onCard, cardMade};
})();
