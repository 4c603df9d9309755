// heapdiff trend report: draws the memory chart from the embedded JSON and makes the
// tables sortable. No libraries, no network. Errors are recorded in the page
// (data-errors on <body>) so that a headless browser's DOM dump shows them.
(function () {
  "use strict";
  var errors = [];
  window.addEventListener("error", function (event) {
    errors.push(String(event.message));
    document.body.setAttribute("data-errors", errors.join("\n"));
  });

  var SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Rounds a maximum up to a readable axis top (1, 2 or 5 times a power of ten).
  function niceMax(value) {
    if (!(value > 0)) return 1;
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * power >= value) return steps[i] * power;
    return 10 * power;
  }

  // Seconds in the unit a span of +span+ seconds reads best in.
  function timeUnit(span) {
    if (span < 120) return { div: 1, name: "s" };
    if (span < 7200) return { div: 60, name: "min" };
    return { div: 3600, name: "h" };
  }

  // Two series on two axes: RSS (MB, left) and live objects in the dump (right), both
  // from zero, so that a 12% rise looks like one. With the snapshots' times the x
  // axis is time since the first, to scale; without, the snapshots are evenly spaced.
  // Each point's tooltip has the exact figures.
  function drawChart(container, data) {
    var width = 1000, height = 320, left = 70, right = 80, top = 20, bottom = 56;
    var plotW = width - left - right, plotH = height - top - bottom;
    var n = data.labels.length;
    var svg = el("svg", { viewBox: "0 0 " + width + " " + height, role: "img",
                          "aria-label": "RSS and live objects per snapshot" });
    var seconds = data.seconds || [];
    var span = n > 1 && seconds[0] !== null && seconds[n - 1] !== null ? seconds[n - 1] : 0;
    var x = span > 0
      ? function (i) { return left + (seconds[i] * plotW) / span; }
      : function (i) { return left + (n > 1 ? (i * plotW) / (n - 1) : plotW / 2); };

    var rss = data.rss_mb.filter(function (v) { return v !== null; });
    var rssMax = niceMax(Math.max.apply(null, rss.concat([0])) * 1.1);
    var objMax = niceMax(Math.max.apply(null, data.objects.concat([0])) * 1.1);
    var yRss = function (v) { return top + plotH - (v / rssMax) * plotH; };
    var yObj = function (v) { return top + plotH - (v / objMax) * plotH; };

    var axis = el("g", { "class": "axis" });
    for (var t = 0; t <= 4; t++) {
      var y = top + plotH - (t * plotH) / 4;
      axis.appendChild(el("line", { "class": "grid", x1: left, x2: left + plotW, y1: y, y2: y }));
      if (rss.length) axis.appendChild(el("text", { x: left - 8, y: y + 4, "text-anchor": "end" }, (rssMax * t / 4).toFixed(0) + " MB"));
      axis.appendChild(el("text", { x: left + plotW + 8, y: y + 4 }, Math.round(objMax * t / 4).toLocaleString("en")));
    }
    if (span > 0) {
      // Ticks at round times (a step of 1, 2 or 5 times a power of ten, three to six
      // of them), with as many decimals as the step has: labels are exact and distinct.
      var unit = timeUnit(span), spanU = span / unit.div, step = niceMax(spanU / 5);
      var decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
      for (var k = 0; k * step <= spanU + 1e-9; k++) {
        var tx = left + (k * step * plotW) / spanU;
        axis.appendChild(el("line", { "class": "tick", x1: tx, x2: tx, y1: top + plotH, y2: top + plotH + 4 }));
        axis.appendChild(el("text", { "class": "time", x: tx.toFixed(1), y: top + plotH + 18, "text-anchor": "middle" },
                            (k * step).toFixed(decimals) + " " + unit.name));
      }
      axis.appendChild(el("text", { "class": "label", x: left + plotW / 2, y: top + plotH + 34, "text-anchor": "middle" },
                          "time since the first snapshot (" + data.start + ")"));
    } else {
      data.labels.forEach(function (label, i) {
        axis.appendChild(el("text", { "class": "time", x: x(i), y: top + plotH + 18, "text-anchor": "middle" }, label));
      });
    }
    svg.appendChild(axis);

    function tooltip(i) {
      var parts = ["snapshot " + data.labels[i]];
      if (data.times && data.times[i]) parts[0] += ", " + data.times[i] + " UTC (+" + seconds[i] + " s)";
      if (data.rss_bytes[i] !== null) parts.push("RSS " + data.rss_mb[i] + " MB (" + data.rss_bytes[i].toLocaleString("en") + " bytes)");
      parts.push(data.objects[i].toLocaleString("en") + " live objects in the dump");
      return parts.join("\n");
    }

    function series(values, y, css) {
      var points = [];
      values.forEach(function (v, i) { if (v !== null) points.push(x(i).toFixed(1) + "," + y(v).toFixed(1)); });
      if (!points.length) return;
      svg.appendChild(el("polyline", { "class": css, points: points.join(" ") }));
      values.forEach(function (v, i) {
        if (v === null) return;
        var dot = el("circle", { "class": css + "-dot", cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 4 });
        dot.appendChild(el("title", {}, tooltip(i)));
        svg.appendChild(dot);
      });
    }
    series(data.rss_mb, yRss, "rss");
    series(data.objects, yObj, "objects");

    var legend = el("g", { "class": "legend" });
    var entries = [["objects", "live objects in the dump (right axis)"]];
    if (rss.length) entries.unshift(["rss", "RSS in MB (left axis)"]);
    else entries.push(["", "no RSS: the snapshots have no sidecars"]);
    entries.forEach(function (entry, i) {
      var lx = left + i * 340;
      if (entry[0]) legend.appendChild(el("rect", { "class": entry[0] + "-dot", x: lx, y: height - 14, width: 12, height: 12 }));
      legend.appendChild(el("text", { "class": "label", x: lx + 18, y: height - 4 }, entry[1]));
    });
    svg.appendChild(legend);
    container.appendChild(svg);
  }

  function sortKey(cell) {
    var raw = cell.getAttribute("data-sort");
    var number = raw === "" ? NaN : Number(raw);
    return isNaN(number) ? { text: raw } : { number: number };
  }

  function compare(a, b) {
    if (a.number !== undefined && b.number !== undefined) return a.number - b.number;
    if (a.number !== undefined) return -1;
    if (b.number !== undefined) return 1;
    return a.text.localeCompare(b.text);
  }

  // Clicking a header sorts by its column: ascending first, then it toggles. Rows
  // with equal keys keep their order (stable sort).
  function makeSortable(table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, column) {
      th.classList.add("sortable-header");
      th.setAttribute("tabindex", "0");
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows).map(function (row, index) {
          return { row: row, index: index, key: sortKey(row.cells[column]) };
        });
        rows.sort(function (a, b) {
          var order = compare(a.key, b.key);
          return (ascending ? order : -order) || a.index - b.index;
        });
        rows.forEach(function (entry) { body.appendChild(entry.row); });
      });
      th.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); th.click(); }
      });
    });
  }

  // "#click=sites-table:7,sites-table:7" clicks those headers, in order.
  function clickFromHash() {
    var match = /(?:^#|&)click=([^&]*)/.exec(window.location.hash);
    if (!match) return;
    decodeURIComponent(match[1]).split(",").forEach(function (spec) {
      var parts = spec.split(":");
      var table = document.getElementById(parts[0]);
      if (table) table.tHead.rows[0].cells[Number(parts[1])].click();
    });
  }

  var data = JSON.parse(document.getElementById("trend-data").textContent);
  drawChart(document.getElementById("chart"), data);
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  clickFromHash();
  document.body.setAttribute("data-ready", "true");
})();
