// The /v1 REST API as the dashboard calls it: JSON in, ApiError out.

export const API_ROOT = new URL("v1/", document.baseURI);
export const KEY_STORAGE = "trainyard.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function saveApiKey(key) {
  try {
    localStorage.setItem(KEY_STORAGE, key);
  } catch {
    /* storage disabled */
  }
}

export function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}`, "X-API-Key": key } : {};
}

export const apiUrl = (path) => new URL(path, API_ROOT);

/** A request to the API: the JSON answer (null for 204), or an ApiError. */
export async function api(path, method = "GET", body = undefined) {
  let resp;
  const headers = { Accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    resp = await fetch(apiUrl(path), {
      method,
      headers,
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network error");
  }
  if (!resp.ok) {
    let detail = resp.statusText || `HTTP ${resp.status}`;
    try {
      const body = await resp.json();
      if (body && body.detail !== undefined) {
        detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      }
    } catch {
      /* not JSON */
    }
    throw new ApiError(resp.status, detail);
  }
  if (resp.status === 204) return null;
  return resp.json();
}

/** A query string from an object: arrays repeat their key, empty values are left out. */
export function qs(params) {
  const out = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    for (const item of Array.isArray(v) ? v : [v]) {
      if (item !== null && item !== undefined && item !== "") out.append(k, String(item));
    }
  }
  const text = out.toString();
  return text ? `?${text}` : "";
}

export const jobPath = (id, rest = "") => `jobs/${encodeURIComponent(id)}${rest}`;
