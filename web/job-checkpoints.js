// The job page's checkpoints: the kept ones as the server lists them (latest and best marked),
// each with its download. Others (export, predict, fine-tune) offer the same list to choose from.

import { apiKey } from "./api.js";
import { showBanner } from "./chrome.js";
import { download } from "./download.js";
import { TERMINAL, fmtAbsolute, fmtBytes, fmtInt, fmtRelative, h, setText } from "./util.js";

export class CheckpointsCard {
  constructor() {
    this.map = new Map(); // id -> checkpoint
    this.sig = "";
    this.listeners = [];
    this.body = h("tbody", { "data-testid": "checkpoint-list" });
    this.empty = h("div", { class: "empty small", "data-testid": "checkpoints-empty" });
    this.table = h("div", { class: "table-scroll" }, h("table", { class: "ckpts" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Epoch"), h("th", { scope: "col", class: "num" }, "Step"),
        h("th", { scope: "col", class: "num" }, "Size"), h("th", { scope: "col" }, "Created"),
        h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Download")))),
      this.body));
    this.el = h("div", { class: "card", "data-testid": "checkpoints-card" },
      h("div", { class: "card-head" }, h("h2", {}, "Checkpoints")), this.table, this.empty);
  }

  has(id) {
    return this.map.has(id);
  }

  /** The kept checkpoints, oldest first. */
  items() {
    return [...this.map.values()].sort((a, b) => (a.step ?? 0) - (b.step ?? 0));
  }

  /** Called with the new list whenever it changes. */
  onChange(fn) {
    this.listeners.push(fn);
  }

  /** The list as the server gives it (retention may have dropped some). */
  replace(items) {
    this.map = new Map(items.filter((c) => c && c.id).map((c) => [c.id, c]));
  }

  /** Checkpoints from an event or a first read; `live` ones without a time were made just now. */
  merge(items, live) {
    for (const c of items) {
      if (!c || !c.id) continue;
      const known = this.map.get(c.id);
      const created = c.created_at ?? known?.created_at ?? (live ? new Date().toISOString() : null);
      this.map.set(c.id, { ...known, ...c, created_at: created });
    }
  }

  /** Relative times move on. */
  tick() {
    this.body.querySelectorAll("[data-created]").forEach((td) => setText(td, fmtRelative(td.dataset.created)));
  }

  render(job) {
    const items = this.items();
    this.table.hidden = items.length === 0;
    this.empty.hidden = items.length > 0;
    setText(this.empty, TERMINAL.has(job.status) ? "This job saved no checkpoints."
      : "No checkpoints yet — one is saved as training progresses.");
    const sig = JSON.stringify([job.name, items.map((c) => [c.id, c.created_at, c.latest, c.best])]);
    if (sig === this.sig) return;
    this.sig = sig;
    const safe = (job.name || "job").replace(/[^\w.-]+/g, "_").slice(0, 60);
    this.body.replaceChildren(...items.map((c) => {
      const filename = `${safe}-epoch${c.epoch}-step${c.step}.safetensors`;
      const link = h("a", {
        class: "button small",
        href: c.download_url,
        download: filename,
        "data-testid": "checkpoint-link",
        "data-checkpoint-id": c.id,
        "aria-label": `Download the checkpoint of epoch ${c.epoch}, step ${c.step}`,
        onclick: (ev) => {
          if (!apiKey()) return; // a plain link downloads when no key is needed
          ev.preventDefault();
          download(c.download_url, filename).catch(showBanner);
        },
      }, "Download");
      return h("tr", { "data-testid": "checkpoint-row", "data-checkpoint-id": c.id, title: `saved ${fmtAbsolute(c.created_at)}` },
        h("td", {}, `Epoch ${c.epoch}`,
          c.latest ? h("span", { class: "mark mark-latest", "data-testid": "checkpoint-latest" }, "latest") : null,
          c.best ? h("span", { class: "mark mark-best", "data-testid": "checkpoint-best" }, "best") : null),
        h("td", { class: "num mono" }, fmtInt(c.step)),
        h("td", { class: "num mono" }, fmtBytes(c.size_bytes)),
        h("td", { class: "muted", title: fmtAbsolute(c.created_at), "data-created": c.created_at ?? "" },
          fmtRelative(c.created_at)),
        h("td", { class: "row-actions" }, link));
    }));
    for (const fn of this.listeners) fn(items);
  }
}

/** <option>s for a checkpoint choice: latest, best, then each kept one. */
export function checkpointOptions(items) {
  const opts = [h("option", { value: "latest" }, "latest"), h("option", { value: "best" }, "best")];
  for (const c of [...items].reverse()) {
    const marks = [c.latest ? "latest" : null, c.best ? "best" : null].filter(Boolean).join(", ");
    opts.push(h("option", { value: c.id }, `epoch ${c.epoch} · step ${fmtInt(c.step)}${marks ? ` (${marks})` : ""}`));
  }
  return opts;
}
