// A <select> of the caller's datasets (GET /v1/datasets), newest first, each with its shape
// and size, for the forms that start a job.

import { api } from "./api.js";
import { fmtInt, h } from "./util.js";

export const describeDataset = (d) => `${d.name} · ${fmtInt(d.num_samples)} × [${(d.input_shape || []).join("×")}]`
  + `${d.num_classes ? ` · ${d.num_classes} classes` : d.task === "regression" ? " · regression" : ""}`;

export class DatasetSelect {
  constructor({ id, testid }) {
    this.items = [];
    this.el = h("select", { id, "data-testid": testid, required: true },
      h("option", { value: "" }, "Loading datasets…"));
  }

  get value() {
    return this.el.value;
  }

  /** The chosen dataset's description (from the list), or null. */
  chosen() {
    return this.items.find((d) => d.id === this.el.value) || null;
  }

  /** Read the list; `prefer` (an id) is chosen when it is there, else the newest. */
  async load(prefer = null) {
    const data = await api("datasets");
    this.items = (data.items || []).slice().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    const keep = prefer || this.el.value;
    const options = this.items.map((d) => h("option", { value: d.id }, describeDataset(d)));
    if (prefer && !this.items.some((d) => d.id === prefer)) {
      options.unshift(h("option", { value: prefer }, `${prefer} (not in your datasets)`));
    }
    this.el.replaceChildren(...(options.length ? options : [h("option", { value: "" }, "No datasets yet — upload one first")]));
    if (keep && [...this.el.options].some((o) => o.value === keep)) this.el.value = keep;
    return this.items;
  }
}
