// The lineage graph (Cytoscape): upstream columns on the left, downstream on the right; wheel zooms, drag pans,
// clicking (or Enter on the list below) opens a node. Data comes from the element's data-graph attribute.
"use strict";
(function () {
  var COLORS = {data: "#2f7ed8", action: "#8e44ad", model: "#1d7a3a", endpoint: "#d35400", monitor: "#7f8c8d",
                alert: "#b42318"};
  function draw(el) {
    var spec = JSON.parse(el.getAttribute("data-graph"));
    var elements = spec.nodes.map(function (n) {
      return {group: "nodes", data: {id: n.id, label: n.label, href: n.href, cls: n.cls, start: n.start ? 1 : 0},
              position: {x: n.x, y: n.y}};
    }).concat(spec.edges.map(function (e, i) {
      return {group: "edges", data: {id: "e" + i, source: e.source, target: e.target, label: e.type,
                                     bend: e.bend ? 1 : 0}};
    }));
    var cy = cytoscape({
      container: el, elements: elements, layout: {name: "preset", fit: true, padding: 30},
      minZoom: 0.2, maxZoom: 3,
      style: [
        {selector: "node", style: {"background-color": function (n) { return COLORS[n.data("cls")] || "#555"; },
          "label": "data(label)", "text-wrap": "wrap", "text-max-width": "180px", "font-size": 11,
          "text-valign": "bottom", "text-margin-y": 4, "min-zoomed-font-size": 6, "width": 26, "height": 26, "shape": function (n) {
            return n.data("cls") === "action" || n.data("cls") === "alert" ? "round-rectangle" : "ellipse"; }}},
        {selector: "node[start = 1]", style: {"border-width": 4, "border-color": "#f5a524", "width": 34,
          "height": 34}},
        {selector: "edge", style: {"width": 1.5, "line-color": "#9aa5b5", "target-arrow-color": "#9aa5b5",
          "target-arrow-shape": "triangle", "curve-style": "bezier", "label": "data(label)", "font-size": 9,
          "color": "#5b6474", "text-rotation": "autorotate", "min-zoomed-font-size": 7}},
        {selector: "edge[bend = 1]", style: {"curve-style": "unbundled-bezier", "control-point-distances": -45,
          "control-point-weights": 0.5}}
      ]
    });
    cy.on("tap", "node", function (ev) { window.location.assign(ev.target.data("href")); });
    cy.on("mouseover", "node", function () { el.style.cursor = "pointer"; });
    cy.on("mouseout", "node", function () { el.style.cursor = ""; });
    el.__cy = cy;
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-graph]").forEach(draw);
  });
})();
