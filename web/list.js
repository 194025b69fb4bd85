// The job list (#/): every job with its status, progress and validation accuracy,
// polled every 2 s. Rows are kept and updated in place, never rebuilt.

import { api } from "./api.js";
import { Poller, setCrumbs } from "./chrome.js";
import { fmtAbsolute, fmtPct, fmtRelative, h, setAttr, setText } from "./util.js";
import { progressBar, statusBadge, updateBadge, updateProgress } from "./widgets.js";

/** The last list the API gave, which a job page shows while it loads its own. */
export const listCache = { items: null };

export class JobListView {
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
    if (listCache.items) this.update(listCache.items);
    this.poller.start();
  }

  unmount() {
    this.poller.stop();
  }

  wake() {
    this.poller.wake();
  }

  refresh() {
    this.poller.active = true;
    this.poller.tick();
  }

  async load() {
    const data = await api("jobs");
    const items = Array.isArray(data) ? data : data.items || [];
    listCache.items = items;
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

/** The runs table (#/): until it lands, the job list. */
export const RunsTableView = JobListView;
