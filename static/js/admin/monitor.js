// The live dashboard grid: one card per active student, ordered by risk, thumbnails refreshed
// from the snapshot route, chips from the status dict, toasts for violations.
(function () {
  "use strict";
  var grid = document.getElementById("monitor-grid");
  if (!grid || !window.AdminLive) { return; }
  var Live = window.AdminLive;
  var base = grid.getAttribute("data-monitor-base").replace(/\/$/, "");
  var cards = {};   // student id -> {el, data}
  var THUMB_MS = 2000;

  function chip(cls, text, label) {
    var span = document.createElement("span");
    span.className = "badge chip " + cls;
    span.setAttribute("data-chip", label);
    span.textContent = text;
    return span;
  }

  function render(entry) {
    var d = Live.describe(entry.data.status);
    var el = entry.el;
    el.querySelector(".student-name").textContent = entry.data.name;
    el.querySelector(".student-exam").textContent = entry.data.exam || "";
    var chips = el.querySelector(".chips");
    chips.textContent = "";
    chips.appendChild(chip(d.faceBad ? "text-bg-danger" : "text-bg-success", d.faceText, "face"));
    chips.appendChild(chip(d.objectBad ? "text-bg-danger" : "text-bg-light", "objects: " + d.objectText, "objects"));
    chips.appendChild(chip(d.warnings > 0 ? "text-bg-warning" : "text-bg-light", "warnings: " + d.warnings, "warnings"));
    chips.appendChild(chip(d.suspicion !== null && d.suspicion >= 50 ? "text-bg-danger" : "text-bg-light", "suspicion: " + d.suspicionText, "suspicion"));
    chips.appendChild(chip(d.stale ? "text-bg-secondary" : "text-bg-light", "frame: " + d.ageText, "frame_age"));
    el.setAttribute("data-risk", riskOf(entry.data));
  }

  function riskOf(data) {
    var d = Live.describe(data.status);
    return (d.suspicion || 0) * 1000 + (Number(d.warnings) || 0) * 10 + (d.faceBad ? 5 : 0) + (d.objectBad ? 5 : 0);
  }

  function makeCard(data) {
    var col = document.createElement("div");
    col.className = "col-sm-6 col-lg-4 col-xl-3 student-card-col";
    col.setAttribute("data-student-id", data.id);
    var a = document.createElement("a");
    a.className = "card student-card text-reset text-decoration-none h-100";
    a.href = base + "/" + encodeURIComponent(data.id);
    var img = document.createElement("img");
    img.className = "card-img-top student-thumb";
    img.alt = "Camera of " + data.name;
    var body = document.createElement("div");
    body.className = "card-body p-2";
    var name = document.createElement("div");
    name.className = "fw-semibold student-name";
    var exam = document.createElement("div");
    exam.className = "small text-body-secondary student-exam";
    var chips = document.createElement("div");
    chips.className = "chips d-flex flex-wrap gap-1 mt-1";
    body.appendChild(name);
    body.appendChild(exam);
    body.appendChild(chips);
    a.appendChild(img);
    a.appendChild(body);
    col.appendChild(a);
    return col;
  }

  function upsert(data) {
    var key = String(data.id);
    var entry = cards[key];
    if (!entry) {
      entry = { el: makeCard(data), data: data };
      cards[key] = entry;
      grid.appendChild(entry.el);
      refreshThumb(entry);
    } else {
      entry.data = Object.assign({}, entry.data, data, { status: Object.assign({}, entry.data.status, data.status || {}) });
    }
    render(entry);
  }

  function remove(key) {
    var entry = cards[String(key)];
    if (entry) { entry.el.remove(); delete cards[String(key)]; }
  }

  function order() {
    var list = Object.keys(cards).map(function (k) { return cards[k]; });
    list.sort(function (a, b) { return riskOf(b.data) - riskOf(a.data) || String(a.data.name).localeCompare(String(b.data.name)); });
    list.forEach(function (entry) { grid.appendChild(entry.el); });
    var empty = document.getElementById("grid-empty");
    if (empty) { empty.hidden = list.length > 0; }
    grid.setAttribute("data-count", String(list.length));
  }

  function refreshThumb(entry) {
    var img = entry.el.querySelector("img");
    var probe = new Image();
    probe.onload = function () { img.src = probe.src; img.classList.remove("no-frame"); };
    probe.onerror = function () { img.classList.add("no-frame"); };
    probe.src = base + "/" + encodeURIComponent(entry.data.id) + "/snapshot.jpg?t=" + Date.now();
  }

  setInterval(function () {
    Object.keys(cards).forEach(function (k) { refreshThumb(cards[k]); });
  }, THUMB_MS);

  var handlers = {
    snapshot: function (students) {
      var seen = {};
      students.forEach(function (s) { seen[String(s.id)] = true; upsert(s); });
      Object.keys(cards).forEach(function (k) { if (!seen[k]) { remove(k); } });
      order();
    },
    student_status: function (p) {
      var id = Live.studentIdOf(p);
      if (id === null) { return; }
      var status = p.status || p;
      if (cards[id]) { upsert({ id: id, status: status }); order(); }
    },
    student_joined: function (p) {
      var id = Live.studentIdOf(p);
      if (id !== null) {
        upsert({ id: id, name: p.name || p.student_name || (cards[id] && cards[id].data.name) || ("Student " + id),
                 exam: p.exam_title || p.exam || "", sessionId: p.session_id, status: p.status || {} });
        order();
      }
    },
    student_left: function (p) { var id = Live.studentIdOf(p); if (id !== null) { remove(id); order(); } },
    exam_terminated: function (p) {
      var id = Live.studentIdOf(p);
      Live.toast("Exam terminated", (p.name || (id && cards[id] ? cards[id].data.name : "A student")) + ": " + (p.reason || "terminated"), "danger");
      if (id !== null) { remove(id); order(); }
    },
    warnings_cleared: function (p) {
      var id = Live.studentIdOf(p);
      if (id !== null && cards[id]) { upsert({ id: id, status: { warnings: 0 } }); order(); }
    },
    student_violation: function (p) {
      var id = Live.studentIdOf(p);
      var name = p.name || p.student_name || (id !== null && cards[id] ? cards[id].data.name : "Student " + id);
      var type = p.type || p.rule || "VIOLATION";
      Live.toast("Violation: " + type, name + (p.message ? ": " + p.message : ""), "warning");
      if (id !== null && cards[id]) {
        var el = cards[id].el;
        el.classList.add("flash");
        setTimeout(function () { el.classList.remove("flash"); }, 3000);
        if (p.status) { upsert({ id: id, status: p.status }); order(); }
      }
    }
  };
  Live.connect(handlers, grid.getAttribute("data-poll-url"), Number(grid.getAttribute("data-poll-interval")) || 4);
})();
