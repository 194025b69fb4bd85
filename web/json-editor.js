// A JSON editor: a monospace textarea that checks its text as it is typed and says where a
// syntax error is (line and column), with a button that formats the text. Numbers in lists
// stay on one line, so a sample of 64 values is one line, not 64. Tab is left to move focus.

import { h, setText } from "./util.js";

/** JSON text with objects indented; lists of scalars, and short objects of scalars, kept on one line. */
export function formatJson(value, indent = 0) {
  const pad = "  ".repeat(indent);
  const inner = "  ".repeat(indent + 1);
  if (Array.isArray(value)) {
    if (!value.length) return "[]";
    if (value.every((v) => v === null || typeof v !== "object")) return `[${value.map((v) => JSON.stringify(v)).join(", ")}]`;
    return `[\n${value.map((v) => inner + formatJson(v, indent + 1)).join(",\n")}\n${pad}]`;
  }
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (!keys.length) return "{}";
    const oneLine = `{${keys.map((k) => `${JSON.stringify(k)}: ${JSON.stringify(value[k])}`).join(", ")}}`;
    if (Object.values(value).every((v) => v === null || typeof v !== "object") && oneLine.length + indent * 2 <= 88) return oneLine;
    return `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${formatJson(value[k], indent + 1)}`).join(",\n")}\n${pad}}`;
  }
  return JSON.stringify(value);
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** The offset of the first JSON syntax error in `text` (its length for an early end), or -1 if
 *  there is none. JSON.parse's messages do not always say where (V8: "Unexpected token"). */
export function syntaxErrorAt(text) {
  let i = 0;
  const fail = () => {
    throw i;
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i += 1;
  };
  const string = () => {
    i += 1;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') {
        i += 1;
        return;
      }
      if (c < " ") fail();
      i += c === "\\" ? 2 : 1;
    }
    fail();
  };
  const list = (close, item) => {
    i += 1;
    ws();
    if (text[i] === close) {
      i += 1;
      return;
    }
    for (;;) {
      item();
      ws();
      if (text[i] === close) {
        i += 1;
        return;
      }
      if (text[i] !== ",") fail();
      i += 1;
    }
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      return list("}", () => {
        ws();
        if (text[i] !== '"') fail();
        string();
        ws();
        if (text[i] !== ":") fail();
        i += 1;
        value();
      });
    }
    if (c === "[") return list("]", value);
    if (c === '"') return string();
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (m) {
      i += m[0].length;
      return undefined;
    }
    for (const word of ["true", "false", "null"]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return undefined;
      }
    }
    return fail();
  };
  try {
    value();
    ws();
    if (i < text.length) fail();
    return -1;
  } catch (at) {
    if (typeof at === "number") return at;
    throw at;
  }
}

/** A syntax error of `text` as "line L, column C: unexpected ..." (null if it parses). */
export function describeSyntaxError(text) {
  const at = syntaxErrorAt(text);
  if (at < 0) return null;
  const lines = text.slice(0, at).split("\n");
  const what = at >= text.length ? "the text ends too early" : `unexpected ${JSON.stringify(text[at])}`;
  return `line ${lines.length}, column ${lines[lines.length - 1].length + 1}: ${what}`;
}

export class JsonEditor {
  /** opts: id, testid, label, rows, placeholder, value (a JSON value), hint, emptyValue (what "" means). */
  constructor(opts) {
    this.opts = opts;
    this.listeners = [];
    this.input = h("textarea", {
      id: opts.id, class: "json-input", rows: opts.rows || 8, spellcheck: "false", autocomplete: "off",
      autocapitalize: "off", "data-testid": opts.testid, placeholder: opts.placeholder || "",
      "aria-describedby": `${opts.id}-error`,
      oninput: () => {
        this.check();
        for (const fn of this.listeners) fn();
      },
    });
    this.slot = h("p", { class: "field-error", id: `${opts.id}-error`, "data-testid": `${opts.testid}-error`, role: "alert", hidden: true });
    this.format = h("button", { class: "link-button", type: "button", "data-testid": `${opts.testid}-format`,
                                onclick: () => this.reformat() }, "Format");
    this.el = h("div", { class: "field json-field" },
      h("div", { class: "json-head" }, h("label", { for: opts.id }, opts.label || "JSON"), this.format),
      opts.hint ? h("p", { class: "field-note" }, opts.hint) : null,
      this.input, this.slot);
    if (opts.value !== undefined) this.setValue(opts.value);
  }

  onChange(fn) {
    this.listeners.push(fn);
  }

  text() {
    return this.input.value;
  }

  setValue(value) {
    this.input.value = formatJson(value);
    this.check();
  }

  reformat() {
    const r = this.parse();
    if (r.ok && this.input.value.trim()) this.setValue(r.value);
  }

  markInvalid(bad) {
    if (bad) this.input.setAttribute("aria-invalid", "true");
    else this.input.removeAttribute("aria-invalid");
  }

  /** The parsed value ({ok: true, value}) or the syntax error shown under the editor ({ok: false}). */
  parse() {
    const text = this.input.value;
    if (!text.trim() && "emptyValue" in this.opts) {
      this.clearError();
      return { ok: true, value: this.opts.emptyValue };
    }
    try {
      const value = JSON.parse(text);
      this.clearError();
      return { ok: true, value };
    } catch (err) {
      const where = describeSyntaxError(text);
      this.showError(`Not valid JSON${where ? ` at ${where}` : `: ${err.message}`}`);
      return { ok: false, error: err };
    }
  }

  /** Syntax only, as the user types. */
  check() {
    return this.parse().ok;
  }

  showError(msg) {
    setText(this.slot, msg);
    this.slot.hidden = false;
    this.markInvalid(true);
  }

  clearError() {
    setText(this.slot, "");
    this.slot.hidden = true;
    this.markInvalid(false);
  }
}
