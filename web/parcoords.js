// A parallel-coordinates plot on a canvas: one vertical axis per dimension (a sweep's
// parameters, then its metric), one polyline per item (a trial), coloured by the last
// dimension. Numeric axes are linear, or logarithmic when positive and spanning 30x or more
// (1.5 decades); anything else is categorical (its values spread evenly). Hovering a line
// shows its item; the plot says what it drew in data-lines / data-axes.

import { cssColor } from "./chart.js";
import { h, isNum } from "./util.js";

const PAD = { l: 36, r: 36, t: 34, b: 26 };

/** An axis' value -> [0, 1] (0 at the bottom), from the values it must show. */
export function axisScale(values) {
  const present = values.filter((v) => v !== null && v !== undefined);
  const numeric = present.length > 0 && present.every(isNum);
  if (!numeric) {
    const cats = [...new Set(present.map(String))].sort();
    const pos = (v) => (cats.length < 2 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1));
    return { kind: "categorical", ticks: cats.map((c) => ({ at: pos(c), text: c })), pos: (v) => (v === null || v === undefined ? null : pos(v)) };
  }
  let lo = Math.min(...present);
  let hi = Math.max(...present);
  const log = lo > 0 && hi / lo >= 30;
  const f = log ? Math.log10 : (x) => x;
  if (hi === lo) {
    lo -= Math.abs(lo) * 0.1 || 1;
    hi += Math.abs(hi) * 0.1 || 1;
  }
  const a = f(lo);
  const b = f(hi);
  const pos = (v) => (isNum(v) ? (f(v) - a) / (b - a) : null);
  const fmt = (v) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-2 && v !== 0) ? v.toExponential(1) : String(Number(v.toPrecision(3))));
  const ticks = [lo, hi].map((v) => ({ at: pos(v), text: fmt(v) }));
  return { kind: log ? "log" : "linear", ticks, pos };
}

export class ParallelCoordinates {
  constructor({ testid = "parcoords", height = 300, tooltip = null, onPick = null } = {}) {
    this.height = height;
    this.width = 800;
    this.tooltip = tooltip || document.getElementById("tooltip");
    this.onPick = onPick;
    this.canvas = h("canvas", { class: "parcoords-canvas", role: "img", "aria-label": "Parallel coordinates of the trials" });
    this.el = h("div", { class: "parcoords", "data-testid": testid, "data-lines": 0, "data-axes": 0 }, this.canvas);
    this.el.plot = this;
    this.axes = [];
    this.lines = [];
    this.hot = null;
    this.canvas.addEventListener("mousemove", (ev) => this.hover(ev));
    this.canvas.addEventListener("mouseleave", () => this.setHot(null));
    this.canvas.addEventListener("click", () => {
      if (this.hot && this.onPick) this.onPick(this.hot);
    });
  }

  /** dims: [{name}], items: [{id, label, values: [one per dim]}]; the last dim colours the lines. */
  setData(dims, items, { higherIsBetter = true } = {}) {
    this.axes = dims.map((d, i) => ({ ...d, scale: axisScale(items.map((it) => it.values[i])) }));
    this.items = items;
    this.higherIsBetter = higherIsBetter;
    this.el.setAttribute("data-axes", String(this.axes.length));
    this.el.setAttribute("data-lines", String(items.filter((it) => it.values.some((v) => v !== null && v !== undefined)).length));
    this.draw();
  }

  setWidth(w) {
    const width = Math.max(300, Math.round(w || 800));
    if (width !== this.width) {
      this.width = width;
      this.draw();
    }
  }

  x(i) {
    const n = this.axes.length;
    return n < 2 ? this.width / 2 : PAD.l + (i / (n - 1)) * (this.width - PAD.l - PAD.r);
  }

  y(t) {
    return PAD.t + (1 - t) * (this.height - PAD.t - PAD.b);
  }

  /** A line's points: [x, y] per axis it has a value on. */
  points(item) {
    const out = [];
    this.axes.forEach((ax, i) => {
      const t = ax.scale.pos(item.values[i]);
      if (t !== null && isNum(t)) out.push([this.x(i), this.y(t)]);
    });
    return out;
  }

  lineColor(item) {
    const last = this.axes.length - 1;
    const t = last >= 0 ? this.axes[last].scale.pos(item.values[last]) : null;
    if (t === null || !isNum(t)) return cssColor("--border-strong");
    const good = this.higherIsBetter ? t : 1 - t;
    // bad -> good: amber to the accent
    const hue = 35 + good * (245 - 35);
    return `hsl(${hue}, 75%, ${50 - good * 8}%)`;
  }

  draw() {
    const dpr = window.devicePixelRatio || 1;
    const c = this.canvas;
    c.width = Math.round(this.width * dpr);
    c.height = Math.round(this.height * dpr);
    c.style.width = `${this.width}px`;
    c.style.height = `${this.height}px`;
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, this.width, this.height);
    if (!this.axes.length) return;
    const text = cssColor("--text");
    const muted = cssColor("--muted");
    const axisColor = cssColor("--border-strong");
    const panel = cssColor("--panel", "#fff");
    const font = getComputedStyle(document.body).fontFamily;
    // lines, the hovered one last and thick
    const items = (this.items || []).filter((it) => it !== this.hot);
    g.lineJoin = "round";
    for (const it of [...items, ...(this.hot ? [this.hot] : [])]) {
      const pts = this.points(it);
      if (pts.length < 1) continue;
      g.strokeStyle = this.lineColor(it);
      g.globalAlpha = this.hot && it !== this.hot ? 0.35 : 0.9;
      g.lineWidth = it === this.hot ? 3.5 : 1.6;
      g.beginPath();
      pts.forEach(([x, y], k) => (k ? g.lineTo(x, y) : g.moveTo(x, y)));
      g.stroke();
    }
    g.globalAlpha = 1;
    // axes on top
    this.axes.forEach((ax, i) => {
      const x = this.x(i);
      g.strokeStyle = axisColor;
      g.lineWidth = 1;
      g.beginPath();
      g.moveTo(x, this.y(1));
      g.lineTo(x, this.y(0));
      g.stroke();
      g.fillStyle = text;
      g.font = `600 12px ${font}`;
      g.textAlign = i === 0 ? "left" : i === this.axes.length - 1 ? "right" : "center";
      g.fillText(ax.name, i === 0 ? x - 8 : i === this.axes.length - 1 ? x + 8 : x, 16);
      g.fillStyle = muted;
      g.font = `11px ${font}`;
      const ticks = ax.scale.ticks.length > 8 ? ax.scale.ticks.filter((_, k) => k % Math.ceil(ax.scale.ticks.length / 8) === 0) : ax.scale.ticks;
      const last = i === this.axes.length - 1;
      for (const t of ticks) {
        const tx = last ? x - 5 : x + 5;
        const ty = this.y(t.at) + (t.at === 0 ? -3 : t.at === 1 ? 11 : 4);
        const w = g.measureText(t.text).width;
        g.fillStyle = panel; // a backing so the lines do not run through the label
        g.fillRect(last ? tx - w - 2 : tx - 2, ty - 10, w + 4, 13);
        g.fillStyle = muted;
        g.textAlign = last ? "right" : "left";
        g.fillText(t.text, tx, ty);
      }
    });
  }

  hover(ev) {
    const box = this.canvas.getBoundingClientRect();
    const mx = ev.clientX - box.left;
    const my = ev.clientY - box.top;
    let best = null;
    for (const it of this.items || []) {
      const pts = this.points(it);
      for (let k = 1; k < pts.length; k++) {
        const [x1, y1] = pts[k - 1];
        const [x2, y2] = pts[k];
        if (mx < Math.min(x1, x2) - 4 || mx > Math.max(x1, x2) + 4) continue;
        const t = x2 === x1 ? 0 : (mx - x1) / (x2 - x1);
        const d = Math.abs(my - (y1 + Math.max(0, Math.min(1, t)) * (y2 - y1)));
        if (!best || d < best.d) best = { d, it };
      }
    }
    this.setHot(best && best.d < 8 ? best.it : null, ev);
  }

  setHot(item, ev) {
    if (item !== this.hot) {
      this.hot = item;
      this.canvas.style.cursor = item && this.onPick ? "pointer" : "default";
      this.draw();
    }
    const tip = this.tooltip;
    if (!item) {
      tip.hidden = true;
      return;
    }
    tip.textContent = item.label;
    tip.hidden = false;
    tip.style.left = `${ev.clientX}px`;
    tip.style.top = `${ev.clientY - 6}px`;
  }
}
