/* The exam page's own browser events (issue 16), each reported as its own rule, never as TAB_SWITCH:
   copy, cut, paste -> COPY, CUT, PASTE (details.target: "question", "answer" or "page"); the context menu
   -> RIGHT_CLICK; the Print Screen key -> PRINT_SCREEN; the developer tools' shortcuts (F12, Ctrl+Shift+I/J/C,
   Cmd+Opt+I/J/C, Ctrl+U view-source) -> DEVTOOLS with details.key.

   Everything goes through the page's event outbox (window.ExamProctor.sendEvent, proctor.js); one report
   per type every COOLDOWN_MS, so a held key or a burst of clicks is one event. With the exam's
   block_copy_paste (data-block-copy-paste on this script's tag, from exam_service.exam_page_settings)
   copy, cut, paste and the context menu are prevented, and still reported. The developer tools'
   shortcuts are always prevented (a browser's menu still opens them: the report is what counts).
   Print Screen cannot be prevented: the operating system takes the screenshot before the page hears it. */
(function () {
  "use strict";
  const script = document.currentScript;
  const root = document.getElementById("exam");
  if (!root || !script) return;
  const COOLDOWN_MS = 5000;
  const blockCopyPaste = script.dataset.blockCopyPaste === "true";
  const lastSent = {};

  function finished() { return !!(window.ExamPage && window.ExamPage.isFinished()); }

  function report(type, details) {
    const now = Date.now();
    if (finished() || (lastSent[type] && now - lastSent[type] < COOLDOWN_MS)) return;
    if (!window.ExamProctor) return;
    lastSent[type] = now;
    window.ExamProctor.sendEvent(type, details);
    root.dataset.lastPageEvent = type;
  }

  // Where the event happened: an answer option, the question, or anywhere else on the page.
  function target(ev) {
    const el = ev.target instanceof Element ? ev.target : (ev.target && ev.target.parentElement);
    if (!el) return "page";
    if (el.closest("#question .option, #question input")) return "answer";
    if (el.closest("#question")) return "question";
    return "page";
  }

  const CLIPBOARD = {copy: "COPY", cut: "CUT", paste: "PASTE"};
  Object.keys(CLIPBOARD).forEach((name) => {
    document.addEventListener(name, (ev) => {
      if (blockCopyPaste) ev.preventDefault();
      report(CLIPBOARD[name], {target: target(ev)});
    });
  });

  document.addEventListener("contextmenu", (ev) => {
    if (blockCopyPaste) ev.preventDefault();
    report("RIGHT_CLICK", {target: target(ev)});
  });

  // The developer tools' shortcuts, by the physical key (ev.code) so that a keyboard layout cannot hide them.
  function devtoolsKey(ev) {
    if (ev.key === "F12" || ev.code === "F12") return "F12";
    const letter = ev.code && ev.code.indexOf("Key") === 0 ? ev.code.slice(3) : (ev.key || "").toUpperCase();
    if (letter.length !== 1) return null;
    if (ev.ctrlKey && ev.shiftKey && !ev.altKey && "IJC".indexOf(letter) >= 0) return "Ctrl+Shift+" + letter;
    if (ev.metaKey && ev.altKey && "IJCU".indexOf(letter) >= 0) return "Cmd+Opt+" + letter;
    if (ev.ctrlKey && !ev.shiftKey && !ev.altKey && !ev.metaKey && letter === "U") return "Ctrl+U";
    return null;
  }

  document.addEventListener("keydown", (ev) => {
    const key = devtoolsKey(ev);
    if (!key) return;
    ev.preventDefault();
    report("DEVTOOLS", {key: key});
  }, true);

  document.addEventListener("keyup", (ev) => {
    if (ev.key === "PrintScreen" || ev.code === "PrintScreen") report("PRINT_SCREEN", {key: "PrintScreen"});
  }, true);
})();
