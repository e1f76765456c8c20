/** Sign in by pasting a token (`agenttasks token USER`, or the one `agenttasks up` prints). */

import { h } from "../dom.js";

export function render(ctx, main) {
  const input = h("textarea", { id: "token", rows: "4", placeholder: "eyJhbGciOi..." });
  const error = h("div", { class: "error", id: "signin-error" }, ctx.signedOutBecause || "");
  const submit = async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      error.textContent = "Paste a token first.";
      return;
    }
    const probe = new ctx.api.constructor({ token });
    try {
      await probe.listTasks({ page_size: 1 });
    } catch (failure) {
      error.textContent = `That token was refused: ${failure.message}`;
      return;
    }
    ctx.signIn(token);
  };
  main.append(
    h(
      "section",
      {},
      h("h1", {}, "Sign in"),
      h("p", { class: "muted" }, "Paste a token: `agenttasks token USER` prints one, and so does `agenttasks up`."),
      h("form", { onsubmit: submit },
        h("div", { class: "field" }, h("label", { for: "token" }, "Token"), input, error),
        h("button", { class: "primary", type: "submit" }, "Sign in")),
    ),
  );
}
