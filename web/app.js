// Trainyard dashboard: native ES modules over the /v1 REST API, no build step.
//
// The router maps hash routes (so the static server only ever serves index.html) to
// views. Every view follows one protocol:
//   new View(root, params)  params: the route's :names and the query (#/compare?ids=a,b)
//   mount()                 build into root and start loading / following
//   unmount()               stop every timer, stream and listener it started
//   refresh()               load again now (after the API key was entered)
//   wake()                  the tab is visible again: catch up
// A route's view module is imported when the route is first visited (lazy below).
// The contract, and which helpers exist, is written down in web/README.md.

import { hideBanner, onRetry, reportError, setCrumbs, setLive, tooltip } from "./chrome.js";
import { h } from "./util.js";

/** A route: its path pattern ("/jobs/:id"), the view it makes (or a promise of it), the nav
 *  link it lights. */
const route = (path, create, nav = null) => ({ path, create, nav, ...compile(path) });

/** A view whose module loads when its route is first visited: the runs table does not wait
 *  for the job page's modules (or uPlot) to load, nor they for the datasets page's. */
const lazy = (load, name, make = (View, root, p) => new View(root, p)) => async (root, p) => make((await load())[name], root, p);

const ROUTES = [
  route("/", lazy(() => import("./list.js"), "RunsTableView"), "runs"),
  route("/compare", lazy(() => import("./compare.js"), "CompareView"), "runs"),
  route("/sweeps/:id", lazy(() => import("./sweep.js"), "SweepView"), "runs"),
  route("/jobs/:id", lazy(() => import("./job.js"), "JobDetailView", (View, root, p) => new View(root, p.id)), "runs"),
  // -- dashboard pages: #/datasets, #/datasets/:id and #/new go here, one line each -------
  route("/datasets", lazy(() => import("./datasets.js"), "DatasetsView"), "datasets"),
  route("/datasets/:id", lazy(() => import("./dataset.js"), "DatasetView"), "datasets"),
  route("/new", lazy(() => import("./newjob.js"), "NewJobView"), "new"),
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
  visit: 0, // the newest navigation: a view that loads after a newer one is dropped
  async go() {
    const visit = ++this.visit;
    if (this.view) this.view.unmount();
    this.view = null;
    tooltip.hidden = true;
    hideBanner();
    const { route: r, params } = resolve();
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === r?.nav) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    let view;
    try {
      view = r ? await r.create(viewRoot, params) : new NotFoundView(viewRoot, params);
    } catch (err) {
      if (visit === this.visit) reportError(err); // a module that failed to load
      return;
    }
    if (visit !== this.visit) return;
    this.view = view;
    view.mount();
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
