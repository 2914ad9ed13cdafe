/* cdp admin: parts that follow work in progress, without a framework.
 * - An element with an id and data-refresh-seconds reloads itself from the same page.
 * - A change list whose rows show running work ([data-cdp-running]) reloads its table every 5 s
 *   until nothing runs any more.
 * When a refreshed part says the work has finished, the whole page reloads once so every field
 * shows the outcome. */
(function () {
  function stillRunning(el) {
    return el.hasAttribute("data-refresh-seconds") || el.querySelector("[data-cdp-running]") !== null;
  }
  /* whenDone: "keep" (refresh forever), "reload" (reload the page once done) or "stop". */
  function follow(el, seconds, whenDone) {
    function tick() {
      if (document.hidden) { setTimeout(tick, seconds * 1000); return; }
      fetch(window.location.href, {credentials: "same-origin", headers: {"X-Requested-With": "cdp-refresh"}})
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          var fresh = html && new DOMParser().parseFromString(html, "text/html").getElementById(el.id);
          if (fresh) { el.innerHTML = fresh.innerHTML; }
          var done = fresh && !stillRunning(fresh);
          if (done && whenDone === "reload") { window.location.reload(); return; }
          if (done && whenDone === "stop") { return; }
          setTimeout(tick, seconds * 1000);
        })
        .catch(function () { setTimeout(tick, seconds * 1000); });
    }
    setTimeout(tick, seconds * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh-seconds][id]").forEach(function (el) {
      var seconds = parseInt(el.getAttribute("data-refresh-seconds"), 10) || 30;
      follow(el, seconds, el.getAttribute("data-when-done") || "keep");
    });
    var results = document.getElementById("result_list");
    if (results && results.querySelector("[data-cdp-running]")) {
      follow(results, 5, "stop");
    }
    var form = document.querySelector("#content-main form[id$='_form']");
    if (!results && form && form.querySelector("fieldset [data-cdp-running]")) {
      // a read-only page of running work (a run, a model refresh): show its progress as it moves
      setTimeout(function () { if (!document.hidden) window.location.reload(); }, 5000);
    }
  });
})();
