/* Time-series charts on uPlot (vendored, global ``uPlot``), coloured from CSS variables. */

import { nf2 } from "./format.js";

const CHART_HEIGHT = 210; // plot area; the legend below it wraps as it needs
const charts = {};

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// A value between two gaps draws no line: show the points of such sparse series.
function isolated(values) {
  return values.some((v, i) => v !== null && (values[i - 1] ?? null) === null &&
                               (values[i + 1] ?? null) === null);
}

export function drawChart(id, xs, lines, yFmt) {
  const el = document.getElementById(id);
  const data = [xs, ...lines.map((l) => l.values)];
  const key = lines.map((l) => l.label + (l.bars ? "" : isolated(l.values))).join("|") + xs.length;
  const existing = charts[id];
  if (existing && existing.key === key) { existing.plot.setData(data); return; }
  if (existing) existing.plot.destroy();
  el.replaceChildren();
  if (typeof uPlot === "undefined") { el.textContent = "Chart library failed to load."; return; }
  const step = xs.length > 1 ? xs[1] - xs[0] : 60;
  const axis = { stroke: cssVar("--c-muted"), grid: { stroke: cssVar("--c-grid"), width: 1 },
                 ticks: { stroke: cssVar("--c-grid"), width: 1 }, font: "12px " + cssVar("--font") };
  const opts = {
    width: Math.max(el.clientWidth, 200), height: CHART_HEIGHT,
    legend: { show: true, live: true },
    cursor: { points: { size: 6 } },
    // buckets span [ts, ts + step): leave room for the last one
    scales: { x: { time: true, range: (u, min, max) => [min, max + step] }, y: { range: (u, min, max) => [0, Math.max(max * 1.1, 1)] } },
    axes: [axis, { ...axis, size: 64,
                   values: (u, ticks) => ticks.map((v) => (yFmt ? yFmt(v) : nf2.format(v))) }],
    series: [{ label: "Time" }, ...lines.map((l) => ({
      label: l.label, stroke: cssVar(l.color), width: l.bars ? 1 : 2,
      fill: l.fill ? cssVar(l.color) + (l.bars ? "aa" : "22") : undefined,
      paths: l.bars && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 40], align: 1 }) : undefined,
      points: { show: !l.bars && (xs.length <= 2 || isolated(l.values)), size: 6, fill: cssVar(l.color) },
      value: (u, v) => (v === null || v === undefined ? "–" : l.fmt(v)),
    }))],
  };
  charts[id] = { key, plot: new uPlot(opts, data, el) };
}

export function resizeCharts() {
  for (const [id, c] of Object.entries(charts)) {
    const el = document.getElementById(id);
    c.plot.setSize({ width: Math.max(el.clientWidth, 200), height: CHART_HEIGHT });
  }
}

/** Drop every chart, so the next draw takes the current theme's colours. */
export function resetCharts() {
  for (const id of Object.keys(charts)) { charts[id].plot.destroy(); delete charts[id]; }
}
