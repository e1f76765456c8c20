/**
 * Builds DOM from data without markup: every string becomes a text node, so a task title such
 * as `<script>` shows as those characters. Nothing in the dashboard assigns innerHTML with data;
 * Markdown goes through markdown.js (DOMPurify).
 */

/** An element: h("a", {href, onclick, class}, "text", child, [more children]). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      element.className = value;
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (key in element && typeof value !== "string") {
      element[key] = value; // checked, value, disabled, selected ...
    } else {
      element.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A progress bar for a percentage. */
export function progressBar(percent) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  return h("progress", { max: "100", value: String(value), title: `${value}%` });
}

/** A status badge. */
export function statusBadge(status) {
  return h("span", { class: `status status-${status}`, dataset: { status } }, status);
}

/** A short local date-time, or "". */
export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/**
 * What a task's model calls cost, as text: "$0.0012" (offline tasks: "$0 (offline engine)", so
 * that a free task says why), or "unknown" when a call had no price (docs/cost.md). The amount
 * is the API's decimal string, shown as it is.
 */
export function costText(task) {
  if (task.cost_usd === undefined) return "";
  const calls = task.model_calls ?? 0;
  if (task.cost_usd === null) {
    const unpriced = task.unpriced_calls ?? 0;
    return `unknown (${unpriced} of ${calls} call${calls === 1 ? "" : "s"} without a price)`;
  }
  const offline = task.result_data?.engine === "offline" ? " (offline engine)" : "";
  return `$${task.cost_usd}${offline}`;
}

/** A task's tokens {prompt, completion, cached} as text. */
export function tokensText(tokens) {
  if (!tokens || tokens.prompt === undefined) return "";
  const n = (v) => Number(v || 0).toLocaleString();
  return `${n(tokens.prompt)} prompt (${n(tokens.cached)} cached) · ${n(tokens.completion)} completion`;
}

/** A JSON value shown as text. */
export function jsonBlock(value) {
  return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
}

/** A table of [label, value] rows, or of objects (their keys as columns). */
export function table(rows, columns) {
  if (!columns) {
    return h(
      "table",
      { class: "kv" },
      h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, cell(v))))),
    );
  }
  return h(
    "table",
    {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => h("td", {}, cell(r[c])))))),
  );
}

function cell(value) {
  if (value === null || value === undefined) return "";
  if (value instanceof Node) return value; // an element built with h(), e.g. to carry an id
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
