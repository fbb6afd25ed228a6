/* Times on review pages arrive as <time class="local-time" datetime="...Z">14:03:12 UTC</time> (the server
   does not know the reader's time zone); shown here in the browser's local time, the UTC text kept as a tooltip. */
(function () {
  "use strict";
  // The zone's short name ("CET", "GMT+2"), for a page that leaves the screen: "local" says nothing on paper.
  function zoneName(at) {
    try {
      const part = new Intl.DateTimeFormat([], {timeZoneName: "short"}).formatToParts(at)
        .filter((p) => p.type === "timeZoneName")[0];
      return part ? part.value : "local";
    } catch (e) {
      return "local";
    }
  }
  document.querySelectorAll("time.local-time[datetime]").forEach((el) => {
    const at = new Date(el.getAttribute("datetime"));
    if (isNaN(at.getTime())) return;
    el.title = el.textContent;
    // hourCycle h23, not hour12: false, which some engines render as "24:07" just after midnight.
    const time = at.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"});
    // The date too where asked (data-with-date): the local day can differ from the UTC one.
    el.textContent = (el.hasAttribute("data-with-date") ? at.toLocaleDateString() + " " : "") + time + " "
      + (el.hasAttribute("data-with-zone") ? zoneName(at) : "local");
  });
})();
