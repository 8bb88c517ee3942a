/* The breakdown panels: status classes, endpoints, consumers, countries.
 * ``ctx`` carries the active filters, the endpoints sort and ``onFilter(patch)``. */

import { $, h } from "./dom.js";
import { countryName, fmtBytes, fmtInt, fmtMs, fmtPct, level } from "./format.js";

const STATUS_CLASSES = ["2xx", "3xx", "4xx", "5xx", "1xx"];

export function renderStatus(ts) {
  const counts = {};
  for (const [cls, points] of Object.entries(ts.groups)) {
    counts[cls] = points.reduce((a, [, v]) => a + (v || 0), 0);
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const box = $("status");
  box.replaceChildren();
  if (!total) { box.append(h("p", { class: "empty-state", text: "No requests in this range." })); return; }
  const order = Object.keys(counts).sort((a, b) => STATUS_CLASSES.indexOf(a) - STATUS_CLASSES.indexOf(b));
  const bar = h("div", { class: "stack", role: "img",
    "aria-label": order.map((c) => c + " " + fmtPct(counts[c] / total)).join(", ") });
  const legend = h("ul", { class: "legend" });
  for (const cls of order) {
    if (!counts[cls]) continue;
    bar.append(h("span", { class: "seg s" + cls, style: { width: (100 * counts[cls] / total) + "%" } }));
    legend.append(h("li", { "data-class": cls },
      h("span", { class: "swatch s" + cls, "aria-hidden": "true" }),
      h("span", { class: "legend-name", text: cls }),
      h("span", { class: "legend-count", "data-value": counts[cls], text: fmtInt(counts[cls]) }),
      h("span", { class: "legend-pct muted", text: fmtPct(counts[cls] / total) })));
  }
  box.append(bar, legend);
}

function sortEndpoints(rows, sort) {
  const { col, dir } = sort;
  const sign = dir === "asc" ? 1 : -1;
  const keyOf = (r) => (col === "endpoint" ? r.endpoint + " " + r.method : r[col]);
  return [...rows].sort((a, b) => {
    const x = keyOf(a), y = keyOf(b);
    if (x === y) return b.requests - a.requests;
    if (x === null) return 1;
    if (y === null) return -1;
    return (x < y ? -1 : 1) * sign;
  });
}

/** The endpoints table, sorted client-side by ``ctx.sort`` (no reload needed). */
export function renderEndpoints(rows, ctx) {
  const table = $("endpoints");
  for (const th of table.querySelectorAll("th[data-sort]")) {
    const active = th.dataset.sort === ctx.sort.col;
    th.setAttribute("aria-sort", active ? (ctx.sort.dir === "asc" ? "ascending" : "descending") : "none");
  }
  const tbody = table.tBodies[0];
  tbody.replaceChildren();
  if (!rows.length) {
    tbody.append(h("tr", {}, h("td", { colspan: 6, class: "empty-state", text: "No requests in this range." })));
    return;
  }
  for (const r of sortEndpoints(rows, ctx.sort)) {
    const selected = ctx.filters.endpoint === r.endpoint && ctx.filters.method === r.method;
    tbody.append(h("tr", { class: selected ? "selected" : null, "data-endpoint": r.endpoint, "data-method": r.method },
      h("td", { class: "left" }, h("button", {
        type: "button", class: "rowlink", title: "Filter by " + r.method + " " + r.endpoint,
        onclick: () => ctx.onFilter({ endpoint: r.endpoint, method: r.method }) },
        h("span", { class: "method m-" + r.method.toLowerCase(), text: r.method }),
        h("span", { class: "path", text: r.endpoint }))),
      h("td", { class: "num", "data-col": "requests", "data-value": r.requests, text: fmtInt(r.requests) }),
      h("td", { class: "num " + level(r.error_rate), "data-col": "error_rate", "data-value": r.error_rate, text: fmtPct(r.error_rate) }),
      h("td", { class: "num", "data-col": "latency_avg_ms", text: fmtMs(r.latency_avg_ms) }),
      h("td", { class: "num", "data-col": "latency_p95_ms", "data-value": r.latency_p95_ms ?? "", text: fmtMs(r.latency_p95_ms) }),
      h("td", { class: "num", "data-col": "latency_p99_ms", text: fmtMs(r.latency_p99_ms) })));
  }
}

export function renderConsumers(body, ctx) {
  const tbody = $("consumers").tBodies[0];
  tbody.replaceChildren();
  if (!body.consumers.length) {
    tbody.append(h("tr", {}, h("td", { colspan: 5, class: "empty-state", text: "No requests in this range." })));
    return;
  }
  for (const c of body.consumers) {
    tbody.append(h("tr", { class: ctx.filters.api_key === c.api_key ? "selected" : null, "data-api-key": c.api_key },
      h("td", { class: "left" }, h("button", {
        type: "button", class: "rowlink", title: "Filter by consumer " + c.api_key,
        onclick: () => ctx.onFilter({ api_key: c.api_key }) }, h("span", { class: "path", text: c.api_key }))),
      h("td", { class: "num", "data-col": "requests", "data-value": c.requests, text: fmtInt(c.requests) }),
      h("td", { class: "num", "data-col": "bandwidth", text: fmtBytes(c.bytes_in + c.bytes_out) }),
      h("td", { class: "num " + level(c.error_rate), "data-col": "error_rate", "data-value": c.error_rate, text: fmtPct(c.error_rate) }),
      h("td", { class: "num", "data-col": "latency_p95_ms", text: fmtMs(c.latency_p95_ms) })));
  }
}

export function renderCountries(body) {
  const list = $("countries");
  list.replaceChildren();
  const rows = body.countries;
  if (!rows.length) {
    list.append(h("li", { class: "empty-state", text: "No country data for this range yet (the lake may lag a few minutes)." }));
    return;
  }
  const max = Math.max(...rows.map((r) => r.requests));
  for (const r of rows) {
    list.append(h("li", { "data-country": r.country || "" },
      h("span", { class: "bar-name", text: countryName(r.country), title: r.country || "unknown" }),
      h("span", { class: "bar-count", "data-value": r.requests, text: fmtInt(r.requests) }),
      h("span", { class: "bar-track", "aria-hidden": "true" },
        h("span", { class: "bar-fill", style: { width: (100 * r.requests / max) + "%" } }))));
  }
}
