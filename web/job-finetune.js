// The job page's fine-tune card: a new job with this job's model and training settings whose
// weights start from one of this job's checkpoints (training.init = {job_id, checkpoint}),
// on this or another dataset, with new epochs and learning rate. Checked live against
// POST /v1/jobs/validate; the 422s show at their fields; a submitted job opens its page.

import { DatasetSelect } from "./dataset-select.js";
import { FieldErrors, debounce, errorSlot, sendJson } from "./forms.js";
import { checkpointOptions } from "./job-checkpoints.js";
import { h, isNum, setText } from "./util.js";

const field = (label, input, slot, note = null) => h("div", { class: "field" },
  h("label", { for: input.id }, label), input, note ? h("p", { class: "field-note" }, note) : null, slot);

export class FinetuneCard {
  constructor(jobId) {
    this.jobId = jobId;
    this.job = null;
    this.seq = 0;
    const f = (this.f = {});
    f.name = h("input", { id: "ft-name", type: "text", "data-testid": "finetune-name", required: true, maxlength: 200 });
    f.dataset = new DatasetSelect({ id: "ft-dataset", testid: "finetune-dataset" });
    f.checkpoint = h("select", { id: "ft-checkpoint", "data-testid": "finetune-checkpoint" }, ...checkpointOptions([]));
    f.epochs = h("input", { id: "ft-epochs", type: "number", min: 1, step: 1, "data-testid": "finetune-epochs", required: true });
    f.lr = h("input", { id: "ft-lr", type: "number", min: 0, step: "any", "data-testid": "finetune-lr", required: true });
    f.freeze = h("input", { id: "ft-freeze", type: "text", "data-testid": "finetune-freeze", placeholder: "e.g. 0., 2." });
    const slots = (this.slots = {
      name: errorSlot("finetune-name-error"), dataset: errorSlot("finetune-dataset-error"),
      checkpoint: errorSlot("finetune-checkpoint-error"), epochs: errorSlot("finetune-epochs-error"),
      lr: errorSlot("finetune-lr-error"), freeze: errorSlot("finetune-freeze-error"),
      general: errorSlot("finetune-error"),
    });
    this.errors = new FieldErrors([
      { prefix: "/name", slot: slots.name, input: f.name },
      { prefix: "/dataset_id", slot: slots.dataset, input: f.dataset.el },
      { prefix: "/training/init", slot: slots.checkpoint, input: f.checkpoint },
      { prefix: "/training/init/freeze", slot: slots.freeze, input: f.freeze },
      { prefix: "/training/epochs", slot: slots.epochs, input: f.epochs },
      { prefix: /^\/training\/optimizer(\/[A-Za-z]+)?\/lr/, slot: slots.lr, input: f.lr },
    ], slots.general);
    this.status = h("p", { class: "field-note", "data-testid": "finetune-status", role: "status" });
    this.submitBtn = h("button", { class: "btn primary", type: "submit", "data-testid": "finetune-submit" }, "Start fine-tuning");
    this.validateSoon = debounce(() => this.validate(), 400);
    this.form = h("form", { class: "grid-form", novalidate: true, onsubmit: (ev) => this.submit(ev),
                            oninput: () => this.validateSoon(), onchange: () => this.validateSoon() },
      field("Name", f.name, slots.name),
      field("Dataset", f.dataset.el, slots.dataset),
      field("Start from checkpoint", f.checkpoint, slots.checkpoint),
      field("Epochs", f.epochs, slots.epochs),
      field("Learning rate", f.lr, slots.lr),
      field("Freeze (parameter prefixes)", f.freeze, slots.freeze, "comma-separated; these keep their weights"),
      h("div", { class: "field field-wide" }, slots.general, h("div", { class: "button-row" }, this.submitBtn), this.status));
    this.el = h("details", { class: "card finetune-card", "data-testid": "finetune-card" },
      h("summary", { class: "card-head" }, h("h2", {}, "Fine-tune from here"),
        h("span", { class: "muted" }, "a new job starting from this job's weights")),
      this.form);
    this.el.addEventListener("toggle", () => {
      if (this.el.open) this.open();
    });
  }

  setJob(job) {
    const first = !this.job;
    this.job = job;
    if (!first) return;
    const t = job.training || {};
    this.f.name.value = `${job.name || job.id} · fine-tune`.slice(0, 200);
    this.f.epochs.value = t.epochs ?? 1;
    this.f.lr.value = isNum(t.optimizer?.lr) ? t.optimizer.lr / 10 : 0.001;
  }

  setCheckpoints(items) {
    const keep = this.f.checkpoint.value;
    this.f.checkpoint.replaceChildren(...checkpointOptions(items));
    if ([...this.f.checkpoint.options].some((o) => o.value === keep)) this.f.checkpoint.value = keep;
  }

  async open() {
    if (this.opened) return;
    this.opened = true;
    try {
      await this.f.dataset.load(this.job?.dataset_id);
    } catch (err) {
      this.errors.show(err);
    }
    this.validateSoon();
  }

  /** The job body: this job's model and settings, the form's changes, the init from here. */
  body() {
    const t = { ...(this.job?.training || {}) };
    delete t.init;
    const num = (el) => (el.value.trim() === "" ? el.value : Number(el.value));
    const freeze = this.f.freeze.value.split(",").map((s) => s.trim()).filter(Boolean);
    return {
      name: this.f.name.value,
      dataset_id: this.f.dataset.value,
      model: this.job?.model,
      training: {
        ...t,
        epochs: num(this.f.epochs),
        optimizer: { ...(t.optimizer || { type: "Adam" }), lr: num(this.f.lr) },
        init: { job_id: this.jobId, checkpoint: this.f.checkpoint.value, ...(freeze.length ? { freeze } : {}) },
      },
    };
  }

  async validate() {
    if (!this.job || !this.f.dataset.value) return;
    const seq = ++this.seq;
    try {
      await sendJson("jobs/validate", this.body());
      if (seq !== this.seq) return;
      this.errors.clear();
      setText(this.status, "Ready to start.");
    } catch (err) {
      if (seq !== this.seq) return;
      setText(this.status, "");
      this.errors.show(err);
    }
  }

  async submit(ev) {
    ev.preventDefault();
    this.validateSoon.cancel();
    this.seq += 1;
    this.submitBtn.disabled = true;
    setText(this.status, "Submitting…");
    try {
      const job = await sendJson("jobs", this.body());
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      setText(this.status, "");
      const input = this.errors.show(err);
      if (input) input.focus();
    } finally {
      this.submitBtn.disabled = false;
    }
  }
}
