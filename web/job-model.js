// The job page's model card: the job's spec as a node table with each node's output shape,
// parameters and FLOPs, from POST /v1/specs/validate on the input shape the job was planned for.
// Read when the card is first opened (a job page makes no request for it otherwise).

import { h, setText } from "./util.js";
import { sendJson } from "./forms.js";
import { specSummary, specTable } from "./spec-table.js";

export class ModelCard {
  constructor() {
    this.summary = h("span", { class: "muted", "data-testid": "model-summary" }, "nodes, output shapes, parameters, FLOPs");
    this.body = h("div", { class: "model-body" }, h("p", { class: "muted" }, "Reading the model…"));
    this.el = h("details", { class: "card model-card", "data-testid": "model-card" },
      h("summary", { class: "card-head" }, h("h2", {}, "Model"), this.summary),
      this.body);
    this.loaded = false;
    this.job = null;
    this.el.addEventListener("toggle", () => {
      if (this.el.open) this.load();
    });
  }

  /** The job whose model to describe (its plan says the input shape). */
  setJob(job) {
    this.job = job;
    if (this.el.open) this.load();
  }

  /** Read the table once, when the card is open and the job is known. */
  async load() {
    const job = this.job;
    if (this.loaded || !job || !job.model) return;
    this.loaded = true;
    const plan = job.plan;
    const body = plan
      ? { model: job.model, input_shape: plan.input_shape, batch_size: job.training?.batch_size || 32,
          ...(plan.num_outputs ? { num_classes: plan.num_outputs } : {}) }
      : { model: job.model, dataset_id: job.dataset_id };
    try {
      const report = await sendJson("specs/validate", body);
      const graph = Boolean(job.model.graph || report.expanded?.graph);
      this.body.replaceChildren(specTable(report, { graph, testid: "model-table" }));
      setText(this.summary, specSummary(report));
    } catch (err) {
      if (err.status === 0) this.loaded = false; // unreachable: try again with the next read
      this.body.replaceChildren(h("p", { class: "field-error", "data-testid": "model-error" },
        `The model could not be described: ${err.message}`));
    }
  }
}
