/* Fathom's analytics page: asks GET /v1/analytics with the admin key typed into the form, draws the
 * plots as SVG elements and fills the tables. Text goes in with textContent only: queries are what
 * visitors typed, never markup. No library, nothing from elsewhere (the page's policy allows neither). */
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";
  var W = 720, H = 200, PAD = { left: 44, right: 12, top: 12, bottom: 34 };
  var $ = function (id) { return document.getElementById(id); };
  var params = new URLSearchParams(location.search);
  if (params.get("collection")) $("collection").value = params.get("collection");
  if (params.get("days")) $("days").value = params.get("days");

  function status(text, error) {
    $("status").textContent = text;
    $("status").className = error ? "error" : "";
  }

  function node(name, attrs, parent) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, String(attrs[k])); });
    if (parent) parent.appendChild(el);
    return el;
  }

  function label(parent, x, y, text, anchor) {
    var t = node("text", { x: x, y: y, "text-anchor": anchor || "middle" }, parent);
    t.textContent = text;
    return t;
  }

  /* An empty chart with its axes, the y scale to `top`, and a title for screen readers. */
  function chart(figure, title, top) {
    figure.textContent = "";
    var svg = node("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title }, figure);
    node("title", {}, svg).textContent = title;
    node("line", { x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom, "class": "axis" }, svg);
    node("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom, "class": "axis" }, svg);
    label(svg, PAD.left - 6, PAD.top + 4, String(top), "end");
    label(svg, PAD.left - 6, H - PAD.bottom + 4, "0", "end");
    return svg;
  }

  function scaleY(value, top) { return H - PAD.bottom - (top ? value / top : 0) * (H - PAD.top - PAD.bottom); }

  /* Bars, one per item, with a label under every `every`-th. */
  function bars(figure, title, items, valueOf, nameOf) {
    var top = Math.max(1, Math.max.apply(null, items.map(valueOf).concat([0])));
    var svg = chart(figure, title, top);
    var slot = (W - PAD.left - PAD.right) / Math.max(1, items.length);
    var every = Math.ceil(items.length / 12);
    items.forEach(function (item, i) {
      var x = PAD.left + i * slot, y = scaleY(valueOf(item), top);
      var bar = node("rect", { x: x + slot * 0.15, y: y, width: slot * 0.7, height: H - PAD.bottom - y, "class": "bar" }, svg);
      node("title", {}, bar).textContent = nameOf(item) + ": " + valueOf(item);
      if (i % every === 0) label(svg, x + slot / 2, H - PAD.bottom + 16, nameOf(item));
    });
  }

  /* One polyline per series over the days; a day without requests (null) is left out of the line. */
  function lines(figure, title, days, series) {
    var values = [];
    series.forEach(function (s) { days.forEach(function (d) { if (d[s.key] !== null) values.push(d[s.key]); }); });
    var top = Math.max(1, Math.ceil(Math.max.apply(null, values.concat([0]))));
    var svg = chart(figure, title, top);
    var step = (W - PAD.left - PAD.right) / Math.max(1, days.length - 1);
    series.forEach(function (s) {
      var points = [], name = s.key.replace("_ms", "");
      days.forEach(function (d, i) {
        if (d[s.key] === null) return;
        var x = PAD.left + i * step, y = scaleY(d[s.key], top);
        points.push(x.toFixed(1) + "," + y.toFixed(1));
        // A dot per day: a period with one busy day is a single point, which no line would show.
        var dot = node("circle", { cx: x, cy: y, r: 3, "class": name + "-dot" }, svg);
        node("title", {}, dot).textContent = d.day + " " + name + ": " + d[s.key] + " ms";
      });
      node("polyline", { points: points.join(" "), "class": name }, svg);
    });
    var every = Math.ceil(days.length / 8);
    days.forEach(function (d, i) { if (i % every === 0) label(svg, PAD.left + i * step, H - PAD.bottom + 16, d.day.slice(5)); });
  }

  function table(id, rows) {
    var body = $(id).tBodies[0];
    body.textContent = "";
    if (!rows.length) {
      var cell = body.insertRow().insertCell();
      cell.colSpan = 2;
      cell.className = "empty";
      cell.textContent = "none in this period";
    }
    rows.forEach(function (row) {
      var tr = body.insertRow();
      tr.insertCell().textContent = row.query;
      tr.insertCell().textContent = String(row.count);
    });
  }

  /* Positions 1 to the last clicked (at least 10), unclicked ones as 0: the bars then read as a ranking. */
  function positions(clicks) {
    var last = Math.max.apply(null, [10].concat(clicks.map(function (p) { return p.position; })));
    var byPosition = {};
    clicks.forEach(function (p) { byPosition[p.position] = p.clicks; });
    var all = [];
    for (var i = 1; i <= Math.min(last, 100); i++) all.push({ position: i, clicks: byPosition[i] || 0 });
    return all;
  }

  function percent(rate) { return rate === null ? "–" : (rate * 100).toFixed(1) + " %"; }

  function show(report) {
    $("searches").textContent = String(report.searches);
    $("requests").textContent = String(report.requests);
    $("ctr").textContent = percent(report.click_through_rate);
    $("first-click").textContent = report.mean_first_click_position === null ? "–" : report.mean_first_click_position.toFixed(2);
    bars($("per-day-plot"), "Searches per day", report.per_day,
      function (d) { return d.searches; }, function (d) { return d.day.slice(5); });
    lines($("latency-plot"), "Latency per day, p50 (solid) and p95 (dashed), ms", report.per_day,
      [{ key: "p50_ms" }, { key: "p95_ms" }]);
    bars($("position-plot"), "Clicks by position", positions(report.clicks_by_position),
      function (p) { return p.clicks; }, function (p) { return String(p.position); });
    table("top-queries", report.top_queries);
    table("no-result-queries", report.no_result_queries);
    table("no-click-queries", report.no_click_queries);
    $("report").hidden = false;
  }

  $("ask").addEventListener("submit", function (event) {
    event.preventDefault();
    var query = new URLSearchParams({ collection: $("collection").value.trim(), days: $("days").value });
    status("Loading…");
    fetch("/v1/analytics?" + query, { headers: { Authorization: "Bearer " + $("key").value.trim() } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
          return body;
        });
      })
      .then(function (report) {
        show(report);
        status(report.collection + ", last " + report.days + " days.");
      })
      .catch(function (error) { status(String(error.message || error), true); });
  });
})();
