/* Fathom's search page (GET /) is the widget itself: the query string's settings become its data-
 * attributes. A file rather than an inline <script>: the page's policy runs no inline script. */
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var widget = document.createElement("script");
  widget.src = "/widget.js";
  widget.dataset.target = "search";
  widget.dataset.collection = params.get("collection") || "";
  ["key", "facets", "page-size"].forEach(function (name) {
    if (params.get(name)) widget.setAttribute("data-" + name, params.get(name));
  });
  document.getElementById("collection").textContent = widget.dataset.collection || "(no collection given)";
  document.body.appendChild(widget);
})();
