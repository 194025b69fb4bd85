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

export async function api(path, method = "GET") {
  let resp;
  try {
    resp = await fetch(apiUrl(path), {
      method,
      headers: { Accept: "application/json", ...authHeaders() },
      cache: "no-store",
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
  return resp.json();
}

export const jobPath = (id, rest = "") => `jobs/${encodeURIComponent(id)}${rest}`;
