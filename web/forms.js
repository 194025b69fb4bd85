// Forms against the API: send a JSON body, and put each 422's message at the field it names.
//
// Every 4xx of the API carries `detail: [{loc, pointer, msg}]`, pointer a JSON pointer into
// the request body ("/training/optimizer/SGD/lr"). A form lists its fields with the pointer
// prefixes they own; an error lands at the field with the longest matching prefix, and one no
// field owns lands in the form's general message.

import { ApiError, apiUrl, authHeaders } from "./api.js";
import { h, setText } from "./util.js";

/** An ApiError that keeps the answer's `detail` list (for field errors). */
export class FormError extends ApiError {
  constructor(status, message, detail) {
    super(status, message);
    this.detail = detail;
  }
}

/** The API's error answer as a FormError: its messages joined, its detail list kept. */
export function formError(status, body, fallback) {
  const detail = body && body.detail !== undefined ? body.detail : fallback;
  if (Array.isArray(detail)) {
    const msg = detail.map((d) => (d && d.msg ? `${d.pointer && d.pointer !== "/" ? `${d.pointer}: ` : ""}${d.msg}` : JSON.stringify(d))).join("; ");
    return new FormError(status, msg, detail);
  }
  return new FormError(status, typeof detail === "string" ? detail : JSON.stringify(detail), []);
}

/** POST (or `method`) a JSON body; the answer's JSON, or a FormError. */
export async function sendJson(path, body, method = "POST", { signal } = {}) {
  let resp;
  try {
    resp = await fetch(apiUrl(path), {
      method,
      headers: { "Content-Type": "application/json", Accept: "application/json", ...authHeaders() },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      signal,
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new FormError(0, "network error", []);
  }
  let answer = null;
  const text = await resp.text();
  try {
    answer = text ? JSON.parse(text) : null;
  } catch {
    answer = null;
  }
  if (!resp.ok) throw formError(resp.status, answer, resp.statusText || `HTTP ${resp.status}`);
  return answer;
}

/** A field's message slot: `<p role="alert">` under the input, hidden while empty. */
export function errorSlot(testid) {
  return h("p", { class: "field-error", "data-testid": testid, role: "alert", hidden: true });
}

/** Routes an error's details to the slots of the fields that own their pointers. */
export class FieldErrors {
  /** fields: [{prefix, slot, input?, named?}]: prefix a pointer ("/training/epochs") or an anchored
   *  RegExp; `named` prefixes the message with the rest of the pointer (a key inside a JSON editor; a
   *  function formats it);
   *  general: the slot for the rest. */
  constructor(fields, general) {
    this.fields = fields;
    this.general = general;
  }

  clear() {
    for (const f of [...this.fields, { slot: this.general }]) {
      if (!f.slot) continue;
      setText(f.slot, "");
      f.slot.hidden = true;
      if (f.input) f.input.removeAttribute("aria-invalid");
    }
  }

  /** Show `err` (a FormError or any Error); returns the first input it marked. */
  show(err) {
    this.clear();
    const details = err instanceof FormError && err.detail.length ? err.detail : [{ pointer: null, msg: err.message }];
    const messages = new Map();
    for (const d of details) {
      const f = this.owner(d.pointer);
      const slot = f ? f.slot : this.general;
      const rest = f ? d.pointer.slice(f.matched) : d.pointer;
      const where = rest && rest !== "/" && (!f || f.named)
        ? (typeof f?.named === "function" ? f.named(rest) : rest.replace(/^\//, "")) : "";
      const text = `${where ? `${where}: ` : ""}${d.msg}`;
      if (!messages.has(slot)) messages.set(slot, []);
      messages.get(slot).push(text);
      if (f && f.input) f.input.setAttribute("aria-invalid", "true");
    }
    for (const [slot, list] of messages) {
      setText(slot, list.join(" · "));
      slot.hidden = false;
    }
    const first = details.map((d) => this.owner(d.pointer)).find((f) => f && f.input);
    return first ? first.input : null;
  }

  /** The field owning `pointer` (longest match wins), with how much of it matched. */
  owner(pointer) {
    if (typeof pointer !== "string") return null;
    let best = null;
    let bestLen = -1;
    for (const f of this.fields) {
      const len = matchLength(f.prefix, pointer);
      if (len > bestLen) {
        best = f;
        bestLen = len;
      }
    }
    return best ? { ...best, matched: bestLen } : null;
  }
}

/** How much of `pointer` a field's prefix (a string, or a RegExp anchored with ^) takes; -1: none. */
function matchLength(prefix, pointer) {
  if (prefix instanceof RegExp) {
    const m = pointer.match(prefix);
    return m && m.index === 0 ? m[0].length : -1;
  }
  return pointer === prefix || pointer.startsWith(`${prefix}/`) ? prefix.length : -1;
}

/** Calls fn `ms` after the last call, with the newest arguments (live validation). */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
