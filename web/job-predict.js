// The job page's predict card: paste samples as JSON (a list of samples of the job's input
// shape), run the trained model on them (POST /v1/jobs/{id}/predict) and read each head's
// outputs: the predicted class with the top probabilities, or the regression values.

import { api, jobPath } from "./api.js";
import { sendJson } from "./forms.js";
import { checkpointOptions } from "./job-checkpoints.js";
import { JsonEditor } from "./json-editor.js";
import { h, isNum, setText } from "./util.js";

const TOP_K = 3;

/** Depth of nesting of a JSON value: 0 for a number, 1 for [1, 2], 2 for [[1], [2]]. */
function depth(v) {
  let d = 0;
  while (Array.isArray(v)) {
    d += 1;
    v = v[0];
  }
  return d;
}

/** Zeros of `shape` as nested lists. */
function zeros(shape) {
  return shape.length ? Array.from({ length: shape[0] }, () => zeros(shape.slice(1))) : 0;
}

const fmtNum = (v) => (isNum(v) ? (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(3) : String(Number(v.toFixed(4)))) : "—");

export class PredictCard {
  constructor(jobId) {
    this.jobId = jobId;
    this.job = null;
    this.labels = null; // the dataset's targets of the samples filled in, until the text changes
    this.editor = new JsonEditor({ id: "predict-inputs", testid: "predict-inputs", rows: 6,
      label: "Inputs: a list of samples, as JSON", placeholder: "[[0.0, 0.1, …], …]" });
    this.editor.onChange(() => {
      this.labels = null;
    });
    this.checkpoint = h("select", { id: "predict-checkpoint", "data-testid": "predict-checkpoint" }, ...checkpointOptions([]));
    this.button = h("button", { class: "btn primary", type: "submit", "data-testid": "predict-button" }, "Predict");
    this.sample = h("button", { class: "btn", type: "button", "data-testid": "predict-sample",
                                onclick: () => this.fillSamples() }, "Use samples from the dataset");
    this.error = h("p", { class: "field-error", "data-testid": "predict-error", role: "alert", hidden: true });
    this.shapeNote = h("span", { class: "muted" });
    this.results = h("div", { class: "predict-results", "data-testid": "predict-results", "aria-live": "polite" });
    this.form = h("form", { class: "stack-form", onsubmit: (ev) => this.submit(ev) },
      this.editor.el,
      h("div", { class: "form-row" },
        h("div", { class: "field" }, h("label", { for: "predict-checkpoint" }, "Checkpoint"), this.checkpoint),
        h("div", { class: "field field-action" }, h("div", { class: "button-row" }, this.sample, this.button))),
      this.error);
    this.el = h("div", { class: "card", "data-testid": "predict-card" },
      h("div", { class: "card-head" }, h("h2", {}, "Predict"), this.shapeNote),
      this.form, this.results);
  }

  setJob(job) {
    this.job = job;
    const shape = job.plan?.input_shape;
    setText(this.shapeNote, Array.isArray(shape) ? `each sample has shape [${shape.join(", ")}]` : "");
  }

  setCheckpoints(items) {
    const keep = this.checkpoint.value;
    this.checkpoint.replaceChildren(...checkpointOptions(items));
    if ([...this.checkpoint.options].some((o) => o.value === keep)) this.checkpoint.value = keep;
    this.button.disabled = items.length === 0;
    this.button.title = items.length ? "" : "The job has no checkpoint yet";
  }

  /** The first two samples of the job's dataset (zeros of the input shape if it is gone). */
  async fillSamples() {
    const shape = this.job?.plan?.input_shape;
    try {
      const preview = await api(`datasets/${encodeURIComponent(this.job.dataset_id)}/preview?rows=2`);
      this.editor.setValue(preview.inputs);
      this.labels = preview.targets || null;
    } catch {
      if (Array.isArray(shape)) this.editor.setValue([zeros(shape)]);
      this.labels = null;
    }
  }

  async submit(ev) {
    ev.preventDefault();
    this.error.hidden = true;
    const parsed = this.editor.parse();
    if (!parsed.ok) return;
    let inputs = parsed.value;
    const shape = this.job?.plan?.input_shape;
    if (Array.isArray(shape) && Array.isArray(inputs) && depth(inputs) === shape.length) inputs = [inputs]; // one sample
    this.button.disabled = true;
    try {
      const answer = await sendJson(jobPath(this.jobId, "/predict"), { inputs, checkpoint: this.checkpoint.value });
      this.show(answer);
    } catch (err) {
      this.results.replaceChildren();
      setText(this.error, `${err.status ? `${err.status}: ` : ""}${err.message}`);
      this.error.hidden = false;
      if (err.detail?.some((d) => d.pointer === "/inputs")) this.editor.markInvalid(true);
    } finally {
      this.button.disabled = false;
    }
  }

  show(answer) {
    const ck = answer.checkpoint || {};
    const parts = [h("p", { class: "muted", "data-testid": "predict-checkpoint-used" },
      `From the checkpoint of epoch ${ck.epoch}, step ${ck.step}.`)];
    for (const [head, out] of Object.entries(answer.outputs || {})) {
      const probs = answer.probabilities?.[head];
      const preds = answer.predictions?.[head];
      const labels = this.labels?.[head];
      const label = (i) => (labels ? h("td", { class: "mono", "data-testid": "predict-label" }, JSON.stringify(labels[i])) : null);
      const rows = out.map((o, i) => {
        if (preds) {
          const p = probs[i];
          const top = p.map((v, k) => [k, v]).sort((a, b) => b[1] - a[1]).slice(0, TOP_K);
          return h("tr", { "data-testid": "predict-row" },
            h("td", { class: "num mono" }, i),
            h("td", { class: "mono strong", "data-testid": "predict-class" }, preds[i]),
            label(i),
            h("td", { class: "mono" }, top.map(([k, v]) => `${k}: ${(v * 100).toFixed(1)}%`).join("  ")));
        }
        const values = Array.isArray(o) ? o.flat(Infinity) : [o];
        return h("tr", { "data-testid": "predict-row" },
          h("td", { class: "num mono" }, i),
          h("td", { class: "mono", "data-testid": "predict-value" },
            values.slice(0, 8).map(fmtNum).join(", ") + (values.length > 8 ? ", …" : "")),
          label(i));
      });
      parts.push(h("div", { class: "predict-head", "data-testid": "predict-head", "data-head": head },
        Object.keys(answer.outputs).length > 1 ? h("h3", {}, "Head ", h("span", { class: "mono" }, head)) : null,
        h("div", { class: "table-scroll" }, h("table", { class: "compact" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "#"),
            ...(preds ? [h("th", { scope: "col" }, "Class"), labels ? h("th", { scope: "col" }, "Label") : null,
              h("th", { scope: "col" }, `Top ${TOP_K} probabilities`)]
              : [h("th", { scope: "col" }, "Output"), labels ? h("th", { scope: "col" }, "Label") : null]))),
          h("tbody", {}, ...rows)))));
    }
    this.results.replaceChildren(...parts);
  }
}
