// A sweep (#/sweeps/{id}): its best trial, the trials' parameters against the metric as
// parallel coordinates, the ASHA rungs (the metric at each rung epoch and whether the
// trial went on or was stopped there), and the trials table. Read from GET
// /v1/sweeps/{id} every 3 s until the sweep is over.

import { api, qs } from "./api.js";
import { Poller, setCrumbs, showBanner, tooltip } from "./chrome.js";
import { ParallelCoordinates } from "./parcoords.js";
import { TERMINAL, fmtMetric, fmtRelative, h, isNum, setText } from "./util.js";
import { statusBadge, updateBadge } from "./widgets.js";

export const SWEEP_POLL_MS = 3000;
const OVER = new Set([...TERMINAL, "completed", "finished"]);

const fmtValue = (v) => (v === null || v === undefined ? "—" : isNum(v) ? String(Number(v.toPrecision(4))) : typeof v === "object" ? JSON.stringify(v) : String(v));

export class SweepView {
  constructor(root, params = {}) {
    this.root = root;
    this.id = params.id;
    this.sweep = null;
    this.el = null;
    this.sortKey = "metric";
    this.poller = new Poller(() => this.load(), SWEEP_POLL_MS);
    this.resizeObs = null;
  }

  mount() {
    setCrumbs({ text: "Runs", href: "#/" }, { text: "Sweep" });
    document.title = "Sweep · Trainyard";
    this.root.replaceChildren(h("section", { class: "page", "data-testid": "sweep-view" },
      h("div", { class: "empty loading", "data-testid": "loading" }, "Loading the sweep…")));
    this.poller.start();
  }

  unmount() {
    this.poller.stop();
    if (this.resizeObs) this.resizeObs.disconnect();
  }

  refresh() {
    this.poller.active = true;
    this.poller.tick();
  }

  wake() {
    this.poller.wake();
  }

  async load() {
    let sweep;
    try {
      sweep = await api(`sweeps/${encodeURIComponent(this.id)}`);
    } catch (err) {
      if (err.status === 404) {
        this.root.replaceChildren(h("section", { class: "page" }, h("div", { class: "card empty", "data-testid": "not-found" },
          h("div", { class: "empty-title" }, "Sweep not found"), h("p", {}, err.message),
          h("p", {}, h("a", { href: "#/" }, "← Back to the runs")))));
        return false;
      }
      throw err;
    }
    if (!this.poller.active) return false;
    this.sweep = sweep;
    if (!this.el) this.build();
    this.render();
    return !OVER.has(sweep.status);
  }

  // ----------------------------------------------------------------- build ---

  build() {
    const s = this.sweep;
    this.refs = {};
    const r = this.refs;
    r.name = h("h1", { "data-testid": "sweep-name" });
    r.badge = statusBadge(s.status, "sweep-status");
    r.meta = h("div", { class: "muted", "data-testid": "sweep-meta" });
    r.cancel = h("button", { type: "button", class: "btn danger", "data-testid": "cancel-sweep", onclick: () => this.cancel() }, "Cancel sweep");
    r.compare = h("a", { class: "btn", "data-testid": "compare-top" }, "Compare the best");
    r.best = h("div", { class: "best-trial", "data-testid": "best-trial" });
    this.plot = new ParallelCoordinates({
      testid: "parcoords", tooltip,
      onPick: (item) => {
        if (item.jobId) location.hash = `#/jobs/${encodeURIComponent(item.jobId)}`;
      },
    });
    r.plotBox = h("div", { class: "parcoords-box" }, this.plot.el);
    r.rungs = h("div", { class: "table-scroll", "data-testid": "asha-rungs" });
    r.rungCard = h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "ASHA rungs"),
      h("div", { class: "legend" }, h("span", { class: "legend-item" }, h("span", { class: "rung-mark go" }, "▲"), "went on"),
        h("span", { class: "legend-item" }, h("span", { class: "rung-mark stop" }, "■"), "stopped here"))), r.rungs);
    r.trialsHead = h("thead", {});
    r.trialsBody = h("tbody", { "data-testid": "trial-list" });
    this.el = h("section", { class: "page", "data-testid": "sweep-view", "data-sweep-id": s.id },
      h("div", { class: "page-head" },
        h("div", { class: "title-block" },
          h("a", { class: "back", href: `#/${qs({ sweep_id: s.id })}` }, "← Its runs"),
          h("div", { class: "title-row" }, r.name, r.badge), r.meta),
        h("div", { class: "actions" }, r.compare, r.cancel)),
      h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Best trial")), r.best),
      h("div", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Parameters against the metric"),
        h("span", { class: "muted" }, "one line per trial; click a line to open its job")), r.plotBox),
      r.rungCard,
      h("div", { class: "card table-card" }, h("div", { class: "card-head pad" }, h("h2", {}, "Trials")),
        h("div", { class: "table-scroll" }, h("table", { class: "trials", "data-testid": "trials-table" }, r.trialsHead, r.trialsBody))),
    );
    this.root.replaceChildren(this.el);
    if (window.ResizeObserver) {
      this.resizeObs = new ResizeObserver(() => this.plot.setWidth(r.plotBox.clientWidth));
      this.resizeObs.observe(r.plotBox);
    }
    this.plot.setWidth(r.plotBox.clientWidth);
  }

  params() {
    const names = new Set();
    for (const t of this.sweep.trials) for (const k of Object.keys(t.parameters || {})) names.add(k);
    return [...names];
  }

  render() {
    const s = this.sweep;
    const r = this.refs;
    const metric = s.metric?.name || "metric";
    setText(r.name, s.name || s.id);
    updateBadge(r.badge, s.status);
    setText(r.meta, `${s.method} search · ${s.metric ? `${s.metric.goal} ${metric}` : "no metric"} · ` +
      `${s.progress.trials_finished}/${s.progress.trials_total} trials finished · up to ${s.max_concurrent} at once · ` +
      `created ${fmtRelative(s.created_at)}`);
    document.title = `${s.name || s.id} · Sweep · Trainyard`;
    r.cancel.hidden = OVER.has(s.status);
    const ranked = this.ranked();
    const top = ranked.filter((t) => t.job_id).slice(0, 5).map((t) => t.job_id);
    r.compare.hidden = top.length < 2;
    r.compare.setAttribute("href", `#/compare?ids=${top.map(encodeURIComponent).join(",")}`);
    this.renderBest(metric);
    const names = this.params();
    this.plot.setData([...names.map((n) => ({ name: n.split(".").pop() })), { name: metric }],
      s.trials.map((t) => ({
        id: t.index, jobId: t.job_id,
        label: `trial ${t.index} · ${names.map((n) => `${n.split(".").pop()}=${fmtValue(t.parameters?.[n])}`).join(" ")} · ${metric} ${isNum(t.metric) ? fmtMetric(metric, t.metric) : "—"}`,
        values: [...names.map((n) => t.parameters?.[n] ?? null), isNum(t.metric) ? t.metric : null],
      })),
      { higherIsBetter: s.metric?.goal !== "minimize" });
    this.renderRungs(metric);
    this.renderTrials(names, metric, ranked);
  }

  /** Trials best first by the metric (the goal's direction), those without one last. */
  ranked() {
    const s = this.sweep;
    const sign = s.metric?.goal === "minimize" ? 1 : -1;
    const key = this.sortKey;
    return [...s.trials].sort((a, b) => {
      if (key === "index") return a.index - b.index;
      const va = isNum(a.metric) ? a.metric : null;
      const vb = isNum(b.metric) ? b.metric : null;
      if (va === null || vb === null) return (va === null) - (vb === null) || a.index - b.index;
      return sign * (va - vb) || a.index - b.index;
    });
  }

  renderBest(metric) {
    const b = this.sweep.best;
    if (!b) {
      this.refs.best.replaceChildren(h("p", { class: "muted" }, "No trial has succeeded yet."));
      return;
    }
    this.refs.best.replaceChildren(
      h("div", { class: "best-value" }, h("span", { class: "muted" }, metric), " ",
        h("strong", { "data-testid": "best-metric" }, fmtMetric(metric, b.metric))),
      h("div", {}, h("a", { href: `#/jobs/${encodeURIComponent(b.job_id)}`, "data-testid": "best-link" }, `Trial ${b.index}`)),
      h("dl", { class: "kv" }, ...Object.entries(b.parameters).flatMap(([k, v]) => [h("dt", { class: "mono" }, k), h("dd", { class: "mono" }, fmtValue(v))])));
  }

  renderRungs(metric) {
    const trials = this.sweep.trials.filter((t) => t.rungs?.length);
    this.refs.rungCard.hidden = !trials.length && !this.sweep.early_terminate;
    if (!trials.length) {
      this.refs.rungs.replaceChildren(h("p", { class: "muted pad" }, "No trial has reached a rung yet."));
      return;
    }
    const epochs = [...new Set(trials.flatMap((t) => t.rungs.map((g) => g.epoch)))].sort((a, b) => a - b);
    const body = this.ranked().filter((t) => t.rungs?.length).map((t) => {
      const at = new Map(t.rungs.map((g) => [g.epoch, g]));
      return h("tr", { "data-testid": "rung-row", "data-trial": t.index, "data-stopped": String(Boolean(t.stopped_early)) },
        h("th", { scope: "row" }, `trial ${t.index}`),
        ...epochs.map((e) => {
          const g = at.get(e);
          if (!g) return h("td", { class: "rung-cell none" }, "");
          return h("td", { class: `rung-cell ${g.continued ? "go" : "stop"}`, "data-testid": "rung-cell", "data-epoch": e,
                          "data-continued": String(g.continued), title: g.continued ? "went on" : "stopped here" },
            h("span", { class: `rung-mark ${g.continued ? "go" : "stop"}`, "aria-hidden": "true" }, g.continued ? "▲" : "■"), " ",
            fmtMetric(metric, g.value), h("span", { class: "sr-only" }, g.continued ? " (went on)" : " (stopped here)"));
        }),
        h("td", { class: "muted" }, t.stopped_early ? `stopped at epoch ${t.rung ?? "?"}` : t.status));
    });
    this.refs.rungs.replaceChildren(h("table", { class: "rungs" },
      h("thead", {}, h("tr", {}, h("th", {}, "Trial"), ...epochs.map((e) => h("th", {}, `epoch ${e}`)), h("th", {}, "Outcome"))),
      h("tbody", {}, ...body)));
  }

  renderTrials(names, metric, ranked) {
    const head = (text, key) => h("th", { "aria-sort": this.sortKey === key ? "ascending" : "none" },
      h("button", { type: "button", class: "sort", onclick: () => {
        this.sortKey = key;
        this.render();
      } }, text));
    this.refs.trialsHead.replaceChildren(h("tr", {},
      head("#", "index"), h("th", {}, "Status"), ...names.map((n) => h("th", { class: "num mono" }, n.split(".").pop())),
      head(metric, "metric"), h("th", { class: "num" }, "Epoch"), h("th", {}, "Rung")));
    const best = this.sweep.best?.index;
    this.refs.trialsBody.replaceChildren(...ranked.map((t) => {
      const href = t.job_id ? `#/jobs/${encodeURIComponent(t.job_id)}` : null;
      const tr = h("tr", { class: `trial-row${href ? " job-row" : ""}${t.index === best ? " best" : ""}`, tabindex: href ? 0 : null,
                           "data-testid": "trial-row", "data-trial": t.index, "data-status": t.status,
                           onclick: (ev) => { if (href && !ev.target.closest("a")) location.hash = href; },
                           onkeydown: (ev) => { if (href && ev.target === tr && (ev.key === "Enter" || ev.key === " ")) { ev.preventDefault(); location.hash = href; } } },
        h("td", {}, href ? h("a", { href }, String(t.index)) : String(t.index), t.index === best ? h("span", { class: "best-tag" }, " best") : null),
        h("td", {}, statusBadge(t.status, "trial-status")),
        ...names.map((n) => h("td", { class: "num mono" }, fmtValue(t.parameters?.[n]))),
        h("td", { class: "num", "data-testid": "trial-metric" }, isNum(t.metric) ? fmtMetric(metric, t.metric) : "—"),
        h("td", { class: "num" }, String(t.epoch ?? "—")),
        h("td", { class: "muted" }, t.stopped_early ? `stopped at ${t.rung}` : t.rung ? `passed ${t.rung}` : ""));
      return tr;
    }));
  }

  async cancel() {
    this.refs.cancel.disabled = true;
    try {
      this.sweep = await api(`sweeps/${encodeURIComponent(this.id)}/cancel`, "POST");
      this.render();
    } catch (err) {
      showBanner(err);
    } finally {
      this.refs.cancel.disabled = false;
    }
    this.refresh();
  }
}
