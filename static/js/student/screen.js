/* Screen sharing on the exam page (issue 16): the entire screen shared before the questions show, a
   screenshot of it sent every screenshot_interval_s seconds, and a stopped share reported and asked again. */
(function () {
  "use strict";
  const root = document.getElementById("exam");
  if (!root || root.dataset.screenShare !== "required") return;
  const P = window.Proctor;
  const panel = document.getElementById("screen-panel");
  const button = document.getElementById("screen-share");
  const message = document.getElementById("screen-message");
  if (!panel || !button || !message) return;

  const intervalMs = Math.max(5, Math.min(300, parseInt(root.dataset.screenshotIntervalS || "15", 10) || 15)) * 1000;
  const maxSide = parseInt(root.dataset.screenshotMaxPx || "1280", 10) || 1280;
  const maxBytes = parseInt(root.dataset.screenshotMaxBytes || "614400", 10) || 614400;
  const QUALITIES = [0.6, 0.45, 0.3];  // a busy screen may need a lower quality to fit the server's limit
  const NOT_ENTIRE = "Share your entire screen, not a window or a tab: choose \u201cEntire screen\u201d in the picker.";

  let stream = null, shotTimer = null, uploading = false, everShared = false, stopped = false, sent = 0;
  const video = document.createElement("video");  // not in the page: only drawn onto the canvas
  video.muted = true;
  video.playsInline = true;
  const canvas = document.createElement("canvas");

  function page() { return window.ExamPage; }
  function over() { return stopped || Boolean(page() && page().isFinished()); }
  function say(text) { if (message.textContent !== text) message.textContent = text; }

  function cover(text) {
    delete root.dataset.screenLive;
    say(text || "");
    button.disabled = false;
    if (shotTimer) { clearTimeout(shotTimer); shotTimer = null; }
  }

  function release() {
    if (stream) stream.getTracks().forEach((t) => { t.onended = null; t.stop(); });
    stream = null;
    video.srcObject = null;
  }

  async function share() {
    if (over()) return;
    if (!navigator.mediaDevices || typeof navigator.mediaDevices.getDisplayMedia !== "function") {
      say("This browser cannot share the screen: use a recent Chrome, Edge or Firefox on a computer.");
      return;
    }
    button.disabled = true;
    say("Waiting for you to choose what to share…");
    let s;
    try {
      s = await navigator.mediaDevices.getDisplayMedia({video: {displaySurface: "monitor"}, audio: false});
    } catch (e) {
      // Refusing the picker is not a violation: before any share the student simply has not started (no
      // question was shown); after a share had run, its end was already reported as SCREEN_SHARE_STOPPED,
      // and the questions stay covered until an entire screen is shared again.
      cover(e && e.name === "NotAllowedError"
        ? "You did not share your screen. The questions stay covered until you share your entire screen."
        : "Screen sharing failed (" + ((e && (e.message || e.name)) || "unknown error") + "). Try again.");
      button.focus();
      return;
    }
    const track = s.getVideoTracks()[0];
    const surface = track && typeof track.getSettings === "function" ? track.getSettings().displaySurface : undefined;
    if (!track || surface !== "monitor") {
      s.getTracks().forEach((t) => t.stop());
      root.dataset.refusedSurface = String(surface || "unknown");
      cover(surface ? NOT_ENTIRE : "This browser does not say what is shared: use a recent Chrome, Edge or Firefox.");
      button.focus();
      return;
    }
    release();
    stream = s;
    everShared = true;
    // "ended" fires when the student (or the system) stops the share, e.g. the browser's "Stop sharing" bar.
    track.onended = () => {
      if (stream !== s) return;
      release();
      if (over()) return;
      if (window.ExamProctor) window.ExamProctor.sendEvent("SCREEN_SHARE_STOPPED", {reason: "ended"});
      cover(P.rule("SCREEN_SHARE_STOPPED").message);
      button.focus();
    };
    video.srcObject = s;
    try { await video.play(); } catch (e) { /* a muted video plays without a gesture; frames are awaited below */ }
    root.dataset.screenLive = "1";
    say("");
    shot();  // one at once, then one every interval
  }

  function waitForFrame() {
    if (video.videoWidth > 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = () => { video.removeEventListener("loadeddata", done); resolve(video.videoWidth > 0); };
      video.addEventListener("loadeddata", done);
      setTimeout(done, 3000);
    });
  }

  function jpeg(quality) {
    return new Promise((resolve) => { canvas.toBlob(resolve, "image/jpeg", quality); });
  }

  async function grab() {
    if (!(await waitForFrame())) return null;
    const w = video.videoWidth, h = video.videoHeight;
    const scale = Math.min(1, maxSide / Math.max(w, h));
    canvas.width = Math.max(1, Math.round(w * scale));
    canvas.height = Math.max(1, Math.round(h * scale));
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    for (const q of QUALITIES) {
      const blob = await jpeg(q);
      if (blob && blob.size <= maxBytes) return blob;
    }
    return null;
  }

  async function shot() {
    shotTimer = null;
    if (over() || !root.dataset.screenLive || uploading) { schedule(); return; }
    uploading = true;
    try {
      const blob = await grab();
      if (blob && root.dataset.screenLive) {
        const resp = await fetch(root.dataset.screenshotUrl, {method: "POST", credentials: "same-origin",
          headers: {"Content-Type": "image/jpeg", "X-CSRFToken": P.csrf}, body: blob});
        if (resp.status === 201) { sent += 1; root.dataset.screenshotsSent = String(sent); }
        // 409: the exam is over (exam.js takes the student to the result); 413: the session's screenshot
        // quota is full. Neither gets better by sending more.
        if (resp.status === 409 || resp.status === 413) { stopped = true; release(); return; }
      }
    } catch (e) {
      /* a lost screenshot is a gap, not a reason to stop the exam; the next one comes on time */
    } finally {
      uploading = false;
    }
    schedule();
  }

  function schedule() {
    if (!over() && root.dataset.screenLive && !shotTimer) shotTimer = setTimeout(shot, intervalMs);
  }

  button.addEventListener("click", share);

  // The exam's end (submit, time, termination) stops the camera through ExamProctor.stop; the share with it.
  if (window.ExamProctor && typeof window.ExamProctor.stop === "function") {
    const stopCamera = window.ExamProctor.stop;
    window.ExamProctor.stop = function () { stopped = true; cover(""); release(); stopCamera(); };
  }
  window.ExamScreen = {state: () => {
    return {live: Boolean(root.dataset.screenLive), everShared: everShared, sent: sent, uploading: uploading};
  }};
})();
