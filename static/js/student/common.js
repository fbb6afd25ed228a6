/* Shared helpers for the student pages: CSRF-protected JSON calls and the camera. */
(function () {
  "use strict";
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.getAttribute("content") : "";

  async function postJSON(url, body, options) {
    const resp = await fetch(url, Object.assign({
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body),
    }, options || {}));
    let data = null;
    try { data = await resp.json(); } catch (e) { data = {error: "the server sent no JSON (" + resp.status + ")"}; }
    return {ok: resp.ok, status: resp.status, data: data};
  }

  async function getJSON(url) {
    const resp = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
    let data = null;
    try { data = await resp.json(); } catch (e) { data = {error: "the server sent no JSON (" + resp.status + ")"}; }
    return {ok: resp.ok, status: resp.status, data: data};
  }

  async function openCamera(video, withAudio) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("this browser cannot use the camera (getUserMedia is missing)");
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      video: {width: {ideal: 640}, height: {ideal: 480}},
      audio: !!withAudio,
    });
    if (video) {
      video.srcObject = stream;
      await video.play().catch(function () {});
      if (!video.videoWidth) {
        await new Promise(function (resolve) { video.addEventListener("loadeddata", resolve, {once: true}); setTimeout(resolve, 3000); });
      }
    }
    return stream;
  }

  function grab(video, canvas, quality, maxWidth) {
    const w0 = video.videoWidth, h0 = video.videoHeight;
    if (!w0 || !h0) return null;
    const scale = Math.min(1, (maxWidth || w0) / w0);
    canvas.width = Math.round(w0 * scale);
    canvas.height = Math.round(h0 * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    return {dataUrl: canvas.toDataURL("image/jpeg", quality || 0.8), ctx: ctx};
  }

  function setResult(el, state, text) {
    el.dataset.state = state;
    el.textContent = text;
  }

  window.ExamCommon = {csrf: csrf, postJSON: postJSON, getJSON: getJSON, openCamera: openCamera, grab: grab, setResult: setResult};
})();
