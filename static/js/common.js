/* The helpers every page uses, as one global: window.Proctor (loaded by base.html before the page's module).
   JSON calls with the CSRF token, the facts the server rendered into the page, the camera. */
(function () {
  "use strict";
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.getAttribute("content") : "";
  const RULES_BLOCK_ID = "proctor-rules";  // proctor/page_data.py renders it
  let facts = null;

  // Every JSON call resolves to {ok, status, data} (an HTTP error is a reply, not an exception;
  // only a network failure rejects). The API's errors are {error, code}.
  async function reply(resp) {
    let data;
    try { data = await resp.json(); } catch (e) { data = {error: "the server sent no JSON (" + resp.status + ")"}; }
    return {ok: resp.ok, status: resp.status, data: data || {}};
  }

  async function postJSON(url, body) {
    const resp = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf},
      body: JSON.stringify(body || {}),
    });
    return reply(resp);
  }

  async function getJSON(url) {
    const resp = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
    return reply(resp);
  }

  // The rule registry and the admin event names, from the page's JSON data block.
  function rules() {
    if (facts === null) {
      const el = document.getElementById(RULES_BLOCK_ID);
      if (!el) throw new Error("this page has no #" + RULES_BLOCK_ID + " data block ({{ rules_script() }})");
      facts = JSON.parse(el.textContent);
    }
    return facts;
  }

  function rule(name) {
    const r = rules().rules[name];
    if (!r) throw new Error("unknown rule " + name);
    return r;
  }

  // "No face (NO_FACE)" for an admin; the bare name if the page does not know it.
  function ruleLabel(name) {
    const r = rules().rules[name];
    return r ? r.title + " (" + name + ")" : String(name);
  }

  // The camera (and the microphone: `audio` is false, true or getUserMedia audio constraints).
  async function openCamera(video, audio) {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("this browser cannot use the camera (getUserMedia is missing)");
    }
    const stream = await navigator.mediaDevices.getUserMedia({
      video: {width: {ideal: 640}, height: {ideal: 480}},
      audio: audio || false,
    });
    if (video) {
      video.srcObject = stream;
      await video.play().catch(() => {});
      if (!video.videoWidth) {
        await new Promise((resolve) => { video.addEventListener("loadeddata", resolve, {once: true}); setTimeout(resolve, 3000); });
      }
    }
    return stream;
  }

  // The video's current picture drawn on the canvas (at most maxWidth wide) -> {dataUrl, ctx}, or null before the first frame.
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

  // A check result cell: data-state (ok, fail, pending) styles it.
  function setResult(el, state, text) {
    el.dataset.state = state;
    el.textContent = text;
  }

  function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

  window.Proctor = {csrf, postJSON, getJSON, rules, rule, ruleLabel, openCamera, grab, setResult, sleep};
})();
