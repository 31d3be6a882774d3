/* EventFlow charts: time series drawn with the vendored uPlot (static/vendor/uplot/).
   A static file (the Content-Security-Policy allows no inline script). Each chart is
     <div class="chart" data-chart="ID" data-kind="line|area|bars"></div>
     <script type="application/json" id="ID">{"x": [epoch seconds…], "series": [{"label": …, "values": […]}],
                                            "unit": "events", "tz": "UTC", "interval": "hour"}</script>
   The JSON block is data, never run. Colours come from the sheet's custom properties, so a chart follows
   the light or dark theme, and is drawn again when the system switches. Every chart's numbers are also
   in a table on its page: a chart is a view of them, not the only one. */
(function () {
  "use strict";
  if (typeof window.uPlot !== "function") return;
  var uPlot = window.uPlot;

  function css(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function palette() {
    var colours = [];
    for (var i = 1; i <= 8; i++) colours.push(css("--chart-" + i, "#6366f1"));
    return colours;
  }

  function withAlpha(colour, alpha) {
    // #rrggbb → rgba(); anything else is used as it is.
    var m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(colour);
    if (!m) return colour;
    return "rgba(" + parseInt(m[1], 16) + "," + parseInt(m[2], 16) + "," + parseInt(m[3], 16) + "," + alpha + ")";
  }

  var number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  var compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

  function dateFormat(tz, options) {
    options.timeZone = tz || "UTC";
    try { return new Intl.DateTimeFormat(undefined, options); } catch (e) { delete options.timeZone; return new Intl.DateTimeFormat(undefined, options); }
  }

  function timeFormatter(tz, interval) {
    if (interval === "day" || interval === "week") return dateFormat(tz, { month: "short", day: "numeric", year: "numeric" });
    return dateFormat(tz, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  }

  // A tooltip that follows the cursor: the bucket's time and each series' value.
  function tooltipPlugin(data) {
    var tip, over;
    var when = timeFormatter(data.tz, data.interval);
    var unit = data.unit ? " " + data.unit : "";
    function init(u) {
      over = u.over;
      tip = document.createElement("div");
      tip.className = "chart-tip";
      tip.hidden = true;
      over.appendChild(tip);
      over.addEventListener("mouseleave", function () { tip.hidden = true; });
      over.addEventListener("mouseenter", function () { tip.hidden = false; });
    }
    function setCursor(u) {
      var idx = u.cursor.idx;
      if (idx == null) { tip.hidden = true; return; }
      tip.hidden = false;
      tip.textContent = "";
      var head = document.createElement("div");
      head.className = "chart-tip-head";
      head.textContent = when.format(new Date(u.data[0][idx] * 1000));
      tip.appendChild(head);
      for (var s = 1; s < u.series.length; s++) {
        if (!u.series[s].show) continue;
        var row = document.createElement("div");
        row.className = "chart-tip-row";
        var swatch = document.createElement("span");
        swatch.className = "chart-swatch";
        swatch.style.background = u.series[s]._colour;
        var label = document.createElement("span");
        label.textContent = u.series[s].label;
        var value = document.createElement("strong");
        var v = u.data[s][idx];
        value.textContent = v == null ? "–" : number.format(v) + unit;
        row.appendChild(swatch); row.appendChild(label); row.appendChild(value);
        tip.appendChild(row);
      }
      var left = u.valToPos(u.data[0][idx], "x");
      var width = over.clientWidth;
      tip.style.left = (left > width / 2 ? left - tip.offsetWidth - 12 : left + 12) + "px";
      tip.style.top = "8px";
    }
    return { hooks: { init: init, setCursor: setCursor } };
  }

  // Time ticks on the 24-hour clock with "Dec 1" dates, as the tables beside the charts write them
  // (uPlot's own are "6am" and "12/1/26"). Rows: [smallest step, label, label where the year changes,
  // -, label where the day changes, -, label where the hour changes, -, mode]; see uPlot's axes docs.
  var DAY = 86400;
  var TIME_TICKS = [
    [365 * DAY, "{YYYY}", null, null, null, null, null, null, 1],
    [28 * DAY, "{MMM}", "\n{YYYY}", null, null, null, null, null, 1],
    [DAY, "{MMM} {D}", "\n{YYYY}", null, null, null, null, null, 1],
    [3600, "{HH}:{mm}", "\n{MMM} {D}", null, "\n{MMM} {D}", null, null, null, 1],
    [60, "{HH}:{mm}", "\n{MMM} {D}", null, "\n{MMM} {D}", null, null, null, 1],
    [1, ":{ss}", "\n{MMM} {D} {HH}:{mm}", null, "\n{MMM} {D} {HH}:{mm}", null, "\n{HH}:{mm}", null, 1]
  ];

  // The steps uPlot may take between time ticks (its own list, in seconds), of which a series uses those no
  // shorter than its bucket: half-hour ticks on an hourly series, or ":05" on a minute one, fall between buckets.
  var MONTH = 30 * DAY, YEAR = 365 * DAY;
  var TIME_INCRS = [1, 5, 10, 15, 30, 60, 300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600, 28800, 43200,
    DAY, 2 * DAY, 3 * DAY, 4 * DAY, 5 * DAY, 6 * DAY, 7 * DAY, 8 * DAY, 9 * DAY, 10 * DAY, 15 * DAY,
    MONTH, 2 * MONTH, 3 * MONTH, 4 * MONTH, 6 * MONTH, YEAR, 2 * YEAR, 5 * YEAR, 10 * YEAR];

  // Ticks of a daily or weekly series are its buckets' starts: the local midnights (Mondays) the server
  // computed in the chosen zone, every one or every 2, 7, 14… where they would crowd. uPlot's own steps
  // count seconds, so in a day series they put a tick at every 00:00 and 12:00.
  // Labels stand TICK_ROOM px apart where there is room. A phone's week (8 days in 220 px) had room for two
  // that far apart, so a chart left with fewer than FEW_TICKS takes them as close as its widest label and a
  // gap allow, from the closer steps of CLOSE: every other day on a phone, every third on a 320 px one (8 days
  // in 150 px), where the steps of EVERY would jump from 2 to 7 and leave only the first day and the last.
  var EVERY = { day: [1, 2, 7, 14, 28, 91, 182, 364], week: [1, 2, 4, 8, 13, 26, 52] };
  var CLOSE = { day: [1, 2, 3, 4, 5, 6, 7, 14, 28, 91, 182, 364], week: [1, 2, 3, 4, 8, 13, 26, 52] };
  var TICK_ROOM = 72, TICK_GAP = 10, FEW_TICKS = 4;
  var measurer = null;
  function widest(labels, font) {
    measurer = measurer || document.createElement("canvas").getContext("2d");
    measurer.font = font;
    return labels.reduce(function (most, label) { return Math.max(most, measurer.measureText(label).width); }, 0);
  }
  function bucketSplits(data, font) {
    var day = dateFormat(data.tz, { month: "short", day: "numeric" });
    var year = dateFormat(data.tz, { year: "numeric" });
    // The widest line a label may have: a day, or the year under the first one and where it changes.
    var tight = widest(data.x.map(function (t) { return day.format(new Date(t * 1000)); })
      .concat(data.x.map(function (t) { return year.format(new Date(t * 1000)); })), font) + TICK_GAP;
    function every(px, apart, choices) {
      for (var i = 0; i < choices.length; i++) if (choices[i] * px >= apart) return choices[i];
      return choices[choices.length - 1];
    }
    return function (u, axisIdx, min, max) {
      var inside = data.x.filter(function (t) { return t >= min && t <= max; });
      if (inside.length < 2 || max <= min) return inside;
      var room = u.bbox.width / (uPlot.pxRatio || 1) || u.width;
      // CSS px between two neighbouring buckets: the shortest pair, as a day is 23 hours where clocks go forward.
      var step = Infinity;
      for (var i = 1; i < inside.length; i++) step = Math.min(step, inside[i] - inside[i - 1]);
      var px = step * room / (max - min);
      var n = every(px, Math.max(TICK_ROOM, tight), EVERY[data.interval]);
      if (Math.ceil(inside.length / n) < FEW_TICKS) n = every(px, tight, CLOSE[data.interval]);
      return inside.filter(function (t, i) { return i % n === 0; });
    };
  }
  function bucketValues(data) {
    var day = dateFormat(data.tz, { month: "short", day: "numeric" });
    var year = dateFormat(data.tz, { year: "numeric" });
    return function (u, splits) {
      var last = null;
      return splits.map(function (t) {
        var date = new Date(t * 1000), y = year.format(date), label = day.format(date);
        // The year under the first tick and where it changes, as uPlot's own ticks do.
        if (y !== last) label += "\n" + y;
        last = y;
        return label;
      });
    };
  }

  // A bucket's length in seconds, for the room beside a chart's only bucket.
  var STEP = { minute: 60, hour: 3600, day: DAY, week: 7 * DAY, month: 30 * DAY };

  // The points of a line that has no neighbour to join (a bucket between two empty ones): uPlot draws
  // no line through one point, so without a dot it would not show at all.
  function lonePoints(u, seriesIdx) {
    var values = u.data[seriesIdx], lone = [];
    for (var i = 0; i < values.length; i++) {
      if (values[i] != null && (i === 0 || values[i - 1] == null) && (i === values.length - 1 || values[i + 1] == null)) lone.push(i);
    }
    return lone.length ? lone : null;
  }

  // Lines that coincide (accepted/s equal to logged/s, a p95 equal to the p99) would be one line: uPlot draws
  // the series in order, and the later one, as wide, hides the earlier exactly. So a line that shares a
  // point (equal, not zero) with a line drawn after it is drawn wider than that one, and the later one is
  // drawn in a GAP px casing of the card's colour: the earlier shows as a RIM px line of its own colour on
  // both sides of the later one, nested where three are equal, as roads over roads on a map. Only those
  // lines: the others keep LINE px, and lines meeting at zero (the quiet buckets of counts) are the axis.
  var LINE = 2, GAP = 1, RIM = 1.5, OUTLINE = 2 * (GAP + RIM), MAX_LINE = LINE + 2 * OUTLINE, DOT = 7;
  function coincide(a, b) {
    for (var i = 0; i < a.length; i++) if (a[i] != null && a[i] !== 0 && a[i] === b[i]) return true;
    return false;
  }
  // Each line's width, and whether it lies on an earlier one (and so is drawn in a casing).
  function lineLayers(series) {
    var widths = series.map(function () { return LINE; });
    var cased = series.map(function () { return false; });
    for (var i = series.length - 2; i >= 0; i--) {
      for (var j = i + 1; j < series.length; j++) {
        if (!coincide(series[i].values || [], series[j].values || [])) continue;
        widths[i] = Math.max(widths[i], widths[j] + OUTLINE);
        cased[j] = true;
      }
      widths[i] = Math.min(widths[i], MAX_LINE);
    }
    return { widths: widths, cased: cased };
  }

  function legendRing(width) {
    return width > LINE ? LINE + 1.5 * Math.round((width - LINE) / OUTLINE) : width;
  }

  // The casings: after uPlot draws a line, the next shown one that is cased gets its path (and its lone
  // points' dots) stroked first in the card's colour, GAP px wider on each side.
  function casingPlugin(background) {
    function drawSeries(u, seriesIdx) {
      var next = seriesIdx + 1;
      while (next < u.series.length && !u.series[next].show) next++;
      var s = u.series[next];
      if (!s || !s._cased || !s._paths || !s._paths.stroke) return;
      var ratio = uPlot.pxRatio || 1, ctx = u.ctx, box = u.bbox;
      ctx.save();
      ctx.beginPath();
      ctx.rect(box.left - s.width * ratio, box.top - s.width * ratio, box.width + 2 * s.width * ratio, box.height + 2 * s.width * ratio);
      ctx.clip();
      // uPlot strokes a line across its gaps (empty buckets) and clips them away: so does its casing.
      if (s._paths.clip) ctx.clip(s._paths.clip);
      ctx.strokeStyle = ctx.fillStyle = background;
      ctx.lineWidth = (s.width + 2 * GAP) * ratio;
      ctx.lineJoin = "round";
      ctx.lineCap = "butt";
      ctx.stroke(s._paths.stroke);
      (lonePoints(u, next) || []).forEach(function (idx) {
        ctx.beginPath();
        ctx.arc(u.valToPos(u.data[0][idx], "x", true), u.valToPos(u.data[next][idx], s.scale, true), (s.points.size / 2 + GAP) * ratio, 0, 2 * Math.PI);
        ctx.fill();
      });
      ctx.restore();
    }
    return { hooks: { drawSeries: drawSeries } };
  }

  function xScale(data, bars) {
    if (data.x.length === 1) {
      // One bucket: uPlot would stretch its single time over years; show it in a window of a few buckets.
      var step = STEP[data.interval] || 3600, at = data.x[0];
      return { time: true, range: function () { return [at - 2 * step, at + 2 * step]; } };
    }
    // Bars stand on their bucket's start, the first and last ones whole inside the plot.
    if (bars) return { time: true, range: function (u, min, max) { var half = (data.x[1] - data.x[0]) * 0.6; return [min - half, max + half]; } };
    return { time: true };
  }

  function timeAxis(data, axis) {
    if (EVERY[data.interval]) {
      axis.splits = bucketSplits(data, axis.font);
      axis.values = bucketValues(data);
    } else {
      var step = STEP[data.interval] || 1;
      axis.incrs = TIME_INCRS.filter(function (incr) { return incr >= step; });
      axis.values = TIME_TICKS;
    }
    return axis;
  }

  function options(element, data, width) {
    var kind = element.getAttribute("data-kind") || "line";
    var colours = palette();
    var fg = css("--muted", "#5f6879");
    var grid = css("--border", "#e3e6ef");
    var height = Number(element.getAttribute("data-height") || 260);
    var spark = kind === "spark";
    // Bars for one or two series (two side by side); more series are drawn as lines, which stay readable.
    var bars = kind === "bars" && data.series.length <= 2;
    var when = timeFormatter(data.tz, data.interval);
    var series = [{ value: function (u, v) { return v == null ? "–" : when.format(new Date(v * 1000)); } }];
    var layers = bars || spark ? null : lineLayers(data.series);
    data.series.forEach(function (s, i) {
      var colour = s.colour ? css(s.colour, colours[i % colours.length]) : colours[i % colours.length];
      var one = {
        label: s.label,
        stroke: colour,
        width: bars ? 0 : spark ? 1.5 : layers.widths[i],
        fill: bars ? withAlpha(colour, 0.85) : kind === "area" || spark ? withAlpha(colour, 0.14) : undefined,
        // A lone point's dot grows with its line, so an outlined line's dot rings the one drawn over it.
        points: { show: false, filter: bars ? null : lonePoints, size: layers ? DOT + layers.widths[i] - LINE : DOT },
        value: function (u, v) { return v == null ? "–" : number.format(v); },
        _colour: colour,
        _cased: !!layers && layers.cased[i]
      };
      if (bars) {
        var pair = data.series.length === 2;
        one.paths = uPlot.paths.bars({ size: [pair ? 0.4 : 0.7, 40], gap: 1, align: pair ? (i === 0 ? -1 : 1) : 0 });
      }
      series.push(one);
    });
    var axisFont = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    if (spark) {
      return {
        width: width, height: height, series: series, legend: { show: false }, cursor: { show: false },
        scales: { x: xScale(data, false), y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
        axes: [{ show: false }, { show: false }], padding: [2, 0, 2, 0]
      };
    }
    return {
      width: width,
      height: height,
      tzDate: data.tz ? function (ts) { try { return uPlot.tzDate(new Date(ts * 1000), data.tz); } catch (e) { return new Date(ts * 1000); } } : undefined,
      series: series,
      // Always a legend: even one line says what it counts ("page_view", "unique users").
      // A wider (outlined) line's marker has a bolder ring, as its line is bolder: 2, 3.5 and 5 px.
      legend: { show: true, live: false, markers: { width: function (u, i) { return legendRing(u.series[i].width); } } },
      cursor: { points: { show: !bars }, drag: { x: false, y: false } },
      scales: {
        x: xScale(data, bars),
        y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.08 : 1]; } }
      },
      axes: [
        timeAxis(data, { stroke: fg, font: axisFont, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } }),
        {
          stroke: fg, font: axisFont, size: 56,
          grid: { stroke: grid, width: 1 }, ticks: { show: false },
          values: function (u, ticks) { return ticks.map(function (t) { return compact.format(t); }); },
          label: data.unit || undefined, labelFont: axisFont, labelSize: 18
        }
      ],
      plugins: [tooltipPlugin(data), casingPlugin(css("--surface", "#ffffff"))]
    };
  }

  function draw(element) {
    var source = document.getElementById(element.getAttribute("data-chart"));
    if (!source) return;
    var data;
    try { data = JSON.parse(source.textContent); } catch (e) { return; }
    if (!data || !data.x || !data.series) return;
    if (element.uplot) { element.uplot.destroy(); element.uplot = null; }
    element.textContent = "";
    var width = Math.max(element.clientWidth, element.getAttribute("data-kind") === "spark" ? 60 : 240);
    var columns = [data.x].concat(data.series.map(function (s) { return s.values; }));
    var chart = new uPlot(options(element, data, width), columns, element);
    element.uplot = chart;
    // What the chart holds, for people with assistive technology and for the browser tests.
    var points = 0;
    data.series.forEach(function (s) { (s.values || []).forEach(function (v) { if (v) points++; }); });
    element.setAttribute("data-points", String(points));
    element.setAttribute("data-drawn", "true");
  }

  function drawAll() {
    document.querySelectorAll("[data-chart]").forEach(draw);
  }

  var widths = new WeakMap();
  var resize = typeof ResizeObserver === "function" ? new ResizeObserver(function (entries) {
    entries.forEach(function (entry) {
      var element = entry.target;
      var width = Math.round(entry.contentRect.width);
      if (widths.get(element) === width) return;
      widths.set(element, width);
      var min = element.getAttribute("data-kind") === "spark" ? 60 : 240;
      if (element.uplot) element.uplot.setSize({ width: Math.max(width, min), height: element.uplot.height });
    });
  }) : null;

  function start() {
    drawAll();
    if (resize) document.querySelectorAll("[data-chart]").forEach(function (el) { resize.observe(el); });
    var dark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
    if (dark && dark.addEventListener) dark.addEventListener("change", drawAll);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  window.EventFlowCharts = { draw: draw, drawAll: drawAll };
})();

/* A folded tree (paths): "Expand all" and "Collapse all" open or close every branch of it. The buttons show
   only where this script runs; without it each branch still opens on its own (details/summary). */
(function () {
  "use strict";
  function start() {
    document.querySelectorAll(".tree-tools").forEach(function (tools) { tools.hidden = false; });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-tree-open]");
    if (!button) return;
    var tree = document.getElementById(button.getAttribute("data-tree"));
    if (!tree) return;
    var open = button.getAttribute("data-tree-open") === "true";
    tree.querySelectorAll("details").forEach(function (branch) { branch.open = open; });
  });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

/* Forms whose rows are added on the page (funnel steps, property conditions): a <template> copied on click. */
document.addEventListener("click", function (event) {
  "use strict";
  var add = event.target.closest("[data-add-row]");
  if (add) {
    var template = document.getElementById(add.getAttribute("data-add-row"));
    var into = document.getElementById(add.getAttribute("data-into"));
    if (!template || !into) return;
    var max = Number(into.getAttribute("data-max") || "20");
    if (into.children.length >= max) return;
    into.appendChild(template.content.cloneNode(true));
    into.querySelectorAll("[data-step-number]").forEach(function (n, i) { n.textContent = String(i + 1); });
    return;
  }
  var remove = event.target.closest("[data-remove-row]");
  if (remove) {
    var row = remove.closest("[data-row]");
    var list = row && row.parentElement;
    var min = Number((list && list.getAttribute("data-min")) || "0");
    if (row && list && list.children.length > min) row.remove();
    if (list) list.querySelectorAll("[data-step-number]").forEach(function (n, i) { n.textContent = String(i + 1); });
  }
});
