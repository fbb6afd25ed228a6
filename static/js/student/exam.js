/* The exam page: questions from the server in this student's order, each answer saved as it is
   clicked, flags, navigation, the server's deadline, submit with confirmation, autosubmit. */
(function () {
  "use strict";
  const root = document.getElementById("exam");
  if (!root) return;
  const P = window.Proctor;
  const qBox = document.querySelector("#question .card-body");
  const nav = document.getElementById("question-nav");
  const timerEl = document.getElementById("timer");
  const saveState = document.getElementById("save-state");
  const flagBtn = document.getElementById("flag");
  const alerts = document.getElementById("alerts");
  const posKey = "exam-position-" + root.dataset.sessionId;
  const seqKey = "exam-seq-" + root.dataset.sessionId;
  let questions = [], index = 0, deadlineAt = 0, finished = false, timerHandle = null;

  // Every answer goes through an outbox kept in localStorage (a reload keeps it), sent in order and
  // retried while the server cannot save it. Each save is numbered (client_seq, increasing even across
  // reloads) so that the server never lets an older save replace a newer one.
  function nextSeq() {
    let last = 0;
    try { last = parseInt(localStorage.getItem(seqKey) || "0", 10) || 0; } catch (e) { last = 0; }
    const seq = Math.max(last + 1, Date.now() * 1000);
    try { localStorage.setItem(seqKey, String(seq)); } catch (e) { /* private mode */ }
    return seq;
  }
  const outbox = P.outbox("exam-outbox-" + root.dataset.sessionId,
                          {stamp: () => { return {client_seq: nextSeq()}; }, done: saved, change: showSaving});
  function queuedFor(q) { return outbox.state().queued.filter((it) => { return it.body.question_id === q.id; }); }

  // Every message goes to ONE area (#alerts, announced politely): the latest message, its severity in
  // words and an icon (never colour alone), and how many proctoring warnings there have been. A warning
  // is keyed by its rule, whose severity comes from the page's wording (proctor/wording.py); other
  // messages (a save that failed, time up) say their own level: "danger", "info" or "warning".
  const LEVELS = {danger: "high", warning: "medium", info: "low"};
  let warningCount = 0;
  function banner(message, level, key, serverCount) {
    const wording = P.rules().wording;
    const rule = key && wording.violations[key];
    const sev = rule ? rule.severity : (LEVELS[level] || (wording.severities[level] ? level : "medium"));
    if (rule) warningCount = Math.max(warningCount + 1, typeof serverCount === "number" ? serverCount : 0);
    let box = alerts.querySelector(".exam-alert");
    if (!box) {
      box = document.createElement("div");
      const icon = document.createElement("span");
      icon.className = "exam-alert-icon"; icon.setAttribute("aria-hidden", "true");
      const label = document.createElement("strong");
      label.className = "exam-alert-label";
      const text = document.createElement("span");
      text.className = "exam-alert-text";
      const count = document.createElement("span");
      count.className = "exam-alert-count badge";
      const close = document.createElement("button");
      close.type = "button"; close.className = "btn-close"; close.setAttribute("aria-label", "Dismiss");
      close.addEventListener("click", () => { box.remove(); });
      box.append(icon, label, text, count, close);
      alerts.appendChild(box);
    }
    box.className = "alert exam-alert exam-alert-" + sev;
    box.dataset.severity = sev;
    if (key) box.dataset.key = key; else delete box.dataset.key;
    box.querySelector(".exam-alert-icon").textContent = wording.severities[sev].icon;
    box.querySelector(".exam-alert-label").textContent = wording.severities[sev].label + ":";
    box.querySelector(".exam-alert-text").textContent = message;
    const count = box.querySelector(".exam-alert-count");
    count.textContent = warningCount ? warningCount + (warningCount === 1 ? " warning" : " warnings") : "";
    count.hidden = !warningCount;
  }

  function goResult(url) {
    finished = true;
    if (timerHandle) clearInterval(timerHandle);
    if (window.ExamProctor) window.ExamProctor.stop();
    window.location.assign(url || root.dataset.resultUrl);
  }

  function renderNav() {
    // The buttons are rebuilt: a keyboard user's focus on one of them must survive it.
    const focusedAt = Array.prototype.indexOf.call(nav.children, document.activeElement);
    nav.replaceChildren();
    questions.forEach((q, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "btn btn-sm question-nav-item";
      const queued = queuedFor(q).length > 0;
      if (queued) b.classList.add("queued");  // chosen here, not yet confirmed by the server
      else if (q.selected !== null) b.classList.add("answered");
      if (q.flagged) b.classList.add("flagged");
      if (i === index) { b.classList.add("current"); b.setAttribute("aria-current", "true"); }
      b.textContent = String(q.number);
      b.setAttribute("aria-label", "Question " + q.number + (queued ? ", not saved yet" : q.selected !== null ? ", answered" : ", not answered") + (q.flagged ? ", flagged" : ""));
      b.addEventListener("click", () => { show(i); });
      nav.appendChild(b);
    });
    if (focusedAt >= 0 && nav.children[focusedAt]) nav.children[focusedAt].focus();
  }

  function show(i) {
    if (!questions.length) return;
    index = Math.max(0, Math.min(questions.length - 1, i));
    try { sessionStorage.setItem(posKey, String(index)); } catch (e) { /* private mode */ }
    const q = questions[index];
    qBox.replaceChildren();
    const fs = document.createElement("fieldset");
    const legend = document.createElement("legend");
    legend.className = "h5 question-text";
    legend.id = "question-text";
    legend.textContent = "Question " + q.number + " of " + questions.length + ": " + q.text;
    fs.appendChild(legend);
    q.options.forEach((opt, k) => {
      const wrap = document.createElement("div");
      wrap.className = "form-check option";
      const input = document.createElement("input");
      input.className = "form-check-input";
      input.type = "radio"; input.name = "q-" + q.id; input.id = "q-" + q.id + "-" + k; input.value = String(k);
      input.checked = q.selected === k;
      input.addEventListener("change", () => { answer(q, k); });
      const label = document.createElement("label");
      label.className = "form-check-label"; label.htmlFor = input.id; label.textContent = opt;
      wrap.appendChild(input); wrap.appendChild(label);
      fs.appendChild(wrap);
    });
    qBox.appendChild(fs);
    flagBtn.setAttribute("aria-pressed", q.flagged ? "true" : "false");
    flagBtn.textContent = q.flagged ? "Unflag" : "Flag for review";
    document.getElementById("prev").disabled = index === 0;
    document.getElementById("next").disabled = index === questions.length - 1;
    renderNav();
  }

  function save(q, body) {
    outbox.add(root.dataset.answerUrl, Object.assign({question_id: q.id}, body), "answer");
    renderNav();
  }

  // The server's reply to one queued save: what it stored is what the page shows, unless a newer save waits.
  function saved(item, r) {
    const q = questions.find((x) => { return x.id === item.body.question_id; });
    if (r.ok) {
      if (q && !queuedFor(q).length) { q.selected = r.data.selected; q.flagged = r.data.flagged; q.confirmed = r.data.selected; }
      else if (q) q.confirmed = r.data.selected;
      syncDeadline(r.data.remaining_s);
    } else if (r.status === 409) {
      goResult(r.data.result_url);
    } else {  // refused for good (400, 404): the choice is not kept
      if (q && !queuedFor(q).length) { q.selected = q.confirmed === undefined ? null : q.confirmed; show(index); }
      banner("Your answer was not saved (" + (r.data.error || r.status) + ").", "danger");
    }
  }

  function showSaving(state) {
    const answers = state.queued.filter((it) => { return it.kind === "answer"; }).length;
    if (answers) {
      saveState.textContent = state.retrying ? "Not saved yet — retrying" : "Saving…";
      saveState.dataset.state = state.retrying ? "retrying" : "saving";
    } else if (saveState.dataset.state) {
      saveState.textContent = "Saved";
      saveState.dataset.state = "saved";
    }
    if (questions.length) renderNav();
  }

  function answer(q, k) { q.selected = k; save(q, {selected: k}); }

  flagBtn.addEventListener("click", () => {
    const q = questions[index];
    if (!q) return;
    q.flagged = !q.flagged;
    show(index);
    save(q, {flagged: q.flagged});
  });
  document.getElementById("prev").addEventListener("click", () => { show(index - 1); });
  document.getElementById("next").addEventListener("click", () => { show(index + 1); });

  function syncDeadline(remaining) {
    if (typeof remaining === "number") deadlineAt = performance.now() + remaining * 1000;
  }

  function tick() {
    const left = Math.max(0, Math.round((deadlineAt - performance.now()) / 1000));
    const m = Math.floor(left / 60), s = left % 60;
    timerEl.textContent = (m < 10 ? "0" : "") + m + ":" + (s < 10 ? "0" : "") + s;
    timerEl.parentElement.classList.toggle("exam-timer-low", left <= 60);
    if (left <= 0 && !finished) submit(true);
  }

  async function submit(auto) {
    if (finished) return;
    finished = true;
    if (auto) banner("Time is up: your answers are being submitted.", "info");
    outbox.flushNow();
    while (outbox.state().queued.length && !auto) await P.sleep(300);  // every answer saved before submitting
    const r = await P.postJSON(root.dataset.submitUrl, {});
    if (r.ok || r.status === 409) { goResult(r.data.result_url); return; }
    finished = false;
    banner("Could not submit (" + (r.data.error || r.status) + "). Trying again…", "danger");
    setTimeout(() => { submit(auto); }, 3000);
  }

  const modalEl = document.getElementById("submit-modal");
  document.getElementById("submit").addEventListener("click", () => {
    const unanswered = questions.filter((q) => { return q.selected === null; }).length;
    const flagged = questions.filter((q) => { return q.flagged; }).length;
    document.getElementById("submit-summary").textContent = "You answered " + (questions.length - unanswered) + " of " +
      questions.length + " questions" + (flagged ? "; " + flagged + " flagged for review." : ".");
    window.bootstrap.Modal.getOrCreateInstance(modalEl).show();
  });
  document.getElementById("submit-confirm").addEventListener("click", () => {
    window.bootstrap.Modal.getOrCreateInstance(modalEl).hide();
    submit(false);
  });

  async function load() {
    const r = await P.getJSON(root.dataset.sessionUrl);
    if (!r.ok) { qBox.textContent = "Could not load the exam: " + (r.data.error || r.status); return; }
    if (r.data.status !== "IN_PROGRESS") { goResult(r.data.result_url); return; }
    questions = r.data.questions;
    questions.forEach((q) => { q.confirmed = q.selected; });
    outbox.state().queued.forEach((it) => {  // saves left from before a reload: shown as chosen, still queued
      const q = questions.find((x) => { return x.id === it.body.question_id; });
      if (q && "selected" in it.body) q.selected = it.body.selected;
      if (q && "flagged" in it.body) q.flagged = it.body.flagged;
    });
    syncDeadline(r.data.remaining_s);
    let start = 0;
    try { start = parseInt(sessionStorage.getItem(posKey) || "0", 10) || 0; } catch (e) { start = 0; }
    show(start);
    showSaving(outbox.state());
    outbox.pump();
    tick();
    timerHandle = setInterval(tick, 500);
  }

  // Every 30 s: pick up the server's clock and a termination the socket may have missed.
  setInterval(async () => {
    if (finished) return;
    const r = await P.getJSON(root.dataset.sessionUrl);
    if (r.ok && r.data.status !== "IN_PROGRESS") goResult(r.data.result_url);
    else if (r.ok) syncDeadline(r.data.remaining_s);
  }, 30000);

  window.ExamPage = {banner: banner, terminated: (url) => { goResult(url); }, isFinished: () => { return finished; },
                     outbox: outbox, syncDeadline: syncDeadline};  // syncDeadline: extra time pushed (student/messages.js)
  load();
})();
