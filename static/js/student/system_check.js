/* System check: browser features, camera preview and resolution, microphone level meter, upload speed. */
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

  async function checkCamera() {
    try {
      stream = await P.openCamera(video, true);
      const track = stream.getVideoTracks()[0];
      const s = track ? track.getSettings() : {};
      const w = video.videoWidth || s.width, h = video.videoHeight || s.height;
      if (!track || track.readyState !== "live" || !w) throw new Error("no picture");
      P.setResult(row("camera"), "ok", w + "×" + h);
      return true;
    } catch (e) {
      P.setResult(row("camera"), "fail", "not available: " + (e.message || e.name));
      return false;
    }
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
    const microphone = camera ? await checkMicrophone() : false;
    if (!camera) P.setResult(row("microphone"), "fail", "needs the camera and microphone permission");
    const upload = await checkUpload();
    const report = await P.postJSON(root.dataset.reportUrl, {browser: browser, camera: camera, microphone: microphone,
      upload: upload.ok, upload_kbps: upload.kbps});
    if (report.ok && report.data.ok) {
      summary.textContent = "All checks passed.";
      cont.disabled = false;
      cont.focus();
    } else if (report.ok && report.data.next) {
      summary.textContent = "Some checks failed.";
      window.location.assign(report.data.next);
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
