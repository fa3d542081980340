// Time-series charts with uPlot (vendor/uplot), drawn from data attributes (no inline script):
//
//   <div class="chart" data-chart="{{ chart | json_text }}" role="img" aria-label="…"></div>
//
// chart = {"title": "...", "x": [epoch seconds...],
//          "series": [{"label": "psi", "values": [... or null], "color": "#1f5fbf", "dash": false, "dots": false,
//                      "fill": "#b42318",                                      // dots' fill (default white: hollow)
//                      "edge": true,              // values are 1: drawn at the plot's top edge (no finite height)
//                      "gaps": true}],            // a run without a value breaks the line (default: joined across)
//          "lines": [{"label": "threshold", "value": 0.2, "color": "#b42318"}],   // horizontal lines (optional);
//                    or "values": [... per run, or null] for a threshold that changed between runs (a step)
//          "links": ["/console/...", ...],                                      // click a point → open (optional)
//          "compact": true, "height": 60}                                        // sparkline: no axes/legend (optional)
// json_text (mlgov.web) gives plain JSON text; autoescaping makes it safe in the attribute; the browser decodes it and JSON.parse reads it.
"use strict";
(function () {
  function draw(el) {
    var spec = JSON.parse(el.getAttribute("data-chart"));
    if (spec.x.length === 1) {
      // One run: uPlot would stretch the axis over years and draw no threshold (a line needs two points), so
      // the point sits in an hour either side and the thresholds span it.
      var t = spec.x[0];
      spec.x = [t - 3600, t, t + 3600];
      (spec.series || []).forEach(function (s) { s.values = [null, s.values[0], null]; });
      (spec.lines || []).forEach(function (l) { if (l.values) { l.values = [l.values[0], l.values[0], l.values[0]]; } });
      if (spec.links) { spec.links = [null, spec.links[0], null]; }
    }
    var data = [spec.x];
    var series = [{}];
    (spec.series || []).forEach(function (s) {
      data.push(s.values);
      var line = {label: s.label, stroke: s.color || "#1f5fbf", width: s.dash ? 1 : 2, spanGaps: !s.gaps,
                  dash: s.dash ? [3, 3] : undefined, points: {show: !s.dash, size: 5}};
      if (s.dots) {   // points only, hollow: values of runs that are not joined to the series' line
        line.paths = function () { return null; };
        line.points = {show: true, size: 7, fill: s.fill || "#ffffff", width: 2};
      }
      if (s.edge) { line.scale = "edge"; }   // a value with no height (infinite): at the top edge, on its own scale
      series.push(line);
    });
    (spec.lines || []).forEach(function (l) {
      var line = {label: l.label, stroke: l.color || "#b42318", width: 1, dash: [6, 4], points: {show: false}};
      if (l.values) {   // a run's threshold holds until the next run's (a step, marked at each run); a run
        // judged without one is a gap
        line.spanGaps = false;
        line.paths = uPlot.paths.stepped({align: 1, extend: true});
        line.points = {show: true, size: 4, fill: line.stroke};
      }
      data.push(l.values || spec.x.map(function () { return l.value; }));
      series.push(line);
    });
    var opts = {
      title: spec.title || "", width: Math.max(el.clientWidth, 200), height: spec.height || 220,
      series: series, legend: {live: false}, cursor: {points: {size: 8}},
      // the pages give every time in UTC: so does the axis (uPlot's default is the browser's zone, unlabelled)
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      axes: [{label: "UTC", labelSize: 16, labelGap: 0}, {}],
      // a margin either side of the runs: the newest point sat on the plot's edge, where a click found no point
      scales: {x: {time: true, range: function (u, min, max) {
        var pad = Math.max((max - min) * 0.04, 60);
        return [min - pad, max + pad];
      }}, edge: {auto: false, range: [0, 1.03]}},   // "edge" series are 1: just inside the top
    };
    if (spec.compact) {   // a sparkline: the line only
      opts.legend = {show: false};
      opts.axes = [{show: false}, {show: false}];
      opts.cursor = {show: false};
      opts.title = "";
      series.forEach(function (s) { if (s.points) { s.points = {show: false}; s.width = 1.5; } });
    }
    el.textContent = "";
    var plot = new uPlot(opts, data, el);
    el.__plot = plot;   // for the page's tests: the drawn scales
    if (spec.links) {
      plot.over.addEventListener("click", function () {
        var i = plot.cursor.idx;
        if (i != null && spec.links[i]) { window.location.assign(spec.links[i]); }
      });
    }
    new ResizeObserver(function () {
      plot.setSize({width: Math.max(el.clientWidth, 200), height: opts.height});
    }).observe(el);
  }
  function all(root) {
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (!el.__drawn) { el.__drawn = true; draw(el); }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { all(document); });
  document.addEventListener("htmx:afterSwap", function (ev) { all(ev.target); });
})();
