// SVG line charts that grow in place.
//
// A Series holds one metric's points sorted by x (the step, or the epoch), with a
// later point for the same x replacing the earlier one (a resumed attempt repeats
// the steps of a lost one). A LineChart draws series as one <path> each, with
// exactly one M/L command per point (tests count them) until a series outgrows
// the plot's pixels, where it draws each pixel column's first, lowest, highest
// and last point instead. Rendering is incremental: while the axes stay the same,
// new points are appended to a path's `d`; the axes only change when the data
// leaves the "nice" rounded domain, the box is resized or a point is rewritten.

import { fmtInt, h, isNum, s, setAttr } from "./util.js";

const H = 260;
const M = { l: 56, r: 14, t: 12, b: 38 };
let chartIds = 0;

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

function ticks(min, max, count, integer) {
  let step = niceStep(max - min || 1, count);
  if (integer) step = Math.max(1, Math.round(step));
  const out = [];
  const start = Math.ceil(min / step - 1e-9) * step;
  for (let v = start; v <= max + step * 1e-9; v += step) out.push(Math.round(v / step) * step);
  return { values: out, step };
}

const round2 = (v) => Math.round(v * 100) / 100;

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

export class LineChart {
  /**
   * opts: testid, title, xLabel, integerX, yClamp [lo, hi], yFormat, tickFormat,
   * tip(point, entry) -> text, emptyText, tooltip (element), legend (element: the
   * chart adds an item per series that has a label and points).
   */
  constructor(opts) {
    this.opts = opts;
    this.entries = [];
    this.width = 720;
    this.xHint = null;
    this.layoutKey = null;
    this.emptyText = opts.emptyText || "No data yet";
    this.clipId = `chart-clip-${++chartIds}`;
    this.tooltip = opts.tooltip || document.getElementById("tooltip");

    this.svg = s("svg", { class: "chart", role: "img", "aria-label": opts.title, "data-testid": opts.testid, "data-points": 0 });
    this.bg = s("rect", { class: "plot-bg" });
    this.grid = s("g", { class: "grid" });
    this.axes = s("g", { class: "axes" });
    this.clipRect = s("rect", {});
    this.plot = s("g", { "clip-path": `url(#${this.clipId})` });
    this.empty = s("text", { class: "chart-empty", "text-anchor": "middle", "dominant-baseline": "middle" });
    this.cross = s("g", { class: "crosshair", visibility: "hidden" }, s("line", {}), s("circle", { r: 4.5 }));
    this.hit = s("rect", { class: "hit" });
    this.svg.append(this.bg, this.grid, this.axes, s("defs", {}, s("clipPath", { id: this.clipId }, this.clipRect)),
      this.plot, this.empty, this.cross, this.hit);
    this.hit.addEventListener("mousemove", (ev) => this.hover(ev));
    this.hit.addEventListener("mouseleave", () => this.hideTip());
  }

  /** Draw `series` too. entry: {series, testid, cls, markers, label}. */
  add(entry) {
    const e = { ...entry, drawn: 0, rewrites: -1, decimated: false, d: "", markerCount: -1, legendItem: null };
    e.path = s("path", { class: `line ${e.cls}`, d: "", "data-testid": e.testid, "data-points": 0 });
    e.markerGroup = s("g", { class: `markers ${e.cls}` });
    this.plot.append(e.path, e.markerGroup);
    this.entries.push(e);
    this.layoutKey = null;
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
    if (width !== this.width) {
      this.width = width;
      this.layoutKey = null;
    }
  }

  /** Keep x up to at least `x` (the planned last step while a job runs); null: the data's end. */
  setXHint(x) {
    this.xHint = isNum(x) && x > 0 ? x : null;
  }

  setEmptyText(text) {
    this.emptyText = text;
  }

  domain() {
    const o = this.opts;
    let x0 = Infinity;
    let x1 = -Infinity;
    let y0 = Infinity;
    let y1 = -Infinity;
    for (const e of this.entries) {
      const ext = e.series.extent();
      if (!ext) continue;
      x0 = Math.min(x0, ext.x0);
      x1 = Math.max(x1, ext.x1);
      y0 = Math.min(y0, ext.y0);
      y1 = Math.max(y1, ext.y1);
    }
    if (o.integerX) x0 = Math.min(x0, 1);
    if (this.xHint !== null) x1 = Math.max(x1, this.xHint);
    if (x1 - x0 < 1) {
      x0 -= 0.5;
      x1 += 0.5;
    }
    const dataY0 = y0;
    const pad = (y1 - y0 || Math.abs(y1) || 1) * 0.08;
    y0 -= pad;
    y1 += pad;
    if (o.yClamp) {
      y0 = Math.max(o.yClamp[0], y0);
      y1 = Math.min(o.yClamp[1], y1);
      if (y1 - y0 < 0.02) {
        y0 = Math.max(o.yClamp[0], y0 - 0.01);
        y1 = Math.min(o.yClamp[1], y1 + 0.01);
      }
    } else if (y0 > 0 && y0 < (y1 - y0) * 0.35) {
      y0 = 0; // losses: show the zero line when it is close anyway
    } else if (y0 < 0 && dataY0 >= 0) {
      y0 = 0; // data that is never negative gets no negative axis from the padding
    }
    // Round outwards to the tick step, so that new points rarely move the axes.
    const step = niceStep(y1 - y0 || 1, 5);
    let ny0 = Math.floor(y0 / step + 1e-9) * step;
    let ny1 = Math.ceil(y1 / step - 1e-9) * step;
    if (o.yClamp) {
      ny0 = Math.max(o.yClamp[0], ny0);
      ny1 = Math.min(o.yClamp[1], ny1);
    }
    if (ny1 - ny0 > 0) {
      y0 = ny0;
      y1 = ny1;
    }
    return { x0, x1, y0, y1 };
  }

  render() {
    const total = this.pointCount;
    setAttr(this.svg, "data-points", total);
    const W = this.width;
    const iw = W - M.l - M.r;
    const ih = H - M.t - M.b;
    if (total === 0) {
      this.dom = null;
      if (this.layoutKey !== `empty:${W}:${this.emptyText}`) {
        this.layoutKey = `empty:${W}:${this.emptyText}`;
        this.frame(W, iw, ih);
        this.grid.replaceChildren();
        this.axes.replaceChildren();
        this.empty.removeAttribute("visibility");
        this.empty.textContent = this.emptyText;
        for (const e of this.entries) {
          e.path.setAttribute("d", "");
          e.path.setAttribute("data-points", "0");
          e.markerGroup.replaceChildren();
          e.drawn = 0;
          e.d = "";
          e.rewrites = -1;
          e.markerCount = -1;
        }
      }
      this.updateLegend();
      return;
    }
    const dom = this.domain();
    const key = [W, dom.x0, dom.x1, dom.y0, dom.y1].join(":");
    const relayout = key !== this.layoutKey;
    const sx = (x) => M.l + ((x - dom.x0) / (dom.x1 - dom.x0)) * iw;
    const sy = (y) => M.t + ih - ((y - dom.y0) / (dom.y1 - dom.y0)) * ih;
    this.sx = sx;
    this.sy = sy;
    this.dom = dom;
    if (relayout) {
      this.layoutKey = key;
      this.frame(W, iw, ih);
      this.empty.setAttribute("visibility", "hidden");
      this.drawAxes(dom, iw, ih, sx, sy);
    }
    const decimateAt = Math.max(2000, iw * 3);
    for (const e of this.entries) {
      const pts = e.series.points;
      setAttr(e.path, "data-points", pts.length);
      if (pts.length > decimateAt) {
        e.d = decimatedPath(pts, sx, sy, iw);
        e.decimated = true;
        e.drawn = pts.length;
        e.rewrites = e.series.rewrites;
        e.path.setAttribute("d", e.d);
      } else if (relayout || e.decimated || e.rewrites !== e.series.rewrites || e.drawn > pts.length) {
        e.d = pts.map((p, i) => `${i ? "L" : "M"}${round2(sx(p.x))},${round2(sy(p.y))}`).join(" ");
        e.decimated = false;
        e.drawn = pts.length;
        e.rewrites = e.series.rewrites;
        e.path.setAttribute("d", e.d);
      } else if (e.drawn < pts.length) {
        let add = "";
        for (let i = e.drawn; i < pts.length; i++) add += `${i ? " L" : "M"}${round2(sx(pts[i].x))},${round2(sy(pts[i].y))}`;
        e.d += add;
        e.drawn = pts.length;
        e.path.setAttribute("d", e.d);
      }
      const wantMarkers = e.markers || pts.length === 1;
      const markerKey = wantMarkers ? `${pts.length}:${e.series.rewrites}:${key}` : "none";
      if (markerKey !== e.markerCount) {
        e.markerCount = markerKey;
        e.markerGroup.replaceChildren(...(wantMarkers ? pts.map((p) => s("circle", { cx: round2(sx(p.x)), cy: round2(sy(p.y)), r: 3.5 })) : []));
      }
    }
    this.updateLegend();
  }

  frame(W, iw, ih) {
    this.svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    for (const [el, pad] of [[this.bg, 0], [this.hit, 0], [this.clipRect, 6]]) {
      el.setAttribute("x", M.l - pad);
      el.setAttribute("y", M.t - pad);
      el.setAttribute("width", iw + 2 * pad);
      el.setAttribute("height", ih + 2 * pad);
    }
    this.empty.setAttribute("x", M.l + iw / 2);
    this.empty.setAttribute("y", M.t + ih / 2);
    this.cross.firstChild.setAttribute("y1", M.t);
    this.cross.firstChild.setAttribute("y2", M.t + ih);
  }

  drawAxes(dom, iw, ih, sx, sy) {
    const o = this.opts;
    const yt = ticks(dom.y0, dom.y1, 5, false);
    const xt = ticks(dom.x0, dom.x1, Math.max(2, Math.floor(iw / 80)), !!o.integerX);
    const tickText = o.tickFormat || tickLabel;
    const grid = [];
    const axes = [];
    const ref = Math.max(Math.abs(dom.y0), Math.abs(dom.y1));
    for (const v of yt.values) {
      const y = round2(sy(v));
      grid.push(s("line", { x1: M.l, x2: M.l + iw, y1: y, y2: y }));
      axes.push(s("text", { x: M.l - 8, y, "text-anchor": "end", "dominant-baseline": "middle" }, tickText(v, yt.step, ref)));
    }
    for (const v of xt.values) {
      if (v < dom.x0 - 1e-9 || v > dom.x1 + 1e-9) continue;
      const x = round2(sx(v));
      grid.push(s("line", { class: "v", x1: x, x2: x, y1: M.t, y2: M.t + ih }));
      axes.push(s("text", { x, y: M.t + ih + 18, "text-anchor": "middle" }, fmtInt(v)));
    }
    axes.push(
      s("line", { class: "axis", x1: M.l, x2: M.l + iw, y1: M.t + ih, y2: M.t + ih }),
      s("text", { class: "axis-label", x: M.l + iw, y: H - 4, "text-anchor": "end" }, o.xLabel),
    );
    this.grid.replaceChildren(...grid);
    this.axes.replaceChildren(...axes);
  }

  updateLegend() {
    const legend = this.opts.legend;
    if (!legend) return;
    for (const e of this.entries) {
      if (!e.label) continue;
      if (!e.legendItem) {
        e.legendItem = h("span", { class: "legend-item", hidden: true },
          h("i", { class: `swatch swatch-${e.cls.replace(/^line-/, "")}${e.markers ? " dot" : ""}` }), e.label);
        legend.append(e.legendItem);
      }
      const show = e.series.length > 0;
      if (e.legendItem.hidden === show) e.legendItem.hidden = !show;
    }
  }

  hover(ev) {
    if (!this.dom || this.pointCount === 0) return this.hideTip();
    const box = this.svg.getBoundingClientRect();
    const W = this.width;
    const vx = ((ev.clientX - box.left) / box.width) * W;
    const vy = ((ev.clientY - box.top) / box.height) * H;
    // x in data units, to find each series' nearest point by binary search.
    const iw = W - M.l - M.r;
    const { x0, x1 } = this.dom;
    const dataX = x0 + ((vx - M.l) / iw) * (x1 - x0);
    let best = null;
    for (const e of this.entries) {
      const p = e.series.nearest(dataX);
      if (!p) continue;
      const dx = this.sx(p.x) - vx;
      const dy = (this.sy(p.y) - vy) * 0.15; // x matters most
      const dist = dx * dx + dy * dy;
      if (!best || dist < best.dist) best = { dist, p, e };
    }
    if (!best) return this.hideTip();
    const cx = this.sx(best.p.x);
    const cy = this.sy(best.p.y);
    this.cross.setAttribute("visibility", "visible");
    this.cross.firstChild.setAttribute("x1", cx);
    this.cross.firstChild.setAttribute("x2", cx);
    this.cross.lastChild.setAttribute("cx", cx);
    this.cross.lastChild.setAttribute("cy", cy);
    this.cross.lastChild.setAttribute("class", best.e.cls);
    const tip = this.tooltip;
    tip.textContent = this.opts.tip ? this.opts.tip(best.p, best.e) : `${best.p.x}: ${best.p.y}`;
    tip.hidden = false;
    tip.style.left = `${Math.round(box.left + (cx / W) * box.width)}px`;
    tip.style.top = `${Math.round(box.top + (cy / H) * box.height)}px`;
  }

  hideTip() {
    this.cross.setAttribute("visibility", "hidden");
    this.tooltip.hidden = true;
  }
}

/** Each pixel column's first, lowest, highest and last point, in x order. */
function decimatedPath(pts, sx, sy, iw) {
  const out = [];
  const cols = Math.max(1, Math.round(iw));
  const x0 = sx(pts[0].x);
  let col = -1;
  let bucket = [];
  const flush = () => {
    if (!bucket.length) return;
    let lo = bucket[0];
    let hi = bucket[0];
    for (const p of bucket) {
      if (p.y < lo.y) lo = p;
      if (p.y > hi.y) hi = p;
    }
    const chosen = [bucket[0], lo, hi, bucket[bucket.length - 1]].sort((a, b) => a.x - b.x);
    let prev = null;
    for (const p of chosen) {
      if (p !== prev) out.push(p);
      prev = p;
    }
    bucket = [];
  };
  for (const p of pts) {
    const c = Math.min(cols, Math.floor(sx(p.x) - x0));
    if (c !== col) {
      flush();
      col = c;
    }
    bucket.push(p);
  }
  flush();
  return out.map((p, i) => `${i ? "L" : "M"}${round2(sx(p.x))},${round2(sy(p.y))}`).join(" ");
}
