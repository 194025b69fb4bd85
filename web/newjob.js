// The new-job page (#/new, #/new?dataset=<id>): a form for the common case (dataset, a zoo
// model or a list of layers, optimizer, learning rate, epochs, batch size) and a JSON editor
// for the rest of the training settings. As the user types, the body is checked (debounced)
// against POST /v1/jobs/validate (everything a submit checks, nothing stored) and the model
// against POST /v1/specs/validate (its node table); a 422 shows its message at the field it
// names before anything is submitted. Submitting opens the new job's page.

import { api } from "./api.js";
import { reportError, setCrumbs, setLive } from "./chrome.js";
import { DatasetSelect } from "./dataset-select.js";
import { FieldErrors, debounce, errorSlot, sendJson } from "./forms.js";
import { JsonEditor } from "./json-editor.js";
import { specSummary, specTable } from "./spec-table.js";
import { fmtInt, fmtSeconds, h, isNum, setAttr, setText } from "./util.js";

const OPTIMIZERS = { Adam: 0.001, AdamW: 0.001, SGD: 0.01, RMSprop: 0.01, Adagrad: 0.01 };
const DEFAULT_EXTRA = { validation_split: 0.2, seed: 0 };
const VALIDATE_MS = 350;

/** A small MLP for samples of `shape` with `classes` outputs, as a starting list of layers. */
export function starterLayers(shape, classes) {
  const features = (shape || [1]).reduce((a, b) => a * b, 1);
  return [
    ...(shape && shape.length > 1 ? [{ type: "Flatten" }] : []),
    { type: "Linear", in_features: features, out_features: 64 },
    { type: "ReLU" },
    { type: "Linear", in_features: 64, out_features: classes || 1 },
  ];
}

const field = (label, input, slot, note = null) => h("div", { class: "field" },
  h("label", { for: input.id }, label), input, note ? h("p", { class: "field-note" }, note) : null, slot);

export class NewJobView {
  constructor(root, params = {}) {
    this.root = root;
    this.params = params;
    this.active = false;
    this.seq = 0;
    this.zoo = [];
    this.validateSoon = debounce(() => this.validate(), VALIDATE_MS);
  }

  mount() {
    this.active = true;
    setCrumbs({ text: "New job" });
    setLive("idle", "Checked as you type");
    document.title = "New job · Trainyard";
    this.build();
    this.load();
  }

  unmount() {
    this.active = false;
    this.validateSoon.cancel();
  }

  refresh() {
    this.load();
  }

  wake() {}

  async load() {
    try {
      const [, zoo] = await Promise.all([this.f.dataset.load(this.params.dataset || null), api("specs/zoo")]);
      if (!this.active) return;
      this.zoo = zoo.items || [];
      this.fillZoo();
      this.datasetChanged(true);
    } catch (err) {
      if (this.active) reportError(err);
    }
  }

  // ------------------------------------------------------------------ build ---

  build() {
    const f = (this.f = {});
    f.name = h("input", { id: "nj-name", type: "text", maxlength: 200, "data-testid": "field-name", autocomplete: "off" });
    f.dataset = new DatasetSelect({ id: "nj-dataset", testid: "field-dataset" });
    f.kindZoo = h("input", { type: "radio", name: "nj-kind", value: "zoo", id: "nj-kind-zoo", checked: true, "data-testid": "field-kind-zoo" });
    f.kindLayers = h("input", { type: "radio", name: "nj-kind", value: "layers", id: "nj-kind-layers", "data-testid": "field-kind-layers" });
    f.zoo = h("select", { id: "nj-zoo", "data-testid": "field-zoo" }, h("option", { value: "mlp" }, "mlp"));
    f.args = new JsonEditor({ id: "nj-args", testid: "field-args", rows: 3, label: "Arguments (JSON)", value: {}, emptyValue: {} });
    f.layers = new JsonEditor({ id: "nj-layers", testid: "field-layers", rows: 12, label: "Layers (JSON list)",
      hint: "each {\"type\": <layer>, ...its arguments}, applied in order" });
    f.optimizer = h("select", { id: "nj-optimizer", "data-testid": "field-optimizer" },
      ...Object.keys(OPTIMIZERS).map((o) => h("option", { value: o }, o)));
    f.lr = h("input", { id: "nj-lr", type: "number", step: "any", min: 0, value: OPTIMIZERS.Adam, "data-testid": "field-lr" });
    f.epochs = h("input", { id: "nj-epochs", type: "number", step: 1, min: 1, value: 5, "data-testid": "field-epochs" });
    f.batch = h("input", { id: "nj-batch", type: "number", step: 1, min: 1, value: 32, "data-testid": "field-batch-size" });
    f.extra = new JsonEditor({ id: "nj-extra", testid: "field-extra", rows: 6, label: "Other training settings (JSON)",
      value: DEFAULT_EXTRA, emptyValue: {},
      hint: "merged into training: seed, validation_split, scheduler, early_stopping, checkpoints, loss, metrics, "
        + "clip_grad_norm, devices …; \"optimizer\": {…} adds optimizer arguments (momentum, weight_decay)" });

    const slots = (this.slots = {
      name: errorSlot("error-name"), dataset: errorSlot("error-dataset"), zoo: errorSlot("error-zoo"),
      model: errorSlot("error-model"), optimizer: errorSlot("error-optimizer"), lr: errorSlot("error-lr"),
      epochs: errorSlot("error-epochs"), batch: errorSlot("error-batch-size"), general: errorSlot("error-general"),
    });
    this.errors = new FieldErrors([
      { prefix: "/name", slot: slots.name, input: f.name },
      { prefix: "/dataset_id", slot: slots.dataset, input: f.dataset.el },
      { prefix: "/model", slot: slots.model, input: null, named: true },
      { prefix: "/model/zoo", slot: slots.zoo, input: f.zoo },
      { prefix: "/model/args", slot: f.args.slot, input: f.args.input, named: true },
      { prefix: "/model/layers", slot: f.layers.slot, input: f.layers.input }, // the messages name the layer
      { prefix: "/training", slot: f.extra.slot, input: f.extra.input, named: true },
      { prefix: /^\/training\/optimizer(\/[A-Za-z]+)?\/type$|^\/training\/optimizer$/, slot: slots.optimizer, input: f.optimizer },
      { prefix: /^\/training\/optimizer(\/[A-Za-z]+)?\/lr/, slot: slots.lr, input: f.lr },
      { prefix: "/training/epochs", slot: slots.epochs, input: f.epochs },
      { prefix: "/training/batch_size", slot: slots.batch, input: f.batch },
    ], slots.general);

    this.zooBox = h("div", { class: "field-group" },
      field("Zoo model", f.zoo, slots.zoo), f.args.el, h("p", { class: "field-note", "data-testid": "zoo-args-note" }));
    this.layersBox = h("div", { class: "field-group", hidden: true }, f.layers.el);
    const model = h("fieldset", { class: "field-wide" },
      h("legend", {}, "Model"),
      h("div", { class: "radio-row" },
        h("label", { for: "nj-kind-zoo" }, f.kindZoo, "A zoo model"),
        h("label", { for: "nj-kind-layers" }, f.kindLayers, "My own layers")),
      this.zooBox, this.layersBox, slots.model);

    this.status = h("p", { class: "validation-status", "data-testid": "validation-status", "data-state": "idle", role: "status" },
      "Choose a dataset to start.");
    this.planBox = h("dl", { class: "kv", "data-testid": "plan-summary" });
    this.specBox = h("div", { "data-testid": "spec-box" });
    this.specSummary = h("span", { class: "muted", "data-testid": "spec-summary" });
    this.submitBtn = h("button", { class: "btn primary", type: "submit", "data-testid": "submit-job" }, "Start training");

    this.form = h("form", { class: "card newjob-form", "data-testid": "newjob-form", novalidate: true,
                            onsubmit: (ev) => this.submit(ev),
                            oninput: (ev) => this.changed(ev), onchange: (ev) => this.changed(ev) },
      h("div", { class: "field-wide" }, h("h2", {}, "Job")),
      field("Name", f.name, slots.name),
      field("Dataset", f.dataset.el, slots.dataset),
      model,
      field("Optimizer", f.optimizer, slots.optimizer),
      field("Learning rate", f.lr, slots.lr),
      field("Epochs", f.epochs, slots.epochs),
      field("Batch size", f.batch, slots.batch),
      h("div", { class: "field-wide" }, f.extra.el),
      h("div", { class: "field-wide" }, slots.general,
        h("div", { class: "button-row" }, this.submitBtn, h("a", { class: "btn", href: "#/" }, "Cancel"))));

    const side = h("aside", { class: "newjob-side", "aria-label": "Validation" },
      h("div", { class: "card", "data-testid": "validation-card" },
        h("div", { class: "card-head" }, h("h2", {}, "Check")), this.status, this.planBox),
      h("div", { class: "card" },
        h("div", { class: "card-head" }, h("h2", {}, "Model"), this.specSummary), this.specBox));

    this.root.replaceChildren(h("section", { class: "page", "data-testid": "newjob-view" },
      h("div", { class: "page-head" }, h("h1", {}, "New job")),
      h("div", { class: "newjob-layout" }, this.form, side)));
  }

  fillZoo() {
    const keep = this.f.zoo.value;
    this.f.zoo.replaceChildren(...this.zoo.map((m) => h("option", { value: m.name }, m.name)));
    if (this.zoo.some((m) => m.name === keep)) this.f.zoo.value = keep;
    this.zooNote();
  }

  zooNote() {
    const m = this.zoo.find((z) => z.name === this.f.zoo.value);
    const note = this.zooBox.querySelector("[data-testid=zoo-args-note]");
    setText(note, m ? `takes ${m.args.map((a) => `${a.name} (${a.type}${a.default !== null ? `, default ${JSON.stringify(a.default)}` : ""})`).join(", ")}` : "");
  }

  // ----------------------------------------------------------------- events ---

  changed(ev) {
    const target = ev?.target;
    if (target === this.f.dataset.el) this.datasetChanged(false);
    if (target === this.f.kindZoo || target === this.f.kindLayers) {
      const layers = this.f.kindLayers.checked;
      this.zooBox.hidden = layers;
      this.layersBox.hidden = !layers;
      if (layers && !this.f.layers.text().trim()) this.fillStarterLayers();
    }
    if (target === this.f.zoo) this.zooNote();
    if (target === this.f.optimizer && OPTIMIZERS[this.f.optimizer.value] !== undefined && !this.lrEdited) {
      this.f.lr.value = OPTIMIZERS[this.f.optimizer.value];
    }
    if (ev?.type === "input" && target === this.f.lr) this.lrEdited = true;
    if (ev?.type === "input" && target === this.f.name) this.nameEdited = true;
    this.setStatus("checking", "Checking…");
    this.validateSoon();
  }

  datasetChanged(first) {
    const ds = this.f.dataset.chosen();
    if (!this.nameEdited && ds) this.f.name.value = `${this.f.kindLayers.checked ? "layers" : this.f.zoo.value}-${ds.name}`.slice(0, 200);
    if (ds && (first || !this.layersEdited())) this.fillStarterLayers();
    if (ds && first && ds.input_shape.length === 3 && this.zoo.some((m) => m.name === "simple_cnn")) {
      this.f.zoo.value = "simple_cnn";
      this.zooNote();
      if (!this.nameEdited) this.f.name.value = `simple_cnn-${ds.name}`.slice(0, 200);
    }
    this.setStatus("checking", "Checking…");
    this.validateSoon();
  }

  layersEdited() {
    return this.starterText !== undefined && this.f.layers.text() !== this.starterText;
  }

  fillStarterLayers() {
    const ds = this.f.dataset.chosen();
    this.f.layers.setValue(starterLayers(ds?.input_shape, ds?.num_classes));
    this.starterText = this.f.layers.text();
  }

  // ------------------------------------------------------------------- body ---

  /** The job body from the form, or null when a JSON editor does not parse (its error shows). */
  body() {
    const args = this.f.args.parse();
    const layers = this.f.kindLayers.checked ? this.f.layers.parse() : { ok: true };
    const extra = this.f.extra.parse();
    if (!args.ok || !layers.ok || !extra.ok) return null;
    const num = (el) => (el.value.trim() === "" || Number.isNaN(Number(el.value)) ? el.value : Number(el.value));
    const more = extra.value && typeof extra.value === "object" && !Array.isArray(extra.value) ? extra.value : {};
    const { optimizer: optArgs, ...rest } = more;
    const model = this.f.kindLayers.checked
      ? { layers: layers.value }
      : { zoo: this.f.zoo.value, ...(args.value && Object.keys(args.value).length ? { args: args.value } : {}) };
    return {
      body: {
        name: this.f.name.value.trim(),
        dataset_id: this.f.dataset.value,
        model,
        training: {
          ...rest,
          epochs: num(this.f.epochs),
          batch_size: num(this.f.batch),
          optimizer: { ...(optArgs && typeof optArgs === "object" ? optArgs : {}), type: this.f.optimizer.value, lr: num(this.f.lr) },
        },
      },
      extraIsObject: more === extra.value,
    };
  }

  setStatus(state, text) {
    setAttr(this.status, "data-state", state);
    setText(this.status, text);
  }

  /** Check the body and the model (both at once); the newest answer wins. */
  async validate() {
    if (!this.active) return;
    const built = this.body();
    if (!built) {
      this.setStatus("bad", "Fix the JSON first.");
      return;
    }
    if (!built.extraIsObject) {
      this.errors.clear();
      this.f.extra.showError("must be a JSON object of training settings");
      this.setStatus("bad", "Fix the training settings.");
      return;
    }
    if (!built.body.dataset_id) {
      this.setStatus("idle", "Choose a dataset to start.");
      return;
    }
    const seq = ++this.seq;
    const { body } = built;
    const spec = sendJson("specs/validate", { model: body.model, dataset_id: body.dataset_id,
                                              batch_size: isNum(body.training.batch_size) ? Math.max(1, body.training.batch_size) : 32 })
      .then((r) => ({ ok: true, r }), (err) => ({ ok: false, err }));
    let plan = null;
    let failure = null;
    try {
      plan = await sendJson("jobs/validate", body);
    } catch (err) {
      failure = err;
    }
    const specAnswer = await spec;
    if (seq !== this.seq || !this.active) return;
    if (failure) {
      this.errors.show(failure);
      this.setStatus("bad", failure.status === 422 ? "Not yet: see the messages at the fields." : `The check failed: ${failure.message}`);
      this.planBox.replaceChildren();
    } else {
      this.errors.clear();
      this.setStatus("ok", "Ready: this job would be accepted.");
      this.showPlan(plan);
    }
    if (specAnswer.ok) {
      const graph = Boolean(body.model.graph || specAnswer.r.expanded?.graph);
      this.specBox.replaceChildren(specTable(specAnswer.r, { graph, testid: "spec-table" }));
      setText(this.specSummary, specSummary(specAnswer.r));
    } else {
      this.specBox.replaceChildren(h("p", { class: "muted" }, "The table appears once the model fits the data."));
      setText(this.specSummary, "");
    }
  }

  showPlan(answer) {
    const p = answer.plan;
    const est = answer.estimate || {};
    const side = (e, where) => (e && isNum(e.seconds) ? `${fmtSeconds(e.seconds)} on a ${where}${e.calibrated ? "" : " (uncalibrated)"}` : null);
    const rows = [
      ["Train samples", `${fmtInt(p.train_samples)}${p.val_samples ? ` (+ ${fmtInt(p.val_samples)} for validation)` : ""}`, "plan-samples"],
      ["Steps", `${fmtInt(p.steps_per_epoch)} per epoch · ${fmtInt(p.total_steps)} in all`, "plan-steps"],
      ["Estimated time", [side(est.cpu, "CPU worker"), side(est.cuda, "GPU")].filter(Boolean).join(" · ") || "—", "plan-estimate"],
    ];
    this.planBox.replaceChildren(...rows.flatMap(([k, v, t]) => [h("dt", {}, k), h("dd", { "data-testid": t }, v)]));
  }

  async submit(ev) {
    ev.preventDefault();
    this.validateSoon.cancel();
    this.seq += 1; // an older check's answer must not overwrite what the submit says
    const built = this.body();
    if (!built) {
      this.setStatus("bad", "Fix the JSON first.");
      return;
    }
    this.submitBtn.disabled = true;
    this.setStatus("checking", "Submitting…");
    try {
      const job = await sendJson("jobs", built.body);
      location.hash = `#/jobs/${encodeURIComponent(job.id)}`;
    } catch (err) {
      const input = this.errors.show(err);
      this.setStatus("bad", err.status === 422 ? "Not submitted: see the messages at the fields." : `Not submitted: ${err.message}`);
      if (input) input.focus();
    } finally {
      this.submitBtn.disabled = false;
    }
  }
}
