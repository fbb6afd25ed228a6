/* The live dashboard grid: one card per active student in the server's order, thumbnails refreshed
   from the snapshot route, chips from the status dict, toasts for violations. */
(function () {
  "use strict";
  const grid = document.getElementById("monitor-grid");
  if (!grid) return;
  const Live = window.AdminLive;
  const base = grid.getAttribute("data-monitor-base").replace(/\/$/, "");
  const cards = {};   // student id -> {el, data}
  const THUMB_MS = 2000;

  function chip(cls, text, label) {
    const span = document.createElement("span");
    span.className = "badge chip " + cls;
    span.setAttribute("data-chip", label);
    span.textContent = text;
    return span;
  }

  function render(entry) {
    const d = Live.describe(entry.data.status);
    const el = entry.el;
    el.querySelector(".student-name").textContent = entry.data.name;
    el.querySelector(".student-exam").textContent = entry.data.exam || "";
    const chips = el.querySelector(".chips");
    chips.textContent = "";
    chips.appendChild(chip(d.faceBad ? "text-bg-danger" : d.faceKnown ? "text-bg-success" : "text-bg-light", d.faceText, "face"));
    chips.appendChild(chip(d.objectBad ? "text-bg-danger" : "text-bg-light", "objects: " + d.objectText, "objects"));
    if (d.personsBad) chips.appendChild(chip("text-bg-danger", "persons: " + d.persons, "persons"));
    el.setAttribute("data-persons", d.persons === null ? "" : String(d.persons));  // what the chips were drawn from
    chips.appendChild(chip({bad: "text-bg-danger", warn: "text-bg-warning", ok: "text-bg-success"}[d.identityLevel] || "text-bg-light",
                           d.identityText, "identity"));
    chips.appendChild(chip(d.warnings > 0 ? "text-bg-warning" : "text-bg-light", "warnings: " + d.warnings, "warnings"));
    chips.appendChild(chip(d.suspicion !== null && d.suspicion >= 50 ? "text-bg-danger" : "text-bg-light", "suspicion: " + d.suspicionText, "suspicion"));
    chips.appendChild(chip(d.stale ? "text-bg-secondary" : "text-bg-light", "frame: " + d.ageText, "frame_age"));
    if (d.degraded) chips.appendChild(chip("text-bg-warning", d.loadText, "load"));
  }

  function makeCard(data) {
    const col = document.createElement("div");
    col.className = "col-sm-6 col-lg-4 col-xl-3 student-card-col";
    col.setAttribute("data-student-id", data.id);
    const a = document.createElement("a");
    a.className = "card student-card text-reset text-decoration-none h-100";
    a.href = base + "/" + encodeURIComponent(data.id);
    const img = document.createElement("img");
    img.className = "card-img-top student-thumb";
    img.alt = "Camera of " + data.name;
    const body = document.createElement("div");
    body.className = "card-body p-2";
    const name = document.createElement("div");
    name.className = "fw-semibold student-name";
    const exam = document.createElement("div");
    exam.className = "small text-body-secondary student-exam";
    const chips = document.createElement("div");
    chips.className = "chips d-flex flex-wrap gap-1 mt-1";
    body.append(name, exam, chips);
    a.append(img, body);
    col.appendChild(a);
    return col;
  }

  function upsert(data) {
    const key = String(data.id);
    let entry = cards[key];
    if (!entry) {
      entry = {el: makeCard(data), data: data};
      cards[key] = entry;
      grid.appendChild(entry.el);
      Live.cardMade(entry.el, () => { return entry.data; });  // issue 16: message, extra time, raised hand
      refreshThumb(entry);
    } else {
      entry.data = Object.assign({}, entry.data, data, {status: Object.assign({}, entry.data.status, data.status || {})});
    }
    render(entry);
  }

  function remove(key) {
    const entry = cards[String(key)];
    if (entry) { entry.el.remove(); delete cards[String(key)]; }
  }

  // A snapshot arrives in the server's order. Between snapshots a status update may move a card:
  // each status carries the server's `risk` list (what to weigh is decided there only); higher
  // first, element by element, then by name, as the server sorts. The array sort is stable.
  function serverOrder(a, b) {
    const ra = Array.isArray((a.data.status || {}).risk) ? a.data.status.risk : [];
    const rb = Array.isArray((b.data.status || {}).risk) ? b.data.status.risk : [];
    for (let i = 0; i < Math.max(ra.length, rb.length); i += 1) {
      const d = (Number(rb[i]) || 0) - (Number(ra[i]) || 0);
      if (d) return d;
    }
    const na = String(a.data.name), nb = String(b.data.name);
    return na < nb ? -1 : na > nb ? 1 : 0;
  }

  function order(list) {
    list = list || Object.keys(cards).map((k) => cards[k]).sort(serverOrder);
    // Re-appending a card takes the keyboard focus off it: move cards only when the order changed,
    // and give the focus back to the card that had it.
    const now = Array.prototype.filter.call(grid.children, (c) => c.classList.contains("student-card-col"));
    if (list.some((entry, i) => now[i] !== entry.el)) {
      const focused = document.activeElement;
      list.forEach((entry) => grid.appendChild(entry.el));
      if (focused && focused !== document.activeElement && grid.contains(focused)) focused.focus();
    }
    const empty = document.getElementById("grid-empty");
    if (empty) empty.hidden = list.length > 0;
    grid.setAttribute("data-count", String(list.length));
  }

  function refreshThumb(entry) {
    const img = entry.el.querySelector("img");
    const probe = new Image();
    probe.onload = () => { img.src = probe.src; img.classList.remove("no-frame"); };
    probe.onerror = () => img.classList.add("no-frame");
    probe.src = base + "/" + encodeURIComponent(entry.data.id) + "/snapshot.jpg?t=" + Date.now();
  }

  setInterval(() => Object.keys(cards).forEach((k) => refreshThumb(cards[k])), THUMB_MS);

  // --- screen sharing (issue 16): the latest screenshot of the shared screen beside the camera picture.
  // Polled per session (?after=<id>: an unchanged screenshot is a 204 without bytes); a session without
  // screenshots (its exam does not share the screen, or not yet) is asked less often.
  const SCREEN_MS = 5000, SCREEN_IDLE_MS = 20000;
  const screenUrl = grid.getAttribute("data-screenshot-url") || "";
  function screenTile(entry) {
    let shot = entry.el.querySelector(".student-screen");
    if (!shot) {
      const cam = entry.el.querySelector(".student-thumb");
      const media = document.createElement("div");
      media.className = "student-media";
      cam.replaceWith(media);
      shot = document.createElement("img");
      shot.className = "card-img-top student-screen";
      shot.hidden = true;
      media.append(cam, shot);
    }
    shot.alt = "Shared screen of " + entry.data.name;
    return shot;
  }
  async function refreshScreen(entry) {
    const sid = entry.data.sessionId;
    if (!screenUrl || sid === undefined || sid === null || entry.screenBusy) return;
    if (entry.screenSession !== sid) { entry.screenSession = sid; entry.screenId = null; entry.screenNext = 0; }
    if (entry.screenNext && Date.now() < entry.screenNext) return;
    entry.screenBusy = true;
    const shot = screenTile(entry);
    try {
      const url = screenUrl.replace(/\/0\//, "/" + encodeURIComponent(sid) + "/") + (entry.screenId ? "?after=" + entry.screenId : "");
      const r = await fetch(url, {credentials: "same-origin", cache: "no-store"});
      if (r.status === 200) {
        const blob = await r.blob();
        if (shot.src.indexOf("blob:") === 0) URL.revokeObjectURL(shot.src);
        shot.src = URL.createObjectURL(blob);
        entry.screenId = r.headers.get("X-Screenshot-Id");
        shot.setAttribute("data-screenshot-id", entry.screenId || "");
        shot.hidden = false;
      } else if (r.status === 404) {
        shot.hidden = true;
      }
      entry.screenNext = Date.now() + (r.status === 200 || r.status === 204 ? SCREEN_MS : SCREEN_IDLE_MS);
    } catch (e) {
      entry.screenNext = Date.now() + SCREEN_IDLE_MS;
    } finally {
      entry.screenBusy = false;
    }
  }
  setInterval(() => Object.keys(cards).forEach((k) => refreshScreen(cards[k])), 1000);
  // --- end of screen sharing

  function nameOf(p, id) {
    return p.name || (id !== null && cards[id] ? cards[id].data.name : "Student " + id);
  }

  const handlers = {
    snapshot(students) {
      const seen = {};
      students.forEach((s) => { seen[String(s.id)] = true; upsert(s); });
      Object.keys(cards).forEach((k) => { if (!seen[k]) remove(k); });
      order(students.map((s) => cards[String(s.id)]));  // as the server sorted them
    },
    student_status(p) {
      const id = Live.studentIdOf(p);
      if (id !== null && cards[id]) { upsert({id: id, status: p.status || {}}); order(); }
    },
    student_joined(p) {
      const id = Live.studentIdOf(p);
      if (id === null) return;
      upsert({id: id, name: nameOf(p, id), exam: p.exam_title || "", sessionId: p.session_id, status: p.status || {}});
      order();
    },
    student_left(p) {
      const id = Live.studentIdOf(p);
      if (id !== null) { remove(id); order(); }
    },
    exam_terminated(p) {
      const id = Live.studentIdOf(p);
      // reason_text is the server's sentence (proctor/wording.py); the raw reason is only a fallback for an
      // older server, never shown first (an automatic one reads "warning 3 of 3 for NO_FACE...").
      Live.toast("Exam ended: " + nameOf(p, id), p.reason_text || p.reason || "No reason was given.", {severity: "critical"});
      if (id !== null) { remove(id); order(); }
    },
    warnings_cleared(p) {
      const id = Live.studentIdOf(p);
      if (id !== null && cards[id]) { upsert({id: id, status: {warnings: 0}}); order(); }
    },
    student_violation(p) {
      const id = Live.studentIdOf(p);
      Live.violationToast(p, nameOf(p, id));
      if (id !== null && cards[id]) {
        const el = cards[id].el;
        el.classList.add("flash");
        setTimeout(() => el.classList.remove("flash"), 3000);
        if (p.status) { upsert({id: id, status: p.status}); order(); }
      }
    },
  };
  Live.connect(handlers, grid.getAttribute("data-poll-url"), Number(grid.getAttribute("data-poll-interval")) || 4);
})();
