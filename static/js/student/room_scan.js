/* Room scan before the exam: a live preview, a guided recording of 10-20 s (MediaRecorder, WebM,
   a modest bitrate), a countdown that stops it by itself, a replay, "record again" and the upload.
   The numbers come from the page (proctor/room_scans.py); the server checks the clip again. */
(function () {
  "use strict";
  const root = document.getElementById("room-scan");
  if (!root) return;
  const P = window.Proctor;
  const MIN_S = Number(root.dataset.minS);
  const MAX_S = Number(root.dataset.maxS);
  const BITRATE_BPS = Number(root.dataset.bitrateBps);
  const WIDTH = Number(root.dataset.width);
  const HEIGHT = Number(root.dataset.height);
  const MIME = root.dataset.mime;
  const preview = document.getElementById("scan-preview");
  const playback = document.getElementById("scan-playback");
  const progress = document.getElementById("scan-progress");
  const timeText = document.getElementById("scan-time");
  const status = document.getElementById("scan-status");
  const recordBtn = document.getElementById("scan-record");
  const stopBtn = document.getElementById("scan-stop");
  const againBtn = document.getElementById("scan-again");
  const uploadBtn = document.getElementById("scan-upload");
  let stream = null;
  let recorder = null;
  let chunks = [];
  let startedAt = 0;
  let ticker = null;
  let clip = null;
  let clipMs = 0;
  let playbackUrl = null;

  function show(el, on) { el.classList.toggle("d-none", !on); }

  function setTime(ms) {
    const s = Math.min(MAX_S, ms / 1000);
    progress.value = s;
    const left = Math.max(0, Math.ceil(MAX_S - s));
    timeText.textContent = Math.floor(s) + " s of " + MAX_S + " s" +
      (s < MIN_S ? " (at least " + MIN_S + " s)" : " (" + left + " s left)");
  }

  function recorderType() {
    const types = [MIME + ";codecs=vp8", MIME + ";codecs=vp9", MIME];
    return types.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t));
  }

  async function openCamera() {
    // At most 640x480: a room scan needs no more, and the upload stays small.
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: {width: {ideal: WIDTH, max: WIDTH}, height: {ideal: HEIGHT, max: HEIGHT}}, audio: false});
      preview.srcObject = stream;
      await preview.play().catch(() => {});
    } catch (e) {
      if (e && e.name === "OverconstrainedError") stream = await P.openCamera(preview, false);
      else throw e;
    }
  }

  function resetClip() {
    clip = null;
    clipMs = 0;
    if (playbackUrl) { URL.revokeObjectURL(playbackUrl); playbackUrl = null; }
    playback.removeAttribute("src");
    show(playback, false);
    show(preview, true);
  }

  function record() {
    const type = recorderType();
    if (!type) {
      status.textContent = "This browser cannot record WebM video. Use a current Chrome, Edge or Firefox.";
      return;
    }
    resetClip();
    chunks = [];
    recorder = new MediaRecorder(new MediaStream(stream.getVideoTracks()),
      {mimeType: type, videoBitsPerSecond: BITRATE_BPS});
    recorder.addEventListener("dataavailable", (ev) => { if (ev.data && ev.data.size) chunks.push(ev.data); });
    recorder.addEventListener("stop", finished);
    recorder.addEventListener("error", (ev) => {
      recorder.removeEventListener("stop", finished);  // the error says it; no "too short" after it
      clearInterval(ticker);
      ticker = null;
      status.textContent = "The recording failed (" + ((ev.error && ev.error.name) || "error") + "). Press Record again.";
      show(stopBtn, false);
      show(againBtn, true);
    });
    recorder.start(1000);
    startedAt = performance.now();
    setTime(0);
    status.textContent = "Recording. Turn the camera slowly: desk, under the desk, both sides, the wall behind the screen.";
    show(recordBtn, false); show(againBtn, false); show(uploadBtn, false); show(stopBtn, true);
    stopBtn.focus();
    ticker = setInterval(() => {
      const ms = performance.now() - startedAt;
      setTime(ms);
      if (ms >= MAX_S * 1000) stop();
    }, 200);
  }

  function stop() {
    if (!recorder || recorder.state === "inactive") return;
    clipMs = performance.now() - startedAt;
    clearInterval(ticker);
    ticker = null;
    recorder.stop();
  }

  function finished() {
    show(stopBtn, false);
    setTime(clipMs);
    if (clipMs < MIN_S * 1000) {
      status.textContent = "Too short (" + (clipMs / 1000).toFixed(1) + " s): record at least " + MIN_S + " seconds.";
      chunks = [];
      show(againBtn, true);
      againBtn.focus();
      return;
    }
    clip = new Blob(chunks, {type: MIME});
    playbackUrl = URL.createObjectURL(clip);
    playback.src = playbackUrl;
    show(preview, false);
    show(playback, true);
    status.textContent = "Recorded " + (clipMs / 1000).toFixed(1) + " s. Watch it if you like, then upload it or record again.";
    show(againBtn, true);
    show(uploadBtn, true);
    uploadBtn.focus();
  }

  async function upload() {
    if (!clip) return;
    uploadBtn.disabled = true;
    againBtn.disabled = true;
    status.textContent = "Uploading…";
    const form = new FormData();
    form.append("duration_ms", String(Math.round(clipMs)));
    form.append("clip", clip, "room-scan.webm");
    let r;
    try {
      const resp = await fetch(root.dataset.uploadUrl, {method: "POST", credentials: "same-origin",
        headers: {"X-CSRFToken": P.csrf, "Accept": "application/json"}, body: form});
      let data;
      try { data = await resp.json(); } catch (e) { data = {error: "the server sent no JSON (" + resp.status + ")"}; }
      r = {ok: resp.ok, status: resp.status, data: data || {}};
    } catch (e) {
      r = {ok: false, status: 0, data: {error: "the upload failed: check the connection and try again"}};
    }
    if (r.ok) {
      status.textContent = "Room scan saved.";
      window.location.assign(r.data.next);
      return;
    }
    status.textContent = "Not saved: " + (r.data.error || "the server refused the clip") + ".";
    uploadBtn.disabled = false;
    againBtn.disabled = false;
  }

  recordBtn.addEventListener("click", record);
  stopBtn.addEventListener("click", stop);
  againBtn.addEventListener("click", () => { show(againBtn, false); show(uploadBtn, false); record(); });
  uploadBtn.addEventListener("click", upload);

  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    status.textContent = "This browser cannot use the camera.";
    return;
  }
  openCamera().then(() => {
    status.textContent = "Camera ready. Read the steps, then press Record.";
    recordBtn.disabled = false;
  }).catch((e) => {
    status.textContent = "The camera is not available (" + (e.message || e.name) + ").";
  });
})();
