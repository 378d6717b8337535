/* Fathom search widget: one script tag, no framework, no CDN.
 *
 *   <script src="https://fathom.example.org/widget.js" data-collection="docs"
 *           data-key="fth_..." data-facets="lang,year" async></script>
 *
 * Attributes: data-collection (required), data-key (a public search key), data-facets (metadata
 * fields shown as filters), data-page-size (10), data-placeholder, data-target (id of the element to
 * fill; default: right after the script), data-endpoint (default: where widget.js came from).
 * Choosing a hit follows its metadata `url` when that is an http(s) or relative link (any other url,
 * such as `javascript:`, is neither a link nor followed); the widget first dispatches a cancelable
 * `fathom:select` event (detail: the hit) on its root element, so a page can handle the choice itself.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) return;
  var attr = function (name, fallback) { return script.getAttribute("data-" + name) || fallback; };
  var base = attr("endpoint", new URL(script.src, location.href).origin).replace(/\/$/, "");
  var collection = attr("collection", "");
  var key = attr("key", "");
  var facetFields = attr("facets", "").split(",").map(function (s) { return s.trim(); }).filter(Boolean);
  var pageSize = parseInt(attr("page-size", "10"), 10) || 10;
  var DEBOUNCE_MS = 150;
  var id = "fathom-" + Math.random().toString(36).slice(2, 8);

  function el(tag, props, children) {
    var node = document.createElement(tag);
    Object.keys(props || {}).forEach(function (name) {
      if (name === "text") node.textContent = props[name];
      else node.setAttribute(name, props[name]);
    });
    (children || []).forEach(function (child) { node.appendChild(child); });
    return node;
  }

  // A hit's url comes from stored metadata: a `javascript:` one would run on the embedding page. The
  // browser's own parser decides (case, spaces and tabs or newlines inside the scheme are all ignored by
  // it), resolving as a link would; the absolute URL it gives is the one linked, so what was checked is
  // where the link goes. Anything but http(s) is not followed.
  function webUrl(value) {
    if (typeof value !== "string") return null;
    var parsed;
    try { parsed = new URL(value, document.baseURI); } catch (error) { return null; }
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  }

  var css = el("link", { rel: "stylesheet", href: base + "/widget.css" });
  document.head.appendChild(css);
  var input = el("input", {
    type: "search", id: id + "-input", class: "fathom-input", role: "combobox", autocomplete: "off",
    spellcheck: "false", "aria-autocomplete": "list", "aria-expanded": "false", "aria-controls": id + "-list",
    placeholder: attr("placeholder", "Search")
  });
  var label = el("label", { for: id + "-input", class: "fathom-hidden", text: "Search" });
  var facets = el("div", { class: "fathom-facets", role: "group", "aria-label": "Filters" });
  var status = el("div", { class: "fathom-status", role: "status", "aria-live": "polite" });
  var list = el("ul", {
    id: id + "-list", class: "fathom-list", role: "listbox", "aria-label": "Search results", hidden: ""
  });
  var more = el("button", { type: "button", class: "fathom-more", hidden: "", text: "More results" });
  var root = el("div", { class: "fathom-widget" }, [label, input, facets, status, list, more]);
  var target = document.getElementById(attr("target", ""));
  if (target) target.appendChild(root);
  else script.parentNode.insertBefore(root, script.nextSibling);

  var state = { seq: 0, controller: null, timer: null, filter: {}, cursor: null, hits: [], active: -1 };

  function search(nextPage) {
    var query = input.value.trim();
    if (state.controller) state.controller.abort();
    if (!query) return render(null, false);
    var seq = ++state.seq;  // only the latest request may render: older answers are dropped
    state.controller = new AbortController();
    var body = { query: query, collection: collection, top_k: pageSize, facets: facetFields };
    if (Object.keys(state.filter).length) body.filter = state.filter;
    if (nextPage) body.cursor = state.cursor;
    // No space after the last word: the visitor is still typing it, so it also matches as a prefix.
    if (!/\s$/.test(input.value)) body.prefix = true;
    var headers = { "Content-Type": "application/json" };
    if (key) headers.Authorization = "Bearer " + key;
    root.setAttribute("aria-busy", "true");
    fetch(base + "/v1/search", {
      method: "POST", headers: headers, body: JSON.stringify(body), signal: state.controller.signal
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) throw new Error((data.error && data.error.message) || "search failed");
        return data;
      });
    }).then(function (data) {
      if (seq !== state.seq) return;
      root.setAttribute("data-query", query);
      render(data, nextPage);
    }, function (error) {
      if (seq !== state.seq || error.name === "AbortError") return;
      root.removeAttribute("aria-busy");
      status.textContent = "Search failed: " + error.message;
    });
  }

  function render(data, append) {
    root.removeAttribute("aria-busy");
    if (!append) { list.textContent = ""; state.hits = []; setActive(-1); }
    var hits = data ? data.hits : [];
    hits.forEach(function (hit) { list.appendChild(option(hit, state.hits.length)); state.hits.push(hit); });
    if (data) hits.forEach(function (hit) { searchOf.set(hit, data.id); });
    state.cursor = data ? data.cursor : null;
    more.hidden = !state.cursor;
    expand(state.hits.length > 0);
    if (!data) { status.textContent = ""; facets.textContent = ""; return; }
    var total = data.total == null ? state.hits.length + (state.cursor ? "+" : "") : data.total;
    status.textContent = state.hits.length ? total + " results" : "No results";
    if (!append) renderFacets(data.facets || {});
  }

  function option(hit, index) {
    var url = webUrl(hit.metadata && hit.metadata.url);
    var title = el(url ? "a" : "span", { class: "fathom-title", text: hit.title || hit.id });
    if (url) { title.setAttribute("href", url); title.setAttribute("tabindex", "-1"); }
    var snippet = el("p", { class: "fathom-snippet" });
    highlighted(hit.snippet || "", snippet);
    var item = el("li", {
      id: id + "-opt-" + index, class: "fathom-option", role: "option", "aria-selected": "false",
      "data-id": hit.id
    }, [title, snippet]);
    item.addEventListener("mousedown", function (event) { event.preventDefault(); });
    item.addEventListener("click", function (event) {
      // A link title is the browser's to follow (a new tab on ctrl-click); anything else chooses the hit.
      if (event.target !== title || !url) { event.preventDefault(); choose(index); }
    });
    return item;
  }

  // Snippets arrive HTML-escaped with <em> around matched words: keep the text and the <em>s, nothing else.
  function highlighted(html, into) {
    var template = document.createElement("template");
    template.innerHTML = html;
    template.content.childNodes.forEach(function (node) {
      if (node.nodeType === 3) into.appendChild(document.createTextNode(node.textContent));
      else if (node.nodeName === "EM") into.appendChild(el("mark", { text: node.textContent }));
      else into.appendChild(document.createTextNode(node.textContent || ""));
    });
  }

  function renderFacets(counts) {
    facets.textContent = "";
    Object.keys(counts).forEach(function (field) {
      if (!counts[field].length) return;
      var group = el("div", { class: "fathom-facet-group", role: "group", "aria-label": field },
        [el("span", { class: "fathom-facet-name", text: field })]);
      counts[field].forEach(function (bucket) {
        var on = state.filter[field] === bucket.value;
        var button = el("button", {
          type: "button", class: "fathom-facet", "aria-pressed": on ? "true" : "false",
          "data-field": field, "data-value": String(bucket.value), text: bucket.value + " (" + bucket.count + ")"
        });
        button.addEventListener("click", function () {
          if (on) delete state.filter[field];
          else state.filter[field] = bucket.value;
          search(false);
        });
        group.appendChild(button);
      });
      facets.appendChild(group);
    });
  }

  function expand(open) {
    list.hidden = !open;
    input.setAttribute("aria-expanded", open ? "true" : "false");
    if (!open) setActive(-1);
  }

  function setActive(index) {
    var options = list.querySelectorAll("[role=option]");
    if (state.active >= 0 && options[state.active]) options[state.active].setAttribute("aria-selected", "false");
    state.active = index;
    if (index < 0 || !options[index]) return input.removeAttribute("aria-activedescendant");
    options[index].setAttribute("aria-selected", "true");
    input.setAttribute("aria-activedescendant", options[index].id);
    options[index].scrollIntoView({ block: "nearest" });
  }

  // Which answer each hit came from, for the click report.
  var searchOf = new WeakMap();

  // Tells the search's owner which hit was chosen, and where (POST /v1/events, the site's search
  // analytics). Fire and forget: it never delays or stops the choice; keepalive lets it finish when
  // the choice leaves the page.
  function reportClick(hit, index) {
    var searchId = searchOf.get(hit);
    if (!searchId) return;
    var headers = { "Content-Type": "application/json" };
    if (key) headers.Authorization = "Bearer " + key;
    var click = { type: "click", search_id: searchId, hit_id: hit.id, position: index + 1 };
    fetch(base + "/v1/events", { method: "POST", headers: headers, body: JSON.stringify(click), keepalive: true })
      .catch(function () {});
  }

  function choose(index) {
    var hit = state.hits[index];
    if (!hit) return;
    reportClick(hit, index);
    var event = new CustomEvent("fathom:select", { detail: hit, bubbles: true, cancelable: true });
    var url = webUrl(hit.metadata && hit.metadata.url);
    if (root.dispatchEvent(event) && url) location.assign(url);
  }

  input.addEventListener("input", function () {
    clearTimeout(state.timer);
    state.timer = setTimeout(function () { search(false); }, DEBOUNCE_MS);
  });
  input.addEventListener("keydown", function (event) {
    var count = state.hits.length;
    if (event.key.indexOf("Arrow") === 0 && count && list.hidden) expand(true);
    if (event.key === "ArrowDown" && count) setActive((state.active + 1) % count);
    else if (event.key === "ArrowUp" && count) setActive(state.active <= 0 ? count - 1 : state.active - 1);
    else if (event.key === "Enter" && state.active >= 0) choose(state.active);
    else if (event.key === "Escape" && !list.hidden && count) expand(false);  // as WAI-ARIA's combobox: close,
    else if (event.key === "Escape") { input.value = ""; search(false); }  // then clear
    else return;
    event.preventDefault();
  });
  more.addEventListener("click", function () { search(true); });
})();
