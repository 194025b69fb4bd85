// A job's log: the worker's lines for each attempt, following the tail.
//
// Lines come from /logs (each with the seq of the log event that carried it) and
// from `log` events (the event's id is the seq), so a line seen through both is
// shown once. The panel scrolls with new lines while its end is in view; once the
// user scrolls up it stays put and offers a button back to the end. Messages are
// preformatted, so a failure's traceback reads as Python printed it.

import { fmtClock, h, setText } from "./util.js";

const FOLLOW_SLACK_PX = 24;
const LEVELS = new Set(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]);

export class LogPanel {
  constructor({ maxLines = 5000 } = {}) {
    this.maxLines = maxLines;
    this.lastSeq = 0;
    this.pending = [];
    this.count = 0;
    this.attempt = null;
    this.follow = true;
    this.truncated = false;
    this.finished = false;

    this.list = h("div", { class: "log-lines", role: "log", "aria-live": "off" });
    this.emptyEl = h("div", { class: "log-empty muted", "data-testid": "log-empty" }, "No log lines yet.");
    this.box = h("div", { class: "log-box", tabindex: 0, "data-testid": "log-panel" }, this.emptyEl, this.list);
    this.jump = h("button", { class: "btn small log-jump", type: "button", hidden: true, "data-testid": "log-follow",
                              onclick: () => this.toBottom() }, "↓ Follow the latest lines");
    this.countEl = h("span", { class: "muted log-count", "data-testid": "log-count" });
    this.el = h("div", { class: "log-wrap" }, this.box, this.jump);
    this.box.addEventListener("scroll", () => {
      this.follow = this.atBottom();
      if (this.follow) this.jump.hidden = true;
    });
  }

  atBottom() {
    const b = this.box;
    return b.scrollHeight - b.scrollTop - b.clientHeight <= FOLLOW_SLACK_PX;
  }

  toBottom() {
    this.box.scrollTop = this.box.scrollHeight;
    this.follow = true;
    this.jump.hidden = true;
  }

  /** Lines of one log event (or of a /logs page: each line has its seq). Returns true if any were new. */
  add(lines, { seq = null, attempt = null } = {}) {
    let added = false;
    let newest = this.lastSeq;
    for (const line of lines || []) {
      const lseq = seq ?? line.seq ?? null;
      // compared with the position before this call: one event's lines share a seq
      if (lseq !== null) {
        if (lseq <= this.lastSeq) continue;
        newest = Math.max(newest, lseq);
      }
      this.pending.push({ ...line, attempt: line.attempt ?? attempt });
      added = true;
    }
    this.lastSeq = newest;
    return added;
  }

  setFinished(finished) {
    this.finished = finished;
  }

  setTruncated(truncated) {
    this.truncated = Boolean(truncated);
  }

  /** Put pending lines into the DOM (called once per animation frame at most). */
  render() {
    const follow = this.follow;
    if (this.pending.length) {
      const frag = document.createDocumentFragment();
      for (const line of this.pending) {
        if (line.attempt !== null && line.attempt !== undefined && line.attempt !== this.attempt) {
          if (this.attempt !== null || line.attempt > 1) {
            frag.append(h("div", { class: "log-attempt", "data-testid": "log-attempt" }, `Attempt ${line.attempt}`));
          }
          this.attempt = line.attempt;
        }
        frag.append(lineElement(line));
        this.count += 1;
      }
      this.pending = [];
      this.list.append(frag);
      let extra = this.list.childElementCount - this.maxLines;
      while (extra-- > 0) this.list.firstElementChild.remove();
      if (follow) this.box.scrollTop = this.box.scrollHeight;
      else this.jump.hidden = false;
    }
    this.emptyEl.hidden = this.count > 0;
    setText(this.emptyEl, this.finished ? "This job logged nothing." : "No log lines yet.");
    const shown = Math.min(this.count, this.maxLines);
    setText(this.countEl, this.count
      ? `${this.count.toLocaleString()} line${this.count === 1 ? "" : "s"}${shown < this.count ? ` (last ${shown.toLocaleString()} shown)` : ""}${this.truncated ? " · truncated by the server" : ""}`
      : "");
  }
}

function lineElement(line) {
  const level = String(line.level || "INFO").toUpperCase();
  const cls = LEVELS.has(level) ? level.toLowerCase() : "info";
  const message = String(line.message ?? "").replace(/\n+$/, "");
  return h("div", { class: `log-line lvl-${cls}`, "data-testid": "log-line", "data-level": level },
    h("time", { class: "log-time mono", title: line.time ? new Date(line.time * 1000).toISOString() : null }, fmtClock(line.time)),
    h("span", { class: `log-level lvl-${cls}` }, level),
    h("span", { class: "log-logger mono", title: line.logger || null }, line.logger || ""),
    h("pre", { class: "log-msg" }, message),
  );
}
