// The datasets page (#/datasets): upload one, and every dataset with its shape, classes and
// size; a row opens the dataset's page, its delete button asks first.

import { api } from "./api.js";
import { reportError, setCrumbs, setLive } from "./chrome.js";
import { UploadCard } from "./dataset-upload.js";
import { ask } from "./dialog.js";
import { sendJson } from "./forms.js";
import { fmtAbsolute, fmtBytes, fmtInt, fmtRelative, h, setText } from "./util.js";

export const datasetHref = (id) => `#/datasets/${encodeURIComponent(id)}`;

/** Ask, then DELETE the dataset; resolves true once it is gone (a refusal is thrown). */
export async function confirmDelete(ds) {
  const yes = await ask({
    title: `Delete ${ds.name}?`,
    message: `Its ${fmtInt(ds.num_samples)} samples are deleted for good. Jobs that trained on it keep their results.`,
    confirm: "Delete dataset",
    danger: true,
  });
  if (!yes) return false;
  await sendJson(`datasets/${encodeURIComponent(ds.id)}`, undefined, "DELETE");
  return true;
}

export const targetsText = (ds) => {
  const heads = Object.entries(ds.targets || {});
  if (heads.length > 1) return heads.map(([k, t]) => `${k}: ${t.num_classes ? `${t.num_classes} classes` : t.task}`).join(", ");
  return ds.num_classes ? `${ds.num_classes} classes` : ds.task;
};

export class DatasetsView {
  constructor(root) {
    this.root = root;
    this.active = false;
    this.highlight = null;
  }

  mount() {
    this.active = true;
    setCrumbs({ text: "Datasets" });
    setLive("idle", "Datasets change only when you upload or delete one");
    document.title = "Datasets · Trainyard";
    this.upload = new UploadCard((ds) => {
      this.highlight = ds.id;
      this.load();
    });
    this.count = h("span", { class: "count", "data-testid": "dataset-count" });
    this.message = h("p", { class: "field-error", "data-testid": "dataset-delete-error", role: "alert", hidden: true });
    this.body = h("tbody", { "data-testid": "dataset-list" });
    this.table = h("table", { class: "datasets-table" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Name"), h("th", { scope: "col", class: "num col-hide-sm" }, "Samples"),
        h("th", { scope: "col" }, "Sample shape"), h("th", { scope: "col" }, "Targets"),
        h("th", { scope: "col", class: "num col-hide-sm" }, "Size"), h("th", { scope: "col", class: "col-hide-sm" }, "Created"),
        h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
      this.body);
    this.empty = h("div", { class: "empty", "data-testid": "datasets-empty", hidden: true },
      h("div", { class: "empty-title" }, "No datasets yet"),
      h("p", {}, "Upload an .npz, .npy or .csv above, or create one with ", h("code", {}, "POST /v1/datasets"), "."));
    this.loading = h("div", { class: "empty loading" }, "Loading datasets…");
    this.root.replaceChildren(h("section", { class: "page", "data-testid": "datasets-view" },
      h("div", { class: "page-head" }, h("h1", {}, "Datasets"), this.count),
      this.upload.el,
      this.message,
      h("div", { class: "card table-card" }, this.loading, h("div", { class: "table-scroll" }, this.table), this.empty)));
    this.table.hidden = true;
    this.load();
  }

  unmount() {
    this.active = false;
    if (this.upload?.current) this.upload.current.abort();
  }

  refresh() {
    this.load();
  }

  wake() {}

  async load() {
    try {
      const data = await api("datasets");
      if (this.active) this.show(data.items || []);
    } catch (err) {
      if (this.active) reportError(err);
    }
  }

  show(items) {
    items = items.slice().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    this.loading.hidden = true;
    this.table.hidden = items.length === 0;
    this.empty.hidden = items.length > 0;
    setText(this.count, items.length ? `${items.length} dataset${items.length === 1 ? "" : "s"}` : "");
    this.body.replaceChildren(...items.map((ds) => this.row(ds)));
  }

  row(ds) {
    const href = datasetHref(ds.id);
    const del = h("button", { class: "btn small danger", type: "button", "data-testid": "dataset-delete",
                              "aria-label": `Delete dataset ${ds.name}`, onclick: () => this.remove(ds) }, "Delete");
    return h("tr", {
      class: `dataset-row${ds.id === this.highlight ? " fresh" : ""}`, "data-testid": "dataset-row", "data-dataset-id": ds.id,
      onclick: (ev) => {
        if (ev.target.closest("a, button") || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
        location.hash = href;
      },
    },
      h("td", {}, h("a", { class: "dataset-name", href, "data-testid": "dataset-name" }, ds.name),
        h("div", { class: "job-id mono" }, ds.id)),
      h("td", { class: "num mono col-hide-sm", "data-testid": "dataset-samples" }, fmtInt(ds.num_samples)),
      h("td", { class: "mono", "data-testid": "dataset-shape" }, `[${(ds.input_shape || []).join(", ")}]`),
      h("td", { "data-testid": "dataset-targets" }, targetsText(ds)),
      h("td", { class: "num mono col-hide-sm" }, fmtBytes(ds.size_bytes)),
      h("td", { class: "muted col-hide-sm", title: fmtAbsolute(ds.created_at) }, fmtRelative(ds.created_at)),
      h("td", { class: "row-actions" }, del));
  }

  async remove(ds) {
    this.message.hidden = true;
    try {
      if (await confirmDelete(ds)) this.load();
    } catch (err) {
      setText(this.message, `Could not delete ${ds.name}: ${err.message}`);
      this.message.hidden = false;
    }
  }
}
