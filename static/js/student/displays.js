/* Displays (issue 16): what the browser says about the screens, a signal and not a proof.

   window.ProctorDisplays.read(mayAsk) -> {extended, screens, known}: screen.isExtended, and the number of
   screens from the Window Management API (window.getScreenDetails) when the student has already granted
   it, or when mayAsk is true (the system check asks, and only when a second display is reported: never at
   exam time). Browsers without screen.isExtended (Firefox, Safari) cannot tell: known is false and they
   count as one display.

   Included with data attributes on its script tag:
   - the ready page (data-report-url): reports to the server before Start works; with the exam's
     displays_policy "block" Start stays refused while a second display is reported (the server's start
     route refuses too, from the last report);
   - the exam page (#exam present): checks at start, on the screen's change event and every 10 s, and sends
     MULTIPLE_DISPLAYS once each time the desktop becomes extended (not on every check). */
(function () {
  "use strict";
  const script = document.currentScript;
  const MAX_SCREENS = 16;
  const POLL_MS = 10000;

  async function permissionGranted() {
    if (!navigator.permissions) return false;
    for (const name of ["window-management", "window-placement"]) {  // the API's new name, then its old one
      try {
        const status = await navigator.permissions.query({name: name});
        return status.state === "granted";
      } catch (e) { /* this browser does not know the name */ }
    }
    return false;
  }

  async function read(mayAsk) {
    const flag = window.screen && typeof window.screen.isExtended === "boolean" ? window.screen.isExtended : null;
    let screens = null;
    // One display reported: nothing to count. Otherwise count the screens if the student granted it before,
    // or if this page may ask (the system check, with a second display reported).
    if (typeof window.getScreenDetails === "function" && flag !== false) {
      try {
        if ((mayAsk && flag === true) || await permissionGranted()) {
          const details = await window.getScreenDetails();
          if (details && details.screens && details.screens.length) screens = details.screens.length;
        }
      } catch (e) { /* refused or unavailable: isExtended is what we have */ }
    }
    if (screens === null) screens = flag ? 2 : 1;  // isExtended says "more than one", not how many
    screens = Math.max(1, Math.min(MAX_SCREENS, screens));
    return {extended: screens > 1, screens: screens, known: flag !== null || screens > 1};
  }

  function onChange(handler) {
    if (window.screen && typeof window.screen.addEventListener === "function") {
      window.screen.addEventListener("change", handler);
    }
    return setInterval(handler, POLL_MS);
  }

  window.ProctorDisplays = {read: read};
  if (!script) return;

  // --- the ready page --------------------------------------------------------------------------
  const reportUrl = script.dataset.reportUrl;
  const form = document.getElementById("start-form");
  if (reportUrl && form) {
    const P = window.Proctor;
    const button = document.getElementById("start-exam");
    const notice = document.getElementById("ready-displays");
    const block = script.dataset.displaysPolicy === "block";

    const report = async () => {
      const d = await read(false);
      const r = await P.postJSON(reportUrl, {extended: d.extended, screens: d.screens});
      const allowed = r.ok && r.data.allowed;
      if (notice) {
        let text = "";
        if (!r.ok) text = "Your displays could not be checked: " + ((r.data && r.data.error) || r.status) + ". Reload the page.";
        else if (!allowed) text = r.data.message;
        else if (d.extended) text = "A second display is connected. Use one screen only: the proctor is told when a second display is connected during the exam.";
        notice.textContent = text;
        notice.hidden = !text;
      }
      button.disabled = block && !allowed;
      button.dataset.displays = d.extended ? "extended" : "single";
      return allowed;
    };
    button.disabled = block;  // until the first report is in
    report();
    onChange(report);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      if (await report() || !block) form.submit();
    });
    return;
  }

  // --- the exam page ---------------------------------------------------------------------------
  if (!document.getElementById("exam") || script.dataset.displaysPolicy === "off") return;
  let last = null;  // extended at the last check (null: not checked yet)
  const check = async () => {
    const d = await read(false);
    if (d.extended && last !== true && window.ExamProctor) {
      window.ExamProctor.sendEvent("MULTIPLE_DISPLAYS", {screens: d.screens, reason: last === null ? "at start" : "connected"});
    }
    last = d.extended;
    document.getElementById("exam").dataset.displays = d.extended ? "extended" : "single";
  };
  check();
  onChange(check);
})();
