/* Number, time and name formatting for the dashboard (browser locale, local time). */

const nf = new Intl.NumberFormat(undefined);
const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
export const fmtInt = (n) => (Math.abs(n) >= 1e6 ? compact.format(n) : nf.format(Math.round(n)));
export const fmtRate = (n) => (n >= 100 ? nf.format(Math.round(n)) : nf1.format(n));

export function fmtPct(rate) {
  if (rate === null || rate === undefined || !isFinite(rate)) return "–";
  const p = rate * 100;
  if (p === 0) return "0%";
  if (p < 0.01) return "<0.01%";
  return (p < 1 ? p.toFixed(2) : p.toFixed(1)) + "%";
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined || !isFinite(ms)) return "–";
  if (ms >= 1000) return (ms / 1000).toFixed(2) + " s";
  if (ms >= 100) return Math.round(ms) + " ms";
  if (ms >= 10) return ms.toFixed(1) + " ms";
  return ms.toFixed(2) + " ms";
}

export function fmtBytes(b) {
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let i = 0;
  while (b >= 1000 && i < units.length - 1) { b /= 1000; i++; }
  return (i === 0 ? Math.round(b) : b.toFixed(1)) + " " + units[i];
}

export const timeFmt = new Intl.DateTimeFormat(undefined, {
  day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
export const clockFmt = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit" });
let regionNames = null;
try { regionNames = new Intl.DisplayNames(undefined, { type: "region" }); } catch (e) { /* old browser */ }

export function countryName(code) {
  if (!code) return "Unknown";
  try { return (regionNames && regionNames.of(code)) || code; } catch (e) { return code; }
}

export const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
export const fmtPctAxis = (v) => nf2.format(v) + "%";
export const fmtMsAxis = (v) => (v >= 1000 ? nf2.format(v / 1000) + " s" : nf2.format(v) + " ms");

// Colour level of an error rate: >= 5 % bad, >= 1 % warn.
export const level = (rate) => (rate >= 0.05 ? "bad" : rate >= 0.01 ? "warn" : "");
