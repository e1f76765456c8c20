/** Markdown to safe DOM: marked renders, DOMPurify removes scripts, handlers and the like. */

import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";

/** A <div> holding `text` rendered as Markdown, sanitised. */
export function renderMarkdown(text) {
  const html = marked.parse(String(text ?? ""), { async: false, gfm: true });
  // RETURN_DOM_FRAGMENT: DOMPurify hands back nodes, so no string of HTML is assigned anywhere.
  const fragment = DOMPurify.sanitize(html, { RETURN_DOM_FRAGMENT: true });
  const container = document.createElement("div");
  container.className = "markdown";
  container.appendChild(fragment);
  for (const link of container.querySelectorAll("a")) {
    link.setAttribute("rel", "noopener noreferrer");
    link.setAttribute("target", "_blank");
  }
  return container;
}
