// The datasets page's upload card: an .npz (inputs, targets), an .npy of inputs with an .npy of
// targets, or a .csv with its target columns, sent to POST /v1/datasets/upload as multipart
// with a progress bar; the 422 that names a field shows at that field.

import { FieldErrors, FormError, errorSlot } from "./forms.js";
import { upload } from "./upload.js";
import { fmtBytes, h, setAttr, setText } from "./util.js";

const KINDS = { npz: "npz", npy: "npy", csv: "csv" };
const kindOf = (file) => KINDS[(file?.name || "").toLowerCase().split(".").pop()] || null;

/** The header row of a CSV file (read from its first 64 KiB). */
async function csvHeader(file) {
  const text = await file.slice(0, 65536).text();
  const line = text.split(/\r?\n/, 1)[0] || "";
  return line.split(",").map((c) => c.trim().replace(/^"|"$/g, "")).filter(Boolean);
}

export class UploadCard {
  /** onDone(dataset) runs with the created dataset. */
  constructor(onDone) {
    this.onDone = onDone;
    this.current = null;
    this.autoName = ""; // the name filled in from the file, replaced when another file is picked
    const f = (this.f = {});
    f.file = h("input", { id: "up-file", type: "file", accept: ".npz,.npy,.csv", "data-testid": "upload-file",
                          "aria-describedby": "up-file-note", onchange: () => this.picked() });
    f.name = h("input", { id: "up-name", type: "text", maxlength: 200, "data-testid": "upload-name", required: true });
    f.task = h("select", { id: "up-task", "data-testid": "upload-task" },
      h("option", { value: "classification" }, "classification"), h("option", { value: "regression" }, "regression"));
    f.targets = h("input", { id: "up-targets", type: "file", accept: ".npy", "data-testid": "upload-targets" });
    f.columns = h("input", { id: "up-columns", type: "text", "data-testid": "upload-columns", placeholder: "label" });
    this.columnsNote = h("p", { class: "field-note", "data-testid": "upload-columns-note" });
    const slots = (this.slots = {
      file: errorSlot("upload-file-error"), name: errorSlot("upload-name-error"), task: errorSlot("upload-task-error"),
      targets: errorSlot("upload-targets-error"), columns: errorSlot("upload-columns-error"),
      general: errorSlot("upload-error"),
    });
    this.errors = new FieldErrors([
      { prefix: "/file", slot: slots.file, input: f.file },
      { prefix: "/name", slot: slots.name, input: f.name },
      { prefix: "/task", slot: slots.task, input: f.task },
      { prefix: "/targets", slot: slots.targets, input: f.targets },
      { prefix: "/target_columns", slot: slots.columns, input: f.columns },
    ], slots.general);
    this.drop = h("label", { class: "dropzone", for: "up-file", "data-testid": "upload-drop" },
      h("strong", {}, "Choose a file or drop it here"),
      h("span", { id: "up-file-note" }, ".npz with inputs and targets, .npy of inputs (with targets .npy), or .csv"),
      f.file);
    for (const type of ["dragenter", "dragover"]) {
      this.drop.addEventListener(type, (ev) => {
        ev.preventDefault();
        this.drop.classList.add("over");
      });
    }
    for (const type of ["dragleave", "drop"]) this.drop.addEventListener(type, () => this.drop.classList.remove("over"));
    this.drop.addEventListener("drop", (ev) => {
      ev.preventDefault();
      if (ev.dataTransfer?.files?.length) {
        f.file.files = ev.dataTransfer.files;
        this.picked();
      }
    });
    this.targetsField = h("div", { class: "field", hidden: true },
      h("label", { for: "up-targets" }, "Targets (.npy)"), f.targets, slots.targets);
    this.columnsField = h("div", { class: "field", hidden: true },
      h("label", { for: "up-columns" }, "Target columns"), f.columns, this.columnsNote, slots.columns);
    this.bar = h("progress", { max: 100, value: 0, "data-testid": "upload-progress-bar", "aria-label": "Upload progress" });
    this.barLabel = h("span", { class: "progress-label", "data-testid": "upload-progress-label" });
    this.progress = h("div", { class: "upload-progress", "data-testid": "upload-progress", hidden: true, role: "status" },
      this.bar, this.barLabel);
    this.submitBtn = h("button", { class: "btn primary", type: "submit", "data-testid": "upload-submit" }, "Upload");
    this.cancelBtn = h("button", { class: "btn", type: "button", "data-testid": "upload-cancel", hidden: true,
                                   onclick: () => this.current?.abort() }, "Cancel upload");
    this.done = h("p", { class: "field-note", "data-testid": "upload-done", role: "status" });
    this.form = h("form", { class: "upload-form", novalidate: true, onsubmit: (ev) => this.submit(ev) },
      h("div", { class: "field" }, this.drop, slots.file),
      h("div", { class: "field-group" },
        h("div", { class: "field" }, h("label", { for: "up-name" }, "Name"), f.name, slots.name),
        h("div", { class: "field" }, h("label", { for: "up-task" }, "Task"), f.task, slots.task)),
      h("div", { class: "field-group" }, this.targetsField, this.columnsField,
        h("div", { class: "field field-action" }, h("div", { class: "button-row" }, this.submitBtn, this.cancelBtn))),
      this.progress,
      h("div", { class: "field-wide" }, slots.general, this.done));
    this.el = h("div", { class: "card", "data-testid": "upload-card" },
      h("div", { class: "card-head" }, h("h2", {}, "Upload a dataset")), this.form);
  }

  async picked() {
    const file = this.f.file.files[0];
    const kind = kindOf(file);
    this.errors.clear();
    setText(this.done, "");
    this.targetsField.hidden = kind !== "npy";
    this.columnsField.hidden = kind !== "csv";
    this.progress.hidden = true;
    if (file && (!this.f.name.value.trim() || this.f.name.value === this.autoName)) {
      this.autoName = file.name.replace(/\.[^.]+$/, "").slice(0, 200);
      this.f.name.value = this.autoName;
    }
    if (file) setText(this.drop.querySelector("strong"), `${file.name} · ${fmtBytes(file.size)}`);
    if (kind === "csv") {
      const header = await csvHeader(file);
      setText(this.columnsNote, header.length ? `columns: ${header.join(", ")}` : "");
      if (!this.f.columns.value.trim() && header.length) this.f.columns.value = header[header.length - 1];
    }
  }

  setProgress(sent, total) {
    const pct = total ? Math.min(100, (sent / total) * 100) : null;
    if (pct !== null) this.bar.value = pct;
    else this.bar.removeAttribute("value"); // indeterminate
    setAttr(this.progress, "data-sent", sent);
    setAttr(this.progress, "data-events", Number(this.progress.dataset.events || 0) + 1);
    setText(this.barLabel, total ? `${fmtBytes(sent)} of ${fmtBytes(total)} · ${Math.floor(pct)}%` : `${fmtBytes(sent)} sent`);
  }

  async submit(ev) {
    ev.preventDefault();
    this.errors.clear();
    setText(this.done, "");
    const file = this.f.file.files[0];
    if (!file) {
      this.errors.show(new FormError(422, "choose a file", [{ pointer: "/file", msg: "choose a file to upload" }]));
      this.f.file.focus();
      return;
    }
    const form = new FormData();
    form.append("name", this.f.name.value.trim() || file.name);
    form.append("task", this.f.task.value);
    form.append("file", file, file.name);
    const kind = kindOf(file);
    if (kind === "npy" && this.f.targets.files[0]) form.append("targets", this.f.targets.files[0], this.f.targets.files[0].name);
    if (kind === "csv") form.append("target_columns", this.f.columns.value);

    this.progress.hidden = false;
    this.progress.dataset.events = "0";
    this.setProgress(0, file.size);
    this.submitBtn.disabled = true;
    this.cancelBtn.hidden = false;
    setAttr(this.progress, "data-state", "uploading");
    this.current = upload("datasets/upload", form, (sent, total) => this.setProgress(sent, total));
    try {
      const ds = await this.current.promise;
      this.bar.value = 100;
      setAttr(this.progress, "data-state", "done");
      setText(this.barLabel, `Uploaded ${fmtBytes(file.size)} · 100%`);
      setText(this.done, `Created ${ds.name}: ${ds.num_samples} samples of shape [${ds.input_shape.join(", ")}].`);
      this.form.reset();
      this.targetsField.hidden = true;
      this.columnsField.hidden = true;
      setText(this.drop.querySelector("strong"), "Choose a file or drop it here");
      this.onDone(ds);
    } catch (err) {
      setAttr(this.progress, "data-state", "failed");
      setText(this.barLabel, err.status === -1 ? "Cancelled." : "The upload was refused.");
      const input = this.errors.show(err);
      if (input) input.focus();
    } finally {
      this.current = null;
      this.submitBtn.disabled = false;
      this.cancelBtn.hidden = true;
    }
  }
}
