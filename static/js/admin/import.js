/* The student import job's page while the job runs: every second it fetches the page again and swaps
   in the job's part (#import-job) only, so that the focus and a screen reader's position stay where
   they are (the meta refresh it replaces reloaded the whole page). Stops when the job has finished. */
(function () {
  "use strict";
  const box = document.getElementById("import-job");
  if (!box || box.dataset.running !== "1") return;
  const POLL_MS = 1000;

  async function poll() {
    let next = null;
    try {
      const r = await fetch(window.location.href, {credentials: "same-origin", headers: {Accept: "text/html"}});
      if (r.ok) next = new DOMParser().parseFromString(await r.text(), "text/html").getElementById("import-job");
    } catch (e) {
      next = null;  // the network failed once: ask again
    }
    if (next) {
      box.replaceChildren(...Array.from(next.childNodes).map((n) => document.importNode(n, true)));
      box.dataset.running = next.dataset.running;
    }
    if (box.dataset.running === "1") setTimeout(poll, POLL_MS);
  }
  setTimeout(poll, POLL_MS);
})();
