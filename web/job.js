// One job's page (#/jobs/{id}), live from the job's event stream.
//
// Loading: the job first (its event_seq is where its history stands), then
// /metrics?max_points=2000, the checkpoints and the log. A /metrics answer with
// `series` seeds the charts and the stream starts after that event_seq; an older
// answer is not used and the stream replays the whole history instead. Events
// change the page's model at once (series, log lines, checkpoints, status); the
// DOM follows at most once per animation frame, each part updating in place:
// charts append their new points, the log appends its new lines.
//
// Cards of their own modules: job-checkpoints.js (kept checkpoints, latest/best,
// download), job-model.js (the node table from /v1/specs/validate), job-predict.js,
// job-export.js (ONNX / safetensors) and job-finetune.js (a new job from a checkpoint).

import { ApiError, api, jobPath } from "./api.js";
import { LineChart, Series, tickLabel } from "./chart.js";
import { POLL_MS, hideBanner, reportError, setCrumbs, setLive, showBanner, tooltip } from "./chrome.js";
import { CheckpointsCard } from "./job-checkpoints.js";
import { ExportCard } from "./job-export.js";
import { FinetuneCard } from "./job-finetune.js";
import { ModelCard } from "./job-model.js";
import { PredictCard } from "./job-predict.js";
import { listCache } from "./list.js";
import { LogPanel } from "./logs.js";
import { JobFeed, metricRows } from "./stream.js";
import {
  FrameBatcher, TERMINAL, fmtAbsolute, fmtDuration, fmtInt, fmtLoss, fmtLr, fmtMetric, fmtPct, fmtRate, fmtSeconds,
  h, isNum, setAttr, setText,
} from "./util.js";
import { progressBar, progressOf, statusBadge, updateBadge, updateProgress } from "./widgets.js";

const STATUS_FIELDS = ["status", "attempt", "worker", "error", "failure_kind", "cancel_requested"];
const LR_NAME = /^lr(?:_(\d+))?$/;
const PALETTE = ["c0", "c1", "c2", "c3", "c4", "c5"];

export class JobDetailView {
  constructor(root, jobId) {
    this.root = root;
    this.jobId = jobId;
    this.active = false;
    this.el = null;
    this.job = null;
    this.feed = null;
    this.series = new Map(); // name -> Series; epoch metrics by epoch, and as "<name>@step" by step
    this.charts = []; // {chart, box}
    this.headCharts = new Map(); // head -> {chart, train, val}
    this.ckpts = new CheckpointsCard();
    this.model = new ModelCard();
    this.exporter = new ExportCard(jobId);
    this.predictor = new PredictCard(jobId);
    this.finetune = new FinetuneCard(jobId);
    this.ckpts.onChange((items) => {
      this.exporter.setCheckpoints(items);
      this.predictor.setCheckpoints(items);
      this.finetune.setCheckpoints(items);
    });
    this.snapshotSeq = 0; // the event_seq of the newest job read
    this.liveStatus = null; // {seq, fields} from status events newer than that read
    this.liveProgress = null; // {seq, data}
    this.rate = null; // {samples_per_s, eta_s, at}: the newest progress event's
    this.lastStep = 0;
    this.ended = false;
    this.sig = {};
    this.frame = new FrameBatcher(() => this.render());
  }

  // -------------------------------------------------------------- lifecycle ---

  mount() {
    this.active = true;
    setCrumbs({ text: "Jobs", href: "#/" }, { text: this.jobId });
    document.title = "Job · Trainyard";
    this.root.replaceChildren(h("section", { class: "page", "data-testid": "job-detail", "data-job-id": this.jobId },
      h("div", { class: "empty loading", "data-testid": "loading" }, "Loading job…")));
    const cached = (listCache.items || []).find((j) => j.id === this.jobId);
    if (cached) {
      this.build(cached);
      this.applyJob(cached);
      this.render();
    }
    setLive("connecting", "Loading the job");
    this.init();
  }

  unmount() {
    this.active = false;
    if (this.feed) this.feed.stop();
    this.frame.cancel();
    clearTimeout(this.initTimer);
    clearTimeout(this.refreshTimer);
    clearTimeout(this.ckptTimer);
    clearInterval(this.ticker);
    if (this.resizeObs) this.resizeObs.disconnect();
    for (const { chart } of this.charts) if (chart.destroy) chart.destroy(); // frees each uPlot
    this.finetune.validateSoon.cancel();
  }

  wake() {
    if (this.feed) this.feed.wake();
  }

  /** Start over (an API key was entered). */
  refresh() {
    if (this.feed) this.feed.stop();
    this.feed = null;
    this.init();
  }

  async init() {
    clearTimeout(this.initTimer);
    try {
      await this.load();
    } catch (err) {
      if (!this.active) return;
      reportError(err);
      this.initTimer = setTimeout(() => this.init(), POLL_MS);
    }
  }

  async load() {
    let job;
    try {
      job = await api(jobPath(this.jobId));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        this.showNotFound(err.message);
        return;
      }
      throw err;
    }
    if (!this.active) return;
    // Read after the job, so nothing they hold is older than its event_seq.
    const [metrics, checkpoints, logs] = await Promise.all([
      api(jobPath(this.jobId, "/metrics?max_points=2000")),
      api(jobPath(this.jobId, "/checkpoints")),
      api(jobPath(this.jobId, "/logs?limit=10000")).catch((err) => {
        if (err instanceof ApiError && err.status === 404) return null;
        throw err;
      }),
    ]);
    if (!this.active) return;
    hideBanner();
    if (!this.el) this.build(job);
    this.applyJob(job);
    let after = 0;
    if (metrics && metrics.series) {
      this.addRows(metricRows(metrics, this.stepsPerEpoch()));
      after = isNum(job.event_seq) ? job.event_seq : 0;
    }
    this.ckpts.merge(Array.isArray(checkpoints) ? checkpoints : checkpoints?.items || [], false);
    if (logs) {
      this.logs.add(logs.lines || []);
      this.logs.setTruncated(logs.truncated);
    }
    this.render();
    this.feed = new JobFeed(this.jobId, {
      onEvent: (type, data, seq) => this.onEvent(type, data, seq),
      onJob: (j) => {
        this.applyJob(j);
        this.frame.request();
      },
      onEnd: (status, polled) => this.onEnd(polled),
      onMode: (mode, detail) => this.onMode(mode, detail),
    }, () => ({ lastStep: this.lastStep, lastLogSeq: this.logs.lastSeq }), () => this.stepsPerEpoch());
    this.feed.start(after);
    clearInterval(this.ticker);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  onMode(mode, detail) {
    if (!this.el) return;
    setAttr(this.el, "data-feed", mode);
    if (mode === "connecting") setLive("connecting", "Connecting to the job's event stream");
    else if (mode === "live") {
      hideBanner();
      setLive("live", "Streaming the job's events as they happen");
    } else if (mode === "reconnecting") setLive("paused", "The event stream dropped; reconnecting", "Reconnecting…");
    else if (mode === "ended") setLive("idle", "Finished — no more updates");
    else if (mode === "polling") console.info(`job page: polling, since ${detail}`);
  }

  onEnd(polled) {
    this.ended = true;
    clearTimeout(this.ckptTimer); // the final read below brings the kept checkpoints
    this.logs.setFinished(true);
    // After the stream's end, read the job once more for its final metrics and times;
    // polling read it last already.
    if (!polled) this.refreshJob(0, true);
    this.frame.request();
  }

  /** Read the job again soon: a status change brings timestamps and final metrics. */
  refreshJob(delay = 250, withCheckpoints = false) {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(async () => {
      try {
        const [job, ckpts] = await Promise.all([
          api(jobPath(this.jobId)),
          withCheckpoints ? api(jobPath(this.jobId, "/checkpoints")) : null,
        ]);
        if (!this.active) return;
        this.applyJob(job);
        if (ckpts) this.ckpts.replace(ckpts.items || []);
        this.frame.request();
      } catch (err) {
        if (this.active && !(err instanceof ApiError && err.status === 404)) console.warn("job refresh failed", err);
      }
    }, delay);
  }

  tick() {
    if (!this.el || !this.job) return;
    this.renderTiles();
    this.ticks = (this.ticks || 0) + 1;
    if (this.ticks % 5 === 0) this.ckpts.tick();
  }

  // ------------------------------------------------------------------ model ---

  /** A job as read from the API; status events newer than the read win over it. */
  applyJob(job) {
    const seq = isNum(job.event_seq) ? job.event_seq : null;
    if (seq !== null) this.snapshotSeq = Math.max(this.snapshotSeq, seq);
    const merged = { ...job };
    if (this.liveStatus && (seq === null || this.liveStatus.seq > seq)) Object.assign(merged, this.liveStatus.fields);
    else this.liveStatus = null;
    if (this.liveProgress && (seq === null || this.liveProgress.seq > seq)) merged.progress = { ...job.progress, ...this.liveProgress.data };
    else this.liveProgress = null;
    this.job = merged;
    if (this.el) {
      this.setupValMetrics();
      this.setupHeads();
      this.predictor.setJob(merged);
      this.finetune.setJob(merged);
      this.model.setJob(merged);
    }
  }

  onEvent(type, data, seq) {
    if (!this.active || !this.job) return;
    const fresh = seq === null || seq > this.snapshotSeq; // newer than the job as last read
    if (type === "status") {
      if (fresh) {
        const fields = {};
        for (const k of STATUS_FIELDS) if (k in data) fields[k] = data[k];
        const changed = fields.status !== this.job.status || fields.attempt !== this.job.attempt;
        Object.assign(this.job, fields);
        if (seq !== null) this.liveStatus = { seq, fields };
        if (changed) this.refreshJob(250, TERMINAL.has(fields.status));
      }
    } else if (type === "progress") {
      this.rate = { samples_per_s: data.samples_per_s, eta_s: data.eta_s, at: Date.now() };
      if (fresh) {
        const p = {};
        for (const k of ["epoch", "epochs", "step", "total_steps"]) if (isNum(data[k])) p[k] = data[k];
        this.job.progress = { ...this.job.progress, ...p };
        if (seq !== null) this.liveProgress = { seq, data: p };
      }
    } else if (type === "metric") {
      this.addRows(data.rows || []);
    } else if (type === "checkpoint") {
      // One from before the job was read is in /checkpoints already, or no longer exists.
      if (fresh || this.ckpts.has(data.id)) this.ckpts.merge([data], seq !== null && fresh);
      // retention may have deleted older ones, and the best may have changed: read the list again
      if (fresh && !this.ended) this.reloadCheckpoints();
    } else if (type === "log") {
      this.logs.add(data.lines || [], { seq, attempt: data.attempt ?? null });
      if (data.truncated !== undefined) this.logs.setTruncated(data.truncated);
    }
    this.frame.request();
  }

  stepsPerEpoch() {
    const plan = this.job?.plan;
    if (isNum(plan?.steps_per_epoch)) return plan.steps_per_epoch;
    const p = progressOf(this.job || {});
    return p.total && p.epochs ? p.total / p.epochs : null;
  }

  getSeries(name, kind) {
    let se = this.series.get(name);
    if (!se) {
      se = new Series(name, kind);
      this.series.set(name, se);
      if (this.el) this.route(se);
    }
    return se;
  }

  addRows(rows) {
    let spe;
    for (const r of rows) {
      if (!r || !isNum(r.value) || typeof r.name !== "string") continue;
      if (r.kind === "epoch") {
        if (!isNum(r.epoch)) continue;
        this.getSeries(r.name, "epoch").upsert(r.epoch, r.value, r.epoch);
        let step = r.step;
        if (!isNum(step)) {
          if (spe === undefined) spe = this.stepsPerEpoch();
          step = spe ? Math.round(r.epoch * spe) : null;
        }
        if (isNum(step)) this.getSeries(`${r.name}@step`, "epoch").upsert(step, r.value, r.epoch);
      } else {
        if (!isNum(r.step)) continue;
        this.getSeries(r.name, "step").upsert(r.step, r.value, r.epoch);
        if (r.step > this.lastStep) this.lastStep = r.step;
      }
    }
  }

  reloadCheckpoints(delay = 300) {
    clearTimeout(this.ckptTimer);
    this.ckptTimer = setTimeout(async () => {
      if (this.ended) return;
      try {
        const list = await api(jobPath(this.jobId, "/checkpoints"));
        if (!this.active) return;
        this.ckpts.replace(list.items || []);
        this.frame.request();
      } catch (err) {
        if (this.active) console.warn("checkpoint list failed", err);
      }
    }, delay);
  }

  // ----------------------------------------------------------------- charts ---

  /** Val metrics the "accuracy" chart and tile show: accuracy per head, else each head's first metric. */
  valMetrics() {
    const heads = Object.entries(this.job?.plan?.heads || {});
    const multi = heads.length > 1;
    const out = [];
    for (const [name, head] of heads) {
      const metrics = (head?.metrics || []).filter((m) => m !== "confusion_matrix");
      const metric = metrics.includes("accuracy") ? "accuracy" : metrics[0];
      if (metric) out.push({ name: multi ? `val_${name}_${metric}` : `val_${metric}`, head: multi ? name : null, metric });
    }
    return out.length ? out : [{ name: "val_accuracy", head: null, metric: "accuracy" }];
  }

  setupValMetrics() {
    const list = this.valMetrics();
    const key = JSON.stringify(list);
    if (key === this.sig.valMetrics) return;
    this.sig.valMetrics = key;
    const acc = list.every((m) => m.metric === "accuracy");
    const title = acc ? "Validation accuracy" : `Validation ${list[0].metric}`;
    setText(this.refs.accTitle, title);
    this.accChart.opts.title = title;
    this.accChart.opts.yClamp = acc ? [0, 1] : null;
    this.accChart.setEmptyText(`${title} appears after the first epoch.`);
    this.valList = list;
    list.forEach((m, i) => {
      const se = this.getSeries(m.name, "epoch");
      if (this.accChart.has(se)) return;
      const testid = m.head ? `val-accuracy-path-${m.head}` : m.metric === "accuracy" ? "val-accuracy-path" : `val-${m.metric}-path`;
      this.accChart.add({ series: se, testid, cls: m.head ? `line-${PALETTE[i % PALETTE.length]}` : "line-acc", markers: true,
                          label: m.head ? `${m.head}` : null, metric: m.metric });
    });
  }

  setupHeads() {
    const heads = Object.keys(this.job?.plan?.heads || {});
    if (heads.length < 2) return;
    for (const head of heads) this.headChart(head);
  }

  headChart(head) {
    let hc = this.headCharts.get(head);
    if (hc) return hc;
    hc = {};
    this.headCharts.set(head, hc); // before its series exist: creating them routes them here
    const legend = h("div", { class: "legend" },
      h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-train" }), "train (per step)"),
      h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-val" }), "val (per epoch)"));
    const chart = new LineChart({
      testid: "head-loss-chart", title: `Loss of head ${head}`, xLabel: "step", integerX: true, tooltip,
      yFormat: fmtLoss, emptyText: "No loss recorded yet.",
      tip: (pt, e) => `${e.label} ${fmtLoss(pt.y)} · step ${fmtInt(pt.x)} · epoch ${pt.epoch}`,
    });
    chart.svg.setAttribute("data-head", head);
    chart.add({ series: this.getSeries(`${head}_loss`, "step"), testid: "head-train-loss-path", cls: "line-train", label: `${head} train loss` });
    chart.add({ series: this.getSeries(`val_${head}_loss@step`, "epoch"), testid: "head-val-loss-path", cls: "line-val", markers: true, label: `${head} val loss` });
    const box = h("div", { class: "chart-box" }, chart.svg);
    const card = h("div", { class: "card chart-card", "data-testid": "head-card", "data-head": head },
      h("div", { class: "card-head" }, h("h2", {}, "Loss · ", h("span", { class: "mono" }, head)), legend), box);
    this.refs.heads.append(card);
    this.refs.heads.hidden = false;
    Object.assign(hc, { chart, box });
    this.addChart(chart, box, "steps");
    return hc;
  }

  /** A new series: onto the chart it belongs to. */
  route(se) {
    const name = se.name;
    if (se.kind === "step") {
      const lr = name.match(LR_NAME);
      if (lr) {
        if (this.lrChart.has(se)) return;
        const group = lr[1];
        this.lrChart.add({ series: se, testid: group === undefined ? "lr-path" : `lr-path-${group}`,
                           cls: group === undefined ? "line-lr" : `line-${PALETTE[Number(group) % PALETTE.length]}`,
                           label: group === undefined ? null : `group ${group}` });
        return;
      }
      const head = name.match(/^(.+)_loss$/);
      if (head && name !== "loss") this.headChart(head[1]);
    } else if (!this.job?.plan?.heads && /^val_(?:[^_]+_)?accuracy$/.test(name) && !this.accChart.has(se)) {
      // no plan to say which: any accuracy goes on the accuracy chart
      const headName = name.slice(4, -9).replace(/_$/, "");
      this.accChart.add({ series: se, testid: headName ? `val-accuracy-path-${headName}` : "val-accuracy-path",
                          cls: headName ? `line-${PALETTE[this.accChart.entries.length % PALETTE.length]}` : "line-acc",
                          markers: true, label: headName || null, metric: "accuracy" });
    }
  }

  addChart(chart, box, axis) {
    this.charts.push({ chart, box, axis });
    if (this.resizeObs) this.resizeObs.observe(box);
    chart.setWidth(box.clientWidth);
  }

  // ------------------------------------------------------------------ build ---

  showNotFound(detail) {
    this.el = null;
    setLive("idle", "Nothing to follow");
    setCrumbs({ text: "Jobs", href: "#/" }, { text: "Not found" });
    this.root.replaceChildren(h("section", { class: "page" },
      h("div", { class: "card empty", "data-testid": "not-found" },
        h("div", { class: "empty-title" }, "Job not found"),
        h("p", {}, `No job with id `, h("code", {}, this.jobId), ` (${detail}).`),
        h("p", {}, h("a", { href: "#/" }, "← Back to all jobs")),
      )));
  }

  build(job) {
    this.job = job;
    const r = (this.refs = {});
    r.name = h("h1", { "data-testid": "job-name" });
    r.badge = statusBadge(job.status);
    r.id = h("span", { class: "mono muted", "data-testid": "job-id" }, job.id);
    r.errorTitle = h("strong", {}, "Training failed");
    r.errorText = h("pre", {});
    r.errorLink = h("button", { class: "link-button", type: "button", hidden: true, "data-testid": "show-traceback",
                                onclick: () => r.logCard.scrollIntoView({ behavior: "smooth", block: "start" }) }, "Show the log and traceback ↓");
    r.error = h("div", { class: "callout error", "data-testid": "job-error", role: "alert", hidden: true },
      h("div", { class: "callout-head" }, r.errorTitle, r.errorLink), r.errorText);
    r.progress = progressBar();
    r.cancel = h("button", { class: "btn danger", type: "button", "data-testid": "cancel-job",
                             onclick: () => this.cancel() }, "Cancel job");

    const tile = (label, testid, cls = "") => {
      const labelEl = h("div", { class: "tile-label" }, label);
      const value = h("div", { class: "tile-value", "data-testid": testid }, "—");
      const sub = h("div", { class: "tile-sub muted", "data-testid": `${testid}-sub` });
      return { el: h("div", { class: `tile ${cls}` }, labelEl, value, sub), label: labelEl, value, sub };
    };
    r.tTrain = tile("Train loss", "metric-train-loss");
    r.tVal = tile("Val loss", "metric-val-loss");
    r.tAcc = tile("Val accuracy", "metric-val-accuracy");
    r.tDur = tile("Duration", "metric-duration");
    r.tEpoch = tile("Epoch", "metric-epoch", "small");
    r.tRate = tile("Samples/s", "metric-samples-per-s", "small");
    r.tEta = tile("ETA", "metric-eta", "small");
    r.tLr = tile("Learning rate", "metric-lr", "small");

    // charts
    const lossBox = h("div", { class: "chart-box" });
    const accBox = h("div", { class: "chart-box" });
    const lrBox = h("div", { class: "chart-box" });
    const rateBox = h("div", { class: "chart-box" });
    r.lossChart = lossBox;
    r.accChart = accBox;
    this.lossChart = new LineChart({
      testid: "loss-chart", title: "Loss", xLabel: "step", integerX: true, tooltip, yFormat: fmtLoss,
      tip: (pt, e) => `${e.label} ${fmtLoss(pt.y)} · step ${fmtInt(pt.x)} · epoch ${pt.epoch}`,
    });
    this.lossChart.add({ series: this.getSeries("loss", "step"), testid: "train-loss-path", cls: "line-train", label: "train loss" });
    this.lossChart.add({ series: this.getSeries("val_loss@step", "epoch"), testid: "val-loss-path", cls: "line-val", markers: true, label: "val loss" });
    r.accLegend = h("div", { class: "legend" }, h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-acc" }), "per epoch"));
    this.accChart = new LineChart({
      testid: "accuracy-chart", title: "Validation accuracy", xLabel: "epoch", integerX: true, yClamp: [0, 1], tooltip,
      legend: r.accLegend,
      yFormat: (v) => `${Math.round(v * 1000) / 10}%`,
      tickFormat: (v, step, ref) => (this.accChart.opts.yClamp
        ? `${(v * 100).toFixed(Math.max(0, -Math.floor(Math.log10(step * 100) + 1e-9)))}%`
        : tickLabel(v, step, ref)),
      tip: (pt, e) => `epoch ${pt.x} · ${e.label ? `${e.label} ` : ""}val ${e.metric || "accuracy"} ${fmtMetric(e.metric || "accuracy", pt.y)}`,
      emptyText: "Validation accuracy appears after the first epoch.",
    });
    r.lrLegend = h("div", { class: "legend" });
    this.lrChart = new LineChart({
      testid: "lr-chart", title: "Learning rate", xLabel: "step", integerX: true, tooltip, legend: r.lrLegend,
      tip: (pt, e) => `${e.label ? `${e.label} ` : ""}lr ${fmtLr(pt.y)} · step ${fmtInt(pt.x)}`,
      emptyText: "The learning rate appears with the first step.",
    });
    this.rateChart = new LineChart({
      testid: "throughput-chart", title: "Throughput", xLabel: "step", integerX: true, tooltip,
      tickFormat: (v) => fmtRate(v),
      tip: (pt) => `${fmtRate(pt.y)} samples/s · step ${fmtInt(pt.x)}`,
      emptyText: "Throughput appears from the second step.",
    });
    this.rateChart.add({ series: this.getSeries("samples_per_s", "step"), testid: "samples-per-s-path", cls: "line-thr", label: null });
    lossBox.append(this.lossChart.svg);
    accBox.append(this.accChart.svg);
    lrBox.append(this.lrChart.svg);
    rateBox.append(this.rateChart.svg);

    r.lossLegend = h("div", { class: "legend" },
      h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-train" }), "Train loss (per step)"),
      h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-val" }), "Val loss (per epoch)"),
    );
    r.accTitle = h("h2", {}, "Validation accuracy");
    r.heads = h("div", { class: "grid two", "data-testid": "head-charts", hidden: true });

    this.logs = this.logs || new LogPanel();
    r.logCard = h("div", { class: "card log-card", "data-testid": "log-card" },
      h("div", { class: "card-head" }, h("h2", {}, "Log"), this.logs.countEl), this.logs.el);

    r.config = h("dl", { class: "kv", "data-testid": "job-config" });
    r.timeline = h("dl", { class: "kv", "data-testid": "job-timeline" });
    this.el = h("section", { class: "page detail", "data-testid": "job-detail", "data-job-id": job.id },
      h("div", { class: "page-head" },
        h("div", { class: "title-block" },
          h("a", { class: "back", href: "#/", "data-testid": "back-link" }, "← All jobs"),
          h("div", { class: "title-row" }, r.name, r.badge),
          r.id),
        h("div", { class: "actions" }, r.cancel),
      ),
      r.error,
      h("div", { class: "card progress-card" }, r.progress.wrap),
      h("div", { class: "tiles" }, r.tTrain.el, r.tVal.el, r.tAcc.el, r.tDur.el),
      h("div", { class: "tiles live-tiles", "data-testid": "live-tiles" }, r.tEpoch.el, r.tRate.el, r.tEta.el, r.tLr.el),
      h("div", { class: "grid charts" },
        h("div", { class: "card chart-card wide" },
          h("div", { class: "card-head" }, h("h2", {}, "Loss"), r.lossLegend),
          lossBox),
        h("div", { class: "card chart-card" },
          h("div", { class: "card-head" }, r.accTitle, r.accLegend),
          accBox),
      ),
      r.heads,
      h("div", { class: "grid two" },
        h("div", { class: "card chart-card" },
          h("div", { class: "card-head" }, h("h2", {}, "Learning rate"), r.lrLegend), lrBox),
        h("div", { class: "card chart-card" },
          h("div", { class: "card-head" }, h("h2", {}, "Throughput"),
            h("div", { class: "legend" }, h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-thr" }), "samples/s per step"))),
          rateBox),
      ),
      r.logCard,
      h("div", { class: "grid two" },
        h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Configuration")), r.config),
        h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Timeline")), r.timeline),
      ),
      this.model.el,
      this.ckpts.el,
      h("div", { class: "grid two" }, this.predictor.el, this.exporter.el),
      this.finetune.el,
    );
    this.root.replaceChildren(this.el);

    if (window.ResizeObserver) {
      this.resizeObs = new ResizeObserver((entries) => {
        for (const entry of entries) {
          const c = this.charts.find((x) => x.box === entry.target);
          if (c) c.chart.setWidth(entry.target.clientWidth);
        }
        this.frame.request();
      });
    }
    this.addChart(this.lossChart, lossBox, "steps");
    this.addChart(this.accChart, accBox, "epochs");
    this.addChart(this.lrChart, lrBox, "steps");
    this.addChart(this.rateChart, rateBox, "steps");
    // Series that arrived before the page was built find their charts now.
    for (const se of this.series.values()) this.route(se);
    this.setupValMetrics();
    this.setupHeads();
    this.predictor.setJob(job);
    this.finetune.setJob(job);
    this.model.setJob(job);
  }

  /** Ask the API to cancel; a running job stops at its next step, and its events say so. */
  async cancel() {
    this.refs.cancel.disabled = true;
    try {
      const job = await api(jobPath(this.jobId, "/cancel"), "POST");
      this.applyJob(job);
      this.render();
    } catch (err) {
      showBanner(err);
      this.refs.cancel.disabled = false;
    }
  }

  // ----------------------------------------------------------------- render ---

  /** Bring the DOM up to the model; each part changes only what differs. */
  render() {
    if (!this.el || !this.job || !this.active) return;
    const job = this.job;
    const r = this.refs;
    const terminal = TERMINAL.has(job.status);
    document.title = `${job.name || job.id} · Trainyard`;
    if (this.sig.crumb !== (job.name || job.id)) {
      this.sig.crumb = job.name || job.id;
      setCrumbs({ text: "Jobs", href: "#/" }, { text: job.name || job.id });
    }
    setText(r.name, job.name || job.id);
    setAttr(this.el, "data-status", job.status);
    updateBadge(r.badge, job.status);
    r.cancel.hidden = terminal;
    r.cancel.disabled = Boolean(job.cancel_requested);
    setText(r.cancel, job.cancel_requested ? "Cancelling…" : "Cancel job");

    r.error.hidden = !job.error;
    if (job.error) {
      setText(r.errorTitle, job.status === "failed" ? "Training failed" : "Error");
      setText(r.errorText, job.error);
      r.errorLink.hidden = this.logs.count === 0;
    }

    updateProgress(r.progress, job);
    this.renderTiles();

    const total = progressOf(job).total;
    const epochs = progressOf(job).epochs;
    for (const { chart, axis } of this.charts) {
      chart.setXHint(terminal ? null : axis === "epochs" ? epochs : total);
    }
    this.lossChart.setEmptyText(job.status === "queued" ? "Waiting for the first training step…" : terminal ? "No loss was recorded." : "No loss recorded yet.");
    for (const { chart } of this.charts) chart.render();

    this.logs.render();
    this.fillConfig(job);
    this.fillTimeline(job);
    this.ckpts.render(job);
  }

  last(name) {
    return this.series.get(name)?.last() ?? null;
  }

  renderTiles() {
    const job = this.job;
    const r = this.refs;
    const terminal = TERMINAL.has(job.status);
    const m = job.metrics || {};
    const label = terminal ? "final" : "latest";

    // Train loss: the newest step's while it runs, the last epoch's mean when done.
    const loss = this.last("loss");
    if (terminal && isNum(m.train_loss)) this.tile(r.tTrain, fmtLoss(m.train_loss), "final");
    else if (loss) this.tile(r.tTrain, fmtLoss(loss.y), `step ${fmtInt(loss.x)}`);
    else this.tile(r.tTrain, fmtLoss(m.train_loss), isNum(m.train_loss) ? label : "");

    const val = this.last("val_loss");
    if (terminal && isNum(m.val_loss)) this.tile(r.tVal, fmtLoss(m.val_loss), "final");
    else if (val) this.tile(r.tVal, fmtLoss(val.y), terminal ? `epoch ${val.x}` : `epoch ${val.x} · latest`);
    else this.tile(r.tVal, fmtLoss(m.val_loss), isNum(m.val_loss) ? label : "");

    const primary = (this.valList || this.valMetrics())[0];
    setText(r.tAcc.label, primary.metric === "accuracy" ? `Val accuracy${primary.head ? ` · ${primary.head}` : ""}` : `Val ${primary.metric}${primary.head ? ` · ${primary.head}` : ""}`);
    const fmt = (v) => (primary.metric === "accuracy" ? fmtPct(v, 2) : fmtMetric(primary.metric, v));
    const acc = this.last(primary.name);
    if (terminal && isNum(m[primary.name])) this.tile(r.tAcc, fmt(m[primary.name]), "final");
    else if (acc) this.tile(r.tAcc, fmt(acc.y), terminal ? `epoch ${acc.x}` : `epoch ${acc.x} · latest`);
    else this.tile(r.tAcc, fmt(m[primary.name]), isNum(m[primary.name]) ? label : "");

    this.tile(r.tDur, job.started_at ? fmtDuration(job.started_at, job.finished_at) : "—",
      job.finished_at ? "finished" : job.started_at ? "running" : "not started");

    const p = progressOf(job);
    this.tile(r.tEpoch, p.epochs || p.epoch ? `${p.epoch} / ${p.epochs || "?"}` : "—",
      p.total || p.step ? `step ${fmtInt(p.step)} / ${p.total ? fmtInt(p.total) : "?"}` : "");

    const rateSeries = this.series.get("samples_per_s");
    if (terminal) {
      const mean = rateSeries && rateSeries.length ? rateSeries.points.reduce((a, q) => a + q.y, 0) / rateSeries.length : null;
      this.tile(r.tRate, fmtRate(mean), isNum(mean) ? "average" : "");
    } else {
      const rate = isNum(this.rate?.samples_per_s) ? this.rate.samples_per_s : rateSeries?.last()?.y;
      this.tile(r.tRate, fmtRate(rate), isNum(rate) ? "moving average" : job.status === "running" ? "measuring…" : "");
    }

    if (job.status === "succeeded") this.tile(r.tEta, "Done", "finished");
    else if (terminal) this.tile(r.tEta, "—", job.status);
    else if (job.status === "queued") this.tile(r.tEta, "—", "waiting for a worker");
    else if (isNum(this.rate?.eta_s)) {
      const left = Math.max(0, this.rate.eta_s - (Date.now() - this.rate.at) / 1000);
      this.tile(r.tEta, fmtSeconds(left), "remaining");
    } else this.tile(r.tEta, "—", "estimating…");

    let lr = this.last("lr");
    let lrSub = "";
    if (!lr) {
      const groups = [...this.series.keys()].filter((k) => /^lr_\d+$/.test(k));
      if (groups.length) {
        lr = this.last(groups.sort()[0]);
        lrSub = `group 0 of ${groups.length}`;
      }
    }
    if (lr) this.tile(r.tLr, fmtLr(lr.y), lrSub || (terminal ? `last, step ${fmtInt(lr.x)}` : `step ${fmtInt(lr.x)}`));
    else this.tile(r.tLr, isNum(job.training?.optimizer?.lr) ? fmtLr(job.training.optimizer.lr) : "—", isNum(job.training?.optimizer?.lr) ? "configured" : "");
  }

  tile(t, value, sub) {
    setText(t.value, value);
    setText(t.sub, value === "—" && !sub ? "" : sub);
  }

  fillConfig(job) {
    const t = job.training || {};
    const opt = t.optimizer || {};
    const rows = [
      ["Model", modelSummary(job.model), "config-model"],
      ["Dataset", job.dataset_id ?? "—", "config-dataset", "mono"],
      ["Optimizer", opt.type ?? "—", "config-optimizer"],
      ["Learning rate", opt.lr ?? "—", "config-lr"],
      ["Epochs", t.epochs ?? "—", "config-epochs"],
      ["Batch size", t.batch_size ?? "—", "config-batch-size"],
    ];
    if (t.seed !== undefined && t.seed !== null) rows.push(["Seed", t.seed, "config-seed"]);
    if (isNum(t.validation_split)) rows.push(["Validation split", `${Math.round(t.validation_split * 1000) / 10}%`, "config-validation-split"]);
    if (t.scheduler && t.scheduler.type) rows.push(["Scheduler", t.scheduler.type, "config-scheduler"]);
    if (isNum(t.devices)) rows.push(["Devices", t.devices, "config-devices"]);
    const heads = Object.keys(job.plan?.heads || {});
    if (heads.length > 1) rows.push(["Heads", heads.join(", "), "config-heads", "mono"]);
    const extra = Object.entries(opt).filter(([k]) => k !== "type" && k !== "lr");
    if (extra.length) rows.push(["Optimizer args", extra.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", "), "config-optimizer-args", "mono"]);
    fillKv(this.refs.config, rows);
  }

  fillTimeline(job) {
    const rows = [
      ["Created", fmtAbsolute(job.created_at), "time-created"],
      ["Started", fmtAbsolute(job.started_at), "time-started"],
      ["Finished", fmtAbsolute(job.finished_at), "time-finished"],
    ];
    if (isNum(job.attempt) && job.attempt > 0) {
      rows.push(["Attempt", `${job.attempt}${job.worker ? ` · ${job.worker}` : ""}`, "time-attempt"]);
    }
    const est = job.estimate;
    if (est && est.cpu && isNum(est.cpu.seconds)) {
      const side = (e, where) => `${fmtSeconds(e.seconds)} on a ${where}${e.calibrated ? "" : " (uncalibrated)"}`;
      rows.push(["Estimated", [side(est.cpu, "CPU worker"), est.cuda ? side(est.cuda, "GPU") : null]
        .filter(Boolean).join(" · "), "time-estimate"]);
    }
    if (job.started_at && job.finished_at) rows.push(["Took", fmtDuration(job.started_at, job.finished_at), "time-took"]);
    if (job.failure_kind) rows.push(["Failure", job.failure_kind, "time-failure-kind"]);
    rows.push(["Job id", job.id, "time-job-id", "mono"]);
    fillKv(this.refs.timeline, rows);
  }
}

function fillKv(dl, rows) {
  const sig = JSON.stringify(rows);
  if (dl.dataset.sig === sig) return;
  dl.dataset.sig = sig;
  dl.replaceChildren(...rows.flatMap(([k, v, testid, cls]) => [
    h("dt", {}, k),
    h("dd", { "data-testid": testid, class: cls || null }, String(v)),
  ]));
}

function modelSummary(spec) {
  if (!spec || typeof spec !== "object") return "—";
  if (Array.isArray(spec.layers)) {
    const parts = spec.layers.map((l) => {
      const t = l?.type ?? "?";
      if (t === "Linear" && l.in_features !== undefined) return `Linear(${l.in_features}→${l.out_features})`;
      if (t === "Conv2d" && l.in_channels !== undefined) return `Conv2d(${l.in_channels}→${l.out_channels}, k${l.kernel_size})`;
      return t;
    });
    return `Sequential: ${parts.join(" → ")}`;
  }
  if (spec.graph) {
    const nodes = spec.graph.nodes || [];
    const heads = spec.graph.outputs ? Object.keys(spec.graph.outputs) : [];
    return `Graph: ${nodes.length} nodes${heads.length ? `, heads ${heads.join(", ")}` : ""}`;
  }
  if (spec.zoo) {
    const args = spec.args ? Object.entries(spec.args).map(([k, v]) => `${k}=${v}`).join(", ") : "";
    return `${spec.zoo}${args ? `(${args})` : ""}`;
  }
  return JSON.stringify(spec).slice(0, 120);
}
