/* The Alerts panel: what fires now (one row per rule member) and the range's firings and
 * resolutions, plus a marker on each chart at the moment an alert fired or resolved.
 * Reads GET /api/v1/alerts/firing and /events (any read key; rules' targets never shown). */

import { $, h } from "./dom.js";
import { clockFmt, nf2, timeFmt } from "./format.js";

export const ALERTS = "api/v1/alerts/";
const CHARTS = ["chart-rpm", "chart-errors", "chart-latency"];
const MARKER = { position: "absolute", top: "0", bottom: "0", width: "0", borderLeft: "2px dashed",
                 pointerEvents: "auto", zIndex: "5" };

function when(iso) {
  const d = new Date(iso);
  return (Date.now() - d.getTime() < 86400000 ? clockFmt : timeFmt).format(d);
}

const value = (v) => (v === null || v === undefined ? "–" : nf2.format(v));
const who = (member) => (member ? " · " + member : "");

export function renderFiring(rows) {
  const list = $("alerts-firing");
  list.replaceChildren();
  $("alerts-count").textContent = rows.length ? rows.length + " firing" : "none firing";
  $("alerts-count").dataset.level = rows.length ? "bad" : "";
  for (const r of rows) {
    list.append(h("li", { "data-rule": r.rule_id, "data-member": r.member },
      h("strong", { text: r.rule_name + who(r.member) }),
      h("span", { class: "muted", text: " " + r.rule_type + " " + r.metric + " = " + value(r.value) +
                  ", since " + when(r.since) })));
  }
}

export function renderHistory(events) {
  const list = $("alerts-history");
  list.replaceChildren();
  if (!events.length) list.append(h("li", { class: "muted", text: "No alerts in this range." }));
  for (const e of events.slice(0, 20)) {
    list.append(h("li", { "data-kind": e.kind, "data-delivery": e.delivery },
      h("span", { class: "a-kind", text: e.kind === "firing" ? "FIRED" : "RESOLVED" }),
      h("span", { text: " " + when(e.at) + " " + e.rule_name + who(e.member) + " (" + value(e.value) +
                  "; " + e.delivery + ")" })));
  }
  markCharts(events);
}

/** A thin line over each chart's plot area at each event, placed on the chart's own
 * time axis (uPlot's x range: the first bucket to the end of the last). */
let lastEvents = [];
export function markCharts(events = lastEvents) {
  lastEvents = events;
  for (const id of CHARTS) {
    const over = document.querySelector("#" + id + " .u-over");
    if (!over) continue;
    over.querySelectorAll(".alert-marker").forEach((m) => m.remove());
    const [min, max] = [Number(over.dataset.min), Number(over.dataset.max)];
    if (!(max > min)) continue;
    for (const e of events) {
      const t = Date.parse(e.at) / 1000;
      if (t < min || t > max) continue;
      over.append(h("span", { class: "alert-marker", "data-kind": e.kind,
                              title: (e.kind === "firing" ? "Fired: " : "Resolved: ") + e.rule_name + who(e.member),
                              style: { ...MARKER, left: ((t - min) / (max - min)) * 100 + "%",
                                       borderColor: e.kind === "firing" ? "var(--c-bad)" : "var(--c-muted)" } }));
    }
  }
}

/** The charts' x range in seconds, as drawn: [first bucket, last bucket + step]. */
export function setChartRange(xs) {
  if (!xs.length) return;
  const step = xs.length > 1 ? xs[1] - xs[0] : 60;
  for (const id of CHARTS) {
    const over = document.querySelector("#" + id + " .u-over");
    if (over) { over.dataset.min = String(xs[0]); over.dataset.max = String(xs[xs.length - 1] + step); }
  }
  markCharts();
}
