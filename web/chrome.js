// The page chrome every view shares: the live indicator, the error banner, the
// breadcrumbs, the chart tooltip, and the Poller that refreshes a view.

import { ApiError, apiKey, saveApiKey } from "./api.js";
import { h, setAttr, setText } from "./util.js";

export const POLL_MS = 2000;

const banner = document.getElementById("banner");
const live = document.getElementById("live");
const crumbs = document.getElementById("crumbs");
export const tooltip = document.getElementById("tooltip");

let retryHandler = () => {};
/** What the banner's "Use key" button runs once a key is stored (the router's refresh). */
export function onRetry(fn) {
  retryHandler = fn;
}

const LIVE_TEXT = { live: "Live", paused: "Paused", error: "Offline", idle: "Up to date", connecting: "Connecting…" };

/** The top bar's indicator. state: live | paused | error | idle | connecting; text overrides the label. */
export function setLive(state, title, text) {
  setAttr(live, "data-state", state);
  const label = text || LIVE_TEXT[state] || "";
  setText(live.querySelector(".live-text"), label);
  live.title = title || label;
}

export function showBanner(err) {
  banner.replaceChildren();
  if (err.status === 401 || err.status === 403) {
    const input = h("input", { type: "password", placeholder: "API key", "aria-label": "API key", value: apiKey(), "data-testid": "api-key-input" });
    const form = h("form", {
      class: "key-form",
      onsubmit: (ev) => {
        ev.preventDefault();
        saveApiKey(input.value.trim());
        hideBanner();
        retryHandler();
      },
    }, input, h("button", { type: "submit" }, "Use key"));
    banner.append(h("span", {}, `The API refused the request (${err.status}: ${err.message}). Enter an API key:`), form);
  } else if (err.status === 0) {
    banner.append(h("span", {}, "Can't reach the Trainyard API. Retrying…"));
  } else {
    banner.append(h("span", {}, `The API answered ${err.status}: ${err.message}. Retrying…`));
  }
  banner.hidden = false;
  setLive("error", err.message);
}

export function hideBanner() {
  if (!banner.hidden) banner.hidden = true;
}

/** Show an error from anywhere as the banner (non-API errors are logged too). */
export function reportError(err) {
  if (err instanceof ApiError) showBanner(err);
  else {
    console.error(err);
    showBanner(new ApiError(-1, String(err && err.message ? err.message : err)));
  }
}

export function setCrumbs(...parts) {
  crumbs.replaceChildren(
    ...parts.flatMap((p, i) => [
      i ? h("span", { class: "crumb-sep", "aria-hidden": "true" }, "/") : null,
      p.href ? h("a", { href: p.href }, p.text) : h("span", { class: "crumb-current" }, p.text),
    ]).filter(Boolean),
  );
}

/** Calls fn every `ms` after the previous call finished; fn returning false stops it.
 *  Pauses while the tab is hidden and catches up as soon as it is visible again.
 *  `liveTitle` is the indicator's title while it runs. */
export class Poller {
  constructor(fn, ms = POLL_MS, liveTitle = null) {
    this.fn = fn;
    this.ms = ms;
    this.liveTitle = liveTitle || `Refreshing every ${ms / 1000} s`;
    this.active = false;
    this.busy = false;
    this.timer = null;
    this.deferred = false;
  }

  start() {
    this.active = true;
    this.tick();
  }

  stop() {
    this.active = false;
    clearTimeout(this.timer);
  }

  wake() {
    if (this.active && this.deferred) this.tick();
  }

  async tick() {
    clearTimeout(this.timer);
    if (!this.active || this.busy) return;
    if (document.hidden) {
      this.deferred = true;
      setLive("paused", "Auto-refresh pauses while the tab is hidden");
      return;
    }
    this.deferred = false;
    this.busy = true;
    let keepGoing = true;
    try {
      keepGoing = (await this.fn()) !== false;
      if (!this.active) return;
      hideBanner();
      setLive(keepGoing ? "live" : "idle", keepGoing ? this.liveTitle : "Finished — no more updates");
    } catch (err) {
      if (!this.active) return;
      reportError(err);
    } finally {
      this.busy = false;
    }
    if (!keepGoing) this.active = false;
    if (this.active) this.timer = setTimeout(() => this.tick(), this.ms);
  }
}
