/* Times on review pages arrive as <time class="local-time" datetime="...Z">14:03:12 UTC</time> (the server
   does not know the reader's time zone); shown here in the browser's local time, the UTC text kept as a tooltip. */
(function () {
  "use strict";
  document.querySelectorAll("time.local-time[datetime]").forEach((el) => {
    const at = new Date(el.getAttribute("datetime"));
    if (isNaN(at.getTime())) return;
    el.title = el.textContent;
    el.textContent = at.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false}) + " local";
  });
})();
