// rumpy report: draws the data embedded in the page (script#rumpy-data) as SVG and tables.
// No network, no libraries: the page works from a file or an e-mail attachment.
"use strict";
(function () {
  var DATA = JSON.parse(document.getElementById("rumpy-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"];
  var nodes = DATA.nodes;
  // positions are epochs, or optimizer steps for a step-based run (collect.py)
  var UNIT = DATA.unit || "epoch";
  function unitOf(n) { return n.unit || "epoch"; }
  var byId = {};
  nodes.forEach(function (n, i) {
    n.colour = i < PALETTE.length ? PALETTE[i] : "hsl(" + ((i * 137.5) % 360) + ",60%,45%)";
    byId[n.id] = n;
  });
  var state = { filter: "", metrics: null, inherited: true, image: null };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function svg(tag, attrs, text) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs || {}) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined || v === "") { return ""; }
    if (typeof v !== "number") { return String(v); }
    if (Number.isInteger(v)) { return String(v); }
    var a = Math.abs(v);
    return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toFixed(4);
  }
  function visible(n) {
    if (!state.filter) { return true; }
    var f = state.filter.toLowerCase();
    return n.id.toLowerCase().indexOf(f) >= 0 || (n.state || "").indexOf(f) >= 0;
  }
  function series(n, column) {
    var i = (n.columns || []).indexOf(column);
    if (i < 0) { return []; }
    var out = [];
    (n.rows || []).forEach(function (r) {
      var v = r[i + 2];
      if (v !== null && v !== undefined) { out.push({ epoch: r[0], inherited: r[1] === 1, value: v }); }
    });
    return out;
  }
  function allColumns() {
    var seen = {};
    var out = [];
    nodes.forEach(function (n) {
      (n.columns || []).forEach(function (c) { if (!seen[c]) { seen[c] = 1; out.push(c); } });
    });
    return out;
  }
  function defaultMetrics(columns) {
    var best = nodes.length && nodes[0].best ? nodes[0].best.column : null;
    var picked = columns.filter(function (c) {
      return c === "train-loss" || (c.indexOf("val-") === 0 && c !== "val-loss");
    });
    if (best && picked.indexOf(best) < 0 && columns.indexOf(best) >= 0) { picked.unshift(best); }
    return picked;
  }
  function highlight(id, on) {
    var items = document.querySelectorAll("[data-node]");
    for (var i = 0; i < items.length; i++) {
      var mine = items[i].getAttribute("data-node") === id;
      items[i].classList.toggle("dim", on && !mine);
      items[i].classList.toggle("hot", on && mine);
    }
  }
  function hoverable(e, id) {
    e.setAttribute("data-node", id);
    e.addEventListener("mouseenter", function () { highlight(id, true); });
    e.addEventListener("mouseleave", function () { highlight(id, false); });
    return e;
  }

  // -- the tree: one row per node, a line over its own epochs, forks at their epochs ----------
  function drawTree(host) {
    host.innerHTML = "";
    var shown = nodes.filter(visible);
    if (!shown.length) { host.appendChild(el("p", { "class": "empty" }, "No node matches the filter.")); return; }
    var maxEpoch = 1;
    shown.forEach(function (n) { if (n.epochs) { maxEpoch = Math.max(maxEpoch, n.epochs[1]); } });
    var row = 22, left = 230, right = 300, top = 26, width = Math.max(760, host.clientWidth || 900);
    var plotW = width - left - right;
    var height = top + shown.length * row + 10;
    var s = svg("svg", { width: width, height: height, "class": "tree" });
    var x = function (e) { return left + (maxEpoch <= 1 ? 0 : (e - 1) / (maxEpoch - 1) * plotW); };
    var ticks = niceTicks(1, maxEpoch, 8).filter(function (t) { return Number.isInteger(t); });
    ticks.forEach(function (t) {
      s.appendChild(svg("line", { x1: x(t), x2: x(t), y1: top - 6, y2: height - 6, "class": "grid" }));
      s.appendChild(svg("text", { x: x(t), y: top - 10, "class": "tick", "text-anchor": "middle" }, t));
    });
    s.appendChild(svg("text", { x: left - 16, y: top - 10, "class": "tick", "text-anchor": "end" }, UNIT));
    var yOf = {};
    shown.forEach(function (n, i) { yOf[n.id] = top + i * row + row / 2; });
    shown.forEach(function (n) {
      var g = hoverable(svg("g", {}), n.id);
      var y = yOf[n.id];
      var indent = 8 + n.depth * 14;
      g.appendChild(svg("text", { x: indent, y: y + 4, "class": "label" }, (n.depth ? "\u2514 " : "") + (n.depth ? n.name : n.tree)));
      if (n.epochs) {
        var start = n.fork_epoch ? n.fork_epoch : n.epochs[0];
        if (n.parent && yOf[n.parent] !== undefined && n.fork_epoch) {
          g.appendChild(svg("path", { d: "M" + x(n.fork_epoch) + "," + yOf[n.parent] + " V" + y, "class": "fork", stroke: n.colour }));
        }
        g.appendChild(svg("line", { x1: x(start), x2: x(n.epochs[1]), y1: y, y2: y, stroke: n.colour, "class": "span" }));
        if (n.fork_epoch) {
          g.appendChild(diamond(x(n.fork_epoch), y, 5, n.colour, "fork @ " + n.fork_epoch));
        }
        if (n.best && n.best.epoch) {
          var dot = svg("circle", { cx: x(n.best.epoch), cy: y, r: 4.5, fill: "#fff", stroke: n.colour, "stroke-width": 2 });
          dot.appendChild(svg("title", {}, "best " + n.best.column + " " + fmt(n.best.value) + " @ " + n.best.epoch));
          g.appendChild(dot);
        }
      }
      var info = "[" + (n.state || "?") + "] " + (n.epochs ? unitOf(n) + "s " + n.epochs[0] + "\u2013" + n.epochs[1] : "no epochs");
      if (n.best && n.best.value !== undefined && n.best.value !== null) {
        info += "  best " + n.best.column.replace(/^val-/, "") + " " + fmt(n.best.value) + " @ " + n.best.epoch;
      }
      g.appendChild(svg("text", { x: left + plotW + 14, y: y + 4, "class": "info state-" + (n.state || "unknown") }, info));
      s.appendChild(g);
    });
    host.appendChild(s);
  }
  function diamond(cx, cy, r, colour, title) {
    var d = svg("path", { d: "M" + cx + "," + (cy - r) + " L" + (cx + r) + "," + cy + " L" + cx + "," + (cy + r) + " L" + (cx - r) + "," + cy + " Z", fill: colour, stroke: "#fff", "stroke-width": 1 });
    if (title) { d.appendChild(svg("title", {}, title)); }
    return d;
  }

  // -- curves: one chart per metric, every node; inherited epochs dashed, forks as diamonds ----
  function niceTicks(lo, hi, count) {
    if (!isFinite(lo) || !isFinite(hi)) { return []; }
    if (hi === lo) { return [lo]; }
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / count)));
    var err = (hi - lo) / count / step;
    step *= err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1;
    var out = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) { out.push(+t.toPrecision(12)); }
    return out;
  }
  function drawChart(column, shown) {
    var W = 380, H = 250, L = 56, R = 12, T = 28, B = 36;
    var lines = shown.map(function (n) { return { node: n, points: series(n, column) }; })
      .filter(function (l) { return l.points.length; });
    var box = el("div", { "class": "chart" });
    if (!lines.length) { return null; }
    var xs = [], ys = [];
    lines.forEach(function (l) { l.points.forEach(function (p) {
      if (state.inherited || !p.inherited) { xs.push(p.epoch); ys.push(p.value); } }); });
    if (!xs.length) { return null; }
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
    var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (x0 === x1) { x1 = x0 + 1; }
    if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
    var pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
    var X = function (e) { return L + (e - x0) / (x1 - x0) * (W - L - R); };
    var Y = function (v) { return T + (1 - (v - y0) / (y1 - y0)) * (H - T - B); };
    var s = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H });
    s.appendChild(svg("text", { x: L, y: 16, "class": "title" }, column));
    var yTicks = niceTicks(y0, y1, 5);
    var digits = yTicks.length > 1 ? Math.max(0, Math.min(6, -Math.floor(Math.log10(yTicks[1] - yTicks[0]) + 1e-9))) : 2;
    yTicks.forEach(function (t) {
      s.appendChild(svg("line", { x1: L, x2: W - R, y1: Y(t), y2: Y(t), "class": "grid" }));
      s.appendChild(svg("text", { x: L - 6, y: Y(t) + 4, "class": "tick", "text-anchor": "end" }, t.toFixed(digits)));
    });
    niceTicks(x0, x1, 6).filter(function (t) { return Number.isInteger(t); }).forEach(function (t) {
      s.appendChild(svg("line", { x1: X(t), x2: X(t), y1: T, y2: H - B, "class": "grid" }));
      s.appendChild(svg("text", { x: X(t), y: H - B + 16, "class": "tick", "text-anchor": "middle" }, t));
    });
    s.appendChild(svg("text", { x: (L + W - R) / 2, y: H - 4, "class": "tick", "text-anchor": "middle" }, UNIT));
    s.appendChild(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, "class": "frame" }));
    lines.forEach(function (l) {
      var n = l.node;
      var g = hoverable(svg("g", {}), n.id);
      var own = l.points.filter(function (p) { return !p.inherited; });
      var inherited = l.points.filter(function (p) { return p.inherited; });
      if (inherited.length && own.length) { inherited.push(own[0]); }
      var path = function (pts) {
        return pts.map(function (p, i) { return (i ? "L" : "M") + X(p.epoch).toFixed(1) + "," + Y(p.value).toFixed(1); }).join(" ");
      };
      if (state.inherited && inherited.length > 1) {
        g.appendChild(svg("path", { d: path(inherited), "class": "inherited", stroke: n.colour }));
      }
      if (own.length) {
        g.appendChild(svg("path", { d: path(own), "class": "own", stroke: n.colour }));
        own.forEach(function (p) {
          var c = svg("circle", { cx: X(p.epoch), cy: Y(p.value), r: own.length > 40 ? 1.2 : 2.4, fill: n.colour });
          c.appendChild(svg("title", {}, n.id + "  " + unitOf(n) + " " + p.epoch + ": " + fmt(p.value)));
          g.appendChild(c);
        });
      }
      if (n.fork_epoch) {
        var at = l.points.filter(function (p) { return p.epoch === n.fork_epoch; })[0];
        if (at && (state.inherited || own.length)) {
          g.appendChild(diamond(X(at.epoch), Y(at.value), 5, n.colour, n.id + " forks @ " + n.fork_epoch));
        }
      }
      s.appendChild(g);
    });
    box.appendChild(s);
    return box;
  }
  function drawCurves(host) {
    host.innerHTML = "";
    var shown = nodes.filter(visible);
    var any = false;
    state.metrics.forEach(function (c) {
      var chart = drawChart(c, shown);
      if (chart) { host.appendChild(chart); any = true; }
    });
    if (!any) { host.appendChild(el("p", { "class": "empty" }, "No curve for the chosen metrics and nodes.")); }
  }
  function drawLegend(host) {
    host.innerHTML = "";
    var shown = nodes.filter(visible);
    var limit = 40;
    shown.slice(0, limit).forEach(function (n) {
      var item = hoverable(el("span", { "class": "key" }), n.id);
      var sw = el("i", { style: "background:" + n.colour });
      item.appendChild(sw);
      item.appendChild(document.createTextNode(n.id));
      host.appendChild(item);
    });
    if (shown.length > limit) { host.appendChild(el("span", { "class": "key more" }, "+ " + (shown.length - limit) + " more (filter to see them)")); }
  }

  // -- tables ------------------------------------------------------------------------------------
  function table(head, rows, opts) {
    var t = el("table", { "class": (opts && opts.cls) || "" });
    var tr = el("tr");
    head.forEach(function (h) { tr.appendChild(el("th", {}, h)); });
    var thead = el("thead"); thead.appendChild(tr); t.appendChild(thead);
    var body = el("tbody");
    rows.forEach(function (r) {
      var row = el("tr");
      if (r.node) { hoverable(row, r.node); }
      r.cells.forEach(function (c) {
        var td = el("td", c && c.cls ? { "class": c.cls } : {});
        if (c && c.html) { td.appendChild(c.html); } else { td.textContent = c && c.text !== undefined ? c.text : fmt(c); }
        row.appendChild(td);
      });
      body.appendChild(row);
    });
    t.appendChild(body);
    sortable(t);
    return t;
  }
  function sortable(t) {
    var ths = t.querySelectorAll("th");
    Array.prototype.forEach.call(ths, function (th, i) {
      th.addEventListener("click", function () {
        var body = t.querySelector("tbody");
        var rows = Array.prototype.slice.call(body.querySelectorAll("tr"));
        var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
        Array.prototype.forEach.call(ths, function (o) { o.removeAttribute("data-dir"); });
        th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
        rows.sort(function (a, b) {
          var x = a.children[i].textContent, y = b.children[i].textContent;
          var nx = parseFloat(x), ny = parseFloat(y);
          if (!isNaN(nx) && !isNaN(ny)) { return (nx - ny) * dir; }
          return x.localeCompare(y) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }
  function lineage(n) {
    var parts = [];
    for (var cur = n; cur; cur = byId[cur.parent]) {
      parts.unshift(cur.depth ? cur.name + (cur.fork_epoch ? "@" + cur.fork_epoch : "") : cur.tree);
      if (!cur.parent) { break; }
    }
    return parts.join(" \u2192 ");
  }
  function drawNodes(host) {
    host.innerHTML = "";
    var shown = nodes.filter(visible);
    var metricCols = state.metrics;
    var rows = shown.map(function (n) {
      var swatch = el("span", { "class": "node" });
      var sw = el("i", { style: "background:" + n.colour }); swatch.appendChild(sw);
      swatch.appendChild(document.createTextNode(n.id));
      var bestRow = null;
      if (n.best && n.best.epoch) {
        (n.rows || []).forEach(function (r) { if (r[0] === n.best.epoch && !r[1]) { bestRow = r; } });
      }
      var settings = Object.keys(n.settings || {}).map(function (k) { return k + " = " + JSON.stringify(n.settings[k]); }).join("\n");
      var cells = [{ html: swatch }, { text: n.state || "", cls: "state-" + (n.state || "unknown") },
        { text: n.epochs ? n.epochs[0] + "\u2013" + n.epochs[1] : "" }, { text: n.fork_epoch || "" },
        { text: n.best && n.best.epoch ? n.best.epoch : "" }];
      metricCols.forEach(function (c) {
        var i = (n.columns || []).indexOf(c);
        cells.push(bestRow && i >= 0 ? bestRow[i + 2] : null);
      });
      cells.push({ text: settings, cls: "settings" });
      cells.push({ text: lineage(n), cls: "lineage" });
      return { node: n.id, cells: cells };
    });
    host.appendChild(table(["node", "state", UNIT + "s", "fork", "best " + UNIT].concat(metricCols.map(function (c) { return c + " @ best"; })).concat(["settings \u2260 root", "lineage"]), rows, { cls: "nodes" }));
  }
  function drawSweeps(host) {
    host.innerHTML = "";
    if (!DATA.sweeps.length) { host.parentNode.style.display = "none"; return; }
    DATA.sweeps.forEach(function (sw) {
      host.appendChild(el("h3", {}, sw.name));
      var head = sw.keys.concat(sw.metrics.map(function (m) { return m + " (mean \u00b1 std)"; })).concat(["n", "best"]);
      var rows = sw.rows.map(function (r) {
        var cells = sw.keys.map(function (k) { return { text: fmt(r[k]) }; });
        sw.metrics.forEach(function (m) {
          var std = r[m + "-std"];
          cells.push({ text: fmt(r[m]) + (std === null || std === undefined ? "" : " \u00b1 " + fmt(std)) });
        });
        cells.push({ text: r.n }); cells.push({ text: r.best || "", cls: "best" });
        return { cells: cells };
      });
      host.appendChild(table(head, rows, { cls: "sweep" }));
    });
  }
  function drawEval(host) {
    host.innerHTML = "";
    var shown = nodes.filter(function (n) { return visible(n) && n.eval && n.eval.length; });
    if (!shown.length) { host.parentNode.style.display = "none"; return; }
    host.parentNode.style.display = "";
    var cols = [];
    shown.forEach(function (n) { n.eval.forEach(function (r) { Object.keys(r).forEach(function (k) { if (cols.indexOf(k) < 0) { cols.push(k); } }); }); });
    var rows = [];
    shown.forEach(function (n) { n.eval.forEach(function (r) {
      rows.push({ node: n.id, cells: [{ text: n.id }].concat(cols.map(function (c) {
        var v = r[c]; var f = parseFloat(v);
        return { text: v === undefined ? "" : (!isNaN(f) && /\./.test(v) ? fmt(f) : v) };
      })) });
    }); });
    host.appendChild(table(["node"].concat(cols), rows, { cls: "eval" }));
  }
  function drawSamples(host, picker) {
    host.innerHTML = "";
    var names = [];
    nodes.forEach(function (n) { (n.samples || []).forEach(function (s) { if (names.indexOf(s.image) < 0) { names.push(s.image); } }); });
    if (!names.length) { host.parentNode.style.display = "none"; return; }
    if (!picker.options.length) {
      names.forEach(function (nm) { picker.appendChild(el("option", { value: nm }, nm)); });
    }
    var image = picker.value || names[0];
    nodes.filter(visible).forEach(function (n) {
      var mine = (n.samples || []).filter(function (s) { return s.image === image; });
      if (!mine.length) { return; }
      var block = hoverable(el("div", { "class": "strip" }), n.id);
      block.appendChild(el("h4", {}, n.id));
      var row = el("div", { "class": "frames" });
      mine.forEach(function (s) {
        var fig = el("figure");
        fig.appendChild(el("img", { src: s.src, alt: n.id + " " + s.image, loading: "lazy" }));
        fig.appendChild(el("figcaption", {}, s.epoch === null ? "over " + unitOf(n) + "s" : unitOf(n) + " " + s.epoch));
        row.appendChild(fig);
      });
      block.appendChild(row);
      host.appendChild(block);
    });
  }

  // -- controls ----------------------------------------------------------------------------------
  function redraw() {
    drawTree(document.getElementById("tree"));
    drawLegend(document.getElementById("legend"));
    drawCurves(document.getElementById("curves"));
    drawNodes(document.getElementById("nodes"));
    drawEval(document.getElementById("eval"));
    drawSamples(document.getElementById("samples"), document.getElementById("image-pick"));
  }
  function controls() {
    var columns = allColumns();
    state.metrics = defaultMetrics(columns);
    var box = document.getElementById("metric-pick");
    var boxes = [];
    columns.forEach(function (c) {
      var label = el("label", { "class": "metric" });
      var cb = el("input", { type: "checkbox", value: c });
      cb.checked = state.metrics.indexOf(c) >= 0;
      boxes.push(cb);
      cb.addEventListener("change", function () {
        state.metrics = columns.filter(function (k, i) { return boxes[i].checked; });
        redraw();
      });
      label.appendChild(cb); label.appendChild(document.createTextNode(c));
      box.appendChild(label);
    });
    var filter = document.getElementById("node-filter");
    filter.addEventListener("input", function () { state.filter = filter.value.trim(); redraw(); });
    var inh = document.getElementById("show-inherited");
    inh.addEventListener("change", function () { state.inherited = inh.checked; redraw(); });
    document.getElementById("image-pick").addEventListener("change", function () {
      drawSamples(document.getElementById("samples"), document.getElementById("image-pick"));
    });
    var trees = {};
    nodes.forEach(function (n) { trees[n.tree] = 1; });
    document.getElementById("summary").textContent = nodes.length + " node" + (nodes.length === 1 ? "" : "s") +
      " in " + Object.keys(trees).length + " tree" + (Object.keys(trees).length === 1 ? "" : "s") +
      (DATA.sweeps.length ? ", " + DATA.sweeps.length + " sweep" + (DATA.sweeps.length === 1 ? "" : "s") : "") +
      " \u00b7 " + DATA.folder + " \u00b7 " + DATA.created;
  }
  controls();
  drawSweeps(document.getElementById("sweeps"));
  redraw();
  window.addEventListener("resize", function () { drawTree(document.getElementById("tree")); });
})();
