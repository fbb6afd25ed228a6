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

  // The same picture as JPEG bytes (for a binary message): resolves to {bytes: ArrayBuffer, ctx} or null.
  function grabBytes(video, canvas, quality, maxWidth) {
    const w0 = video.videoWidth, h0 = video.videoHeight;
    if (!w0 || !h0) return Promise.resolve(null);
    const scale = Math.min(1, (maxWidth || w0) / w0);
    canvas.width = Math.round(w0 * scale);
    canvas.height = Math.round(h0 * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve) => {
      canvas.toBlob((blob) => {
        if (!blob) { resolve(null); return; }
        blob.arrayBuffer().then((bytes) => resolve({bytes: bytes, ctx: ctx}), () => resolve(null));
      }, "image/jpeg", quality || 0.8);
    });
  }

  // A check result cell: data-state (ok, fail, pending) styles it.
  function setResult(el, state, text) {
    el.dataset.state = state;
    el.textContent = text;
  }

  function sleep(ms) { return new Promise((resolve) => setTimeout(resolve, ms)); }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => { return (x < 16 ? "0" : "") + x.toString(16); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  // A queue of JSON posts kept in localStorage under `key` (it survives a reload), sent one at a time in
  // order. Retried with back-off (1 s doubling to 30 s, plus jitter) on a network error, 5xx or 429;
  // dropped on any other answer (a 2xx, or a definitive 4xx such as 400/404/409). Each item has
  // {id (a UUID made when queued), url, body, kind}; hooks.done(item, reply) and hooks.change(state) report.
  function outbox(key, hooks) {
    let items = [];
    try { items = JSON.parse(localStorage.getItem(key) || "[]") || []; } catch (e) { items = []; }
    let sending = false, failures = 0, timer = null, retrying = false;
    function persist() { try { localStorage.setItem(key, JSON.stringify(items)); } catch (e) { /* full or private */ } }
    function state() { return {queued: items.slice(), retrying: retrying, failures: failures}; }
    function changed() { if (hooks.change) hooks.change(state()); }
    function retryable(r) { return r.status >= 500 || r.status === 429 || r.status === 408; }
    async function pump() {
      if (sending || timer) return;
      sending = true;
      while (items.length) {
        const item = items[0];
        let r = null;
        try { r = await postJSON(item.url, item.body); } catch (e) { r = null; }
        if (r === null || retryable(r)) {
          failures += 1; retrying = true; changed();
          const wait = Math.min(30000, 1000 * Math.pow(2, failures - 1)) * (1 + Math.random() * 0.2);
          sending = false;
          timer = setTimeout(() => { timer = null; pump(); }, wait);
          return;
        }
        items.shift(); persist();
        failures = 0; retrying = false;
        if (hooks.done) hooks.done(item, r);
        changed();
      }
      sending = false;
    }
    function add(url, body, kind) {
      const id = uuid();
      items.push({id: id, url: url, body: Object.assign({}, body, hooks.stamp ? hooks.stamp(id) : {}), kind: kind || ""});
      persist(); changed(); pump();
      return id;
    }
    function flushNow() { if (timer) { clearTimeout(timer); timer = null; } pump(); }
    window.addEventListener("online", flushNow);
    return {add: add, pump: pump, flushNow: flushNow, state: state};
  }

  window.Proctor = {csrf, postJSON, getJSON, rules, rule, ruleLabel, openCamera, grab, grabBytes, setResult, sleep, uuid, outbox};
})();
