/* Fathom search widget: one script tag, no framework, no CDN.
 *
 *   <script src="https://fathom.example.org/widget.js" data-collection="docs"
 *           data-key="fth_..." data-facets="lang,year" async></script>
 *
 * Attributes: data-collection (required), data-key (a public search key), data-facets (metadata
 * fields shown as filters), data-page-size (10), data-placeholder, data-target (id of the element to
 * fill; default: right after the script), data-endpoint (default: where widget.js came from).
 * Choosing a hit follows its metadata `url` if http(s) or relative (never `javascript:` and the like;
 * ctrl- or middle-click: a new tab), after a cancelable `fathom:select` event (detail: the hit) on the
 * root. Options hold no link: a screen reader misses one inside an option (axe: nested-interactive).
 * An unchanged (trimmed) query sends nothing, and recent answers are kept: searches cost rate limit.
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
  var CACHE_SIZE = 50;
  var UNAVAILABLE = "Search is unavailable, try again";
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

  // shown: the request on screen or on its way; cache: answers, oldest first; pending: requests on their
  // way, not aborted when a newer one goes: the answer is kept for when the query comes back.
  var state = {
    seq: 0, timer: null, filter: {}, cursor: null, hits: [], active: -1,
    shown: "", cache: new Map(), pending: new Map()
  };

  function search(nextPage) {
    var query = input.value.trim();
    var request = JSON.stringify([query, state.filter, nextPage ? state.cursor : null]);
    if (request === state.shown) return;  // a trailing space, or a word typed and deleted before the debounce
    state.shown = request;
    var seq = ++state.seq;  // only the latest request may render: older answers are dropped
    if (!query) { render(null, false); return renderFacets({}); }
    var body = { query: query, collection: collection, top_k: pageSize, facets: facetFields };
    if (Object.keys(state.filter).length) body.filter = state.filter;
    if (nextPage) body.cursor = state.cursor;
    // No space after the last word: the visitor is still typing it, so it also matches as a prefix.
    if (!/\s$/.test(input.value)) body.prefix = true;
    root.setAttribute("aria-busy", "true");
    fetched(request, body).then(function (data) {
      if (seq === state.seq) show(query, data, nextPage);
    }, function (error) {
      if (seq !== state.seq) return;
      state.shown = "";  // the same query typed again is tried again
      failed(query, error.message);
    });
  }

  function fetched(request, body) {
    if (state.cache.has(request)) return Promise.resolve(state.cache.get(request));
    if (state.pending.has(request)) return state.pending.get(request);
    var headers = { "Content-Type": "application/json" };
    if (key) headers.Authorization = "Bearer " + key;
    var sent = fetch(base + "/v1/search", { method: "POST", headers: headers, body: JSON.stringify(body) })
      .then(answer, function () { throw new Error(UNAVAILABLE); }).then(function (data) {
        state.pending.delete(request);
        remember(request, data);
        return data;
      }, function (error) { state.pending.delete(request); throw error; });
    state.pending.set(request, sent);
    return sent;
  }

  // The answer's JSON, or an Error whose message a visitor can read: a proxy's HTML error page, a
  // server error or a lost connection all read the same; a refusal the site owner must fix says why.
  function answer(response) {
    return response.json().catch(function () { return null; }).then(function (data) {
      if (response.ok && data) return data;
      if (response.status === 429) throw new Error("Too many searches at once, try again in a moment");
      var message = data && data.error && data.error.message;
      throw new Error(response.status < 500 && message ? message : UNAVAILABLE);
    });
  }

  function remember(request, data) {
    state.cache.delete(request);
    state.cache.set(request, data);
    if (state.cache.size > CACHE_SIZE) state.cache.delete(state.cache.keys().next().value);
  }

  function show(query, data, nextPage) {
    root.setAttribute("data-query", query);
    render(data, nextPage, query);
  }

  // An error replaces the results (they belong to another query); the filters stay.
  function failed(query, message) {
    render(null, false);
    root.setAttribute("data-query", query);
    root.setAttribute("data-state", "error");
    status.textContent = message;
  }

  function render(data, append, query) {
    root.removeAttribute("aria-busy");
    root.setAttribute("data-state", data ? (data.hits.length || append ? "results" : "empty") : "idle");
    if (!append) { list.textContent = ""; state.hits = []; setActive(-1); }
    var hits = data ? data.hits : [];
    hits.forEach(function (hit) { list.appendChild(option(hit, state.hits.length)); state.hits.push(hit); });
    if (data) hits.forEach(function (hit) { searchOf.set(hit, data.id); });
    state.cursor = data ? data.cursor : null;
    more.hidden = !state.cursor;
    expand(state.hits.length > 0);
    if (!data) { status.textContent = ""; return; }
    status.textContent = summary(query, data.total);
    if (!append) renderFacets(data.facets || {});
  }

  // `total` counts documents holding the query's words; hits found by meaning alone may be listed too.
  function summary(query, total) {
    if (!state.hits.length) return "No results for \u201c" + query + "\u201d";
    if (total == null) return state.hits.length + (state.cursor ? "+" : "") + " results";
    if (total === 0) return "No document holds these words; results close in meaning";
    return total + (total === 1 ? " document holds" : " documents hold") + " these words";
  }

  function option(hit, index) {
    var url = webUrl(hit.metadata && hit.metadata.url);
    var title = el("span", { class: "fathom-title", text: hit.title || hit.id });
    var snippet = el("p", { class: "fathom-snippet" });
    highlighted(hit.snippet || "", snippet);
    var item = el("li", {
      id: id + "-opt-" + index, class: "fathom-option", role: "option", "aria-selected": "false",
      "data-id": hit.id
    }, [title, snippet]);
    if (url) item.setAttribute("data-url", url);
    item.addEventListener("mousedown", function (event) { event.preventDefault(); });
    item.addEventListener("click", function (event) {
      if (url && (event.ctrlKey || event.metaKey)) window.open(url, "_blank", "noopener");
      else choose(index);
    });
    item.addEventListener("auxclick", function (event) {
      if (url && event.button === 1) window.open(url, "_blank", "noopener");
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

  // Counts are disjunctive (a chosen field is counted without its own filter): the other values stay,
  // and choosing one replaces it. Focus stays on the facet across the redraw; blank values are skipped.
  function renderFacets(counts) {
    var focused = facets.contains(document.activeElement) ? document.activeElement : null;
    var refocus = focused && [focused.getAttribute("data-field"), focused.getAttribute("data-value")];
    var again = null;
    facets.textContent = "";
    Object.keys(counts).forEach(function (field) {
      var buckets = counts[field].filter(function (bucket) { return String(bucket.value).trim() !== ""; });
      if (!buckets.length) return;
      var group = el("div", { class: "fathom-facet-group", role: "group", "aria-label": field },
        [el("span", { class: "fathom-facet-name", text: field })]);
      buckets.forEach(function (bucket) {
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
        if (refocus && refocus[0] === field && refocus[1] === String(bucket.value)) again = button;
      });
      facets.appendChild(group);
    });
    if (again) again.focus();
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
