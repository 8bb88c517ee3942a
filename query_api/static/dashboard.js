/* Turnstile dashboard: one page over the query API's JSON routes (ES modules, no build step).
 *
 * State lives in the URL hash (range and filters, so a wall-screen URL can be bookmarked)
 * and the read key in sessionStorage (this tab only). Every figure is computed from the
 * API's answers for one explicit [start, end) range, so the page agrees with the API.
 */

import { PIPELINE, api, query } from "./api.js";
import { drawChart, resetCharts, resizeCharts } from "./charts.js";
import { $, h, setFigure } from "./dom.js";
import {
  clockFmt, fmtBytes, fmtInt, fmtMs, fmtMsAxis, fmtPct, fmtPctAxis, fmtRate, level, timeFmt,
} from "./format.js";
import { renderConsumers, renderCountries, renderEndpoints, renderStatus } from "./panels.js";
import { renderDeadLetters, renderPipeline } from "./pipeline.js";
import { ALERTS, renderFiring, renderHistory, setChartRange } from "./alerts.js";

const KEY_STORAGE = "turnstile.readKey";
const RANGES = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
const REFRESH_MS = { "1h": 10000, "24h": 60000, "7d": 300000, "30d": 300000 };
const LIVE_MS = 10000;
const FILTER_DIMS = ["endpoint", "method", "api_key"];

const state = {
  key: null, range: "24h", rangeChosen: false, start: null, end: null, filters: {},
  sort: { col: "requests", dir: "desc" }, paused: false,
  endpoints: [], generation: 0, loading: false,
};
let refreshTimer = null;
let liveTimer = null;

const call = (path, params) => api(path, params, state.key);
const callPipeline = (path, params) => api(path, params, state.key, PIPELINE);
const callAlerts = (path, params) => api(path, params, state.key, ALERTS);
const panelContext = () => ({ filters: state.filters, sort: state.sort, onFilter: addFilter });
const drawEndpoints = () => renderEndpoints(state.endpoints, panelContext());

// ---------- state in the URL hash ----------
function readHash() {
  const p = new URLSearchParams(location.hash.replace(/^#/, ""));
  const range = p.get("range");
  state.range = range === "custom" || RANGES[range] ? range : "24h";
  state.rangeChosen = state.range === range;
  state.start = p.get("start");
  state.end = p.get("end");
  if (state.range === "custom" && !(state.start && state.end)) state.range = "24h";
  state.filters = {};
  for (const d of FILTER_DIMS) if (p.get(d)) state.filters[d] = p.get(d);
}

function writeHash() {
  const p = { range: state.range };
  if (state.range === "custom") { p.start = state.start; p.end = state.end; }
  Object.assign(p, state.filters);
  history.replaceState(null, "", "#" + query(p));
}

function currentRange() {
  if (state.range === "custom") return { start: state.start, end: state.end };
  const end = new Date();
  const start = new Date(end.getTime() - RANGES[state.range] * 1000);
  return { start: start.toISOString(), end: end.toISOString() };
}

function update(patch) {
  Object.assign(state, patch, { rangeChosen: true });
  writeHash();
  renderControls();
  load();
}

// ---------- login ----------
function showLogin(message) {
  stopTimers();
  state.key = null;
  sessionStorage.removeItem(KEY_STORAGE);
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("key-input").value = "";
  $("key-input").focus();
}

function loginMessage(err) {
  if (err.status === 401) return "This key was not accepted (" + err.message + "). Check it and try again.";
  if (err.status === 403) return "This key cannot read analytics: " + err.message + ".";
  if (err.status === 0) return "Cannot reach the Turnstile API. Is it running?";
  return "Sign-in failed: " + err.message;
}

async function signIn(key) {
  const button = $("login-button");
  button.disabled = true;
  $("login-error").textContent = "";
  try {
    const live = await api("realtime", { window: "5m", top: 1 }, key);
    state.key = key;
    sessionStorage.setItem(KEY_STORAGE, key);
    $("login").hidden = true;
    $("app").hidden = false;
    $("project").textContent = live.project_id;
    renderLive(live);
    renderControls();
    load();
    scheduleLive();
  } catch (err) {
    showLogin(loginMessage(err));
  } finally {
    button.disabled = false;
  }
}

// ---------- loading ----------
function stopTimers() {
  clearTimeout(refreshTimer);
  clearTimeout(liveTimer);
  refreshTimer = liveTimer = null;
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  const every = REFRESH_MS[state.range];
  if (state.paused || !every) return;
  refreshTimer = setTimeout(() => { if (!document.hidden) load(); else scheduleRefresh(); }, every);
}

function scheduleLive() {
  clearTimeout(liveTimer);
  if (state.paused) return;
  liveTimer = setTimeout(async () => {
    if (!document.hidden) {
      try {
        const [live, health] = await Promise.all([call("realtime", { window: "5m", top: 1 }),
                                                  callPipeline("health")]);
        renderLive(live);
        renderPipeline(health);
      } catch (err) { if (err.status === 401) return showLogin(loginMessage(err)); }
    }
    scheduleLive();
  }, LIVE_MS);
}

async function load() {
  const gen = ++state.generation;
  const rng = currentRange();
  const f = state.filters;
  const filters = { endpoint: f.endpoint, method: f.method, api_key: f.api_key };
  const includes = FILTER_DIMS.filter((d) => f[d]).map((d) => d + ":" + f[d]);
  $("main").setAttribute("aria-busy", "true");
  document.documentElement.dataset.state = "loading";

  const historical = call("historical", { start: rng.start, end: rng.end, granularity: "auto", ...filters });
  const parts = {
    historical,
    status: historical.then((hist) => call(
      "timeseries/" + encodeURIComponent(rng.start) + "/" + encodeURIComponent(rng.end) + "/",
      { value: "requests", aggregation: "count", granularity: String(hist.granularity_seconds),
        group: "status_class", include: includes })),
    endpoints: call("endpoints", { start: rng.start, end: rng.end, limit: 50, ...filters }),
    consumers: call("consumers", { start: rng.start, end: rng.end, limit: 10, ...filters }),
    countries: call("countries", { start: rng.start, end: rng.end, limit: 8, ...filters }),
    pipeline: callPipeline("health"),
    deadLetters: callPipeline("dead-letters", { since: rng.start, until: rng.end, limit: 1 }),
    alertsFiring: callAlerts("firing"),
    alertsHistory: callAlerts("events", { start: rng.start, end: rng.end, limit: 200 }),
  };
  const names = Object.keys(parts);
  const settled = await Promise.allSettled(Object.values(parts));
  if (gen !== state.generation) return; // a newer load superseded this one
  const results = {};
  const errors = [];
  settled.forEach((s, i) => {
    if (s.status === "fulfilled") results[names[i]] = s.value;
    else errors.push([names[i], s.reason]);
  });
  if (errors.some(([, e]) => e.status === 401)) {
    return showLogin("Your key is no longer accepted (unknown or revoked). Sign in again.");
  }
  if (opensOnLastHour(results.historical)) return update({ range: "1h" });
  const render = {
    historical: renderHistorical, status: renderStatus, countries: renderCountries,
    endpoints: (body) => { state.endpoints = body.endpoints; drawEndpoints(); },
    consumers: (body) => renderConsumers(body, panelContext()),
    pipeline: renderPipeline, deadLetters: renderDeadLetters,
    alertsFiring: renderFiring, alertsHistory: renderHistory,
  };
  for (const name of names) {
    if (results[name]) {
      try { render[name](results[name]); }
      catch (e) { errors.push([name, e]); }
    }
  }
  renderErrors(errors);
  $("updated").textContent = "Updated " + clockFmt.format(new Date());
  $("main").setAttribute("aria-busy", "false");
  document.documentElement.dataset.state = errors.length ? "error" : "ready";
  document.documentElement.dataset.loaded = query({ range: state.range, ...state.filters });
  scheduleRefresh();
}

// A new stack has minutes of traffic: on the default 24 h range they are one hourly bar and
// a per-minute average over 24 h. Opened without a chosen range, the page then shows 1 h.
function opensOnLastHour(hist) {
  if (state.rangeChosen || state.range !== "24h" || !hist) return false;
  state.rangeChosen = true;
  const since = Date.now() - 2 * 3600 * 1000; // the last hour spans at most two hourly buckets
  const busy = hist.series.filter((p) => p.requests > 0);
  return busy.length > 0 && busy.every((p) => Date.parse(p.ts) >= since);
}

function renderErrors(errors) {
  const banner = $("error");
  banner.replaceChildren();
  if (!errors.length) { banner.hidden = true; return; }
  const labels = { historical: "Charts and totals", status: "Status codes",
                   endpoints: "Endpoints", consumers: "Consumers", countries: "Countries",
                   pipeline: "Pipeline health", deadLetters: "Dead letters",
                   alertsFiring: "Firing alerts", alertsHistory: "Alert history" };
  banner.append(h("strong", { text: "Some data could not be loaded. " }));
  for (const [name, err] of errors) {
    const status = err.status ? " (" + err.status + ")" : "";
    banner.append(h("span", { class: "banner-item",
                              text: labels[name] + status + ": " + err.message + ". " }));
  }
  banner.append(h("span", { text: "Showing the last data received; retrying automatically." }));
  banner.hidden = false;
}

// ---------- rendering: controls ----------
function renderControls() {
  for (const b of $("ranges").querySelectorAll("button")) {
    b.setAttribute("aria-pressed", String(b.dataset.range === state.range));
  }
  $("custom").hidden = state.range !== "custom";
  const t = $("refresh-toggle");
  t.setAttribute("aria-pressed", String(!state.paused));
  t.textContent = state.paused ? "Auto-refresh paused" : "Auto-refresh on";
  const chips = $("chips");
  chips.replaceChildren();
  const f = state.filters;
  const chip = (label, value, dims) => chips.append(h("li", { class: "chip" },
    h("span", { class: "chip-label", text: label }), h("span", { text: value }),
    h("button", { type: "button", class: "chip-x", "aria-label": "Remove filter " + label + " " + value,
                  onclick: () => removeFilter(dims) }, "×")));
  if (f.endpoint) chip("Endpoint", (f.method ? f.method + " " : "") + f.endpoint, ["endpoint", "method"]);
  else if (f.method) chip("Method", f.method, ["method"]);
  if (f.api_key) chip("Consumer", f.api_key, ["api_key"]);
}

function removeFilter(dims) {
  const filters = { ...state.filters };
  for (const d of dims) delete filters[d];
  update({ filters });
}

function addFilter(patch) {
  update({ filters: { ...state.filters, ...patch } });
}

// ---------- rendering: KPIs and charts ----------
function fmtSpan(minutes) {
  if (minutes < 120) return Math.round(minutes) + " min";
  if (minutes < 2 * 1440) return Math.round(minutes / 60) + " h";
  return Math.round(minutes / 1440) + " days";
}

function renderHistorical(hist) {
  const series = hist.series;
  let requests = 0, errors = 0, serverErrors = 0, latencyWeight = 0, latencySum = 0;
  let peak = null;
  for (const p of series) {
    requests += p.requests; errors += p.errors; serverErrors += p.server_errors;
    if (p.latency_avg_ms !== null) { latencySum += p.latency_avg_ms * p.requests; latencyWeight += p.requests; }
    if (p.latency_p95_ms !== null && (peak === null || p.latency_p95_ms > peak.latency_p95_ms)) peak = p;
  }
  const start = Date.parse(hist.start);
  const end = Math.min(Date.parse(hist.end), Date.now());
  const minutes = Math.max((end - start) / 60000, 1);
  const errorRate = requests ? errors / requests : 0;
  const serverRate = requests ? serverErrors / requests : 0;
  const avg = latencyWeight ? latencySum / latencyWeight : null;

  setFigure("kpi-requests", requests, fmtInt(requests));
  $("kpi-requests-sub").textContent = fmtBytes(series.reduce((a, p) => a + p.bytes_out, 0)) + " sent";
  setFigure("kpi-rpm", requests / minutes, fmtRate(requests / minutes));
  const step = hist.granularity_seconds;
  const peakRpm = Math.max(0, ...series.map((p) => p.requests / (step / 60)));
  const bucketName = { 60: "minute", 3600: "hour", 86400: "day" }[step] || step / 60 + " min";
  $("kpi-rpm-sub").textContent = "average over " + fmtSpan(minutes) + "; busiest " + bucketName +
    " " + fmtRate(peakRpm) + "/min";
  setFigure("kpi-error-rate", errorRate, fmtPct(errorRate));
  $("kpi-errors-sub").textContent = fmtInt(errors) + " responses ≥ 400";
  setFigure("kpi-5xx-rate", serverRate, fmtPct(serverRate));
  $("kpi-5xx-sub").textContent = fmtInt(serverErrors) + " server errors";
  setFigure("kpi-latency", avg, fmtMs(avg));
  $("kpi-latency-sub").textContent = peak
    ? "worst p95 " + fmtMs(peak.latency_p95_ms) + " at " + timeFmt.format(new Date(peak.ts)) : "no requests";
  for (const [id, level] of [["kpi-error-rate", errorRate], ["kpi-5xx-rate", serverRate]]) {
    $(id).closest(".kpi").dataset.level = level >= 0.05 ? "bad" : level >= 0.01 ? "warn" : "ok";
  }

  const bucket = { 60: "1-minute", 3600: "hourly", 86400: "daily" }[step] || (step / 60 + "-minute");
  $("range-label").textContent = timeFmt.format(new Date(start)) + " → " +
    (Date.parse(hist.end) > Date.now() ? "now" : timeFmt.format(new Date(Date.parse(hist.end)))) +
    " · " + bucket + " buckets";

  const xs = series.map((p) => Date.parse(p.ts) / 1000);
  const perMin = step / 60;
  drawChart("chart-rpm", xs, [
    { label: perMin > 1 ? "Requests/min (" + bucket + " average)" : "Requests/min",
      color: "--c-primary", fill: true, bars: true,
      values: series.map((p) => p.requests / perMin), fmt: fmtRate },
    { label: "Errors/min", color: "--c-bad", values: series.map((p) => p.errors / perMin), fmt: fmtRate },
  ]);
  drawChart("chart-errors", xs, [
    { label: "Error rate", color: "--c-warn", fill: true,
      values: series.map((p) => (p.requests ? p.error_rate * 100 : null)), fmt: fmtPctAxis },
    { label: "5xx rate", color: "--c-bad",
      values: series.map((p) => (p.requests ? p.server_error_rate * 100 : null)), fmt: fmtPctAxis },
  ], fmtPctAxis);
  drawChart("chart-latency", xs, [
    { label: "p50", color: "--c-p50", values: series.map((p) => p.latency_p50_ms), fmt: fmtMs },
    { label: "p95", color: "--c-p95", values: series.map((p) => p.latency_p95_ms), fmt: fmtMs },
    { label: "p99", color: "--c-p99", values: series.map((p) => p.latency_p99_ms), fmt: fmtMs },
  ], fmtMsAxis);
  setChartRange(xs); // alert markers follow the charts' time axis
  $("main").classList.toggle("empty", requests === 0);
}

function renderLive(live) {
  const t = live.totals;
  $("live-rpm").textContent = fmtRate(t.requests_per_minute);
  $("live-errors").textContent = fmtPct(t.error_rate);
  $("live-p95").textContent = fmtMs(t.latency_p95_ms);
  $("live").dataset.level = level(t.error_rate) || "ok";
}

// ---------- wiring ----------
function toLocalInput(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
    pad(d.getHours()) + ":" + pad(d.getMinutes());
}

function init() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) { $("login-error").textContent = "Enter a read key."; return; }
    signIn(key);
  });
  $("logout").addEventListener("click", () => showLogin("Signed out."));
  $("ranges").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-range]");
    if (!b) return;
    if (b.dataset.range === "custom") {
      const rng = currentRange();
      $("custom-start").value = toLocalInput(state.start || rng.start);
      $("custom-end").value = toLocalInput(state.end || rng.end);
      $("custom").hidden = false;
      $("custom-start").focus();
      return;
    }
    update({ range: b.dataset.range, start: null, end: null });
  });
  $("custom").addEventListener("submit", (e) => {
    e.preventDefault();
    const start = new Date($("custom-start").value), end = new Date($("custom-end").value);
    if (isNaN(start) || isNaN(end) || start >= end) {
      $("custom-error").textContent = "Pick a start before the end.";
      return;
    }
    $("custom-error").textContent = "";
    update({ range: "custom", start: start.toISOString(), end: end.toISOString() });
  });
  $("refresh-toggle").addEventListener("click", () => {
    state.paused = !state.paused;
    renderControls();
    if (state.paused) stopTimers(); else { load(); scheduleLive(); }
  });
  for (const th of $("endpoints").querySelectorAll("th[data-sort]")) {
    const label = th.textContent;
    const btn = h("button", { type: "button", class: "sort", text: label, onclick: () => {
      const col = th.dataset.sort;
      const dir = state.sort.col === col && state.sort.dir === "desc" ? "asc" : "desc";
      state.sort = { col, dir: col === "endpoint" && state.sort.col !== col ? "asc" : dir };
      drawEndpoints();
    } });
    th.replaceChildren(btn);
  }
  window.addEventListener("hashchange", () => { readHash(); renderControls(); if (state.key) load(); });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.key && !state.paused) { load(); scheduleLive(); }
  });
  // charts take their colours from CSS variables: rebuild them when the theme flips
  window.matchMedia("(prefers-color-scheme: light)").addEventListener("change", () => {
    resetCharts();
    if (state.key) load();
  });
  if (typeof ResizeObserver !== "undefined") {
    let pending = null;
    new ResizeObserver(() => { cancelAnimationFrame(pending); pending = requestAnimationFrame(resizeCharts); })
      .observe($("main"));
  }
  readHash();
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) signIn(saved); else showLogin("");
}

init();
