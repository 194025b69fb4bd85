// A class histogram: one bar per class, its height the class's share of the largest count,
// labelled with the class index (every k-th when there are many) and its count in the tooltip.
// Plain HTML boxes, so labels stay readable at any width.

import { fmtInt, h } from "./util.js";

const MAX_LABELS = 24;

/** counts: samples per class index. Returns the element. */
export function histogram(counts, { testid = "class-histogram", head = "output" } = {}) {
  const max = Math.max(1, ...counts);
  const total = counts.reduce((a, b) => a + b, 0);
  const every = Math.max(1, Math.ceil(counts.length / MAX_LABELS));
  const bars = counts.map((c, i) => h("div", {
    class: "hist-col", "data-testid": "histogram-bar", "data-class": i, "data-count": c,
    title: `class ${i}: ${fmtInt(c)} samples (${total ? ((c / total) * 100).toFixed(1) : 0}%)`,
  },
    h("div", { class: "hist-bar", style: `height: calc(${c / max} * (100% - 18px))` }),
    h("span", { class: "hist-label", "aria-hidden": "true" }, i % every === 0 ? String(i) : "")));
  return h("div", {
    class: "histogram", role: "img", "data-testid": testid, "data-head": head, "data-bars": counts.length,
    "aria-label": `Samples per class of ${head}: ${counts.map((c, i) => `class ${i}: ${c}`).join(", ")}`,
  },
    h("div", { class: "hist-axis", "aria-hidden": "true" },
      h("span", {}, fmtInt(max)), h("span", {}, fmtInt(Math.round(max / 2))), h("span", {}, "0")),
    h("div", { class: "hist-plot" }, ...bars));
}
