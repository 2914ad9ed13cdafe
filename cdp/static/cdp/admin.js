/* cdp admin: parts marked data-refresh-seconds reload themselves from the same page (no framework). */
(function () {
  function refresh(el) {
    var seconds = parseInt(el.getAttribute("data-refresh-seconds"), 10) || 30;
    setTimeout(function tick() {
      if (document.hidden) { setTimeout(tick, seconds * 1000); return; }
      fetch(window.location.href, {credentials: "same-origin", headers: {"X-Requested-With": "cdp-refresh"}})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html) {
            var doc = new DOMParser().parseFromString(html, "text/html");
            var fresh = doc.getElementById(el.id);
            if (fresh) { el.innerHTML = fresh.innerHTML; }
          }
          setTimeout(tick, seconds * 1000);
        })
        .catch(function () { setTimeout(tick, seconds * 1000); });
    }, seconds * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh-seconds][id]").forEach(refresh);
  });
})();
