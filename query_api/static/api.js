/* The query API's JSON routes (analytics by default, or another root such as PIPELINE): bearer key, problem+json errors turned into ApiError. */

export const ANALYTICS = "api/v1/analytics/";
export const PIPELINE = "api/v1/pipeline/";

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title || ("HTTP " + status));
    this.status = status;
    this.title = title;
  }
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") continue;
    for (const item of Array.isArray(v) ? v : [v]) q.append(k, item);
  }
  return q.toString();
}

export async function api(path, params, key, root = ANALYTICS) {
  const url = root + path + (params ? "?" + query(params) : "");
  let resp;
  try {
    resp = await fetch(url, { headers: { Authorization: "Bearer " + key,
                                         Accept: "application/json" },
                              cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "Network error", "cannot reach the API (" + e.message + ")");
  }
  let body = null;
  try { body = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok) {
    let detail = body && (body.detail || body.title);
    if (body && Array.isArray(body.invalid_params) && body.invalid_params.length) {
      detail = body.invalid_params.map((p) => p.name + ": " + p.reason).join("; ");
    }
    if (typeof detail !== "string") detail = resp.statusText || "request failed";
    throw new ApiError(resp.status, body && body.title, detail);
  }
  if (body === null) throw new ApiError(resp.status, "Bad response", "the API did not answer JSON");
  return body;
}
