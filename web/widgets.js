// Small pieces both views show: the status badge and the progress bar.

import { STATUSES, h, isNum, fmtInt, setAttr, setText } from "./util.js";

export function progressOf(job) {
  const p = job.progress || {};
  const epochs = isNum(p.epochs) && p.epochs > 0 ? p.epochs : job.training?.epochs;
  const total = isNum(p.total_steps) && p.total_steps > 0 ? p.total_steps : isNum(job.plan?.total_steps) ? job.plan.total_steps : 0;
  const step = isNum(p.step) ? p.step : 0;
  let frac = total > 0 ? Math.min(1, step / total) : 0;
  if (job.status === "succeeded") frac = 1;
  return { epoch: isNum(p.epoch) ? p.epoch : 0, epochs: epochs || 0, step, total, frac };
}

export function statusBadge(status, testid = "job-status") {
  const el = h("span", { class: "badge", "data-testid": testid });
  updateBadge(el, status);
  return el;
}

export function updateBadge(el, status) {
  const known = STATUSES.includes(status) ? status : "unknown";
  setAttr(el, "class", `badge badge-${known}`);
  setAttr(el, "data-status", status ?? "");
  setText(el, status ?? "unknown");
}

export function progressBar() {
  const fill = h("div", { class: "progress-fill" });
  const bar = h("div", { class: "progress-track", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, fill);
  const label = h("div", { class: "progress-label" });
  const wrap = h("div", { class: "progress", "data-testid": "job-progress" }, bar, label);
  return { wrap, bar, fill, label };
}

export function updateProgress(pb, job) {
  const p = progressOf(job);
  const pct = Math.round(p.frac * 1000) / 10;
  setAttr(pb.fill, "style", `width: ${pct}%`);
  setAttr(pb.fill, "data-status", job.status);
  setAttr(pb.bar, "aria-valuenow", pct);
  setAttr(pb.wrap, "data-step", p.step);
  setAttr(pb.wrap, "data-total-steps", p.total);
  let text;
  if (job.status === "queued" && p.step === 0) text = "Waiting for a worker";
  else if (p.total > 0 || p.epochs > 0) {
    text = `Epoch ${p.epoch}/${p.epochs || "?"} · Step ${fmtInt(p.step)}/${p.total ? fmtInt(p.total) : "?"}`;
  } else text = "—";
  setText(pb.label, text);
}
