// A model as the API's /v1/specs/validate report describes it: one row per node with its
// output shape (None, the batch, shown as N), parameters and FLOPs per sample, and the totals.
// The job page and the new-job form both show it.

import { fmtBytes, fmtInt, h, isNum } from "./util.js";

/** 1234 -> "1.23k", 4.2e9 -> "4.20G": for parameter and FLOP counts. */
export function fmtCount(n) {
  if (!isNum(n)) return "—";
  const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [size, unit] of units) {
    if (Math.abs(n) >= size) return `${(n / size).toFixed(n / size >= 100 ? 0 : n / size >= 10 ? 1 : 2)}${unit}`;
  }
  return String(n);
}

const shape = (s) => (Array.isArray(s) ? `[${s.map((d) => (d === null ? "N" : d)).join(", ")}]` : "—");

/** One line of totals: "12 nodes · 421.6k parameters (1.61 MiB) · 3.36M FLOPs per sample". */
export function specSummary(report) {
  const t = report.totals || {};
  return `${report.nodes.length} node${report.nodes.length === 1 ? "" : "s"} · ${fmtCount(t.parameters)} parameters`
    + `${isNum(t.parameter_bytes) ? ` (${fmtBytes(t.parameter_bytes)})` : ""} · ${fmtCount(t.flops_per_sample)} FLOPs per sample`;
}

/** The node table; `graph` adds the inputs column (a layers list feeds each node the one before). */
export function specTable(report, { graph = false, testid = "spec-table" } = {}) {
  const t = report.totals || {};
  const rows = report.nodes.map((n) => h("tr", { "data-testid": "spec-node", "data-node": n.name },
    h("td", { class: "mono" }, n.name),
    h("td", {}, n.type),
    graph ? h("td", { class: "mono muted" }, (n.inputs || []).join(", ")) : null,
    h("td", { class: "mono", "data-testid": "spec-node-shape" }, shape(n.output_shape)),
    h("td", { class: "num mono", title: fmtInt(n.parameters), "data-testid": "spec-node-params" }, fmtCount(n.parameters)),
    h("td", { class: "num mono", title: fmtInt(n.flops_per_sample) }, fmtCount(n.flops_per_sample))));
  const outputs = Object.entries(report.outputs || {}).map(([k, v]) => `${k} ${shape(v)}`).join(", ");
  return h("div", { class: "table-scroll" },
    h("table", { class: "spec-table", "data-testid": testid },
      h("caption", { class: "sr-only" }, "The model's nodes with their output shapes, parameters and FLOPs"),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Node"), h("th", { scope: "col" }, "Type"),
        graph ? h("th", { scope: "col" }, "Inputs") : null,
        h("th", { scope: "col" }, "Output shape"), h("th", { scope: "col", class: "num" }, "Parameters"),
        h("th", { scope: "col", class: "num" }, "FLOPs / sample"))),
      h("tbody", {}, ...rows),
      h("tfoot", {}, h("tr", {},
        h("th", { scope: "row", colspan: graph ? 3 : 2 }, "Total"),
        h("td", { class: "mono muted" }, outputs),
        h("td", { class: "num mono", "data-testid": "spec-total-params", title: fmtInt(t.parameters) }, fmtCount(t.parameters)),
        h("td", { class: "num mono", "data-testid": "spec-total-flops", title: fmtInt(t.flops_per_sample) },
          fmtCount(t.flops_per_sample))))));
}
