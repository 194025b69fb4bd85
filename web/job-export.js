// The job page's export card: the trained model as ONNX (opset 17, dynamic batch) or its
// weights as safetensors, at a chosen checkpoint, from GET /v1/jobs/{id}/export.

import { jobPath } from "./api.js";
import { download } from "./download.js";
import { checkpointOptions } from "./job-checkpoints.js";
import { h, setText } from "./util.js";

export class ExportCard {
  constructor(jobId) {
    this.jobId = jobId;
    this.format = h("select", { id: "export-format", "data-testid": "export-format" },
      h("option", { value: "onnx" }, "ONNX model"), h("option", { value: "safetensors" }, "safetensors weights"));
    this.checkpoint = h("select", { id: "export-checkpoint", "data-testid": "export-checkpoint" }, ...checkpointOptions([]));
    this.button = h("button", { class: "btn primary", type: "submit", "data-testid": "export-button" }, "Download");
    this.status = h("p", { class: "field-note", "data-testid": "export-status", role: "status" });
    this.error = h("p", { class: "field-error", "data-testid": "export-error", role: "alert", hidden: true });
    this.form = h("form", { class: "inline-form", onsubmit: (ev) => this.submit(ev) },
      h("div", { class: "field" }, h("label", { for: "export-format" }, "Format"), this.format),
      h("div", { class: "field" }, h("label", { for: "export-checkpoint" }, "Checkpoint"), this.checkpoint),
      h("div", { class: "field field-action" }, this.button));
    this.el = h("div", { class: "card", "data-testid": "export-card" },
      h("div", { class: "card-head" }, h("h2", {}, "Export")),
      h("p", { class: "muted card-intro" }, "ONNX runs in onnxruntime and other runtimes (input ", h("code", {}, "input"),
        ", a dynamic batch); safetensors is the checkpoint's weights as they are."),
      this.form, this.status, this.error);
  }

  /** The checkpoints to offer (keeps the choice when it still exists). */
  setCheckpoints(items) {
    const keep = this.checkpoint.value;
    this.checkpoint.replaceChildren(...checkpointOptions(items));
    if ([...this.checkpoint.options].some((o) => o.value === keep)) this.checkpoint.value = keep;
    this.button.disabled = items.length === 0;
    setText(this.status, items.length ? "" : "Export becomes possible once the job has saved a checkpoint.");
  }

  async submit(ev) {
    ev.preventDefault();
    this.error.hidden = true;
    this.button.disabled = true;
    const format = this.format.value;
    setText(this.status, format === "onnx" ? "Building the ONNX model…" : "Fetching the weights…");
    const query = new URLSearchParams({ format, checkpoint: this.checkpoint.value });
    try {
      const name = await download(jobPath(this.jobId, `/export?${query}`), `job-${this.jobId}.${format}`);
      setText(this.status, `Saved ${name}.`);
    } catch (err) {
      setText(this.status, "");
      setText(this.error, `Export failed (${err.status}): ${err.message}`);
      this.error.hidden = false;
    } finally {
      this.button.disabled = false;
    }
  }
}
