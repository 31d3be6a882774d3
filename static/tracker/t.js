/*! EventFlow tracker: no cookie, no storage (README, "Browser tracker") */
(function (win, doc, nav, loc) {
  "use strict";
  var script = doc.currentScript;
  function get(el, name) {
    return el.getAttribute(name);
  }
  function on(target, type, handle) {
    target.addEventListener(type, handle, true);
  }
  function attr(name) {
    return get(script, "data-" + name);
  }
  if (!script || !attr("key")) return;
  if (attr("respect-dnt") != null && (nav.doNotTrack == "1" || win.doNotTrack == "1" || nav.globalPrivacyControl)) return;
  var stream = attr("stream");
  var endpoint = (attr("endpoint") || new URL(script.src).origin).replace(/\/+$/, "") +
    (stream ? "/s/" + stream : "") + "/k/" + attr("key") + "/tracker";
  var view, viewUrl, viewPath, referrer = doc.referrer, hard = 1, perf, done, shifts, shift, shiftStart, shiftLast;

  function id() {
    return crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2);
  }

  function send(type, props) {
    var body = JSON.stringify({
      type: type, event_id: id(), view: view, url: viewUrl, referrer: referrer || undefined, props: props || {}
    });
    try {
      if (nav.sendBeacon(endpoint, body)) return;
    } catch (e) {}
    fetch(endpoint, {method: "POST", body: body, keepalive: true, credentials: "omit"}).catch(function () {});
  }

  // data-ef-* attributes (but data-ef-event) as properties
  function props(el, into) {
    for (var i = 0, all = el.attributes, name; i < all.length; i++) {
      name = all[i].name;
      if (!name.indexOf("data-ef-") && name != "data-ef-event") into[name.slice(8)] = all[i].value;
    }
    return into;
  }

  // Where a link or form leads, without its query or fragment (a form's action may be no URL at all)
  function address(value) {
    try {
      var url = new URL(value, loc.href);
      return url.origin + url.pathname;
    } catch (e) {
      return String(value).split(/[?#]/)[0];
    }
  }

  // Page performance, once per page view
  function observe(type, handle, options) {
    if (PerformanceObserver.supportedEntryTypes.indexOf(type) < 0) return;
    new PerformanceObserver(function (list) {
      list.getEntries().forEach(handle);
    }).observe(Object.assign({type: type, buffered: true}, options));
    return 1;
  }

  function measure() {
    perf = shifts ? {cls: 0} : {};
    done = shift = shiftStart = shiftLast = 0;
  }

  function flush() {
    if (done || !view) return;
    done = 1;
    var timing = hard && performance.getEntriesByType("navigation")[0], out = {}, name;
    if (timing) {
      out.ttfb = timing.responseStart;
      out.dom_content_loaded = timing.domContentLoadedEventEnd;
      out.load = timing.loadEventEnd;
    }
    for (name in perf) out[name] = perf[name];
    for (name in out) {
      if (name == "cls") out[name] = Math.round(out[name] * 1e4) / 1e4;
      else if (out[name] > 0) out[name] = Math.round(out[name]);
      else delete out[name];
    }
    send("page_performance", out);
  }

  try {
    observe("largest-contentful-paint", function (entry) {
      if (hard) perf.lcp = entry.startTime;
    });
    // CLS: the largest window of shifts less than 1 s apart, at most 5 s long
    shifts = observe("layout-shift", function (entry) {
      var at = entry.startTime;
      if (entry.hadRecentInput) return;
      if (at - shiftLast < 1000 && at - shiftStart < 5000) shift += entry.value;
      else {
        shift = entry.value;
        shiftStart = at;
      }
      shiftLast = at;
      perf.cls = Math.max(perf.cls, shift);
    });
    // INP: the longest interaction (web-vitals' value below 50 interactions)
    observe("event", function (entry) {
      if (entry.interactionId) perf.inp = Math.max(perf.inp || 0, entry.duration);
    }, {durationThreshold: 16});
  } catch (e) {}
  measure();

  // A new view when the path or query changes; or, the same page again, when the page is restored from the
  // back-forward cache (pageshow, persisted): it is shown without loading, so nothing else would count it.
  // That view keeps the page's referrer and has no navigation timing or LCP of its own.
  function page(event) {
    var path = loc.pathname + loc.search, restored = event && event.persisted;
    if (path == viewPath && !restored) return;
    if (view) {
      flush();
      if (!restored) referrer = viewUrl;
      hard = 0;
      measure();
    }
    viewPath = path;
    viewUrl = loc.href;
    view = id();
    send("page_view");
  }

  ["pushState", "replaceState"].forEach(function (name) {
    var original = history[name];
    history[name] = function () {
      var result = original.apply(this, arguments);
      page();
      return result;
    };
  });
  on(win, "popstate", page);
  on(win, "pageshow", page);
  on(win, "pagehide", flush);
  on(doc, "visibilitychange", function () {
    if (doc.visibilityState == "hidden") flush();
  });

  function click(event) {
    var target = event.target, marked = target.closest && target.closest("[data-ef-event]"),
      link = target.closest && target.closest("a[href]");
    if (marked && marked.tagName != "FORM") send(get(marked, "data-ef-event"), props(marked, {}));
    if (link && /^http/.test(link.protocol)) {
      if (link.hasAttribute("download") || /\.(pdf|csv|docx?|xlsx?|pptx?|zip|t?gz|7z|rar|dmg|exe|msi|apk|iso|mp[34])$/i.test(link.pathname)) {
        send("file_download", {url: address(link.href)});
      } else if (link.host != loc.host) send("outbound_click", {url: address(link.href)});
    }
  }

  on(doc, "click", click);
  on(doc, "auxclick", function (event) {
    if (event.button == 1) click(event);
  });
  // Which form, never what was typed in it
  on(doc, "submit", function (event) {
    var form = event.target;
    send(get(form, "data-ef-event") || "form_submit", props(form, {
      form_id: get(form, "id") || undefined,
      form_name: get(form, "name") || undefined,
      action: address(get(form, "action") || "")
    }));
  });

  win.eventflow = function (type, properties) {
    send(type, properties);
  };
  page();
})(window, document, navigator, location);
