/* Identity confirmation: live captures posted to the server, which matches them against the
   registration, refuses a face on a screen or a photo and runs the liveness check; the server
   decides, this page only shows it. */
(function () {
  "use strict";
  const root = document.getElementById("confirm");
  if (!root) return;
  const P = window.Proctor;
  const video = document.getElementById("confirm-video");
  const canvas = document.getElementById("confirm-canvas");
  const match = document.getElementById("confirm-match");
  const live = document.getElementById("confirm-live");
  const status = document.getElementById("confirm-status");
  const button = document.getElementById("confirm-start");
  const INTERVAL_MS = 250;
  const MAX_S = 30;
  let running = false;

  async function attempt() {
    running = true;
    button.disabled = true;
    status.textContent = "Checking…";
    const t0 = performance.now();
    let first = true;
    while (running) {
      const ts = Math.round(performance.now() - t0);
      if (ts > MAX_S * 1000) {
        status.textContent = "Not confirmed within " + MAX_S + " s. Improve the light, face the camera and try again.";
        break;
      }
      const shot = P.grab(video, canvas, 0.85, 640);
      if (!shot) { await P.sleep(INTERVAL_MS); continue; }
      const started = performance.now();
      const r = await P.postJSON(root.dataset.frameUrl, {image: shot.dataUrl, ts: ts, restart: first});
      first = false;
      if (!r.ok) {
        status.textContent = r.data.error || "The server refused the picture.";
        if (r.status !== 503) break;
      } else {
        const d = r.data;
        if (d.faces > 1) P.setResult(match, "pending", d.faces + " faces in view: be alone in front of the camera");
        else if (d.spoof) P.setResult(match, "fail", "a photo or a screen, not your face");
        else P.setResult(match, d.match ? "ok" : (d.face_found ? "fail" : "pending"),
          d.face_found ? (d.match ? "yes (" + d.matched_frames + "/" + d.needed_frames + ")" : "no") : "no face in view");
        if (d.liveness.required) P.setResult(live, d.liveness.passed ? "ok" : "pending", d.liveness.passed ? "yes" : d.liveness.reason);
        if (d.refused) {
          if (d.refused_kind === "spoof") {
            P.setResult(match, "fail", "a photo or a screen, not your face");
            status.textContent = "Refused: " + d.refused + ". Put the photo or phone away and try again.";
          } else {
            P.setResult(match, "fail", "does not match");
            status.textContent = "Refused: " + d.refused + ". If this is wrong, register your face again.";
          }
          break;
        }
        if (d.confirmed) {
          status.textContent = "Identity confirmed.";
          window.location.assign(d.next);
          return;
        }
      }
      await P.sleep(Math.max(0, INTERVAL_MS - (performance.now() - started)));
    }
    running = false;
    button.disabled = false;
    button.textContent = "Try again";
  }

  P.openCamera(video, false).then(() => {
    status.textContent = "Camera ready.";
    button.addEventListener("click", attempt);
    attempt();
  }).catch((e) => {
    status.textContent = "The camera is not available (" + (e.message || e.name) + ").";
    button.disabled = true;
  });
})();
