// Files from the API (checkpoints, exported models) saved by the browser: fetched with the
// API key's header (a plain link cannot carry it) and handed over as a blob, so a refusal
// (a 422 naming the layer ONNX cannot express) is shown on the page, not saved as the file.

import { apiUrl, authHeaders } from "./api.js";
import { FormError, formError } from "./forms.js";
import { h } from "./util.js";

/** The filename a Content-Disposition header gives, else null. */
function dispositionName(header) {
  const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(header || "");
  return m ? decodeURIComponent(m[1]) : null;
}

/** Fetch `url` (absolute, or an API path) and save it; resolves with the name it was saved as. */
export async function download(url, fallbackName) {
  let resp;
  try {
    resp = await fetch(/^https?:|^\//.test(url) ? url : apiUrl(url), { headers: authHeaders(), cache: "no-store" });
  } catch {
    throw new FormError(0, "network error", []);
  }
  if (!resp.ok) {
    let body = null;
    try {
      body = await resp.json();
    } catch {
      body = null;
    }
    throw formError(resp.status, body, resp.statusText || `HTTP ${resp.status}`);
  }
  const name = dispositionName(resp.headers.get("Content-Disposition")) || fallbackName;
  saveBlob(await resp.blob(), name);
  return name;
}

/** Hand a blob to the browser as a download named `name`. */
export function saveBlob(blob, name) {
  const href = URL.createObjectURL(blob);
  const a = h("a", { href, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10000);
}
