// One dataset's page (#/datasets/{id}): what it holds, its first samples (images when they
// are 1xHxW or 3xHxW), the class histogram of each classification head and the statistics of
// each regression head; train a job on it, or delete it (after asking).

import { ApiError, api } from "./api.js";
import { reportError, setCrumbs, setLive } from "./chrome.js";
import { previewView, isImage } from "./dataset-preview.js";
import { confirmDelete, targetsText } from "./datasets.js";
import { histogram } from "./histogram.js";
import { fmtAbsolute, fmtBytes, fmtInt, h, setText } from "./util.js";

const ROWS_IMAGES = 24;
const ROWS_TABLE = 10;

const fmtStat = (v) => (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(Number(v.toFixed(4))));

export class DatasetView {
  constructor(root, params) {
    this.root = root;
    this.id = params.id;
    this.active = false;
  }

  mount() {
    this.active = true;
    setCrumbs({ text: "Datasets", href: "#/datasets" }, { text: this.id });
    setLive("idle", "A dataset does not change");
    document.title = "Dataset · Trainyard";
    this.root.replaceChildren(h("section", { class: "page", "data-testid": "dataset-detail" },
      h("div", { class: "empty loading" }, "Loading the dataset…")));
    this.load();
  }

  unmount() {
    this.active = false;
  }

  refresh() {
    this.load();
  }

  wake() {}

  async load() {
    let ds;
    try {
      ds = await api(`datasets/${encodeURIComponent(this.id)}`);
    } catch (err) {
      if (!this.active) return;
      if (err instanceof ApiError && err.status === 404) this.notFound();
      else reportError(err);
      return;
    }
    if (!this.active) return;
    this.build(ds);
    try {
      const rows = isImage(ds.input_shape) ? ROWS_IMAGES : ROWS_TABLE;
      const preview = await api(`datasets/${encodeURIComponent(this.id)}/preview?rows=${rows}`);
      if (this.active) this.showPreview(ds, preview);
    } catch (err) {
      if (this.active) setText(this.previewBody, `The preview could not be read: ${err.message}`);
    }
  }

  notFound() {
    setCrumbs({ text: "Datasets", href: "#/datasets" }, { text: "Not found" });
    this.root.replaceChildren(h("section", { class: "page" },
      h("div", { class: "card empty", "data-testid": "not-found" },
        h("div", { class: "empty-title" }, "Dataset not found"),
        h("p", {}, "No dataset with id ", h("code", {}, this.id), "."),
        h("p", {}, h("a", { href: "#/datasets" }, "← All datasets")))));
  }

  build(ds) {
    setCrumbs({ text: "Datasets", href: "#/datasets" }, { text: ds.name });
    document.title = `${ds.name} · Trainyard`;
    this.error = h("p", { class: "field-error", "data-testid": "dataset-delete-error", role: "alert", hidden: true });
    const del = h("button", { class: "btn danger", type: "button", "data-testid": "dataset-delete",
                              onclick: () => this.remove(ds) }, "Delete dataset");
    const train = h("a", { class: "btn primary", href: `#/new?dataset=${encodeURIComponent(ds.id)}`,
                           "data-testid": "dataset-train" }, "Train a model on it");
    const kv = [
      ["Samples", fmtInt(ds.num_samples), "dataset-samples"],
      ["Sample shape", `[${ds.input_shape.join(", ")}] · ${ds.input_dtype}`, "dataset-shape"],
      ["Targets", targetsText(ds), "dataset-targets"],
      ["Size", fmtBytes(ds.size_bytes), "dataset-size"],
      ["Source", ds.source || "—", "dataset-source"],
      ["Created", fmtAbsolute(ds.created_at), "dataset-created"],
      ["Id", ds.id, "dataset-id"],
    ];
    this.previewBody = h("div", { "data-testid": "dataset-preview" }, h("p", { class: "muted" }, "Reading the first samples…"));
    this.targetsBody = h("div", { class: "stack-form", "data-testid": "dataset-target-stats" });
    this.root.replaceChildren(h("section", { class: "page", "data-testid": "dataset-detail", "data-dataset-id": ds.id },
      h("div", { class: "page-head" },
        h("div", { class: "title-block" },
          h("a", { class: "back", href: "#/datasets" }, "← All datasets"),
          h("h1", { "data-testid": "dataset-title" }, ds.name)),
        h("div", { class: "actions" }, train, del)),
      this.error,
      h("div", { class: "grid two" },
        h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "About")),
          h("dl", { class: "kv" }, ...kv.flatMap(([k, v, t]) => [h("dt", {}, k), h("dd", { "data-testid": t }, v)]))),
        h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Targets")), this.targetsBody)),
      h("div", { class: "card" },
        h("div", { class: "card-head" }, h("h2", {}, "First samples"),
          h("span", { class: "muted" }, isImage(ds.input_shape) ? "drawn as images" : "first values of each sample")),
        this.previewBody)));
  }

  showPreview(ds, preview) {
    this.previewBody.replaceChildren(previewView(preview));
    const parts = [];
    const heads = Object.keys(preview.histograms || {}).concat(Object.keys(preview.statistics || {}));
    const multi = heads.length > 1;
    for (const [head, counts] of Object.entries(preview.histograms || {})) {
      parts.push(h("div", { class: "target-head" },
        h("h3", { class: "sub-title" }, `${multi ? `${head}: ` : ""}samples per class`),
        histogram(counts, { head })));
    }
    for (const [head, st] of Object.entries(preview.statistics || {})) {
      parts.push(h("div", { class: "target-head", "data-testid": "target-statistics", "data-head": head },
        h("h3", { class: "sub-title" }, `${multi ? `${head}: ` : ""}regression target`),
        h("dl", { class: "kv" }, ...["min", "max", "mean", "std"].flatMap((k) => [h("dt", {}, k),
          h("dd", { class: "mono", "data-testid": `stat-${k}` }, fmtStat(st[k]))]))));
    }
    this.targetsBody.replaceChildren(...(parts.length ? parts : [h("p", { class: "muted" }, "No targets to describe.")]));
  }

  async remove(ds) {
    this.error.hidden = true;
    try {
      if (await confirmDelete(ds)) location.hash = "#/datasets";
    } catch (err) {
      setText(this.error, `Could not delete ${ds.name}: ${err.message}`);
      this.error.hidden = false;
    }
  }
}
