// Live job progress for the dashboard: polls /dashboard/jobs.json (the session cookie signs it in)
// once a second while a job shown on the page is queued or running, and redraws each job's bar,
// count and status badge. A job page reloads when its job ends, so the server draws its results.
// Without JavaScript the pages still work: a job page refreshes itself through <noscript>.
(function () {
  "use strict";

  var POLL_MS = 1000;
  var ACTIVE = { queued: true, running: true };

  function jobElements() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-job-id]"));
  }

  function anyActive() {
    return jobElements().some(function (el) { return ACTIVE[el.getAttribute("data-status")]; });
  }

  function update(el, job) {
    var bar = el.querySelector("[data-role=bar]");
    var count = el.querySelector("[data-role=count]");
    var badge = el.querySelector("[data-role=status]");
    var before = el.getAttribute("data-status");
    if (bar) {
      bar.max = Math.max(job.total, 1);
      bar.value = job.done;
      bar.textContent = job.done + " of " + job.total;
    }
    if (count) { count.textContent = job.done + " / " + job.total; }
    if (badge) {
      badge.textContent = job.status;
      badge.className = "badge badge-" + job.status;
    }
    el.setAttribute("data-status", job.status);
    return ACTIVE[before] && !ACTIVE[job.status];
  }

  function poll(url) {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/dashboard"); return null; }
        return response.ok ? response.json() : null;
      })
      .then(function (body) {
        var finished = false;
        if (body && body.jobs) {
          var byId = {};
          body.jobs.forEach(function (job) { byId[job.job_id] = job; });
          jobElements().forEach(function (el) {
            var job = byId[el.getAttribute("data-job-id")];
            if (job && update(el, job) && el.hasAttribute("data-reload-when-done")) { finished = true; }
          });
        }
        if (finished) { window.location.reload(); return; }
        schedule(url);
      })
      .catch(function () { schedule(url); });  // a restart of the API: try again
  }

  function schedule(url) {
    if (anyActive()) { window.setTimeout(function () { poll(url); }, POLL_MS); }
  }

  function start() {
    var source = document.querySelector("[data-poll]");
    if (source) { schedule(source.getAttribute("data-poll")); }
    // Pickers submit themselves on change (their Show button appears only without scripts).
    Array.prototype.forEach.call(document.querySelectorAll("select[data-autosubmit]"), function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
