/* The Pipeline panel: each service up / down / unknown with its lag and last success, and
 * this project's dead letters in the range, so a stopped layer is seen, not guessed from
 * flat charts. A banner names the down services whose silence makes the figures stale. */

import { $, h } from "./dom.js";
import { clockFmt, fmtInt, timeFmt } from "./format.js";

const LABELS = {
  gateway: "Gateway", speed_layer: "Speed layer", lake_writer: "Lake writer",
  billing: "Billing", query_api: "Query API", alerting: "Alerting",
};
// What goes stale when each one stops (shown in the banner).
const EFFECT = {
  gateway: "No new events are accepted", speed_layer: "Live and recent figures stop",
  lake_writer: "Countries and request drill-down stop", billing: "Usage is not recomputed",
  alerting: "Alerts are not evaluated",
};

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 90) return Math.round(seconds) + " s ago";
  if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " d ago";
}

function when(iso) {
  if (!iso) return "never";
  const d = new Date(iso);
  return (Date.now() - d.getTime() < 86400000 ? clockFmt : timeFmt).format(d);
}

export function renderPipeline(health) {
  const list = $("pipeline");
  list.replaceChildren();
  for (const c of health.components) {
    const name = LABELS[c.component] || c.component;
    const facts = c.status === "unknown"
      ? [h("span", { class: "p-fact", text: "never reported" })]
      : [
        h("span", { class: "p-fact p-lag", "data-value": c.lag_events ?? "",
                    text: "lag " + (c.lag_events === null ? "–" : fmtInt(c.lag_events) + " events") }),
        h("span", { class: "p-fact p-success", text: "last success " + when(c.last_success_at) }),
        h("span", { class: "p-fact p-beat", text: "heartbeat " + ago(c.seconds_since_beat) }),
      ];
    list.append(h("li", { "data-component": c.component, "data-status": c.status,
                          title: c.instance ? c.instance + " · " + (c.state || "") : name },
      h("span", { class: "p-head" }, h("span", { class: "p-dot", "aria-hidden": "true" }),
        h("span", { class: "p-name", text: name }),
        h("span", { class: "p-status", text: c.status })),
      ...facts));
  }
  $("pipeline-checked").textContent = "checked " + clockFmt.format(new Date(health.checked_at));
  const down = health.components.filter((c) => c.status === "down");
  const alert = $("pipeline-alert");
  alert.replaceChildren();
  alert.hidden = !down.length;
  if (down.length) {
    alert.append(h("strong", { text: "Pipeline: " + down.map((c) => LABELS[c.component] || c.component)
      .join(", ") + (down.length > 1 ? " are" : " is") + " down. " }));
    for (const c of down) {
      if (EFFECT[c.component]) alert.append(h("span", { class: "banner-item", text: EFFECT[c.component] + "." }));
    }
  }
}

export function renderDeadLetters(body) {
  const p = $("dead-letters");
  p.dataset.value = String(body.total);
  p.dataset.level = body.total ? "warn" : "";
  p.textContent = body.total
    ? fmtInt(body.total) + (body.total === 1 ? " record" : " records") +
      " of this project could not be processed in this range (dead letters)."
    : "No dead letters for this project in this range.";
  const reasons = $("dead-letter-reasons");
  reasons.replaceChildren();
  for (const c of body.counts.slice(0, 5)) {
    reasons.append(h("li", { "data-component": c.component, "data-count": c.count,
                             text: (LABELS[c.component] || c.component) + ": " + c.reason + " × " + fmtInt(c.count) }));
  }
}
