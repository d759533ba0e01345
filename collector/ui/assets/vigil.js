// Vigil UI: the interactive parts of server-rendered pages. No framework,
// no build step. Loaded with `defer` from the same origin (the CSP allows
// no inline script). Text from the API is placed with textContent only.
(function () {
  "use strict";

  // Anything the Content-Security-Policy blocks is counted on <html>, so a
  // test (or a curious operator) can see that the page needs no exception.
  document.addEventListener("securitypolicyviolation", function (e) {
    var root = document.documentElement;
    root.dataset.cspViolations = String(Number(root.dataset.cspViolations || 0) + 1);
    root.dataset.cspLast = e.violatedDirective + " " + (e.blockedURI || "");
  });

  // Controls that change the view submit their form at once.
  document.querySelectorAll(".autosubmit").forEach(function (el) {
    el.addEventListener("change", function () {
      if (el.form) el.form.requestSubmit();
    });
  });

  // "/" focuses the first expression box, as in many consoles.
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT")) return;
    var box = document.querySelector("input.expr");
    if (box) { e.preventDefault(); box.focus(); box.select(); }
  });

  // Sortable tables: numbers compare as numbers, the rest as text.
  document.querySelectorAll("table.sortable button.sort").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var table = btn.closest("table");
      var tbody = table.tBodies[0];
      var col = parseInt(btn.dataset.col, 10);
      var dir = btn.dataset.dir === "asc" ? "desc" : "asc";
      table.querySelectorAll("button.sort").forEach(function (b) { delete b.dataset.dir; });
      btn.dataset.dir = dir;
      var rows = Array.prototype.slice.call(tbody.rows);
      var key = function (r) { var c = r.cells[col]; return c ? c.textContent.trim() : ""; };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (isFinite(nx) && isFinite(ny) && String(nx) !== "NaN") ? nx - ny : x.localeCompare(y);
        return dir === "asc" ? c : -c;
      });
      rows.forEach(function (r) { tbody.appendChild(r); });
    });
  });

  // ---- completion ----------------------------------------------------
  // The page ships a datalist of metric names, label names and functions.
  // With script, each expression box gets its own list, rebuilt as the user
  // types from what is at the cursor: a metric or function name, a label
  // name inside braces, or a label value after `label="` (values of that
  // label on that metric, from the label values API).
  var cache = {};
  function getJSON(url) {
    if (!cache[url]) {
      cache[url] = fetch(url, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (j) { return j.status === "success" ? j.data : []; })
        .catch(function () { return []; });
    }
    return cache[url];
  }
  var FUNCS = [];
  var base = document.getElementById("completions");
  if (base) {
    Array.prototype.forEach.call(base.options, function (o) {
      if (/\($/.test(o.value)) FUNCS.push(o.value);
    });
  }
  function complete(box, list) {
    var v = box.value, pos = box.selectionStart == null ? v.length : box.selectionStart;
    var before = v.slice(0, pos), after = v.slice(pos);
    var lv = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)$/.exec(before);
    var open = before.lastIndexOf("{") > before.lastIndexOf("}");
    var metric = /([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{[^{}]*$/.exec(before);
    var match = metric ? "?match[]=" + encodeURIComponent(metric[1]) : "";
    var source, token, suffix;
    if (lv && open) {
      source = getJSON("/api/v1/label/" + encodeURIComponent(lv[1]) + "/values" + match);
      token = lv[3];
      suffix = after.charAt(0) === "\"" ? "" : "\"";
    } else if (open) {
      source = getJSON("/api/v1/labels" + match);
      token = (/([a-zA-Z_][a-zA-Z0-9_]*)$/.exec(before) || ["", ""])[1];
      suffix = "=\"";
    } else {
      source = getJSON("/api/v1/label/__name__/values").then(function (names) { return names.concat(FUNCS); });
      token = (/([a-zA-Z_:][a-zA-Z0-9_:]*)$/.exec(before) || ["", ""])[1];
      suffix = "";
    }
    var head = before.slice(0, before.length - token.length);
    source.then(function (cands) {
      if (box.value !== v) return;
      list.textContent = "";
      var n = 0;
      for (var i = 0; i < cands.length && n < 200; i++) {
        var c = String(cands[i]);
        if (c === "__name__" || c.indexOf(token) !== 0) continue;
        var o = document.createElement("option");
        o.value = head + c + (/\($/.test(c) ? "" : suffix) + after;
        list.appendChild(o);
        n++;
      }
    });
  }
  document.querySelectorAll("input.expr").forEach(function (box, i) {
    var list = document.createElement("datalist");
    list.id = "completions-" + i;
    document.body.appendChild(list);
    box.setAttribute("list", list.id);
    var timer = null;
    box.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { complete(box, list); }, 80);
    });
  });

  // ---- charts --------------------------------------------------------
  var PALETTE = ["#1f77b4", "#e6550d", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  function color(i) {
    if (i < PALETTE.length) return PALETTE[i];
    return "hsl(" + ((i * 137.508) % 360).toFixed(0) + ",65%,50%)";
  }
  function seriesName(m) {
    var name = m.__name__ || "";
    var parts = [];
    Object.keys(m).sort().forEach(function (k) {
      if (k !== "__name__") parts.push(k + "=\"" + String(m[k]).replace(/\\/g, "\\\\").replace(/"/g, "\\\"") + "\"");
    });
    if (!parts.length && name) return name;
    return name + "{" + parts.join(", ") + "}";
  }
  function fmt(v) {
    if (v === null || v === undefined) return "—";
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
    return String(Math.round(v * 1000) / 1000);
  }
  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
  }
  function showError(panel, message, expr) {
    var box = panel.querySelector(".chart-error");
    if (!box) return;
    box.textContent = "";
    var div = document.createElement("div");
    div.className = "error";
    div.setAttribute("role", "alert");
    var p = document.createElement("p");
    p.textContent = message;
    div.appendChild(p);
    var m = /^(\d+):(\d+):/.exec(message);
    if (m) {
      var line = (expr.split("\n")[parseInt(m[1], 10) - 1]) || "";
      var pre = document.createElement("pre");
      pre.className = "caret";
      pre.textContent = line + "\n" + " ".repeat(Math.max(0, parseInt(m[2], 10) - 1)) + "^";
      div.appendChild(pre);
    }
    box.appendChild(div);
  }

  function drawChart(el) {
    var panel = el.closest(".panel") || document;
    var stats = panel.querySelector(".chart-stats");
    var expr = el.dataset.expr;
    var start = parseFloat(el.dataset.start), end = parseFloat(el.dataset.end), step = parseFloat(el.dataset.step);
    var stacked = el.dataset.stacked === "1";
    var params = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(step) });
    var t0 = performance.now();
    fetch("/api/v1/query_range?" + params.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (j) {
        var fetched = performance.now() - t0;
        if (j.status !== "success") { showError(panel, j.error || "query failed", expr); el.dataset.drawn = "error"; return; }
        if (j.data.resultType !== "matrix") { showError(panel, "the graph needs a range vector result; got " + j.data.resultType, expr); el.dataset.drawn = "error"; return; }
        var result = j.data.result;
        var n = Math.floor((end - start) / step + 1e-9) + 1;
        var xs = new Array(n);
        for (var i = 0; i < n; i++) xs[i] = start + i * step;
        var raw = [], counts = [], points = 0;
        result.forEach(function (s) {
          var ys = new Array(n).fill(null), count = 0;
          s.values.forEach(function (v) {
            var idx = Math.round((v[0] - start) / step);
            var y = parseFloat(v[1]);
            if (idx >= 0 && idx < n && isFinite(y)) { ys[idx] = y; count++; }
          });
          points += count;
          counts.push(count);
          raw.push(ys);
        });
        var plotted = raw;
        if (stacked) {
          var acc = new Array(n).fill(0);
          plotted = raw.map(function (ys) {
            return ys.map(function (y, k) { if (y === null) return null; acc[k] += y; return acc[k]; });
          });
        }
        var series = [{ label: "Time" }];
        result.forEach(function (s, k) {
          series.push({
            label: seriesName(s.metric),
            stroke: color(k),
            width: 1.5,
            fill: stacked ? color(k).replace(/^(#[0-9a-f]{6})$/i, "$144") : undefined,
            value: function (u, v, si, idx) { return idx == null ? "—" : fmt(raw[si - 1][idx]); },
            // A series of a few points (a new one, a sparse one) shows as dots.
            points: { show: counts[k] < 60, size: 6 },
            spanGaps: false
          });
        });
        var axis = css("--axis"), grid = css("--grid");
        el.textContent = "";
        if (!result.length) {
          var p = document.createElement("p");
          p.className = "empty";
          p.textContent = "Empty query result";
          el.appendChild(p);
          el.dataset.drawn = "empty";
          if (stats) stats.textContent = "0 series · fetched in " + fetched.toFixed(0) + " ms";
          return;
        }
        var t1 = performance.now();
        var opts = {
          width: Math.max(300, el.clientWidth),
          height: 380,
          series: series,
          scales: { x: { time: true } },
          // UTC, as the end and evaluation times in the URL are.
          tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
          axes: [
            { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
            { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid }, size: 70, values: function (u, vals) { return vals.map(fmt); } }
          ],
          cursor: { drag: { x: true, y: false } },
          legend: { live: true },
          hooks: {
            // The visible time range, for whoever reads the page (tests, zoom).
            setScale: [function (u, key) {
              if (key !== "x") return;
              el.dataset.xMin = String(u.scales.x.min);
              el.dataset.xMax = String(u.scales.x.max);
            }],
            draw: [function () {
              if (el.dataset.drawn === "1") return;
              // Milliseconds since navigation start, for the UI benchmark.
              el.dataset.drawnAt = performance.now().toFixed(1);
              el.dataset.drawn = "1";
              var drawn = performance.now() - t1;
              el.dataset.drawMs = drawn.toFixed(1);
              el.dataset.fetchMs = fetched.toFixed(1);
              if (stats) stats.textContent = result.length + " series · " + points + " points · fetched in " + fetched.toFixed(0) + " ms · drawn in " + drawn.toFixed(0) + " ms · drag to zoom, double-click to reset";
            }]
          }
        };
        var plot = new uPlot(opts, [xs].concat(plotted), el);
        window.addEventListener("resize", function () { plot.setSize({ width: Math.max(300, el.clientWidth), height: 380 }); });
      })
      .catch(function (e) { showError(panel, "could not load the graph: " + e, expr); el.dataset.drawn = "error"; });
  }
  if (typeof uPlot !== "undefined") {
    document.querySelectorAll(".chart[data-expr]").forEach(drawChart);
  }
})();
