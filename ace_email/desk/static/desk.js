// Keeps a page live: the server says when its picture changed; the page fetches its live part
// again and swaps it in. Should the event stream be down (a proxy cut it, it is reconnecting),
// the page also looks every 5 s. No framework, nothing from elsewhere.
(function () {
  "use strict";
  function swapLive(live) {
    fetch(live.dataset.live, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { live.innerHTML = html; } })
      .catch(function () {});
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("live");
    if (live) {
      var lastEvent = 0;
      if (window.EventSource) {
        var events = new EventSource("/events");
        events.addEventListener("changed", function () {
          lastEvent = Date.now();
          swapLive(live);
        });
      }
      setInterval(function () {
        if (Date.now() - lastEvent > 5000) { swapLive(live); }
      }, 5000);
    }
    document.addEventListener("click", function (event) {
      var button = event.target.closest("[data-action=show-remote]");
      if (!button) { return; }
      document.getElementById("body").src = button.dataset.src;
      button.disabled = true;
    });
    setInterval(function () {
      document.querySelectorAll("[data-expires]").forEach(function (el) {
        var left = Math.max(0, Math.round((Date.parse(el.dataset.expires) - Date.now()) / 1000));
        el.textContent = left + " s left";
      });
    }, 1000);
  });
})();
