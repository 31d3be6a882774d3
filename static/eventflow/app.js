/* EventFlow dashboard behaviour: copy buttons, the live tail's pause, select-all boxes.
   A static file (the Content-Security-Policy allows no inline script); every page works without it. */
(function () {
  "use strict";

  function copyText(text, button) {
    var done = function () {
      var label = button.querySelector("[data-copy-label]");
      if (!label) return;
      var before = label.textContent;
      label.textContent = "Copied";
      button.classList.add("copy-done");
      window.setTimeout(function () { label.textContent = before; button.classList.remove("copy-done"); }, 1800);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallbackCopy(text); done(); });
    } else {
      fallbackCopy(text);
      done();
    }
  }

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "sr-only";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } catch (e) { /* the text stays selectable on the page */ }
    document.body.removeChild(area);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (source) copyText(source.textContent.trim(), button);
  });

  // The live tail: htmx polls every 2 s; while paused, each poll is cancelled before it is sent.
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-tail-toggle]");
    if (!toggle) return;
    var tail = document.getElementById(toggle.getAttribute("data-tail-toggle"));
    if (!tail) return;
    var paused = tail.classList.toggle("is-paused");
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    toggle.querySelector("[data-tail-label]").textContent = paused ? "Resume" : "Pause";
    toggle.querySelector("[data-tail-icon-pause]").hidden = paused;
    toggle.querySelector("[data-tail-icon-play]").hidden = !paused;
    var status = document.querySelector("[data-tail-status]");
    if (status) status.textContent = paused ? "Paused" : "Live · every 2 s";
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var tail = event.target.closest && event.target.closest(".tail");
    if (tail && tail.classList.contains("is-paused")) event.preventDefault();
  });

  // Select every row's box at once (dead letters).
  document.addEventListener("change", function (event) {
    var all = event.target.closest("[data-select-all]");
    if (!all) return;
    var form = document.getElementById(all.getAttribute("data-select-all"));
    if (!form) return;
    form.querySelectorAll("input[type=checkbox][name=ids]").forEach(function (box) { box.checked = all.checked; });
  });
})();

/* Rows the live tail had not shown before flash once. */
document.addEventListener("htmx:afterSwap", function (event) {
  "use strict";
  var tail = event.target.closest && event.target.closest(".tail");
  if (!tail) return;
  var seen = Number(tail.getAttribute("data-seen") || "-1");
  var newest = seen;
  event.target.querySelectorAll("tr[data-offset]").forEach(function (row) {
    var offset = Number(row.getAttribute("data-offset"));
    if (seen >= 0 && offset > seen) row.classList.add("tail-new");
    if (offset > newest) newest = offset;
  });
  tail.setAttribute("data-seen", String(newest));
});

/* On a phone the sections are one row that scrolls sideways: bring the current one into view, and mark
   which edges have more behind them so the sheet can fade them. */
(function () {
  "use strict";
  // A row that scrolls sideways on a phone (the sections, a stream's tabs) opens with its active item in
  // sight, and says on which sides it has more.
  function scroller(nav) {
    function edges() {
      var more = nav.scrollWidth - nav.clientWidth;
      nav.classList.toggle("more-left", more > 1 && nav.scrollLeft > 1);
      nav.classList.toggle("more-right", more > 1 && nav.scrollLeft < more - 1);
    }
    var active = nav.querySelector("a.active");
    if (active && nav.scrollWidth > nav.clientWidth) {
      var box = nav.getBoundingClientRect();
      var item = active.getBoundingClientRect();
      if (item.left < box.left || item.right > box.right) {
        nav.scrollLeft += item.left - box.left - (box.width - item.width) / 2;
      }
    }
    edges();
    nav.addEventListener("scroll", edges, { passive: true });
    window.addEventListener("resize", edges);
  }

  function start() {
    document.querySelectorAll(".sidebar .nav, nav.tabs").forEach(scroller);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
