// Sweep view (placeholder while it is built).

import { setCrumbs } from "./chrome.js";
import { h } from "./util.js";

export class SweepView {
  constructor(root, params) {
    this.root = root;
    this.params = params;
  }

  mount() {
    setCrumbs({ text: "Runs", href: "#/" }, { text: "Sweep" });
    this.root.replaceChildren(h("section", { class: "page" }, h("h1", {}, "Sweep")));
  }

  unmount() {}
  refresh() {}
  wake() {}
}
