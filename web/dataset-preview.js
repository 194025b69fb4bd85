// The first samples of a dataset (GET /v1/datasets/{id}/preview): drawn as images on canvases
// when a sample is 1xHxW (grey) or 3xHxW (colour), else as a table of their first values; each
// with its targets.

import { h, isNum } from "./util.js";

const MAX_COLUMNS = 12;

/** Whether samples of `shape` are drawn as images. */
export const isImage = (shape) => Array.isArray(shape) && shape.length === 3 && (shape[0] === 1 || shape[0] === 3)
  && shape[1] >= 2 && shape[2] >= 2;

/** The value range the images are scaled from: [0, 1] when the data fits it, else its min and max
 *  (the same for every sample shown, so their brightness compares). */
export function valueRange(samples) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of samples.flat(Infinity)) {
    if (!isNum(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo >= 0 && hi <= 1) return [0, 1];
  return lo < hi ? [lo, hi] : [lo, lo + 1];
}

/** One CxHxW sample (nested lists) drawn on a canvas of HxW pixels. */
export function drawSample(sample, [lo, hi]) {
  const [c, H, W] = [sample.length, sample[0].length, sample[0][0].length];
  const canvas = h("canvas", { width: W, height: H, "data-testid": "preview-image", "data-shape": `${c}x${H}x${W}` });
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(W, H);
  const scale = 255 / (hi - lo);
  for (let y = 0; y < H; y += 1) {
    for (let x = 0; x < W; x += 1) {
      const o = (y * W + x) * 4;
      for (let k = 0; k < 3; k += 1) {
        const v = sample[c === 3 ? k : 0][y][x];
        img.data[o + k] = isNum(v) ? Math.max(0, Math.min(255, Math.round((v - lo) * scale))) : 0;
      }
      img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

const targetText = (targets, i) => Object.entries(targets)
  .map(([head, ys]) => `${Object.keys(targets).length > 1 ? `${head} ` : ""}${JSON.stringify(ys[i])}`).join(" · ");

const cell = (v) => (isNum(v) ? String(Number(v.toFixed(4))) : JSON.stringify(v));

/** The preview answer as images or a table. */
export function previewView(preview) {
  const { inputs, targets = {}, input_shape: shape } = preview;
  if (!inputs.length) return h("p", { class: "muted" }, "The dataset has no samples.");
  if (isImage(shape)) {
    const range = valueRange(inputs);
    return h("div", { class: "preview-grid", "data-testid": "preview-images" },
      ...inputs.map((sample, i) => {
        const canvas = drawSample(sample, range);
        const label = targetText(targets, i);
        canvas.setAttribute("role", "img");
        canvas.setAttribute("aria-label", `sample ${i}${label ? `, target ${label}` : ""}`);
        return h("figure", { class: "preview-cell" }, canvas, h("figcaption", {}, `#${i}${label ? ` → ${label}` : ""}`));
      }));
  }
  const flat = inputs.map((x) => (Array.isArray(x) ? x.flat(Infinity) : [x]));
  const width = Math.min(MAX_COLUMNS, flat[0].length);
  const more = flat[0].length > width;
  const heads = Object.keys(targets);
  return h("div", { class: "table-scroll" }, h("table", { class: "compact preview-table", "data-testid": "preview-table" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "#"),
      ...Array.from({ length: width }, (_, j) => h("th", { scope: "col", class: "num" }, `x${j}`)),
      more ? h("th", { scope: "col" }, "…") : null,
      ...heads.map((hd) => h("th", { scope: "col" }, heads.length > 1 ? hd : "target")))),
    h("tbody", {}, ...flat.map((row, i) => h("tr", { "data-testid": "preview-row" },
      h("td", { class: "num muted" }, i),
      ...row.slice(0, width).map((v) => h("td", { class: "num" }, cell(v))),
      more ? h("td", { class: "muted" }, "…") : null,
      ...heads.map((hd) => h("td", { class: "strong" }, cell(targets[hd][i]))))))));
}
