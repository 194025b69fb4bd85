// The compare view (#/compare?ids=a,b,c): the runs' curves overlaid, one chart per
// metric (step, epoch or wall-time axis, log y, smoothing; the hover lists every run's
// value), the config keys whose values differ, and the final metrics side by side.
// Grouping by config keys (GET /v1/jobs/groups) draws each group's mean with a ±1 std
// band instead of the runs: "seeds" groups by every differing key but the seed.
// Everything comes from GET /v1/jobs/compare, downsampled by the server.

import { api, qs } from "./api.js";
import { LineChart, Series, cssColor } from "./chart.js";
import { reportError, setCrumbs, setLive, tooltip } from "./chrome.js";
import { AXES, epochClock, smooth, stepsPerEpoch, toSeries, xMapper } from "./curves.js";
import { fmtMetric, fmtSeconds, h, isNum, setText } from "./util.js";

export const MAX_POINTS = 1000;
const FIRST = ["loss", "val_loss", "val_accuracy", "train_loss"];
const HIDDEN = new Set(["epoch_time_s", "samples_per_s"]);
const SEEDS = "__seeds__";

/** Wall-time ticks: 0.25s, 4.1s, 1m 05s. */
const fmtWall = (v) => (Math.abs(v) < 10 ? `${Number(v.toPrecision(2))}s` : fmtSeconds(v));
const colorOf = (i) => cssColor(`--c${i % 10}`);
const metricOrder = (a, b) => {
  const ia = FIRST.indexOf(a);
  const ib = FIRST.indexOf(b);
  return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
};

export class CompareView {
  constructor(root, params = {}) {
    this.root = root;
    this.ids = (params.ids || "").split(",").map((s) => s.trim()).filter(Boolean);
    this.axis = AXES[params.x] ? params.x : "step";
    this.logY = params.log === "1";
    this.alpha = Math.min(0.99, Math.max(0, Number(params.smooth) || 0));
    this.groupBy = params.group || "";
    this.data = null;
    this.groups = new Map(); // metric -> Groups answer, for this.groupBy
    this.charts = [];
    this.active = false;
    this.resizeObs = null;
  }

  mount() {
    this.active = true;
    setCrumbs({ text: "Runs", href: "#/" }, { text: "Compare" });
    document.title = "Compare · Trainyard";
    this.root.replaceChildren(h("section", { class: "page", "data-testid": "compare-view" },
      h("div", { class: "empty loading", "data-testid": "loading" }, "Loading the runs…")));
    if (this.ids.length < 2) {
      this.showMessage("Pick runs to compare", "Select two to twenty runs in the runs table and press Compare.");
      return;
    }
    this.load();
  }

  unmount() {
    this.active = false;
    if (this.resizeObs) this.resizeObs.disconnect();
    for (const c of this.charts) c.chart.destroy();
  }

  refresh() {
    this.load();
  }

  wake() {}

  async load() {
    try {
      this.data = await api(`jobs/compare${qs({ ids: this.ids.join(","), max_points: MAX_POINTS })}`);
    } catch (err) {
      if (!this.active) return;
      if (err.status === 404 || err.status === 422) this.showMessage("Cannot compare these runs", err.message);
      else reportError(err);
      return;
    }
    if (!this.active) return;
    setLive("idle", "A snapshot: reload to read the runs again");
    this.prepare();
    this.build();
    if (this.groupBy) await this.loadGroups();
    this.drawCharts();
  }

  showMessage(title, text) {
    this.root.replaceChildren(h("section", { class: "page", "data-testid": "compare-view" },
      h("div", { class: "card empty", "data-testid": "compare-message" },
        h("div", { class: "empty-title" }, title), h("p", {}, text),
        h("p", {}, h("a", { href: "#/" }, "← Back to the runs")))));
  }

  /** Per run: its colour, steps per epoch and epoch clock (for the epoch and wall-time axes). */
  prepare() {
    const d = this.data;
    this.runs = d.jobs.map((j, i) => {
      const curves = Object.values(d.curves).map((per) => per[j.id]).filter(Boolean);
      const times = d.curves.epoch_time_s?.[j.id] || d.curves["epoch:epoch_time_s"]?.[j.id];
      return { ...j, color: colorOf(i), spe: stepsPerEpoch(curves), clock: epochClock(times) };
    });
    this.metrics = Object.keys(d.curves).filter((m) => !HIDDEN.has(m.replace(/^(step|epoch):/, ""))).sort(metricOrder);
    this.differs = Object.keys(d.config.differs).sort();
  }

  // ----------------------------------------------------------------- build ---

  build() {
    const d = this.data;
    const runList = h("ul", { class: "run-list", "data-testid": "compare-runs" },
      ...this.runs.map((r) => h("li", {},
        h("i", { class: "swatch dot", style: `background: ${r.color}` }),
        h("a", { href: `#/jobs/${encodeURIComponent(r.id)}`, "data-testid": "compare-run", "data-job-id": r.id }, r.name || r.id),
        h("span", { class: `badge badge-${r.status}` }, r.status))));

    const axisSel = h("select", { class: "select", "data-testid": "x-axis", "aria-label": "X axis",
                                  onchange: () => this.set({ axis: axisSel.value }) },
      ...Object.entries(AXES).map(([k, label]) => h("option", { value: k, selected: k === this.axis }, label)));
    const logBox = h("input", { type: "checkbox", checked: this.logY, "data-testid": "log-y",
                                onchange: () => this.set({ logY: logBox.checked }) });
    const smoothOut = h("output", { class: "mono", "data-testid": "smoothing-value" }, this.alpha.toFixed(2));
    const slider = h("input", { type: "range", min: 0, max: 0.99, step: 0.01, value: this.alpha, "data-testid": "smoothing",
                                "aria-label": "Smoothing",
                                oninput: () => {
                                  setText(smoothOut, Number(slider.value).toFixed(2));
                                  this.set({ alpha: Number(slider.value) });
                                } });
    const seedPath = this.differs.find((p) => /(^|\.)seed$/.test(p));
    const groupSel = h("select", { class: "select", "data-testid": "group-by", "aria-label": "Group by",
                                   onchange: () => this.setGroup(groupSel.value) },
      h("option", { value: "" }, "no grouping"),
      seedPath ? h("option", { value: SEEDS, selected: this.groupBy === SEEDS }, "seeds (mean ± std over seeds)") : null,
      ...this.differs.map((p) => h("option", { value: p, selected: p === this.groupBy }, p)));

    this.chartGrid = h("div", { class: "grid two compare-charts", "data-testid": "compare-charts" });
    this.note = h("p", { class: "muted small-note", "data-testid": "compare-note", hidden: true });
    this.el = h("section", { class: "page", "data-testid": "compare-view" },
      h("div", { class: "page-head" },
        h("div", { class: "title-block" },
          h("a", { class: "back", href: "#/" }, "← All runs"),
          h("h1", {}, `Compare ${this.runs.length} runs`))),
      h("div", { class: "card" }, runList),
      h("div", { class: "toolbar card compare-controls", role: "group", "aria-label": "Chart settings" },
        h("label", { class: "inline" }, "X axis ", axisSel),
        h("label", { class: "inline" }, logBox, " log y"),
        h("label", { class: "inline" }, "Smoothing ", slider, smoothOut),
        h("label", { class: "inline" }, "Group by ", groupSel)),
      this.note,
      this.chartGrid,
      h("div", { class: "grid two" },
        h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Config: what differs")), this.diffTable(d.config)),
        h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Final metrics")), this.finalTable(d.final_metrics))),
    );
    this.root.replaceChildren(this.el);
    if (window.ResizeObserver) {
      this.resizeObs = new ResizeObserver((entries) => {
        for (const entry of entries) {
          const c = this.charts.find((x) => x.box === entry.target);
          if (c) c.chart.setWidth(entry.target.clientWidth);
        }
      });
    }
  }

  runHead() {
    return h("tr", {}, h("th", {}, ""), ...this.runs.map((r) => h("th", { class: "run-col" },
      h("i", { class: "swatch dot", style: `background: ${r.color}` }), " ", r.name || r.id)));
  }

  diffTable(config) {
    if (!this.differs.length) {
      return h("div", { class: "empty small", "data-testid": "config-diff-empty" }, "The configs are identical.");
    }
    const fmt = (v) => (v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v));
    const body = this.differs.map((path) => h("tr", { "data-testid": "diff-row", "data-path": path },
      h("th", { class: "mono path", scope: "row" }, path),
      ...this.runs.map((r) => h("td", { class: "mono", "data-job-id": r.id }, fmt(config.differs[path][r.id])))));
    return h("div", { class: "table-scroll" },
      h("table", { class: "compare-table", "data-testid": "config-diff" }, h("thead", {}, this.runHead()), h("tbody", {}, ...body)),
      h("p", { class: "muted small-note" }, `${Object.keys(config.same).length} other keys are the same in every run.`));
  }

  finalTable(finals) {
    const names = [...new Set(this.runs.flatMap((r) => Object.keys(finals[r.id] || {}).filter((k) => isNum(finals[r.id][k]))))]
      .sort(metricOrder);
    if (!names.length) return h("div", { class: "empty small" }, "No final metrics yet.");
    const body = names.map((name) => {
      const vals = this.runs.map((r) => finals[r.id]?.[name]);
      const nums = vals.filter(isNum);
      const higher = /accuracy|precision|recall|f1|auc/.test(name);
      const best = nums.length > 1 ? (higher ? Math.max(...nums) : Math.min(...nums)) : null;
      return h("tr", { "data-testid": "final-row", "data-metric": name },
        h("th", { class: "mono path", scope: "row" }, name),
        ...vals.map((v, i) => h("td", { class: `num${v === best && !/time|memory|bytes/.test(name) ? " best" : ""}`, "data-job-id": this.runs[i].id },
          isNum(v) ? fmtMetric(name, v) : "—")));
    });
    return h("div", { class: "table-scroll" },
      h("table", { class: "compare-table", "data-testid": "final-metrics" }, h("thead", {}, this.runHead()), h("tbody", {}, ...body)));
  }

  // ---------------------------------------------------------------- charts ---

  set(change) {
    if ("axis" in change) this.axis = change.axis;
    if ("logY" in change) this.logY = change.logY;
    if ("alpha" in change) this.alpha = change.alpha;
    this.saveUrl();
    this.drawCharts();
  }

  async setGroup(value) {
    this.groupBy = value;
    this.groups.clear();
    this.saveUrl();
    if (value) await this.loadGroups();
    this.drawCharts();
  }

  saveUrl() {
    const hash = `#/compare${qs({ ids: this.ids.join(","), x: this.axis === "step" ? null : this.axis,
                                  log: this.logY ? 1 : null, smooth: this.alpha || null, group: this.groupBy || null })}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  /** The config paths the groups are keyed by. */
  groupPaths() {
    if (this.groupBy !== SEEDS) return [this.groupBy];
    const others = this.differs.filter((p) => !/(^|\.)seed$/.test(p));
    // only the seed differs: one group of every run, keyed by a path they share
    return others.length ? others : [Object.keys(this.data.config.same).find((p) => p.startsWith("training.")) || "training.epochs"];
  }

  async loadGroups() {
    const by = this.groupPaths().join(",");
    try {
      const answers = await Promise.all(this.metrics.map((m) => api(`jobs/groups${qs({
        by, metric: m, ids: this.ids.join(","), max_points: MAX_POINTS })}`).then((g) => [m, g])));
      for (const [m, g] of answers) this.groups.set(m, g);
    } catch (err) {
      reportError(err);
    }
  }

  drawCharts() {
    if (!this.active || !this.el) return;
    for (const c of this.charts) c.chart.destroy();
    this.charts = [];
    const cards = [];
    const grouped = Boolean(this.groupBy) && this.groups.size > 0;
    const axis = grouped && this.axis === "time" ? "step" : this.axis;
    const skipped = new Set();
    this.note.hidden = true;
    for (const metric of this.metrics) {
      const legend = h("div", { class: "legend" });
      const fmtX = axis === "time" ? fmtWall : axis === "epoch" ? (v) => String(Number(v.toFixed(2))) : null;
      const chart = new LineChart({
        testid: "compare-chart", title: metric, xLabel: AXES[axis], integerX: axis === "step", logY: this.logY, tooltip,
        legend, xFormat: fmtX, height: 240,
        tip: (pt, e) => `${e.label}: ${fmtMetric(metric, pt.y)} · ${AXES[axis]} ${fmtX ? fmtX(pt.x) : pt.x}`,
        emptyText: "No points on this axis.",
      });
      chart.el.setAttribute("data-metric", metric);
      if (grouped) this.addGroups(chart, metric, axis);
      else this.addRuns(chart, metric, axis, skipped);
      const box = h("div", { class: "chart-box" }, chart.el);
      cards.push(h("div", { class: "card chart-card", "data-testid": "metric-card", "data-metric": metric },
        h("div", { class: "card-head" }, h("h2", { class: "mono" }, metric), legend), box));
      this.charts.push({ chart, box });
    }
    this.chartGrid.replaceChildren(...cards);
    for (const { chart, box } of this.charts) {
      chart.setWidth(box.clientWidth);
      chart.render();
      if (this.resizeObs) this.resizeObs.observe(box);
    }
    if (skipped.size) {
      this.note.hidden = false;
      this.note.textContent = `Not on the ${AXES[axis]} axis (no epoch timing recorded): ${[...skipped].join(", ")}.`;
    } else if (grouped && this.axis === "time") {
      this.note.hidden = false;
      this.note.textContent = "Groups are drawn on the step axis.";
    }
  }

  addRuns(chart, metric, axis, skipped) {
    const per = this.data.curves[metric] || {};
    this.runs.forEach((r, i) => {
      const curve = per[r.id];
      if (!curve) return;
      const mapX = xMapper(axis, r.spe, r.clock);
      if (!mapX) {
        skipped.add(r.name || r.id);
        return;
      }
      const se = toSeries(metric, curve, mapX, this.alpha);
      chart.add({ series: se, testid: `run-${i}`, color: r.color, label: r.name || r.id, markers: curve.step.length <= 12 });
    });
  }

  addGroups(chart, metric, axis) {
    const g = this.groups.get(metric);
    if (!g) return;
    const spe = this.runs.find((r) => r.spe)?.spe;
    const mapX = axis === "epoch" && spe ? (step) => step / spe : (step) => step;
    g.groups.forEach((grp, i) => {
      const c = grp.curve;
      const mean = smooth(c.mean, this.alpha);
      const std = c.std.map((v) => (isNum(v) ? v : 0));
      const se = new Series(metric);
      const lo = new Series(`${metric} lo`);
      const hi = new Series(`${metric} hi`);
      for (let k = 0; k < c.step.length; k++) {
        const x = mapX(c.step[k], c.epoch[k]);
        se.upsert(x, mean[k], c.epoch[k]);
        lo.upsert(x, mean[k] - std[k], c.epoch[k]);
        hi.upsert(x, mean[k] + std[k], c.epoch[k]);
      }
      const label = `${Object.entries(grp.key).map(([p, v]) => `${p.split(".").pop()}=${v}`).join(" ")} (n=${grp.job_ids.length})`;
      chart.add({ series: se, band: { lo, hi }, testid: `group-${i}`, color: colorOf(i), label, markers: c.step.length <= 12 });
    });
  }
}
