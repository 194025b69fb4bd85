// The runs table's optional columns: final metrics and config values (dotted paths such as
// training.optimizer.lr, as GET /v1/jobs/compare names them), which ones are shown (kept in
// localStorage), and the column chooser that picks them.

import { fmtLoss, fmtPct, h, isNum } from "./util.js";

const STORAGE = "trainyard.runColumns";
export const DEFAULT_COLUMNS = ["metric:val_accuracy", "metric:val_loss", "cfg:training.optimizer.lr", "cfg:training.batch_size"];

/** A job's config as {dotted path: value} (lists by index), like the server's flatten. */
export function flatten(value, prefix = "", out = {}) {
  if (value && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
    if (!entries.length) out[prefix] = value;
    for (const [k, v] of entries) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) out[prefix] = value;
  return out;
}

export const configOf = (job) => flatten({ model: job.model || {}, training: job.training || {} });

export function loadColumns() {
  try {
    const saved = JSON.parse(localStorage.getItem(STORAGE) || "null");
    if (Array.isArray(saved)) return saved.filter((c) => typeof c === "string");
  } catch {
    /* none saved */
  }
  return [...DEFAULT_COLUMNS];
}

export function saveColumns(cols) {
  try {
    localStorage.setItem(STORAGE, JSON.stringify(cols));
  } catch {
    /* storage disabled */
  }
}

export function columnLabel(col) {
  const [kind, name] = splitColumn(col);
  if (kind === "metric") return name;
  const short = name.replace(/^training\.(optimizer\.)?/, "").replace(/^model\./, "model.");
  return short;
}

export function splitColumn(col) {
  const i = col.indexOf(":");
  return [col.slice(0, i), col.slice(i + 1)];
}

const ACCURACY_LIKE = /accuracy|precision|recall|f1/;

export function fmtCell(col, job, config) {
  const [kind, name] = splitColumn(col);
  const v = kind === "metric" ? job.metrics?.[name] : config[name];
  if (kind === "metric") {
    if (!isNum(v)) return "—";
    return ACCURACY_LIKE.test(name) ? fmtPct(v, 1) : fmtLoss(v);
  }
  if (v === undefined || v === null) return "—";
  if (isNum(v)) return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** What the chooser offers: every metric and config path the loaded jobs have. */
export function available(jobs) {
  const metrics = new Set();
  const config = new Set();
  for (const j of jobs) {
    for (const [k, v] of Object.entries(j.metrics || {})) if (isNum(v)) metrics.add(k);
    for (const path of Object.keys(configOf(j))) {
      if (/^model\.layers\.\d+\./.test(path) && !/\.(type|out_features|hidden_size|out_channels)$/.test(path)) continue;
      config.add(path);
    }
  }
  return { metrics: [...metrics].sort(), config: [...config].sort() };
}

/** The chooser: a disclosure with a checkbox per column. onChange(columns) after each toggle. */
export class ColumnChooser {
  constructor(columns, onChange) {
    this.columns = columns;
    this.onChange = onChange;
    this.list = h("div", { class: "chooser-list", "data-testid": "column-list" });
    this.el = h("details", { class: "chooser", "data-testid": "column-chooser" },
      h("summary", { class: "btn" }, "Columns"), this.list);
    this.offered = "";
    // a click anywhere else closes it
    this.outside = (ev) => { if (this.el.open && !this.el.contains(ev.target)) this.close(false); };
    this.escape = (ev) => { if (this.el.open && ev.key === "Escape") this.close(true); };
    document.addEventListener("pointerdown", this.outside);
    document.addEventListener("keydown", this.escape);
  }

  close(focus) {
    this.el.open = false;
    if (focus) this.el.querySelector("summary").focus();
  }

  destroy() {
    document.removeEventListener("pointerdown", this.outside);
    document.removeEventListener("keydown", this.escape);
  }

  offer(jobs) {
    const { metrics, config } = available(jobs);
    for (const c of this.columns) {
      const [kind, name] = splitColumn(c);
      if (kind === "metric" && !metrics.includes(name)) metrics.push(name);
      if (kind === "cfg" && !config.includes(name)) config.push(name);
    }
    const key = JSON.stringify([metrics, config]);
    if (key === this.offered) {
      // the same offer: only the ticks follow (rebuilding would take the focus away)
      for (const box of this.list.querySelectorAll("input[data-column]")) box.checked = this.columns.includes(box.dataset.column);
      return;
    }
    this.offered = key;
    const box = (col, text) => h("label", { class: "chooser-item" },
      h("input", { type: "checkbox", checked: this.columns.includes(col), "data-column": col,
                   onchange: (ev) => this.toggle(col, ev.target.checked) }),
      h("span", { class: "mono" }, text));
    this.list.replaceChildren(
      h("div", { class: "chooser-group" }, "Final metrics"), ...metrics.map((m) => box(`metric:${m}`, m)),
      h("div", { class: "chooser-group" }, "Config"), ...config.map((p) => box(`cfg:${p}`, p)));
  }

  toggle(col, on) {
    const cols = this.columns.filter((c) => c !== col);
    if (on) cols.push(col);
    this.columns = cols;
    saveColumns(cols);
    this.onChange(cols);
  }
}
