// Compare view (placeholder while it is built).

import { setCrumbs } from "./chrome.js";
import { h } from "./util.js";

export class CompareView {
  constructor(root, params) {
    this.root = root;
    this.params = params;
  }

  mount() {
    setCrumbs({ text: "Runs", href: "#/" }, { text: "Compare" });
    this.root.replaceChildren(h("section", { class: "page" }, h("h1", {}, "Compare")));
  }

  unmount() {}
  refresh() {}
  wake() {}
}
