// Live status of many jobs at once (the runs table): one event stream per job that is
// still queued or running, at most MAX_STREAMS at a time (a browser opens six
// connections per host and the page needs some for its requests). Only status and
// progress events matter here; a job whose stream keeps failing, or any job while an
// API key is in use (EventSource cannot send one), is left to the table's slow poll.

import { apiKey, apiUrl, jobPath } from "./api.js";
import { TERMINAL, parseJson } from "./util.js";

export const MAX_STREAMS = 4;
const ERROR_LIMIT = 3;

export class LiveStatus {
  /** onChange(jobId, patch): patch holds status fields, or {progress}. */
  constructor(onChange) {
    this.onChange = onChange;
    this.streams = new Map(); // id -> {es, errors, seq}
    this.given = new Set(); // ids whose streams failed for good
  }

  /** Follow these jobs ([{id, status, event_seq}], in display order); stop following the rest. */
  follow(jobs) {
    const want = [];
    if (typeof window.EventSource === "function" && !apiKey()) {
      for (const j of jobs) {
        if (want.length >= MAX_STREAMS) break;
        if (!TERMINAL.has(j.status) && !this.given.has(j.id)) want.push(j);
      }
    }
    const keep = new Set(want.map((j) => j.id));
    for (const id of [...this.streams.keys()]) if (!keep.has(id)) this.close(id);
    for (const j of want) if (!this.streams.has(j.id)) this.open(j);
  }

  get count() {
    return this.streams.size;
  }

  open(job) {
    const url = apiUrl(jobPath(job.id, "/events"));
    url.searchParams.set("after", String(job.event_seq || 0));
    const es = new EventSource(url);
    const st = { es, errors: 0, seq: job.event_seq || 0 };
    this.streams.set(job.id, st);
    const take = (type) => (ev) => {
      if (this.streams.get(job.id) !== st) return;
      st.errors = 0;
      const seq = Number(ev.lastEventId);
      if (Number.isFinite(seq)) {
        if (seq <= st.seq && type !== "end") return;
        st.seq = seq;
      }
      let data;
      try {
        data = parseJson(ev.data);
      } catch {
        return;
      }
      if (type === "status") this.onChange(job.id, data);
      else if (type === "progress") this.onChange(job.id, { progress: data });
      else if (type === "end") {
        this.close(job.id);
        this.given.add(job.id);
        this.onChange(job.id, { status: data.status, ended: true });
      }
    };
    for (const type of ["status", "progress", "end"]) es.addEventListener(type, take(type));
    es.onerror = () => {
      if (this.streams.get(job.id) !== st) return;
      st.errors += 1;
      if (st.errors >= ERROR_LIMIT || es.readyState === EventSource.CLOSED) {
        this.close(job.id);
        this.given.add(job.id);
      }
    };
  }

  close(id) {
    const st = this.streams.get(id);
    if (st) st.es.close();
    this.streams.delete(id);
  }

  stop() {
    for (const id of [...this.streams.keys()]) this.close(id);
  }
}
