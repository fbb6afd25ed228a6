/* Issue 16, the student's side of the exam page: the proctor's messages (an alert dialog, acknowledged with
   "Understood"), extra time (the timer follows the pushed deadline), and raising a hand. */
(function () {
  "use strict";
  const box = document.getElementById("talk");
  if (!box) return;
  const P = window.Proctor;
  const page = () => { return window.ExamPage; };
  const msgModal = document.getElementById("proctor-message-modal");
  const msgText = document.getElementById("proctor-message-text");
  const okBtn = document.getElementById("proctor-message-ok");
  const handModal = document.getElementById("hand-modal");
  const handBtn = document.getElementById("raise-hand");
  const queue = [], seen = {};
  let showing = null, returnTo = null;

  // --- the proctor's messages: one at a time, oldest first, until each is acknowledged ---------------
  function receive(m) {
    if (!m || typeof m.message_id !== "number" || seen[m.message_id]) return;
    seen[m.message_id] = true;
    queue.push(m);
    next();
  }

  function next() {
    if (showing || !queue.length || (page() && page().isFinished())) return;
    showing = queue.shift();
    msgText.textContent = String(showing.body || "");
    msgModal.setAttribute("data-message-id", String(showing.message_id));
    if (!msgModal.contains(document.activeElement)) returnTo = document.activeElement;
    window.bootstrap.Modal.getOrCreateInstance(msgModal).show();
  }

  msgModal.addEventListener("shown.bs.modal", () => {
    msgModal.setAttribute("role", "alertdialog");  // Bootstrap sets role=dialog on show: this one interrupts
    okBtn.focus();
  });
  msgModal.addEventListener("hidden.bs.modal", () => {
    showing = null;
    if (queue.length) { next(); return; }
    if (returnTo && returnTo.isConnected && returnTo !== document.body) returnTo.focus();
  });

  okBtn.addEventListener("click", async () => {
    const m = showing;
    if (!m) return;
    okBtn.disabled = true;
    // Acknowledged on the server before the dialog goes; a failed call is tried again, the dialog stays meanwhile.
    for (let attempt = 0; attempt < 5; attempt += 1) {
      let r = null;
      try { r = await P.postJSON(box.dataset.ackUrl.replace(/\/0\/ack$/, "/" + m.message_id + "/ack"), {}); } catch (e) { r = null; }
      if (r && (r.ok || r.status === 404)) break;  // 404: not for this page (never in practice); do not hold the student
      await P.sleep(1000 * (attempt + 1));
    }
    okBtn.disabled = false;
    window.bootstrap.Modal.getOrCreateInstance(msgModal).hide();
  });

  // A reload or a reconnect shows what was sent meanwhile and not acknowledged yet.
  async function fetchUnread() {
    const r = await P.getJSON(box.dataset.messagesUrl);
    if (r.ok && Array.isArray(r.data.messages)) r.data.messages.forEach(receive);
  }

  // --- pushes on the page's /student socket (static/js/student/proctor.js opens it) -------------------
  const socket = window.ExamProctor && window.ExamProctor.socket;
  if (socket) {
    socket.on("proctor_message", receive);
    socket.on("time_extended", (p) => {
      if (!p || typeof p.remaining_s !== "number" || !page()) return;
      page().syncDeadline(p.remaining_s);
      page().banner("The proctor gave you " + p.minutes + " more minute" + (p.minutes === 1 ? "" : "s") + ".", "info");
    });
    socket.on("connect", fetchUnread);  // a reconnect: anything sent while the socket was down
  } else {
    fetchUnread();
  }

  // --- raising a hand --------------------------------------------------------------------------------
  const handText = document.getElementById("hand-text");
  const handReason = document.getElementById("hand-reason");
  const handError = document.getElementById("hand-error");
  handBtn.addEventListener("click", () => {
    handError.textContent = "";
    window.bootstrap.Modal.getOrCreateInstance(handModal).show();
  });
  handModal.addEventListener("shown.bs.modal", () => { handReason.focus(); });
  handModal.addEventListener("hidden.bs.modal", () => { handBtn.focus(); });
  document.getElementById("hand-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = handText.value.replace(/\s+/g, " ").trim();  // one paragraph: the server refuses line breaks
    const reason = handReason.value;
    if (!text && !reason) { handError.textContent = "Write what you need, or choose what it is about."; handText.focus(); return; }
    const body = {};
    if (reason) body.reason = reason;
    if (text) body.text = text;
    const r = await P.postJSON(box.dataset.handUrl, body);
    if (r.status === 429) { handError.textContent = "You raised your hand a moment ago: please wait for the proctor."; return; }
    if (!r.ok) { handError.textContent = "Not sent: " + (r.data.error || r.status); return; }
    handText.value = "";
    handReason.value = "";
    window.bootstrap.Modal.getOrCreateInstance(handModal).hide();
    if (page()) page().banner("Your hand is raised: the proctor has been told.", "info");
  });
})();
