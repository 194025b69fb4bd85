// Line charts on uPlot (vendored, web/vendor/uplot/): canvas, fast on 100k+ points.
//
// A Series holds one metric's points sorted by x (the step, or the epoch), with a
// later point for the same x replacing the earlier one (a resumed attempt repeats
// the steps of a lost one). A LineChart draws its series on one uPlot: on render it
// joins the series on the union of their x values (uPlot wants one x array) and
// hands uPlot the data only when a series changed. uPlot itself thins what it draws
// to the canvas's pixels, so long curves cost a pass, not a path per point.
//
// For tests and readers the chart's root element carries data-testid / data-points,
// and each series an (unseen) element with its own data-testid, data-points (what the
// Series holds) and data-drawn (the values handed to uPlot). Hovering shows every
// series' value nearest the cursor.

import uPlot from "./vendor/uplot/uPlot.esm.js";
import { fmtInt, h, isNum, setAttr } from "./util.js";

const H = 260;

export class Series {
  constructor(name, kind = "step") {
    this.name = name;
    this.kind = kind;
    this.points = []; // {x, y, epoch}, sorted by x, one per x
    this.index = new Map(); // x -> position in points
    this.rewrites = 0; // bumped whenever a change is not an append
    this.minY = Infinity;
    this.maxY = -Infinity;
    this.extentStale = false;
  }

  get length() {
    return this.points.length;
  }

  last() {
    return this.points[this.points.length - 1];
  }

  /** Add the point at x, or replace the one already there. */
  upsert(x, y, epoch) {
    if (!isNum(x) || !isNum(y)) return;
    const pts = this.points;
    const at = this.index.get(x);
    if (at !== undefined) {
      const p = pts[at];
      if (p.y !== y || p.epoch !== epoch) {
        p.y = y;
        p.epoch = epoch;
        this.rewrites += 1;
        this.extentStale = true;
      }
      return;
    }
    const pt = { x, y, epoch };
    const n = pts.length;
    if (n === 0 || x > pts[n - 1].x) {
      pts.push(pt);
      this.index.set(x, n);
    } else {
      const i = lowerBound(pts, x);
      pts.splice(i, 0, pt);
      for (let j = i; j < pts.length; j++) this.index.set(pts[j].x, j);
      this.rewrites += 1;
    }
    if (y < this.minY) this.minY = y;
    if (y > this.maxY) this.maxY = y;
  }

  extent() {
    if (this.extentStale) {
      this.minY = Infinity;
      this.maxY = -Infinity;
      for (const p of this.points) {
        if (p.y < this.minY) this.minY = p.y;
        if (p.y > this.maxY) this.maxY = p.y;
      }
      this.extentStale = false;
    }
    const n = this.points.length;
    return n ? { x0: this.points[0].x, x1: this.points[n - 1].x, y0: this.minY, y1: this.maxY } : null;
  }

  /** The point nearest to x (by x). */
  nearest(x) {
    const pts = this.points;
    if (!pts.length) return null;
    const i = lowerBound(pts, x);
    if (i <= 0) return pts[0];
    if (i >= pts.length) return pts[pts.length - 1];
    return x - pts[i - 1].x <= pts[i].x - x ? pts[i - 1] : pts[i];
  }
}

function lowerBound(pts, x) {
  let lo = 0;
  let hi = pts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (pts[mid].x < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function niceStep(range, count) {
  const raw = range / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const nice = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return nice * mag;
}
/** A tick's label with as many digits as the tick step needs; very large or small ones as 1.5e-4. */
export function tickLabel(v, step, ref = Math.abs(v)) {
  if (v === 0) return "0";
  const a = Math.max(Math.abs(v), ref);
  if (a >= 1e5 || a < 1e-3 || step < 1e-5) {
    // as many significant digits on every tick as the largest one needs
    const digits = Math.min(3, Math.max(0, Math.floor(Math.log10(a) + 1e-9) - Math.floor(Math.log10(step) + 1e-9)));
    return v.toExponential(digits);
  }
  return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

/** A CSS custom property's value on the page (the palette lives in style.css). */
export function cssColor(name, fallback = "#667085") {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/** A #rrggbb colour with alpha, for bands. */
export function withAlpha(color, a) {
  const m = /^#([0-9a-f]{6})$/i.exec(color);
  if (!m) return color;
  const n = parseInt(m[1], 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${a})`;
}

/** The x values of every series, sorted and distinct (a k-way merge of sorted lists). */
function unionX(lists) {
  const live = lists.filter((l) => l.length);
  if (live.length === 1) return live[0].map((p) => p.x);
  const out = [];
  const pos = live.map(() => 0);
  for (;;) {
    let min = Infinity;
    for (let k = 0; k < live.length; k++) if (pos[k] < live[k].length && live[k][pos[k]].x < min) min = live[k][pos[k]].x;
    if (min === Infinity) return out;
    out.push(min);
    for (let k = 0; k < live.length; k++) if (pos[k] < live[k].length && live[k][pos[k]].x === min) pos[k] += 1;
  }
}

/** The series' y values on the x values `xs` (null where it has no point). */
function aligned(points, xs, logY) {
  const ys = new Array(xs.length).fill(null);
  let j = 0;
  for (const p of points) {
    while (xs[j] < p.x) j += 1;
    ys[j] = logY && !(p.y > 0) ? null : p.y;
  }
  return ys;
}

export class LineChart {
  /**
   * opts: testid, title, xLabel, integerX, yClamp [lo, hi], logY, height, tickFormat(v, step, ref),
   * xFormat(v), tip(point, entry) -> text, emptyText, tooltip (element), legend (element: the
   * chart adds an item per series that has a label and points).
   */
  constructor(opts) {
    this.opts = opts;
    this.entries = [];
    this.width = 720;
    this.height = opts.height || H;
    this.xHint = null;
    this.emptyText = opts.emptyText || "No data yet";
    this.tooltip = opts.tooltip || document.getElementById("tooltip");
    this.u = null;
    this.shape = null; // what the uPlot was built for: series, log scale
    this.dataKey = null; // what its data was built from
    this.data = null;
    this.el = h("div", { class: "chart", role: "img", "aria-label": opts.title, "data-testid": opts.testid, "data-points": 0 });
    this.el.chart = this;
    this.plotBox = h("div", { class: "chart-plot" });
    this.emptyEl = h("div", { class: "chart-empty", style: `height: ${this.height}px` });
    this.marks = h("div", { class: "chart-series", hidden: true });
    this.el.append(this.plotBox, this.emptyEl, this.marks);
  }

  /** The root element (it was an <svg> once; job.js appends it as `svg`). */
  get svg() {
    return this.el;
  }

  /** Draw `series` too. entry: {series, testid, cls | color, markers, label, dash, band: {lo, hi}}. */
  add(entry) {
    const e = { ...entry, legendItem: null };
    e.mark = h("span", { "data-testid": e.testid, "data-points": 0, "data-drawn": 0 });
    this.marks.append(e.mark);
    this.entries.push(e);
    this.shape = null;
    return e;
  }

  has(series) {
    return this.entries.some((e) => e.series === series);
  }

  get pointCount() {
    return this.entries.reduce((n, e) => n + e.series.length, 0);
  }

  setWidth(w) {
    const width = Math.max(280, Math.round(w || 720));
    if (width === this.width) return;
    this.width = width;
    if (this.u) this.u.setSize({ width, height: this.height });
  }

  /** Keep x up to at least `x` (the planned last step while a job runs); null: the data's end. */
  setXHint(x) {
    const hint = isNum(x) && x > 0 ? x : null;
    if (hint !== this.xHint) {
      this.xHint = hint;
      this.dataKey = null;
    }
  }

  setEmptyText(text) {
    this.emptyText = text;
  }

  setLogY(on) {
    if (Boolean(on) === Boolean(this.opts.logY)) return;
    this.opts.logY = Boolean(on);
    this.shape = null;
  }

  /** Take every series out (a view that redraws from scratch). */
  clear() {
    this.entries = [];
    this.marks.replaceChildren();
    if (this.opts.legend) this.opts.legend.replaceChildren();
    this.shape = null;
  }

  destroy() {
    if (this.u) this.u.destroy();
    this.u = null;
    this.shape = null;
  }

  /** The y values handed to uPlot for the series with this testid (what is drawn). */
  drawnValues(testid) {
    const i = this.entries.findIndex((e) => e.testid === testid);
    if (i < 0 || !this.data) return [];
    return this.data[this.columns[i]].filter((v) => v !== null);
  }

  color(e) {
    if (e.color) return e.color;
    return cssColor(`--${(e.cls || "line-c0").replace(/^line-/, "")}`);
  }

  render() {
    const total = this.pointCount;
    setAttr(this.el, "data-points", total);
    for (const e of this.entries) setAttr(e.mark, "data-points", e.series.length);
    this.updateLegend();
    if (total === 0) {
      if (this.u) this.destroy();
      this.dataKey = null;
      this.data = null;
      for (const e of this.entries) setAttr(e.mark, "data-drawn", 0);
      this.emptyEl.textContent = this.emptyText;
      this.emptyEl.hidden = false;
      this.plotBox.hidden = true;
      return;
    }
    this.emptyEl.hidden = true;
    this.plotBox.hidden = false;
    const logY = Boolean(this.opts.logY);
    const shape = `${this.entries.map((e) => `${e.testid}:${Boolean(e.band)}:${e.markers || e.series.length === 1}`).join(",")}:${logY}`;
    const key = `${this.entries.map((e) => `${e.series.length}.${e.series.rewrites}.${e.band ? `${e.band.lo.length}.${e.band.lo.rewrites}` : ""}`).join(",")}:${this.xHint}`;
    if (shape === this.shape && key === this.dataKey) return;
    this.data = this.buildData(logY);
    const count = (col) => col.reduce((n, v) => n + (v !== null), 0);
    this.entries.forEach((e, i) => {
      setAttr(e.mark, "data-drawn", count(this.data[this.columns[i]]));
      if (e.band) setAttr(e.mark, "data-band", count(this.data[this.columns[i] + 1]));
    });
    if (shape !== this.shape || !this.u) {
      this.destroy();
      this.shape = shape;
      this.u = new uPlot(this.uplotOptions(logY), this.data, this.plotBox);
    } else {
      this.u.setData(this.data);
    }
    this.dataKey = key;
  }

  buildData(logY) {
    const lists = [];
    for (const e of this.entries) {
      lists.push(e.series.points);
      if (e.band) lists.push(e.band.lo.points, e.band.hi.points);
    }
    const xs = unionX(lists);
    const data = [xs];
    this.columns = [];
    for (const e of this.entries) {
      this.columns.push(data.length);
      data.push(aligned(e.series.points, xs, logY));
      if (e.band) data.push(aligned(e.band.lo.points, xs, logY), aligned(e.band.hi.points, xs, logY));
    }
    return data;
  }

  xRange(min, max) {
    let lo = min;
    let hi = max;
    if (this.opts.integerX) lo = Math.min(lo, 1);
    if (this.xHint !== null) hi = Math.max(hi, this.xHint);
    if (!(hi - lo >= 1) && this.opts.integerX !== false) {
      lo -= 0.5;
      hi += 0.5;
    }
    if (!(hi > lo)) hi = lo + 1;
    return [lo, hi];
  }

  yRange(min, max) {
    const clamp = this.opts.yClamp;
    if (!isNum(min) || !isNum(max)) return clamp ? [clamp[0], clamp[1]] : [0, 1];
    let y0 = min;
    let y1 = max;
    const pad = (y1 - y0 || Math.abs(y1) || 1) * 0.08;
    y0 -= pad;
    y1 += pad;
    if (clamp) {
      y0 = Math.max(clamp[0], y0);
      y1 = Math.min(clamp[1], y1);
      if (y1 - y0 < 0.02) {
        y0 = Math.max(clamp[0], y0 - 0.01);
        y1 = Math.min(clamp[1], y1 + 0.01);
      }
    } else if (y0 > 0 && y0 < (y1 - y0) * 0.35) y0 = 0; // losses: the zero line when it is close anyway
    else if (y0 < 0 && min >= 0) y0 = 0;
    const step = niceStep(y1 - y0 || 1, 5);
    let ny0 = Math.floor(y0 / step + 1e-9) * step;
    let ny1 = Math.ceil(y1 / step - 1e-9) * step;
    if (clamp) {
      ny0 = Math.max(clamp[0], ny0);
      ny1 = Math.min(clamp[1], ny1);
    }
    return ny1 - ny0 > 0 ? [ny0, ny1] : [y0, y1];
  }

  uplotOptions(logY) {
    const o = this.opts;
    const muted = cssColor("--muted");
    const grid = cssColor("--border");
    const font = `11.5px ${getComputedStyle(document.body).fontFamily}`;
    const tickText = o.tickFormat || tickLabel;
    const series = [{}];
    const bands = [];
    for (const e of this.entries) {
      const color = this.color(e);
      const dots = e.markers || e.series.length === 1;
      const idx = series.length;
      series.push({
        label: e.label || e.testid,
        stroke: color,
        width: e.width || (e.band ? 2 : 1.75),
        dash: e.dash || (e.cls === "line-val" ? [5, 4] : undefined),
        spanGaps: true,
        points: { show: dots, size: dots ? 7 : 5, fill: color, stroke: cssColor("--panel", "#fff") },
      });
      if (e.band) {
        const hidden = { stroke: "transparent", width: 0, spanGaps: true, points: { show: false } };
        series.push({ ...hidden, label: `${e.label} −σ` }, { ...hidden, label: `${e.label} +σ` });
        bands.push({ series: [idx + 2, idx + 1], fill: withAlpha(color, 0.18) });
      }
    }
    return {
      width: this.width,
      height: this.height,
      series,
      bands,
      legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { size: 8 } },
      scales: {
        x: { time: false, range: (u, min, max) => this.xRange(min, max) },
        y: logY ? { distr: 3, range: (u, min, max) => uPlot.rangeLog(min, max, 10, false) }
          : { range: (u, min, max) => this.yRange(min, max) },
      },
      axes: [
        {
          stroke: muted, font, labelFont: font, label: o.xLabel, labelSize: 18, size: 32,
          grid: { stroke: grid, width: 1, dash: [2, 4] }, ticks: { show: false },
          values: (u, splits) => splits.map((v) => (!isNum(v) ? "" : o.xFormat ? o.xFormat(v) : fmtInt(v))),
        },
        {
          stroke: muted, font, size: 58, grid: { stroke: grid, width: 1 }, ticks: { show: false },
          values: (u, splits) => {
            const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : Math.abs(splits[0] || 1);
            const ref = Math.max(...splits.filter(isNum).map(Math.abs));
            return splits.map((v) => (!isNum(v) ? "" : logY ? tickLabel(v, Math.abs(v) || 1, Math.abs(v)) : tickText(v, step || 1, ref)));
          },
        },
      ],
      hooks: {
        setCursor: [(u) => this.hover(u)],
      },
    };
  }

  updateLegend() {
    const legend = this.opts.legend;
    if (!legend) return;
    for (const e of this.entries) {
      if (!e.label) continue;
      if (!e.legendItem) {
        const swatch = h("i", { class: `swatch swatch-${(e.cls || "").replace(/^line-/, "")}${e.markers ? " dot" : ""}` });
        if (e.color) swatch.style.background = e.color;
        e.legendItem = h("span", { class: "legend-item", hidden: true }, swatch, e.label);
        legend.append(e.legendItem);
      }
      const show = e.series.length > 0;
      if (e.legendItem.hidden === show) e.legendItem.hidden = !show;
    }
  }

  /** Every series' point nearest the cursor's x, in the tooltip. */
  hover(u) {
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined || u.cursor.left < 0) return this.hideTip();
    const x = u.data[0][idx];
    const lines = [];
    for (const e of this.entries) {
      const p = e.series.nearest(x);
      if (!p) continue;
      lines.push(this.opts.tip ? this.opts.tip(p, e) : `${e.label || e.testid}: ${p.y} @ ${p.x}`);
    }
    if (!lines.length) return this.hideTip();
    const box = u.over.getBoundingClientRect();
    const tip = this.tooltip;
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    tip.style.left = `${Math.round(box.left + u.cursor.left)}px`;
    tip.style.top = `${Math.round(box.top + u.cursor.top)}px`;
  }

  hideTip() {
    this.tooltip.hidden = true;
  }
}
