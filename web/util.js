// DOM helpers and number/time formatting shared by every view.
//
// Everything user-supplied (job names, errors, log lines) goes into the DOM via
// textContent, never innerHTML.

export const SVG_NS = "http://www.w3.org/2000/svg";
export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
export const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];

/** Create an HTML element. attrs: class, text, on*, data-*, anything else as attribute. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

/** Create an SVG element. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  appendAll(el, children);
  return el;
}

function appendAll(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

function applyAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

export function setText(el, text) {
  const t = text === null || text === undefined ? "" : String(text);
  if (el.textContent !== t) el.textContent = t;
}

export function setAttr(el, name, value) {
  const v = String(value);
  if (el.getAttribute(name) !== v) el.setAttribute(name, v);
}

export const isNum = (v) => typeof v === "number" && Number.isFinite(v);

/** Runs `fn` once in the next animation frame however often it is requested before. */
export class FrameBatcher {
  constructor(fn) {
    this.fn = fn;
    this.pending = 0;
  }

  request() {
    if (!this.pending) this.pending = requestAnimationFrame(() => {
      this.pending = 0;
      this.fn();
    });
  }

  cancel() {
    if (this.pending) cancelAnimationFrame(this.pending);
    this.pending = 0;
  }
}

/** JSON.parse that also takes the bare NaN / Infinity Python's json module writes (as null). */
export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (err) {
    const fixed = text.replace(/"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)/g, (m, bare) => (bare ? "null" : m));
    if (fixed === text) throw err;
    return JSON.parse(fixed);
  }
}

// --------------------------------------------------------------- time ------

/** Parse an ISO timestamp; one without an offset is taken as UTC (what the service stores). */
export function parseTime(iso) {
  if (!iso) return null;
  let str = String(iso).trim().replace(" ", "T");
  // Trim sub-millisecond digits, which not every engine parses.
  str = str.replace(/(\.\d{3})\d+/, "$1");
  if (/T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(str)) str += "Z";
  const d = new Date(str);
  return Number.isNaN(d.getTime()) ? null : d;
}

const dateFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const clockFmt = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});

export function fmtAbsolute(iso) {
  const d = parseTime(iso);
  return d ? dateFmt.format(d) : "—";
}

/** A Unix time (seconds) as a wall-clock time with milliseconds, e.g. 14:03:27.512. */
export function fmtClock(unixSeconds) {
  if (!isNum(unixSeconds)) return "";
  const d = new Date(unixSeconds * 1000);
  return `${clockFmt.format(d)}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

export function fmtRelative(iso) {
  const d = parseTime(iso);
  if (!d) return "—";
  const sec = Math.round((Date.now() - d.getTime()) / 1000);
  if (sec < 5) return "just now";
  if (sec < 60) return `${sec}s ago`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min} min ago`;
  const hr = Math.floor(min / 60);
  if (hr < 24) return `${hr} h ago`;
  const days = Math.floor(hr / 24);
  if (days < 7) return `${days} d ago`;
  return dateFmt.format(d);
}

/** Seconds as "4.2s", "1m 05s", "2h 10m". */
export function fmtSeconds(exact) {
  if (!isNum(exact)) return "—";
  exact = Math.max(0, exact);
  if (exact < 10) return `${exact.toFixed(1)}s`;
  let sec = Math.round(exact);
  const hr = Math.floor(sec / 3600);
  sec -= hr * 3600;
  const min = Math.floor(sec / 60);
  sec -= min * 60;
  if (hr) return `${hr}h ${min}m`;
  if (min) return `${min}m ${sec}s`;
  return `${sec}s`;
}

export function fmtDuration(fromIso, toIso) {
  const a = parseTime(fromIso);
  if (!a) return "—";
  const b = toIso ? parseTime(toIso) : new Date();
  if (!b) return "—";
  return fmtSeconds((b - a) / 1000);
}

// ------------------------------------------------------------ numbers ------

export function fmtLoss(v) {
  if (!isNum(v)) return "—";
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(3);
  return v.toFixed(4);
}

export function fmtPct(v, digits = 1) {
  return isNum(v) ? `${(v * 100).toFixed(digits)}%` : "—";
}

export function fmtBytes(n) {
  if (!isNum(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

export function fmtInt(n) {
  return isNum(n) ? n.toLocaleString() : "—";
}

/** A rate such as samples/s: 950, 12.3k, 4.56M. */
export function fmtRate(v) {
  if (!isNum(v)) return "—";
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e7 ? 1 : 2)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(a >= 1e5 ? 0 : 1)}k`;
  if (a >= 100) return Math.round(v).toLocaleString();
  return v.toFixed(1);
}

/** A learning rate: 0.01, 0.0005, 3.00e-5. */
export function fmtLr(v) {
  if (!isNum(v)) return "—";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e4) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

/** A metric value by its name: accuracies as percentages, the rest as losses. */
export function fmtMetric(name, v) {
  return /accuracy|precision|recall|f1/.test(name || "") ? fmtPct(v, 2) : fmtLoss(v);
}
