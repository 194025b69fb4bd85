// Trainyard dashboard: native ES modules over the /v1 REST API, no build step.
//
// The router maps hash routes (so the static server only ever serves index.html) to
// views. Every view follows one protocol:
//   new View(root, params)  params: the route's :names and the query (#/compare?ids=a,b)
//   mount()                 build into root and start loading / following
//   unmount()               stop every timer, stream and listener it started
//   refresh()               load again now (after the API key was entered)
//   wake()                  the tab is visible again: catch up
// The contract, and which helpers exist, is written down in web/README.md.

import { hideBanner, onRetry, setCrumbs, setLive, tooltip } from "./chrome.js";
import { CompareView } from "./compare.js";
import { JobDetailView } from "./job.js";
import { RunsTableView } from "./list.js";
import { SweepView } from "./sweep.js";
import { h } from "./util.js";
// -- dashboard pages: imports (datasets, new job) go here ---------------------------------
import { DatasetView } from "./dataset.js";
import { DatasetsView } from "./datasets.js";
import { NewJobView } from "./newjob.js";

/** A route: its path pattern ("/jobs/:id"), the view it makes, the nav link it lights. */
const route = (path, create, nav = null) => ({ path, create, nav, ...compile(path) });

const ROUTES = [
  route("/", (root, p) => new RunsTableView(root, p), "runs"),
  route("/compare", (root, p) => new CompareView(root, p), "runs"),
  route("/sweeps/:id", (root, p) => new SweepView(root, p), "runs"),
  route("/jobs/:id", (root, p) => new JobDetailView(root, p.id), "runs"),
  // -- dashboard pages: #/datasets, #/datasets/:id and #/new go here, one line each -------
  route("/datasets", (root, p) => new DatasetsView(root, p), "datasets"),
  route("/datasets/:id", (root, p) => new DatasetView(root, p), "datasets"),
  route("/new", (root, p) => new NewJobView(root, p), "new"),
];

function compile(path) {
  const names = [];
  const source = path.replace(/:([a-z_]+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  });
  return { regex: new RegExp(`^${source}/?$`), names };
}

/** The current hash as {route, params}; params hold the :names and the query's keys. */
export function resolve(hash = location.hash) {
  const raw = hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  const params = Object.fromEntries(new URLSearchParams(query));
  for (const r of ROUTES) {
    const m = (path || "/").match(r.regex);
    if (!m) continue;
    r.names.forEach((name, i) => {
      params[name] = decodeURIComponent(m[i + 1]);
    });
    return { route: r, params };
  }
  return { route: null, params };
}

class NotFoundView {
  constructor(root) {
    this.root = root;
  }

  mount() {
    setCrumbs({ text: "Runs", href: "#/" }, { text: "Not found" });
    setLive("idle", "Nothing to follow");
    document.title = "Not found · Trainyard";
    this.root.replaceChildren(h("section", { class: "page" },
      h("div", { class: "card empty", "data-testid": "route-not-found" },
        h("div", { class: "empty-title" }, "No such page"),
        h("p", {}, "The dashboard has no page at ", h("code", {}, location.hash || "#/"), "."),
        h("p", {}, h("a", { href: "#/" }, "← Back to the runs")))));
  }

  unmount() {}
  refresh() {}
  wake() {}
}

const viewRoot = document.getElementById("view");

const router = {
  view: null,
  go() {
    if (this.view) this.view.unmount();
    tooltip.hidden = true;
    hideBanner();
    const { route: r, params } = resolve();
    this.view = r ? r.create(viewRoot, params) : new NotFoundView(viewRoot, params);
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === r?.nav) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    this.view.mount();
    window.scrollTo(0, 0);
  },
  refresh() {
    if (this.view) this.view.refresh();
  },
};

onRetry(() => router.refresh());
window.addEventListener("hashchange", () => router.go());
// Leaving the page closes its stream; coming back from the back/forward cache opens a new one.
window.addEventListener("pagehide", () => {
  if (router.view) router.view.unmount();
});
window.addEventListener("pageshow", (ev) => {
  if (ev.persisted) router.go();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && router.view) router.view.wake();
});
router.go();
