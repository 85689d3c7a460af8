// The dashboard's charts: uPlot (static/vendor/uplot) draws the JSON each page
// embeds with json_script. Elements marked data-chart="<kind>" name their data
// in data-source; they are drawn on load and again after every htmx swap, and
// the charts of swapped-out elements are destroyed.
(function () {
  "use strict";

  var COLORS = { p50: "#1a73e8", p95: "#f29900", p99: "#d93025", line: "#137333" };
  var PALETTE = ["#d93025", "#8e24aa", "#f29900", "#1a73e8", "#00897b", "#6d4c41"];
  var HEIGHT = 180;
  var charts = [];

  function source(el) {
    var script = document.getElementById(el.dataset.source);
    return script ? JSON.parse(script.textContent) : null;
  }

  function width(el) {
    return Math.max(el.clientWidth || 0, 240);
  }

  function line(label, stroke, unit) {
    return {
      label: label,
      stroke: stroke,
      width: 1.5,
      value: function (u, v) {
        return v == null ? "—" : v.toFixed(2) + (unit || "");
      },
    };
  }

  function timeChart(el, timeline, series, columns) {
    return {
      opts: {
        width: width(el),
        height: HEIGHT,
        series: [{}].concat(series),
        axes: [{}, { size: 50 }],
        scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      },
      data: [timeline.x].concat(columns),
    };
  }

  var kinds = {
    spark: function (el, d) {
      return {
        opts: {
          width: 140,
          height: 32,
          legend: { show: false },
          cursor: { show: false },
          axes: [{ show: false }, { show: false }],
          series: [{}, { stroke: COLORS.line, fill: "rgba(19, 115, 51, 0.12)", width: 1 }],
          scales: { y: { range: function (u, min, max) { return [0, max > 0 ? max : 1]; } } },
        },
        data: [d.x, d.per_second],
      };
    },
    latency: function (el, d) {
      var t = d.timeline;
      return timeChart(
        el,
        t,
        [line("p50", COLORS.p50, " ms"), line("p95", COLORS.p95, " ms"), line("p99", COLORS.p99, " ms")],
        [t.p50, t.p95, t.p99]
      );
    },
    throughput: function (el, d) {
      var t = d.timeline;
      return timeChart(el, t, [line("requests/s", COLORS.line, "/s")], [t.per_second]);
    },
    errors: function (el, d) {
      var t = d.timeline;
      var codes = Object.keys(t.errors);
      if (!codes.length) return null;
      var series = codes.map(function (code, i) {
        var s = line(code, PALETTE[i % PALETTE.length]);
        s.value = function (u, v) { return v == null ? "—" : String(v); };
        return s;
      });
      return timeChart(el, t, series, codes.map(function (code) { return t.errors[code]; }));
    },
    queue: function (el, d) {
      var t = d.timeline;
      return timeChart(el, t, [line("mean queue wait", COLORS.p95, " ms")], [t.queue_ms]);
    },
    batches: function (el, d) {
      var b = d.batch_sizes;
      if (!b.sizes.length) return null;
      // Evenly spaced bars labelled with the batch size, whatever the sizes are.
      var positions = b.sizes.map(function (_, i) { return i; });
      return {
        opts: {
          width: width(el),
          height: HEIGHT,
          cursor: { points: { show: false } },
          scales: { x: { time: false, range: function () { return [-0.5, b.sizes.length - 0.5]; } }, y: { range: function (u, min, max) { return [0, max * 1.1]; } } },
          axes: [
            { splits: function () { return positions; }, values: function (u, splits) { return splits.map(function (i) { return b.sizes[i]; }); } },
            { size: 50 },
          ],
          series: [
            { label: "batch size", value: function (u, i) { return i == null ? "—" : String(b.sizes[i]); } },
            { label: "requests", fill: "rgba(26, 115, 232, 0.5)", stroke: COLORS.p50, paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false } },
          ],
        },
        data: [positions, b.counts],
      };
    },
  };

  function prune() {
    charts = charts.filter(function (chart) {
      if (document.body.contains(chart.root)) return true;
      chart.destroy();
      return false;
    });
  }

  function draw() {
    if (typeof uPlot === "undefined") return;
    prune();
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.dataset.drawn) return;
      var kind = kinds[el.dataset.chart];
      var d = kind && source(el);
      var built = d && kind(el, d);
      if (!built) return;
      el.dataset.drawn = "1";
      charts.push(new uPlot(built.opts, built.data, el));
    });
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

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
  document.addEventListener("htmx:afterSwap", draw);
})();
