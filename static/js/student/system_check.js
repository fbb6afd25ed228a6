/* System check: browser features, camera preview and resolution (a virtual camera fails), microphone level
   meter, upload speed, and whether a second display is connected (shown, not failed: see displays.js). */
(function () {
  "use strict";
  const root = document.getElementById("system-check");
  if (!root) return;
  const P = window.Proctor;
  const video = document.getElementById("preview");
  const meter = document.getElementById("mic-level");
  const summary = document.getElementById("check-summary");
  const cont = document.getElementById("check-continue");
  const again = document.getElementById("check-again");
  const minKbps = parseFloat(root.dataset.minUploadKbps || "256");
  const UPLOAD_BYTES = 512 * 1024;
  let stream = null, audioCtx = null, meterTimer = null;

  function row(name) { return document.querySelector("#check-" + name + " .check-result"); }

  function checkBrowser() {
    const missing = [];
    if (!window.isSecureContext) missing.push("a secure connection (https)");
    if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) missing.push("camera access");
    if (!(window.AudioContext || window.webkitAudioContext)) missing.push("Web Audio");
    if (!window.MediaRecorder) missing.push("MediaRecorder");
    if (!document.documentElement.requestFullscreen) missing.push("full screen");
    if (!window.fetch || !window.WebSocket) missing.push("fetch/WebSocket");
    if (missing.length) { P.setResult(row("browser"), "fail", "missing: " + missing.join(", ")); return false; }
    P.setResult(row("browser"), "ok", "ready");
    return true;
  }

  // The known virtual cameras come from the server (proctor/devices.py, rendered into the page): the
  // server checks the label it is sent against the same list.
  function virtualName(label) {
    const lowered = (label || "").toLowerCase();
    return (P.rules().virtual_cameras || []).find((name) => lowered.includes(name)) || null;
  }

  // The selected camera's labels: the track's own, and enumerateDevices()'s entry for its deviceId.
  async function cameraLabels(track, deviceId) {
    const labels = [track.label || ""];
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      devices.filter((d) => d.kind === "videoinput" && deviceId && d.deviceId === deviceId)
        .forEach((d) => { labels.push(d.label || ""); });
    } catch (e) { /* the track's label is enough */ }
    return labels.filter(Boolean);
  }

  // {ok, opened, label}: opened when a picture came (the microphone check can go on), ok unless virtual too.
  async function checkCamera() {
    try {
      stream = await P.openCamera(video, true);
      const track = stream.getVideoTracks()[0];
      const s = track ? track.getSettings() : {};
      const w = video.videoWidth || s.width, h = video.videoHeight || s.height;
      if (!track || track.readyState !== "live" || !w) throw new Error("no picture");
      const labels = await cameraLabels(track, s.deviceId);
      const virtual = labels.find(virtualName);
      if (virtual) {
        P.setResult(row("camera"), "fail", "virtual camera: " + virtual + " (choose your real webcam)");
        return {ok: false, opened: true, label: virtual};
      }
      P.setResult(row("camera"), "ok", w + "×" + h);
      return {ok: true, opened: true, label: labels[0] || ""};
    } catch (e) {
      P.setResult(row("camera"), "fail", "not available: " + (e.message || e.name));
      return {ok: false, opened: false, label: ""};
    }
  }

  // Advisory: a second display does not fail the check; an exam that forbids it refuses to start.
  async function checkDisplay() {
    const d = await window.ProctorDisplays.read(true);
    const advice = document.getElementById("display-advice");
    advice.hidden = !d.extended;
    if (d.extended) P.setResult(row("display"), "fail", d.screens + " displays: use one only");
    else P.setResult(row("display"), "ok", d.known ? "one display" : "one display (as far as this browser can tell)");
    return d;
  }

  function checkMicrophone() {
    return new Promise((resolve) => {
      const track = stream && stream.getAudioTracks()[0];
      if (!track) { P.setResult(row("microphone"), "fail", "no microphone"); resolve(false); return; }
      const Ctx = window.AudioContext || window.webkitAudioContext;
      audioCtx = new Ctx();
      const src = audioCtx.createMediaStreamSource(new MediaStream([track]));
      const analyser = audioCtx.createAnalyser();
      analyser.fftSize = 2048;
      src.connect(analyser);
      const buf = new Float32Array(analyser.fftSize);
      let peak = 0, samples = 0;
      meterTimer = setInterval(() => {
        analyser.getFloatTimeDomainData(buf);
        let sum = 0;
        for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
        const rms = Math.sqrt(sum / buf.length);
        const level = Math.min(1, rms * 10);
        meter.value = level;
        meter.textContent = level.toFixed(2);
        peak = Math.max(peak, rms);
        samples++;
      }, 100);
      setTimeout(() => {
        // A live microphone always carries some signal; a dead or muted one reads exact zero.
        if (track.readyState === "live" && !track.muted && samples > 0 && peak > 0) {
          P.setResult(row("microphone"), "ok", "working");
          resolve(true);
        } else {
          P.setResult(row("microphone"), "fail", track.muted ? "muted" : "no signal");
          resolve(false);
        }
      }, 1500);
    });
  }

  async function checkUpload() {
    const blob = new Blob([new Uint8Array(UPLOAD_BYTES)], {type: "application/octet-stream"});
    const t0 = performance.now();
    try {
      const resp = await fetch(root.dataset.uploadUrl, {method: "POST", credentials: "same-origin",
        headers: {"X-CSRFToken": P.csrf, "Content-Type": "application/octet-stream"}, body: blob});
      const data = await resp.json();
      const ms = performance.now() - t0;
      if (!resp.ok || data.bytes !== UPLOAD_BYTES) throw new Error(data.error || "server received " + data.bytes + " bytes");
      const kbps = (UPLOAD_BYTES * 8 / 1000) / (ms / 1000);
      const ok = kbps >= minKbps;
      P.setResult(row("upload"), ok ? "ok" : "fail", Math.round(kbps) + " kbit/s" + (ok ? "" : " (too slow)"));
      return {ok: ok, kbps: kbps};
    } catch (e) {
      P.setResult(row("upload"), "fail", "failed: " + e.message);
      return {ok: false, kbps: 0};
    }
  }

  async function run() {
    cont.disabled = true;
    summary.textContent = "Checking…";
    const browser = checkBrowser();
    const camera = await checkCamera();
    const microphone = camera.opened ? await checkMicrophone() : false;
    if (!camera.opened) P.setResult(row("microphone"), "fail", "needs the camera and microphone permission");
    const upload = await checkUpload();
    const display = await checkDisplay();
    const report = await P.postJSON(root.dataset.reportUrl, {browser: browser, camera: camera.ok, microphone: microphone,
      upload: upload.ok, upload_kbps: upload.kbps, camera_label: camera.label, display: !display.extended,
      screens: display.screens});
    if (report.ok && report.data.ok) {
      summary.textContent = display.extended ? "All checks passed, but a second display is connected (see below)."
                                             : "All checks passed.";
      cont.disabled = false;
      cont.focus();
    } else if (report.ok && report.data.next) {
      summary.textContent = "Some checks failed.";
      // The advice page's "Run the check again" must come back to this exam's journey, not the home page.
      const exam = root.dataset.examId;
      window.location.assign(report.data.next + (exam ? "&exam=" + encodeURIComponent(exam) : ""));
    } else {
      summary.textContent = "Could not record the check: " + (report.data && report.data.error);
    }
  }

  function stop() {
    if (meterTimer) clearInterval(meterTimer);
    if (audioCtx) audioCtx.close();
    if (stream) stream.getTracks().forEach((t) => { t.stop(); });
    stream = null; audioCtx = null; meterTimer = null;
  }

  cont.addEventListener("click", () => { stop(); window.location.assign(root.dataset.nextUrl); });
  again.addEventListener("click", () => { stop(); run(); });
  run();
})();
