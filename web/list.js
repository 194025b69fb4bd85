// The runs table (#/): the owner's jobs with server-side search, filters and sort
// (GET /v1/jobs: q, status, dataset_id, sweep_id, tag, sort, cursor pagination), chosen
// metric and config columns, multi-select with bulk compare / tag / cancel / delete.
//
// Live: running and queued rows follow their event streams (livestatus.js) and the first
// page is read again every few seconds to find new jobs; rows are kept and updated in
// place, never rebuilt. The filters live in the URL (#/?status=running&q=mnist).

import { ApiError, api, jobPath, qs } from "./api.js";
import { Poller, reportError, setCrumbs } from "./chrome.js";
import { ColumnChooser, columnLabel, configOf, fmtCell, loadColumns, splitColumn } from "./columns.js";
import { ask } from "./dialog.js";
import { LiveStatus } from "./livestatus.js";
import { STATUSES, TERMINAL, fmtAbsolute, fmtRelative, h, setAttr, setText } from "./util.js";
import { progressBar, statusBadge, updateBadge, updateProgress } from "./widgets.js";

/** The last list the API gave, which a job page shows while it loads its own. */
export const listCache = { items: null };

export const PAGE_SIZE = 50;
export const REFRESH_MS = 3000;
const FILTERS = ["q", "status", "dataset_id", "sweep_id", "tag", "sort"];
const MAX_COMPARE = 20;

export class RunsTableView {
  constructor(root, params = {}) {
    this.root = root;
    this.filters = {};
    for (const k of FILTERS) if (params[k]) this.filters[k] = params[k];
    this.sort = this.filters.sort || "-created";
    this.columns = loadColumns();
    this.rows = new Map(); // id -> row
    this.jobs = new Map(); // id -> job
    this.order = []; // ids in display order
    this.selected = new Set();
    this.cursor = null; // the next page's
    this.pages = 1;
    this.poller = new Poller(() => this.reload(), REFRESH_MS, `Live: streams for running jobs, the list every ${REFRESH_MS / 1000} s`);
    this.live = new LiveStatus((id, patch) => this.patch(id, patch));
    this.searchTimer = null;
  }

  // -------------------------------------------------------------- lifecycle ---

  mount() {
    setCrumbs({ text: "Runs" });
    document.title = "Runs · Trainyard";
    this.build();
    if (listCache.items && !Object.keys(this.filters).length) this.setPage(listCache.items, null, true);
    this.poller.start();
    this.loadChoices();
  }

  unmount() {
    this.poller.stop();
    this.live.stop();
    this.chooser.destroy();
    clearTimeout(this.searchTimer);
  }

  wake() {
    this.poller.wake();
  }

  refresh() {
    this.poller.active = true;
    this.poller.tick();
  }

  // ------------------------------------------------------------------ data ---

  query(cursor = null, limit = PAGE_SIZE) {
    const tags = this.filters.tag ? this.filters.tag.split(",").map((t) => t.trim()).filter(Boolean) : [];
    return `jobs${qs({ ...this.filters, tag: tags, sort: this.sort, limit, cursor })}`;
  }

  /** The first pages again (as many as are shown), merged into the rows in place. */
  async reload() {
    const limit = Math.min(1000, PAGE_SIZE * this.pages);
    const data = await api(this.query(null, limit));
    const items = data.items || [];
    if (!Object.keys(this.filters).length && this.sort === "-created") listCache.items = items.slice(0, PAGE_SIZE);
    if (this.poller.active) this.setPage(items, data.next_cursor, true);
    return true;
  }

  async loadMore() {
    if (!this.cursor) return;
    this.more.disabled = true;
    try {
      const data = await api(this.query(this.cursor));
      this.pages += 1;
      this.setPage(data.items || [], data.next_cursor, false);
    } catch (err) {
      reportError(err);
    } finally {
      this.more.disabled = false;
    }
  }

  /** Filters or sort changed: back to the first page, and the URL says what is shown. */
  requery() {
    this.pages = 1;
    const hash = `#/${qs({ ...this.filters, sort: this.sort === "-created" ? null : this.sort })}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
    this.loading.hidden = false;
    this.refresh();
  }

  /** Lists for the filter menus: datasets and sweeps by name. */
  async loadChoices() {
    const fill = (select, items, current) => {
      for (const it of items) select.append(h("option", { value: it.id, selected: it.id === current }, it.name || it.id));
    };
    try {
      const [datasets, sweeps] = await Promise.all([
        api("datasets").catch(() => ({ items: [] })),
        api("sweeps").catch(() => ({ items: [] })),
      ]);
      fill(this.datasetSel, datasets.items || [], this.filters.dataset_id);
      fill(this.sweepSel, sweeps.items || [], this.filters.sweep_id);
    } catch (err) {
      console.warn("filter choices", err);
    }
  }

  /** A page of jobs: replace the list (first pages) or append to it (load more). */
  setPage(items, nextCursor, replace) {
    this.loading.hidden = true;
    for (const j of items) this.jobs.set(j.id, j);
    if (replace) {
      const fresh = items.map((j) => j.id);
      const seen = new Set(fresh);
      // rows past the pages read again stay where they are
      const tail = this.order.slice(fresh.length).filter((id) => !seen.has(id) && this.pages > 1);
      this.order = [...fresh, ...tail];
      if (this.pages === 1 || !this.cursor) this.cursor = nextCursor;
    } else {
      const seen = new Set(this.order);
      this.order.push(...items.map((j) => j.id).filter((id) => !seen.has(id)));
      this.cursor = nextCursor;
    }
    this.render();
  }

  /** A stream's news for one row. */
  patch(id, data) {
    const job = this.jobs.get(id);
    if (!job) return;
    if (data.progress) job.progress = { ...job.progress, ...data.progress };
    for (const k of ["status", "error", "cancel_requested", "attempt"]) if (data[k] !== undefined) job[k] = data[k];
    const row = this.rows.get(id);
    if (row) this.fillRow(row, job);
    if (data.ended || TERMINAL.has(job.status)) {
      // its final metrics
      api(jobPath(id)).then((fresh) => {
        this.jobs.set(id, fresh);
        const r = this.rows.get(id);
        if (r) this.fillRow(r, fresh);
      }).catch(() => {});
    }
  }

  // ----------------------------------------------------------------- build ---

  build() {
    const f = this.filters;
    this.search = h("input", {
      type: "search", class: "text-input search", placeholder: "Search names, or tag:foo", "aria-label": "Search runs",
      value: f.q || (f.tag ? `tag:${f.tag}` : ""), "data-testid": "run-search",
      oninput: () => {
        clearTimeout(this.searchTimer);
        this.searchTimer = setTimeout(() => this.applySearch(), 300);
      },
      onkeydown: (ev) => {
        if (ev.key === "Enter") {
          clearTimeout(this.searchTimer);
          this.applySearch();
        }
      },
    });
    const select = (label, testid, key, options) => {
      const el = h("select", { class: "select", "aria-label": label, "data-testid": testid,
                               onchange: () => this.setFilter(key, el.value) },
        h("option", { value: "" }, label), ...options.map((o) => h("option", { value: o, selected: o === f[key] }, o)));
      return el;
    };
    this.statusSel = select("Any status", "filter-status", "status", STATUSES);
    this.datasetSel = select("Any dataset", "filter-dataset", "dataset_id", []);
    this.sweepSel = select("Any sweep", "filter-sweep", "sweep_id", []);
    this.chooser = new ColumnChooser(this.columns, (cols) => {
      this.columns = cols;
      this.buildHead();
      this.rows.clear();
      this.tbody.replaceChildren();
      this.render();
    });

    this.count = h("span", { class: "count", "data-testid": "job-count" });
    this.selectAll = h("input", { type: "checkbox", "aria-label": "Select all shown runs", "data-testid": "select-all",
                                  onchange: () => this.toggleAll(this.selectAll.checked) });
    this.thead = h("thead", {});
    this.tbody = h("tbody", { "data-testid": "job-list" });
    this.table = h("table", { class: "jobs runs" }, this.thead, this.tbody);
    this.buildHead();
    this.empty = h("div", { class: "empty", "data-testid": "empty-state", hidden: true },
      h("div", { class: "empty-title" }, "No jobs yet"),
      h("p", {}, "Start one from ", h("a", { href: "#/new" }, "New job"), " or with ", h("code", {}, "POST /v1/jobs"),
        "; it shows up here within a few seconds."));
    this.noMatch = h("div", { class: "empty", "data-testid": "no-match", hidden: true },
      h("div", { class: "empty-title" }, "No runs match"),
      h("p", {}, h("button", { type: "button", class: "link-button", onclick: () => this.clearFilters() }, "Clear the filters")));
    this.loading = h("div", { class: "empty loading", "data-testid": "loading" }, "Loading jobs…");
    this.more = h("button", { type: "button", class: "btn", "data-testid": "load-more", hidden: true,
                              onclick: () => this.loadMore() }, "Load more");

    this.selCount = h("span", { "data-testid": "selected-count" });
    this.compareLink = h("a", { class: "btn primary", "data-testid": "bulk-compare", href: "#/compare" }, "Compare");
    const bulkBtn = (text, testid, fn, cls = "btn") => h("button", { type: "button", class: cls, "data-testid": testid, onclick: fn }, text);
    this.bulk = h("div", { class: "bulk-bar", "data-testid": "bulk-bar", role: "toolbar", "aria-label": "Selected runs", hidden: true },
      this.selCount, this.compareLink,
      bulkBtn("Tag…", "bulk-tag", () => this.bulkTag()),
      bulkBtn("Cancel", "bulk-cancel", () => this.bulkCancel()),
      bulkBtn("Delete", "bulk-delete", () => this.bulkDelete(), "btn danger"),
      bulkBtn("Clear selection", "bulk-clear", () => this.toggleAll(false), "link-button"));

    this.root.replaceChildren(
      h("section", { class: "page", "data-testid": "job-list-view" },
        h("div", { class: "page-head" }, h("h1", {}, "Runs"), this.count),
        h("div", { class: "toolbar", role: "search" }, this.search, this.statusSel, this.datasetSel, this.sweepSel, this.chooser.el),
        this.bulk,
        h("div", { class: "card table-card" },
          this.loading,
          h("div", { class: "table-scroll" }, this.table),
          this.empty, this.noMatch,
          h("div", { class: "table-foot" }, this.more)),
      ),
    );
    this.table.hidden = true;
  }

  buildHead() {
    const sortable = (text, key, cls = "") => {
      const current = this.sort.replace(/^-/, "");
      const dir = current === key ? (this.sort.startsWith("-") ? "descending" : "ascending") : "none";
      const arrow = dir === "descending" ? " ↓" : dir === "ascending" ? " ↑" : "";
      return h("th", { class: cls, "aria-sort": dir },
        h("button", { type: "button", class: "sort", "data-testid": `sort-${key}`, onclick: () => this.setSort(key) }, text, arrow));
    };
    const extra = this.columns.map((c) => {
      const [kind, name] = splitColumn(c);
      return kind === "metric" ? sortable(columnLabel(c), `metric:${name}`, "num col-extra")
        : h("th", { class: "num col-extra", title: name }, columnLabel(c));
    });
    this.thead.replaceChildren(h("tr", {},
      h("th", { class: "col-select" }, this.selectAll),
      sortable("Name", "name", "col-name"),
      h("th", { class: "col-status" }, "Status"),
      h("th", { class: "col-progress" }, "Progress"),
      ...extra,
      sortable("Created", "created", "col-created")));
  }

  applySearch() {
    const text = this.search.value.trim();
    const tag = text.match(/^tag:\s*(\S+)$/);
    this.filters.q = tag ? undefined : text || undefined;
    this.filters.tag = tag ? tag[1] : undefined;
    this.cleanFilters();
    this.requery();
  }

  setFilter(key, value) {
    this.filters[key] = value || undefined;
    this.cleanFilters();
    this.requery();
  }

  clearFilters() {
    this.filters = {};
    this.search.value = "";
    for (const sel of [this.statusSel, this.datasetSel, this.sweepSel]) sel.value = "";
    this.requery();
  }

  cleanFilters() {
    for (const k of Object.keys(this.filters)) if (this.filters[k] === undefined || this.filters[k] === "") delete this.filters[k];
    delete this.filters.sort;
  }

  /** A header click: that key, descending first for metrics and dates, then the other way. */
  setSort(key) {
    const current = this.sort.replace(/^-/, "");
    if (current === key) this.sort = this.sort.startsWith("-") ? key : `-${key}`;
    else this.sort = key === "name" ? key : `-${key}`;
    this.buildHead();
    this.requery();
  }

  // ---------------------------------------------------------------- render ---

  render() {
    const n = this.order.length;
    const filtered = Object.keys(this.filters).length > 0;
    this.empty.hidden = n > 0 || filtered;
    this.noMatch.hidden = n > 0 || !filtered;
    this.table.hidden = n === 0;
    this.more.hidden = !this.cursor;
    setText(this.count, n ? `${n}${this.cursor ? "+" : ""} job${n === 1 ? "" : "s"}` : "");
    const seen = new Set();
    this.order.forEach((id, i) => {
      const job = this.jobs.get(id);
      seen.add(id);
      let row = this.rows.get(id);
      if (!row) {
        row = this.createRow(job);
        this.rows.set(id, row);
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
    for (const id of [...this.selected]) if (!seen.has(id)) this.selected.delete(id);
    this.chooser.offer([...this.order.map((id) => this.jobs.get(id))]);
    this.live.follow(this.order.map((id) => this.jobs.get(id)));
    this.renderSelection();
  }

  createRow(job) {
    const href = `#/jobs/${encodeURIComponent(job.id)}`;
    const check = h("input", { type: "checkbox", "aria-label": `Select ${job.name || job.id}`, "data-testid": "row-select",
                               onchange: () => this.toggle(job.id, check.checked) });
    const name = h("a", { class: "job-name", href, "data-testid": "job-name" });
    const id = h("div", { class: "job-id mono" }, job.id,
      job.sweep_id ? h("a", { class: "sweep-link", href: `#/sweeps/${encodeURIComponent(job.sweep_id)}`, "data-testid": "sweep-link" }, "sweep") : null);
    const tags = h("div", { class: "tags", "data-testid": "job-tags" });
    const badge = statusBadge(job.status);
    const pb = progressBar();
    const extras = this.columns.map((c) => {
      const [, name_] = splitColumn(c);
      return h("td", { class: "num col-extra", "data-testid": `job-${name_.replace(/[_.]/g, "-")}`, "data-column": c });
    });
    const created = h("td", { class: "muted col-created", "data-testid": "job-created" });
    const tr = h("tr", {
      class: "job-row",
      tabindex: 0,
      "data-testid": "job-row",
      "data-job-id": job.id,
      onclick: (ev) => {
        if (ev.target.closest("a, input, button") || ev.defaultPrevented) return;
        if (ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
        location.hash = href;
      },
      onkeydown: (ev) => {
        if (ev.target !== tr) return;
        if (ev.key === "Enter") {
          ev.preventDefault();
          location.hash = href;
        } else if (ev.key === " ") {
          ev.preventDefault();
          check.checked = !check.checked;
          this.toggle(job.id, check.checked);
        }
      },
    },
      h("td", { class: "col-select" }, check),
      h("td", { class: "col-name" }, name, id, tags),
      h("td", {}, badge),
      h("td", { class: "col-progress" }, pb.wrap),
      ...extras,
      created,
    );
    return { tr, check, name, tags, badge, pb, extras, created, tagKey: null };
  }

  fillRow(row, job) {
    setText(row.name, job.name || job.id);
    setAttr(row.tr, "data-status", job.status);
    updateBadge(row.badge, job.status);
    updateProgress(row.pb, job);
    const config = configOf(job);
    row.extras.forEach((td) => setText(td, fmtCell(td.dataset.column, job, config)));
    setText(row.created, fmtRelative(job.created_at));
    setAttr(row.created, "title", fmtAbsolute(job.created_at));
    const tagKey = (job.tags || []).join("\u0000");
    if (tagKey !== row.tagKey) {
      row.tagKey = tagKey;
      row.tags.replaceChildren(...(job.tags || []).map((t) => h("button", {
        type: "button", class: "tag", "data-testid": "job-tag", title: `Show runs tagged ${t}`,
        onclick: () => {
          this.search.value = `tag:${t}`;
          this.applySearch();
        },
      }, t)));
    }
    row.check.checked = this.selected.has(job.id);
    row.tr.classList.toggle("selected", this.selected.has(job.id));
  }

  // ------------------------------------------------------------- selection ---

  toggle(id, on) {
    if (on) this.selected.add(id);
    else this.selected.delete(id);
    const row = this.rows.get(id);
    if (row) row.tr.classList.toggle("selected", on);
    this.renderSelection();
  }

  toggleAll(on) {
    for (const id of this.order) this.toggle(id, on);
    for (const row of this.rows.values()) row.check.checked = on && this.selected.has(row.tr.dataset.jobId);
  }

  renderSelection() {
    const n = this.selected.size;
    this.bulk.hidden = n === 0;
    setText(this.selCount, `${n} selected`);
    this.selectAll.checked = n > 0 && n === this.order.length;
    this.selectAll.indeterminate = n > 0 && n < this.order.length;
    const ids = [...this.selected];
    const canCompare = n >= 2 && n <= MAX_COMPARE;
    this.compareLink.setAttribute("href", canCompare ? `#/compare?ids=${ids.map(encodeURIComponent).join(",")}` : "#/");
    this.compareLink.classList.toggle("disabled", !canCompare);
    this.compareLink.setAttribute("aria-disabled", String(!canCompare));
    this.compareLink.title = canCompare ? "" : `Select 2 to ${MAX_COMPARE} runs to compare`;
    if (!canCompare) this.compareLink.onclick = (ev) => ev.preventDefault();
    else this.compareLink.onclick = null;
  }

  selectedJobs() {
    return [...this.selected].map((id) => this.jobs.get(id)).filter(Boolean);
  }

  /** Run `fn` on each selected job; report the first failure; read the list again. */
  async each(jobs, fn) {
    const failures = [];
    await Promise.all(jobs.map(async (j) => {
      try {
        await fn(j);
      } catch (err) {
        failures.push({ job: j, err });
      }
    }));
    if (failures.length) {
      const first = failures[0];
      reportError(new ApiError(first.err.status ?? -1,
        `${failures.length} of ${jobs.length} failed; ${first.job.name || first.job.id}: ${first.err.message}`));
    }
    return failures;
  }

  async bulkDelete() {
    const jobs = this.selectedJobs();
    const running = jobs.filter((j) => !TERMINAL.has(j.status)).length;
    const ok = await ask({
      title: `Delete ${jobs.length} run${jobs.length === 1 ? "" : "s"}?`,
      message: `Their metrics, logs and checkpoints go too${running ? `; ${running} still running will be cancelled first` : ""}. This cannot be undone.`,
      confirm: "Delete", danger: true,
    });
    if (!ok) return;
    await this.each(jobs, (j) => api(jobPath(j.id), "DELETE"));
    for (const j of jobs) {
      this.selected.delete(j.id);
      this.jobs.delete(j.id);
    }
    this.order = this.order.filter((id) => this.jobs.has(id));
    this.render();
    this.refresh();
  }

  async bulkCancel() {
    const jobs = this.selectedJobs().filter((j) => !TERMINAL.has(j.status));
    if (!jobs.length) {
      await ask({ title: "Nothing to cancel", message: "Every selected run has already finished.", confirm: "OK" });
      return;
    }
    const ok = await ask({ title: `Cancel ${jobs.length} run${jobs.length === 1 ? "" : "s"}?`,
                           message: "Running jobs stop at their next step and keep their checkpoints.",
                           confirm: "Cancel runs", danger: true });
    if (!ok) return;
    await this.each(jobs, async (j) => this.jobs.set(j.id, await api(jobPath(j.id, "/cancel"), "POST")));
    this.render();
  }

  async bulkTag() {
    const jobs = this.selectedJobs();
    const tag = await ask({ title: `Tag ${jobs.length} run${jobs.length === 1 ? "" : "s"}`,
                            input: { label: "Tag", placeholder: "e.g. baseline" }, confirm: "Add tag" });
    if (!tag) return;
    await this.each(jobs, async (j) => {
      const tags = [...new Set([...(j.tags || []), tag])];
      this.jobs.set(j.id, await api(jobPath(j.id), "PATCH", { tags }));
    });
    this.render();
  }
}

/** The old name of the view. */
export const JobListView = RunsTableView;
