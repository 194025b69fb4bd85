// Trainyard dashboard: a dependency-free single page over the /v1 REST API.
//
// Routes (hash based, so the static server only ever serves index.html):
//   #/              the job list, polled every 2 s
//   #/jobs/{id}     one job: status, config, metrics, charts, checkpoints;
//                   polled every 2 s until the job reaches a terminal status.
//
// Everything user-supplied (job names, errors, ids) goes into the DOM via
// textContent, never innerHTML.

const POLL_MS = 2000;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"];
const API_ROOT = new URL("v1/", document.baseURI);
const KEY_STORAGE = "trainyard.apiKey";
const SVG_NS = "http://www.w3.org/2000/svg";

// ---------------------------------------------------------------- API ------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}`, "X-API-Key": key } : {};
}

async function api(path, method = "GET") {
  let resp;
  try {
    resp = await fetch(new URL(path, API_ROOT), {
      method,
      headers: { Accept: "application/json", ...authHeaders() },
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, "network error");
  }
  if (!resp.ok) {
    let detail = resp.statusText || `HTTP ${resp.status}`;
    try {
      const body = await resp.json();
      if (body && body.detail !== undefined) {
        detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      }
    } catch {
      /* not JSON */
    }
    throw new ApiError(resp.status, detail);
  }
  return resp.json();
}

const jobPath = (id, rest = "") => `jobs/${encodeURIComponent(id)}${rest}`;

// ------------------------------------------------------------ helpers ------

/** Create an HTML element. attrs: class, text, on*, data-*, anything else as attribute. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Create an SVG element. */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function applyAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") el.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function setText(el, text) {
  const t = text === null || text === undefined ? "" : String(text);
  if (el.textContent !== t) el.textContent = t;
}

function setAttr(el, name, value) {
  const v = String(value);
  if (el.getAttribute(name) !== v) el.setAttribute(name, v);
}

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

/** Parse an ISO timestamp; one without an offset is taken as UTC (what the service stores). */
function parseTime(iso) {
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

function fmtAbsolute(iso) {
  const d = parseTime(iso);
  return d ? dateFmt.format(d) : "—";
}

function fmtRelative(iso) {
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

function fmtDuration(fromIso, toIso) {
  const a = parseTime(fromIso);
  if (!a) return "—";
  const b = toIso ? parseTime(toIso) : new Date();
  if (!b) return "—";
  const exact = Math.max(0, (b - a) / 1000);
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

function fmtLoss(v) {
  if (!isNum(v)) return "—";
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(3);
  return v.toFixed(4);
}

function fmtPct(v, digits = 1) {
  return isNum(v) ? `${(v * 100).toFixed(digits)}%` : "—";
}

function fmtBytes(n) {
  if (!isNum(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

function fmtInt(n) {
  return isNum(n) ? n.toLocaleString() : "—";
}

function progressOf(job) {
  const p = job.progress || {};
  const epochs = isNum(p.epochs) && p.epochs > 0 ? p.epochs : job.training?.epochs;
  const total = isNum(p.total_steps) ? p.total_steps : 0;
  const step = isNum(p.step) ? p.step : 0;
  let frac = total > 0 ? Math.min(1, step / total) : 0;
  if (job.status === "succeeded") frac = 1;
  return { epoch: isNum(p.epoch) ? p.epoch : 0, epochs: epochs || 0, step, total, frac };
}

function statusBadge(status, testid = "job-status") {
  const el = h("span", { class: "badge", "data-testid": testid });
  updateBadge(el, status);
  return el;
}

function updateBadge(el, status) {
  const known = STATUSES.includes(status) ? status : "unknown";
  setAttr(el, "class", `badge badge-${known}`);
  setAttr(el, "data-status", status ?? "");
  setText(el, status ?? "unknown");
}

function progressBar() {
  const fill = h("div", { class: "progress-fill" });
  const bar = h("div", { class: "progress-track", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, fill);
  const label = h("div", { class: "progress-label" });
  const wrap = h("div", { class: "progress", "data-testid": "job-progress" }, bar, label);
  return { wrap, bar, fill, label };
}

function updateProgress(pb, job) {
  const p = progressOf(job);
  const pct = Math.round(p.frac * 1000) / 10;
  setAttr(pb.fill, "style", `width: ${pct}%`);
  setAttr(pb.fill, "data-status", job.status);
  setAttr(pb.bar, "aria-valuenow", pct);
  setAttr(pb.wrap, "data-step", p.step);
  setAttr(pb.wrap, "data-total-steps", p.total);
  let text;
  if (job.status === "queued" && p.step === 0) text = "Waiting for a worker";
  else if (p.total > 0 || p.epochs > 0) {
    text = `Epoch ${p.epoch}/${p.epochs || "?"} · Step ${fmtInt(p.step)}/${p.total ? fmtInt(p.total) : "?"}`;
  } else text = "—";
  setText(pb.label, text);
}

// ------------------------------------------------------------- chrome ------

const banner = document.getElementById("banner");
const live = document.getElementById("live");
const crumbs = document.getElementById("crumbs");
const tooltip = document.getElementById("tooltip");
const viewRoot = document.getElementById("view");

function setLive(state, title) {
  setAttr(live, "data-state", state);
  const text = { live: "Live", paused: "Paused", error: "Offline", idle: "Up to date" }[state] || "";
  setText(live.querySelector(".live-text"), text);
  live.title = title || text;
}

function showBanner(err) {
  banner.replaceChildren();
  if (err.status === 401 || err.status === 403) {
    const input = h("input", { type: "password", placeholder: "API key", "aria-label": "API key", value: apiKey(), "data-testid": "api-key-input" });
    const form = h("form", {
      class: "key-form",
      onsubmit: (ev) => {
        ev.preventDefault();
        try {
          localStorage.setItem(KEY_STORAGE, input.value.trim());
        } catch {
          /* storage disabled */
        }
        hideBanner();
        router.refresh();
      },
    }, input, h("button", { type: "submit" }, "Use key"));
    banner.append(h("span", {}, `The API refused the request (${err.status}: ${err.message}). Enter an API key:`), form);
  } else if (err.status === 0) {
    banner.append(h("span", {}, "Can't reach the Trainyard API. Retrying…"));
  } else {
    banner.append(h("span", {}, `The API answered ${err.status}: ${err.message}. Retrying…`));
  }
  banner.hidden = false;
  setLive("error", err.message);
}

function hideBanner() {
  if (!banner.hidden) banner.hidden = true;
}

function setCrumbs(...parts) {
  crumbs.replaceChildren(
    ...parts.flatMap((p, i) => [
      i ? h("span", { class: "crumb-sep", "aria-hidden": "true" }, "/") : null,
      p.href ? h("a", { href: p.href }, p.text) : h("span", { class: "crumb-current" }, p.text),
    ]).filter(Boolean),
  );
}

// ------------------------------------------------------------- poller ------

/** Calls fn every `ms` after the previous call finished; fn returning false stops it.
 *  Pauses while the tab is hidden and catches up as soon as it is visible again. */
class Poller {
  constructor(fn, ms = POLL_MS) {
    this.fn = fn;
    this.ms = ms;
    this.active = false;
    this.busy = false;
    this.timer = null;
    this.deferred = false;
  }

  start() {
    this.active = true;
    this.tick();
  }

  stop() {
    this.active = false;
    clearTimeout(this.timer);
  }

  wake() {
    if (this.active && this.deferred) this.tick();
  }

  async tick() {
    clearTimeout(this.timer);
    if (!this.active || this.busy) return;
    if (document.hidden) {
      this.deferred = true;
      setLive("paused", "Auto-refresh pauses while the tab is hidden");
      return;
    }
    this.deferred = false;
    this.busy = true;
    let keepGoing = true;
    try {
      keepGoing = (await this.fn()) !== false;
      hideBanner();
      setLive(keepGoing ? "live" : "idle", keepGoing ? `Refreshing every ${this.ms / 1000} s` : "Finished — no more updates");
    } catch (err) {
      if (!this.active) return;
      if (err instanceof ApiError) showBanner(err);
      else {
        console.error(err);
        showBanner(new ApiError(-1, String(err && err.message ? err.message : err)));
      }
    } finally {
      this.busy = false;
    }
    if (!keepGoing) this.active = false;
    if (this.active) this.timer = setTimeout(() => this.tick(), this.ms);
  }
}

// ----------------------------------------------------------- list view -----

class JobListView {
  constructor(root) {
    this.root = root;
    this.rows = new Map();
    this.poller = new Poller(() => this.load());
  }

  mount() {
    setCrumbs({ text: "Jobs" });
    document.title = "Jobs · Trainyard";
    this.count = h("span", { class: "count", "data-testid": "job-count" });
    this.tbody = h("tbody", { "data-testid": "job-list" });
    this.table = h("table", { class: "jobs" },
      h("thead", {}, h("tr", {},
        h("th", { class: "col-name" }, "Name"),
        h("th", { class: "col-status" }, "Status"),
        h("th", { class: "col-progress" }, "Progress"),
        h("th", { class: "col-acc num" }, "Val accuracy"),
        h("th", { class: "col-created" }, "Created"),
      )),
      this.tbody,
    );
    this.empty = h("div", { class: "empty", "data-testid": "empty-state", hidden: true },
      h("div", { class: "empty-title" }, "No jobs yet"),
      h("p", {}, "Submit a training job with ", h("code", {}, "POST /v1/jobs"), " and it will show up here within a couple of seconds."),
    );
    this.loading = h("div", { class: "empty loading", "data-testid": "loading" }, "Loading jobs…");
    this.root.replaceChildren(
      h("section", { class: "page", "data-testid": "job-list-view" },
        h("div", { class: "page-head" }, h("h1", {}, "Jobs"), this.count),
        h("div", { class: "card table-card" }, this.loading, this.table, this.empty),
      ),
    );
    this.table.hidden = true;
    if (JobListView.cache) this.update(JobListView.cache);
    this.poller.start();
  }

  unmount() {
    this.poller.stop();
  }

  async load() {
    const data = await api("jobs");
    const items = Array.isArray(data) ? data : data.items || [];
    JobListView.cache = items;
    if (this.poller.active) this.update(items);
    return true;
  }

  update(jobs) {
    this.loading.hidden = true;
    this.empty.hidden = jobs.length > 0;
    this.table.hidden = jobs.length === 0;
    setText(this.count, jobs.length ? `${jobs.length} job${jobs.length === 1 ? "" : "s"}` : "");
    const seen = new Set();
    jobs.forEach((job, i) => {
      seen.add(job.id);
      let row = this.rows.get(job.id);
      if (!row) {
        row = this.createRow(job);
        this.rows.set(job.id, row);
      }
      this.fillRow(row, job);
      if (this.tbody.children[i] !== row.tr) this.tbody.insertBefore(row.tr, this.tbody.children[i] || null);
    });
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        this.rows.delete(id);
      }
    }
  }

  createRow(job) {
    const href = `#/jobs/${encodeURIComponent(job.id)}`;
    const name = h("a", { class: "job-name", href, "data-testid": "job-name" });
    const id = h("div", { class: "job-id mono" }, job.id);
    const badge = statusBadge(job.status);
    const pb = progressBar();
    const acc = h("td", { class: "num", "data-testid": "job-val-accuracy" });
    const created = h("td", { class: "muted", "data-testid": "job-created" });
    const tr = h("tr", {
      class: "job-row",
      "data-testid": "job-row",
      "data-job-id": job.id,
      onclick: (ev) => {
        if (ev.target.closest("a") || ev.defaultPrevented) return;
        if (ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
        location.hash = href;
      },
    },
      h("td", {}, name, id),
      h("td", {}, badge),
      h("td", {}, pb.wrap),
      acc,
      created,
    );
    return { tr, name, badge, pb, acc, created };
  }

  fillRow(row, job) {
    setText(row.name, job.name || job.id);
    setAttr(row.tr, "data-status", job.status);
    updateBadge(row.badge, job.status);
    updateProgress(row.pb, job);
    setText(row.acc, fmtPct(job.metrics?.val_accuracy));
    setText(row.created, fmtRelative(job.created_at));
    setAttr(row.created, "title", fmtAbsolute(job.created_at));
  }
}
JobListView.cache = null;

// --------------------------------------------------------- detail view -----

class JobDetailView {
  constructor(root, jobId) {
    this.root = root;
    this.jobId = jobId;
    this.chartSig = {};
    this.poller = new Poller(() => this.load());
  }

  mount() {
    setCrumbs({ text: "Jobs", href: "#/" }, { text: this.jobId });
    document.title = "Job · Trainyard";
    const cached = (JobListView.cache || []).find((j) => j.id === this.jobId);
    this.root.replaceChildren(h("section", { class: "page", "data-testid": "job-detail", "data-job-id": this.jobId },
      h("div", { class: "empty loading", "data-testid": "loading" }, "Loading job…")));
    if (cached) this.build(cached);
    this.poller.start();
  }

  unmount() {
    this.poller.stop();
    if (this.resizeObs) this.resizeObs.disconnect();
  }

  async load() {
    let job;
    try {
      job = await api(jobPath(this.jobId));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        this.showNotFound(err.message);
        return false;
      }
      throw err;
    }
    // Metrics and checkpoints are read after the job, so a job already seen as
    // finished never shows metrics from before it finished.
    const [metrics, checkpoints] = await Promise.all([
      api(jobPath(this.jobId, "/metrics")),
      api(jobPath(this.jobId, "/checkpoints")),
    ]);
    if (!this.poller.active) return false;
    if (!this.el) this.build(job);
    this.update(job, metrics, checkpoints);
    return !TERMINAL.has(job.status);
  }

  /** Ask the API to cancel; a running job stops at its next step, then polling shows it. */
  async cancel() {
    this.refs.cancel.disabled = true;
    try {
      const job = await api(jobPath(this.jobId, "/cancel"), "POST");
      this.update(job, null, null);
    } catch (err) {
      showBanner(err);
    }
  }

  showNotFound(detail) {
    this.el = null;
    setCrumbs({ text: "Jobs", href: "#/" }, { text: "Not found" });
    this.root.replaceChildren(h("section", { class: "page" },
      h("div", { class: "card empty", "data-testid": "not-found" },
        h("div", { class: "empty-title" }, "Job not found"),
        h("p", {}, `No job with id `, h("code", {}, this.jobId), ` (${detail}).`),
        h("p", {}, h("a", { href: "#/" }, "← Back to all jobs")),
      )));
  }

  build(job) {
    const r = (this.refs = {});
    r.name = h("h1", { "data-testid": "job-name" });
    r.badge = statusBadge(job.status);
    r.id = h("span", { class: "mono muted", "data-testid": "job-id" }, job.id);
    r.error = h("div", { class: "callout error", "data-testid": "job-error", role: "alert", hidden: true });
    r.progress = progressBar();
    r.cancel = h("button", { class: "btn danger", type: "button", "data-testid": "cancel-job",
                             onclick: () => this.cancel() }, "Cancel job");

    const tile = (label, testid) => {
      const value = h("div", { class: "tile-value", "data-testid": testid }, "—");
      const sub = h("div", { class: "tile-sub muted" });
      return { el: h("div", { class: "tile" }, h("div", { class: "tile-label" }, label), value, sub), value, sub };
    };
    r.tTrain = tile("Train loss", "metric-train-loss");
    r.tVal = tile("Val loss", "metric-val-loss");
    r.tAcc = tile("Val accuracy", "metric-val-accuracy");
    r.tDur = tile("Duration", "metric-duration");

    r.lossChart = h("div", { class: "chart-box" });
    r.accChart = h("div", { class: "chart-box" });
    r.lossLegend = h("div", { class: "legend" },
      h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-train" }), "Train loss (per step)"),
      h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-val" }), "Val loss (per epoch)"),
    );

    r.config = h("dl", { class: "kv", "data-testid": "job-config" });
    r.timeline = h("dl", { class: "kv", "data-testid": "job-timeline" });
    r.ckptBody = h("tbody", { "data-testid": "checkpoint-list" });
    r.ckptEmpty = h("div", { class: "empty small", "data-testid": "checkpoints-empty" });
    r.ckptTable = h("table", { class: "ckpts" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Epoch"), h("th", { class: "num" }, "Step"), h("th", { class: "num" }, "Size"),
        h("th", {}, "Created"), h("th", {}, ""))),
      r.ckptBody);

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
      h("div", { class: "grid charts" },
        h("div", { class: "card chart-card wide" },
          h("div", { class: "card-head" }, h("h2", {}, "Loss"), r.lossLegend),
          r.lossChart),
        h("div", { class: "card chart-card" },
          h("div", { class: "card-head" }, h("h2", {}, "Validation accuracy"),
            h("div", { class: "legend" }, h("span", { class: "legend-item" }, h("i", { class: "swatch swatch-acc" }), "per epoch"))),
          r.accChart),
      ),
      h("div", { class: "grid two" },
        h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Configuration")), r.config),
        h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Timeline")), r.timeline),
      ),
      h("div", { class: "card" },
        h("div", { class: "card-head" }, h("h2", {}, "Checkpoints")),
        r.ckptTable, r.ckptEmpty),
    );
    this.root.replaceChildren(this.el);
    this.update(job, null, null);
  }

  update(job, metrics, checkpoints) {
    const r = this.refs;
    document.title = `${job.name || job.id} · Trainyard`;
    setCrumbs({ text: "Jobs", href: "#/" }, { text: job.name || job.id });
    setText(r.name, job.name || job.id);
    setAttr(this.el, "data-status", job.status);
    updateBadge(r.badge, job.status);
    r.cancel.hidden = TERMINAL.has(job.status);
    r.cancel.disabled = Boolean(job.cancel_requested);
    setText(r.cancel, job.cancel_requested ? "Cancelling…" : "Cancel job");

    r.error.hidden = !job.error;
    if (job.error) {
      if (!r.error.firstChild) r.error.append(h("strong", {}, "Training failed"), h("pre", {}));
      setText(r.error.querySelector("strong"), job.status === "failed" ? "Training failed" : "Error");
      setText(r.error.querySelector("pre"), job.error);
    }

    updateProgress(r.progress, job);

    const m = job.metrics || {};
    setText(r.tTrain.value, fmtLoss(m.train_loss));
    setText(r.tVal.value, fmtLoss(m.val_loss));
    setText(r.tAcc.value, fmtPct(m.val_accuracy, 2));
    setText(r.tDur.value, job.started_at ? fmtDuration(job.started_at, job.finished_at) : "—");
    setText(r.tDur.sub, job.finished_at ? "finished" : job.started_at ? "running" : "not started");
    const label = TERMINAL.has(job.status) ? "final" : "latest";
    for (const t of [r.tTrain, r.tVal, r.tAcc]) setText(t.sub, t.value.textContent === "—" ? "" : label);

    this.fillConfig(job);
    this.fillTimeline(job);
    if (metrics) this.drawCharts(job, metrics);
    if (checkpoints) this.fillCheckpoints(job, checkpoints);
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
    const extra = Object.entries(opt).filter(([k]) => k !== "type" && k !== "lr");
    if (extra.length) rows.push(["Optimizer args", extra.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", "), "config-optimizer-args", "mono"]);
    fillKv(this.refs.config, rows);
  }

  fillTimeline(job) {
    fillKv(this.refs.timeline, [
      ["Created", fmtAbsolute(job.created_at), "time-created"],
      ["Started", fmtAbsolute(job.started_at), "time-started"],
      ["Finished", fmtAbsolute(job.finished_at), "time-finished"],
      ["Job id", job.id, "time-job-id", "mono"],
    ]);
  }

  fillCheckpoints(job, data) {
    const r = this.refs;
    const items = (Array.isArray(data) ? data : data.items || []).slice().sort((a, b) => (a.step ?? 0) - (b.step ?? 0));
    r.ckptTable.hidden = items.length === 0;
    r.ckptEmpty.hidden = items.length > 0;
    setText(r.ckptEmpty, TERMINAL.has(job.status) ? "This job saved no checkpoints." : "No checkpoints yet — one is saved as training progresses.");
    const sig = JSON.stringify(items.map((c) => [c.id, c.created_at]));
    if (sig === this.chartSig.ckpt) {
      // Only the relative times move.
      r.ckptBody.querySelectorAll("[data-created]").forEach((td) => setText(td, fmtRelative(td.dataset.created)));
      return;
    }
    this.chartSig.ckpt = sig;
    const safe = (job.name || "job").replace(/[^\w.-]+/g, "_").slice(0, 60);
    r.ckptBody.replaceChildren(...items.map((c) => {
      const link = h("a", {
        class: "button small",
        href: c.download_url,
        download: `${safe}-epoch${c.epoch}-step${c.step}.safetensors`,
        "data-testid": "checkpoint-link",
        "data-checkpoint-id": c.id,
        onclick: (ev) => downloadWithKey(ev, c.download_url, `${safe}-epoch${c.epoch}-step${c.step}.safetensors`),
      }, "Download");
      return h("tr", { "data-testid": "checkpoint-row", "data-checkpoint-id": c.id },
        h("td", {}, `Epoch ${c.epoch}`),
        h("td", { class: "num mono" }, fmtInt(c.step)),
        h("td", { class: "num mono" }, fmtBytes(c.size_bytes)),
        h("td", { class: "muted", title: fmtAbsolute(c.created_at), "data-created": c.created_at ?? "" }, fmtRelative(c.created_at)),
        h("td", { class: "actions" }, link));
    }));
  }

  drawCharts(job, metrics) {
    this.lastDraw = [job, metrics];
    if (!this.resizeObs && window.ResizeObserver) {
      let widths = [0, 0];
      this.resizeObs = new ResizeObserver(() => {
        const now = [this.refs.lossChart.clientWidth, this.refs.accChart.clientWidth];
        if (Math.abs(now[0] - widths[0]) < 2 && Math.abs(now[1] - widths[1]) < 2) return;
        widths = now;
        if (this.lastDraw) {
          this.chartSig.metrics = null;
          this.drawCharts(...this.lastDraw);
        }
      });
      this.resizeObs.observe(this.refs.lossChart);
      this.resizeObs.observe(this.refs.accChart);
    }
    const steps = (metrics.steps || []).filter((p) => isNum(p.step) && isNum(p.loss)).sort((a, b) => a.step - b.step);
    const epochs = (metrics.epochs || []).filter((e) => isNum(e.epoch)).sort((a, b) => a.epoch - b.epoch);
    const widths = [this.refs.lossChart.clientWidth, this.refs.accChart.clientWidth];
    const sig = JSON.stringify([steps.length, steps.at(-1), epochs, widths]);
    if (sig === this.chartSig.metrics) return;
    this.chartSig.metrics = sig;

    // x position of an epoch's validation point: the last step of that epoch.
    const lastStepOfEpoch = new Map();
    for (const p of steps) lastStepOfEpoch.set(p.epoch, Math.max(lastStepOfEpoch.get(p.epoch) ?? 0, p.step));
    const prog = progressOf(job);
    const perEpoch = prog.total && prog.epochs ? prog.total / prog.epochs : null;
    const epochX = (e) => lastStepOfEpoch.get(e) ?? (perEpoch ? Math.round(e * perEpoch) : null);

    const val = epochs.filter((e) => isNum(e.val_loss) && epochX(e.epoch) !== null)
      .map((e) => ({ x: epochX(e.epoch), y: e.val_loss, epoch: e.epoch }));
    const train = steps.map((p) => ({ x: p.step, y: p.loss, epoch: p.epoch }));

    this.refs.lossChart.replaceChildren(lineChart({
      testid: "loss-chart",
      width: widths[0],
      title: "Loss",
      xLabel: "step",
      integerX: true,
      series: [
        { key: "train", testid: "train-loss-path", points: train, cls: "line-train", label: "train loss" },
        { key: "val", testid: "val-loss-path", points: val, cls: "line-val", markers: true, label: "val loss" },
      ],
      yFormat: (v) => fmtLoss(v),
      tip: (pt, series) => `${series.label} ${fmtLoss(pt.y)} · step ${fmtInt(pt.x)} · epoch ${pt.epoch}`,
      emptyText: job.status === "queued" ? "Waiting for the first training step…" : "No loss recorded yet.",
    }));

    const acc = epochs.filter((e) => isNum(e.val_accuracy)).map((e) => ({ x: e.epoch, y: e.val_accuracy, epoch: e.epoch }));
    this.refs.accChart.replaceChildren(lineChart({
      testid: "accuracy-chart",
      width: widths[1],
      title: "Validation accuracy",
      xLabel: "epoch",
      integerX: true,
      yClamp: [0, 1],
      series: [{ key: "acc", testid: "val-accuracy-path", points: acc, cls: "line-acc", markers: true, label: "val accuracy" }],
      yFormat: (v) => `${Math.round(v * 1000) / 10}%`,
      tickFormat: (v, step) => `${(v * 100).toFixed(Math.max(0, -Math.floor(Math.log10(step * 100) + 1e-9)))}%`,
      tip: (pt) => `epoch ${pt.x} · val accuracy ${fmtPct(pt.y, 2)}`,
      emptyText: "Validation accuracy appears after the first epoch.",
    }));
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

/** A plain link downloads when no API key is configured; with a key the file is
 *  fetched with the key's header and handed to the browser as a blob. */
async function downloadWithKey(ev, url, filename) {
  if (!apiKey()) return;
  ev.preventDefault();
  try {
    const resp = await fetch(url, { headers: authHeaders() });
    if (!resp.ok) throw new ApiError(resp.status, resp.statusText);
    const blob = await resp.blob();
    const href = URL.createObjectURL(blob);
    const a = h("a", { href, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 10000);
  } catch (err) {
    showBanner(err instanceof ApiError ? err : new ApiError(0, String(err)));
  }
}

// -------------------------------------------------------------- charts -----

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

/**
 * A line chart as an <svg>. Each series becomes one <path> with exactly one
 * M/L command per point (tests count them), plus optional circle markers.
 */
function lineChart(opts) {
  // The viewBox matches the box's real width, so text keeps its CSS size.
  const W = Math.max(280, Math.round(opts.width || 720));
  const H = 260;
  const m = { l: 56, r: 14, t: 12, b: 38 };
  const iw = W - m.l - m.r;
  const ih = H - m.t - m.b;
  const all = opts.series.flatMap((se) => se.points);
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${W} ${H}`,
    role: "img",
    "aria-label": opts.title,
    "data-testid": opts.testid,
    "data-points": all.length,
  });

  if (all.length === 0) {
    svg.append(
      s("rect", { class: "plot-bg", x: m.l, y: m.t, width: iw, height: ih }),
      s("text", { class: "chart-empty", x: m.l + iw / 2, y: m.t + ih / 2, "text-anchor": "middle", "dominant-baseline": "middle" }, opts.emptyText || "No data yet"),
    );
    for (const se of opts.series) svg.append(s("path", { class: `line ${se.cls}`, d: "", "data-testid": se.testid, "data-points": 0 }));
    return svg;
  }

  let x0 = Math.min(...all.map((p) => p.x));
  let x1 = Math.max(...all.map((p) => p.x));
  if (opts.integerX) x0 = Math.min(x0, 1);
  if (x1 - x0 < 1) {
    x0 -= 0.5;
    x1 += 0.5;
  }
  let y0 = Math.min(...all.map((p) => p.y));
  let y1 = Math.max(...all.map((p) => p.y));
  const pad = (y1 - y0 || Math.abs(y1) || 1) * 0.08;
  y0 -= pad;
  y1 += pad;
  if (opts.yClamp) {
    y0 = Math.max(opts.yClamp[0], y0);
    y1 = Math.min(opts.yClamp[1], y1);
    if (y1 - y0 < 0.02) {
      y0 = Math.max(opts.yClamp[0], y0 - 0.01);
      y1 = Math.min(opts.yClamp[1], y1 + 0.01);
    }
  } else if (y0 > 0 && y0 < (y1 - y0) * 0.35) {
    y0 = 0; // losses: show the zero line when it is close anyway
  }

  const sx = (x) => m.l + ((x - x0) / (x1 - x0)) * iw;
  const sy = (y) => m.t + ih - ((y - y0) / (y1 - y0)) * ih;

  const yt = ticks(y0, y1, 5, false);
  const xt = ticks(x0, x1, Math.max(2, Math.floor(iw / 80)), !!opts.integerX);
  const tickText = opts.tickFormat || ((v, step) => v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9))));

  const grid = s("g", { class: "grid" });
  const axes = s("g", { class: "axes" });
  for (const v of yt.values) {
    const y = round2(sy(v));
    grid.append(s("line", { x1: m.l, x2: m.l + iw, y1: y, y2: y }));
    axes.append(s("text", { x: m.l - 8, y, "text-anchor": "end", "dominant-baseline": "middle" }, tickText(v, yt.step)));
  }
  for (const v of xt.values) {
    if (v < x0 - 1e-9 || v > x1 + 1e-9) continue;
    const x = round2(sx(v));
    grid.append(s("line", { class: "v", x1: x, x2: x, y1: m.t, y2: m.t + ih }));
    axes.append(s("text", { x, y: m.t + ih + 18, "text-anchor": "middle" }, fmtInt(v)));
  }
  axes.append(
    s("line", { class: "axis", x1: m.l, x2: m.l + iw, y1: m.t + ih, y2: m.t + ih }),
    s("text", { class: "axis-label", x: m.l + iw, y: H - 4, "text-anchor": "end" }, opts.xLabel),
  );
  svg.append(s("rect", { class: "plot-bg", x: m.l, y: m.t, width: iw, height: ih }), grid, axes);

  const clipId = `clip-${opts.testid}`;
  svg.append(s("defs", {}, s("clipPath", { id: clipId }, s("rect", { x: m.l - 6, y: m.t - 6, width: iw + 12, height: ih + 12 }))));
  const plot = s("g", { "clip-path": `url(#${clipId})` });
  svg.append(plot);

  for (const se of opts.series) {
    const d = se.points.map((p, i) => `${i ? "L" : "M"}${round2(sx(p.x))},${round2(sy(p.y))}`).join(" ");
    plot.append(s("path", { class: `line ${se.cls}`, d, "data-testid": se.testid, "data-points": se.points.length }));
    if (se.markers || se.points.length === 1) {
      const g = s("g", { class: `markers ${se.cls}` });
      for (const p of se.points) g.append(s("circle", { cx: round2(sx(p.x)), cy: round2(sy(p.y)), r: 3.5 }));
      plot.append(g);
    }
  }

  // Hover: a crosshair on the nearest point of any series.
  const cross = s("g", { class: "crosshair", visibility: "hidden" },
    s("line", { y1: m.t, y2: m.t + ih }), s("circle", { r: 4.5 }));
  svg.append(cross);
  const hit = s("rect", { class: "hit", x: m.l, y: m.t, width: iw, height: ih });
  svg.append(hit);
  const hide = () => {
    cross.setAttribute("visibility", "hidden");
    tooltip.hidden = true;
  };
  hit.addEventListener("mousemove", (ev) => {
    const box = svg.getBoundingClientRect();
    const vx = ((ev.clientX - box.left) / box.width) * W;
    const vy = ((ev.clientY - box.top) / box.height) * H;
    let best = null;
    for (const se of opts.series) {
      for (const p of se.points) {
        const dx = sx(p.x) - vx;
        const dy = (sy(p.y) - vy) * 0.15; // x matters most
        const dist = dx * dx + dy * dy;
        if (!best || dist < best.dist) best = { dist, p, se };
      }
    }
    if (!best) return hide();
    const cx = sx(best.p.x);
    const cy = sy(best.p.y);
    cross.setAttribute("visibility", "visible");
    cross.firstChild.setAttribute("x1", cx);
    cross.firstChild.setAttribute("x2", cx);
    cross.lastChild.setAttribute("cx", cx);
    cross.lastChild.setAttribute("cy", cy);
    cross.lastChild.setAttribute("class", best.se.cls);
    tooltip.textContent = opts.tip ? opts.tip(best.p, best.se) : `${best.p.x}: ${best.p.y}`;
    tooltip.hidden = false;
    const tx = box.left + (cx / W) * box.width;
    const ty = box.top + (cy / H) * box.height;
    tooltip.style.left = `${Math.round(tx)}px`;
    tooltip.style.top = `${Math.round(ty)}px`;
  });
  hit.addEventListener("mouseleave", hide);
  return svg;
}

// -------------------------------------------------------------- router -----

const router = {
  view: null,
  parse() {
    const hash = location.hash.replace(/^#/, "");
    const match = hash.match(/^\/jobs\/([^/?#]+)\/?$/);
    if (match) return { name: "job", id: decodeURIComponent(match[1]) };
    return { name: "list" };
  },
  go() {
    if (this.view) this.view.unmount();
    tooltip.hidden = true;
    hideBanner();
    const route = this.parse();
    this.view = route.name === "job" ? new JobDetailView(viewRoot, route.id) : new JobListView(viewRoot);
    this.view.mount();
    window.scrollTo(0, 0);
  },
  refresh() {
    if (this.view) {
      this.view.poller.active = true;
      this.view.poller.tick();
    }
  },
};

window.addEventListener("hashchange", () => router.go());
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && router.view) router.view.poller.wake();
});
router.go();
