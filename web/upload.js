// A multipart upload with progress: XMLHttpRequest, because fetch reports no upload progress.

import { apiUrl, authHeaders } from "./api.js";
import { FormError, formError } from "./forms.js";

/**
 * POST `form` (a FormData) to the API path; `onProgress(sent, total)` as the body goes out.
 * Resolves with the answer's JSON, rejects with a FormError (status 0: network, -1: aborted).
 * Returns {promise, abort}.
 */
export function upload(path, form, onProgress) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", apiUrl(path));
    xhr.responseType = "text";
    xhr.setRequestHeader("Accept", "application/json");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener("progress", (ev) => {
      if (onProgress) onProgress(ev.loaded, ev.lengthComputable ? ev.total : null);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(formError(xhr.status, body, xhr.statusText || `HTTP ${xhr.status}`));
    });
    xhr.addEventListener("error", () => reject(new FormError(0, "network error during the upload", [])));
    xhr.addEventListener("abort", () => reject(new FormError(-1, "upload cancelled", [])));
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
