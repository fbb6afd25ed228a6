/* Times on review pages arrive as <time class="local-time" datetime="...Z">14:03:12 UTC</time> (the server
   does not know the reader's time zone); shown here in the browser's local time, the UTC text kept as a tooltip. */
(function () {
  "use strict";
  document.querySelectorAll("time.local-time[datetime]").forEach((el) => {
    const at = new Date(el.getAttribute("datetime"));
    if (isNaN(at.getTime())) return;
    el.title = el.textContent;
    const time = at.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
    // The date too where asked (data-with-date): the local day can differ from the UTC one.
    el.textContent = (el.hasAttribute("data-with-date") ? at.toLocaleDateString() + " " : "") + time + " local";
  });
})();
