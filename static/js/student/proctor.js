/* The proctoring client on the exam page: camera frames to the server with back-pressure,
   camera-off, voice, tab-switch and full-screen events, audio recording in chunks, and the
   server's warnings over Socket.IO. The server decides what is a violation; this page reports. */
(function () {
  "use strict";
  const root = document.getElementById("exam");
  if (!root) return;
  const P = window.Proctor;
  const video = document.getElementById("proctor-video");
  const canvas = document.getElementById("proctor-canvas");
  const statusEl = document.getElementById("proctor-status");
  const sessionId = root.dataset.sessionId;
  const baseInterval = 1000 / Math.max(0.2, Math.min(10, parseFloat(root.dataset.fps || "2")));

  // The policy (how dark is a covered camera and for how long; how loud and how long is talking) comes
  // from the server's vision settings, rendered into the page; the signal processing stays here.
  const camera = P.rule("CAMERA_OFF").thresholds, voice = P.rule("VOICE_DETECTED").thresholds;
  const BLACK = {mean: camera.black_frame_mean, holdMs: camera.hold_s * 1000};
  const VOICE_SAMPLE_MS = 100;
  const VOICE = {calibrateMs: 3000, marginDb: voice.margin_db, lowHz: 300, highHz: 3400,
                 windowSamples: Math.max(1, Math.round(voice.window_s * 1000 / VOICE_SAMPLE_MS)),
                 needSamples: Math.max(1, Math.round(voice.min_s * 1000 / VOICE_SAMPLE_MS)),
                 sampleMs: VOICE_SAMPLE_MS, cooldownMs: 8000, floorMinDb: -90};
  const AUDIO_CHUNK_MS = 10000;

  let stream = null, stopped = false;
  let interval = baseInterval, quality = 0.7, inFlight = false, frameTimer = null;
  let cameraOffSent = false, blackSince = 0;
  let audioCtx = null, voiceTimer = null, recorder = null, chunkSeq = 0;
  let wasFullscreen = false;
  const recent = {};

  function page() { return window.ExamPage; }

  // A status region: rewritten only when the text changes, so a screen reader is not told every frame.
  function say(text) { if (statusEl.textContent !== text) statusEl.textContent = text; }

  // count: the server's number of warnings so far, when it says it.
  function warn(message, type, count) {
    const now = Date.now();
    if (type && recent[type] && now - recent[type] < 3000) return;  // socket push and HTTP reply of the same warning
    if (type) recent[type] = now;
    if (page()) page().banner(message, "warning", type, count);
  }

  // Browser events go through an outbox kept in localStorage (retried after a server or database blink;
  // the event's client_id makes the server take a repeat once). Camera frames are never queued.
  const events = P.outbox("exam-events-" + sessionId, {
    stamp: (id) => { return {client_id: id}; },
    done: (item, r) => {
      if (r.ok && Array.isArray(r.data.warnings)) {
        r.data.warnings.forEach((w) => { if (w && w.message) warn(w.message, w.type || item.kind, w.count); });
      }
    },
  });

  function sendEvent(type, details) {
    if (stopped) return null;
    return events.add(root.dataset.eventUrl, {type: type, details: details || {}}, type);
  }

  // --- frames ---------------------------------------------------------------------------
  function scheduleFrame() {
    if (stopped) return;
    frameTimer = setTimeout(sendFrame, interval);
  }

  // A frame goes as a binary message on the page's own Socket.IO connection while it is up (no HTTP
  // request per frame for the server to parse); as a JSON data URL over HTTP otherwise. Either way
  // the answer is {ok, status, error}.
  async function uploadFrame() {
    const socket = window.ExamProctor && window.ExamProctor.socket;
    if (socket && socket.connected && typeof socket.timeout === "function") {
      const shot = await P.grabBytes(video, canvas, quality, 640);
      if (!shot) return null;
      checkCamera(shot.ctx);
      try {
        const ack = await socket.timeout(10000).emitWithAck("frame", {image: shot.bytes, ts: Date.now()});
        const failed = !ack || typeof ack.status === "number";
        return {ok: !failed, status: failed ? (ack && ack.status) || 500 : 202, error: ack && ack.error, via: "socket"};
      } catch (e) {
        throw new Error("no answer on the socket");
      }
    }
    const shot = P.grab(video, canvas, quality, 640);
    if (!shot) return null;
    checkCamera(shot.ctx);
    const r = await P.postJSON(root.dataset.frameUrl, {image: shot.dataUrl, ts: Date.now()});
    return {ok: r.ok, status: r.status, error: r.data && r.data.error, via: "http"};
  }

  async function sendFrame() {
    if (stopped) return;
    if (inFlight) { scheduleFrame(); return; }  // back-pressure: never two uploads at once
    inFlight = true;
    const t0 = performance.now();
    try {
      const r = await uploadFrame();
      if (r === null) { checkCamera(null); return; }
      const took = performance.now() - t0;
      adapt(took);
      if (r.status === 409 && page()) {
        // No exam in progress any more: the session ended (time, submit or termination).
        const s = await P.getJSON(root.dataset.sessionUrl);
        if (s.ok && s.data.status !== "IN_PROGRESS") page().terminated(s.data.result_url);
      } else if (!r.ok && r.status !== 429) {
        say("Camera upload refused: " + (r.error || r.status));
      } else if (r.ok) {
        root.dataset.frameTransport = r.via;
        say("Camera on · " + (1000 / interval).toFixed(1) + " frames/s");
      }
    } catch (e) {
      adapt(5000);
      say("Camera upload failed; retrying.");
    } finally {
      inFlight = false;
      scheduleFrame();
    }
  }

  function adapt(tookMs) {
    // Slow link: lower JPEG quality first, then the rate; recover step by step when it is fast.
    if (tookMs > baseInterval * 0.8) {
      if (quality > 0.45) quality = Math.max(0.4, quality - 0.1);
      else interval = Math.min(baseInterval * 4, interval * 1.5);
    } else if (tookMs < baseInterval * 0.3) {
      if (interval > baseInterval) interval = Math.max(baseInterval, interval / 1.5);
      else if (quality < 0.7) quality = Math.min(0.7, quality + 0.05);
    }
  }

  function checkCamera(ctx) {
    const track = stream && stream.getVideoTracks()[0];
    let off = null;
    if (!track || track.readyState !== "live") off = "ended";
    else if (track.muted) off = "muted";
    else if (ctx) {
      const w = canvas.width, h = canvas.height;
      const data = ctx.getImageData(0, 0, w, h).data;
      let sum = 0, n = 0;
      for (let i = 0; i < data.length; i += 4 * 97) { sum += data[i] * 0.299 + data[i + 1] * 0.587 + data[i + 2] * 0.114; n++; }
      const mean = n ? sum / n : 0;
      if (mean < BLACK.mean) {
        blackSince = blackSince || performance.now();
        if (performance.now() - blackSince >= BLACK.holdMs) off = "black";
      } else blackSince = 0;
    }
    if (off && !cameraOffSent) {
      cameraOffSent = true;
      say("Camera is off (" + off + ").");
      warn(P.rule("CAMERA_OFF").message, "CAMERA_OFF");
      sendEvent("CAMERA_OFF", {reason: off});
    } else if (!off) cameraOffSent = false;
  }

  // --- voice ----------------------------------------------------------------------------
  function startVoice(track) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    audioCtx = new Ctx();
    const src = audioCtx.createMediaStreamSource(new MediaStream([track]));
    const analyser = audioCtx.createAnalyser();
    analyser.fftSize = 2048;
    analyser.smoothingTimeConstant = 0.2;
    src.connect(analyser);
    const bins = new Float32Array(analyser.frequencyBinCount);
    const hzPerBin = audioCtx.sampleRate / analyser.fftSize;
    const lo = Math.max(1, Math.floor(VOICE.lowHz / hzPerBin)), hi = Math.min(bins.length - 1, Math.ceil(VOICE.highHz / hzPerBin));
    const calib = [], voiced = [];
    let t0 = null;
    let floor = null, lastSent = 0, runStart = 0;

    function bandDb() {
      analyser.getFloatFrequencyData(bins);
      let p = 0;
      for (let i = lo; i <= hi; i++) if (isFinite(bins[i])) p += Math.pow(10, bins[i] / 10);
      return p > 0 ? 10 * Math.log10(p) : -200;
    }

    voiceTimer = setInterval(() => {
      // Browsers start audio suspended until the page is used; a suspended graph reads silence,
      // which must not become the noise floor.
      if (audioCtx.state !== "running") { audioCtx.resume().catch(() => {}); return; }
      const db = bandDb();
      if (floor === null) {
        if (t0 === null) t0 = performance.now();
        calib.push(db);
        if (performance.now() - t0 >= VOICE.calibrateMs && calib.length >= 10) {
          calib.sort((a, b) => a - b);
          floor = Math.max(VOICE.floorMinDb, calib[Math.floor(calib.length / 2)]);
          root.dataset.noiseFloorDb = floor.toFixed(1);
        }
        return;
      }
      const loud = db > floor + VOICE.marginDb;
      voiced.push(loud);
      if (voiced.length > VOICE.windowSamples) voiced.shift();
      if (loud && !runStart) runStart = performance.now();
      const count = voiced.filter(Boolean).length;
      if (count < 3) runStart = 0;
      const now = performance.now();
      if (count >= VOICE.needSamples && now - lastSent > VOICE.cooldownMs) {
        lastSent = now;
        sendEvent("VOICE_DETECTED", {level: Math.round(db * 10) / 10, duration_ms: Math.round(now - (runStart || now))});
      }
    }, VOICE.sampleMs);
  }

  // --- audio recording ------------------------------------------------------------------
  function startRecording(track) {
    if (!window.MediaRecorder) return;
    const types = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/ogg"];
    const mime = types.find((t) => MediaRecorder.isTypeSupported(t));
    if (!mime) return;
    // The server's PROCTOR_AUDIO_BITRATE_BPS: the per-session audio quota is sized for it.
    const audioBps = parseInt(root.dataset.audioBps || "32000", 10);
    recorder = new MediaRecorder(new MediaStream([track]), {mimeType: mime, audioBitsPerSecond: audioBps});
    let chunkStarted = Date.now();
    recorder.addEventListener("dataavailable", (ev) => {
      if (!ev.data || !ev.data.size) return;
      const form = new FormData();
      form.append("session_id", sessionId);
      form.append("seq", String(chunkSeq++));
      form.append("started_ms", String(chunkStarted));
      form.append("chunk", new Blob([ev.data], {type: mime.split(";")[0]}), "chunk");
      chunkStarted = Date.now();
      fetch(root.dataset.audioUrl, {method: "POST", credentials: "same-origin", headers: {"X-CSRFToken": P.csrf}, body: form})
        .catch(() => { /* a lost chunk is a gap in the recording, not a reason to stop the exam */ });
    });
    recorder.start(AUDIO_CHUNK_MS);
  }

  // --- tab switch and full screen ---------------------------------------------------------
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden" && !stopped && !(page() && page().isFinished())) {
      sendEvent("TAB_SWITCH", {});
    }
  });

  function goFullscreen() {
    if (document.fullscreenElement || !document.documentElement.requestFullscreen) return;
    document.documentElement.requestFullscreen().catch(() => {});
  }
  document.getElementById("fullscreen").addEventListener("click", goFullscreen);
  document.addEventListener("click", function once() {
    goFullscreen();
    if (audioCtx && audioCtx.state !== "running") audioCtx.resume().catch(() => {});
    document.removeEventListener("click", once);
  });
  document.addEventListener("fullscreenchange", () => {
    if (document.fullscreenElement) { wasFullscreen = true; return; }
    if (wasFullscreen && !stopped && !(page() && page().isFinished())) {
      wasFullscreen = false;
      sendEvent("FULLSCREEN_EXIT", {});
    }
  });

  // --- camera device (issue 16) ------------------------------------------------------------ >>> devices
  // The camera in use is remembered when the exam page opens it; another device on the live track later
  // (checked on the browser's devicechange event and every 5 s) sends CAMERA_CHANGED {device,
  // previous_device}, once per change. A camera whose label names a virtual camera (the server's list,
  // proctor/devices.py, rendered as P.rules().virtual_cameras) sends CAMERA_CHANGED at the start too, with
  // device "virtual: <label>": the system check refuses one, so it was switched to after the check.
  const cameraDevice = (function () {
    let current = null;
    function describe(track) {
      const s = track.getSettings ? track.getSettings() : {};
      return {id: s.deviceId || "", label: track.label || ""};
    }
    function name(d) { return d.label || (d.id ? "camera " + d.id.slice(0, 12) : "unnamed camera"); }
    function isVirtual(label) {
      const lowered = (label || "").toLowerCase();
      return (P.rules().virtual_cameras || []).some((v) => lowered.includes(v));
    }
    function check() {
      const track = stream && stream.getVideoTracks()[0];
      if (stopped || !current || !track || track.readyState !== "live") return;
      const now = describe(track);
      if ((now.id && current.id && now.id !== current.id) || (now.label && now.label !== current.label)) {
        sendEvent("CAMERA_CHANGED", {device: name(now), previous_device: name(current)});
        root.dataset.cameraDevice = name(now);
        current = now;
      }
    }
    function start(track) {
      current = describe(track);
      root.dataset.cameraDevice = name(current);
      if (isVirtual(current.label)) sendEvent("CAMERA_CHANGED", {device: "virtual: " + name(current)});
      if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
        navigator.mediaDevices.addEventListener("devicechange", check);
      }
      setInterval(check, 5000);
    }
    return {start: start, check: check};
  })();
  // <<< devices

  // --- warnings pushed by the server --------------------------------------------------------
  function connectSocket() {
    if (!window.io) return;
    const socket = window.io("/student", {transports: ["websocket", "polling"]});
    socket.on("warning", (w) => {
      if (!w) return;
      const known = w.type && P.rules().rules[w.type];
      warn(w.message || (known ? known.message : "Proctoring warning"), w.type, w.count);
    });
    socket.on("terminated", () => {
      if (page()) page().terminated(root.dataset.resultUrl);
    });
    window.ExamProctor.socket = socket;
  }

  async function start() {
    try {
      // Raw sound for the voice check: the browser's voice processing would hide talking.
      stream = await P.openCamera(video, {echoCancellation: false, noiseSuppression: false, autoGainControl: false});
    } catch (e) {
      say("Camera or microphone not available: " + (e.message || e.name));
      sendEvent("CAMERA_OFF", {reason: "denied"});
      return;
    }
    const vt = stream.getVideoTracks()[0];
    if (vt) {
      vt.addEventListener("ended", () => checkCamera(null));
      vt.addEventListener("mute", () => checkCamera(null));
      cameraDevice.start(vt);  // issue 16: the camera device watcher (above)
    }
    const at = stream.getAudioTracks()[0];
    if (at) { startVoice(at); startRecording(at); }
    scheduleFrame();
  }

  function stop() {
    stopped = true;
    if (frameTimer) clearTimeout(frameTimer);
    if (voiceTimer) clearInterval(voiceTimer);
    if (recorder && recorder.state !== "inactive") { try { recorder.stop(); } catch (e) { /* already stopped */ } }
    if (audioCtx) audioCtx.close().catch(() => {});
    if (stream) stream.getTracks().forEach((t) => t.stop());
    if (window.ExamProctor.socket) window.ExamProctor.socket.close();
  }

  window.ExamProctor = {stop: stop, sendEvent: sendEvent, events: events, state: () => {
    return {interval: interval, quality: quality, inFlight: inFlight, chunks: chunkSeq, noiseFloorDb: root.dataset.noiseFloorDb};
  }};
  connectSocket();
  start();
})();
