// The dashboard's charts: uPlot (static/vendor/uplot) draws the JSON each page
// embeds with json_script. Elements marked data-chart="<kind>" name their data in
// data-source (or, for "compare", several in data-sources with data-labels).
//
// Charts are drawn once and then updated in place (setData) after every htmx swap:
// live.js morphs polled regions without touching a drawn chart's element, so the
// cursor, the legend and keyboard focus survive a refresh. A chart whose series
// changed (a new error code, a new version) is redrawn.
//
// Times are UTC on every axis and legend, as in the page text (Django's TIME_ZONE).
(function () {
  "use strict";

  var COLORS = { p50: "#1a73e8", p95: "#f29900", p99: "#d93025", line: "#1e8e3e" };
  var PALETTE = ["#1a73e8", "#d93025", "#f29900", "#8e24aa", "#00897b", "#6d4c41", "#e52592", "#5f6368"];
  var HEIGHT = 200;
  // Show every point of a series with fewer values than this, or with isolated ones:
  // a line needs two neighbours, and a percentile of a minute without traffic is null
  // (rates and counts are 0 there, so their lines always draw).
  var SPARSE = 12;
  var charts = [];

  function source(id) {
    var script = document.getElementById(id);
    return script ? JSON.parse(script.textContent) : null;
  }

  function width(el) {
    return Math.max(el.clientWidth || 0, 240);
  }

  function theme() {
    var css = getComputedStyle(document.documentElement);
    return {
      axis: css.getPropertyValue("--chart-axis").trim() || "#3c4043",
      grid: css.getPropertyValue("--chart-grid").trim() || "rgba(0,0,0,0.1)",
    };
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  // 24-hour UTC labels: "14:05" within two days, "12-06 14:00" (month-day) beyond.
  function utcLabels(u, splits) {
    var span = splits.length > 1 ? splits[splits.length - 1] - splits[0] : 0;
    return splits.map(function (ts) {
      var d = new Date(ts * 1e3);
      var time = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
      if (span < 2 * 86400) return time;
      var day = pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
      return d.getUTCHours() || d.getUTCMinutes() ? day + " " + time : day;
    });
  }

  function axes(extraY) {
    var t = theme();
    var x = { stroke: t.axis, space: 70, values: utcLabels, grid: { stroke: t.grid, width: 1 }, ticks: { stroke: t.grid, width: 1 } };
    var y = Object.assign({ size: 56, stroke: t.axis, grid: { stroke: t.grid, width: 1 }, ticks: { stroke: t.grid, width: 1 } }, extraY || {});
    return [x, y];
  }

  function utc(ts) {
    return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  }

  function sparse(values) {
    var n = 0;
    for (var i = 0; i < values.length; i++) {
      if (values[i] == null) continue;
      n++;
      if (values[i - 1] == null && values[i + 1] == null) return true;
    }
    return n < SPARSE;
  }

  function line(label, stroke, unit, values, dash) {
    return {
      label: label,
      stroke: stroke,
      width: 1.5,
      dash: dash,
      spanGaps: false,
      points: { show: sparse(values || []), size: 6, fill: stroke },
      value: function (u, v) {
        return v == null ? "—" : v.toFixed(2) + (unit || "");
      },
    };
  }

  function timeChart(el, x, series, columns) {
    return {
      opts: {
        width: width(el),
        height: HEIGHT,
        tzDate: utc,
        series: [{ label: "time (UTC)", value: function (u, ts) { return ts == null ? "—" : new Date(ts * 1e3).toISOString().slice(0, 16).replace("T", " "); } }].concat(series),
        axes: axes(),
        scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      },
      data: [x].concat(columns),
    };
  }

  // Align several timelines on the union of their x values (they share one window's
  // bins, so this is usually the identity).
  function align(lines, key) {
    var xs = {};
    lines.forEach(function (t) { t.x.forEach(function (v) { xs[v] = true; }); });
    var x = Object.keys(xs).map(Number).sort(function (a, b) { return a - b; });
    var columns = lines.map(function (t) {
      var at = {};
      t.x.forEach(function (v, i) { at[v] = t[key][i]; });
      return x.map(function (v) { return at[v] == null ? null : at[v]; });
    });
    return { x: x, columns: columns };
  }

  var kinds = {
    spark: function (el) {
      var d = source(el.dataset.source);
      if (!d) return null;
      return {
        opts: {
          width: 140,
          height: 32,
          tzDate: utc,
          legend: { show: false },
          cursor: { show: false },
          axes: [{ show: false }, { show: false }],
          series: [{}, { stroke: COLORS.line, fill: "rgba(30, 142, 62, 0.15)", width: 1, points: { show: false } }],
          scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max : 1]; } } },
        },
        data: [d.x, d.per_second],
      };
    },
    latency: function (el) {
      var d = source(el.dataset.source);
      if (!d) return null;
      var t = d.timeline;
      return timeChart(
        el,
        t.x,
        [line("p50", COLORS.p50, " ms", t.p50), line("p95", COLORS.p95, " ms", t.p95), line("p99", COLORS.p99, " ms", t.p99)],
        [t.p50, t.p95, t.p99]
      );
    },
    throughput: function (el) {
      var d = source(el.dataset.source);
      if (!d) return null;
      var t = d.timeline;
      return timeChart(el, t.x, [line("requests/s", COLORS.line, "/s", t.per_second)], [t.per_second]);
    },
    errors: function (el) {
      var d = source(el.dataset.source);
      if (!d) return null;
      var t = d.timeline;
      var codes = Object.keys(t.errors);
      if (!codes.length) return null;
      var series = codes.map(function (code, i) {
        var s = line(code, PALETTE[i % PALETTE.length], "", t.errors[code]);
        s.value = function (u, v) { return v == null ? "—" : String(v); };
        return s;
      });
      return timeChart(el, t.x, series, codes.map(function (code) { return t.errors[code]; }));
    },
    queue: function (el) {
      var d = source(el.dataset.source);
      if (!d) return null;
      var t = d.timeline;
      return timeChart(el, t.x, [line("mean queue wait", COLORS.p95, " ms", t.queue_ms)], [t.queue_ms]);
    },
    // Several versions or arms on one shared scale: data-sources names their JSON,
    // data-labels their names, data-metric the timeline field (p95 by default).
    compare: function (el) {
      var ids = (el.dataset.sources || "").split(/\s+/).filter(Boolean);
      var labels = (el.dataset.labels || "").split("|");
      var metric = el.dataset.metric || "p95";
      var unit = metric === "per_second" ? "/s" : " ms";
      var lines = ids.map(function (id) { var d = source(id); return d && d.timeline; }).filter(Boolean);
      if (!lines.length) return null;
      var aligned = align(lines, metric);
      var series = aligned.columns.map(function (values, i) {
        return line(labels[i] || ids[i], PALETTE[i % PALETTE.length], unit, values);
      });
      return timeChart(el, aligned.x, series, aligned.columns);
    },
    batches: function (el) {
      var d = source(el.dataset.source);
      if (!d) return null;
      var b = d.batch_sizes;
      if (!b.sizes.length) return null;
      // Evenly spaced bars labelled with the batch size, whatever the sizes are.
      var positions = b.sizes.map(function (_, i) { return i; });
      var ax = axes();
      ax[0].space = 30;
      ax[0].splits = function () { return positions; };
      ax[0].values = function (u, splits) { return splits.map(function (i) { return b.sizes[i]; }); };
      return {
        opts: {
          width: width(el),
          height: HEIGHT,
          cursor: { points: { show: false } },
          scales: { x: { time: false, range: function () { return [-0.5, b.sizes.length - 0.5]; } }, y: { range: function (u, min, max) { return [0, max * 1.1]; } } },
          axes: ax,
          series: [
            { label: "batch size", value: function (u, i) { return i == null ? "—" : String(b.sizes[i]); } },
            { label: "requests", fill: "rgba(26, 115, 232, 0.5)", stroke: COLORS.p50, paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false } },
          ],
        },
        data: [positions, b.counts],
      };
    },
  };

  // What a setData cannot change: the series and whether their points are drawn.
  function signature(built) {
    return built.opts.series.map(function (s) { return (s.label || "") + ":" + (s.points && s.points.show ? 1 : 0); }).join("|");
  }

  function prune() {
    charts = charts.filter(function (chart) {
      if (document.body.contains(chart.root)) return true;
      chart.destroy();
      return false;
    });
  }

  function create(el, built) {
    var chart = new uPlot(built.opts, built.data, el);
    chart._turnoutSignature = signature(built);
    el._turnoutChart = chart;
    el.dataset.drawn = "1";
    charts.push(chart);
  }

  function draw() {
    if (typeof uPlot === "undefined") return;
    prune();
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var kind = kinds[el.dataset.chart];
      var built = kind && kind(el);
      var chart = el._turnoutChart;
      if (chart && document.body.contains(chart.root)) {
        if (!built) return;
        if (chart._turnoutSignature === signature(built)) {
          chart.setData(built.data);
          return;
        }
        chart.destroy();
        charts = charts.filter(function (c) { return c !== chart; });
        el._turnoutChart = null;
      }
      if (!built) return;
      el.textContent = "";
      create(el, built);
    });
  }

  function redrawAll() {
    charts.forEach(function (chart) {
      var el = chart.root.parentNode;
      chart.destroy();
      if (el) el._turnoutChart = null;
    });
    charts = [];
    draw();
  }

  var resizing = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizing);
    resizing = setTimeout(function () {
      charts.forEach(function (chart) {
        var el = chart.root.parentNode;
        if (el && el.dataset.chart !== "spark") chart.setSize({ width: width(el), height: HEIGHT });
      });
    }, 150);
  });

  // Axis colours come from the theme: redraw when the OS switches light/dark.
  if (window.matchMedia) {
    var dark = window.matchMedia("(prefers-color-scheme: dark)");
    if (dark.addEventListener) dark.addEventListener("change", redrawAll);
  }

  window.TurnoutCharts = { draw: draw, count: function () { return charts.length; } };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
  document.addEventListener("htmx:afterSettle", draw);
})();
