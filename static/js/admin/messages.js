/* Issue 16, the proctor's side: on each student card (and on one student's live page) a message and extra
   time in accessible dialogs (templates/admin/_messages.html), the raised-hand mark with its toast, and
   what the student did with the message. The server audits each action (proctor/messages.py). */
(function () {
  "use strict";
  const P = window.Proctor, Live = window.AdminLive;
  const msgModal = document.getElementById("message-modal");
  const timeModal = document.getElementById("extra-time-modal");
  if (!Live || !msgModal || !timeModal) return;
  const panels = {};  // student id -> {hand, handText, dismiss, extra, status, data()}
  let target = null, opener = null;

  function make(tag, cls, text) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text) el.textContent = text;
    return el;
  }

  function localTime(iso) {
    const at = new Date(iso);
    if (!iso || isNaN(at.getTime())) return "";
    return at.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"});
  }

  function button(text, who, cls) {
    const b = make("button", "btn btn-sm " + cls);
    b.type = "button";
    b.append(document.createTextNode(text), make("span", "visually-hidden", " " + who));
    return b;
  }

  // container: where the buttons go; data(): {id, name, sessionId} as the page knows them now.
  function attach(container, data) {
    const d = data();
    const box = make("div", "talk d-flex flex-wrap align-items-center gap-1 mt-1");
    const hand = make("div", "talk-hand alert alert-warning py-1 px-2 mb-0 w-100 small");
    hand.hidden = true;
    const handText = make("span", "talk-hand-text");
    const dismiss = button("Dismiss", "the raised hand of " + d.name, "btn-link p-0 ms-1 align-baseline");
    hand.append(make("span", "", "☝ Raised hand: "), handText, dismiss);
    const msgBtn = button("Message", "to " + d.name, "btn-outline-primary");
    const timeBtn = button("Extra time", "for " + d.name, "btn-outline-secondary");
    const extra = make("span", "badge text-bg-info talk-extra");
    extra.hidden = true;
    const status = make("div", "talk-status small w-100");
    status.setAttribute("role", "status");
    box.append(hand, msgBtn, timeBtn, extra, status);
    container.appendChild(box);
    const panel = {hand: hand, handText: handText, dismiss: dismiss, extra: extra, status: status, data: data};
    panels[String(d.id)] = panel;
    msgBtn.addEventListener("click", () => { open(msgModal, panel, msgBtn); });
    timeBtn.addEventListener("click", () => { open(timeModal, panel, timeBtn); });
    dismiss.addEventListener("click", async () => {
      const r = await P.postJSON("/api/admin/sessions/" + encodeURIComponent(panel.data().sessionId) + "/hand/dismiss", {});
      if (r.ok) showHand(panel, null);
      else status.textContent = "Could not dismiss: " + (r.data.error || r.status);
    });
    load(panel);
  }

  // The card's state after a reload: open hands, extra time, whether the last message was read.
  async function load(panel) {
    const sid = panel.data().sessionId;
    if (!sid) return;
    const r = await P.getJSON("/api/admin/sessions/" + encodeURIComponent(sid) + "/messages");
    if (!r.ok) return;
    const hands = r.data.open_hands || [];
    showHand(panel, hands.length ? hands[hands.length - 1].body : null);
    showExtra(panel, r.data.extra_minutes);
    const mine = (r.data.messages || []).filter((m) => { return m.sender === "proctor"; });
    const last = mine[mine.length - 1];
    if (last && last.acknowledged_at) read(panel, panel.data().name, last.acknowledged_at);
  }

  function showHand(panel, text) {
    panel.hand.hidden = text === null;
    panel.handText.textContent = text || "";
    panel.hand.parentElement.setAttribute("data-hand", text === null ? "" : "raised");
  }
  function showExtra(panel, minutes) {
    panel.extra.hidden = !(minutes > 0);
    panel.extra.textContent = "+" + minutes + " min";
  }
  function read(panel, name, iso) {
    panel.status.textContent = (name || "The student") + " read your message " + localTime(iso);
    panel.status.setAttribute("data-read", iso);
  }

  function open(modal, panel, from) {
    target = panel;
    opener = from;
    modal.querySelectorAll(".talk-name").forEach((el) => { el.textContent = panel.data().name; });
    modal.querySelector(".talk-error").textContent = "";
    window.bootstrap.Modal.getOrCreateInstance(modal).show();
  }
  [msgModal, timeModal].forEach((modal) => {
    modal.addEventListener("shown.bs.modal", () => {
      const first = modal === msgModal ? msgModal.querySelector("input[name=preset]:checked") : document.getElementById("extra-minutes");
      if (first) first.focus();
    });
    // The keyboard's place goes back to the button that opened the dialog.
    modal.addEventListener("hidden.bs.modal", () => { if (opener && opener.isConnected) opener.focus(); });
  });

  const msgText = document.getElementById("message-text");
  msgText.addEventListener("input", () => { document.getElementById("preset-own").checked = true; });
  document.getElementById("message-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const err = msgModal.querySelector(".talk-error");
    const checked = msgModal.querySelector("input[name=preset]:checked");
    const preset = checked ? checked.value : "";
    const text = msgText.value.replace(/\s+/g, " ").trim();  // one paragraph: the server refuses line breaks
    if (!preset && !text) { err.textContent = "Choose a message or write one."; msgText.focus(); return; }
    const r = await P.postJSON("/api/admin/sessions/" + encodeURIComponent(target.data().sessionId) + "/messages",
                               preset ? {preset: preset} : {text: text});
    if (!r.ok) { err.textContent = "Not sent: " + (r.data.error || r.status); return; }
    msgText.value = "";
    target.status.textContent = "Message sent " + localTime(r.data.created_at) + ", not read yet";
    window.bootstrap.Modal.getOrCreateInstance(msgModal).hide();
  });

  document.getElementById("extra-time-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = document.getElementById("extra-minutes");
    const err = timeModal.querySelector(".talk-error");
    const minutes = Number(input.value);
    const lo = Number(input.min), hi = Number(input.max);
    if (!Number.isInteger(minutes) || minutes < lo || minutes > hi) {
      err.textContent = "Enter whole minutes from " + lo + " to " + hi + ".";
      input.focus();
      return;
    }
    const r = await P.postJSON("/api/admin/sessions/" + encodeURIComponent(target.data().sessionId) + "/extra-time",
                               {minutes: minutes});
    if (!r.ok) { err.textContent = "Not granted: " + (r.data.error || r.status); return; }
    showExtra(target, r.data.extra_minutes);
    target.status.textContent = minutes + " min added: new deadline " + localTime(r.data.deadline);
    window.bootstrap.Modal.getOrCreateInstance(timeModal).hide();
  });

  function panelOf(p) {
    const id = Live.studentIdOf(p);
    return id === null ? null : panels[id] || null;
  }

  // Pushed to every admin (the names are the server's: proctor/live/events.py ADMIN_EVENTS).
  Live.extend({
    hand_raised(p) {
      const panel = panelOf(p);
      const name = p.name || (panel ? panel.data().name : "A student");
      const t = Live.toast("Raised hand: " + name, p.body || "", {severity: "medium", type: "HAND_RAISED"});
      if (t) {
        t.classList.add("toast-hand");
        t.querySelector(".toast-icon").textContent = "☝";
        t.querySelector(".toast-severity").textContent = "Raised hand";
      }
      if (panel) showHand(panel, p.body || "");
    },
    hand_cleared(p) { const panel = panelOf(p); if (panel) showHand(panel, null); },
    message_sent(p) {
      const panel = panelOf(p);
      if (panel) panel.status.textContent = "Message from " + (p.author || "a proctor") + " " + localTime(p.created_at) + ", not read yet";
    },
    message_acknowledged(p) { const panel = panelOf(p); if (panel) read(panel, p.name || panel.data().name, p.acknowledged_at); },
    extra_time_granted(p) { const panel = panelOf(p); if (panel) showExtra(panel, p.extra_minutes); },
  });

  // The live dashboard: each card gets the buttons below its link (a button inside a link is not allowed).
  Live.onCard((col, data) => {
    const card = col.querySelector(".student-card");
    if (card) card.classList.remove("h-100");
    attach(col, () => { const d = data(); return {id: d.id, name: d.name, sessionId: d.sessionId}; });
  });
  // One student's live page.
  const page = document.querySelector(".talk-panel");
  if (page) {
    attach(page.querySelector(".card-body"), () => {
      return {id: page.getAttribute("data-student-id"), name: page.getAttribute("data-student-name"),
              sessionId: page.getAttribute("data-session-id")};
    });
  }
})();
