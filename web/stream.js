// A job's live feed: the /events stream (Server-Sent Events), or polling when the
// stream is not to be had.
//
// The stream's events carry ids (the job's event seq). The browser reconnects by
// itself and sends Last-Event-ID; an event it has already seen (a server without
// the header's support would replay) is dropped here. After `end` the stream is
// closed for good. If EventSource is missing, an API key must be sent (EventSource
// cannot send headers), or the stream fails ERROR_LIMIT times without an event in
// between, the feed polls instead: the job, /metrics?after_step=, /logs?after= and
// the checkpoints every 2 s, until the job is terminal.

import { ApiError, api, apiKey, apiUrl, jobPath } from "./api.js";
import { POLL_MS, Poller } from "./chrome.js";
import { TERMINAL, isNum, parseJson } from "./util.js";

export const EVENT_TYPES = ["status", "progress", "metric", "checkpoint", "log"];
export const ERROR_LIMIT = 3;

export class JobFeed {
  /**
   * handlers.onEvent(type, data, seq)  an event (seq null for what polling found)
   * handlers.onJob(job)                a fresh read of the job (polling)
   * handlers.onEnd(status, polled)     the job is terminal; nothing more will come
   * handlers.onMode(mode, detail)      connecting | live | reconnecting | polling | ended
   * cursor() -> {lastStep, lastLogSeq} what the page already has, for polling
   * stepsPerEpoch() -> n or null       to place old-style epoch rows on the step axis
   */
  constructor(jobId, handlers, cursor, stepsPerEpoch = () => null) {
    this.jobId = jobId;
    this.handlers = handlers;
    this.cursor = cursor;
    this.stepsPerEpoch = stepsPerEpoch;
    this.active = false;
    this.es = null;
    this.errors = 0;
    this.lastSeq = 0;
    this.retryTimer = null;
    this.poller = null;
    this.pollAttempt = null;
    this.mode = null;
  }

  /** Follow the job from after event `after` (0: its whole history). */
  start(after = 0) {
    this.active = true;
    this.lastSeq = after;
    if (typeof window.EventSource !== "function") this.startPolling("this browser has no EventSource");
    else if (apiKey()) this.startPolling("the event stream cannot send an API key");
    else this.open();
  }

  stop() {
    this.active = false;
    clearTimeout(this.retryTimer);
    if (this.es) this.es.close();
    this.es = null;
    if (this.poller) this.poller.stop();
  }

  wake() {
    if (this.poller) this.poller.wake();
  }

  setMode(mode, detail = "") {
    this.mode = mode;
    this.handlers.onMode(mode, detail);
  }

  // ------------------------------------------------------------ stream ---

  open() {
    const url = apiUrl(jobPath(this.jobId, "/events"));
    if (this.lastSeq > 0) url.searchParams.set("after", String(this.lastSeq));
    const es = new EventSource(url);
    this.es = es;
    this.setMode(this.errors ? "reconnecting" : "connecting");
    es.onopen = () => {
      if (this.es === es) this.setMode("live");
    };
    for (const type of EVENT_TYPES) es.addEventListener(type, (ev) => this.message(es, type, ev));
    es.addEventListener("end", (ev) => {
      if (this.es !== es) return;
      let status = null;
      try {
        status = parseJson(ev.data).status ?? null;
      } catch {
        /* the end is the end */
      }
      this.finish(status, false);
    });
    es.onerror = () => this.streamError(es);
  }

  message(es, type, ev) {
    if (this.es !== es || !this.active) return;
    this.errors = 0;
    if (this.mode !== "live") this.setMode("live");
    const seq = ev.lastEventId ? Number(ev.lastEventId) : null;
    if (isNum(seq)) {
      if (seq <= this.lastSeq) return; // replayed: already here
      this.lastSeq = seq;
    }
    let data;
    try {
      data = parseJson(ev.data);
    } catch (err) {
      console.warn(`unreadable ${type} event ${seq}:`, err);
      return;
    }
    this.handlers.onEvent(type, data, isNum(seq) ? seq : null);
  }

  streamError(es) {
    if (this.es !== es || !this.active) return;
    this.errors += 1;
    if (this.errors >= ERROR_LIMIT) {
      es.close();
      this.es = null;
      this.startPolling(`the event stream failed ${this.errors} times in a row`);
      return;
    }
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (an HTTP error, not an event stream): open a new one from where we are.
      this.es = null;
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => {
        if (this.active) this.open();
      }, 500 * this.errors);
    }
    this.setMode("reconnecting");
  }

  finish(status, polled) {
    if (this.es) this.es.close();
    this.es = null;
    if (this.poller) this.poller.stop();
    const wasActive = this.active;
    this.active = false;
    if (!wasActive) return;
    this.setMode("ended");
    this.handlers.onEnd(status, polled);
  }

  // ----------------------------------------------------------- polling ---

  startPolling(reason) {
    if (!this.active) return;
    this.setMode("polling", reason);
    this.poller = new Poller(() => this.poll(), POLL_MS, `Refreshing every ${POLL_MS / 1000} s: ${reason}`);
    this.poller.start();
  }

  async poll() {
    const job = await api(jobPath(this.jobId));
    if (!this.active) return false;
    this.handlers.onJob(job);
    const cur = this.cursor();
    // A new attempt may rewrite steps after its checkpoint: read the metrics again from the start.
    const fromStart = this.pollAttempt !== null && job.attempt !== this.pollAttempt;
    this.pollAttempt = job.attempt;
    // One step of overlap: an epoch's rows share the step of its last step rows and may
    // be written after them. Points arriving twice replace themselves.
    const afterStep = fromStart ? 0 : Math.max(0, cur.lastStep - 1);
    const query = afterStep > 0 ? `after_step=${afterStep}` : "max_points=2000";
    const [metrics, logs, checkpoints] = await Promise.all([
      api(jobPath(this.jobId, `/metrics?${query}`)),
      api(jobPath(this.jobId, `/logs?after=${cur.lastLogSeq || 0}&limit=10000`)).catch(missingIsNull),
      api(jobPath(this.jobId, "/checkpoints")),
    ]);
    if (!this.active) return false;
    const rows = metricRows(metrics, this.stepsPerEpoch());
    if (rows.length) this.handlers.onEvent("metric", { rows }, null);
    if (logs && (logs.lines?.length || logs.truncated)) {
      this.handlers.onEvent("log", { lines: logs.lines || [], truncated: logs.truncated }, null);
    }
    const items = Array.isArray(checkpoints) ? checkpoints : checkpoints?.items || [];
    for (const c of items) this.handlers.onEvent("checkpoint", c, null);
    if (TERMINAL.has(job.status)) {
      this.finish(job.status, true);
      return false;
    }
    return true;
  }
}

function missingIsNull(err) {
  if (err instanceof ApiError && err.status === 404) return null; // a server without /logs
  throw err;
}

/**
 * A /metrics answer as metric rows {kind, name, step, epoch, value}.
 * With `series` ({name: {kind, step: [], epoch: [], value: []}}, "<kind>:<name>" for a name
 * both kinds use) that is exact. The older
 * answer has `steps` [{step, epoch, loss}] (rows of other names may be mixed in, unnamed:
 * the first row of a step is its loss) and `epochs` [{epoch, <name>: value, ...}], whose
 * step is the epoch's last step seen (or epoch x steps per epoch).
 */
export function metricRows(answer, stepsPerEpoch = null) {
  if (!answer || typeof answer !== "object") return [];
  const rows = [];
  if (answer.series && typeof answer.series === "object") {
    for (const [key, se] of Object.entries(answer.series)) {
      const kind = se?.kind || "step";
      // a name both kinds use is keyed "<kind>:<name>"
      const name = key.startsWith(`${kind}:`) ? key.slice(kind.length + 1) : key;
      const values = se?.value || [];
      for (let i = 0; i < values.length; i++) {
        rows.push({ kind, name, step: se.step?.[i], epoch: se.epoch?.[i], value: values[i] });
      }
    }
    return rows;
  }
  const seen = new Set();
  const lastStepOfEpoch = new Map();
  for (const p of answer.steps || []) {
    if (!isNum(p?.step)) continue;
    if (!p.name) {
      if (seen.has(p.step)) continue;
      seen.add(p.step);
    }
    rows.push({ kind: "step", name: p.name || "loss", step: p.step, epoch: p.epoch, value: p.value ?? p.loss });
    if (isNum(p.epoch)) lastStepOfEpoch.set(p.epoch, Math.max(lastStepOfEpoch.get(p.epoch) ?? 0, p.step));
  }
  for (const e of answer.epochs || []) {
    if (!isNum(e?.epoch)) continue;
    const step = isNum(e.step) ? e.step : lastStepOfEpoch.get(e.epoch) ?? (stepsPerEpoch ? e.epoch * stepsPerEpoch : null);
    for (const [name, value] of Object.entries(e)) {
      if (name === "epoch" || name === "step" || !isNum(value)) continue;
      rows.push({ kind: "epoch", name, step, epoch: e.epoch, value });
    }
  }
  return rows;
}
