/* The point-and-click segment builder (issue 16; decision 0021). Plain JavaScript, no framework.
 *
 * It edits the same JSON definition the textarea holds (the JSON view stays for experts): every
 * change writes the tree back into the textarea and fires its "input" event, so the live check
 * (validation, warnings for names never seen, plain-language summary, size and sample) runs as
 * when typing. Keys the builder does not know are kept as they are. Names and values are offered
 * from the schema registry (what the shop actually sends), served by the admin's catalog view. */
(function () {
  "use strict";
  var area = document.querySelector("textarea.seg-definition");
  var mount = document.getElementById("seg-builder");
  if (!area || !mount) return;
  var catalog = {events: [], traits: [], computed: [], context: [], event_fields: [], purposes: [], segments: [],
                 ops: {trait: [], filter: [], count: []}};
  var root = null;
  var LEAVES = [["event", "did an event"], ["trait", "trait"], ["computed", "computed trait"],
                ["consent", "consent"], ["context", "latest visit"], ["segment", "in segment"]];
  var OP_WORDS = {"=": "is", "!=": "is not", "in": "is one of", "<": "<", "<=": "≤", ">": ">", ">=": "≥",
    "contains": "contains", "exists": "exists", "between": "between", "within_last": "within last (days)",
    "before": "before", "after": "after", "top_percent": "top %", "bottom_percent": "bottom %"};

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "on") Object.keys(attrs.on).forEach(function (e) { node.addEventListener(e, attrs.on[e]); });
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }
  function select(cls, options, value, onchange) {
    var s = el("select", {"class": cls, on: {change: function () { onchange(s.value); }}});
    options.forEach(function (o) {
      var pair = Array.isArray(o) ? o : [o, OP_WORDS[o] || o];
      var opt = el("option", {value: pair[0], text: pair[1]});
      if (String(pair[0]) === String(value)) opt.selected = true;
      s.appendChild(opt);
    });
    if (value !== undefined && value !== null && options.map(function (o) { return String(Array.isArray(o) ? o[0] : o); }).indexOf(String(value)) < 0) {
      s.appendChild(el("option", {value: value, text: value + " (unknown)", selected: "selected"}));
    }
    return s;
  }
  var listId = 0;
  function input(cls, value, placeholder, suggestions, onchange) {
    var attrs = {"class": cls, type: "text", value: value === undefined || value === null ? "" : value,
                 placeholder: placeholder || ""};
    var list = null;
    if (suggestions && suggestions.length) {
      listId += 1; attrs.list = "sb-list-" + listId;
      list = el("datalist", {id: attrs.list});
      suggestions.forEach(function (s) { list.appendChild(el("option", {value: s.value, label: s.label || ""})); });
    }
    var box = el("input", attrs);
    box.addEventListener("change", function () { onchange(box.value); });
    var wrap = el("span", {"class": "sb-input"}, [box, list]);
    return wrap;
  }
  function parseValue(text, op) {
    function one(t) {
      t = t.trim();
      if (t === "true") return true;
      if (t === "false") return false;
      if (t !== "" && !isNaN(Number(t))) return Number(t);
      return t;
    }
    if (op === "in" || op === "between") return String(text).split(",").map(one).filter(function (v) { return v !== ""; });
    if (op === "exists") return String(text).trim() !== "false";
    if (op === "before" || op === "after") {
      var m = /^\s*(\d+)\s*days?\s*ago\s*$/.exec(text);
      if (m) return {days_ago: Number(m[1])};
    }
    return one(String(text));
  }
  function showValue(v) {
    if (Array.isArray(v)) return v.join(", ");
    if (v && typeof v === "object" && "days_ago" in v) return v.days_ago + " days ago";
    if (v && typeof v === "object") return JSON.stringify(v);
    return v === undefined ? "" : String(v);
  }
  function samples(list) {
    var out = [];
    (list || []).forEach(function (s) { out.push({value: String(s)}); });
    return out;
  }
  function eventInfo(name) {
    for (var i = 0; i < catalog.events.length; i++) if (catalog.events[i].name === name) return catalog.events[i];
    return null;
  }
  function traitInfo(name) {
    for (var i = 0; i < catalog.traits.length; i++) if (catalog.traits[i].name === name) return catalog.traits[i];
    return null;
  }

  function write() {
    area.value = JSON.stringify(root, null, 2);
    area.dispatchEvent(new Event("input", {bubbles: true}));
  }
  function changed() { write(); render(); }

  function leafDefault(type) {
    if (type === "event") return {event: (catalog.events[0] || {}).name || ""};
    if (type === "trait") return {trait: (catalog.traits[0] || {}).name || "", op: "=", value: ""};
    if (type === "computed") return {computed: catalog.computed[0] || "orders", op: ">=", value: 1};
    if (type === "consent") return {consent: catalog.purposes[0] || "marketing"};
    if (type === "context") return {context: "device_type", op: "=", value: "mobile"};
    return {segment: (catalog.segments[0] || {}).slug || ""};
  }
  function leafType(node) {
    for (var i = 0; i < LEAVES.length; i++) if (LEAVES[i][0] in node) return LEAVES[i][0];
    return null;
  }
  function replaceAll(target, source) {
    Object.keys(target).forEach(function (k) { delete target[k]; });
    Object.keys(source).forEach(function (k) { target[k] = source[k]; });
  }

  function opValue(node, opsList, valueSuggestions) {
    return [
      select("sb-op", opsList, node.op, function (v) { node.op = v; if (v === "exists") node.value = true; changed(); }),
      node.op === "exists" ? null : input("sb-value", showValue(node.value), "value", valueSuggestions,
        function (v) { node.value = parseValue(v, node.op); changed(); })
    ];
  }

  function renderEvent(node, row) {
    var info = eventInfo(node.event);
    var names = catalog.events.map(function (e) { return {value: e.name, label: e.count + " events"}; });
    row.appendChild(input("sb-name sb-event-name", node.event, "event name", names, function (v) { node.event = v; changed(); }));
    row.appendChild(el("label", {"class": "sb-inline"}, [
      el("input", {type: "checkbox", "class": "sb-did-not", on: {change: function (e) {
        if (e.target.checked) node.did_not = true; else delete node.did_not; changed(); }}}),
      document.createTextNode(" did not")]));
    if (node.did_not) row.querySelector(".sb-did-not").checked = true;
    var w = node.within_last || {};
    var unit = "hours" in w ? "hours" : "days";
    row.appendChild(el("span", {"class": "sb-inline", text: " in the last "}));
    row.appendChild(input("sb-window-n", w[unit] === undefined ? "" : w[unit], "any time", null, function (v) {
      if (String(v).trim() === "") delete node.within_last; else { var o = {}; o[unit] = Number(v); node.within_last = o; }
      changed(); }));
    row.appendChild(select("sb-window-unit", [["days", "days"], ["hours", "hours"]], unit, function (v) {
      if (node.within_last) { var n = node.within_last[unit]; var o = {}; o[v] = n; node.within_last = o; changed(); } }));
    var count = node.count || {};
    row.appendChild(el("span", {"class": "sb-inline", text: " times "}));
    row.appendChild(select("sb-count-op", [["", "at least once"]].concat(catalog.ops.count.map(function (o) { return [o, OP_WORDS[o] || o]; })),
      count.op || "", function (v) { if (!v) delete node.count; else node.count = {op: v, value: count.value === undefined ? 1 : count.value}; changed(); }));
    if (node.count) {
      row.appendChild(input("sb-count-value", count.value, "n", null, function (v) { node.count.value = Number(v); changed(); }));
    }
    var total = node.sum || {};
    var numeric = ((info && info.properties) || []).filter(function (p) {
      return (p.samples || []).some(function (v) { return typeof v === "number"; });
    }).map(function (p) { return {value: p.name}; });
    row.appendChild(select("sb-sum-op", [["", "any total"]].concat(catalog.ops.count.map(function (o) {
      return [o, "total " + (OP_WORDS[o] || o)]; })), total.op || "", function (v) {
        if (!v) delete node.sum; else node.sum = {property: total.property || (numeric[0] || {}).value || "revenue",
          op: v, value: total.value === undefined ? 100 : total.value};
        changed(); }));
    if (node.sum) {
      row.appendChild(input("sb-sum-value", total.value, "amount", null, function (v) { node.sum.value = Number(v); changed(); }));
      row.appendChild(el("span", {"class": "sb-inline", text: " of "}));
      row.appendChild(input("sb-sum-prop", total.property, "number property", numeric, function (v) { node.sum.property = v; changed(); }));
    }
    var filters = el("div", {"class": "sb-filters"});
    (node.where || []).forEach(function (f, i) {
      var props = ((info && info.properties) || []).map(function (p) { return {value: p.name, label: p.count + " events"}; });
      var kind = "property" in f ? "property" : ("field" in f ? "field" : "context");
      var propInfo = null;
      ((info && info.properties) || []).forEach(function (p) { if (p.name === f.property) propInfo = p; });
      var subject = kind === "field"
        ? select("sb-filter-field", catalog.event_fields, f.field, function (v) { f.field = v; changed(); })
        : input("sb-filter-prop", f[kind], kind, props, function (v) { f[kind] = v; changed(); });
      filters.appendChild(el("div", {"class": "sb-filter"}, [el("span", {text: "where "}), subject]
        .concat(opValue(f, catalog.ops.filter, samples(propInfo && propInfo.samples)))
        .concat([el("button", {type: "button", "class": "sb-remove", title: "remove this filter", text: "×",
          on: {click: function () { node.where.splice(i, 1); if (!node.where.length) delete node.where; changed(); }}})])));
    });
    filters.appendChild(el("button", {type: "button", "class": "sb-add-filter", text: "+ where property…",
      on: {click: function () { node.where = node.where || []; node.where.push({property: "", op: "=", value: ""}); changed(); }}}));
    filters.appendChild(el("button", {type: "button", "class": "sb-add-filter-field", text: "+ where device/hour…",
      on: {click: function () { node.where = node.where || []; node.where.push({field: "device_type", op: "=", value: "mobile"}); changed(); }}}));
    row.appendChild(filters);
  }

  function renderLeaf(node, row) {
    var type = leafType(node);
    if (type === "event") return renderEvent(node, row);
    if (type === "trait") {
      var info = traitInfo(node.trait);
      row.appendChild(input("sb-name sb-trait-name", node.trait, "trait",
        catalog.traits.map(function (t) { return {value: t.name, label: t.count + " profiles"}; }),
        function (v) { node.trait = v; changed(); }));
      opValue(node, catalog.ops.trait, samples(info && info.samples)).forEach(function (c) { if (c) row.appendChild(c); });
    } else if (type === "computed") {
      row.appendChild(select("sb-name sb-computed-name", catalog.computed, node.computed, function (v) { node.computed = v; changed(); }));
      opValue(node, catalog.ops.trait).forEach(function (c) { if (c) row.appendChild(c); });
    } else if (type === "context") {
      row.appendChild(select("sb-name", catalog.context, node.context, function (v) { node.context = v; changed(); }));
      opValue(node, catalog.ops.filter).forEach(function (c) { if (c) row.appendChild(c); });
    } else if (type === "consent") {
      row.appendChild(el("span", {text: " granted "}));
      row.appendChild(select("sb-name", catalog.purposes, node.consent, function (v) { node.consent = v; changed(); }));
    } else if (type === "segment") {
      row.appendChild(select("sb-name", catalog.segments.map(function (s) { return [s.slug, s.name]; }), node.segment,
        function (v) { node.segment = v; changed(); }));
    } else {
      row.appendChild(el("code", {text: JSON.stringify(node)}));
    }
  }

  function renderNode(node, remove) {
    if ("all" in node || "any" in node) {
      var mode = "all" in node ? "all" : "any";
      var box = el("div", {"class": "sb-group sb-" + mode});
      var head = el("div", {"class": "sb-head"}, [
        select("sb-group-mode", [["all", "All of these"], ["any", "Any of these"]], mode, function (v) {
          if (v !== mode) { var items = node[mode]; var copy = {}; copy[v] = items;
            Object.keys(node).forEach(function (k) { if (k !== mode) copy[k] = node[k]; }); replaceAll(node, copy); changed(); } }),
        el("button", {type: "button", "class": "sb-add-condition", text: "+ condition",
          on: {click: function () { node[mode].push(leafDefault("event")); changed(); }}}),
        el("button", {type: "button", "class": "sb-add-group", text: "+ group",
          on: {click: function () { node[mode].push({any: [leafDefault("event")]}); changed(); }}}),
        el("button", {type: "button", "class": "sb-add-not", text: "+ none of…",
          on: {click: function () { node[mode].push({not: {any: [leafDefault("event")]}}); changed(); }}}),
        remove ? el("button", {type: "button", "class": "sb-remove", title: "remove this group", text: "×", on: {click: remove}}) : null
      ]);
      box.appendChild(head);
      node[mode].forEach(function (child, i) {
        box.appendChild(renderNode(child, function () { node[mode].splice(i, 1); changed(); }));
      });
      if (!node[mode].length) box.appendChild(el("p", {"class": "sb-empty", text: mode === "all" ? "No condition: everyone." : "No condition: nobody."}));
      return box;
    }
    if ("not" in node) {
      var nbox = el("div", {"class": "sb-group sb-not"}, [el("div", {"class": "sb-head"}, [
        el("b", {text: "Not: "}),
        remove ? el("button", {type: "button", "class": "sb-remove", title: "remove", text: "×", on: {click: remove}}) : null])]);
      nbox.appendChild(renderNode(node.not, null));
      return nbox;
    }
    var row = el("div", {"class": "sb-leaf"});
    row.appendChild(select("sb-type", LEAVES, leafType(node), function (v) { replaceAll(node, leafDefault(v)); changed(); }));
    renderLeaf(node, row);
    if (remove) row.appendChild(el("button", {type: "button", "class": "sb-remove", title: "remove this condition", text: "×", on: {click: remove}}));
    return row;
  }

  function render() {
    mount.querySelector(".sb-tree").innerHTML = "";
    mount.querySelector(".sb-tree").appendChild(renderNode(root, null));
  }

  function load() {
    var text = area.value.trim();
    if (!text) { root = {all: []}; return true; }
    try { root = JSON.parse(text); } catch (e) { return false; }
    if (!root || typeof root !== "object" || Array.isArray(root)) return false;
    if (!("all" in root || "any" in root)) root = {all: [root]};  // a single condition, shown in a group
    return true;
  }

  function tabs() {
    var note = el("span", {"class": "sb-note"});
    var builderTab = el("button", {type: "button", "class": "sb-tab sb-tab-builder", text: "Builder"});
    var jsonTab = el("button", {type: "button", "class": "sb-tab sb-tab-json", text: "JSON"});
    function show(which) {
      if (which === "builder" && !load()) { note.textContent = "The JSON is not valid yet: fix it to use the builder."; return; }
      note.textContent = "";
      mount.querySelector(".sb-tree").style.display = which === "builder" ? "" : "none";
      area.style.display = which === "builder" ? "none" : "";
      builderTab.classList.toggle("active", which === "builder");
      jsonTab.classList.toggle("active", which === "json");
      if (which === "builder") render();
    }
    builderTab.addEventListener("click", function () { show("builder"); });
    jsonTab.addEventListener("click", function () { show("json"); });
    mount.appendChild(el("div", {"class": "sb-tabs"}, [builderTab, jsonTab, note]));
    mount.appendChild(el("div", {"class": "sb-tree"}));
    return show;
  }

  area.parentNode.insertBefore(mount, area);
  var show = tabs();
  fetch(mount.getAttribute("data-catalog-url"), {credentials: "same-origin"})
    .then(function (r) { return r.json(); })
    .then(function (data) { catalog = data; })
    .catch(function () {})
    .then(function () { show(load() ? "builder" : "json"); });
})();
