// Trainyard dashboard: a dependency-free single page over the /v1 REST API.
//
// Routes (hash based, so the static server only ever serves index.html):
//   #/              the job list, polled every 2 s                      (list.js)
//   #/jobs/{id}     one job, live from its event stream: status, progress,
//                   live tiles, charts, log, checkpoints                 (job.js)
//
// The modules, one idea each: api.js (the REST client), chrome.js (banner, live
// indicator, breadcrumbs, Poller), stream.js (the event stream and its polling
// fallback), chart.js (SVG charts that grow in place), logs.js (the log panel),
// widgets.js (badge, progress bar), util.js (DOM and formatting helpers).

import { hideBanner, onRetry, tooltip } from "./chrome.js";
import { JobDetailView } from "./job.js";
import { JobListView } from "./list.js";

const viewRoot = document.getElementById("view");

const router = {
  view: null,
  parse() {
    const hash = location.hash.replace(/^#/, "");
    const match = hash.match(/^\/jobs\/([^/?#]+)\/?$/);
    if (match) return { name: "job", id: decodeURIComponent(match[1]) };
    return { name: "list" };
  },
  go() {
    if (this.view) this.view.unmount();
    tooltip.hidden = true;
    hideBanner();
    const route = this.parse();
    this.view = route.name === "job" ? new JobDetailView(viewRoot, route.id) : new JobListView(viewRoot);
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
