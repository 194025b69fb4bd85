// A modal question (<dialog>): confirm an action, or ask for a line of text. Esc cancels,
// Enter confirms, focus returns to where it was.

import { h } from "./util.js";

/**
 * Ask and wait. opts: title, message, confirm (button text), danger (red button),
 * input ({label, placeholder}) to ask for text. Resolves to true / the text, or null.
 */
export function ask(opts) {
  return new Promise((resolve) => {
    const back = document.activeElement;
    const input = opts.input
      ? h("input", { type: "text", class: "text-input", placeholder: opts.input.placeholder || "",
                     "aria-label": opts.input.label, "data-testid": "dialog-input" })
      : null;
    const ok = h("button", { type: "submit", class: `btn ${opts.danger ? "danger" : "primary"}`, "data-testid": "dialog-confirm" },
      opts.confirm || "OK");
    const cancel = h("button", { type: "button", class: "btn", "data-testid": "dialog-cancel" }, "Cancel");
    const form = h("form", { method: "dialog", class: "dialog-body" },
      h("h2", { id: "dialog-title" }, opts.title),
      opts.message ? h("p", { class: "muted" }, opts.message) : null,
      input ? h("label", { class: "field" }, h("span", {}, opts.input.label), input) : null,
      h("div", { class: "dialog-actions" }, cancel, ok));
    const dlg = h("dialog", { class: "dialog", "aria-labelledby": "dialog-title", "data-testid": "dialog" }, form);
    let answer = null;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (input && !input.value.trim()) {
        input.focus();
        return;
      }
      answer = input ? input.value.trim() : true;
      dlg.close();
    });
    cancel.addEventListener("click", () => dlg.close());
    dlg.addEventListener("close", () => {
      dlg.remove();
      if (back && back.focus) back.focus();
      resolve(answer);
    });
    document.body.append(dlg);
    dlg.showModal();
    (input || ok).focus();
  });
}
